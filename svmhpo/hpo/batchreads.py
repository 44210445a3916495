"""A batch's asks read the study once: the sampler's reads served from one snapshot, kept exact.

Before each trial it samples, TPE reads every trial of the study (twice with the constant liar:
for the search space, then for the trials it splits), and Optuna's cache re-reads every
unfinished trial each time, with its parameters and attributes. A batch of K members is asked
one after another, so that is 2K reads, each of up to K running members: at K = 16 on the
digits study, most of the study's own time outside the fits.

During a batch's asks the budget lock is held (:func:`~svmhpo.hpo.liveness.budget_lock`), so no
other process asks; the study changes only by this process's asks and by other processes'
tells. :class:`SharedReads` stands in for the study's storage while a batch is asked: the first
read goes to the storage; each trial this process creates is added to the snapshot as the
storage returns it, and each member's start, once written, with what it wrote (parameters,
attributes, the sampler's own); every other call passes through. Before each ask the study is
counted by state in one statement (:func:`~svmhpo.hpo.studies.count_states`), and the snapshot
is dropped (read again at the next read) when its counts differ: a trial finished, added or
queued by another process since, or taken from the queue here. So the sampler sees the trials it
would have read, in the states it would have read them in; what it does not see at once are
other processes' intermediate values and attributes of running trials, which TPE does not read.
"""

from __future__ import annotations

import contextlib
import copy
from collections import Counter
from collections.abc import Container, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

if TYPE_CHECKING:
    import optuna

    from svmhpo.hpo.handle import StudyHandle
    from svmhpo.hpo.starts import PendingWrites

__all__ = ["SharedReads", "shared_reads"]


@contextlib.contextmanager
def shared_reads(study: StudyHandle, asked: list[optuna.Trial]) -> Iterator[SharedReads]:
    """Within the block, ``study`` reads through a :class:`SharedReads`; after it, the study and
    the trials in ``asked`` (as the block left the list) read and write through its storage again."""
    storage = study._storage
    reads = study._storage = SharedReads(storage, study.id)
    try:
        yield reads
    finally:
        reads.close()
        study._storage = storage
        for trial in asked:
            trial.storage = storage


class SharedReads:
    """A study's storage with its reads of study ``study_id``'s trials served from one snapshot.

    Use :meth:`matches` before each ask, :meth:`started` after each member's start is stored,
    and :meth:`close` at the end of the batch: from then on every call passes through.
    """

    def __init__(self, storage: BaseStorage, study_id: int) -> None:
        self._inner = storage
        self._for_study = study_id
        self._trials: dict[int, FrozenTrial] | None = None  # by number
        self._created: dict[int, FrozenTrial] = {}  # by trial id: trials created here, as stored
        self._closed = False
        #: Reads served from the snapshot, and reads that went to the storage (for tests and benchmarks).
        self.served = self.read = 0

    def get_all_trials(
        self, study_id: int, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        if self._closed or study_id != self._for_study:
            return self._inner.get_all_trials(study_id, deepcopy=deepcopy, states=states)
        if self._trials is None:
            self.read += 1
            self._trials = {t.number: t for t in self._inner.get_all_trials(study_id, deepcopy=False)}
        else:
            self.served += 1
        trials = sorted(self._trials.values(), key=lambda t: t.number)
        if states is not None:
            trials = [t for t in trials if t.state in states]
        return copy.deepcopy(trials) if deepcopy else trials

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        tid = self._inner.create_new_trial(study_id, template_trial)
        if not self._closed and study_id == self._for_study:
            # as Optuna's cache holds it from its creation (served by get_trial below, which
            # Optuna's ``Trial`` calls on creation): no read
            frozen = self._as_created(tid)
            self._created[tid] = frozen
            if self._trials is not None:
                self._trials[frozen.number] = frozen
        return tid

    def _as_created(self, tid: int) -> FrozenTrial:
        """Trial ``tid`` as the creating storage returned it: Optuna's cache (``_CachedStorage``)
        keeps that copy, by study and number; any other storage is read."""
        cache = self._inner
        try:
            study_id, number = cache._trial_id_to_study_id_and_number[tid]  # type: ignore[attr-defined]
            return copy.deepcopy(cache._studies[study_id].trials[number])  # type: ignore[attr-defined]
        except (AttributeError, KeyError):
            return self._inner.get_trial(tid)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        created = None if self._closed else self._created.get(trial_id)
        if created is not None:  # the trial's own first read: a copy, which the Trial keeps and changes
            return copy.deepcopy(created)
        return self._inner.get_trial(trial_id)

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Any = None) -> bool:
        self._trials = None  # a trial taken from the queue (or any change of state made here): read again
        return self._inner.set_trial_state_values(trial_id, state=state, values=values)

    def started(self, pending: PendingWrites) -> None:
        """A member's start is stored: the snapshot's copy gets what it wrote, as a read would."""
        frozen = self._created.get(pending.tid)
        if frozen is None or self._closed:
            self._trials = None
            return
        for name, (internal, distribution) in pending.params.items():
            frozen.distributions[name] = distribution
            frozen.params[name] = distribution.to_external_repr(internal)
        frozen.user_attrs.update(pending.user_attrs)
        frozen.system_attrs.update(pending.system_attrs)
        if self._trials is not None:  # read after the trial was created: the read's copy is replaced
            self._trials[frozen.number] = frozen

    def matches(self, counts: Mapping[TrialState, int]) -> None:
        """Drop the snapshot unless it holds as many trials in each state as ``counts`` (a fresh count)."""
        if self._trials is None:
            return
        held = Counter(t.state for t in self._trials.values())
        if any(held.get(state, 0) != counts.get(state, 0) for state in TrialState):
            self._trials = None

    def close(self) -> None:
        """The batch is asked: pass every call through from now on, and forget the snapshot."""
        self._closed = True
        self._trials = None
        self._created.clear()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

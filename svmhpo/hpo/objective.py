"""Trials: sample the hyperparameters, fit, report ``val_acc`` every epoch, prune, tell.

Every trial of a study is a *member* of a fit: :class:`BatchObjective` asks up to
``[training] batch_trials`` trials and trains them as one fit, each member reporting to its own
trial and pruned on its own (:class:`MemberPruning`). A batch of one is a batch like any other,
trained by the plain one-trial fit (:func:`~svmhpo.svm.members.fit_one`); larger ones by the
batched fit (:func:`~svmhpo.svm.batched.fit_batch`). The model side is imported only when a real
fit runs, so the study machinery (and its no-op trainer, :mod:`svmhpo.testing`) loads without
torch or Lightning.
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import optuna
import sqlalchemy
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from svmhpo.errors import DatabaseUnavailable
from svmhpo.hpo import modelside, records, starts, tells
from svmhpo.hpo.batchreads import shared_reads
from svmhpo.hpo.config import StudyConfig
from svmhpo.hpo.handle import StudyHandle, trial_id
from svmhpo.hpo.liveness import REQUEUE_LOCK_WAIT_S, HeldLock, budget_lock, requeue_lock
from svmhpo.hpo.reports import ReportBuffer
from svmhpo.hpo.space import SnapshotPruner, suggest
from svmhpo.hpo.storage import MAX_RETRY
from svmhpo.hpo.studies import count_states
from svmhpo.interrupts import Terminated, ctrl_c_deferred
from svmhpo.svm.params import SVMParams

if TYPE_CHECKING:
    from svmhpo.svm.data import DeviceData
    from svmhpo.svm.members import MemberFit

__all__ = ["BatchFitFn", "BatchObjective", "Member", "MemberPruning"]


#: A batch trainer: ``fit_fn(members, data, *, epochs, batch_size, seed, watch) -> (fit, trainer)``
#: that tells ``watch`` (a :class:`~svmhpo.svm.members.MemberWatch`) about the running fit and
#: returns it as a :class:`~svmhpo.svm.members.MemberFit`.
BatchFitFn = Callable[..., tuple]


@dataclass(frozen=True)
class Member:
    """An asked trial with its sampled hyperparameters and batch size."""

    trial: optuna.Trial
    params: SVMParams
    batch_size: int


class MemberPruning:
    """The study's watch over a fit (a :class:`~svmhpo.svm.members.MemberWatch`): each member
    reports to its own trial and is pruned on its own.

    After every validation each live member's ``val_acc`` joins its curve at the epoch and the
    study's pruner is asked, with Optuna's own pruner on the same evidence as
    optuna-integration's ``PyTorchLightningPruningCallback`` gives it for a one-trial fit (the
    same value, the same step, the trial as ``Trial.should_prune`` hands it over), but with no
    Lightning ``Trainer`` in between and no round trip: the curve is in memory, and the
    values reach the study in bulk (:mod:`svmhpo.hpo.reports`) when members are pruned or told
    and at most every few seconds in between. A member the pruner stops is stopped alone and
    its trial told PRUNED at once. A member whose loss turned NaN/inf is pruned and marked
    ``diverged`` as soon as the fit notices. What is told is kept in :attr:`told` and passed to
    ``on_told`` at once.
    """

    def __init__(
        self,
        study: StudyHandle,
        members: list[Member],
        on_told: Callable[[FrozenTrial], None] | None = None,
        *,
        peers: bool = False,
    ) -> None:
        self.study = study
        self.members = members
        self.on_told = on_told
        #: Whether the members still training are evidence for each other (``batch_pruning = "peers"``).
        self.peers = peers and len(members) > 1
        #: When the members' fit started: their start, as they are told (:mod:`svmhpo.hpo.tells`).
        self.started = datetime.datetime.now()
        self.told: dict[int, FrozenTrial] = {}
        #: Each member's reported values by epoch, the evidence its pruning decisions read.
        self.curves: dict[int, dict[int, float]] = {}
        self.reports = ReportBuffer(study.storage)
        self._ids = [trial_id(m.trial) for m in members]

    def tell(self, member: int, state: TrialState | None = None, value: float | None = None) -> None:
        trial = self.members[member].trial
        self.reports.flush([self._ids[member]])  # its curve first, as trial.report would have written it
        try:
            self.told[member] = self.study.tell(trial, value, state=state, skip_if_finished=True)
        except UpdateFinishedTrialError:  # failed as stale by another process between Optuna's check and write
            self.told[member] = self.study.storage.get_trial(trial_id(trial))
        if self.on_told is not None:
            self.on_told(self.told[member])

    def tell_all(
        self, told: list[tuple[int, TrialState | None, float | None]], extra: Mapping[int, dict] | None = None
    ) -> None:
        """Tell several members at once (``(member, state, value)`` as :meth:`tell` takes them):
        their curves, then their states and values, in one write each (:mod:`svmhpo.hpo.tells`),
        with ``extra`` attributes by member beside the values (a cross-validated fit's fold scores,
        :func:`fold_attrs`)."""
        if not told:
            return
        self.reports.flush([self._ids[m] for m, _, _ in told])
        curves = {self._ids[m]: self.curves.get(m, {}) for m, _, _ in told}
        extra = extra or {}
        trials = tells.tell_many(
            self.study,
            [(self.members[m].trial, state, value) for m, state, value in told],
            curves,
            self.started,
            {self._ids[m]: extra[m] for m, _, _ in told if m in extra},
        )
        for (member, _, _), frozen in zip(told, trials, strict=True):
            self.told[member] = frozen
            if self.on_told is not None:
                self.on_told(frozen)

    def flush(self) -> None:
        """Write every member's pending values (one transaction): before a batch's members are told."""
        self.reports.flush()

    def after_update(self, module: MemberFit) -> None:
        """Tell the members that diverged since the last look: PRUNED, marked ``diverged``."""
        for member, reason in module.take_diverged().items():
            with contextlib.suppress(UpdateFinishedTrialError):  # already failed as stale elsewhere
                records.mark_diverged(self.members[member].trial, reason)
            self.tell(member, TrialState.PRUNED)

    def after_validation(self, module: MemberFit) -> None:
        """Report every live member's ``val_acc``, and stop and tell the ones the pruner prunes."""
        self.after_update(module)
        step = module.current_epoch
        values = module.val_score
        for member, value in values.items():
            curve = self.curves.setdefault(member, {})
            if step not in curve:  # a step keeps its first value, as trial.report does
                curve[step] = float(value)
                self.reports.add(self._ids[member], step, value)
        # every member is decided on the same evidence: the peers as they stand at this epoch
        peers = self._peers(values, step) if self.peers else {}
        pruned = [member for member in values if self.should_prune(member, peers)]
        # members failed as stale by another process (after a long outage) are found when written
        if pruned:
            gone = self.reports.flush([self._ids[m] for m in pruned])
        elif self.reports.due():
            gone = self.reports.flush()
        else:
            gone = set()
        taken = [m for m in module.val_score if self._ids[m] in gone and m not in pruned]
        if pruned or taken:
            extra = fold_attrs(module)  # read before the stop drops the members' values
            module.stop(pruned + taken)
            self.tell_all([(member, TrialState.PRUNED, None) for member in pruned], extra)
            for member in taken:
                self.tell(member, TrialState.FAIL)  # already finished: reads it back as it is

    def should_prune(self, member: int, peers: Mapping[int, FrozenTrial] | None = None) -> bool:
        """The study pruner's answer for ``member`` on its curve so far: ``Trial.should_prune``'s
        question (the trial as it stands, its system attributes read only if the pruner asks),
        without reading the trial back.

        ``peers`` (from :meth:`_peers`) are the batch's members still training, as trials
        completed at this epoch; the median pruner counts all but ``member`` itself beside the
        finished trials. Other pruners see the study as ``Trial.should_prune`` shows it
        (Hyperband's brackets already compare a trial with the running trials at its rung).
        """
        trial = self.members[member].trial
        attrs = _SystemAttrs(self.study.storage, self._ids[member])
        frozen = tells.as_running(trial, self.curves.get(member, {}), attrs)  # type: ignore[arg-type]
        pruner = self.study.pruner
        if isinstance(pruner, SnapshotPruner):
            evidence = [p for m, p in (peers or {}).items() if m != member]
            batch = (m.trial.number for m in self.members)
            return pruner.prune_member(self.study, frozen, batch, evidence)
        return pruner.prune(self.study, frozen)

    def _peers(self, values: Mapping[int, float], step: int) -> dict[int, FrozenTrial]:
        """The members that validated at ``step`` (those still training), each as a trial that
        completed with its curve so far: the evidence they give their peers at this epoch.

        A member pruned earlier is not among them, as a pruned trial is not among the finished
        trials the median pruner reads: the rule is the median stopping rule's (Golovin et al.,
        Google Vizier, 2017: stop a trial whose best value so far is below the median of the
        other trials' values at the same step) with running peers counted as if they had
        finished, those that a one-trial-per-fit study would likely have seen finish (which
        count is :meth:`~svmhpo.hpo.space.SnapshotPruner.prune_member`'s).
        """
        now = datetime.datetime.now()
        peers = {}
        for member in values:
            curve = self.curves[member]
            trial = self.members[member].trial
            peers[member] = FrozenTrial(
                number=trial.number,
                state=TrialState.COMPLETE,
                value=curve[step],
                datetime_start=trial.datetime_start,
                datetime_complete=now,
                params=trial.params,
                distributions=trial.distributions,
                user_attrs={},
                system_attrs={},
                intermediate_values=dict(curve),
                trial_id=self._ids[member],
            )
        return peers


def fold_attrs(fit: MemberFit) -> dict[int, dict]:
    """A cross-validated fit's fold scores by member (:meth:`~svmhpo.svm.folds.FoldedFit.fold_attrs`);
    none for other fits."""
    read = getattr(fit, "fold_attrs", None)
    return {} if read is None else read()


class _SystemAttrs(Mapping):
    """A trial's system attributes, read from the storage on first use (Hyperband's rungs), as
    Optuna's ``Trial.should_prune`` hands them to a pruner."""

    def __init__(self, storage: optuna.storages.BaseStorage, tid: int) -> None:
        self.storage, self.tid = storage, tid
        self._attrs: dict | None = None

    def _read(self) -> dict:
        if self._attrs is None:
            self._attrs = self.storage.get_trial_system_attrs(self.tid)
        return self._attrs

    def __getitem__(self, key: str):
        return self._read()[key]

    def __iter__(self):
        return iter(self._read())

    def __len__(self) -> int:
        return len(self._read())


class BatchObjective:
    """Runs asked trials as the members of batched fits, over data loaded once per process.

    :meth:`ask` asks the study for trials one by one (so that TPE's constant liar sees each
    asked point before sampling the next) and stores on each the seed of its batch and this
    worker. :meth:`run` trains them, one fit per batch size among them, and tells every trial:
    COMPLETE with its last ``val_acc``, PRUNED as it is pruned or diverges, FAIL (with the
    reason) if its fit raises. Member ``i`` makes the updates of a single fit with the stored
    seed, so a batched trial is reproduced alone by ``svmhpo train`` with its parameters and seed.
    """

    def __init__(
        self,
        config: StudyConfig,
        data: DeviceData | None,
        *,
        batch_trials: int | None = None,
        fit_fn: BatchFitFn | None = None,
    ) -> None:
        batch_trials = config.training.batch_trials if batch_trials is None else batch_trials
        if batch_trials < 1:
            raise ValueError(f"batch_trials must be at least 1, got {batch_trials}")
        self.config = config
        self.data = data
        self.batch_trials = batch_trials
        self.fit_fn = fit_fn or modelside.current().trainer(batch_trials, config.cv, config.seed, config.metric)

    def ask(self, study: StudyHandle, n: int, *, on_ask: Callable[[int], None] | None = None) -> list[Member]:
        """Ask up to ``n`` trials (enqueued ones first) and sample each one's hyperparameters.

        ``on_ask`` gets each trial's storage id once its start is stored (to keep its heartbeat;
        the first beat is stored with the start when the storage has heartbeats on).

        The trials are asked under :func:`~svmhpo.hpo.liveness.budget_lock`, held for the batch,
        each after a count of the study, and asking stops once its finished and running trials fill
        the budget, so processes asking side by side never overshoot it.
        Trials are asked one by one (so that TPE's constant liar sees each asked point before
        sampling the next), each one's start (parameters, seed, worker, first heartbeat) stored in
        one write (:mod:`svmhpo.hpo.starts`).
        """
        members: list[Member] = []
        asked: list[optuna.Trial] = []
        beat = study.storage.get_heartbeat_interval() is not None
        try:  # one read of the study per batch (hpo.batchreads)
            with shared_reads(study, asked) as reads, budget_lock(study) as lock, warnings.catch_warnings():
                # heartbeats: hpo.liveness.heartbeats
                warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
                checked = False  # the lock checked since the last ask (by the check that follows it)
                for _ in range(n):
                    # counted before every ask, not once per batch: a lock lost with its connection
                    # (a database restart mid-batch) let another worker ask beside this one, and a
                    # count made once overshot the budget by 4 trials (the compose test, 60 trials)
                    if not checked:
                        lock.ensure()  # a database restart freed it with its connection: take it again
                    counts = count_states(study)
                    if _taken(counts) >= self.config.trials:  # failed trials are re-run: they do not count
                        break
                    study.queue_empty = counts[TrialState.WAITING] == 0
                    reads.matches(counts)  # anything changed elsewhere since the snapshot: read again
                    retakes, checked = lock.retakes, False
                    with ctrl_c_deferred():  # Optuna creates the trial before returning it: hold it first
                        asked.append(study.ask())
                    trial = asked[-1]
                    # the batch's seed is its first trial's; seed and worker are stored as soon as asked
                    seed = self.config.seed + (members[0].trial.number if members else trial.number)
                    try:
                        with starts.deferred(trial, study, heartbeat=beat) as pending:
                            records.set_trial_origin(trial, seed)
                            member = Member(trial, *suggest(trial, self.config))
                    except UpdateFinishedTrialError:
                        # the database was away past the grace period and another process failed
                        # this trial as stale and re-queued it: it is no longer this batch's
                        continue
                    checked = True
                    if self._over_budget(study, lock, retakes):
                        _fail_trial(study, trial, OVER_BUDGET, release=False)
                        break
                    reads.started(pending)
                    members.append(member)
                    if on_ask is not None:
                        on_ask(trial_id(trial))
        except BaseException as exc:  # Ctrl-C, SIGTERM or a storage error while asking: leave nothing RUNNING
            study.queue_empty = False
            _release_session(study)
            for trial in asked:
                _fail_trial(study, trial, stop_reason(exc), release=False)
            raise
        study.queue_empty = False
        return members

    def _over_budget(self, study: StudyHandle, lock: HeldLock, retakes: int) -> bool:
        """Whether the trial just created (not taken from the queue) overshot the budget because the
        budget lock was lost while it was asked for.

        A database restart frees the lock with its connection. An ask in flight then (its
        storage calls waiting out the outage) completed once the database was back, while
        another worker, holding the lock anew, counted the study without it and filled the
        budget: one trial too many, and a re-queued copy was left WAITING at the end (the compose
        test, 2026-12-07). After each ask and its start the lock is checked (and taken again if
        lost); if it was lost, the study is counted again, and a new trial beyond the budget
        (finished, running and queued trials) is failed as :data:`OVER_BUDGET`, not re-queued. A
        trial taken from the queue changes no count, and is kept. The check also serves as the
        next ask's.
        """
        lock.ensure()
        if lock.retakes == retakes or study.popped_last:
            return False
        counts = count_states(study)
        return _taken(counts) + counts[TrialState.WAITING] > self.config.trials

    def run(
        self, study: StudyHandle, members: list[Member], on_told: Callable[[FrozenTrial], None] | None = None
    ) -> list[FrozenTrial]:
        """Train and tell every member; return the told trials in the members' order.

        ``on_told`` gets each trial as it is told: a pruned member while the others still train.
        """
        seed = self.config.seed + members[0].trial.number
        told: dict[int, FrozenTrial] = {}
        by_batch_size = itertools.groupby(sorted(members, key=lambda m: m.batch_size), key=lambda m: m.batch_size)
        for batch_size, group in by_batch_size:
            group = list(group)
            pruning = MemberPruning(study, group, on_told, peers=self.config.training.batch_pruning == "peers")
            try:
                module, _ = self.fit_fn(
                    [m.params for m in group],
                    self.data,
                    epochs=self.config.training.epochs,
                    batch_size=batch_size,
                    seed=seed,
                    watch=pruning,
                )
                values = module.val_score
                pruning.flush()  # every member's last values in one write, then the tells in one
                pruning.tell_all([(member, None, values[member]) for member in module.live], fold_attrs(module))
            except DatabaseUnavailable:  # nothing can be told: the next run fails these as stale
                raise
            except Exception as exc:
                self._fail(pruning, group, repr(exc))
            except BaseException as exc:  # Ctrl-C or SIGTERM, or Lightning's exit on it: no trial is left running
                self._fail(pruning, group, stop_reason(exc))
                raise
            told.update({group[i].trial.number: t for i, t in pruning.told.items()})
        return [told[m.trial.number] for m in members]

    @contextlib.contextmanager
    def failing_untold(self, study: StudyHandle, members: list[Member]) -> Iterator[None]:
        """Within the block, a Ctrl-C (or a crash) anywhere leaves none of ``members`` RUNNING.

        :meth:`run` fails the members of the fit it is in; this also covers the moment between
        the ask and the fit, and the members of batch sizes not yet reached. A lost database is
        the exception: nothing can be told, and the next process fails them as stale.
        """
        try:
            yield
        except DatabaseUnavailable:
            raise
        except BaseException as exc:
            _release_session(study)
            for member in members:  # a member already told is left as it is
                _fail_trial(study, member.trial, stop_reason(exc), release=False)
            raise

    @staticmethod
    def _fail(pruning: MemberPruning, group: list[Member], reason: str) -> None:
        """Fail the members of ``group`` not yet told, with ``reason``; a stopped worker's are put back.

        A stop fails and re-queues them under the budget lock (waited for briefly, as
        :func:`_fail_trial` does): a worker counting between a member's failure and its copy's
        queueing saw a free slot and nothing waiting, asked a new trial, and the copy was left
        WAITING once the budget was met (the compose test's 60 finished and one WAITING).
        """
        _release_session(pruning.study)
        _patiently(pruning.flush)  # the curves so far, in one write
        stopped = reason == STOPPED
        with _requeue_lock_in_a_stop(pruning.study, reason):
            for i, member in enumerate(group):
                if i not in pruning.told:

                    def fail(i: int = i, member: Member = member) -> None:
                        with contextlib.suppress(UpdateFinishedTrialError):  # already failed as stale elsewhere
                            records.set_fail_reason(member.trial, reason)
                        pruning.tell(i, TrialState.FAIL)
                        if stopped and records.fail_reason(pruning.told[i]) == STOPPED:
                            _put_back(pruning.study, pruning.told[i])

                    _patiently(fail)


#: The ``fail_reason`` of a trial whose worker was stopped by SIGTERM; it is put back in the queue.
STOPPED = "worker stopped"
#: The ``fail_reason`` of a trial asked beside another worker while the budget lock was lost (a
#: database restart) that the budget had no room for; it is not re-run.
OVER_BUDGET = "asked beyond the budget while a database restart had freed the budget lock"


def _taken(counts: Mapping[TrialState, int]) -> int:
    """The budget's slots in use: finished and running trials (failed ones are re-run, not counted)."""
    return counts[TrialState.COMPLETE] + counts[TrialState.PRUNED] + counts[TrialState.RUNNING]


def _requeue_lock_in_a_stop(study: StudyHandle, reason: str) -> contextlib.AbstractContextManager:
    """For a trial failed with ``reason``: a stopped worker's is failed and queued again under the
    budget lock, as one step for the other workers' counts (:func:`~svmhpo.hpo.liveness.requeue_lock`),
    waited for briefly in a stop; any other failure is not re-queued and needs no lock."""
    return requeue_lock(study, REQUEUE_LOCK_WAIT_S) if reason == STOPPED else contextlib.nullcontext()


def stop_reason(exc: BaseException) -> str:
    """The ``fail_reason`` of trials a fit or an ask left because of ``exc``."""
    if isinstance(exc, Terminated):
        return STOPPED
    return "interrupted" if isinstance(exc, KeyboardInterrupt) else repr(exc)


def _put_back(study: StudyHandle, failed: FrozenTrial) -> None:
    """Queue a trial failed by a stopped worker again (the same parameters, WAITING) for another worker.

    It is the re-queue of Optuna's ``RetryHeartbeatStaleTrialCallback`` (the one the heartbeat path uses
    for a dead worker's trials, up to :data:`~svmhpo.hpo.storage.MAX_RETRY` times), at once.
    """
    with warnings.catch_warnings():  # experimental since Optuna 2.8; svmhpo depends on it knowingly
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)(study, failed)


def _fail_trial(study: StudyHandle, trial: optuna.Trial, reason: str, *, release: bool = True) -> None:
    """Fail ``trial`` with ``reason``, unless another process already finished it (failed it as stale);
    a trial of a stopped worker (:data:`STOPPED`) is then put back in the queue. ``release=False``:
    the caller, failing several, already ran :func:`_release_session` once."""
    if release:
        _release_session(study)

    def fail() -> None:
        with _requeue_lock_in_a_stop(study, reason), contextlib.suppress(UpdateFinishedTrialError):
            records.set_fail_reason(trial, reason)
            failed = study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            if reason == STOPPED:
                _put_back(study, failed)

    _patiently(fail)


def _release_session(study: StudyHandle) -> None:
    """Drop this thread's storage session and the idle pooled connections before the writes that
    leave a stopped fit.

    A Ctrl-C or SIGTERM that lands inside Optuna's commit can leave a pooled connection holding
    its transaction, and on SQLite its write lock: the process's next write then waited on
    itself and failed with "database is locked" after the busy timeout, and the stopped trials
    were failed with that error as their reason instead of being put back (seen at K = 16 on a
    machine with two busy loops; reproduced by interrupting a report's commit). Closing the idle
    connections rolls such a transaction back; connections other threads hold are left alone.
    """
    storage = study.storage
    with contextlib.suppress(Exception):
        remove = getattr(getattr(storage, "scoped_session", None), "remove", None)
        if remove is not None:
            remove()
        engine = getattr(storage, "engine", None)
        if engine is not None:
            engine.dispose()


#: How long the writes that leave a stopped or interrupted fit retry a locked SQLite file.
LOCKED_RETRY_S = 15.0


def _patiently(write: Callable[[], None]) -> None:
    """Do ``write`` again while SQLite answers "database is locked", for up to :data:`LOCKED_RETRY_S`.

    The trials of a stopped or interrupted fit are failed and queued again while its heartbeat
    thread and other workers write too; a SIGTERM'd worker at K = 16 under load once ended in
    "database is locked" (exit 1) instead of leaving cleanly. Each step is idempotent or was not
    committed when the lock refused it.
    """
    deadline = time.monotonic() + LOCKED_RETRY_S
    while True:
        try:
            write()
            return
        except (sqlalchemy.exc.OperationalError, optuna.exceptions.StorageInternalError) as exc:
            locked = any("database is locked" in str(e) for e in (exc, exc.__cause__, exc.__context__) if e)
            if not locked or time.monotonic() > deadline:
                raise
            time.sleep(0.25)

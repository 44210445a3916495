"""A batch's asks read the study once (:mod:`svmhpo.hpo.batchreads`) and sample what a read per
ask samples: two copies of one study on real SQLite files, one asked each way, with the same
changes made by "another process" (a second handle on the file) in the middle of the batch."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from svmhpo.hpo import batchreads
from svmhpo.hpo.batchreads import SharedReads
from svmhpo.hpo.config import load_config
from svmhpo.hpo.objective import BatchObjective
from svmhpo.hpo.studies import count_states, count_trials, read_study, start_study
from svmhpo.testing import NoOpTrainer

QUEUED = {"lr": 0.0123, "weight_decay": 1e-5, "squared": True, "strategy": "one_vs_rest", "optimizer": "adam"}


class ReadEachTime(SharedReads):
    """The stand-in with its snapshot switched off: every read goes to the storage, as Optuna's does."""

    def get_all_trials(self, study_id, deepcopy=True, states=None):
        self._trials = None
        return super().get_all_trials(study_id, deepcopy=deepcopy, states=states)


def _value(params) -> float:
    return 1.0 - abs(math.log10(params.lr) + 1.0) / 4.0


def _ask_a_batch(url: str, config, stand_in: type[SharedReads], monkeypatch: pytest.MonkeyPatch):
    """20 trials told, one left running by another process; then a batch of 16 asked, during
    which the other process completes its trial (after the 5th member) and queues one (after the
    10th)."""
    made: list[SharedReads] = []

    class Recorded(stand_in):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(batchreads, "SharedReads", Recorded)
    study = start_study(config, url)
    objective = BatchObjective(config, None, batch_trials=16, fit_fn=NoOpTrainer(0.0))
    for member in objective.ask(study, 20):
        study.tell(member.trial, _value(member.params))
    other = read_study(study.study_name, url)  # another process's handle on the same file
    theirs = other.ask()
    asked = []

    def on_ask(tid: int) -> None:
        asked.append(tid)
        if len(asked) == 5:
            other.tell(theirs, 0.5)
        if len(asked) == 10:
            other.enqueue_trial(QUEUED)

    members = objective.ask(study, 16, on_ask=on_ask)
    monkeypatch.undo()
    return study, members, made[-1]


def test_a_batch_sampled_from_one_read_samples_what_a_read_per_ask_samples(
    tmp_path: Path, study_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(study_config("reads", trials=100, warm=False, batch_trials=16))
    ours, ours_members, shared = _ask_a_batch(f"sqlite:///{tmp_path / 'a.db'}", config, SharedReads, monkeypatch)
    each, each_members, _ = _ask_a_batch(f"sqlite:///{tmp_path / 'b.db'}", config, ReadEachTime, monkeypatch)
    assert [m.trial.number for m in ours_members] == [m.trial.number for m in each_members]
    assert [m.params for m in ours_members] == [m.params for m in each_members]
    assert len({m.params for m in ours_members}) == 16
    assert any(m.params.lr == QUEUED["lr"] for m in ours_members)  # the queued trial was taken
    # read at the batch's first ask, again after each change elsewhere (a trial told, one queued,
    # then taken from the queue here); every other read served from the snapshot
    assert shared.read <= 4 and shared.served >= 2 * 16 - 4
    for study, members in ((ours, ours_members), (each, each_members)):
        stored = {t.number: t for t in study.get_trials()}
        for member in members:
            assert stored[member.trial.number].params == member.trial.params
            assert stored[member.trial.number].state == TrialState.RUNNING
            # created without a read: the trial as Optuna's cache held it is the stored one
            assert stored[member.trial.number].datetime_start == member.trial.datetime_start
    assert ours._storage is not shared and all(m.trial.storage is not shared for m in ours_members)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_the_budget_count_is_a_count_of_the_trials_by_state(backend: str, tmp_path: Path, request) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'c.db'}"
    else:
        url = request.getfixturevalue("pg_server")[1]
    optuna.create_study(storage=url, study_name="count", direction="maximize")
    study = read_study("count", url)
    for state, n in ((TrialState.COMPLETE, 3), (TrialState.PRUNED, 2), (TrialState.FAIL, 1), (TrialState.RUNNING, 4)):
        for _ in range(n):
            trial = study.ask()
            if state != TrialState.RUNNING:
                study.tell(trial, 0.5 if state == TrialState.COMPLETE else None, state=state)
    study.enqueue_trial({"x": 1.0})
    counts, whole = count_states(study), count_trials(study)
    assert counts == {
        TrialState.COMPLETE: 3,
        TrialState.PRUNED: 2,
        TrialState.FAIL: 1,
        TrialState.RUNNING: 4,
        TrialState.WAITING: 1,
    }
    assert (whole.complete, whole.pruned, whole.failed, whole.running, whole.waiting) == (3, 2, 1, 4, 1)


def test_a_trial_created_in_a_batch_is_not_read_back(
    tmp_path: Path, study_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Optuna's ``Trial`` reads its trial on creation; in a batch it gets the copy Optuna's cache
    keeps from the creation instead (one read per member less: 6 statements on PostgreSQL)."""
    from optuna.storages import RDBStorage

    config = load_config(study_config("created", trials=20, warm=False, batch_trials=4))
    study = start_study(config, f"sqlite:///{tmp_path / 'c.db'}")
    objective = BatchObjective(config, None, batch_trials=4, fit_fn=NoOpTrainer(0.0))

    def no_read(self, trial_id):
        raise AssertionError(f"trial {trial_id} read back")

    monkeypatch.setattr(RDBStorage, "get_trial", no_read)
    members = objective.ask(study, 4)
    monkeypatch.undo()
    stored = {t.number: t for t in study.get_trials()}
    assert [stored[m.trial.number].params for m in members] == [m.trial.params for m in members]

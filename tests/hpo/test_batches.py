"""Batched trials in a study: member-by-member pruning, budgets, settings and failures.

The no-op batch trainer of :mod:`svmhpo.testing` drives the real pruning callbacks, storage and
pruner; the batched fit itself is tested against single fits in ``tests/svm/test_batched.py``,
and a real batched study in ``test_service.py``.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from svmhpo.cli import ExitStatus, main
from svmhpo.errors import ConfigError, SvmhpoError
from svmhpo.hpo.config import load_config
from svmhpo.hpo.objective import BatchObjective
from svmhpo.hpo.runner import MAX_CONSECUTIVE_FAILURES, run_trials
from svmhpo.hpo.space import make_pruner
from svmhpo.hpo.studies import read_study, start_study
from svmhpo.testing import NoOpTrainer


def _study(url: str, name: str) -> optuna.Study:
    return read_study(name, url)


def _batches(study: optuna.Study) -> dict[int, list[optuna.trial.FrozenTrial]]:
    """Trials grouped by batch: the members of one batch share its seed."""
    trials = sorted(study.trials, key=lambda t: t.user_attrs["seed"])
    return {seed: list(group) for seed, group in itertools.groupby(trials, key=lambda t: t.user_attrs["seed"])}


def test_members_are_pruned_one_by_one_and_told_at_once(tmp_path: Path, study_config) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}"
    config = load_config(study_config("members", trials=24, epochs=6, warm=False, batch_trials=8))
    study = start_study(config, url)
    objective = BatchObjective(config, None, batch_trials=8, fit_fn=NoOpTrainer(0.02))
    counts = run_trials(study, objective)
    assert counts.finished == 24 and counts.failed == 0 and counts.running == 0
    batches = _batches(study)
    assert [len(b) for b in batches.values()] == [8, 8, 8]
    assert sorted(batches) == [0, 8, 16]  # the batch seed: study seed + its first trial's number
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    assert pruned, "the median pruner pruned some members"
    for trial in pruned:
        assert len(trial.intermediate_values) < 6  # stopped early, alone
    for trial in study.get_trials(states=(TrialState.COMPLETE,)):
        assert sorted(trial.intermediate_values) == list(range(6))  # every epoch reported
    for members in batches.values():  # a pruned member is told as it is pruned, before its batch ends
        ends = [t.datetime_complete for t in members if t.state == TrialState.COMPLETE]
        for trial in (t for t in members if t.state == TrialState.PRUNED):
            assert not ends or trial.datetime_complete < min(ends)
    assert all(t.user_attrs["worker"] for t in study.trials)


def test_the_pruner_answers_a_member_as_it_would_a_lone_trial(tmp_path: Path, study_config) -> None:
    """The median pruner reads completed trials only: other members running beside it change nothing."""
    config = load_config(study_config("pruner", trials=10, warm=False))
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'p.db'}", direction="maximize")
    study.pruner = make_pruner(config)
    for value in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95):
        trial = study.ask()
        for step in range(3):
            trial.report(value, step)
        study.tell(trial, value)

    def answers(values: list[float]) -> list[bool]:
        trials = [study.ask() for _ in values]
        for trial, value in zip(trials, values, strict=True):
            trial.report(value, 2)
        decisions = [trial.should_prune() for trial in trials]
        for trial in trials:
            study.tell(trial, state=TrialState.FAIL)  # out of the way of the next call
        return decisions

    together = answers([0.6, 0.99, 0.7])
    alone = [answers([v])[0] for v in (0.6, 0.99, 0.7)]
    assert together == alone == [True, False, True]


def test_batch_trials_is_a_setting_of_each_run(tmp_path: Path, study_config, noop_trainer, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    config = study_config("ksetting", trials=7, warm=False, pruner="none")
    assert main(["run", "--config", str(config), "--storage", url, "--batch-trials", "3", "--quiet"]) == 0
    study = _study(url, "ksetting")
    assert {seed: len(b) for seed, b in _batches(study).items()} == {0: 3, 3: 3, 6: 1}
    # the same study continued with another K: allowed, it is not part of the study's identity
    assert main(["run", "--config", str(config), "--storage", url, "--trials", "9", "--batch-trials", "5"]) == 0
    study = _study(url, "ksetting")
    assert {seed: len(b) for seed, b in _batches(study).items()} == {0: 3, 3: 3, 6: 1, 7: 2}
    capsys.readouterr()
    assert main(["run", "--config", str(config), "--storage", url, "--batch-trials", "0"]) == ExitStatus.USAGE
    assert "argument --batch-trials: must be >= 1, got 0" in capsys.readouterr().err


def test_batch_trials_in_a_config_is_checked(study_config) -> None:
    assert load_config(study_config("k2", batch_trials=2)).training.batch_trials == 2
    assert load_config(study_config("k16")).training.batch_trials == 16
    with pytest.raises(ConfigError, match=r"\[training\] batch_trials: input should be greater than or equal to 1"):
        load_config(study_config("k0", batch_trials=0))


def test_a_failing_batch_fails_every_member_and_the_worker_stops(tmp_path: Path, study_config) -> None:
    def broken(members, data, **kwargs):
        raise RuntimeError("the device fell off")

    config = load_config(study_config("broken", trials=20, warm=False, batch_trials=2))
    study = start_study(config, f"sqlite:///{tmp_path / 'f.db'}")
    objective = BatchObjective(config, None, batch_trials=2, fit_fn=broken)
    with pytest.raises(SvmhpoError, match=r"trials failed in a row.*the device fell off"):
        run_trials(study, objective)
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert len(failed) == len(study.trials) >= MAX_CONSECUTIVE_FAILURES  # none left RUNNING
    assert all("the device fell off" in t.user_attrs["fail_reason"] for t in failed)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")  # the test's own bare ask
def test_a_trial_orphaned_before_its_first_heartbeat_is_failed_and_rerun(tmp_path: Path, study_config) -> None:
    """A worker killed between Optuna creating its trial and the first heartbeat leaves a RUNNING
    trial that Optuna never finds stale; a batch worker waiting on the budget must not wait forever."""
    config = load_config(study_config("orphan", trials=3, warm=False, heartbeat=1, grace=2, batch_trials=3))
    study = start_study(config, f"sqlite:///{tmp_path / 'o.db'}")
    orphan = study.ask()  # RUNNING, no heartbeat, no worker: its process died right here
    objective = BatchObjective(config, None, batch_trials=3, fit_fn=NoOpTrainer())
    counts = run_trials(study, objective, timeout=60)
    assert counts.finished == 3 and counts.running == 0
    assert study.trials[orphan.number].state == TrialState.FAIL
    (retry,) = [t for t in study.trials if t.system_attrs.get("failed_trial") == orphan.number]
    assert retry.state in (TrialState.COMPLETE, TrialState.PRUNED)


def test_batched_workers_side_by_side_meet_the_budget_exactly(tmp_path: Path, study_config, noop_trainer, monkeypatch):
    """Every ask is counted under the budget lock, so three processes asking at once stop at the budget."""
    monkeypatch.setenv("SVMHPO_NOOP_EPOCH_S", "0.02")
    url = f"sqlite:///{tmp_path / 'exact.db'}"
    for trials in (12, 31):  # a fresh study, then topped up: both ends fall inside a batch
        config = study_config("exact", trials=trials, epochs=2, warm=False, pruner="none", batch_trials=2)
        assert main(["run", "--config", str(config), "--storage", url, "--jobs", "3", "--quiet"]) == 0
        study = _study(url, "exact")
        assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == trials
        assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING, TrialState.FAIL))
    assert len({t.user_attrs["worker"] for t in study.trials}) >= 2
    assert (tmp_path / "exact.budget-lock").exists()  # the lock the processes shared

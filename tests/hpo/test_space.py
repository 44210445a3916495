"""The study's pruner: the snapshot pruner decides as Optuna's median pruner does, with fewer reads."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from svmhpo.hpo.space import SnapshotPruner
from svmhpo.hpo.storage import open_storage


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_snapshot_pruner_decides_like_the_median_pruner_and_reads_once_per_trial(tmp_path: Path, sampler: str) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'prune.db'}", heartbeat_interval=None)
    samplers = {
        "tpe": optuna.samplers.TPESampler(seed=0, multivariate=True, n_startup_trials=5),
        "random": optuna.samplers.RandomSampler(seed=0),  # fills no trial-start snapshot itself
    }
    study = optuna.create_study(
        storage=storage,
        direction="maximize",
        sampler=samplers[sampler],
        pruner=SnapshotPruner(optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)),
    )
    reference = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
    decisions: list[tuple[bool, bool]] = []
    reads_while_pruning: list[int] = []
    cached = study._storage  # Optuna wraps the RDB storage; every trial read goes through this
    read_all = cached.get_all_trials

    def counting_read(*args, **kwargs):
        reads_while_pruning[-1] += 1
        return read_all(*args, **kwargs)

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        reads_while_pruning.append(0)
        value = 0.0
        for step in range(6):
            value = x * (step + 1)
            trial.report(value, step)
            cached.get_all_trials = counting_read
            try:
                ours = trial.should_prune()
            finally:
                cached.get_all_trials = read_all
            theirs = reference.prune(study, storage.get_trial(trial._trial_id))
            decisions.append((ours, theirs))
            if ours:
                raise optuna.TrialPruned()
        return value

    study.optimize(objective, n_trials=30)
    assert all(ours == theirs for ours, theirs in decisions)
    assert any(ours for ours, _ in decisions)  # it did prune
    assert max(reads_while_pruning) <= 1  # one read per trial at most, not one per report

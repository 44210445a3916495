"""Study machinery per trial, with no training: svmhpo's storage and loop versus vanilla Optuna.

Every side runs the same 200 trials (multivariate TPE, median pruner, 10 reports with a pruning
check each) against a fresh SQLite file, side by side in one run, and prints milliseconds per
trial:

- vanilla Optuna on SQLite with default settings (``sqlite:///file``);
- svmhpo's study loop (:func:`svmhpo.study.work`) with its storage, the Objective and the
  Lightning pruning callback's report path, and a no-op trainer;
- the same without heartbeats, to show what crash recovery costs (vanilla has none).

Target: svmhpo at most 30 ms per trial.

    python -m bench.study_overhead [--trials 200]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import optuna
import torch

from svmhpo.config import StudyConfig
from svmhpo.model import VAL_ACC
from svmhpo.objective import Objective
from svmhpo.search import make_sampler
from svmhpo.study import create_study, work

REPORTS = 10


class _FakeTrainer:
    def __init__(self, value: float) -> None:
        self.callback_metrics = {VAL_ACC: torch.tensor(value)}


def noop_fit(params, data, *, epochs, batch_size, seed, callbacks=()):
    """Report REPORTS values through the real pruning callback's path, without training."""
    pruning = callbacks[0]
    trial = pruning._trial
    value = 0.0
    for epoch in range(REPORTS):
        value = min(1.0, params.lr * (epoch + 1) / REPORTS)
        trial.report(value, step=epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return None, _FakeTrainer(value)


def vanilla(url: str, trials: int) -> float:
    """Seconds per trial of plain Optuna with the same sampler, pruner and reports."""
    config = StudyConfig()
    study = optuna.create_study(
        storage=url,
        direction="maximize",
        sampler=make_sampler(config, seed=0, shared=False),  # the plain TPESampler svmhpo uses alone
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2),
    )

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", *config.search.lr, log=True)
        trial.suggest_float("weight_decay", *config.search.weight_decay, log=True)
        trial.suggest_categorical("squared", [False, True])
        trial.suggest_categorical("strategy", list(config.search.strategy))
        trial.suggest_categorical("optimizer", list(config.search.optimizer))
        value = 0.0
        for epoch in range(REPORTS):
            value = min(1.0, lr * (epoch + 1) / REPORTS)
            trial.report(value, step=epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    start = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    return (time.perf_counter() - start) / trials


def ours(url: str, trials: int, *, heartbeat: bool = True) -> float:
    """Seconds per trial of svmhpo's work() loop with a no-op trainer."""
    config = dataclasses.replace(StudyConfig(), trials=trials, name="overhead")
    if not heartbeat:
        config = dataclasses.replace(config, heartbeat_interval=0)
    study, _ = create_study(config, url)
    objective = Objective(config, data=None, fit_fn=noop_fit)  # type: ignore[arg-type]
    start = time.perf_counter()
    counts = work(study, config, None, objective=objective)  # type: ignore[arg-type]
    assert counts.finished == trials
    return (time.perf_counter() - start) / trials


def main(trials: int = 200, rounds: int = 2) -> dict[str, float]:
    """Each side runs ``rounds`` times, alternating; the best round of each counts.

    A 200-trial round takes seconds, long enough for this machine's load bursts to land on one
    side only; the best of alternating rounds is the least disturbed figure of each.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sides = {"vanilla": vanilla, "svmhpo": ours, "svmhpo_no_heartbeat": lambda u, n: ours(u, n, heartbeat=False)}
    times: dict[str, list[float]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for name, side in sides.items():
                times[name].append(side(f"sqlite:///{Path(tmp) / f'{name}-{r}.db'}", trials))
    v, o, bare = (min(times[name]) for name in sides)
    result = {
        "vanilla_sqlite_ms": v * 1000,
        "svmhpo_sqlite_ms": o * 1000,
        "svmhpo_no_heartbeat_ms": bare * 1000,
        "ratio": o / v,
    }
    print(
        f"study overhead per trial, {trials} trials, SQLite: vanilla Optuna {result['vanilla_sqlite_ms']:.1f} ms, "
        f"svmhpo {result['svmhpo_sqlite_ms']:.1f} ms (ratio {result['ratio']:.2f}; target <= 30 ms); "
        f"svmhpo without heartbeats {result['svmhpo_no_heartbeat_ms']:.1f} ms"
    )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=200)
    main(parser.parse_args().trials)

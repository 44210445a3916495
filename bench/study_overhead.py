"""Study machinery per trial, with no training: svmhpo's storage and loop versus vanilla Optuna.

Every side runs the same 200 trials (multivariate TPE, median pruner, 10 reports with a pruning
check each) against a fresh SQLite file, side by side in one run, and prints milliseconds per
trial:

- vanilla Optuna on SQLite with default settings (``sqlite:///file``);
- svmhpo's trial loop (:func:`svmhpo.hpo.runner.run_trials`) one trial per fit, with its storage,
  its budget lock, its heartbeats, its pruning watch and the no-op trainer of :mod:`svmhpo.testing`;
- the same without heartbeats, to show what crash recovery costs (vanilla has none).

Target: svmhpo at most 30 ms per trial.

    python -m bench.study_overhead [--trials 200]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import optuna

from svmhpo.hpo.config import StudyConfig
from svmhpo.hpo.objective import BatchObjective
from svmhpo.hpo.runner import run_trials
from svmhpo.hpo.space import make_sampler
from svmhpo.hpo.studies import start_study
from svmhpo.testing import NoOpTrainer, noop_score

REPORTS = 10


def vanilla(url: str, trials: int) -> float:
    """Seconds per trial of plain Optuna with the same sampler, pruner and reports."""
    config = StudyConfig()
    study = optuna.create_study(
        storage=url,
        direction="maximize",
        sampler=make_sampler(config, shared=False),  # the plain TPESampler svmhpo uses alone
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
            value = noop_score(lr, epoch, REPORTS)
            trial.report(value, step=epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    start = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    return (time.perf_counter() - start) / trials


def ours(url: str, trials: int, *, heartbeat: bool = True) -> float:
    """Seconds per trial of svmhpo's trial loop (run_trials) with a no-op trainer."""
    config = StudyConfig().replace(trials=trials, name="overhead")
    config = config.model_copy(update={"training": config.training.model_copy(update={"epochs": REPORTS})})
    if not heartbeat:
        config = config.model_copy(update={"heartbeat_interval": None})  # not a user setting: off for this side
    study = start_study(config, url)
    objective = BatchObjective(config, data=None, batch_trials=1, fit_fn=NoOpTrainer())
    start = time.perf_counter()
    counts = run_trials(study, objective)
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

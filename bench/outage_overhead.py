"""What waiting out database outages costs while the database is up: PostgreSQL, two storages.

Both sides run the same trials (random sampler, 10 reports with a pruning check each, a tell)
against the same PostgreSQL database, alternating, side by side in one run, and print
milliseconds per trial:

- Optuna's ``RDBStorage``, as ``optuna.create_study(storage=url)`` builds it;
- svmhpo's :class:`~svmhpo.hpo.resilience.ResilientRDBStorage` (every call wrapped in the retry).

Target: the ratio at most 1.05.

    python -m bench.outage_overhead [--trials 100] [--url postgresql+psycopg://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import time
import uuid

import optuna
from optuna.storages import RDBStorage

from svmhpo.hpo.resilience import ResilientRDBStorage
from svmhpo.hpo.storage import _engine_kwargs, mask_url, parse_url

URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REPORTS = 10


def per_trial(storage: RDBStorage, trials: int) -> float:
    """Seconds per trial of a plain Optuna loop on ``storage``."""
    name = f"bench-outage-{uuid.uuid4().hex[:8]}"
    study = optuna.create_study(
        study_name=name, storage=storage, direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0)
    )

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("lr", 1e-4, 3.0, log=True)
        for step in range(REPORTS):
            trial.report(x * step, step)
            trial.should_prune()
        return x

    start = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    seconds = (time.perf_counter() - start) / trials
    optuna.delete_study(study_name=name, storage=storage)
    return seconds


def main(trials: int = 100, rounds: int = 3, url: str = URL) -> dict[str, float]:
    """Each side runs ``rounds`` times, alternating; the best round of each counts."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # the same engine settings (connect timeout) on both sides
    kwargs = _engine_kwargs(url, parse_url(url))
    plain = RDBStorage(url, engine_kwargs=kwargs)
    resilient = ResilientRDBStorage(url, shown=mask_url(url), engine_kwargs=kwargs)
    per_trial(plain, 10), per_trial(resilient, 10)  # warm both connection pools
    best = {"plain": float("inf"), "resilient": float("inf")}
    for _ in range(rounds):
        best["plain"] = min(best["plain"], per_trial(plain, trials))
        best["resilient"] = min(best["resilient"], per_trial(resilient, trials))
    result = {
        "plain_ms": best["plain"] * 1e3,
        "resilient_ms": best["resilient"] * 1e3,
        "ratio": best["resilient"] / best["plain"],
    }
    print(
        f"PostgreSQL, {trials} trials x {REPORTS} reports, best of {rounds}: "
        f"RDBStorage {result['plain_ms']:.2f} ms/trial, ResilientRDBStorage {result['resilient_ms']:.2f} ms/trial, "
        f"ratio {result['ratio']:.3f} (target <= 1.05)"
    )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.outage_overhead")
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--url", default=URL)
    args = parser.parse_args()
    main(args.trials, args.rounds, args.url)

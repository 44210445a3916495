"""Worker scaling on PostgreSQL: the same trial budget with 1, 2 and 4 local workers.

Each run is ``svmhpo run --jobs K --no-warm-start`` on a fresh study in the local PostgreSQL
server. Two figures, each as finished trials per second and as a ratio against 1 worker:
``wall`` counts the whole command (every worker process imports torch and Lightning, about 5 s);
``steady`` counts from the first trial's start to the last trial's end, the rate a long study
sees. On a 2-core machine that also hosts PostgreSQL, expect at most about 2×.

    python -m bench.worker_scaling [--trials 60] [--storage postgresql+psycopg://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
from optuna.trial import TrialState

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def one(url: str, jobs: int, trials: int) -> tuple[float, float]:
    name = f"bench-scaling-{jobs}-{uuid.uuid4().hex[:6]}"
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "svmhpo",
            "run",
            "--storage",
            url,
            "--study-name",
            name,
            "--jobs",
            str(jobs),
            "--trials",
            str(trials),
            "--no-warm-start",
            "--quiet",
        ],
        check=True,
        capture_output=True,
        cwd=Path(__file__).parent.parent,
        env=dict(os.environ),
    )
    seconds = time.perf_counter() - start
    study = optuna.load_study(study_name=name, storage=url)
    done = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    optuna.delete_study(study_name=name, storage=url)
    return len(done) / seconds, len(done) / span


def main(trials: int = 60, url: str = PG) -> dict:
    measured = {jobs: one(url, jobs, trials) for jobs in (1, 2, 4)}
    wall_1, steady_1 = measured[1]
    result: dict[str, float] = {}
    parts = []
    for j, (wall, steady) in measured.items():
        result[f"workers{j}_wall_trials_per_s"] = wall
        result[f"workers{j}_steady_trials_per_s"] = steady
        result[f"speedup_{j}"] = steady / steady_1
        result[f"wall_speedup_{j}"] = wall / wall_1
        parts.append(
            f"{j} workers {steady:.2f} trials/s steady ({steady / steady_1:.2f}x), "
            f"{wall:.2f} wall ({wall / wall_1:.2f}x)"
        )
    print(f"worker scaling on PostgreSQL ({trials} trials, {os.cpu_count()} CPUs): " + "; ".join(parts))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--storage", default=PG)
    a = parser.parse_args()
    main(a.trials, a.storage)

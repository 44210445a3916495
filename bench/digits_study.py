"""The product's main job, timed: ``svmhpo run --trials 200`` on digits against the optuna-examples way.

Three sides per seed, each a fresh process on a fresh SQLite file, so imports, the warm start,
the trials and the final refit are all counted:

- ``svmhpo run`` with one trial per fit (``--batch-trials 1``);
- ``svmhpo run`` with the default ``batch_trials`` (batched trials);
- :mod:`bench.examples_way`: a new Trainer and DataLoader per trial, TPE, the median pruner,
  SQLite, on the same split, space and epochs.

Targets: the batched study at ≤ 0.25× the examples way's wall time, with a best validation
accuracy ≥ theirs − 0.005 on every seed.

    python -m bench.digits_study [--trials 200] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from svmhpo.hpo.config import TrainingConfig, bundled_config

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO, TARGET_ACC_GAP = 0.25, 0.005


def _timed(command: list[str], env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True, cwd=ROOT)
    return time.perf_counter() - start, out.stdout


def svmhpo_run(trials: int, seed: int, batch_trials: int) -> dict:
    """``svmhpo run`` on the bundled digits config with ``seed``, in a fresh process and SQLite file."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "digits.toml"
        config.write_text(re.sub(r"(?m)^seed = \d+", f"seed = {seed}", bundled_config("digits").read_text()))
        env = dict(os.environ, SVMHPO_HOME=tmp)
        env.pop("SVMHPO_STORAGE", None)
        command = [sys.executable, "-m", "svmhpo", "run", "--config", str(config), "--trials", str(trials)]
        seconds, out = _timed([*command, "--batch-trials", str(batch_trials), "--json", "--quiet"], env)
    summary = json.loads(out)
    return {
        "seconds": seconds,
        "best_val_acc": summary["best"]["val_acc"],
        "test_acc": summary["final"]["test_acc"],
        "complete": summary["trials"]["complete"],
        "pruned": summary["trials"]["pruned"],
    }


def examples_way(trials: int, seed: int) -> dict:
    seconds, out = _timed(
        [sys.executable, "-m", "bench.examples_way", "--trials", str(trials), "--seed", str(seed)], dict(os.environ)
    )
    return {"seconds": seconds, "best_val_acc": json.loads(out.strip().splitlines()[-1])["best_val_acc"]}


def main(trials: int = 200, seeds: tuple[int, ...] = (0, 1, 2)) -> dict:
    k = TrainingConfig().batch_trials
    runs = []
    for seed in seeds:
        row = {
            "seed": seed,
            "batched": svmhpo_run(trials, seed, k),
            "one_per_fit": svmhpo_run(trials, seed, 1),
            "examples": examples_way(trials, seed),
        }
        row["ratio_batched"] = row["batched"]["seconds"] / row["examples"]["seconds"]
        row["ratio_one_per_fit"] = row["one_per_fit"]["seconds"] / row["examples"]["seconds"]
        row["acc_gap"] = row["batched"]["best_val_acc"] - row["examples"]["best_val_acc"]
        runs.append(row)
        print(
            f"seed {seed}: batched (K={k}) {row['batched']['seconds']:.1f} s, val {row['batched']['best_val_acc']:.4f}"
            f" | one per fit {row['one_per_fit']['seconds']:.1f} s, val {row['one_per_fit']['best_val_acc']:.4f}"
            f" | examples way {row['examples']['seconds']:.1f} s, val {row['examples']['best_val_acc']:.4f}"
            f" | ratios {row['ratio_batched']:.2f} / {row['ratio_one_per_fit']:.2f}",
            flush=True,
        )
    result = {
        "batch_trials": k,
        "seconds": statistics.median(r["batched"]["seconds"] for r in runs),
        "seconds_one_per_fit": statistics.median(r["one_per_fit"]["seconds"] for r in runs),
        "seconds_examples": statistics.median(r["examples"]["seconds"] for r in runs),
        "ratio": statistics.median(r["ratio_batched"] for r in runs),
        "ratio_one_per_fit": statistics.median(r["ratio_one_per_fit"] for r in runs),
        "worst_acc_gap": min(r["acc_gap"] for r in runs),
        "runs": runs,
    }
    print(
        f"svmhpo run --trials {trials} on digits, median of {len(seeds)} seeds: batched {result['seconds']:.1f} s "
        f"= {result['ratio']:.2f}x the examples way ({result['seconds_examples']:.1f} s; target <= {TARGET_RATIO}x); "
        f"one trial per fit {result['seconds_one_per_fit']:.1f} s = {result['ratio_one_per_fit']:.2f}x; "
        f"worst best-val-acc gap {result['worst_acc_gap']:+.4f} (target >= -{TARGET_ACC_GAP})"
    )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    main(args.trials, tuple(args.seeds))

"""An MNIST-shaped study end to end on the training device: one trial per fit against the default K.

Each side is ``svmhpo run`` in a fresh process on a fresh SQLite file (imports, warm start,
trials and refit counted) with the bundled MNIST config on synthetic MNIST-shaped data, stopped
from starting trials after ``--limit`` seconds (``--timeout``) so that both sides fit a lent GPU
machine's minutes: wall time, trials finished, trials per second and the best validation accuracy.

    python -m bench.gpu_study [--data synthetic:70000x784x10] [--trials 200] [--epochs 5] [--limit 65] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from svmhpo.hpo.config import TrainingConfig, bundled_config

ROOT = Path(__file__).resolve().parent.parent


def side(data: str, trials: int, epochs: int, k: int, limit: float) -> dict:
    text = bundled_config("mnist").read_text()
    text = re.sub(r"(?m)^source = .*$", f'source = "{data}"', text)
    text = re.sub(r"(?m)^epochs = \d+", f"epochs = {epochs}", text)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "mnist.toml"
        config.write_text(text)
        env = dict(os.environ, SVMHPO_HOME=tmp)
        env.pop("SVMHPO_STORAGE", None)
        command = [sys.executable, "-m", "svmhpo", "run", "--config", str(config), "--trials", str(trials),
                   "--storage", f"sqlite:///{tmp}/study.db", "--batch-trials", str(k), "--timeout", str(limit),
                   "--json", "--quiet"]  # fmt: skip
        start = time.perf_counter()
        done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
        seconds = time.perf_counter() - start
    summary = json.loads(done.stdout)
    finished = sum(summary["trials"][s] for s in ("complete", "pruned", "failed"))
    return {
        "k": k,
        "seconds": round(seconds, 1),
        "finished": finished,
        "trials_per_s": round(finished / seconds, 2),
        "best_val_acc": (summary["best"] or {}).get("val_acc"),
    }


def main(data: str, trials: int, epochs: int, limit: float) -> dict:
    k = TrainingConfig().batch_trials
    result = {"data": data, "trials": trials, "epochs": epochs, "limit_s": limit}
    for name, size in (("one_per_fit", 1), ("batched", k)):
        result[name] = side(data, trials, epochs, size, limit)
        print(f"{name} (K={size}): {result[name]}", flush=True)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="synthetic:70000x784x10")
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--limit", type=float, default=65.0, help="seconds after which a side starts no trial")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = main(args.data, args.trials, args.epochs, args.limit)
    if args.json:
        print(json.dumps(figures))

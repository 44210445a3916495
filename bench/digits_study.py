"""The product's main job, timed: ``svmhpo run --trials 200`` on digits, warm start included.

Runs the real command line in a fresh process on a fresh SQLite file, so imports, the warm
start, 200 pruned Lightning trials and the final refit are all counted. Target: under 60 s on
2 CPU cores.

    python -m bench.digits_study [--trials 200]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main(trials: int = 200) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, SVMHPO_HOME=tmp)
        env.pop("SVMHPO_STORAGE", None)
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "svmhpo", "run", "--trials", str(trials), "--json", "--quiet"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent.parent,
        )
        seconds = time.perf_counter() - start
    summary = json.loads(out.stdout)
    result = {
        "seconds": seconds,
        "trials": summary["trials"],
        "best_val_acc": summary["best"]["val_acc"],
        "test_acc": summary["final"]["test_acc"],
        "baseline_test_acc": summary["baseline"]["test_acc"],
    }
    t = summary["trials"]
    print(
        f"svmhpo run --trials {trials} on digits: {seconds:.1f} s (target < 60 s); {t['complete']} complete, "
        f"{t['pruned']} pruned; best val_acc {result['best_val_acc']:.4f}, test acc {result['test_acc']:.4f} "
        f"(LinearSVC {result['baseline_test_acc']:.4f})"
    )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=200)
    main(parser.parse_args().trials)

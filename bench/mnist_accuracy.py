"""Accuracy at scale: a tuned study on the MNIST shape against LinearSVC on the same split.

The study uses the shipped ``mnist`` config with its data swapped for ``synthetic:70000x784x10`` (or real
MNIST with ``--data mnist`` when it is cached), a small budget, and the config's baseline grid.
Published references for linear models on raw MNIST pixels are 88–92 %.

    python -m bench.mnist_accuracy [--data synthetic:70000x784x10] [--trials 12]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from svmhpo.hpo.config import load_config
from svmhpo.hpo.service import run_study


def main(source: str = "synthetic:70000x784x10", trials: int = 12, epochs: int = 5) -> dict:
    config = load_config("mnist").replace(
        name="mnist-bench", trials=trials, data={"source": source}, training={"epochs": epochs}
    )
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = run_study(config, f"sqlite:///{Path(tmp) / 'mnist.db'}")
        seconds = time.perf_counter() - start
    result = {
        "data": source,
        "seconds": seconds,
        "test_acc": summary["final"]["test_acc"],
        "baseline_test_acc": summary["baseline"]["test_acc"],
        "baseline_C": summary["baseline"]["C"],
        "ratio": summary["final"]["test_acc"] / summary["baseline"]["test_acc"],
    }
    print(
        f"{source}, {trials} trials x {epochs} epochs in {seconds:.0f} s: tuned svmhpo test acc "
        f"{result['test_acc']:.4f} vs LinearSVC (C={result['baseline_C']}) {result['baseline_test_acc']:.4f}"
    )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="synthetic:70000x784x10")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=5)
    a = parser.parse_args()
    main(a.data, a.trials, a.epochs)

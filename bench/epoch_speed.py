"""One training epoch on the MNIST shape (60k × 784, 10 classes): svmhpo through Lightning versus sklearn.

svmhpo trains one epoch (Crammer–Singer hinge, SGD) at batch sizes 64, 256 and 1024 on
device-resident tensors; scikit-learn's ``SGDClassifier(loss="hinge")`` makes one ``partial_fit``
pass over the same standardised training split. Side by side, in one run, on the synthetic
stand-in ``synthetic:70000x784x10`` (real MNIST when ``--data mnist`` and it is cached).
Target on CPU: at most 2× sklearn's time at batch size 256; on a GPU at least 10× faster than
sklearn on CPU.

    python -m bench.epoch_speed [--data synthetic:70000x784x10] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from sklearn.linear_model import SGDClassifier

from svmhpo.svm.data import load_dataset, split_dataset
from svmhpo.svm.params import SVMParams
from svmhpo.svm.training import fit

BATCH_SIZES = (64, 256, 1024)


def best_of(fn, repeats: int = 2) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def main(source: str = "synthetic:70000x784x10", device: str | None = None) -> dict:
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    split = split_dataset(load_dataset(source), val_size=0.01, test_size=1 / 7)
    data = split.to_device(device)
    fit(SVMParams(), data, epochs=1, batch_size=256, validate=False)  # warm-up
    ours = {
        bs: best_of(lambda bs=bs: fit(SVMParams(), data, epochs=1, batch_size=bs, validate=False)) for bs in BATCH_SIZES
    }
    classes = np.arange(split.n_classes)
    sklearn_s = best_of(
        lambda: SGDClassifier(loss="hinge", random_state=0).partial_fit(split.X_train, split.y_train, classes=classes)
    )
    result = {
        "data": f"{source} ({len(split.X_train)} x {split.n_features} train)",
        "device": device,
        "sklearn_partial_fit_s": sklearn_s,
        **{f"ours_bs{bs}_s": s for bs, s in ours.items()},
        "ratio_bs256": ours[256] / sklearn_s,
    }
    rows = ", ".join(f"bs {bs}: {s:.3f} s" for bs, s in ours.items())
    print(
        f"one epoch on {result['data']} [{device}]: svmhpo {rows}; sklearn SGDClassifier partial_fit "
        f"{sklearn_s:.3f} s; ratio at bs 256 {result['ratio_bs256']:.2f}x (target <= 2x on CPU)"
    )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="synthetic:70000x784x10")
    parser.add_argument("--device")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    a = parser.parse_args()
    figures = main(a.data, a.device)
    if a.json:
        print(json.dumps(figures))

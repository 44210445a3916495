"""Trials per second with K trials per batched fit, K = 1, 8, 32 and 128, on an MNIST-shaped set.

Runs the study loop of one process (``run_trials``: ask, train, report and prune every epoch,
tell) on a fresh SQLite study for each K, with the data loaded once beforehand and no warm start
or refit, so the figure is the trial loop's own rate. K = 1 is one trial per Lightning fit.

    python -m bench.batch_throughput [--data synthetic:70000x784x10] [--epochs 2] [--ks 1 8 32 128] [--batches 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings

import optuna

from svmhpo.hpo.config import load_config
from svmhpo.hpo.modelside import load_study_data
from svmhpo.hpo.objective import BatchObjective
from svmhpo.hpo.runner import run_trials
from svmhpo.hpo.studies import start_study
from svmhpo.svm.data import training_device


def rate(config, data, k: int, trials: int) -> float:
    """Finished trials per second of the trial loop at ``batch_trials = k``."""
    config = config.replace(trials=trials, name=f"throughput-{k}", training={"batch_trials": k})
    with tempfile.TemporaryDirectory() as tmp:
        study = start_study(config, f"sqlite:///{tmp}/bench.db")
        start = time.perf_counter()
        counts = run_trials(study, BatchObjective(config, data))
        return counts.finished / (time.perf_counter() - start)


def _peak_mib() -> float | None:
    """The GPU memory the fits held at most since the last call (``None`` on the CPU)."""
    import torch

    if not torch.cuda.is_available():
        return None
    peak = torch.cuda.max_memory_allocated() / 2**20
    torch.cuda.reset_peak_memory_stats()
    return round(peak, 1)


def main(
    data_source: str = "synthetic:70000x784x10",
    epochs: int = 2,
    ks: tuple[int, ...] = (1, 8, 32, 128),
    batches: int = 2,
) -> dict:
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = load_config("mnist").replace(data={"source": data_source}, training={"epochs": epochs})
    config = config.replace(search={"batch_size": [256]}, warm_start={"enabled": False})
    data = load_study_data(config)
    device = training_device()
    result: dict = {"data": data_source, "epochs": epochs, "device": device, "trials_per_s": {}, "gpu_peak_mib": {}}
    _peak_mib()
    for k in ks:
        trials = max(batches * k, 8)
        result["trials_per_s"][k] = rate(config, data, k, trials)
        result["gpu_peak_mib"][k] = _peak_mib()
        print(f"K={k}: {trials} trials, {result['trials_per_s'][k]:.2f} trials/s", flush=True)
    base = result["trials_per_s"][ks[0]]
    result["speedup"] = {k: v / base for k, v in result["trials_per_s"].items()}
    result["speedup_max"] = max(result["speedup"].values())
    print(
        f"trials/s on {data_source} ({device}, {epochs} epochs, batch 256): "
        + ", ".join(f"K={k} {v:.2f} ({result['speedup'][k]:.1f}x)" for k, v in result["trials_per_s"].items())
    )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="synthetic:70000x784x10")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--batches", type=int, default=2, help="batches of K trials per K (at least 8 trials)")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = parser.parse_args()
    figures = main(args.data, args.epochs, tuple(args.ks), args.batches)
    if args.json:
        print(json.dumps(figures))

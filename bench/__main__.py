"""Every benchmark of the project, one table of ratios: ``python -m bench``.

Each benchmark measures its two sides in the same run. The table is printed and written as JSON
to ``bench/results/latest.json`` (and a dated copy), with the machine it ran on.

    python -m bench [--quick] [--skip NAME ...]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
from pathlib import Path

import torch

from bench import (
    batch_throughput,
    digits_study,
    epoch_speed,
    lightning_vs_loop,
    mnist_accuracy,
    outage_overhead,
    read_table,
    selection_quality,
    study_overhead,
    study_storage,
    warm_start,
    worker_scaling,
)

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="smaller budgets, for a smoke run")
    parser.add_argument("--skip", nargs="*", default=[], help="benchmarks to leave out")
    args = parser.parse_args(argv)
    q = args.quick
    plan = {
        "lightning_vs_loop": lambda: lightning_vs_loop.main(),
        "study_overhead": lambda: study_overhead.main(50 if q else 200),
        "outage_overhead": lambda: outage_overhead.main(30 if q else 100),
        "digits_study": lambda: digits_study.main(50 if q else 200, (0,) if q else (0, 1, 2)),
        "study_storage": lambda: study_storage.main(50 if q else 200, (16,) if q else (1, 16, 64)),
        "selection_quality": lambda: selection_quality.main(
            (0,) if q else (0, 1, 2, 3, 4), 50 if q else 200, 20 if q else 60
        ),
        "batch_throughput": lambda: batch_throughput.main(
            "synthetic:20000x784x10" if q else "synthetic:70000x784x10", 2, (1, 8) if q else (1, 8, 32, 128)
        ),
        "warm_start": lambda: warm_start.main(2 if q else 5, 20 if q else 40),
        "epoch_speed": lambda: epoch_speed.main("synthetic:20000x784x10" if q else "synthetic:70000x784x10"),
        "worker_scaling": lambda: worker_scaling.main(20 if q else 60),
        "read_table": lambda: read_table.main(20_000 if q else 70_000),
        "mnist_accuracy": lambda: mnist_accuracy.main(
            "synthetic:20000x784x10" if q else "synthetic:70000x784x10", 6 if q else 12
        ),
    }
    results = {}
    for name, run in plan.items():
        if name in args.skip:
            continue
        print(f"--- {name}", flush=True)
        results[name] = run()
    table = [
        ("Lightning vs plain loop (digits, 20 epochs)", "lightning_vs_loop", "ratio", "<= 1.3x"),
        ("study overhead per trial, ms (SQLite)", "study_overhead", "svmhpo_sqlite_ms", "<= 30 ms"),
        ("  ... vs vanilla Optuna", "study_overhead", "ratio", "< 1"),
        ("outage retries vs plain RDBStorage per trial (PostgreSQL)", "outage_overhead", "ratio", "<= 1.05"),
        ("svmhpo run --trials 200 on digits, s (batched, median of seeds)", "digits_study", "seconds", "< 60 s"),
        ("  ... vs the optuna-examples way", "digits_study", "ratio", "<= 0.25x"),
        ("  ... one trial per fit vs the examples way", "digits_study", "ratio_one_per_fit", ""),
        ("  ... best val acc, worst gap to the examples way", "digits_study", "worst_acc_gap", ">= -0.005"),
        ("  ... epochs trained vs one trial per fit, worst seed", "digits_study", "epochs_ratio", "<= 1.2x"),
        (
            "  ... best val acc, worst gap to one trial per fit",
            "digits_study",
            "worst_acc_gap_one_per_fit",
            ">= -0.005",
        ),
        (
            "digits study, committed transactions per trial (PostgreSQL)",
            "study_storage",
            "xact_commit_per_trial",
            "<= 10",
        ),
        ("  ... SQL statements per trial", "study_storage", "statements_per_trial", ""),
        ("  ... PostgreSQL vs SQLite wall time", "study_storage", "pg_vs_sqlite", "<= 1.3x"),
        ("digits: refit test acc, holdout (mean of 5 seeds)", "selection_quality", "digits_holdout", ""),
        ("  ... 3-fold cross-validated trials", "selection_quality", "digits_cv3", ""),
        ("  ... 5-fold cross-validated trials", "selection_quality", "digits_cv5", ""),
        ("trials/s, best K vs K = 1 (MNIST shape)", "batch_throughput", "speedup_max", ""),
        ("warm start: trials to 0.96 (median, warm)", "warm_start", "warm_median_trials", "< cold"),
        ("  ... cold", "warm_start", "cold_median_trials", ""),
        ("epoch at bs 256 vs sklearn partial_fit", "epoch_speed", "ratio_bs256", "<= 2x (CPU)"),
        ("2 workers vs 1 on PostgreSQL, steady throughput", "worker_scaling", "speedup_2", "~cores"),
        ("4 workers vs 1 on PostgreSQL, steady throughput", "worker_scaling", "speedup_4", "~cores"),
        ("tuned test acc / LinearSVC (MNIST shape)", "mnist_accuracy", "ratio", ">= 1"),
        ("reading an MNIST-sized CSV vs plain pandas", "read_table", "ratio", "<= 3x"),
        ("  ... exact (cell by cell) vs plain pandas", "read_table", "ratio_exact", ""),
    ]
    print("\n| benchmark | value | target |\n|---|---|---|")
    for label, bench, key, target in table:
        if bench in results:
            print(f"| {label} | {results[bench][key]:.3g} | {target} |")
    record = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "quick": q,
        "results": results,
    }
    RESULTS.mkdir(exist_ok=True)
    text = json.dumps(record, indent=2, default=str)
    (RESULTS / "latest.json").write_text(text)
    (RESULTS / f"{record['date'][:10]}{'-quick' if q else ''}.json").write_text(text)
    print(f"\nmachine: {record['machine']}; written to {RESULTS / 'latest.json'}")
    return record


if __name__ == "__main__":
    main()

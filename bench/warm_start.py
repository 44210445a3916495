"""Does the LR-finder warm start help? Warm versus cold TPE studies on digits, across seeds.

For each seed, two studies with the same sampler seed run side by side in this process: one
warm-started (the LR-finder picks enqueued first), one cold. The figure is the number of finished
trials each needs before its best validation accuracy reaches the target (0.96); the medians
over seeds are compared. Also printed: the validation accuracy of the warm-start trials.

    python -m bench.warm_start [--seeds 5] [--trials 40] [--target 0.96]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import optuna
from optuna.trial import TrialState

from svmhpo.hpo.config import StudyConfig, load_config
from svmhpo.hpo.service import run_study
from svmhpo.hpo.storage import open_storage


def trials_to_reach(study: optuna.Study, target: float) -> int | None:
    """1-based count of finished trials when the best value first reached ``target``."""
    finished = 0
    for t in sorted(study.trials, key=lambda t: t.datetime_complete or t.datetime_start):
        if t.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            continue
        finished += 1
        if t.state == TrialState.COMPLETE and t.value is not None and t.value >= target:
            return finished
    return None


def one_study(config: StudyConfig, url: str, warm: bool) -> optuna.Study:
    run_study(config, url, warm=warm)
    return optuna.load_study(study_name=config.name, storage=open_storage(url))


def main(seeds: int = 5, trials: int = 40, target: float = 0.96) -> dict:
    base = load_config(None).replace(cv=1)  # holdout trials: "val acc 0.96" as this benchmark always measured it
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'warm.db'}"
        for seed in range(seeds):
            row = {"seed": seed}
            for warm in (True, False):
                config = base.replace(name=f"{'warm' if warm else 'cold'}-{seed}", seed=seed, trials=trials)
                study = one_study(config, url, warm)
                row["warm" if warm else "cold"] = trials_to_reach(study, target)
                if warm:
                    row["warm_trial_acc"] = [
                        round(t.value, 4)
                        for t in study.trials
                        if t.user_attrs.get("source") == "warm_start" and t.value is not None
                    ]
            rows.append(row)
            print(row, flush=True)
    never = trials + 1  # a study that never reached the target counts as one past its budget
    warm_median = statistics.median(r["warm"] or never for r in rows)
    cold_median = statistics.median(r["cold"] or never for r in rows)
    warm_accs = [a for r in rows for a in r["warm_trial_acc"]]
    result = {
        "target": target,
        "warm_median_trials": warm_median,
        "cold_median_trials": cold_median,
        "warm_trial_acc_min": min(warm_accs) if warm_accs else None,
        "warm_trial_acc_best": max(warm_accs) if warm_accs else None,
        "rows": rows,
    }
    print(
        f"trials to reach val_acc {target} (median of {seeds} seeds): warm {warm_median}, cold {cold_median}; "
        f"warm-start trials val_acc {result['warm_trial_acc_min']}..{result['warm_trial_acc_best']}"
    )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--target", type=float, default=0.96)
    a = parser.parse_args()
    main(a.seeds, a.trials, a.target)

"""How well a study picks its model: holdout against 3- and 5-fold cross-validated trials.

A holdout trial is scored on one validation split (144 samples on digits, steps of 0.7 %), so
many trials tie and the one refitted is partly luck. With ``[study] cv = k`` each trial's value
is the mean over k folds of the training and validation samples, the folds trained as members
of one batched fit (:mod:`svmhpo.svm.folds`). This runs ``svmhpo run`` end to end (fresh
process, fresh SQLite file) for holdout, ``--cv 3`` and ``--cv 5`` on 5 seeds (each seed its
own split, folds and sampler) on digits and on a larger synthetic set, and prints for each the
refit's test accuracy (mean and spread across seeds), how many trials tied at the best value,
and the wall time.

    python -m bench.selection_quality [--seeds 0 1 2 3 4] [--digits-trials 200] [--large-trials 60]
"""

from __future__ import annotations

import argparse
import re
import statistics
from pathlib import Path

import optuna

from bench.digits_study import run_fresh
from svmhpo.hpo.config import bundled_config

ROOT = Path(__file__).resolve().parent.parent
#: The larger set: 6,000 samples of a 5-class synthetic problem with 40 features (train 4,320).
LARGE = "synthetic:6000x40x5"
MODES = (1, 3, 5)


def run(source: str, trials: int, seed: int, cv: int) -> dict:
    """``svmhpo run`` on the bundled digits config with ``source``, ``seed`` and ``cv``, in a fresh process."""
    text = bundled_config("digits").read_text()
    text = re.sub(r"(?m)^seed = \d+", f"seed = {seed}", text)
    text = re.sub(r'(?m)^source = ".*"', f'source = "{source}"', text)
    text = re.sub(r"(?m)^cv = \d+", "cv = 1", text)  # the shipped config's k: --cv below sets it

    def completed(url: str) -> list[float]:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.load_study(study_name="digits", storage=url)
        return [t.value for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))]

    seconds, summary, values = run_fresh(text, ["--trials", str(trials), "--cv", str(cv)], completed)
    best = max(values)
    return {
        "seconds": seconds,
        "test_acc": summary["final"]["test_acc"],
        "best_val": best,
        "tied_at_best": sum(v == best for v in values),
    }


def main(seeds: tuple[int, ...], digits_trials: int, large_trials: int) -> dict:
    result: dict = {}
    for source, trials in (("digits", digits_trials), (LARGE, large_trials)):
        for cv in MODES:
            runs = [run(source, trials, seed, cv) for seed in seeds]
            tests = [r["test_acc"] for r in runs]
            row = {
                "test_acc_mean": statistics.fmean(tests),
                "test_acc_std": statistics.pstdev(tests),
                "test_acc_min": min(tests),
                "tied_at_best": statistics.median(r["tied_at_best"] for r in runs),
                "seconds": statistics.median(r["seconds"] for r in runs),
                "runs": runs,
            }
            result[f"{source} cv={cv}"] = row
            if source == "digits":  # the figures bench/__main__'s table prints
                result["digits_holdout" if cv == 1 else f"digits_cv{cv}"] = row["test_acc_mean"]
            label = "holdout" if cv == 1 else f"{cv}-fold"
            print(
                f"{source}, {trials} trials, {label}: test acc {row['test_acc_mean']:.4f} ± {row['test_acc_std']:.4f}"
                f" (worst {row['test_acc_min']:.4f}) over {len(seeds)} seeds; trials tied at the best value"
                f" {row['tied_at_best']:g} (median); {row['seconds']:.1f} s (median)",
                flush=True,
            )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--digits-trials", type=int, default=200)
    parser.add_argument("--large-trials", type=int, default=60)
    args = parser.parse_args()
    main(tuple(args.seeds), args.digits_trials, args.large_trials)

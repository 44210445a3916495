"""What svmhpo stores on a study, and reading it back: the ``studies``, ``best`` and ``report`` commands.

A study carries its config (``config``), the warm start's LR-finder curves (``warm_start``), the
best trial refit and scored on the test set (``final``) and the ``LinearSVC`` baseline
(``baseline``) as user attributes, so that the stock ``optuna`` command line and
optuna-dashboard see them too. This module imports neither torch nor Lightning, so that the
commands that only read studies start in about a second.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

from svmhpo.storage import open_storage
from svmhpo.study import budget, count_trials, load_study

__all__ = [
    "BASELINE_ATTR",
    "FINAL_ATTR",
    "WARM_START_ATTR",
    "best_summary",
    "best_trial",
    "list_studies",
    "summary",
    "write_study_report",
]

FINAL_ATTR = "final"
BASELINE_ATTR = "baseline"
WARM_START_ATTR = "warm_start"


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The best complete trial, or ``None`` when every trial was pruned or failed."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    return study.best_trial


def summary(study: optuna.Study) -> dict[str, Any]:
    """The best trial, its test result, the baseline and the trial counts, as JSON-ready data."""
    counts = count_trials(study)
    attrs = study.user_attrs
    best = best_trial(study)
    return {
        "study": study.study_name,
        "budget": budget(attrs),
        "trials": {
            "complete": counts.complete,
            "pruned": counts.pruned,
            "failed": counts.failed,
            "running": counts.running,
            "waiting": counts.waiting,
        },
        "best": None if best is None else {"trial": best.number, "val_acc": best.value, "params": best.params},
        "final": attrs.get(FINAL_ATTR),
        "baseline": attrs.get(BASELINE_ATTR),
        "warm_start": {k: v.get("chosen_lr") for k, v in (attrs.get(WARM_START_ATTR) or {}).items()},
    }


def best_summary(name: str, url: str | None = None) -> dict[str, Any]:
    """:func:`summary` of the study ``name``."""
    study, _ = load_study(name, url)
    return summary(study)


def list_studies(url: str | None = None) -> list[dict[str, Any]]:
    """Every study in the storage with its trial counts and best value."""
    storage = open_storage(url, heartbeat_interval=None)
    rows = []
    for s in optuna.get_all_study_summaries(storage, include_best_trial=True):
        study = optuna.load_study(study_name=s.study_name, storage=storage)
        counts = count_trials(study)
        rows.append(
            {
                "study": s.study_name,
                "complete": counts.complete,
                "pruned": counts.pruned,
                "failed": counts.failed,
                "budget": budget(s.user_attrs),
                "best_val_acc": counts.best,
                "test_acc": (s.user_attrs.get(FINAL_ATTR) or {}).get("test_acc"),
            }
        )
    return rows


def write_study_report(name: str, url: str | None = None, out_dir: str = "reports") -> str:
    """Write the HTML report of study ``name`` into ``out_dir``; return its path."""
    from svmhpo.report import write_report

    study, _ = load_study(name, url)
    return str(write_report(study, out_dir))

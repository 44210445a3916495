"""Reading studies back: the ``studies``, ``best`` and ``report`` commands.

What a study holds is defined in :mod:`svmhpo.hpo.records`. This module imports neither torch
nor Lightning, so that the commands that only read studies start in about a second.
"""

from __future__ import annotations

from typing import Any

import optuna

from svmhpo.hpo import records
from svmhpo.hpo.records import metric_key
from svmhpo.hpo.storage import open_storage
from svmhpo.hpo.studies import count_trials, read_study, summary

__all__ = ["best_summary", "list_studies", "list_trials", "summary", "write_study_report"]


def best_summary(name: str, url: str | None = None) -> dict[str, Any]:
    """:func:`summary` of the study ``name``."""
    return summary(read_study(name, url))


def list_studies(url: str | None = None) -> list[dict[str, Any]]:
    """Every study in the storage with its trial counts, its metric, its best value and the refit's
    test score in that metric."""
    storage = open_storage(url)
    rows = []
    for s in optuna.get_all_study_summaries(storage, include_best_trial=True):
        study = optuna.load_study(study_name=s.study_name, storage=storage)
        counts = count_trials(study)
        metric = records.metric(s.user_attrs)
        final = records.final(s.user_attrs) or {}
        rows.append(
            {
                "study": s.study_name,
                "complete": counts.complete,
                "pruned": counts.pruned,
                "failed": counts.failed,
                "running": counts.running,
                "budget": records.budget(s.user_attrs),
                "metric": metric,
                "best": counts.best,
                "test": final.get(metric_key(metric, "test"), final.get("test_acc")),
            }
        )
    return rows


def list_trials(name: str, url: str | None = None) -> list[dict[str, Any]]:
    """Every trial of study ``name``: number, state, value (and, cross-validated, the fold scores and
    their standard deviation), epochs run, parameters, seed, worker, times."""
    study = read_study(name, url)
    names = sorted({key for t in study.get_trials(deepcopy=False) for key in t.params})
    folded = any(records.CV_SCORES in t.user_attrs for t in study.get_trials(deepcopy=False))
    rows = []
    for t in study.get_trials(deepcopy=False):
        done, start = t.datetime_complete, t.datetime_start
        seconds = (done - start).total_seconds() if done and start else None
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value,
                **(_folds(t) if folded else {}),
                "epochs": len(t.intermediate_values),
                **{key: t.params.get(key) for key in names},
                "seed": records.stored_seed(t),
                "worker": records.trial_worker(t),
                "started": t.datetime_start.isoformat(timespec="seconds") if t.datetime_start else None,
                "seconds": None if seconds is None else round(seconds, 3),
                "diverged": records.diverged(t) is not None,
            }
        )
    return rows


def _folds(trial) -> dict[str, Any]:
    """A cross-validated trial's fold scores and their standard deviation (its value is their mean)."""
    return {"cv_scores": trial.user_attrs.get(records.CV_SCORES), "cv_std": trial.user_attrs.get(records.CV_STD)}


def write_study_report(
    name: str, url: str | None = None, out: str = "reports", *, plotlyjs: str = "embed", force: bool = False
) -> str:
    """Write the HTML report of study ``name`` to ``out`` (a ``.html`` file or a folder); return its path.

    See :func:`~svmhpo.view.report.write_report` for ``plotlyjs`` and ``force``.
    """
    from svmhpo.view.report import write_report

    return str(write_report(read_study(name, url), out, plotlyjs=plotlyjs, force=force))

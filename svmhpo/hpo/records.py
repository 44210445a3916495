"""Everything svmhpo stores on a study and its trials: the names, and typed readers and writers.

A study is read by svmhpo's own commands, by workers on other machines, by the stock ``optuna``
command line and by optuna-dashboard, so what it holds is a format. This module is its one home:
every attribute name is defined here, and the rest of the package reads and writes through these
functions instead of spelling the names.

Study user attributes:

- ``config``: the :class:`~svmhpo.hpo.config.StudyConfig` the study was created with (its
  ``trials`` is the budget);
- ``metric``: the optimised metric's name, :data:`METRIC`;
- ``warm_start``: the LR-finder curves and picked rates, by optimizer;
- ``final``: the best trial refit on train+validation and scored once on the test set;
- ``baseline``: scikit-learn's ``LinearSVC`` on the same split.

Trial user attributes: ``seed`` (which reproduces the fit), ``worker`` (the process that ran it),
``diverged`` (the reason, on trials pruned for a NaN/inf loss), ``fail_reason`` (on a batch
member whose fit raised) and ``source`` (``warm_start`` on
the trials the warm start enqueued). Optuna's retry callback writes the system attribute
``failed_trial`` on a re-queued trial. This module imports neither torch nor Lightning.
"""

from __future__ import annotations

import os
import re
import socket
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from svmhpo.svm.params import VAL_ACC

__all__ = [
    "METRIC",
    "WORKER_ID",
    "baseline",
    "budget",
    "diverged",
    "file_safe",
    "final",
    "is_warm_start",
    "mark_diverged",
    "retried_from",
    "set_baseline",
    "set_budget",
    "set_config",
    "set_fail_reason",
    "set_final",
    "set_trial_origin",
    "set_warm_start",
    "stored_config",
    "stored_seed",
    "trial_seed",
    "trial_worker",
    "warm_start",
]

#: The metric a study maximises: the validation accuracy the module logs every epoch.
METRIC = VAL_ACC
#: This process's identity, stored on every trial it runs and every refit it makes.
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"

# study user attributes
CONFIG = "config"
METRIC_NAME = "metric"
WARM_START = "warm_start"
FINAL = "final"
BASELINE = "baseline"
# trial user attributes
SEED = "seed"
WORKER = "worker"
DIVERGED = "diverged"
SOURCE = "source"
WARM_START_SOURCE = "warm_start"
# trial system attributes written by Optuna
FAILED_TRIAL = "failed_trial"
FAIL_REASON = "fail_reason"

Attrs = dict[str, Any]


def _attrs(holder: optuna.Study | Attrs) -> Attrs:
    """User attributes of a study, or a mapping of them (a ``StudySummary``'s)."""
    return holder.user_attrs if isinstance(holder, optuna.Study) else holder


def file_safe(name: str) -> str:
    """A study name as part of a file name: all but ASCII letters, digits, ``.``, ``-``, ``_`` become ``_``.

    Study names are free text (``a/b``, ``<script>``, non-ASCII); files named after them (the
    model zip, the HTML report) must stay in their folder and be plain.
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "study"


# --- study ---------------------------------------------------------------------------------------
def stored_config(holder: optuna.Study | Attrs) -> dict[str, Any] | None:
    """The stored config in its JSON form, or ``None`` on a study svmhpo did not create."""
    return _attrs(holder).get(CONFIG)


def set_config(study: optuna.Study, config: dict[str, Any]) -> None:
    """Record the config (JSON form) and the metric on a new study."""
    study.set_user_attr(CONFIG, config)
    study.set_user_attr(METRIC_NAME, METRIC)


def budget(holder: optuna.Study | Attrs) -> int | None:
    """The study's trial budget: finished (complete + pruned) trials over every worker and run."""
    return (stored_config(holder) or {}).get("trials")


def set_budget(study: optuna.Study, trials: int) -> None:
    """Change the stored budget, the one part of a stored config that may change."""
    study.set_user_attr(CONFIG, dict(stored_config(study) or {}, trials=trials))


def warm_start(holder: optuna.Study | Attrs) -> dict[str, dict] | None:
    """The LR-finder curves by optimizer (``lr``, ``loss``, ``chosen_lr``, ``lightning_suggestion``)."""
    return _attrs(holder).get(WARM_START)


def set_warm_start(study: optuna.Study, curves: dict[str, dict]) -> None:
    study.set_user_attr(WARM_START, curves)


def final(holder: optuna.Study | Attrs) -> dict[str, Any] | None:
    """The refit of the best trial: ``trial``, ``params``, ``val_acc``, ``test_acc``, ``test_f1``, model."""
    return _attrs(holder).get(FINAL)


def set_final(study: optuna.Study, result: dict[str, Any]) -> None:
    study.set_user_attr(FINAL, result)


def baseline(holder: optuna.Study | Attrs) -> dict[str, Any] | None:
    """The ``LinearSVC`` baseline: ``model``, ``C``, ``val_acc``, ``test_acc``, ``test_f1``."""
    return _attrs(holder).get(BASELINE)


def set_baseline(study: optuna.Study, result: dict[str, Any]) -> None:
    study.set_user_attr(BASELINE, result)


# --- trials --------------------------------------------------------------------------------------
def set_trial_origin(trial: optuna.Trial, seed: int) -> None:
    """Record the seed that reproduces ``trial``'s fit and the worker that runs it."""
    trial.set_user_attr(SEED, seed)
    trial.set_user_attr(WORKER, WORKER_ID)


def stored_seed(trial: FrozenTrial) -> int | None:
    """The seed stored on ``trial``, or ``None`` (a trial asked by another tool)."""
    seed = trial.user_attrs.get(SEED)
    return None if seed is None else int(seed)


def trial_seed(trial: FrozenTrial, default: int) -> int:
    return int(trial.user_attrs.get(SEED, default))


def trial_worker(trial: FrozenTrial) -> str | None:
    return trial.user_attrs.get(WORKER)


def mark_diverged(trial: optuna.Trial, reason: str) -> None:
    trial.set_user_attr(DIVERGED, reason)


def diverged(trial: FrozenTrial) -> str | None:
    return trial.user_attrs.get(DIVERGED)


def warm_start_trial_attrs() -> Attrs:
    """User attributes of a trial the warm start enqueues."""
    return {SOURCE: WARM_START_SOURCE}


def is_warm_start(trial: FrozenTrial) -> bool:
    return trial.user_attrs.get(SOURCE) == WARM_START_SOURCE


def retried_from(trial: FrozenTrial) -> int | None:
    """The number of the failed trial this one re-runs, set by Optuna's retry callback."""
    return trial.system_attrs.get(FAILED_TRIAL)


def set_fail_reason(trial: optuna.Trial, reason: str) -> None:
    """Record why a batch member failed (``study.optimize`` logs it but stores nothing)."""
    trial.set_user_attr(FAIL_REASON, reason)


def fail_reason(trial: FrozenTrial) -> str | None:
    return trial.user_attrs.get(FAIL_REASON) or trial.system_attrs.get(FAIL_REASON)

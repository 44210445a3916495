"""Everything svmhpo stores on a study and its trials: the names, and typed readers and writers.

A study is read by svmhpo's own commands, by workers on other machines, by the stock ``optuna``
command line and by optuna-dashboard, so what it holds is a format. This module is its one home:
every attribute name is defined here, and the rest of the package reads and writes through these
functions instead of spelling the names.

Study user attributes are what a person reads, in ``optuna studies``, in the dashboard's "Study
User Attributes" and in ``svmhpo studies``, so each is a line or two:

- ``metric``: the optimised metric's short name (``val_acc``, ``val_balanced_acc``, ``val_macro_f1``:
  :func:`~svmhpo.svm.params.metric_key`), read back by :func:`metric`;
- ``budget``: the trial budget (finished trials over every worker and run), which may change;
- ``data``: the data set's name;
- ``warm_start``: the learning rate the LR finder picked, by optimizer;
- ``final``: the best trial refit on train+validation and scored once on the test set;
- ``baseline``: scikit-learn's ``LinearSVC`` on the same split.

Study system attributes hold what machines read and no person wants printed:

- ``svmhpo:config``: the :class:`~svmhpo.hpo.config.StudyConfig` the study was created with;
- ``svmhpo:lr_finder``: the LR-finder curves (about 17 kB of JSON), by optimizer.

Studies written by svmhpo 0.1.0 before this layout (config and curves as user attributes) are
still read.

Trial user attributes: ``seed`` (which reproduces the fit), ``worker`` (the process that ran it),
``diverged`` (the reason, on trials pruned for a NaN/inf loss), ``fail_reason`` (on a batch
member whose fit raised) and ``source`` (``warm_start`` on
the trials the warm start enqueued). Trial system attribute ``svmhpo:process``: which process on
the worker's host it was (:func:`process_token`). Optuna's retry callback writes the system
attribute ``failed_trial`` on a re-queued trial. This module imports neither torch nor Lightning.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial

from svmhpo.hpo.handle import trial_id
from svmhpo.svm.params import METRICS, metric_key, metric_title

if TYPE_CHECKING:
    from svmhpo.hpo.handle import StudyHandle

__all__ = [
    "WORKER_ID",
    "WORKER_PROCESS",
    "baseline",
    "budget",
    "diverged",
    "drop_artifact_record",
    "feature_names",
    "features",
    "file_safe",
    "final",
    "fit_seed",
    "is_warm_start",
    "lr_finder_curves",
    "mark_diverged",
    "metric",
    "metric_key",
    "metric_title",
    "model_artifacts",
    "retried_from",
    "set_baseline",
    "set_budget",
    "set_config",
    "set_fail_reason",
    "set_fail_reason_of",
    "set_features",
    "set_final",
    "set_trial_origin",
    "set_warm_start",
    "stored_config",
    "stored_seed",
    "trial_process",
    "trial_worker",
    "warm_start",
]

#: This process's identity, stored on every trial it runs and every refit it makes.
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


def process_token(pid: int) -> str | None:
    """Process ``pid`` as its kernel tells it apart: ``"<PID namespace>:<start time>"`` (the
    namespace's inode, the start in clock ticks since boot), or ``None`` where ``/proc`` cannot
    say (no such process, another user's, not Linux).

    A host name and a process id do not name one process: containers that share the host's
    network share its name while each numbers its own processes, and an id is reused once its
    process is gone.
    """
    try:
        namespace = os.readlink(f"/proc/{pid}/ns/pid")  # "pid:[4026531836]"
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()  # after the command name, from field 3 on
    except OSError:
        return None
    if len(fields) < 20 or not namespace.startswith("pid:["):
        return None
    return f"{namespace[5:-1]}:{fields[19]}"  # field 22: starttime


#: :data:`WORKER_ID`'s process as :func:`process_token` tells it apart, stored beside it on each
#: trial (``None`` where ``/proc`` cannot say).
WORKER_PROCESS = process_token(os.getpid())

# study user attributes
METRIC_NAME = "metric"
FEATURES = "features"
BUDGET = "budget"
DATA = "data"
WARM_START = "warm_start"
FINAL = "final"
BASELINE = "baseline"
# study system attributes
CONFIG = "svmhpo:config"
LR_FINDER = "svmhpo:lr_finder"
FEATURE_NAMES = "svmhpo:feature_names"
# trial system attributes
PROCESS = "svmhpo:process"
# the user attributes of the first layout
OLD_CONFIG = "config"
# Optuna's study system attributes, one per artifact
ARTIFACTS_PREFIX = "artifacts:"
# trial user attributes
SEED = "seed"
WORKER = "worker"
DIVERGED = "diverged"
SOURCE = "source"
WARM_START_SOURCE = "warm_start"
#: a cross-validated trial's fold accuracies and their standard deviation (svmhpo.svm.folds)
CV_SCORES = "cv_scores"
CV_STD = "cv_std"
# trial system attributes written by Optuna
FAILED_TRIAL = "failed_trial"
FAIL_REASON = "fail_reason"

Attrs = dict[str, Any]


def _attrs(holder: optuna.Study | Attrs) -> Attrs:
    """User attributes of a study, or a mapping of them (a ``StudySummary``'s)."""
    return holder.user_attrs if isinstance(holder, optuna.Study) else holder


def _system_attrs(study: StudyHandle) -> Attrs:
    # Optuna 4 dropped ``Study.system_attrs``; its storage API is the public way to them.
    return study.storage.get_study_system_attrs(study.id)


def _set_system_attr(study: StudyHandle, key: str, value: Any) -> None:
    study.storage.set_study_system_attr(study.id, key, value)


def file_safe(name: str) -> str:
    """A study name as part of a file name: all but ASCII letters, digits, ``.``, ``-``, ``_`` become ``_``.

    Study names are free text (``a/b``, ``<script>``, non-ASCII); files named after them (the
    model zip, the HTML report) must stay in their folder and be plain.
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "study"


# --- study ---------------------------------------------------------------------------------------
def stored_config(study: StudyHandle) -> dict[str, Any] | None:
    """The stored config in its JSON form with the current budget, or ``None`` on a study svmhpo did not create."""
    config = _system_attrs(study).get(CONFIG) or study.user_attrs.get(OLD_CONFIG)
    if config is None:
        return None
    trials = study.user_attrs.get(BUDGET)
    return config if trials is None else dict(config, trials=trials)


def set_config(study: StudyHandle, config: dict[str, Any]) -> None:
    """Record the config (JSON form), its budget, its data set's name and the metric on a new study."""
    _set_system_attr(study, CONFIG, config)
    study.set_user_attr(METRIC_NAME, metric_key(config.get("metric", "accuracy")))
    study.set_user_attr(DATA, (config.get("data") or {}).get("source"))
    study.set_user_attr(BUDGET, config.get("trials"))


def metric(holder: optuna.Study | Attrs) -> str:
    """The metric the study maximises, one of :data:`~svmhpo.svm.params.METRICS` (``accuracy``
    for a study made before ``[study] metric``, or by hand)."""
    return _BY_KEY.get(_attrs(holder).get(METRIC_NAME), "accuracy")


_BY_KEY = {metric_key(m): m for m in METRICS}


def features(holder: optuna.Study | Attrs) -> dict[str, Any] | None:
    """The data's columns, human-sized: ``count``, ``named`` (whether the data names them) and ``label``."""
    return _attrs(holder).get(FEATURES)


def feature_names(study: StudyHandle) -> list[str] | None:
    """The data's feature names in column order, or ``None`` when the data names none."""
    return _system_attrs(study).get(FEATURE_NAMES)


def set_features(study: StudyHandle, count: int, names: Sequence[str] | None, label: str | None) -> None:
    """Record the data's columns: their count and label on the study (as the dashboard shows them), the names beside."""
    if names is not None:
        _set_system_attr(study, FEATURE_NAMES, list(names))
    study.set_user_attr(FEATURES, {"count": count, "named": names is not None, "label": label})


def budget(holder: optuna.Study | Attrs) -> int | None:
    """The study's trial budget: finished (complete + pruned) trials over every worker and run."""
    attrs = _attrs(holder)
    return attrs.get(BUDGET, (attrs.get(OLD_CONFIG) or {}).get("trials"))


def set_budget(study: optuna.Study, trials: int) -> None:
    """Change the budget, the one part of a stored config that may change."""
    study.set_user_attr(BUDGET, trials)


def warm_start(holder: optuna.Study | Attrs) -> dict[str, float] | None:
    """The learning rate the LR finder picked, by optimizer, or ``None`` before the warm start ran."""
    picked = _attrs(holder).get(WARM_START)
    if picked is None:
        return None
    return {k: v["chosen_lr"] if isinstance(v, dict) else v for k, v in picked.items()}


def lr_finder_curves(study: StudyHandle) -> dict[str, dict] | None:
    """The LR-finder curves by optimizer (``lr``, ``loss``, ``chosen_lr``, ``lightning_suggestion``)."""
    curves = _system_attrs(study).get(LR_FINDER)
    if curves is None:
        old = study.user_attrs.get(WARM_START)
        curves = old if old and all(isinstance(v, dict) for v in old.values()) else None
    return curves


def set_warm_start(study: StudyHandle, curves: dict[str, dict]) -> None:
    """Record the LR-finder curves (system attribute) and the rates they gave (user attribute)."""
    _set_system_attr(study, LR_FINDER, curves)
    # four significant digits for the eye; the curves keep the exact rate the trials were seeded with
    study.set_user_attr(WARM_START, {k: float(f"{v['chosen_lr']:.4g}") for k, v in curves.items()})


def final(holder: optuna.Study | Attrs) -> dict[str, Any] | None:
    """The refit of the best trial: ``trial``, ``params``, its validation score under the metric's
    key (``val_acc``, …), ``test_acc``, ``test_f1``, the test score under the metric's key, model."""
    return _attrs(holder).get(FINAL)


def set_final(study: optuna.Study, result: dict[str, Any]) -> None:
    study.set_user_attr(FINAL, result)


def baseline(holder: optuna.Study | Attrs) -> dict[str, Any] | None:
    """The ``LinearSVC`` baseline: ``model``, ``C``, its validation and test scores as :func:`final`'s."""
    return _attrs(holder).get(BASELINE)


def set_baseline(study: optuna.Study, result: dict[str, Any]) -> None:
    study.set_user_attr(BASELINE, result)


def model_artifacts(study: StudyHandle) -> list[dict[str, Any]]:
    """The study's artifact records (``artifact_id``, ``filename``, ``mimetype``, ``encoding``), live ones only.

    Optuna keeps one study system attribute per artifact; optuna-dashboard deletes one by
    setting it to JSON ``null``, which Optuna's own listing does not expect, so they are read here.
    """
    found = []
    for key, value in _system_attrs(study).items():
        if key.startswith(ARTIFACTS_PREFIX):
            meta = json.loads(value) if isinstance(value, str) else value
            if isinstance(meta, dict) and "artifact_id" in meta:
                found.append(meta)
    return found


def drop_artifact_record(study: StudyHandle, artifact_id: str) -> None:
    """Mark an artifact record deleted, as optuna-dashboard does (Optuna cannot remove an attribute)."""
    _set_system_attr(study, ARTIFACTS_PREFIX + artifact_id, json.dumps(None))


# --- trials --------------------------------------------------------------------------------------
def set_trial_origin(trial: optuna.Trial, seed: int) -> None:
    """Record the seed that reproduces ``trial``'s fit and the worker that runs it.

    A re-queued trial inherits its failed original's attributes (Optuna's retry callback copies
    them), ``fail_reason`` included: it is cleared, or a re-run killed outright (which leaves no
    reason of its own) would read as the original's "worker stopped".
    """
    trial.set_user_attr(SEED, seed)
    trial.set_user_attr(WORKER, WORKER_ID)
    if WORKER_PROCESS is not None:
        trial.storage.set_trial_system_attr(trial_id(trial), PROCESS, WORKER_PROCESS)
    if trial.user_attrs.get(FAIL_REASON) is not None:
        trial.set_user_attr(FAIL_REASON, None)


def stored_seed(trial: FrozenTrial) -> int | None:
    """The seed stored on ``trial``, or ``None`` (a trial asked by another tool)."""
    seed = trial.user_attrs.get(SEED)
    return None if seed is None else int(seed)


def fit_seed(trial: FrozenTrial, study_seed: int) -> int:
    """The seed that reproduces ``trial``'s fit: the stored one, else the study's seed plus the
    trial's number (how a trial fitted on its own is seeded), for a trial that has none stored."""
    seed = stored_seed(trial)
    return study_seed + trial.number if seed is None else seed


def trial_worker(trial: FrozenTrial) -> str | None:
    return trial.user_attrs.get(WORKER)


def trial_process(trial: FrozenTrial) -> str | None:
    """The :func:`process_token` of the process that ran ``trial``, where it was stored."""
    return trial.system_attrs.get(PROCESS)


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
    """Record why a trial failed (Optuna stores no reason for a trial told FAIL)."""
    trial.set_user_attr(FAIL_REASON, reason)


def set_fail_reason_of(storage: optuna.storages.BaseStorage, trial_id: int, reason: str) -> None:
    """:func:`set_fail_reason` for a trial this process does not hold (another process's, gone)."""
    storage.set_trial_user_attr(trial_id, FAIL_REASON, reason)


def fail_reason(trial: FrozenTrial) -> str | None:
    return trial.user_attrs.get(FAIL_REASON) or trial.system_attrs.get(FAIL_REASON)

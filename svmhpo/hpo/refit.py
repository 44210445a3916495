"""The refit of a study's best trial and scikit-learn's baseline: the model side of finalizing.

:func:`refit_to_archive` retrains the best parameters on train+validation, scores them once on the
held-out test set and writes the model (the scored weights, its scaler and classes:
:mod:`svmhpo.svm.persist`) as a zip; :func:`fit_baseline` fits scikit-learn's ``LinearSVC`` on
the same split. :mod:`svmhpo.hpo.finalize` stores both on the study; it reaches them through
:class:`~svmhpo.hpo.modelside.LightningSide`, so the study machinery loads without torch.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import optuna
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score
from sklearn.svm import LinearSVC

from svmhpo.hpo import records
from svmhpo.hpo.config import StudyConfig
from svmhpo.hpo.space import decode
from svmhpo.svm.data import DeviceData
from svmhpo.svm.params import metric_key
from svmhpo.svm.persist import save_fit, zip_model
from svmhpo.svm.scores import member_scores
from svmhpo.svm.training import fit, held_out_metrics

__all__ = ["SCORERS", "fit_baseline", "refit_best", "refit_to_archive"]

#: liblinear's iteration limit for the baseline (scikit-learn's default is 1,000).
MAX_ITER = 5000
#: scikit-learn's scorer of each :data:`~svmhpo.svm.params.METRICS`, ``(y_true, y_pred) -> float``.
SCORERS = {
    "accuracy": accuracy_score,
    "balanced_accuracy": balanced_accuracy_score,
    "macro_f1": lambda y, p: f1_score(y, p, average="macro"),
}


def refit_best(trial: optuna.trial.FrozenTrial, config: StudyConfig, data: DeviceData) -> tuple[dict, torch.nn.Module]:
    """Retrain ``trial``'s parameters on train+validation; score once on the test set."""
    params, batch_size = decode(trial.params, config)
    x, y = data.train_and_val()
    merged = dataclasses.replace(data, x_train=x, y_train=y)
    start = time.perf_counter()
    module, _ = fit(
        params,
        merged,
        epochs=config.training.epochs,
        batch_size=batch_size,
        seed=records.fit_seed(trial, config.seed),
        validate=False,
    )
    metrics = held_out_metrics(module, data.x_test, data.y_test)
    result = {
        "trial": trial.number,
        "params": trial.params,
        "metric": config.metric,
        metric_key(config.metric): trial.value,
        "test_acc": metrics["acc"],
        "test_f1": metrics["f1"],
        "fit_seconds": round(time.perf_counter() - start, 3),
        "worker": records.WORKER_ID,
    }
    if config.metric != "accuracy":
        predicted = module.predict_labels(data.x_test.to(module.device)).view(1, -1)
        (score,) = member_scores(predicted, data.y_test.to(module.device), data.n_classes, config.metric)
        result[metric_key(config.metric, "test")] = score
    return result, module


def fit_baseline(config: StudyConfig, data: DeviceData) -> dict:
    """``LinearSVC`` on the same split: C picked on validation by the study's metric, refit on
    train+val, scored on test (accuracy, macro F1 and the study's metric).

    A fit that stops at ``max_iter`` before liblinear converges is recorded (``not_converged``,
    its C values, and ``svmhpo best`` says so) instead of letting scikit-learn's
    ``ConvergenceWarning`` through, which printed three raw warnings even under ``--quiet``."""
    x_train, y_train = data.x_train.cpu().numpy(), data.y_train.cpu().numpy()
    x_val, y_val = data.x_val.cpu().numpy(), data.y_val.cpu().numpy()
    x_test, y_test = data.x_test.cpu().numpy(), data.y_test.cpu().numpy()
    start = time.perf_counter()
    scores: dict[float, float] = {}
    unconverged: set[float] = set()

    def fitted(C: float, x: np.ndarray, y: np.ndarray) -> LinearSVC:
        model = LinearSVC(C=C, multi_class=config.baseline.multi_class, random_state=config.seed, max_iter=MAX_ITER)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(x, y)
        for warning in caught:
            if issubclass(warning.category, ConvergenceWarning):
                unconverged.add(C)
            else:  # any other warning goes on as it came
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        return model

    for C in config.baseline.C:
        scores[C] = SCORERS[config.metric](y_val, fitted(C, x_train, y_train).predict(x_val))
    best_c = max(scores, key=lambda c: (scores[c], -c))
    model = fitted(best_c, np.concatenate([x_train, x_val]), np.concatenate([y_train, y_val]))
    predicted = model.predict(x_test)
    return {
        "model": f"sklearn.svm.LinearSVC(multi_class={config.baseline.multi_class!r})",
        "C": best_c,
        metric_key(config.metric): float(scores[best_c]),
        "test_acc": float(accuracy_score(y_test, predicted)),
        "test_f1": float(f1_score(y_test, predicted, average="macro")),
        metric_key(config.metric, "test"): float(SCORERS[config.metric](y_test, predicted)),
        "not_converged": sorted(unconverged),
        "fit_seconds": round(time.perf_counter() - start, 3),
    }


def refit_to_archive(
    study_name: str, trial: optuna.trial.FrozenTrial, config: StudyConfig, data: DeviceData, archive: Path
) -> dict:
    """Refit ``trial`` (:func:`refit_best`) and write the model zip to ``archive``; return the result."""
    result, module = refit_best(trial, config, data)
    params, _ = decode(trial.params, config)
    with tempfile.TemporaryDirectory() as tmp:
        source = {"study": study_name, "trial": trial.number, "test_acc": result["test_acc"]}
        saved = save_fit(Path(tmp) / "model", module, params, data, source)
        zip_model(saved, archive)
    return result

"""When the budget is spent: refit the best trial, score it once on the test set, compare with LinearSVC.

The best parameters are retrained on train+validation and scored once on the held-out test set.
The model (the scored weights, its scaler and classes: :mod:`svmhpo.svm.persist`) is saved as
``<study>-trial<N>-model.zip`` and attached to the study as an Optuna artifact (a file in
:attr:`~svmhpo.hpo.handle.StudyHandle.artifacts`; Optuna cannot attach anything to a finished trial).
:func:`svmhpo.hpo.tuned.load_model` loads it back. The result is stored on the study as the
user attribute ``final``. The same split is fitted with scikit-learn's ``LinearSVC`` (C chosen
on the validation split from ``[baseline] C``), stored as ``baseline``, so that the tuned
hand-written SVM is seen next to the standard tool.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
import torch
from optuna.artifacts import upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from sklearn.metrics import accuracy_score, f1_score
from sklearn.svm import LinearSVC

from svmhpo.errors import OutputError, StorageError
from svmhpo.hpo import records
from svmhpo.hpo.config import StudyConfig
from svmhpo.hpo.election import final_is_current
from svmhpo.hpo.handle import StudyHandle
from svmhpo.hpo.liveness import FINALIZE_LOCK_WAIT_S, study_lock
from svmhpo.hpo.space import decode
from svmhpo.hpo.studies import best_trial, study_config
from svmhpo.svm.data import DeviceData
from svmhpo.svm.persist import save_fit, zip_model
from svmhpo.svm.training import fit, held_out_metrics

__all__ = ["MODEL_MEDIA_TYPE", "finalize", "fit_baseline", "refit_best"]

#: How a saved model's zip is served (the dashboard offers it as a download).
MODEL_MEDIA_TYPE = "application/zip"


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
        "val_acc": trial.value,
        "test_acc": metrics["acc"],
        "test_f1": metrics["f1"],
        "fit_seconds": round(time.perf_counter() - start, 3),
        "worker": records.WORKER_ID,
    }
    return result, module


def fit_baseline(config: StudyConfig, data: DeviceData) -> dict:
    """``LinearSVC`` on the same split: C picked on validation, refit on train+val, scored on test."""
    x_train, y_train = data.x_train.cpu().numpy(), data.y_train.cpu().numpy()
    x_val, y_val = data.x_val.cpu().numpy(), data.y_val.cpu().numpy()
    x_test, y_test = data.x_test.cpu().numpy(), data.y_test.cpu().numpy()
    start = time.perf_counter()
    scores = {}
    for C in config.baseline.C:
        model = LinearSVC(C=C, multi_class=config.baseline.multi_class, random_state=config.seed, max_iter=5000)
        scores[C] = model.fit(x_train, y_train).score(x_val, y_val)
    best_c = max(scores, key=lambda c: (scores[c], -c))
    model = LinearSVC(C=best_c, multi_class=config.baseline.multi_class, random_state=config.seed, max_iter=5000)
    model.fit(np.concatenate([x_train, x_val]), np.concatenate([y_train, y_val]))
    predicted = model.predict(x_test)
    return {
        "model": f"sklearn.svm.LinearSVC(multi_class={config.baseline.multi_class!r})",
        "C": best_c,
        "val_acc": scores[best_c],
        "test_acc": float(accuracy_score(y_test, predicted)),
        "test_f1": float(f1_score(y_test, predicted, average="macro")),
        "fit_seconds": round(time.perf_counter() - start, 3),
    }


def _save_model(
    study: StudyHandle,
    trial: optuna.trial.FrozenTrial,
    module: torch.nn.Module,
    data: DeviceData,
    result: dict,
) -> dict:
    """Save the refit as a model zip (see :mod:`svmhpo.svm.persist`) attached to the study, named after the trial.

    Optuna before 5.1 recorded an artifact before it wrote the file (5.1 writes first); if the
    write fails (a read-only or full disk) any record it left is dropped again, so no record ever
    names a file that is not there, and the failure is one :class:`~svmhpo.errors.StorageError` line.
    """
    store_dir = study.artifacts
    try:
        store_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"{store_dir}: cannot create the folder for the study's model ({exc.strerror})") from None
    params, _ = decode(trial.params, study_config(study))
    with tempfile.TemporaryDirectory() as tmp:
        source = {"study": study.study_name, "trial": trial.number, "test_acc": result["test_acc"]}
        saved = save_fit(Path(tmp) / "model", module, params, data, source)
        archive = zip_model(saved, Path(tmp) / f"{records.file_safe(study.study_name)}-trial{trial.number}-model.zip")
        before = {meta["artifact_id"] for meta in records.model_artifacts(study)}
        try:
            # Optuna refuses to change a finished trial, attributes and artifacts alike, so the model
            # goes on the study, its file named after the trial it refits.
            artifact_id = upload_artifact(
                artifact_store=study.artifact_store(),
                file_path=str(archive),
                study_or_trial=study,
                mimetype=MODEL_MEDIA_TYPE,
            )
        except (OSError, OutputError) as exc:
            for meta in records.model_artifacts(study):
                if meta["artifact_id"] not in before:
                    records.drop_artifact_record(study, meta["artifact_id"])
            reason = exc.strerror if isinstance(exc, OSError) else exc.reason
            raise StorageError(f"{store_dir}: cannot write the study's model ({reason})") from None
    path = str((store_dir / artifact_id).absolute())
    return {"model_artifact_id": artifact_id, "model_file": archive.name, "model_path": path}


def _is_model(meta: dict) -> bool:
    return meta.get("mimetype") == MODEL_MEDIA_TYPE and str(meta.get("filename", "")).endswith("-model.zip")


def _drop_other_models(study: StudyHandle, keep: str | None) -> int:
    """Remove every model artifact of the study but ``keep`` (file and record); return how many.

    They are what a process killed between its upload and writing ``final`` left behind, or a
    record whose file was never written.
    """
    store = study.artifact_store()
    dropped = 0
    for meta in records.model_artifacts(study):
        if _is_model(meta) and meta["artifact_id"] != keep:
            with contextlib.suppress(ArtifactNotFound, OSError):
                store.remove(meta["artifact_id"])
            records.drop_artifact_record(study, meta["artifact_id"])
            dropped += 1
    return dropped


def finalize(study: StudyHandle, config: StudyConfig, data: DeviceData, *, force: bool = False) -> dict | None:
    """Store ``final`` and ``baseline`` on the study unless they already describe the best trial.

    Exactly one model per study, whichever processes get here and in whatever order: the whole
    step holds the study's ``finalize`` lock (:func:`~svmhpo.hpo.liveness.study_lock`), so a
    second process waits and then finds ``final`` describing the best trial; and any other model
    artifact (left by a process killed between its upload and ``final``) is removed. A ``final``
    whose model artifact is gone (deleted in the dashboard) is refit; ``force`` refits in any
    case (``svmhpo refit``: the same seed and split give the same model and test score).

    Returns the ``final`` record, or ``None`` when no trial completed.
    """
    with study_lock(study, "finalize", FINALIZE_LOCK_WAIT_S):
        trial = best_trial(study)
        if trial is None:
            return None
        stored = records.final(study)
        if force or not final_is_current(study):
            result, module = refit_best(trial, config, data)
            result.update(_save_model(study, trial, module, data, result))
            if records.baseline(study) is None:
                records.set_baseline(study, fit_baseline(config, data))
            records.set_final(study, result)
            stored = result
        _drop_other_models(study, keep=stored.get("model_artifact_id"))
        return stored

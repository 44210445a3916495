"""When the budget is spent: refit the best trial, store its model and ``final``, compare with LinearSVC.

The best parameters are retrained on train+validation and scored once on the held-out test set
(the model side does it: :mod:`svmhpo.hpo.refit` through :mod:`svmhpo.hpo.modelside`). The model
is saved as ``<study>-trial<N>-model.zip`` and attached to the study as an Optuna artifact (a
file in :attr:`~svmhpo.hpo.handle.StudyHandle.artifacts`; Optuna cannot attach anything to a
finished trial). :func:`svmhpo.hpo.tuned.load_model` loads it back. The result is stored on the
study as the user attribute ``final``. The same split is fitted with scikit-learn's
``LinearSVC`` (C chosen on the validation split from ``[baseline] C``), stored as ``baseline``,
so that the tuned hand-written SVM is seen next to the standard tool. This module is the study
side of it (the lock, the artifact and its records) and imports no torch.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound

from svmhpo.errors import OutputError, StorageError
from svmhpo.hpo import modelside, records
from svmhpo.hpo.artifacts import FOLDER, S3ArtifactStore
from svmhpo.hpo.config import StudyConfig
from svmhpo.hpo.election import final_is_current
from svmhpo.hpo.handle import StudyHandle
from svmhpo.hpo.liveness import FINALIZE_LOCK_WAIT_S, study_lock
from svmhpo.hpo.modelside import StudyData
from svmhpo.hpo.studies import best_trial

__all__ = ["MODEL_MEDIA_TYPE", "finalize"]

#: How a saved model's zip is served (the dashboard offers it as a download).
MODEL_MEDIA_TYPE = "application/zip"


def _model_store(study: StudyHandle, config: StudyConfig) -> Any:
    """Where the study's models go: S3 where ``[study] artifacts`` says so, else the study's own store."""
    return S3ArtifactStore(config.artifacts) if config.artifacts else study.artifact_store()


def _save_model(study: StudyHandle, trial: optuna.trial.FrozenTrial, config: StudyConfig, data: StudyData) -> dict:
    """Refit ``trial`` into a model zip named after it, attach it to the study; return the ``final`` record.

    The model goes to the study's artifact store (:mod:`svmhpo.hpo.artifacts`: the database on a
    server, the folder beside a SQLite file), and ``model_store`` says which. Optuna before 5.1
    recorded an artifact before it wrote the file (5.1 writes first); if the write fails (a
    read-only or full disk, a database gone past its outage limit) any record it left is dropped
    again, so no record ever names a model that is not there; a full or read-only disk is one
    :class:`~svmhpo.errors.StorageError` line.
    """
    where = config.artifacts or study.model_store  # [study] artifacts = "s3://...", or the study's own store
    store = _model_store(study, config)
    folder = where == FOLDER
    if folder:
        try:
            study.artifacts.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"{study.artifacts}: cannot create the folder for the study's model ({exc.strerror})"
            ) from None
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / f"{records.file_safe(study.study_name)}-trial{trial.number}-model.zip"
        result = modelside.current().refit(study.study_name, trial, config, data, archive)
        before = {meta["artifact_id"] for meta in records.model_artifacts(study)}
        try:
            # Optuna refuses to change a finished trial, attributes and artifacts alike, so the model
            # goes on the study, its file named after the trial it refits.
            artifact_id = upload_artifact(
                artifact_store=store,
                file_path=str(archive),
                study_or_trial=study,
                mimetype=MODEL_MEDIA_TYPE,
            )
        except BaseException as exc:
            for meta in records.model_artifacts(study):
                if meta["artifact_id"] not in before:
                    records.drop_artifact_record(study, meta["artifact_id"])
            if not isinstance(exc, OSError | OutputError):
                raise
            reason = exc.strerror if isinstance(exc, OSError) else exc.reason
            raise StorageError(f"{study.artifacts}: cannot write the study's model ({reason})") from None
    stored = {"model_artifact_id": artifact_id, "model_file": archive.name, "model_store": where}
    if folder:  # a plain file that `svmhpo predict --model` takes
        stored["model_path"] = str((study.artifacts / artifact_id).absolute())
    return {**result, **stored}


def _is_model(meta: dict) -> bool:
    return meta.get("mimetype") == MODEL_MEDIA_TYPE and str(meta.get("filename", "")).endswith("-model.zip")


def _drop_other_models(study: StudyHandle, keep: str | None, config: StudyConfig) -> int:
    """Remove every model artifact of the study but ``keep`` (file and record); return how many.

    They are what a process killed between its upload and writing ``final`` left behind, or a
    record whose file was never written.
    """
    store = _model_store(study, config)
    dropped = 0
    for meta in records.model_artifacts(study):
        if _is_model(meta) and meta["artifact_id"] != keep:
            with contextlib.suppress(ArtifactNotFound, OSError):
                store.remove(meta["artifact_id"])
            records.drop_artifact_record(study, meta["artifact_id"])
            dropped += 1
    return dropped


def finalize(study: StudyHandle, config: StudyConfig, data: StudyData, *, force: bool = False) -> dict | None:
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
            result = _save_model(study, trial, config, data)
            if records.baseline(study) is None:
                records.set_baseline(study, modelside.current().baseline(config, data))
            records.set_final(study, result)
            stored = result
        _drop_other_models(study, keep=stored.get("model_artifact_id"), config=config)
        return stored

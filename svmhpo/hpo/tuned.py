"""The study's product: its tuned model, loaded back as a scikit-learn pipeline or exported.

:func:`load_model` takes a study name (the model its refit stored as an artifact) or the path of
a saved model (a directory from ``svmhpo export`` or ``svmhpo train --save``, or a model zip)
and returns a fitted ``Pipeline(scaler, HingeSVC)`` that predicts on raw features.
:func:`export_model` writes a study's model as a self-contained directory.
"""

from __future__ import annotations

import os
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from optuna.artifacts import download_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from sklearn.pipeline import Pipeline

from svmhpo.errors import DataError, ModelError, OutputError
from svmhpo.files import ensure_folder, write_atomically
from svmhpo.hpo import records
from svmhpo.hpo.artifacts import model_store_of
from svmhpo.hpo.config import DataConfig, StudyConfig
from svmhpo.hpo.space import decode
from svmhpo.hpo.studies import best_trial, model_state, read_study, refit_command, study_config
from svmhpo.svm.data import load_features
from svmhpo.svm.params import SVMParams
from svmhpo.svm.persist import META, WEIGHTS, load_pipeline, read_model

__all__ = ["BestFit", "best_fit", "export_model", "load_model", "load_study_model", "predict_file"]


@dataclass(frozen=True)
class BestFit:
    """What reproduces a study's best trial: its hyperparameters, the study's data and split, its seed."""

    study: str
    trial: int
    params: SVMParams
    epochs: int
    batch_size: int
    seed: int
    data: DataConfig
    split_seed: int
    config: StudyConfig


def best_fit(name: str, storage: str | None = None) -> BestFit:
    """The settings of study ``name``'s best trial, for ``svmhpo train --from-study``."""
    study = read_study(name, storage)
    trial = best_trial(study)
    if trial is None:
        raise ModelError(f"study {name!r} has no completed trial yet")
    config = study_config(study)
    params, batch_size = decode(trial.params, config)
    return BestFit(
        study=name,
        trial=trial.number,
        params=params,
        epochs=config.training.epochs,
        batch_size=batch_size,
        seed=records.fit_seed(trial, config.seed),
        data=config.data,
        split_seed=config.seed,
        config=config,
    )


def _download(name: str, storage: str | None, into: Path) -> Path:
    """Fetch study ``name``'s model zip into the folder ``into``; return the file."""
    study = read_study(name, storage)
    state, path = model_state(study)
    if state == "none":
        raise ModelError(f"study {name!r} has no tuned model yet: its budget is not met or no trial completed")
    where = f"not at {path}" if path else "not in the study's database"
    if state == "missing":
        raise ModelError(
            f"study {name!r}: its model is missing (deleted, or {where}); rebuild it with: "
            f"{refit_command(name, storage)}"
        )
    target = into / "model.zip"
    try:
        download_artifact(
            artifact_store=model_store_of(records.final(study), study.artifact_store()),
            file_path=str(target),
            artifact_id=records.final(study)["model_artifact_id"],
        )
    except (ArtifactNotFound, FileNotFoundError):
        raise ModelError(
            f"study {name!r}: its model is missing ({where}); rebuild it with: {refit_command(name, storage)}"
        ) from None
    return target


def _is_path(study: str) -> bool:
    """Whether a ``str`` given as a study names a saved model instead: a path with a folder part that exists."""
    return (os.sep in study or study.startswith("~")) and Path(study).expanduser().exists()


def load_model(
    study: str | Path | None = None, storage: str | None = None, *, path: str | Path | None = None
) -> Pipeline:
    """The tuned model of ``study``, or the saved model at ``path``, as a fitted ``Pipeline``.

    A saved model (a directory from ``svmhpo export`` or ``svmhpo train --save``, a model zip,
    or the path ``svmhpo best`` prints) is given as ``path=``, as a :class:`~pathlib.Path`, or
    as a ``str`` with a folder part (``/``) that exists; any other ``str`` is a study name, so
    a folder of the working directory named like a study is never taken for it.

    The pipeline is the scaler fitted on the study's training split, then a
    :class:`~svmhpo.svm.estimator.HingeSVC` holding the refit's weights (for ASGD, the averaged
    iterate that was scored): ``predict``, ``decision_function`` and ``score`` take raw
    features, and ``score`` on the study's test split equals its stored ``final.test_acc``.
    When the data named its columns, the pipeline's ``feature_names_in_`` are those names.
    """
    if isinstance(study, Path) or (isinstance(study, str) and storage is None and _is_path(study)):
        study, path = None, study
    if (study is None) == (path is None):
        raise TypeError("load_model takes a study name or path=, not both or neither")
    if path is not None:
        return load_pipeline(path)
    return load_study_model(str(study), storage)


def load_study_model(name: str, storage: str | None = None) -> Pipeline:
    """The tuned model of study ``name``: always a study, whatever folders exist (``predict --study-name``)."""
    with tempfile.TemporaryDirectory(prefix="svmhpo-model-") as tmp:
        return load_pipeline(_download(name, storage, Path(tmp)))


def _check_target(out: Path, force: bool) -> None:
    """Refuse to replace a file, or to write into a folder that holds anything, unless ``force``."""
    if force or not out.exists():
        return
    if out.is_dir():
        if any(out.iterdir()):
            raise OutputError(f"{out}: the folder is not empty; pass --force to write the model into it anyway")
    else:
        raise OutputError(f"{out}: exists; pass --force to replace it")


def export_model(name: str, out: str | Path, storage: str | None = None, *, force: bool = False) -> Path:
    """Write study ``name``'s model to ``out``: a zip when it ends in ``.zip``, else a directory
    (``model.json`` and ``weights.pt``). An existing file, or a folder that holds anything, is
    replaced only with ``force``."""
    out = Path(out).expanduser()
    as_zip = out.suffix.lower() == ".zip"
    if as_zip and out.is_dir():
        raise OutputError(f"{out}: is a folder; name a zip file, or a folder without .zip")
    if not as_zip and out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder; name a folder, or a file ending in .zip")
    _check_target(out, force)
    with tempfile.TemporaryDirectory(prefix="svmhpo-model-") as tmp:
        archive = _download(name, storage, Path(tmp))
        read_model(archive)  # checked (and its size bounded) before anything is written
        if as_zip:
            return write_atomically(out, archive.read_bytes())
        ensure_folder(out, "export folder")
        with zipfile.ZipFile(archive) as zf:
            for member in (WEIGHTS, META):  # each whole or not at all; weights first, as save_model
                write_atomically(out / member, zf.read(member))
    return out


def predict_file(model: Pipeline, source: str, out: str | Path | None = None) -> str:
    """Predict the labels of ``source`` (see :func:`~svmhpo.svm.data.load_features`) with ``model``.

    A table's columns are matched to the model's features by name when both have names.

    Writes a CSV with a ``label`` header and one label per row to ``out``, or to stdout, and
    returns a one-line summary, with accuracy and macro F1 when ``source`` carries labels.
    """
    svc = model.named_steps["svm"]
    names = getattr(model, "feature_names_in_", None)
    names = None if names is None else tuple(str(n) for n in names)
    X, y, name = load_features(source, svc.n_features_in_, names, getattr(svc, "label_name_", None))
    if names is not None:  # in the model's column order already; named, as the pipeline was fitted
        import pandas as pd

        X = pd.DataFrame(X, columns=list(names))
    labels = model.predict(X)
    text = "label\n" + "".join(f"{label}\n" for label in labels)
    if out is None:
        sys.stdout.write(text)
        summary = f"{name}: {len(labels)} predictions"
    else:
        try:
            Path(out).expanduser().write_text(text)
        except OSError as exc:
            raise DataError(f"{out}: cannot write ({exc.strerror})") from None
        summary = f"{name}: {len(labels)} predictions written to {out}"
    if y is not None:
        from sklearn.metrics import accuracy_score, f1_score

        y = np.asarray(y).astype(labels.dtype, copy=False) if labels.dtype.kind in "iu" else np.asarray(y)
        summary += f"; accuracy {accuracy_score(y, labels):.4f}, macro F1 {f1_score(y, labels, average='macro'):.4f}"
    return summary

"""A trained linear SVM on disk: the scored weights, its scaler, classes and hyperparameters.

A model is a directory (or a zip of one, as studies store it) with two files:

- ``weights.pt``: the ``LinearSVM`` state dict (``linear.weight``, ``linear.bias``), written by
  ``torch.save`` and read back with ``torch.load(weights_only=True)``, which unpickles tensors
  and nothing else;
- ``model.json``: what the weights mean. ``kind`` and ``format``, the classes in output order,
  the scaler fitted on the training split (``standard`` with ``mean``/``scale``, ``minmax`` with
  ``min``/``scale``, or ``none``), the hyperparameters, the data's shape and name, the versions
  of svmhpo and torch, and where the model came from (``source``).

:func:`load_pipeline` turns it into a fitted scikit-learn ``Pipeline`` (scaler, then
:class:`~svmhpo.svm.estimator.HingeSVC`) that predicts on raw features. Nothing but JSON and
tensors is read; a file of the wrong kind, format or shape fails with one :class:`ModelError` line.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from svmhpo.errors import ModelError
from svmhpo.svm.params import SVMParams

__all__ = ["FORMAT", "KIND", "META", "WEIGHTS", "load_pipeline", "read_model", "save_model", "zip_model"]

KIND = "svmhpo.linear-svm"
FORMAT = 1
WEIGHTS, META = "weights.pt", "model.json"
_KEYS = ("linear.weight", "linear.bias")


def _scaler_json(scaler: StandardScaler | MinMaxScaler | None) -> dict[str, Any]:
    if scaler is None:
        return {"kind": "none"}
    if isinstance(scaler, StandardScaler):
        return {
            "kind": "standard",
            "mean": scaler.mean_.tolist(),
            "scale": scaler.scale_.tolist(),
            "var": scaler.var_.tolist(),
            "n_samples_seen": int(np.max(scaler.n_samples_seen_)),
        }
    if isinstance(scaler, MinMaxScaler):
        return {
            "kind": "minmax",
            "min": scaler.min_.tolist(),
            "scale": scaler.scale_.tolist(),
            "data_min": scaler.data_min_.tolist(),
            "data_max": scaler.data_max_.tolist(),
            "n_samples_seen": int(scaler.n_samples_seen_),
        }
    raise TypeError(f"cannot save a {type(scaler).__name__}")


def _scaler(spec: dict[str, Any], n_features: int, where: str) -> StandardScaler | MinMaxScaler | str:
    """A fitted scaler rebuilt from its JSON form (the fitted attributes, exactly as saved)."""
    kind = spec.get("kind")
    if kind == "none":
        return "passthrough"
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in spec.items() if isinstance(v, list)}
    if any(len(a) != n_features for a in arrays.values()):
        raise ModelError(f"{where}: the scaler does not have {n_features} features")
    if kind == "standard":
        scaler = StandardScaler()
        scaler.mean_, scaler.scale_, scaler.var_ = arrays["mean"], arrays["scale"], arrays["var"]
    elif kind == "minmax":
        scaler = MinMaxScaler()
        scaler.min_, scaler.scale_ = arrays["min"], arrays["scale"]
        scaler.data_min_, scaler.data_max_ = arrays["data_min"], arrays["data_max"]
        scaler.data_range_ = scaler.data_max_ - scaler.data_min_
    else:
        raise ModelError(f"{where}: unknown scaler {kind!r}")
    scaler.n_features_in_ = n_features
    scaler.n_samples_seen_ = spec.get("n_samples_seen", 0)
    return scaler


def save_model(
    directory: str | Path,
    state: dict[str, torch.Tensor],
    *,
    params: SVMParams,
    classes: np.ndarray | list,
    scaler: StandardScaler | MinMaxScaler | None,
    data: str = "",
    source: dict[str, Any] | None = None,
) -> Path:
    """Write ``weights.pt`` and ``model.json`` into ``directory`` (created if needed); return it.

    ``state`` is a ``LinearSVM`` state dict holding the weights that were scored (for ASGD, the
    averaged iterate, which a fit folds into its parameters).
    """
    from svmhpo import __version__

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = {k: state[k].detach().cpu().contiguous() for k in _KEYS}
    torch.save(weights, directory / WEIGHTS)
    classes = np.asarray(classes).tolist()
    meta = {
        "kind": KIND,
        "format": FORMAT,
        "classes": classes,
        "n_features": int(weights["linear.weight"].shape[1]),
        "n_classes": len(classes),
        "scaler": _scaler_json(scaler),
        "params": params.as_dict(),
        "data": data,
        "versions": {"svmhpo": __version__, "torch": torch.__version__},
        "source": source or {},
    }
    (directory / META).write_text(json.dumps(meta, indent=2) + "\n")
    return directory


def zip_model(directory: str | Path, archive: str | Path) -> Path:
    """Pack a saved model's two files into ``archive`` (a zip), the form a study stores."""
    archive = Path(archive)
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in (META, WEIGHTS):
            zf.write(Path(directory) / name, arcname=name)
    return archive


def _read_files(path: Path) -> tuple[bytes, bytes]:
    """The bytes of ``model.json`` and ``weights.pt`` from a model directory or zip."""
    try:
        if path.is_dir():
            return (path / META).read_bytes(), (path / WEIGHTS).read_bytes()
        with zipfile.ZipFile(path) as zf:  # only these two members are read: no extraction
            return zf.read(META), zf.read(WEIGHTS)
    except FileNotFoundError as exc:
        missing = Path(exc.filename or "").name or "such file"
        raise ModelError(f"{path}: not a saved svmhpo model (no {missing})") from None
    except KeyError as exc:
        raise ModelError(f"{path}: not a saved svmhpo model (the archive has no {exc.args[0].split()[-1]})") from None
    except zipfile.BadZipFile:
        raise ModelError(f"{path}: not a saved svmhpo model (neither a model directory nor a zip of one)") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read ({exc.strerror})") from None


def read_model(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The weights and metadata of a saved model, checked against each other."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelError(f"{path}: no such model")
    raw_meta, raw_weights = _read_files(path)
    try:
        meta = json.loads(raw_meta)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: {META} is not valid JSON ({exc})") from None
    kind = meta.get("kind") if isinstance(meta, dict) else None
    if kind != KIND:
        raise ModelError(f"{path}: not an svmhpo model ({META} kind {kind!r}, expected {KIND!r})")
    if meta.get("format") != FORMAT:
        raise ModelError(f"{path}: model format {meta.get('format')!r}; this svmhpo reads format {FORMAT}")
    try:
        state = torch.load(io.BytesIO(raw_weights), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a corrupt or hostile file
        raise ModelError(f"{path}: {WEIGHTS} is not a tensor file ({str(exc).splitlines()[0]})") from None
    try:
        n_features, n_classes = int(meta["n_features"]), int(meta["n_classes"])
        outputs = 1 if n_classes == 2 else n_classes
        expected = {"linear.weight": (outputs, n_features), "linear.bias": (outputs,)}
        if not isinstance(state, dict) or set(state) != set(_KEYS):
            raise ModelError(f"{path}: {WEIGHTS} must hold exactly {', '.join(_KEYS)}")
        for key, shape in expected.items():
            if not isinstance(state[key], torch.Tensor) or tuple(state[key].shape) != shape:
                raise ModelError(f"{path}: {key} has shape {tuple(state[key].shape)}, expected {shape}")
        if len(meta["classes"]) != n_classes or n_classes < 2:
            raise ModelError(f"{path}: {len(meta['classes'])} classes listed for n_classes = {n_classes}")
        SVMParams(**meta["params"])
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ModelError):
            raise
        raise ModelError(f"{path}: {META} is incomplete or invalid ({str(exc).splitlines()[0]})") from None
    return state, meta


def load_pipeline(path: str | Path) -> Pipeline:
    """A fitted ``Pipeline(scaler, HingeSVC)`` from a saved model directory or zip."""
    from svmhpo.svm.estimator import HingeSVC

    state, meta = read_model(path)
    scaler = _scaler(meta["scaler"], meta["n_features"], str(path))
    svc = HingeSVC.from_weights(state, classes=np.asarray(meta["classes"]), params=SVMParams(**meta["params"]))
    return Pipeline([("scaler", scaler), ("svm", svc)])

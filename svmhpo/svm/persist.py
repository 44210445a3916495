"""A trained linear SVM on disk: the scored weights, its scaler, classes and hyperparameters.

A model is a directory (or a zip of one, as studies store it) with two files:

- ``weights.pt``: the ``LinearSVM`` state dict (``linear.weight``, ``linear.bias``), written by
  ``torch.save`` and read back with ``torch.load(weights_only=True)``, which unpickles tensors
  and nothing else;
- ``model.json``: what the weights mean. ``kind`` and ``format``, the classes in output order,
  the scaler fitted on the training split (``standard`` with ``mean``/``scale``, ``minmax`` with
  ``min``/``scale``, or ``none``), the hyperparameters, the data's shape and name, its feature
  names and label column (when the data named them), the versions of svmhpo and torch, and
  where the model came from (``source``).

:func:`load_pipeline` turns it into a fitted scikit-learn ``Pipeline`` (scaler, then
:class:`~svmhpo.svm.estimator.HingeSVC`) that predicts on raw features. Nothing but JSON and
tensors is read; a file of the wrong kind, format or shape fails with one :class:`ModelError` line.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
import torch
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, StandardScaler

from svmhpo.errors import ModelError, first_line
from svmhpo.files import ensure_folder, write_atomically
from svmhpo.svm.params import SVMParams

if TYPE_CHECKING:
    from svmhpo.svm.data import DeviceData
    from svmhpo.svm.model import SVMModule

__all__ = [
    "FORMAT",
    "KIND",
    "MAX_CLASSES",
    "MAX_FEATURES",
    "META",
    "WEIGHTS",
    "ModelMeta",
    "load_pipeline",
    "read_model",
    "save_fit",
    "save_model",
    "zip_model",
]

KIND = "svmhpo.linear-svm"
FORMAT = 1
WEIGHTS, META = "weights.pt", "model.json"
_KEYS = ("linear.weight", "linear.bias")


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return float(value)


def _nonzero(value: float) -> float:
    if value == 0:
        raise ValueError("a scale must not be zero")
    return value


#: A JSON number: an integer or a float (never a string or a boolean), finite.
Number = Annotated[StrictInt | StrictFloat, AfterValidator(_finite)]
Scale = Annotated[StrictInt | StrictFloat, AfterValidator(_finite), AfterValidator(_nonzero)]
Numbers = Annotated[list[Number], Field(max_length=100_000)]
Scales = Annotated[list[Scale], Field(max_length=100_000)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class NoScaler(_Strict):
    kind: Literal["none"]


class StandardScaling(_Strict):
    kind: Literal["standard"]
    mean: Numbers
    scale: Scales
    var: Numbers
    n_samples_seen: Annotated[int, Field(ge=0)] = 0


class MinMaxScaling(_Strict):
    kind: Literal["minmax"]
    min: Numbers
    scale: Scales
    data_min: Numbers
    data_max: Numbers
    n_samples_seen: Annotated[int, Field(ge=0)] = 0


class ModelMeta(BaseModel):
    """``model.json``, validated strictly: exact JSON types, finite numbers, sizes within bounds.

    Unknown keys are kept (a newer svmhpo may add some to the same format); the ones read are checked.
    """

    model_config = ConfigDict(extra="allow", strict=True)

    kind: Literal["svmhpo.linear-svm"]
    format: Literal[1]
    classes: (
        Annotated[list[StrictInt], Field(min_length=2, max_length=1000)]
        | Annotated[list[StrictStr], Field(min_length=2, max_length=1000)]
    )
    n_features: Annotated[int, Field(ge=1, le=100_000)]
    n_classes: Annotated[int, Field(ge=2, le=1000)]
    scaler: Annotated[NoScaler | StandardScaling | MinMaxScaling, Field(discriminator="kind")]
    params: dict[str, Any]
    #: Absent in models saved before it was added; checked when present.
    weights_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    #: The features' names in the weights' column order, when the data named them.
    feature_names: Annotated[list[Annotated[str, Field(max_length=1000)]], Field(max_length=100_000)] | None = None
    #: The label column's name, when the data named it.
    label: Annotated[str, Field(max_length=1000)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ModelMeta:
        if len(self.classes) != self.n_classes:
            raise ValueError(f"{len(self.classes)} classes listed for n_classes = {self.n_classes}")
        if len(set(self.classes)) != len(self.classes) or list(self.classes) != sorted(self.classes):
            raise ValueError("the classes must be distinct and sorted, in the order of the weights' rows")
        if self.feature_names is not None:
            if len(self.feature_names) != self.n_features:
                raise ValueError(f"{len(self.feature_names)} feature names for n_features = {self.n_features}")
            if len(set(self.feature_names)) != len(self.feature_names):
                raise ValueError("the feature names must be distinct")
        arrays = [v for v in self.scaler.model_dump().values() if isinstance(v, list)]
        if any(len(a) != self.n_features for a in arrays):
            raise ValueError(f"the scaler does not have {self.n_features} features")
        try:
            SVMParams(**self.params)
        except ValidationError as exc:
            error = exc.errors()[0]
            raise ValueError(f"params.{'.'.join(map(str, error['loc']))}: {error['msg']}") from None
        return self


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


def _scaler(
    spec: dict[str, Any], n_features: int, where: str, feature_names: list[str] | None = None
) -> StandardScaler | MinMaxScaler | FunctionTransformer:
    """A fitted scaler rebuilt from its JSON form (the fitted attributes, exactly as saved).

    Without scaling it is an identity step that checks the features' count and names all the
    same. With ``feature_names`` the step holds them as ``feature_names_in_``, so that the
    pipeline checks a DataFrame's columns as a scikit-learn pipeline fitted on one does.
    """
    kind = spec.get("kind")
    scaler: StandardScaler | MinMaxScaler | FunctionTransformer
    if kind == "none":
        scaler = FunctionTransformer(validate=True)
        scaler.n_features_in_ = n_features
        if feature_names is not None:
            scaler.feature_names_in_ = np.asarray(feature_names, dtype=object)
        return scaler
    # sizes, types and finiteness were checked by ModelMeta when the model was read
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in spec.items() if isinstance(v, list)}
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
    if feature_names is not None:
        scaler.feature_names_in_ = np.asarray(feature_names, dtype=object)
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
    feature_names: Sequence[str] | None = None,
    label: str | None = None,
) -> Path:
    """Write ``weights.pt`` and ``model.json`` into ``directory`` (created if needed); return it.

    ``state`` is a ``LinearSVM`` state dict holding the weights that were scored (for ASGD, the
    averaged iterate, which a fit folds into its parameters). ``feature_names`` and ``label``
    name the data's columns, so that a table to predict on is matched by name.
    """
    from svmhpo import __version__

    directory = ensure_folder(directory, "model folder")
    weights = {k: state[k].detach().cpu().contiguous() for k in _KEYS}
    buffer = io.BytesIO()
    torch.save(weights, buffer)
    raw_weights = buffer.getvalue()
    # weights first, then the description that names their hash: a kill between the two leaves
    # a description that does not match the weights, which read_model refuses, never a mix
    write_atomically(directory / WEIGHTS, raw_weights)
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
        "weights_sha256": hashlib.sha256(raw_weights).hexdigest(),
        "feature_names": None if feature_names is None else [str(n) for n in feature_names],
        "label": label,
    }
    write_atomically(directory / META, json.dumps(meta, indent=2) + "\n")
    return directory


def save_fit(
    directory: str | Path, module: SVMModule, params: SVMParams, data: DeviceData, source: dict[str, Any]
) -> Path:
    """:func:`save_model` of a fitted ``SVMModule`` trained on ``data`` (a ``DeviceData``: its classes,
    scaler, name, feature names and label column go with the weights)."""
    return save_model(
        directory,
        module.net.state_dict(),
        params=params,
        classes=data.classes,
        scaler=data.scaler,
        data=data.name,
        source=source,
        feature_names=data.feature_names,
        label=data.label,
    )


def zip_model(directory: str | Path, archive: str | Path) -> Path:
    """Pack a saved model's two files into ``archive`` (a zip), the form a study stores."""
    archive = Path(archive)
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in (META, WEIGHTS):
            zf.write(Path(directory) / name, arcname=name)
    return archive


#: The largest model svmhpo reads: 1,000 classes × 100,000 features (400 MB of float32 weights).
MAX_CLASSES, MAX_FEATURES = 1000, 100_000
#: ``model.json`` of the largest model is about 12 MB (four scaler arrays of 100,000 numbers).
MAX_META_BYTES = 32 * 2**20
#: What ``torch.save`` adds around the tensors (names, pickle frames, zip headers).
WEIGHTS_OVERHEAD_BYTES = 2**20


def _weights_limit(meta: ModelMeta) -> int:
    """The most bytes ``weights.pt`` of a model so described can take: float64 tensors and overhead."""
    outputs = 1 if meta.n_classes == 2 else meta.n_classes
    return outputs * (meta.n_features + 1) * 8 + WEIGHTS_OVERHEAD_BYTES


class _Member:
    """One file of a saved model, in a directory or a zip, read with a size limit."""

    def __init__(self, path: Path, zf: zipfile.ZipFile | None, name: str) -> None:
        self.path, self.zf, self.name = path, zf, name

    def read(self, limit: int) -> bytes:
        if self.zf is None:
            file = self.path / self.name
            if file.stat().st_size > limit:
                raise ModelError(f"{self.path}: {self.name} is larger than the {limit:,} bytes a model's can be")
            with open(file, "rb") as handle:
                data = handle.read(limit + 1)
        else:
            names = self.zf.namelist()
            if self.name not in names:
                raise ModelError(f"{self.path}: not a saved svmhpo model (the archive has no {self.name})")
            if names.count(self.name) > 1:
                raise ModelError(f"{self.path}: the archive holds {self.name} {names.count(self.name)} times")
            if self.zf.getinfo(self.name).file_size > limit:
                raise ModelError(f"{self.path}: {self.name} is larger than the {limit:,} bytes a model's can be")
            with self.zf.open(self.name) as handle:  # the header's size may lie: read at most one byte more
                data = handle.read(limit + 1)
        if len(data) > limit:
            raise ModelError(f"{self.path}: {self.name} is larger than the {limit:,} bytes a model's can be")
        return data


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def _parse_meta(path: Path, raw: bytes) -> ModelMeta:
    try:
        data = json.loads(raw, parse_constant=_no_constants)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
        raise ModelError(f"{path}: {META} is not valid JSON ({exc})") from None
    except RecursionError:
        raise ModelError(f"{path}: {META} is nested too deeply to be a model description") from None
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind != KIND:
        raise ModelError(f"{path}: not an svmhpo model ({META} kind {kind!r}, expected {KIND!r})")
    if type(data.get("format")) is not int or data["format"] != FORMAT:
        raise ModelError(f"{path}: model format {data.get('format')!r}; this svmhpo reads format {FORMAT}")
    try:
        return ModelMeta.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"] if not str(part).startswith(("function-", "list[")))
        message = error["msg"].removeprefix("Value error, ")
        raise ModelError(
            f"{path}: {META} is incomplete or invalid ({where + ': ' if where else ''}{message})"
        ) from None


def read_model(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The weights and metadata of a saved model, checked against each other and within bounds.

    Every file is read with a size limit before it is parsed (the largest legitimate model is
    :data:`MAX_CLASSES` × :data:`MAX_FEATURES`), ``model.json`` is checked strictly (exact types,
    finite numbers, a non-zero scale, distinct classes of one type), and the weights must be
    finite real tensors of the described shape. Any failure is one :class:`ModelError` line.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelError(f"{path}: no such model")
    try:
        if path.is_dir():
            meta = _parse_meta(path, _Member(path, None, META).read(MAX_META_BYTES))
            raw_weights = _Member(path, None, WEIGHTS).read(_weights_limit(meta))
        else:
            with zipfile.ZipFile(path) as zf:  # only these two members are read: no extraction
                meta = _parse_meta(path, _Member(path, zf, META).read(MAX_META_BYTES))
                raw_weights = _Member(path, zf, WEIGHTS).read(_weights_limit(meta))
    except FileNotFoundError as exc:
        missing = Path(exc.filename or "").name or "such file"
        raise ModelError(f"{path}: not a saved svmhpo model (no {missing})") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError):
        raise ModelError(f"{path}: not a saved svmhpo model (neither a model directory nor a zip of one)") from None
    except (OSError, zlib.error) as exc:
        raise ModelError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    if meta.weights_sha256 is not None and hashlib.sha256(raw_weights).hexdigest() != meta.weights_sha256:
        raise ModelError(f"{path}: {WEIGHTS} is not the file {META} describes (its SHA-256 differs)")
    try:
        state = torch.load(io.BytesIO(raw_weights), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a corrupt or hostile file
        raise ModelError(f"{path}: {WEIGHTS} is not a tensor file ({first_line(exc)})") from None
    outputs = 1 if meta.n_classes == 2 else meta.n_classes
    expected = {"linear.weight": (outputs, meta.n_features), "linear.bias": (outputs,)}
    if not isinstance(state, dict) or set(state) != set(_KEYS):
        raise ModelError(f"{path}: {WEIGHTS} must hold exactly {', '.join(_KEYS)}")
    for key, shape in expected.items():
        tensor = state[key]
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != shape:
            raise ModelError(f"{path}: {key} has shape {tuple(getattr(tensor, 'shape', ()))}, expected {shape}")
        if tensor.dtype not in (torch.float32, torch.float64):
            raise ModelError(f"{path}: {key} is {tensor.dtype}; a model's weights are real float32 or float64")
        if not bool(torch.isfinite(tensor).all()):
            raise ModelError(f"{path}: {key} holds NaN or infinite values")
    state = {k: v.to(torch.float32) for k, v in state.items()}
    return state, meta.model_dump()


def load_pipeline(path: str | Path) -> Pipeline:
    """A fitted ``Pipeline(scaler, HingeSVC)`` from a saved model directory or zip.

    The pipeline's ``feature_names_in_`` are the data's column names when it had some (a
    DataFrame passed to it must have those columns, in that order); ``svm.label_name_`` is the
    label column's name, or ``None``.
    """
    from svmhpo.svm.estimator import HingeSVC

    state, meta = read_model(path)
    scaler = _scaler(meta["scaler"], meta["n_features"], str(path), meta.get("feature_names"))
    svc = HingeSVC.from_weights(state, classes=np.asarray(meta["classes"]), params=SVMParams(**meta["params"]))
    svc.label_name_ = meta.get("label")
    return Pipeline([("scaler", scaler), ("svm", svc)])

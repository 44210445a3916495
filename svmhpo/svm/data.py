"""Data sets, the seeded stratified split, scaling, and batches that live on the device.

Every source goes through :func:`load_dataset` (a name or a path) and then :func:`split_dataset`:
a stratified train/validation/test split (72/8/20 by default) whose scaler is fitted on the
training part only. :meth:`DataSplit.to_device` moves the arrays once to the training device as
float32 tensors; :class:`TensorBatches` slices mini-batches from them with no DataLoader worker
processes and no per-batch collation.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import fetch_openml, load_digits, load_svmlight_file, make_classification
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelEncoder, MinMaxScaler, StandardScaler

from svmhpo.errors import DataError, first_line
from svmhpo.svm.params import DEFAULT_SCALING, SCALINGS, Scaling
from svmhpo.svm.tables import TABLE_SUFFIXES, Table, TableFormat, read_features, read_table

__all__ = [
    "BUILTIN",
    "DataSplit",
    "Dataset",
    "DeviceData",
    "TableFormat",
    "TensorBatches",
    "cache_dir",
    "load_dataset",
    "load_features",
    "prepare_data",
    "split_dataset",
    "training_device",
]

#: OpenML names of the downloadable sets.
OPENML: dict[str, str] = {"mnist": "mnist_784", "fashion-mnist": "Fashion-MNIST"}
#: Names :func:`load_dataset` understands besides file paths.
BUILTIN: tuple[str, ...] = ("digits", "synthetic", *OPENML)
SVMLIGHT_SUFFIXES = (".svm", ".svmlight", ".libsvm", ".txt")
_SYNTHETIC = re.compile(r"^synthetic(?::(\d+)x(\d+)x(\d+))?$")


@dataclass(frozen=True)
class Dataset:
    """Features ``X`` (n × d, float32) and labels ``y`` (n,) of any type, with a display name.

    A table with a header names its features (``feature_names``) and its label column
    (``label``); ``notes`` say what was worked out while reading it (delimiter, label column).
    """

    X: np.ndarray
    y: np.ndarray
    name: str
    feature_names: tuple[str, ...] | None = None
    label: str | None = None
    notes: tuple[str, ...] = ()


def cache_dir() -> Path:
    """Where downloaded data sets are cached: ``$SVMHPO_CACHE`` or ``~/.cache/svmhpo``."""
    return Path(os.environ.get("SVMHPO_CACHE", Path.home() / ".cache" / "svmhpo")).expanduser()


def _validated(X: np.ndarray, y: np.ndarray, name: str, table: Table | None = None) -> Dataset:
    """Check shapes, finiteness and class count; return a float32 :class:`Dataset`."""
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim != 2:
        raise DataError(f"{name}: X must be 2-dimensional (samples × features); got shape {X.shape}")
    if y.ndim != 1:
        raise DataError(f"{name}: y must be 1-dimensional; got shape {y.shape}")
    if len(X) != len(y):
        raise DataError(f"{name}: X has {len(X)} rows but y has {len(y)} labels")
    try:
        X = X.astype(np.float32, copy=False)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name}: features are not numeric ({exc})") from None
    if not np.isfinite(X).all():
        raise DataError(f"{name}: features contain NaN or inf (first at {_first_bad(X)})")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise DataError(
            f"{name}: labels contain NaN or inf (first at row {int(np.flatnonzero(~np.isfinite(y))[0]) + 1})"
        )
    n_classes = len(np.unique(y))
    if n_classes < 2:
        found = f"only {y[0].item()!r}" if n_classes else "none"
        raise DataError(f"{name}: need at least two classes; found {n_classes} ({found})")
    if table is None:
        return Dataset(X=X, y=y, name=name)
    return Dataset(X=X, y=y, name=name, feature_names=table.feature_names, label=table.label, notes=table.notes)


def _synthetic(spec: str, seed: int) -> Dataset:
    match = _SYNTHETIC.match(spec)
    if match is None:
        raise DataError(
            f"unknown data set {spec!r}: synthetic sets are written synthetic:NxDxK, e.g. synthetic:70000x784x10"
        )
    n, d, k = (int(g) for g in match.groups()) if match.group(1) else (2000, 64, 10)
    informative = max(2, min(d, d // 2))
    X, y = make_classification(
        n_samples=n,
        n_features=d,
        n_informative=informative,
        n_redundant=0,
        n_classes=k,
        n_clusters_per_class=1,
        class_sep=1.0,
        random_state=seed,
    )
    return _validated(X.astype(np.float32), y, spec)


def _openml(name: str) -> Dataset:
    """Load an OpenML set, from our float32 ``.npz`` cache when present (parsing is slow)."""
    root = cache_dir()
    cached = root / f"{name}.npz"
    if cached.exists():
        with np.load(cached, allow_pickle=False) as arrays:
            return _validated(arrays["X"], arrays["y"], name)
    try:
        with warnings.catch_warnings():  # scikit-learn warns before each retry; the error below says it once
            warnings.simplefilter("ignore", UserWarning)
            X, y = fetch_openml(
                OPENML[name], version=1, data_home=str(root / "openml"), as_frame=False, return_X_y=True
            )
    except OSError as exc:  # URLError and socket errors are OSErrors
        raise DataError(
            f"{name}: not in the cache {root} and OpenML cannot be reached ({exc.__class__.__name__}); "
            f"download it on a connected machine or copy {name}.npz into {root}"
        ) from None
    dataset = _validated(X, y.astype(np.int64), name)
    root.mkdir(parents=True, exist_ok=True)
    np.savez(cached, X=dataset.X, y=dataset.y)
    return dataset


def _load_file(path: Path, table: TableFormat | None) -> Dataset:
    name = str(path)
    if not path.exists():
        raise DataError(f"{name}: no such file")
    if path.is_dir():
        raise DataError(f"{name}: is a folder, not a data file")
    suffix = path.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        read = read_table(path, table)
        return _validated(read.X, read.y, name, read)
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as arrays:
                missing = {"X", "y"} - set(arrays.files)
                if missing:
                    raise DataError(
                        f"{name}: an .npz data file needs arrays X and y; missing {', '.join(sorted(missing))}"
                    )
                X, y = arrays["X"], arrays["y"]
        elif suffix in SVMLIGHT_SUFFIXES:
            X_sparse, y = load_svmlight_file(str(path))
            X = X_sparse.toarray()
        else:
            raise DataError(
                f"{name}: unknown file type {suffix!r}; use .npz, a table ({', '.join(TABLE_SUFFIXES)}) "
                f"or svmlight ({', '.join(SVMLIGHT_SUFFIXES)})"
            )
    except DataError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{name}: cannot parse ({first_line(exc)})") from None
    return _validated(X, y, name)


def load_dataset(source: str, *, seed: int = 0, table: TableFormat | None = None) -> Dataset:
    """Load a data set by name (``digits``, ``mnist``, ``fashion-mnist``, ``synthetic[:NxDxK]``) or path.

    Paths ending in ``.npz`` (arrays ``X`` and ``y``), a table suffix (``.csv``, ``.tsv``,
    ``.parquet``: read by :func:`~svmhpo.svm.tables.read_table` as ``table`` says) or an
    svmlight suffix are read from disk. ``seed`` only affects generated sets.
    """
    if source == "digits":
        X, y = load_digits(return_X_y=True)
        return _validated(X, y, "digits")
    if source in OPENML:
        return _openml(source)
    if source.startswith("synthetic"):
        return _synthetic(source, seed)
    path = Path(source).expanduser()
    if path.suffix or path.exists():
        return _load_file(path, table)
    raise DataError(
        f"unknown data set {source!r}: use one of {', '.join(BUILTIN)} or a path to a .npz, .csv or svmlight file"
    )


def load_features(
    source: str,
    n_features: int,
    feature_names: tuple[str, ...] | None = None,
    label: str | None = None,
    table: TableFormat | None = None,
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Features to predict on, and labels when the source has them: ``(X, y or None, name)``.

    A table is read by :func:`~svmhpo.svm.tables.read_features`: columns by the model's
    ``feature_names`` when both have names, else by position, the label optional. An ``.npz``
    with ``X`` and no ``y`` is features without labels; anything else :func:`load_dataset` reads
    works too. The number of features is checked here, in one line.
    """
    path = Path(source).expanduser()
    name = str(path)
    suffix = path.suffix.lower()
    if suffix in TABLE_SUFFIXES and path.is_file():
        read = read_features(path, n_features, feature_names, label, table)
        X, y = _features_only(read.X, name)[0], read.y
        if y is not None and y.dtype.kind == "f" and not np.isfinite(y).all():
            raise DataError(f"{name}: labels contain NaN or inf")
        return X, y, name
    if suffix == ".npz" and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as arrays:
                if "X" in arrays.files and "y" not in arrays.files:
                    X, _, _ = _features_only(arrays["X"], name)
                    return _checked_width(X, n_features, name), None, name
        except (ValueError, OSError, EOFError) as exc:
            raise DataError(f"{name}: cannot parse ({first_line(exc)})") from None
    data = load_dataset(source)
    return _checked_width(data.X, n_features, data.name), data.y, data.name


def _checked_width(X: np.ndarray, n_features: int, name: str) -> np.ndarray:
    if X.shape[1] != n_features:
        raise DataError(f"{name}: {X.shape[1]} features; the model takes {n_features}")
    return X


def _first_bad(X: np.ndarray) -> str:
    """``row i, column j`` (1-based) of the first NaN or infinite value of ``X``."""
    i, j = np.argwhere(~np.isfinite(X))[0]
    return f"row {int(i) + 1}, column {int(j) + 1}"


def _features_only(X: np.ndarray, name: str) -> tuple[np.ndarray, None, str]:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise DataError(f"{name}: X must be 2-dimensional (samples × features); got shape {X.shape}")
    if not np.isfinite(X).all():
        raise DataError(f"{name}: features contain NaN or inf (first at {_first_bad(X)})")
    return X, None, name


@dataclass(frozen=True)
class DataSplit:
    """Scaled float32 arrays of a train/validation/test split, labels encoded as 0..K-1."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: np.ndarray
    name: str
    #: The scaler fitted on the training part (``None`` for ``scaling = "none"``): a saved model
    #: carries it, so that it predicts on raw features.
    scaler: StandardScaler | MinMaxScaler | None = None
    #: The features' names, the label column's name and the reading notes of a table (see :class:`Dataset`).
    feature_names: tuple[str, ...] | None = None
    label: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def to_device(self, device: str | torch.device = "cpu") -> DeviceData:
        """Copy the arrays once to ``device`` as tensors."""

        def t(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
            return torch.as_tensor(a, dtype=dtype).to(device)

        return DeviceData(
            x_train=t(self.X_train, torch.float32),
            y_train=t(self.y_train, torch.long),
            x_val=t(self.X_val, torch.float32),
            y_val=t(self.y_val, torch.long),
            x_test=t(self.X_test, torch.float32),
            y_test=t(self.y_test, torch.long),
            classes=self.classes,
            name=self.name,
            scaler=self.scaler,
            feature_names=self.feature_names,
            label=self.label,
            notes=self.notes,
        )


@dataclass(frozen=True)
class DeviceData:
    """The tensors of a :class:`DataSplit` on the training device, shared by every trial of a process."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: np.ndarray
    name: str
    scaler: StandardScaler | MinMaxScaler | None = None
    feature_names: tuple[str, ...] | None = None
    label: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def split_sizes(self) -> tuple[int, int, int]:
        """Samples in the training, validation and test splits."""
        return len(self.x_train), len(self.x_val), len(self.x_test)

    @property
    def device(self) -> torch.device:
        return self.x_train.device

    def train_and_val(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Training and validation parts concatenated, for the final refit."""
        return torch.cat([self.x_train, self.x_val]), torch.cat([self.y_train, self.y_val])


def split_dataset(
    dataset: Dataset,
    *,
    val_size: float = 0.08,
    test_size: float = 0.2,
    seed: int = 0,
    scaling: Scaling = DEFAULT_SCALING,
) -> DataSplit:
    """Stratified, seeded train/validation/test split; the scaler is fitted on train only.

    ``val_size`` and ``test_size`` are fractions of the whole set (0.08 and 0.2 give 72/8/20).
    """
    if scaling not in SCALINGS:
        raise DataError(f"scaling must be one of {', '.join(SCALINGS)}; got {scaling!r}")
    if not (0 < test_size < 1 and 0 < val_size < 1 and val_size + test_size < 1):
        raise DataError(f"val_size and test_size must be in (0, 1) with a sum below 1; got {val_size} and {test_size}")
    encoder = LabelEncoder()
    y = encoder.fit_transform(dataset.y)
    counts = np.bincount(y)
    if counts.min() < 3:
        rare = encoder.classes_[counts.argmin()]
        rare = rare.item() if isinstance(rare, np.generic) else rare  # 2 or 'cat', not np.int64(2)
        raise DataError(
            f"{dataset.name}: class {rare!r} has {counts.min()} samples; a stratified split needs at least 3 per class"
        )
    try:
        X_rest, X_test, y_rest, y_test = train_test_split(
            dataset.X, y, test_size=test_size, stratify=y, random_state=seed
        )
        X_train, X_val, y_train, y_val = train_test_split(
            X_rest, y_rest, test_size=val_size / (1 - test_size), stratify=y_rest, random_state=seed
        )
    except ValueError as exc:
        raise DataError(f"{dataset.name}: cannot split ({exc})") from None
    scaler = None
    if scaling != "none":
        scaler = (StandardScaler() if scaling == "standard" else MinMaxScaler()).fit(X_train)
        X_train, X_val, X_test = (scaler.transform(a).astype(np.float32) for a in (X_train, X_val, X_test))
    return DataSplit(
        X_train,
        y_train,
        X_val,
        y_val,
        X_test,
        y_test,
        classes=encoder.classes_,
        name=dataset.name,
        scaler=scaler,
        feature_names=dataset.feature_names,
        label=dataset.label,
        notes=dataset.notes,
    )


def training_device() -> str:
    """``cuda`` when PyTorch sees a GPU, else ``cpu``: where a process keeps its data and trains."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def prepare_data(
    source: str,
    *,
    val_size: float = 0.08,
    test_size: float = 0.2,
    seed: int = 0,
    scaling: Scaling = DEFAULT_SCALING,
    device: str | torch.device = "cpu",
    table: TableFormat | None = None,
) -> DeviceData:
    """Load, split, scale and move a data set to ``device`` in one call (``table``: how to read a table file)."""
    split = split_dataset(
        load_dataset(source, seed=seed, table=table), val_size=val_size, test_size=test_size, seed=seed, scaling=scaling
    )
    return split.to_device(device)


class TensorBatches:
    """Mini-batches sliced from tensors that already sit on the training device.

    Iterating yields ``(x, y)`` views; with ``shuffle`` a new permutation is drawn each pass from
    a seeded generator, so a fit is reproducible. Lightning accepts this as a dataloader.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        fold: torch.Tensor | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive; got {batch_size}")
        self.x, self.y = x, y
        #: Each sample's fold (:mod:`svmhpo.svm.folds`): batches are then ``(x, y, fold)``.
        self.fold = fold
        self.batch_size = batch_size
        self.shuffle = shuffle
        self._generator = torch.Generator(device="cpu").manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __iter__(self):
        n = len(self.x)
        tensors = (self.x, self.y) if self.fold is None else (self.x, self.y, self.fold)
        if self.shuffle:
            order = torch.randperm(n, generator=self._generator).to(self.x.device)
            tensors = tuple(t[order] for t in tensors)
        for start in range(0, n, self.batch_size):
            yield tuple(t[start : start + self.batch_size] for t in tensors)

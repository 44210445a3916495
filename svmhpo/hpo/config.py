"""Study configuration: a small TOML file, validated before anything runs.

The shipped configs (``digits``, ``mnist``, ``fashion-mnist``) live in the package,
``svmhpo/studies/``, so that ``--config mnist`` works from an installed wheel too.

A config names the data set and split, the search space, the training budget, the sampler and
pruner, the warm start and the seed. The models below are pydantic models; the types, defaults,
ranges and choices of the hyperparameters come from :mod:`svmhpo.svm.params`. A file is
validated strictly (no string for a number, no number for a boolean), and the first mistake
becomes one line that names the file and the key, e.g.
``studies/x.toml: [search] lr: low must be below high, got [1.0, 0.1]``.
``StudyConfig.model_json_schema()`` gives the schema of the file.
"""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from svmhpo.errors import ConfigError
from svmhpo.svm.params import (
    DEFAULT_SCALING,
    MAX_SEED,
    OPTIMIZERS,
    STRATEGIES,
    BatchSize,
    FitSettings,
    Metric,
    Optimizer,
    Scaling,
    Strategy,
    SVMParams,
    search_range,
)

__all__ = [
    "DB_OUTAGE_LIMIT_S",
    "PER_RUN",
    "PRUNERS",
    "SAMPLERS",
    "StudyConfig",
    "TrainingConfig",
    "bundled_config",
    "bundled_configs",
    "config_differences",
    "is_data_path",
    "load_config",
    "study_identity",
]

Sampler = Literal["tpe", "random", "qmc", "gp"]
Pruner = Literal["median", "hyperband", "none"]
BatchPruning = Literal["peers", "finished"]
SAMPLERS: tuple[str, ...] = get_args(Sampler)
PRUNERS: tuple[str, ...] = get_args(Pruner)

#: Where the shipped study configs live: ``svmhpo/studies/``, package data of the wheel.
BUNDLED = Path(__file__).resolve().parents[1] / "studies"


class _Section(BaseModel):
    # NaN and ±inf are refused in every float (a range alone lets NaN through: it fails no comparison)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _log_range(bounds: tuple[float, float]) -> tuple[float, float]:
    low, high = bounds
    if low <= 0:
        raise ValueError(f"a log-uniform range needs low > 0, got {low}")
    if low >= high:
        raise ValueError(f"low must be below high, got {list(bounds)}")
    return bounds


def _choices(values: tuple) -> tuple:
    if not values:
        raise ValueError("needs at least one choice")
    if len(set(values)) != len(values):
        raise ValueError(f"choices repeat: {list(values)}")
    return values


class DataConfig(_Section):
    """The ``[data]`` section: the source, the split, the scaling, and how to read a table file."""

    source: str = "digits"
    val_size: float = Field(0.08, gt=0, lt=1)
    test_size: float = Field(0.2, gt=0, lt=1)
    scaling: Scaling = DEFAULT_SCALING
    label: str | None = Field(
        None, min_length=1, description="the label column's name (default: label, target, y or class, else the last)"
    )
    features: tuple[str, ...] | None = Field(
        None, min_length=1, description="the feature columns by name (default: every column but the label)"
    )
    delimiter: str | None = Field(
        None, min_length=1, max_length=1, description="a table's delimiter (default: sniffed)"
    )
    header: bool | None = Field(None, description="whether a table's first line names its columns (default: detected)")

    @model_validator(mode="after")
    def _sizes(self) -> DataConfig:
        if self.val_size + self.test_size >= 1:
            raise ValueError(f"val_size + test_size must be below 1, got {self.val_size} + {self.test_size}")
        return self


class SearchConfig(_Section):
    """The search space: log-uniform ``lr`` and ``weight_decay`` bounds and categorical choices."""

    lr: tuple[float, float] = search_range("lr")
    weight_decay: tuple[float, float] = search_range("weight_decay")
    squared: tuple[bool, ...] = (False, True)
    strategy: tuple[Strategy, ...] = STRATEGIES  # type: ignore[assignment]
    optimizer: tuple[Optimizer, ...] = OPTIMIZERS  # type: ignore[assignment]
    batch_size: tuple[BatchSize, ...] = ()  # empty: fixed at [training] batch_size, not searched

    _ranges = field_validator("lr", "weight_decay")(_log_range)
    _categorical = field_validator("squared", "strategy", "optimizer")(_choices)


class WarmStartConfig(_Section):
    enabled: bool = True
    min_lr: float = Field(1e-6, gt=0)
    max_lr: float = Field(10.0, gt=0)
    num_training: int = Field(100, ge=20, le=100_000)
    weight_decay: float = Field(SVMParams().weight_decay, ge=0)

    @model_validator(mode="after")
    def _sweep(self) -> WarmStartConfig:
        if self.min_lr >= self.max_lr:
            raise ValueError(f"min_lr must be below max_lr, got {self.min_lr} and {self.max_lr}")
        return self


class BaselineConfig(_Section):
    """``LinearSVC`` values of C tried on the validation split before the test comparison."""

    C: tuple[Annotated[float, Field(gt=0)], ...] = Field((0.001, 0.01, 0.1, 1.0), min_length=1)
    multi_class: Literal["crammer_singer", "ovr"] = "crammer_singer"


class TrainingConfig(FitSettings):
    """The ``[training]`` section: each trial's fit settings, and how many trials train as one batch."""

    batch_trials: int = Field(
        16,
        ge=1,
        le=65_536,
        description="trials trained side by side as one batched fit; 1 trains one trial per fit",
    )
    batch_pruning: BatchPruning = Field(
        "peers",
        description=(
            "what a batch member is pruned against: peers (the finished trials and the batch's other "
            "members at the same epoch) or finished (the finished trials only, as one trial per fit)"
        ),
    )


#: Settings that a run or worker may change for itself without changing the study (its identity
#: is the rest of the config): ``[study] trials``, the budget, ``[study] db_outage_limit``,
#: ``[training] batch_trials`` and ``[training] batch_pruning``.
PER_RUN = ("trials", "db_outage_limit", "training.batch_trials", "training.batch_pruning")
#: Seconds a database outage is waited out by default (``[study] db_outage_limit``).
DB_OUTAGE_LIMIT_S = 120.0

_SECTIONS = ("data", "training", "search", "warm_start", "baseline")


class StudyConfig(_Section):
    """Everything a study needs. The ``[study]`` table's keys are the top-level fields."""

    name: str = Field("digits", min_length=1)
    trials: int = Field(200, ge=1, le=10**7)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    sampler: Sampler = "tpe"
    pruner: Pruner = "median"
    cv: int = Field(
        1,
        ge=1,
        le=20,
        description="folds each trial is cross-validated on (its value the mean fold score, the folds "
        "trained as members of one batched fit); 1: scored on the validation split alone",
    )
    metric: Metric = Field(
        "accuracy",
        description="what a trial's validation score is, and the study maximises: accuracy, "
        "balanced_accuracy (mean recall over the classes) or macro_f1 (mean F1 over the classes)",
    )
    heartbeat_interval: int = Field(10, ge=1, le=3600)
    grace_period: int = Field(30, ge=2, le=86_400)
    db_outage_limit: float = Field(
        DB_OUTAGE_LIMIT_S,
        ge=0,
        le=86_400,
        description="seconds a database outage is waited out before the run stops (PostgreSQL, MySQL)",
    )
    artifacts: str | None = Field(
        None,
        pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$",
        description="where the study's model goes: s3://bucket/prefix (Optuna's Boto3ArtifactStore; "
        "pip install 'svmhpo[s3]'), instead of the study's database (a server) or a folder beside a SQLite file",
    )
    data: DataConfig = DataConfig()
    training: TrainingConfig = TrainingConfig()
    search: SearchConfig = SearchConfig()
    warm_start: WarmStartConfig = WarmStartConfig()
    baseline: BaselineConfig = BaselineConfig()
    _path: str = PrivateAttr("<defaults>")

    @field_validator("sampler", mode="before")
    @classmethod
    def _no_cmaes(cls, value: Any) -> Any:
        if isinstance(value, str) and value.lower() in ("cmaes", "cma-es"):
            raise ValueError(
                f"{value!r} is not one of {', '.join(SAMPLERS)} (CMA-ES cannot sample categorical parameters)"
            )
        return value

    @model_validator(mode="after")
    def _heartbeat(self) -> StudyConfig:
        if self.grace_period <= self.heartbeat_interval:
            raise ValueError(
                f"grace_period must exceed heartbeat_interval, got {self.grace_period} and {self.heartbeat_interval}"
            )
        return self

    @property
    def path(self) -> str:
        """Where the config came from (a file, ``study 'x'`` or ``<defaults>``), for messages."""
        return self._path

    def replace(self, **changes: Any) -> StudyConfig:
        """A re-validated copy with fields changed: ``None`` leaves a field as it is, and a dict
        for a section changes only the keys it names (``replace(data={"source": "mnist"})``)."""
        raw = self.to_dict()
        for key, value in changes.items():
            if isinstance(value, dict) and isinstance(raw.get(key), dict):
                raw[key] = raw[key] | value
            elif value is not None:
                raw[key] = value
        return _validate(raw, self.path)

    def to_dict(self) -> dict[str, Any]:
        """JSON form, stored on the study so that workers rebuild the same config."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, raw: dict[str, Any], path: str = "<study>") -> StudyConfig:
        """Rebuild (and re-validate) a config from :meth:`to_dict`'s form."""
        return _validate(raw, path)


def _where(loc: tuple, path: str) -> str:
    """``path: [section] key`` of a pydantic error location."""
    parts = [str(p) for p in loc if not isinstance(p, int)]
    if parts and parts[0] in _SECTIONS:
        section, keys = parts[0], parts[1:]
    else:
        section, keys = "study", parts
    return f"{path}: [{section}]" + (f" {keys[0]}" if keys else "")


def _keys(section_where: str) -> list[str]:
    """The keys the section named at the end of ``section_where`` (``path: [data]``) takes."""
    section = section_where.rpartition("[")[2].rstrip("]")
    if section == "study":
        return [name for name in StudyConfig.model_fields if name not in _SECTIONS]
    model = StudyConfig.model_fields[section].annotation if section in _SECTIONS else None
    return list(getattr(model, "model_fields", {}))


def _did_you_mean(word: str, choices: list[str]) -> str:
    """``"; did you mean 'trials'?"`` for the closest of ``choices``, or nothing."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _message(error: dict, path: str) -> str:
    where = _where(error["loc"], path)
    kind = error["type"]
    if kind == "extra_forbidden":
        section_where, _, key = where.rpartition(" ")
        return f"{section_where} unknown key {key!r}" + _did_you_mean(key, _keys(section_where))
    text = error["msg"].removeprefix("Value error, ")
    text = text[0].lower() + text[1:]
    if kind != "value_error":
        text += f", got {error['input']!r}"
    return f"{where}: {text}"


def _validate(raw: dict[str, Any], path: str) -> StudyConfig:
    try:
        config = StudyConfig.model_validate_json(json.dumps(raw, default=str), strict=True)
    except ValidationError as exc:
        raise ConfigError(_message(exc.errors()[0], path)) from None
    config._path = path
    return config


def _flatten(raw: dict[str, Any], path: str) -> dict[str, Any]:
    """The TOML layout (a ``[study]`` table beside the sections) as the model's fields."""
    known = ("study", *_SECTIONS)
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"{path}: unknown section [{key}] (known: {', '.join(known)})")
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: [{key}] must be a table, got {value!r}")
    study = raw.get("study", {})
    clash = sorted(set(study) & set(_SECTIONS))
    if clash:
        raise ConfigError(f"{path}: [study] unknown key {clash[0]!r}")
    return {**study, **{k: v for k, v in raw.items() if k != "study"}}


def bundled_configs() -> list[str]:
    """Names of the study configs shipped with svmhpo (``digits``, ``mnist``, …)."""
    return sorted(p.stem for p in BUNDLED.glob("*.toml"))


def bundled_config(name: str) -> Path:
    """The shipped config ``name`` (``svmhpo/studies/<name>.toml``)."""
    return BUNDLED / f"{name}.toml"


def load_config(source: str | Path | None = None) -> StudyConfig:
    """Read and validate a study config: a TOML path, a shipped config's name, or ``None`` for digits."""
    if source is None:
        return load_config(bundled_config("digits"))
    path = Path(source)
    if not path.suffix and not path.exists() and (BUNDLED / f"{source}.toml").exists():
        path = bundled_config(str(source))
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        shipped = ", ".join(bundled_configs())
        raise ConfigError(f"{path}: no such config file (shipped configs: {shipped})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text, as TOML must be (byte {exc.start}: {exc.reason})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    config = _validate(_flatten(raw, str(path)), str(path))
    source = config.data.source
    if is_data_path(source):
        # relative to the config's folder, stored absolute (symlinks kept): any working directory, any worker
        config = config.replace(data={"source": os.path.abspath(path.parent / Path(source).expanduser())})
    return config


def is_data_path(source: str) -> bool:
    """Whether a ``[data] source`` is a file path rather than a data set's name (``digits``, ``synthetic:…``)."""
    return not source.startswith("synthetic") and (bool(Path(source).suffix) or "/" in source or source.startswith("~"))


def _leaves(raw: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            out |= _leaves(value, f"{prefix}{key}.")
        else:
            out[prefix + key] = value
    return out


def config_differences(stored: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """What differs between two configs' identities (:func:`study_identity`), as ``[data] source 'a' -> 'b'``.

    A source stored relative (before svmhpo stored them absolute) equals the absolute path it
    names from the working directory.
    """
    old, new = _leaves(study_identity(stored)), _leaves(study_identity(wanted))
    lines = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if key == "data.source" and isinstance(a, str) and isinstance(b, str) and is_data_path(a):
            if Path(a).expanduser().resolve() == Path(b).expanduser().resolve():
                continue
        if a != b:
            section, _, name = key.rpartition(".")
            lines.append(f"[{section or 'study'}] {name} {a!r} -> {b!r}")
    return lines


def study_identity(raw: dict[str, Any]) -> dict[str, Any]:
    """A config's JSON form without :data:`PER_RUN` settings: what must match to continue a study."""
    identity = {k: v for k, v in raw.items() if k not in ("trials", "db_outage_limit")}
    per_run = {key.removeprefix("training.") for key in PER_RUN if key.startswith("training.")}
    identity["training"] = {k: v for k, v in raw.get("training", {}).items() if k not in per_run}
    return identity

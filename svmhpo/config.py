"""Study configuration: a small TOML file in ``studies/``, validated before anything runs.

A config names the data set and split, the search space, the training budget, the sampler and
pruner, the warm start and the seed. Unknown keys, wrong types and empty ranges are rejected with
one line that names the file and the key, e.g. ``studies/x.toml: [search] lr: low must be below
high, got [1.0, 0.1]``.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from svmhpo.errors import ConfigError
from svmhpo.params import OPTIMIZERS, STRATEGIES

__all__ = ["PRUNERS", "SAMPLERS", "StudyConfig", "default_config_path", "load_config"]

SAMPLERS: tuple[str, ...] = ("tpe", "random", "qmc", "gp")
PRUNERS: tuple[str, ...] = ("median", "hyperband", "none")
SCALINGS: tuple[str, ...] = ("standard", "minmax", "none")


@dataclass(frozen=True)
class DataConfig:
    source: str = "digits"
    val_size: float = 0.08
    test_size: float = 0.2
    scaling: str = "standard"


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 20
    batch_size: int = 64


@dataclass(frozen=True)
class SearchConfig:
    """The search space: log-uniform ``lr`` and ``weight_decay`` bounds and categorical choices."""

    lr: tuple[float, float] = (1e-4, 3.0)
    weight_decay: tuple[float, float] = (1e-7, 1e-1)
    squared: tuple[bool, ...] = (False, True)
    strategy: tuple[str, ...] = STRATEGIES
    optimizer: tuple[str, ...] = OPTIMIZERS
    batch_size: tuple[int, ...] = ()  # empty: fixed at training.batch_size, not searched


@dataclass(frozen=True)
class WarmStartConfig:
    enabled: bool = True
    min_lr: float = 1e-6
    max_lr: float = 10.0
    num_training: int = 100
    weight_decay: float = 1e-4


@dataclass(frozen=True)
class BaselineConfig:
    """``LinearSVC`` values of C tried on the validation split before the test comparison."""

    C: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0)
    multi_class: str = "crammer_singer"


@dataclass(frozen=True)
class StudyConfig:
    """Everything a study needs; ``path`` records where it came from, for error messages."""

    name: str = "digits"
    trials: int = 200
    seed: int = 0
    sampler: str = "tpe"
    pruner: str = "median"
    heartbeat_interval: int = 10
    grace_period: int = 30
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    warm_start: WarmStartConfig = field(default_factory=WarmStartConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    path: str = "<defaults>"

    def replace(self, **changes: Any) -> StudyConfig:
        """A copy with top-level fields changed (command-line overrides), re-validated."""
        updated = dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})
        _check_semantics(updated)
        return updated

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, stored on the study so that workers can rebuild the same config."""
        out = dataclasses.asdict(self)
        out.pop("path")
        return json.loads(json.dumps(out))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], path: str = "<study>") -> StudyConfig:
        """Rebuild (and re-validate) a config from :meth:`to_dict`'s form."""
        nested: dict[str, Any] = {"study": {k: v for k, v in raw.items() if k not in _SECTIONS}}
        nested.update({k: v for k, v in raw.items() if k in _SECTIONS})
        return _build(nested, path)


_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "training": TrainingConfig,
    "search": SearchConfig,
    "warm_start": WarmStartConfig,
    "baseline": BaselineConfig,
}


def _coerce(value: Any, default: Any, where: str) -> Any:
    """Convert ``value`` to the type of ``default`` or raise a ConfigError naming ``where``."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported value {value!r}")


def _element_type(key: str) -> type:
    if key in ("lr", "weight_decay", "C"):
        return float
    if key == "squared":
        return bool
    if key == "batch_size":
        return int
    return str


def _build_section(cls: type, raw: Any, path: str, section: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: [{section}] must be a table, got {raw!r}")
    defaults = cls()
    values = {}
    for key, value in raw.items():
        where = f"{path}: [{section}] {key}"
        if not hasattr(defaults, key):
            known = ", ".join(f.name for f in dataclasses.fields(cls))
            raise ConfigError(f"{path}: [{section}] unknown key {key!r} (known: {known})")
        default = getattr(defaults, key)
        value = _coerce(value, default, where)
        if isinstance(default, tuple):
            kind = _element_type(key)
            items = []
            for item in value:
                if kind is float and isinstance(item, int | float) and not isinstance(item, bool):
                    items.append(float(item))
                elif kind is int and isinstance(item, int) and not isinstance(item, bool):
                    items.append(item)
                elif kind in (bool, str) and isinstance(item, kind):
                    items.append(item)
                else:
                    raise ConfigError(f"{where}: expected a list of {kind.__name__}, got {value!r}")
            value = tuple(items)
        values[key] = value
    return cls(**values)


def _build(raw: dict[str, Any], path: str) -> StudyConfig:
    top: dict[str, Any] = {"path": path}
    study = raw.get("study", {})
    if not isinstance(study, dict):
        raise ConfigError(f"{path}: [study] must be a table")
    defaults = StudyConfig()
    for key in raw:
        if key != "study" and key not in _SECTIONS:
            known = ", ".join(["study", *_SECTIONS])
            raise ConfigError(f"{path}: unknown section [{key}] (known: {known})")
    for key, value in study.items():
        if key in _SECTIONS or key == "path" or not hasattr(defaults, key):
            raise ConfigError(f"{path}: [study] unknown key {key!r}")
        top[key] = _coerce(value, getattr(defaults, key), f"{path}: [study] {key}")
    for section, cls in _SECTIONS.items():
        if section in raw:
            top[section] = _build_section(cls, raw[section], path, section)
    config = StudyConfig(**top)
    _check_semantics(config)
    return config


def _check_range(path: str, key: str, bounds: tuple[float, ...], *, positive: bool = True) -> None:
    where = f"{path}: [search] {key}"
    if len(bounds) != 2:
        raise ConfigError(f"{where}: expected [low, high], got {list(bounds)}")
    low, high = bounds
    if positive and low <= 0:
        raise ConfigError(f"{where}: a log-uniform range needs low > 0, got {low}")
    if low >= high:
        raise ConfigError(f"{where}: low must be below high, got {list(bounds)}")


def _check_choices(path: str, key: str, values: tuple, allowed: tuple) -> None:
    where = f"{path}: [search] {key}"
    if not values:
        raise ConfigError(f"{where}: needs at least one choice")
    bad = [v for v in values if v not in allowed]
    if bad:
        raise ConfigError(f"{where}: unknown choice {bad[0]!r} (choose from {', '.join(map(str, allowed))})")
    if len(set(values)) != len(values):
        raise ConfigError(f"{where}: choices repeat: {list(values)}")


def _check_semantics(c: StudyConfig) -> None:
    p = c.path
    if c.trials < 1:
        raise ConfigError(f"{p}: [study] trials must be at least 1, got {c.trials}")
    if c.sampler not in SAMPLERS:
        raise ConfigError(
            f"{p}: [study] sampler {c.sampler!r} is not one of {', '.join(SAMPLERS)}"
            + (" (CMA-ES cannot sample categorical parameters)" if c.sampler.lower() in ("cmaes", "cma-es") else "")
        )
    if c.pruner not in PRUNERS:
        raise ConfigError(f"{p}: [study] pruner {c.pruner!r} is not one of {', '.join(PRUNERS)}")
    if c.heartbeat_interval < 1 or c.grace_period <= c.heartbeat_interval:
        raise ConfigError(
            f"{p}: [study] grace_period must exceed heartbeat_interval >= 1, "
            f"got {c.grace_period} and {c.heartbeat_interval}"
        )
    if c.data.scaling not in SCALINGS:
        raise ConfigError(f"{p}: [data] scaling {c.data.scaling!r} is not one of {', '.join(SCALINGS)}")
    if not (0 < c.data.val_size < 1 and 0 < c.data.test_size < 1 and c.data.val_size + c.data.test_size < 1):
        raise ConfigError(f"{p}: [data] val_size and test_size must be fractions with a sum below 1")
    if c.training.epochs < 1 or c.training.batch_size < 1:
        raise ConfigError(f"{p}: [training] epochs and batch_size must be positive")
    _check_range(p, "lr", c.search.lr)
    _check_range(p, "weight_decay", c.search.weight_decay)
    _check_choices(p, "squared", c.search.squared, (False, True))
    _check_choices(p, "strategy", c.search.strategy, STRATEGIES)
    _check_choices(p, "optimizer", c.search.optimizer, OPTIMIZERS)
    if c.search.batch_size and min(c.search.batch_size) < 1:
        raise ConfigError(f"{p}: [search] batch_size choices must be positive")
    ws = c.warm_start
    if not 0 < ws.min_lr < ws.max_lr:
        raise ConfigError(f"{p}: [warm_start] need 0 < min_lr < max_lr, got {ws.min_lr} and {ws.max_lr}")
    if ws.num_training < 20:
        raise ConfigError(f"{p}: [warm_start] num_training must be at least 20, got {ws.num_training}")
    if not c.baseline.C or min(c.baseline.C) <= 0:
        raise ConfigError(f"{p}: [baseline] C needs positive values")


def default_config_path() -> Path:
    """``studies/digits.toml`` of the source tree (the default study)."""
    return Path(__file__).resolve().parent.parent / "studies" / "digits.toml"


def load_config(path: str | Path | None = None) -> StudyConfig:
    """Read and validate a study config; ``None`` loads the bundled digits study."""
    if path is None:
        default = default_config_path()
        return load_config(default) if default.exists() else StudyConfig()
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    return _build(raw, str(path))

"""The settings of one SVM fit, each defined once: type, default, range, choices and help text.

:class:`SVMParams` holds the model's hyperparameters (the five a study searches, plus the fixed
``C`` and ``margin``) and :class:`FitSettings` the training budget. The command line builds its
``train`` options from these definitions, the study config takes its search space and
``[training]`` section from them, and :class:`~svmhpo.svm.model.SVMModule` and
:class:`~svmhpo.svm.estimator.HingeSVC` take their defaults and checks from them, so a default
or a range is written in one place. This module imports neither torch nor optuna.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

import annotated_types
from pydantic import BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo

__all__ = [
    "DEFAULT_SCALING",
    "MAX_SEED",
    "METRICS",
    "OPTIMIZERS",
    "SCALINGS",
    "STRATEGIES",
    "VAL_ACC",
    "BatchSize",
    "FitSettings",
    "Metric",
    "Optimizer",
    "SVMParams",
    "Scaling",
    "Strategy",
    "bounds",
    "metric_key",
    "metric_title",
    "search_range",
]

#: The validation metric the module logs every epoch, which a study optimises and prunes on.
VAL_ACC = "val_acc"

Metric = Literal["accuracy", "balanced_accuracy", "macro_f1"]
Strategy = Literal["crammer_singer", "one_vs_rest"]
Optimizer = Literal["sgd", "asgd", "adam", "adamw"]
Scaling = Literal["standard", "minmax", "none"]

#: Multiclass hinge strategies of :class:`~svmhpo.svm.losses.MultiClassHingeLoss`.
STRATEGIES: tuple[str, ...] = get_args(Strategy)
#: Optimizers :func:`~svmhpo.svm.optim.build_optimizer` builds.
OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)
#: Feature scalers fitted on the training split, and the one used unless a config or option says otherwise.
SCALINGS: tuple[str, ...] = get_args(Scaling)
DEFAULT_SCALING: Scaling = "standard"
#: What a study may maximise (``[study] metric``), each as scikit-learn computes it:
#: ``accuracy_score``, ``balanced_accuracy_score`` (mean recall over the classes present) and
#: ``f1_score(average="macro")`` (mean F1 over the classes present in the labels or the predictions).
METRICS: tuple[str, ...] = get_args(Metric)
_KEYS = {"accuracy": "acc", "balanced_accuracy": "balanced_acc", "macro_f1": "macro_f1"}
_TITLES = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "macro_f1": "macro F1"}


def metric_key(metric: str, split: str = "val") -> str:
    """The short name of ``metric`` on ``split`` wherever a value is printed or stored as a key:
    ``val_acc`` (accuracy, the name studies always had), ``val_balanced_acc``, ``test_macro_f1``."""
    return f"{split}_{_KEYS[metric]}"


def metric_title(metric: str) -> str:
    """The metric in words, for axis titles and sentences: ``balanced accuracy``."""
    return _TITLES[metric]


class _Settings(BaseModel):
    """Frozen, validated on construction, unknown names refused."""

    # NaN and ±inf are refused in every float: NaN passes no comparison, so a range alone lets it through
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump()

    @classmethod
    def field(cls, name: str) -> FieldInfo:
        """The definition of setting ``name``: annotation, default, constraints, description."""
        return cls.model_fields[name]


class SVMParams(_Settings):
    """The hyperparameters of one fit, with the defaults of a good digits fit.

    ``lr`` and ``weight_decay`` carry the log-uniform range a study searches by default
    (:func:`search_range`). With the mean hinge loss, ``C``, the rate and the loss scale are
    redundant, so ``C`` and ``margin`` stay fixed at 1 and are not searched.
    """

    lr: float = Field(0.1, gt=0, description="learning rate η₀", json_schema_extra={"search": (1e-4, 3.0)})
    weight_decay: float = Field(
        1e-4, ge=0, description="L2 penalty λ on the weights, never the bias", json_schema_extra={"search": (1e-7, 0.1)}
    )
    squared: bool = Field(False, description="squared hinge loss instead of the hinge")
    strategy: Strategy = Field("crammer_singer", description="multiclass hinge: Crammer-Singer or one-vs-rest")
    optimizer: Optimizer = Field("sgd", description="sgd and asgd with Bottou's schedule, or adam/adamw")
    C: float = Field(1.0, gt=0, description="weight of the hinge term")
    margin: float = Field(1.0, gt=0, description="hinge margin")


class FitSettings(_Settings):
    """The training budget of one fit (the study config's ``[training]`` section)."""

    epochs: int = Field(20, ge=1, le=100_000, description="passes over the training data")
    batch_size: int = Field(64, ge=1, le=2**24, description="samples per update")


#: The searched categorical values, for a config's ``[search] batch_size`` list.
BatchSize = Annotated[int, Field(ge=1, le=2**24)]
#: Seeds reach NumPy, whose seeds are unsigned 32-bit integers.
MAX_SEED = 2**32 - 1


def search_range(name: str) -> tuple[float, float]:
    """The default log-uniform search range of the numeric hyperparameter ``name``."""
    extra = SVMParams.field(name).json_schema_extra
    assert isinstance(extra, dict), name
    low, high = extra["search"]  # type: ignore[misc]
    return float(low), float(high)


def bounds(info: FieldInfo) -> tuple[float | None, bool, float | None, bool]:
    """``(low, low_inclusive, high, high_inclusive)`` of a numeric setting's constraints."""
    low = high = None
    low_inc = high_inc = False
    for m in info.metadata:
        if isinstance(m, annotated_types.Gt):
            low, low_inc = m.gt, False
        elif isinstance(m, annotated_types.Ge):
            low, low_inc = m.ge, True
        elif isinstance(m, annotated_types.Lt):
            high, high_inc = m.lt, False
        elif isinstance(m, annotated_types.Le):
            high, high_inc = m.le, True
    return low, low_inc, high, high_inc  # type: ignore[return-value]

"""The hyperparameters of one SVM fit and the names a study searches, without importing torch.

Configs, the search space and the commands that only read studies (``svmhpo studies``, ``best``,
``report``) need these names but not the model; importing them from here keeps those commands
free of the five seconds that torch and Lightning take to import.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["OPTIMIZERS", "STRATEGIES", "VAL_ACC", "SVMParams"]

#: The validation metric the study optimises and the pruning callback monitors. One name, here.
VAL_ACC = "val_acc"

#: Multiclass hinge strategies of :class:`~svmhpo.losses.MultiClassHingeLoss`.
STRATEGIES: tuple[str, ...] = ("crammer_singer", "one_vs_rest")

#: Optimizers :func:`~svmhpo.optim.build_optimizer` builds.
OPTIMIZERS: tuple[str, ...] = ("sgd", "asgd", "adam", "adamw")


@dataclass(frozen=True)
class SVMParams:
    """The hyperparameters a study searches, with the defaults of a good digits fit."""

    lr: float = 0.1
    weight_decay: float = 1e-4
    squared: bool = False
    strategy: str = "crammer_singer"
    optimizer: str = "sgd"
    C: float = 1.0
    margin: float = 1.0

    def as_dict(self) -> dict:
        return asdict(self)

"""Optimizers of the linear SVM and Bottou's learning-rate schedules.

- ``sgd``: η_t = η₀ / (1 + λ·η₀·t), with λ the weight decay and t the number of updates.
- ``asgd``: the same expression to the power 0.75, plus Polyak averaging of the iterates
  (torch's ASGD with its own decay switched off, so the schedule lives in one place).
- ``adam`` / ``adamw``: constant rate; AdamW's decay is decoupled.

Weight decay is applied to ``weight`` parameters only, never to the bias: the primal term is
½‖w‖², and the bias is not part of w.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from svmhpo.svm.params import OPTIMIZERS

__all__ = ["OPTIMIZERS", "bottou_factor", "build_optimizer", "parameter_groups"]

#: Exponent of Bottou's schedule per optimizer; ``None`` means a constant rate.
SCHEDULE_POWER: dict[str, float | None] = {"sgd": 1.0, "asgd": 0.75, "adam": None, "adamw": None}


def parameter_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """Split parameters into a decayed group (weights) and an undecayed one (biases)."""
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if name.endswith("bias") else decay).append(param)
    groups = [{"params": decay, "weight_decay": float(weight_decay)}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def bottou_factor(lr: float, weight_decay: float, power: float) -> Callable[[int], float]:
    """Return the ``LambdaLR`` factor ``t ↦ 1 / (1 + λ·η₀·t)^power``.

    ``LambdaLR`` multiplies the base rate η₀ by this factor, so it must not contain η₀ itself:
    returning η₀/(…) would square the learning rate.
    """
    slope = float(weight_decay) * float(lr)

    def factor(step: int) -> float:
        return 1.0 / (1.0 + slope * step) ** power

    return factor


def build_optimizer(name: str, groups: Iterable[dict], lr: float, *, asgd_t0: float = 0.0) -> torch.optim.Optimizer:
    """Create the optimizer ``name`` over ``groups`` (from :func:`parameter_groups`).

    ``asgd_t0`` is the update count after which ASGD starts averaging the iterates.
    """
    groups = list(groups)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr)
    if name == "asgd":
        # lambd=0: torch's built-in η decay is off; LambdaLR applies Bottou's ^0.75 schedule.
        return torch.optim.ASGD(groups, lr=lr, lambd=0.0, alpha=0.75, t0=asgd_t0)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {name!r}")

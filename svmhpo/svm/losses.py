"""Hinge losses of the soft-margin linear SVM, vectorised over samples and classes.

The primal problem is ``min ½‖w‖² + C·Σ ξᵢ``. The ``½‖w‖²`` term belongs to the optimizer (weight
decay on weights only); these losses only see logits and labels and return ``C · reduce(ξ)`` with
``ξ = [margin − y·f(x)]₊`` (or ``ξ²`` when ``squared``).

With ``reduction="mean"`` (the default) the gradient does not grow with the batch or data-set
size. C, the learning rate and the loss scale are then redundant for SGD: ``C·lr`` is what moves
the weights, and ``weight_decay`` plays the role of ``1/(C·n)``. That is why the study searches
only ``lr`` and ``weight_decay`` and leaves ``C`` and ``margin`` at 1.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from svmhpo.svm.params import STRATEGIES, Strategy

__all__ = [
    "REDUCTIONS",
    "STRATEGIES",
    "BinaryHingeLoss",
    "MultiClassHingeLoss",
    "binary_slack",
    "crammer_singer_slack",
    "one_vs_rest_slack",
]

Reduction = Literal["mean", "sum", "none"]

REDUCTIONS: tuple[str, ...] = ("mean", "sum", "none")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


Margin = float | torch.Tensor


def binary_slack(logits: torch.Tensor, target: torch.Tensor, margin: Margin) -> torch.Tensor:
    """``[margin − y·f(x)]₊`` per sample, for logits of shape ``(..., N)`` and labels ±1 of shape ``(N,)``.

    Leading dimensions (a stack of models) broadcast, and so does a tensor ``margin`` of shape
    ``(..., 1)``: one slack per model and sample.
    """
    return torch.clamp_min(margin - target.to(logits.dtype) * logits, 0.0)


def crammer_singer_slack(logits: torch.Tensor, target: torch.Tensor, margin: Margin) -> torch.Tensor:
    """``[margin − (f_t(x) − max_{k≠t} f_k(x))]₊`` per sample, for logits ``(..., N, K)`` and labels ``(N,)``."""
    index = target.view(*([1] * (logits.ndim - 2)), -1, 1).expand(*logits.shape[:-1], 1)
    true_score = logits.gather(-1, index).squeeze(-1)
    # Mask the true class out with -inf instead of indexing y_pred[:, y_true], which would
    # broadcast to an N×N matrix.
    is_true = torch.nn.functional.one_hot(target, logits.shape[-1]).to(torch.bool)
    best_other = logits.masked_fill(is_true, float("-inf")).amax(dim=-1)
    return torch.clamp_min(margin - (true_score - best_other), 0.0)


def one_vs_rest_slack(logits: torch.Tensor, target: torch.Tensor, margin: Margin) -> torch.Tensor:
    """The K binary slacks ``[margin − y_k·f_k(x)]₊`` of each sample, shape ``(..., N, K)``, ``y_k = ±1``."""
    if isinstance(margin, torch.Tensor):
        margin = margin.unsqueeze(-1)
    signs = torch.nn.functional.one_hot(target, logits.shape[-1]).to(logits.dtype) * 2 - 1
    return torch.clamp_min(margin - signs * logits, 0.0)


def _reduce(per_sample: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    return per_sample


class _HingeBase(nn.Module):
    """Shared constructor checks and the ξ → loss step of both hinge losses."""

    def __init__(
        self, C: float = 1.0, squared: bool = False, margin: float = 1.0, reduction: Reduction = "mean"
    ) -> None:
        super().__init__()
        _check_choice("reduction", reduction, REDUCTIONS)
        if C <= 0:
            raise ValueError(f"C must be positive; got {C!r}")
        self.C = float(C)
        self.squared = bool(squared)
        self.margin = float(margin)
        self.reduction = reduction

    def _finish(self, slack: torch.Tensor) -> torch.Tensor:
        """Turn per-sample slack ξ ≥ 0 into the reduced, C-scaled loss."""
        if self.squared:
            slack = slack.square()
        return self.C * _reduce(slack, self.reduction)

    def extra_repr(self) -> str:
        return f"C={self.C}, squared={self.squared}, margin={self.margin}, reduction={self.reduction!r}"


class BinaryHingeLoss(_HingeBase):
    """Hinge loss for labels in {−1, +1} and one logit per sample.

    ``forward(logits, target)`` accepts logits of shape ``(N,)`` or ``(N, 1)`` and targets in
    {−1, +1}. Worked example: logits [1, 2, 3], labels [+1, −1, +1], sum reduction → 3.
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self._finish(binary_slack(logits.reshape(-1), target.reshape(-1), self.margin))


class MultiClassHingeLoss(_HingeBase):
    """Multiclass hinge loss over K logits and integer labels in [0, K).

    - ``crammer_singer``: ξᵢ = [margin − (f_t(xᵢ) − max_{k≠t} f_k(xᵢ))]₊, one slack per sample.
    - ``one_vs_rest``: K binary hinges on the same K-output layer with yᵢₖ = ±1; the K slacks of a
      sample add up (so the mean is over samples, not over samples × classes).

    Worked example: logits [[0.5, −0.5], [−0.5, 0.5]], labels [0, 1], sum reduction → 0 for
    Crammer–Singer and 2 for one-vs-rest.
    """

    def __init__(
        self,
        C: float = 1.0,
        squared: bool = False,
        margin: float = 1.0,
        strategy: Strategy = "crammer_singer",
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(C=C, squared=squared, margin=margin, reduction=reduction)
        _check_choice("strategy", strategy, STRATEGIES)
        self.strategy = strategy

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.ndim != 2:
            raise ValueError(f"logits must have shape (N, K); got {tuple(logits.shape)}")
        target = target.reshape(-1).long()
        if self.strategy == "crammer_singer":
            return self._finish(crammer_singer_slack(logits, target, self.margin))
        per_class = one_vs_rest_slack(logits, target, self.margin)
        if self.squared:
            per_class = per_class.square()
        return self.C * _reduce(per_class.sum(dim=1), self.reduction)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, strategy={self.strategy!r}"

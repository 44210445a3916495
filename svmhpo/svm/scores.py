"""The validation metric of many members at once, from their predictions on one labelled set.

A study maximises one of :data:`~svmhpo.svm.params.METRICS`, each with scikit-learn's
definition (the tests check every member against ``accuracy_score``,
``balanced_accuracy_score`` and ``f1_score(average="macro")``). Every member of a batched fit is
scored in one pass: accuracy as the exact fraction ``k/N`` (the value studies always stored), the
other two from each member's confusion matrix, counted on the training device with one
``scatter_add`` and read back as ``K × classes²`` integers.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["member_scores"]


def member_scores(pred: Tensor, y: Tensor, n_classes: int, metric: str, own: Tensor | None = None) -> list[float]:
    """The ``metric`` of each member: ``pred`` is ``(K, N)`` predicted class indices, ``y`` the
    ``N`` labels, ``own`` an optional ``(K, N)`` mask of the samples each member is scored on
    (its held-out fold)."""
    if metric == "accuracy":
        right = pred == y
        if own is None:
            correct, total = right.sum(dim=1).tolist(), [len(y)] * len(pred)
        else:
            correct, total = (right & own).sum(dim=1).tolist(), own.sum(dim=1).tolist()
        return [k / n for k, n in zip(correct, total, strict=True)]  # k/N exactly, as a one-trial fit logs it
    cells = y.view(1, -1) * n_classes + pred  # (K, N): the confusion cell of each prediction
    weight = torch.ones_like(cells) if own is None else own.to(cells.dtype)
    counts = torch.zeros(len(pred), n_classes * n_classes, dtype=cells.dtype, device=pred.device)
    confusion = counts.scatter_add_(1, cells, weight).view(-1, n_classes, n_classes).to("cpu", torch.float64)
    hits = confusion.diagonal(dim1=1, dim2=2)  # [member, class]
    support, predicted = confusion.sum(dim=2), confusion.sum(dim=1)
    if metric == "balanced_accuracy":  # mean recall over the classes in the labels
        present = support > 0
        per_class = torch.where(present, hits / support.clamp(min=1), 0.0)
    elif metric == "macro_f1":  # mean F1 = 2TP / (2TP + FP + FN) over the classes in labels or predictions
        present = (support + predicted) > 0
        per_class = torch.where(present, 2 * hits / (support + predicted).clamp(min=1), 0.0)
    else:
        raise ValueError(f"unknown metric {metric!r}")
    return (per_class.sum(dim=1) / present.sum(dim=1)).tolist()

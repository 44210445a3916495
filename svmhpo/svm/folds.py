"""Cross-validated trials at the cost of one fit: a trial's k folds trained as k members of a batch.

With ``[study] cv = k`` a trial is scored on k stratified folds of the training and validation
samples together, its value the mean of the k fold scores (the study's metric), as scikit-learn's searches and
Optuna's ``OptunaSearchCV`` score a configuration. A batched fit (:mod:`svmhpo.svm.batched`)
already trains many members on the same data tensors in one stacked update; the k folds of a
configuration are k more members of it, each with its own held-out fold:

- every member walks the same shuffled mini-batches of all training and validation samples;
  a member's loss is the mean over the mini-batch's samples *outside* its held-out fold (those
  samples are weighted zero), so it never trains on what it is scored on (tested by scrambling
  the held-out labels: the member's weights do not move);
- its validation score is over its held-out fold alone.

A fold member's epoch is one pass over all the samples with about (k−1)/k of each mini-batch
counting, so it makes as many updates per epoch as a holdout trial and sees (k−1)/k of the
samples. :class:`FoldedFit` shows the fit to the study as its trials (member ``i`` of the study's
list is folds ``i·k … i·k+k−1``): a trial's score is the mean of its folds' (what pruning
reads at each epoch), stopping a trial stops all its folds, and a fold that diverges ends its
trial. The folds depend only on the study's seed, so every trial is scored on the same folds.
The scaler stays fitted on the training split alone (as the holdout study's), so a fold drawn
from it was also seen by the scaler: a standard scaler's mean and spread, not the labels.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold

from svmhpo.errors import DataError
from svmhpo.svm.data import DeviceData

__all__ = ["FoldedFit", "Folds", "make_folds"]


@dataclass(frozen=True)
class Folds:
    """The training and validation samples together, on the training device, and each one's fold."""

    x: torch.Tensor
    y: torch.Tensor
    fold: torch.Tensor  # int64, one fold number per sample
    k: int

    @property
    def sizes(self) -> list[int]:
        return torch.bincount(self.fold, minlength=self.k).tolist()


#: Folds made in this process, by (data object, k, seed): every batch of a study uses the same.
_MADE: dict[tuple[int, int, int], tuple[DeviceData, Folds]] = {}


def make_folds(data: DeviceData, k: int, seed: int) -> Folds:
    """Stratified k folds of ``data``'s training and validation samples, shuffled with ``seed``.

    Raises :class:`~svmhpo.errors.DataError` when a class has fewer than ``k`` samples there.
    """
    key = (id(data), k, seed)
    made = _MADE.get(key)
    if made is not None and made[0] is data:
        return made[1]
    if k < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {k}")
    x, y = data.train_and_val()
    labels = y.cpu().numpy()
    counts = np.bincount(labels, minlength=data.n_classes)
    if counts.min() < k:
        rare = data.classes[int(counts.argmin())]
        rare = rare.item() if isinstance(rare, np.generic) else rare  # 2 or 'cat', not np.int64(2)
        raise DataError(
            f"cv = {k} needs at least {k} samples of each class in the training and validation splits; "
            f"class {rare!r} of {data.name} has {int(counts.min())}"
        )
    fold = np.empty(len(labels), dtype=np.int64)
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for number, (_, held_out) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        fold[held_out] = number
    folds = Folds(x, y, torch.from_numpy(fold).to(x.device), k)
    _MADE[key] = (data, folds)
    return folds


class FoldedFit:
    """A fit of ``trials × k`` fold members seen as a :class:`~svmhpo.svm.members.MemberFit` of its trials."""

    def __init__(self, module, trials: int, k: int) -> None:
        self.module = module
        self.trials = trials
        self.k = k

    @property
    def current_epoch(self) -> int:
        return self.module.current_epoch

    def _members(self, trial: int) -> range:
        return range(trial * self.k, (trial + 1) * self.k)

    @property
    def live(self) -> tuple[int, ...]:
        return tuple(sorted({member // self.k for member in self.module.live}))

    def fold_scores(self) -> dict[int, list[float]]:
        """Each live trial's fold scores (the fit's metric) at the last validation, in fold order."""
        values = self.module.val_score
        return {
            trial: [values[m] for m in self._members(trial)]
            for trial in self.live
            if all(m in values for m in self._members(trial))
        }

    @property
    def val_score(self) -> dict[int, float]:
        """Each live trial's mean fold score at the last validation."""
        return {trial: statistics.fmean(scores) for trial, scores in self.fold_scores().items()}

    def fold_attrs(self) -> dict[int, dict[str, object]]:
        """What each live trial stores of its folds (user attributes): each fold's score at
        the last validation, and their standard deviation."""
        return {
            trial: {"cv_scores": [float(s) for s in scores], "cv_std": float(np.std(scores))}
            for trial, scores in self.fold_scores().items()
        }

    def take_diverged(self) -> dict[int, str]:
        diverged: dict[int, str] = {}
        for member, reason in self.module.take_diverged().items():
            diverged.setdefault(member // self.k, f"fold {member % self.k}: {reason}")
        if diverged:
            self.stop(diverged)
        return diverged

    def stop(self, trials: Iterable[int]) -> None:
        self.module.stop(m for trial in trials for m in self._members(trial))

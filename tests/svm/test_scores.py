"""Every metric a study can maximise equals scikit-learn's, member by member, in every fit."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from svmhpo.svm.batched import fit_batch, fit_folds
from svmhpo.svm.data import DeviceData
from svmhpo.svm.members import fit_one
from svmhpo.svm.params import METRICS, SVMParams
from svmhpo.svm.scores import member_scores

SKLEARN = {
    "accuracy": accuracy_score,
    "balanced_accuracy": balanced_accuracy_score,
    "macro_f1": lambda y, p: f1_score(y, p, average="macro"),
}


def sklearn_score(metric: str, y: np.ndarray, pred: np.ndarray) -> float:
    with warnings.catch_warnings():  # balanced accuracy warns of predicted classes absent from y
        warnings.simplefilter("ignore")
        return float(SKLEARN[metric](y, pred))


@pytest.mark.parametrize("metric", METRICS)
def test_member_scores_equal_sklearn_with_and_without_a_mask(metric: str) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, size=300)
    y[y == 4] = 3  # class 4 is never a label, but members predict it
    pred = np.where(rng.random((6, 300)) < 0.7, y, rng.integers(0, 5, size=(6, 300)))
    pred[2] = 0  # a member that predicts one class only
    own = rng.random((6, 300)) < 0.4
    scores = member_scores(torch.as_tensor(pred), torch.as_tensor(y), 5, metric)
    masked = member_scores(torch.as_tensor(pred), torch.as_tensor(y), 5, metric, torch.as_tensor(own))
    for k in range(6):
        assert scores[k] == pytest.approx(sklearn_score(metric, y, pred[k]), abs=1e-12)
        assert masked[k] == pytest.approx(sklearn_score(metric, y[own[k]], pred[k][own[k]]), abs=1e-12)
    if metric == "accuracy":  # k/N exactly, the value studies always stored
        assert scores[0] == (pred[0] == y).sum() / 300


class Seen:
    """A study's watch that keeps what it reads after each validation."""

    def __init__(self) -> None:
        self.values: list[dict[int, float]] = []

    def after_update(self, fit) -> None:
        pass

    def after_validation(self, fit) -> None:
        self.values.append(fit.val_score)


MEMBERS = [
    SVMParams(lr=0.1),
    SVMParams(lr=0.01, optimizer="asgd"),
    SVMParams(lr=0.5, squared=True, strategy="one_vs_rest"),
]


@pytest.mark.parametrize("metric", ["balanced_accuracy", "macro_f1"])
def test_every_fit_scores_its_members_by_the_metric(digits: DeviceData, metric: str) -> None:
    x, y = digits.x_val, digits.y_val.numpy()
    module, _ = fit_batch(MEMBERS, digits, epochs=2, seed=1, metric=metric)
    assert len(module.live) == 3
    pred = dict(zip(module.live, module.predict_members(x).numpy(), strict=True))  # rows in stack order
    assert module.val_score == pytest.approx({i: sklearn_score(metric, y, pred[i]) for i in range(3)}, abs=1e-12)
    assert module.val_score != pytest.approx(
        {i: sklearn_score("accuracy", y, pred[i]) for i in range(3)}, abs=1e-9
    )  # a different number from accuracy here, or the test could not tell them apart

    seen = Seen()
    _, trainer = fit_one(MEMBERS[:1], digits, epochs=2, seed=1, metric=metric, watch=seen)
    one = trainer.lightning_module.predict_labels(x).numpy()
    assert len(seen.values) == 2 and seen.values[-1] == {0: pytest.approx(sklearn_score(metric, y, one), abs=1e-12)}

    folded, _ = fit_folds(MEMBERS[:2], digits, k=3, fold_seed=0, epochs=2, seed=1, metric=metric)
    from svmhpo.svm.folds import make_folds

    folds = make_folds(digits, 3, 0)
    every = dict(zip(folded.module.live, folded.module.predict_members(folds.x).numpy(), strict=True))
    for trial, scores in folded.fold_scores().items():
        for fold, score in enumerate(scores):
            held = folds.fold.numpy() == fold
            expected = sklearn_score(metric, folds.y.numpy()[held], every[trial * 3 + fold][held])
            assert score == pytest.approx(expected, abs=1e-12)

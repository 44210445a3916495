"""Hinge losses against hand computation, the worked examples and autograd."""

from __future__ import annotations

import pytest
import torch

from svmhpo.svm.losses import BinaryHingeLoss, MultiClassHingeLoss


def test_binary_worked_example_sums_to_three() -> None:
    loss = BinaryHingeLoss(reduction="sum")
    assert loss(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1, -1, 1])).item() == pytest.approx(3.0)


def test_multiclass_worked_examples() -> None:
    logits = torch.tensor([[0.5, -0.5], [-0.5, 0.5]])
    labels = torch.tensor([0, 1])
    assert MultiClassHingeLoss(reduction="sum")(logits, labels).item() == pytest.approx(0.0)
    assert MultiClassHingeLoss(strategy="one_vs_rest", reduction="sum")(logits, labels).item() == pytest.approx(2.0)


def _loop_crammer_singer(logits: torch.Tensor, y: torch.Tensor, margin: float, squared: bool) -> torch.Tensor:
    total = torch.tensor(0.0, dtype=logits.dtype)
    for i in range(len(y)):
        others = [logits[i, k] for k in range(logits.shape[1]) if k != y[i]]
        xi = torch.clamp_min(margin - (logits[i, y[i]] - torch.stack(others).max()), 0)
        total = total + (xi**2 if squared else xi)
    return total


def _loop_one_vs_rest(logits: torch.Tensor, y: torch.Tensor, margin: float, squared: bool) -> torch.Tensor:
    total = torch.tensor(0.0, dtype=logits.dtype)
    for i in range(len(y)):
        for k in range(logits.shape[1]):
            sign = 1.0 if k == y[i] else -1.0
            xi = torch.clamp_min(margin - sign * logits[i, k], 0)
            total = total + (xi**2 if squared else xi)
    return total


@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("margin", [1.0, 0.5])
@pytest.mark.parametrize(
    ("strategy", "oracle"), [("crammer_singer", _loop_crammer_singer), ("one_vs_rest", _loop_one_vs_rest)]
)
def test_multiclass_matches_per_sample_loop(strategy: str, oracle, squared: bool, margin: float) -> None:
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(17, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 5, (17,), generator=gen)
    expected = oracle(logits, y, margin, squared)
    summed = MultiClassHingeLoss(C=2.5, squared=squared, margin=margin, strategy=strategy, reduction="sum")
    mean = MultiClassHingeLoss(squared=squared, margin=margin, strategy=strategy)
    assert summed(logits, y).item() == pytest.approx(2.5 * expected.item())
    assert mean(logits, y).item() == pytest.approx(expected.item() / 17)
    per_sample = MultiClassHingeLoss(squared=squared, margin=margin, strategy=strategy, reduction="none")(logits, y)
    assert per_sample.shape == (17,)


def test_crammer_singer_does_not_broadcast_to_n_by_n() -> None:
    """The notebook's y_pred[:, y_true] bug gives an N×N matrix; the loss must stay per sample."""
    logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 0.5], [0.0, 0.2, 0.0]])
    y = torch.tensor([0, 1, 2, 0])
    per_sample = MultiClassHingeLoss(reduction="none")(logits, y)
    assert per_sample.tolist() == pytest.approx([0.0, 0.0, 0.5, 1.2])


def test_binary_squared_and_mean() -> None:
    logits, y = torch.tensor([0.5, -2.0, 0.0]), torch.tensor([1, 1, -1])
    assert BinaryHingeLoss(squared=True, reduction="sum")(logits, y).item() == pytest.approx(0.25 + 9.0 + 1.0)
    assert BinaryHingeLoss()(logits, y).item() == pytest.approx((0.5 + 3.0 + 1.0) / 3)


@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("strategy", ["crammer_singer", "one_vs_rest"])
def test_multiclass_gradcheck(strategy: str, squared: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    # Logits kept away from the hinge kinks, where the gradient is not defined.
    logits = (torch.randn(6, 4, generator=gen, dtype=torch.float64) * 3).requires_grad_()
    y = torch.randint(0, 4, (6,), generator=gen)
    loss = MultiClassHingeLoss(squared=squared, strategy=strategy)
    assert torch.autograd.gradcheck(lambda z: loss(z, y), (logits,))


def test_binary_gradcheck() -> None:
    logits = torch.tensor([0.3, -2.2, 1.7, 0.1], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1, 1, -1, -1])
    assert torch.autograd.gradcheck(lambda z: BinaryHingeLoss(squared=True)(z, y), (logits,))


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: MultiClassHingeLoss(strategy="weston_watkins"), "strategy"),
        (lambda: MultiClassHingeLoss(reduction="max"), "reduction"),
        (lambda: BinaryHingeLoss(reduction="avg"), "reduction"),
        (lambda: BinaryHingeLoss(C=0), "C must be positive"),
    ],
)
def test_bad_arguments_rejected_at_construction(factory, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        factory()

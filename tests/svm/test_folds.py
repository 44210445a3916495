"""Cross-validated trials as fold members of one batched fit (:mod:`svmhpo.svm.folds`).

A fold member makes the updates of a plain PyTorch loop on the same mini-batches with its
held-out fold left out of the loss; it is the same inside a batch of many trials' folds as
alone; it never trains on its held-out fold; its validation accuracy is its weights' accuracy
on that fold; and the fit, seen as its trials, averages, stops and ends trials fold by fold.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_batched import assert_same

from svmhpo.errors import DataError
from svmhpo.svm.batched import BatchedSVMModule, fit_folds
from svmhpo.svm.data import DeviceData, TensorBatches, prepare_data
from svmhpo.svm.folds import Folds, make_folds
from svmhpo.svm.losses import MultiClassHingeLoss
from svmhpo.svm.model import LinearSVM
from svmhpo.svm.training import quiet_trainer

K, EPOCHS, SEED, FOLD_SEED, BATCH = 3, 4, 5, 0, 64


def _params():
    from svmhpo.svm.params import SVMParams

    return [
        SVMParams(lr=0.1, optimizer="sgd", weight_decay=1e-3),
        SVMParams(lr=0.01, optimizer="adam", squared=True, strategy="one_vs_rest", weight_decay=1e-4),
        SVMParams(lr=0.03, optimizer="asgd", weight_decay=1e-3),
    ]


def _alone(params, folds: Folds, held_out: int, data: DeviceData) -> BatchedSVMModule:
    """One fold member trained by itself, as :func:`fit_folds` trains a batch of them."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        init = LinearSVM(data.n_features, data.n_classes)
    n = len(folds.x)
    module = BatchedSVMModule([params], init, batch_size=BATCH, steps_per_epoch=-(-n // BATCH), held_out=[held_out])
    train = TensorBatches(folds.x, folds.y, n, shuffle=True, seed=SEED, fold=folds.fold)
    val = TensorBatches(folds.x, folds.y, n, fold=folds.fold)
    with quiet_trainer(EPOCHS) as trainer:
        trainer.fit(module, train_dataloaders=train, val_dataloaders=val)
    return module


def test_folds_are_stratified_fixed_by_the_seed_and_refused_for_rare_classes(digits: DeviceData) -> None:
    folds = make_folds(digits, 5, FOLD_SEED)
    assert len(folds.x) == len(digits.x_train) + len(digits.x_val)
    assert max(folds.sizes) - min(folds.sizes) <= 1
    for label in range(digits.n_classes):
        per_fold = torch.bincount(folds.fold[folds.y == label], minlength=5)
        assert int(per_fold.max() - per_fold.min()) <= 1  # each class spread evenly
    assert make_folds(digits, 5, FOLD_SEED) is folds  # made once per process
    assert not torch.equal(make_folds(digits, 5, FOLD_SEED + 1).fold, folds.fold)
    tiny = prepare_data("synthetic:40x4x2", seed=0)
    with pytest.raises(DataError, match=r"cv = 20 needs at least 20 samples of each class"):
        make_folds(tiny, 20, 0)


def test_a_fold_member_in_a_batch_is_the_member_alone_and_scores_its_own_fold(digits: DeviceData) -> None:
    members = _params()
    fit, _ = fit_folds(members, digits, k=K, fold_seed=FOLD_SEED, epochs=EPOCHS, batch_size=BATCH, seed=SEED)
    folds = make_folds(digits, K, FOLD_SEED)
    assert fit.live == (0, 1, 2) and sorted(fit.module.live) == list(range(len(members) * K))
    scores = fit.fold_scores()
    for i, params in enumerate(members):
        assert fit.val_score[i] == pytest.approx(float(np.mean(scores[i])))
        attrs = fit.fold_attrs()[i]
        assert attrs["cv_scores"] == scores[i] and attrs["cv_std"] == pytest.approx(float(np.std(scores[i])))
        for j in range(K):
            member = i * K + j
            alone = _alone(params, folds, j, digits)
            assert_same(fit.module.member_state(member), alone.member_state(0), f"trial {i} fold {j}")
            # the accuracy of its weights on its held-out fold, computed here from the weights
            state = fit.module.member_state(member)
            own = folds.fold == j
            logits = folds.x[own] @ state["linear.weight"].T + state["linear.bias"]
            accuracy = (logits.argmax(1) == folds.y[own]).float().mean().item()
            assert scores[i][j] == pytest.approx(accuracy, abs=1e-6)
    assert len({tuple(s) for s in scores.values()}) == 3 and all(len(set(s)) > 1 for s in scores.values())


def test_a_fold_member_makes_the_updates_of_a_plain_loop_without_its_fold(digits: DeviceData) -> None:
    """SGD at a constant rate (no weight decay: Bottou's factor is 1): torch.optim.SGD on the
    hinge loss's mean over the mini-batch's samples outside the held-out fold."""
    from svmhpo.svm.params import SVMParams

    params = SVMParams(lr=0.1, optimizer="sgd", weight_decay=0.0)
    folds = make_folds(digits, K, FOLD_SEED)
    module = _alone(params, folds, 1, digits)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        net = LinearSVM(digits.n_features, digits.n_classes)
    optimizer = torch.optim.SGD(net.parameters(), lr=params.lr)
    loss_fn = MultiClassHingeLoss()
    batches = TensorBatches(folds.x, folds.y, len(folds.x), shuffle=True, seed=SEED, fold=folds.fold)
    for _ in range(EPOCHS):
        for x, y, fold in batches:
            for xb, yb, fb in zip(x.split(BATCH), y.split(BATCH), fold.split(BATCH), strict=True):
                keep = fb != 1
                optimizer.zero_grad()
                loss_fn(net(xb[keep]), yb[keep]).backward()
                optimizer.step()
    assert_same(module.member_state(0), {k: v.detach() for k, v in net.state_dict().items()}, "fold 1")


def test_a_fold_member_never_trains_on_its_held_out_fold(digits: DeviceData) -> None:
    members = _params()
    folds = make_folds(digits, K, FOLD_SEED)
    scrambled_y = folds.y.clone()
    own = folds.fold == 0
    scrambled_y[own] = (scrambled_y[own] + 3) % digits.n_classes  # every held-out label wrong
    scrambled = Folds(folds.x, scrambled_y, folds.fold, K)
    for params in members:
        clean, wrong = _alone(params, folds, 0, digits), _alone(params, scrambled, 0, digits)
        for name, value in clean.member_state(0).items():
            assert torch.equal(value, wrong.member_state(0)[name]), name  # not one bit moved
        assert clean.val_score[0] > 0.8 and wrong.val_score[0] < 0.2  # scored on that fold, though
    # the other folds' members did train on fold 0's samples: their weights move
    assert not torch.equal(_alone(members[0], folds, 1, digits).member_state(0)["linear.weight"],
                           _alone(members[0], scrambled, 1, digits).member_state(0)["linear.weight"])  # fmt: skip


def test_the_fit_as_trials_stops_and_ends_a_trial_with_all_its_folds(digits: DeviceData) -> None:
    from svmhpo.svm.params import SVMParams

    members = [_params()[0], SVMParams(lr=3.0, optimizer="sgd", squared=True), _params()[1]]
    fit, _ = fit_folds(members, digits, k=K, fold_seed=FOLD_SEED, epochs=EPOCHS, batch_size=BATCH, seed=SEED)
    diverged = fit.take_diverged()
    assert list(diverged) == [1] and diverged[1].startswith("fold ") and "training loss became" in diverged[1]
    assert fit.live == (0, 2) and set(fit.module.live) == {0, 1, 2, 6, 7, 8}  # every fold of trial 1 stopped
    assert set(fit.val_score) == {0, 2}
    fit.stop([0])
    assert fit.live == (2,) and set(fit.module.live) == {6, 7, 8}

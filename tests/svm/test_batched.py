"""Batched members make exactly the updates of single fits: every optimizer and loss variant."""

from __future__ import annotations

import itertools

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from svmhpo.svm.batched import BatchedSVMModule, fit_batch
from svmhpo.svm.data import DeviceData, prepare_data
from svmhpo.svm.params import OPTIMIZERS, SVMParams
from svmhpo.svm.training import fit

EPOCHS = 6
SEED = 3
#: A rate per optimizer family at which every loss variant trains without diverging.
RATES = {"sgd": 0.1, "asgd": 0.03, "adam": 0.01, "adamw": 0.02}
#: Batched and single arithmetic differ only in float32 rounding (one GEMM for all members,
#: per-member rates as tensors); measured worst case 2.3e-6 over ten digits epochs.
RTOL = 1e-5


class Curves(pl.Callback):
    """Per-epoch val_acc of each member of a batch fit, or of a single fit (member 0)."""

    def __init__(self) -> None:
        self.curves: dict[int, list[float]] = {}

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        values = (
            module.val_score
            if isinstance(module, BatchedSVMModule)
            else {0: float(trainer.callback_metrics["val_acc"])}
        )
        for member, value in values.items():
            self.curves.setdefault(member, []).append(value)


def single(params: SVMParams, data: DeviceData, epochs: int = EPOCHS) -> tuple[dict[str, torch.Tensor], list[float]]:
    """Weights (ASGD: the averaged iterate) and val_acc curve of a single-member fit."""
    curves = Curves()
    module, _ = fit(params, data, epochs=epochs, seed=SEED, callbacks=[curves])
    with module.averaged_weights():
        weights = {k: v.clone() for k, v in module.net.state_dict().items()}
    return weights, curves.curves[0]


def assert_same(batched: dict[str, torch.Tensor], alone: dict[str, torch.Tensor], what: str) -> None:
    for name, value in alone.items():
        scale = value.abs().max().item()
        diff = (batched[name] - value).abs().max().item()
        assert diff <= RTOL * scale, f"{what} {name}: differs by {diff:.3g} at scale {scale:.3g}"


ALL_VARIANTS = [
    SVMParams(lr=RATES[optimizer], optimizer=optimizer, squared=squared, strategy=strategy, weight_decay=1e-3)
    for optimizer, squared, strategy in itertools.product(OPTIMIZERS, (False, True), ("crammer_singer", "one_vs_rest"))
]


def test_every_member_matches_its_single_fit(digits: DeviceData) -> None:
    curves = Curves()
    module, _ = fit_batch(ALL_VARIANTS, digits, epochs=EPOCHS, seed=SEED, callbacks=[curves])
    assert module.live == tuple(range(len(ALL_VARIANTS)))
    for i, params in enumerate(ALL_VARIANTS):
        weights, curve = single(params, digits)
        what = f"member {i} ({params.optimizer}, squared={params.squared}, {params.strategy})"
        assert_same(module.member_state(i), weights, what)
        np.testing.assert_allclose(curves.curves[i], curve, atol=1e-5, err_msg=what)


def test_binary_members_and_their_own_c_and_margin_match_single_fits() -> None:
    data = prepare_data("synthetic:600x12x2", seed=1)
    members = [
        SVMParams(lr=0.05, optimizer="sgd", C=2.0),
        SVMParams(lr=0.05, optimizer="asgd", squared=True, margin=0.5),
        SVMParams(lr=0.01, optimizer="adamw", weight_decay=1e-2),
    ]
    module, _ = fit_batch(members, data, epochs=EPOCHS, seed=SEED)
    for i, params in enumerate(members):
        weights, _ = single(params, data)
        assert weights["linear.weight"].shape == (1, 12)
        assert_same(module.member_state(i), weights, f"binary member {i}")


class StopAt(pl.Callback):
    """Stop the given members after the validation of ``epoch`` (0-based), recording their weights then."""

    def __init__(self, epoch: int, members: list[int]) -> None:
        self.epoch, self.members = epoch, members
        self.frozen: dict[int, dict[str, torch.Tensor]] = {}
        self.epochs_seen = 0

    def on_validation_end(self, trainer: pl.Trainer, module: BatchedSVMModule) -> None:
        self.epochs_seen += 1
        if module.current_epoch == self.epoch:
            self.frozen = {i: module.member_state(i) for i in self.members}
            module.stop(self.members)


def test_a_stopped_member_stops_at_once_and_the_others_are_undisturbed(digits: DeviceData) -> None:
    members = [ALL_VARIANTS[0], ALL_VARIANTS[5], ALL_VARIANTS[10], ALL_VARIANTS[15]]
    stop = StopAt(epoch=1, members=[1, 2])
    module, trainer = fit_batch(members, digits, epochs=EPOCHS, seed=SEED, callbacks=[stop])
    assert module.live == (0, 3)
    assert set(module.val_score) == {0, 3}
    with pytest.raises(KeyError):
        module.member_state(1)
    for i in (0, 3):
        assert_same(module.member_state(i), single(members[i], digits)[0], f"member {i}")
    for i in (1, 2):  # what a stopped member held is what a 2-epoch single fit ends with
        assert_same(stop.frozen[i], single(members[i], digits, epochs=2)[0], f"stopped member {i}")
    assert trainer.current_epoch == EPOCHS


def test_the_fit_ends_when_no_member_is_left(digits: DeviceData) -> None:
    stop = StopAt(epoch=1, members=[0, 1])
    module, _ = fit_batch(ALL_VARIANTS[:2], digits, epochs=EPOCHS, seed=SEED, callbacks=[stop])
    assert module.live == ()
    assert stop.epochs_seen == 2


def test_a_diverging_member_stops_alone(digits: DeviceData) -> None:
    members = [ALL_VARIANTS[0], SVMParams(lr=3.0, optimizer="sgd", squared=True), ALL_VARIANTS[12]]
    module, _ = fit_batch(members, digits, epochs=EPOCHS, seed=SEED)
    diverged = module.take_diverged()
    assert list(diverged) == [1]
    assert "training loss became" in diverged[1]
    assert module.take_diverged() == {}
    assert module.live == (0, 2)
    for i in (0, 2):
        assert_same(module.member_state(i), single(members[i], digits)[0], f"member {i}")

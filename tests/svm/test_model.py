"""The Lightning module: hyperparameters take effect, optimizers, schedules, decay groups, fits."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from sklearn.linear_model import SGDClassifier
from sklearn.svm import LinearSVC

from svmhpo.svm.data import DeviceData, TensorBatches
from svmhpo.svm.losses import BinaryHingeLoss, MultiClassHingeLoss
from svmhpo.svm.model import DivergedError, SVMModule, backward_is_plain
from svmhpo.svm.optim import bottou_factor
from svmhpo.svm.params import VAL_ACC, SVMParams
from svmhpo.svm.training import fit, held_out_metrics


def _loss_value(module: SVMModule) -> float:
    logits = torch.tensor([[0.2, -0.4, 0.1], [1.5, 0.3, -0.2]])
    return module.loss(logits, torch.tensor([0, 2])).item()


def test_every_loss_hyperparameter_takes_effect() -> None:
    """The notebook built MultiClassHingeLoss() with defaults and ignored C, squared, margin, strategy."""
    base = SVMModule(4, 3)
    assert isinstance(base.loss_fn, MultiClassHingeLoss)
    reference = _loss_value(base)
    for change in ({"C": 3.0}, {"squared": True}, {"margin": 0.25}, {"strategy": "one_vs_rest"}):
        assert _loss_value(SVMModule(4, 3, **change)) != pytest.approx(reference), change
    assert _loss_value(SVMModule(4, 3, C=3.0)) == pytest.approx(3 * reference)


def test_two_classes_use_binary_hinge_with_one_output() -> None:
    module = SVMModule(4, 2)
    assert isinstance(module.loss_fn, BinaryHingeLoss)
    assert module.net.linear.out_features == 1
    # labels {0, 1} become {-1, +1}: logit +2 for class 1 and -2 for class 0 are both beyond the margin
    assert module.loss(torch.tensor([[2.0], [-2.0]]), torch.tensor([1, 0])).item() == 0.0


@pytest.mark.parametrize("optimizer", ["sgd", "asgd", "adam", "adamw"])
def test_weight_decay_applies_to_weights_only(optimizer: str) -> None:
    module = SVMModule(5, 3, optimizer=optimizer, weight_decay=0.01)
    opt = module.configure_optimizers()["optimizer"]
    groups = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert groups[id(module.net.linear.weight)] == 0.01
    assert groups[id(module.net.linear.bias)] == 0.0
    assert len(groups) == 2


@pytest.mark.parametrize(("optimizer", "power"), [("sgd", 1.0), ("asgd", 0.75)])
def test_bottou_schedule_is_a_factor_of_the_base_rate(optimizer: str, power: float) -> None:
    lr, wd = 0.5, 0.1
    config = SVMModule(3, 3, lr=lr, weight_decay=wd, optimizer=optimizer).configure_optimizers()
    opt, sched = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert config["lr_scheduler"]["interval"] == "step"
    rates = []
    for _ in range(4):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [lr / (1 + wd * lr * t) ** power for t in range(4)]
    assert rates == pytest.approx(expected)
    assert bottou_factor(lr, wd, 1.0)(0) == 1.0  # a factor, not eta0/(...): the rate is not squared


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_adam_family_has_no_schedule(optimizer: str) -> None:
    assert "lr_scheduler" not in SVMModule(3, 3, optimizer=optimizer).configure_optimizers()


def test_unknown_optimizer_or_strategy_rejected() -> None:
    with pytest.raises(ValueError, match="optimizer"):
        SVMModule(3, 3, optimizer="rmsprop")
    with pytest.raises(ValueError, match="strategy"):
        SVMModule(3, 3, strategy="all_pairs")


def test_good_setting_reaches_095_and_matches_linearsvc(digits: DeviceData) -> None:
    module, trainer = fit(SVMParams(lr=0.1, weight_decay=1e-4), digits, epochs=20, batch_size=64)
    metrics = trainer.callback_metrics
    assert metrics[VAL_ACC].item() >= 0.95
    assert {"val_loss", "val_f1"} <= set(metrics)  # logged by the last epoch
    validated = trainer.validate(module, dataloaders=TensorBatches(digits.x_val, digits.y_val, 64), verbose=False)[0]
    assert {"val_acc", "val_loss", "val_f1"} <= set(validated)
    assert validated["val_acc"] == pytest.approx(metrics[VAL_ACC].item(), abs=1e-6)
    ours = held_out_metrics(module, digits.x_test, digits.y_test)
    svc = LinearSVC(multi_class="crammer_singer", C=0.01).fit(digits.x_train.numpy(), digits.y_train.numpy())
    theirs = svc.score(digits.x_test.numpy(), digits.y_test.numpy())
    assert ours["acc"] >= theirs - 0.02
    assert 0.9 < ours["f1"] <= 1.0


def test_one_vs_rest_agrees_in_kind_with_sgdclassifier(digits: DeviceData) -> None:
    module, _ = fit(SVMParams(strategy="one_vs_rest", lr=0.05, weight_decay=1e-4), digits, epochs=10)
    ours = held_out_metrics(module, digits.x_test, digits.y_test)["acc"]
    sgd = SGDClassifier(loss="hinge", random_state=0).fit(digits.x_train.numpy(), digits.y_train.numpy())
    theirs = sgd.score(digits.x_test.numpy(), digits.y_test.numpy())
    assert abs(ours - theirs) < 0.05
    assert ours > 0.9


def test_fit_is_reproducible_from_the_seed(digits: DeviceData) -> None:
    first, _ = fit(SVMParams(optimizer="asgd"), digits, epochs=3, seed=7)
    second, _ = fit(SVMParams(optimizer="asgd"), digits, epochs=3, seed=7)
    other, _ = fit(SVMParams(optimizer="asgd"), digits, epochs=3, seed=8)
    assert torch.equal(first.net.linear.weight, second.net.linear.weight)
    assert not torch.equal(first.net.linear.weight, other.net.linear.weight)


def test_asgd_keeps_the_averaged_iterate_it_was_scored_with(digits: DeviceData) -> None:
    seen: dict[str, bool] = {}

    class Check(pl.Callback):
        def on_train_epoch_end(self, trainer: pl.Trainer, module: SVMModule) -> None:
            if trainer.current_epoch == 2:  # mid-fit: evaluation swaps the average in, then back out
                ax = trainer.optimizers[0].state[module.net.linear.weight]["ax"]
                seen["differs"] = not torch.equal(ax, module.net.linear.weight)  # averaging started after epoch 1
                with module.averaged_weights():
                    seen["swapped"] = torch.equal(module.net.linear.weight, ax)
                seen["restored"] = not torch.equal(module.net.linear.weight, ax)

    module, trainer = fit(SVMParams(optimizer="asgd", lr=0.5), digits, epochs=3, callbacks=[Check()])
    assert seen == {"differs": True, "swapped": True, "restored": True}
    ax = trainer.optimizers[0].state[module.net.linear.weight]["ax"]
    assert torch.equal(module.net.linear.weight, ax)  # folded into the parameters at the end of the fit
    with torch.no_grad():
        correct = int((module.net.predict(digits.x_val) == digits.y_val).sum())
    assert float(trainer.callback_metrics["val_acc"]) == correct / len(digits.y_val)  # the kept weights were scored


def test_diverging_fit_raises(digits: DeviceData) -> None:
    with pytest.raises(DivergedError):
        fit(SVMParams(lr=1e30, squared=True, optimizer="sgd", weight_decay=0.0), digits, epochs=3)


def test_predict_returns_class_labels(digits: DeviceData) -> None:
    module, _ = fit(SVMParams(), digits, epochs=2)
    labels = module.predict_labels(digits.x_test)
    assert labels.dtype == torch.long and labels.shape == digits.y_test.shape
    assert set(labels.unique().tolist()) <= set(range(10))


def test_trainer_test_logs_test_metrics_and_predict_returns_labels(digits: DeviceData) -> None:
    from svmhpo.svm.data import TensorBatches

    module, trainer = fit(SVMParams(), digits, epochs=3)
    test_batches = TensorBatches(digits.x_test, digits.y_test, len(digits.x_test))
    (metrics,) = trainer.test(module, test_batches, verbose=False)
    assert {"test_acc", "test_f1", "test_loss"} <= set(metrics)
    assert metrics["test_acc"] == pytest.approx(held_out_metrics(module, digits.x_test, digits.y_test)["acc"])
    (labels,) = trainer.predict(module, test_batches)
    assert torch.equal(labels, module.predict_labels(digits.x_test))


class _CountBackward(pl.Callback):
    """A callback with a backward hook: its presence must route updates through manual_backward."""

    def __init__(self) -> None:
        self.calls = 0

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.calls += 1


def test_backward_hooks_still_fire_when_a_callback_implements_them(digits: DeviceData) -> None:
    plain, _ = fit(SVMParams(lr=0.1), digits, epochs=2, batch_size=64, seed=3)
    assert plain._plain_backward  # 32-bit, one device, no backward hook: loss.backward() directly
    counter = _CountBackward()
    hooked, trainer = fit(SVMParams(lr=0.1), digits, epochs=2, batch_size=64, seed=3, callbacks=[counter])
    assert not hooked._plain_backward and not backward_is_plain(trainer)
    updates = 2 * -(-len(digits.x_train) // 64)
    assert counter.calls == updates  # once per mini-batch update, not once per Lightning step
    for a, b in zip(plain.parameters(), hooked.parameters(), strict=True):
        torch.testing.assert_close(a, b)  # both paths make the same updates


def test_mixed_precision_keeps_manual_backward(digits: DeviceData) -> None:
    module = SVMModule(digits.n_features, digits.n_classes)
    trainer = pl.Trainer(precision="bf16-mixed", accelerator="cpu", logger=False, enable_progress_bar=False)
    trainer.strategy.connect(module)
    assert not backward_is_plain(trainer)


@pytest.mark.parametrize("interrupt", ["ctrl_c", "sigterm"])
def test_an_interrupt_inside_a_lightning_fit_comes_out_as_itself(digits: DeviceData, interrupt: str) -> None:
    """Lightning catches a KeyboardInterrupt inside ``fit`` and exits; the fit raises it again as
    the interrupt it was: a SIGTERM (``Terminated``) must not come out as Ctrl-C."""
    from svmhpo.interrupts import Terminated

    raised = Terminated if interrupt == "sigterm" else KeyboardInterrupt

    class Interrupt(pl.Callback):
        def on_train_epoch_start(self, trainer, module) -> None:
            if trainer.current_epoch == 1:
                raise raised

    with pytest.raises(KeyboardInterrupt) as caught:
        fit(SVMParams(lr=0.1), digits, epochs=3, callbacks=[Interrupt()])
    assert type(caught.value) is raised

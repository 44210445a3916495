"""The linear SVM: a plain ``nn.Module`` and the ``LightningModule`` that trains it.

The Lightning module builds its loss and optimizer from its own hyperparameters, logs
:data:`VAL_ACC` (the metric the pruning callback watches) every epoch, ``val_loss`` and macro F1
at the last epoch and on test, and evaluates ASGD runs with their averaged weights.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import lightning.pytorch as pl
import torch
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.strategies import SingleDeviceStrategy
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.model_helpers import is_overridden
from torch import Tensor, nn
from torchmetrics.functional.classification import multiclass_f1_score

from svmhpo.svm.losses import BinaryHingeLoss, MultiClassHingeLoss
from svmhpo.svm.optim import SCHEDULE_POWER, bottou_factor, build_optimizer, parameter_groups
from svmhpo.svm.params import VAL_ACC, FitSettings, Optimizer, Strategy, SVMParams

__all__ = ["VAL_ACC", "DivergedError", "LinearSVM", "SVMModule", "backward_is_plain"]


_BACKWARD_HOOKS = ("on_before_backward", "on_after_backward")


def backward_is_plain(trainer: pl.Trainer) -> bool:
    """Whether ``manual_backward(loss)`` would do exactly ``loss.backward()`` on this trainer.

    That holds for 32-bit precision on one device when neither the module nor any callback
    implements a backward hook. Then the training step calls ``loss.backward()`` itself and
    skips four hook dispatches per update, about 4% of a digits fit; under mixed precision (which scales
    the loss), several devices, or a callback with a backward hook, it keeps ``manual_backward``.
    """
    module = trainer.lightning_module
    if type(trainer.precision_plugin) is not Precision or type(trainer.strategy) is not SingleDeviceStrategy:
        return False
    if any(is_overridden(hook, module, parent=pl.LightningModule) for hook in (*_BACKWARD_HOOKS, "backward")):
        return False
    return not any(is_overridden(hook, cb, parent=pl.Callback) for cb in trainer.callbacks for hook in _BACKWARD_HOOKS)


class LinearSVM(nn.Module):
    """``f(x) = W x + b``: K outputs for K > 2 classes, a single output for two classes."""

    def __init__(self, n_features: int, n_classes: int) -> None:
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"n_classes must be at least 2; got {n_classes}")
        self.n_classes = n_classes
        self.linear = nn.Linear(n_features, 1 if n_classes == 2 else n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class indices in [0, K): the sign for binary, the argmax of the logits otherwise."""
        logits = self(x)
        if self.n_classes == 2:
            return (logits.squeeze(1) > 0).long()
        return logits.argmax(dim=1)

    def margins(self, x: torch.Tensor) -> torch.Tensor:
        """Geometric margins: logits divided by the row norms of W."""
        return self(x) / self.linear.weight.norm(dim=1)


_PARAMS, _FIT = SVMParams(), FitSettings()


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite: the learning rate is too high for this setting."""


class SVMModule(pl.LightningModule):
    """Soft-margin linear SVM trained by Lightning.

    Batches are ``(x, y)`` with integer labels in [0, K). For K = 2 the binary hinge is used and
    ``strategy`` has no effect.

    Training uses manual optimization: each Lightning batch is a *chunk* of shuffled samples
    (by default a whole epoch, see :func:`svmhpo.svm.training.train_loader`) that ``training_step``
    walks in mini-batches of ``batch_size``, one optimizer update and one scheduler step each.
    The updates are exactly those of one Lightning step per mini-batch, without Lightning's
    per-step hook overhead, which on digits costs more than the arithmetic. The LR finder feeds
    chunks of one mini-batch so that its schedule still advances once per update.
    """

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        lr: float = _PARAMS.lr,
        weight_decay: float = _PARAMS.weight_decay,
        squared: bool = _PARAMS.squared,
        strategy: Strategy = _PARAMS.strategy,
        optimizer: Optimizer = _PARAMS.optimizer,
        C: float = _PARAMS.C,
        margin: float = _PARAMS.margin,
        *,
        batch_size: int = _FIT.batch_size,
        steps_per_epoch: int = 1,
        raise_on_divergence: bool = True,
    ) -> None:
        """The hyperparameters of :class:`~svmhpo.svm.params.SVMParams` (validated by it), then plumbing.

        ``batch_size`` is the mini-batch ``training_step`` walks a chunk in, ``steps_per_epoch``
        the updates per epoch (ASGD starts averaging after one epoch), and
        ``raise_on_divergence`` stops a fit whose loss turns NaN/inf (the LR finder turns it off).
        """
        super().__init__()
        SVMParams(  # one set of checks for every entry point: the CLI, the config, the estimator
            lr=lr,
            weight_decay=weight_decay,
            squared=squared,
            strategy=strategy,
            optimizer=optimizer,
            C=C,
            margin=margin,
        )
        FitSettings(batch_size=batch_size)
        self.save_hyperparameters()
        self.automatic_optimization = False
        self._plain_backward = False  # set per fit by on_train_start, see backward_is_plain
        self._folded = False  # ASGD's average folded into the parameters, see on_train_end
        self.lr = lr  # the attribute Tuner.lr_find reads and writes
        self.net = LinearSVM(n_features, n_classes)
        if n_classes == 2:
            self.loss_fn: nn.Module = BinaryHingeLoss(C=C, squared=squared, margin=margin)
        else:
            self.loss_fn = MultiClassHingeLoss(C=C, squared=squared, margin=margin, strategy=strategy)

    def __setattr__(self, name: str, value: object) -> None:
        # Lightning sets `_current_fx_name` (a plain string) before every hook, 20k times in a
        # 20-epoch digits fit; nn.Module's generic __setattr__ made that 10% of the fit.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    # --- forward and loss -------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The configured hinge loss; binary labels {0, 1} become {−1, +1}."""
        if self.hparams.n_classes == 2:
            return self.loss_fn(logits, y * 2 - 1)
        return self.loss_fn(logits, y)

    def on_train_start(self) -> None:
        self._plain_backward = backward_is_plain(self.trainer)
        self._folded = False

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        backward = Tensor.backward if self._plain_backward else self.manual_backward
        optimizer = self.optimizers()
        scheduler = self.lr_schedulers()
        size = self.hparams.batch_size
        losses = []
        for xb, yb in zip(x.split(size), y.split(size), strict=True):
            optimizer.zero_grad(set_to_none=True)
            loss = self.loss(self(xb), yb)
            backward(loss)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            losses.append(loss.detach())
        chunk_loss = losses[0] if len(losses) == 1 else torch.stack(losses).mean()
        if self.hparams.raise_on_divergence and not torch.isfinite(chunk_loss):
            raise DivergedError(f"training loss became {chunk_loss.item()} at epoch {self.current_epoch}")
        return chunk_loss

    def on_train_end(self) -> None:
        """Fold ASGD's averaged iterate into the parameters: the weights that were scored are kept.

        During a fit, evaluation swaps the average in and out (:meth:`averaged_weights`); at its
        end the average becomes the parameters, so that saving, pickling, a scikit-learn
        estimator's state and any later evaluation all see the one set of weights that was
        scored, and no code path can tell the two apart.
        """
        if self.hparams.optimizer == "asgd" and self._trainer is not None and self.trainer.optimizers:
            state = self.trainer.optimizers[0].state
            with torch.no_grad():
                for param in self.net.parameters():
                    ax = state.get(param, {}).get("ax")
                    if ax is not None:
                        param.copy_(ax)
        self._folded = True

    # --- evaluation -------------------------------------------------------------------------
    @contextlib.contextmanager
    def averaged_weights(self) -> Iterator[None]:
        """Swap ASGD's averaged iterate into the model for evaluation, and back afterwards.

        After a fit the average is already the parameters (see :meth:`on_train_end`).
        """
        swapped: list[tuple[torch.Tensor, torch.Tensor]] = []
        trainer = self._trainer
        if self.hparams.optimizer == "asgd" and not self._folded and trainer is not None and trainer.optimizers:
            state = trainer.optimizers[0].state
            for param in self.net.parameters():
                ax = state.get(param, {}).get("ax")
                if ax is not None:
                    saved = param.detach().clone()
                    param.data.copy_(ax)
                    swapped.append((param, saved))
        try:
            yield
        finally:
            for param, saved in swapped:
                param.data.copy_(saved)

    def predict_labels(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted class indices, with ASGD's averaged weights where they exist."""
        with torch.no_grad(), self.averaged_weights():
            return self.net.predict(x)

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Mean loss, accuracy and macro F1 on ``(x, y)``; keys ``loss``, ``acc`` and ``f1``."""
        with self.averaged_weights():
            logits = self(x)
            preds = self.net.predict(x)
        # k/N in float64 on the CPU (some accelerators have no float64): a study stores exactly
        # 140/144 = 0.9722222222222222, not float32's 0.9722222089767456
        acc = (preds == y).sum().to("cpu", torch.float64) / len(y)
        f1 = multiclass_f1_score(preds, y, num_classes=self.hparams.n_classes, average="macro", validate_args=False)
        return {"loss": self.loss(logits, y), "acc": acc, "f1": f1}

    def _log_evaluation(self, prefix: str, batch: tuple[torch.Tensor, torch.Tensor], *, keys: tuple[str, ...]) -> None:
        metrics = self.evaluate(*batch)
        self.log_dict({f"{prefix}_{k}": metrics[k] for k in keys}, batch_size=len(batch[1]))

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        # Every epoch logs val_acc, which the pruning callback reads; the last epoch also logs
        # val_loss and val_f1. Each self.log call costs ~0.35 ms in Lightning's result collection
        # (it deep-copies the metric's metadata), which for three metrics was 9% of a 20-epoch
        # digits fit, and nothing reads the other two before the fit ends.
        trainer = self._trainer
        per_epoch = (
            trainer is not None
            and trainer.state.fn == TrainerFn.FITTING
            and trainer.max_epochs is not None
            and self.current_epoch + 1 < trainer.max_epochs
        )
        self._log_evaluation("val", batch, keys=("acc",) if per_epoch else ("acc", "loss", "f1"))

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._log_evaluation("test", batch, keys=("acc", "loss", "f1"))

    def predict_step(self, batch: torch.Tensor | tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        x = batch[0] if isinstance(batch, tuple | list) else batch
        return self.predict_labels(x)

    # --- optimisation -----------------------------------------------------------------------
    def configure_optimizers(self) -> dict:
        hp = self.hparams
        optimizer = build_optimizer(
            hp.optimizer,
            parameter_groups(self.net, hp.weight_decay),
            self.lr,
            asgd_t0=float(hp.steps_per_epoch),
        )
        power = SCHEDULE_POWER[hp.optimizer]
        if power is None:
            return {"optimizer": optimizer}
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, bottou_factor(self.lr, hp.weight_decay, power))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

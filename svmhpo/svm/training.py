"""Fitting the SVM with Lightning on data that already sits on the training device.

:func:`fit` is the one place that builds a ``Trainer``: quiet (no logger, checkpoints, progress
bar or model summary), ``accelerator="auto"``, and fed by :class:`~svmhpo.svm.data.TensorBatches`.
The study, the estimator and the benchmarks all train through it.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import lightning.pytorch as pl
import torch

from svmhpo.interrupts import raise_if_lost
from svmhpo.svm.data import DeviceData, TensorBatches
from svmhpo.svm.model import SVMModule
from svmhpo.svm.params import FitSettings, SVMParams

__all__ = [
    "build_module",
    "fit",
    "held_out_metrics",
    "interrupts_raised",
    "make_trainer",
    "quiet_lightning",
    "quiet_trainer",
    "train_loader",
]

_LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "pytorch_lightning")
#: Lightning's warnings that do not apply to data that sits on the device in one piece.
_IRRELEVANT_WARNINGS = (
    r".*does not have many workers.*",
    r".*Total length of .* across ranks is zero.*",
    r".*is smaller than the logging interval.*",
    r".*GPU available but not used.*",
    r".*defined a `validation_step` but have no `val_dataloader`.*",
    r".*`isinstance\(treespec, LeafSpec\)` is deprecated.*",
)
_FIT = FitSettings()


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Within the block, silence Lightning's per-fit banners and its warnings about data loaders.

    Both are restored on exit: importing or calling svmhpo leaves the process's logging and
    warning filters as it found them.
    """
    loggers = [logging.getLogger(name) for name in _LIGHTNING_LOGGERS]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        for pattern in _IRRELEVANT_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


@contextlib.contextmanager
def interrupts_raised(trainer: pl.Trainer) -> Iterator[None]:
    """Within the block, a Ctrl-C during ``trainer``'s fit surfaces as ``KeyboardInterrupt``.

    Lightning catches the interrupt inside ``fit``, sets SIGINT to be ignored and calls
    ``sys.exit(1)``, so the caller could neither tell it from a crash nor fail its running trial,
    and a second Ctrl-C did nothing. Here its ``SystemExit`` becomes the interrupt it caught
    again, with Python's own SIGINT handler back in place: a SIGTERM
    (:class:`~svmhpo.interrupts.Terminated`) stays one, or a worker stopped mid-fit exited 130 as
    if Ctrl-C had been pressed, its trials failed and not put back (the compose test's ``stop
    worker`` on a busy machine).
    """
    try:
        yield
    except SystemExit as exc:
        if not trainer.interrupted:
            raise
        signal.signal(signal.SIGINT, signal.default_int_handler)
        caught = exc.__context__  # Lightning exits inside its `except KeyboardInterrupt` block
        raise (caught if isinstance(caught, KeyboardInterrupt) else KeyboardInterrupt()) from None


def make_trainer(
    max_epochs: int,
    *,
    callbacks: Sequence[pl.Callback] = (),
    accelerator: str = "auto",
    validate: bool = True,
    default_root_dir: str | None = None,
) -> pl.Trainer:
    """A Trainer with nothing per fit that costs time: no logger, checkpointing or progress bar.

    Build and run it inside :func:`quiet_lightning` to keep Lightning's banners out of the output.
    """
    return pl.Trainer(
        max_epochs=max_epochs,
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=None if validate else 0,
        callbacks=[*callbacks, _LostCtrlC()],
        default_root_dir=default_root_dir,
    )


@contextlib.contextmanager
def quiet_trainer(max_epochs: int, **settings: Any) -> Iterator[pl.Trainer]:
    """A :func:`make_trainer` Trainer to fit with inside the block: Lightning's banners silenced
    (:func:`quiet_lightning`) and a Ctrl-C raised as ``KeyboardInterrupt`` (:func:`interrupts_raised`)."""
    with quiet_lightning():
        trainer = make_trainer(max_epochs, **settings)
        with interrupts_raised(trainer):
            yield trainer


class _LostCtrlC(pl.Callback):
    """Re-raise, at the next step, a Ctrl-C that Python lost in a garbage-collector callback."""

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        raise_if_lost()


#: Largest chunk of samples one Lightning step walks: a whole epoch on digits; on MNIST a chunk is
#: gathered in shuffled order, so this bounds that transient copy (16,384 × 784 floats = 51 MB).
MAX_CHUNK_SAMPLES = 16_384


def train_loader(data: DeviceData, batch_size: int, seed: int, *, updates_per_step: int | None = None) -> TensorBatches:
    """Shuffled training chunks of ``data``, each ``updates_per_step`` mini-batches long.

    ``None`` (the default) makes chunks of up to :data:`MAX_CHUNK_SAMPLES` (a whole epoch on
    small data); the module's ``training_step`` walks a chunk in mini-batches of ``batch_size``
    (see :class:`~svmhpo.svm.model.SVMModule`).
    """
    n = len(data.x_train)
    if updates_per_step is None:
        updates_per_step = max(1, MAX_CHUNK_SAMPLES // batch_size)
    chunk = batch_size * updates_per_step
    return TensorBatches(data.x_train, data.y_train, max(1, min(chunk, n)), shuffle=True, seed=seed)


def build_module(
    params: SVMParams,
    n_features: int,
    n_classes: int,
    *,
    n_train: int,
    batch_size: int,
    seed: int,
    raise_on_divergence: bool = True,
) -> SVMModule:
    """A freshly initialised module for ``params``; the seed fixes the initial weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SVMModule(
            n_features=n_features,
            n_classes=n_classes,
            batch_size=batch_size,
            steps_per_epoch=-(-n_train // batch_size),
            raise_on_divergence=raise_on_divergence,
            **params.as_dict(),
        )


def fit(
    params: SVMParams,
    data: DeviceData,
    *,
    epochs: int = _FIT.epochs,
    batch_size: int = _FIT.batch_size,
    seed: int = 0,
    callbacks: Sequence[pl.Callback] = (),
    validate: bool = True,
) -> tuple[SVMModule, pl.Trainer]:
    """Train a fresh SVM on ``data`` and return the module and its trainer.

    Validation runs once per epoch on the whole validation set (one batch) and logs ``val_acc``;
    the last epoch also logs ``val_loss`` and ``val_f1``. No validation if ``validate`` is false.
    """
    module = build_module(
        params, data.n_features, data.n_classes, n_train=len(data.x_train), batch_size=batch_size, seed=seed
    )
    val = TensorBatches(data.x_val, data.y_val, len(data.x_val)) if validate else None
    with quiet_trainer(epochs, callbacks=callbacks, validate=validate) as trainer:
        trainer.fit(module, train_dataloaders=train_loader(data, batch_size, seed), val_dataloaders=val)
    return module, trainer


def held_out_metrics(module: SVMModule, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Accuracy, macro F1 and loss of a trained module on held-out data, as plain floats."""
    module.eval()
    return {k: float(v) for k, v in module.evaluate(x.to(module.device), y.to(module.device)).items()}

"""What a study reads and steers in a running fit, member by member, whatever trains the members.

A study runs its trials as the *members* of a fit: K of them side by side in one batched fit
(:func:`~svmhpo.svm.batched.fit_batch`), or one alone in a plain fit (:func:`fit_one`, which is
:func:`~svmhpo.svm.training.fit` seen the same way). Either way the study sees the fit as a
:class:`MemberFit` and is told about it through a :class:`MemberWatch`: after every update (to
notice a diverged member at once) and after every validation (to report and prune). The study
side never touches a Lightning ``Trainer``; :class:`Watching` is the one bridge from Lightning's
hooks to a watch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import lightning.pytorch as pl
from torch import Tensor

from svmhpo.svm.data import DeviceData
from svmhpo.svm.model import VAL_ACC, DivergedError, SVMModule
from svmhpo.svm.params import FitSettings, Metric, SVMParams
from svmhpo.svm.scores import member_scores
from svmhpo.svm.training import fit

__all__ = ["MemberFit", "MemberWatch", "OneMember", "Watching", "fit_one"]

_FIT = FitSettings()


class MemberFit(Protocol):
    """A running fit as its members: read their validation scores, stop some of them.

    Members are numbered by their position in the list the fit was given.
    """

    current_epoch: int

    @property
    def live(self) -> tuple[int, ...]:
        """The members still training."""
        ...

    @property
    def val_score(self) -> dict[int, float]:
        """Each live member's validation score (the fit's metric) at the last validation."""
        ...

    def take_diverged(self) -> dict[int, str]:
        """Members whose loss turned NaN/inf since the last call (already stopped), with the reason."""
        ...

    def stop(self, members: Iterable[int]) -> None:
        """Stop training ``members`` now; the fit ends when no member is live."""
        ...


class MemberWatch(Protocol):
    """Told about a running :class:`MemberFit`: the study's side of a fit (its pruning, its tells)."""

    def after_update(self, fit: MemberFit) -> None:
        """After every training step: members may have diverged."""
        ...

    def after_validation(self, fit: MemberFit) -> None:
        """After every epoch's validation: :attr:`MemberFit.val_score` holds the new values."""
        ...


class Watching(pl.Callback):
    """Lightning's hooks passed on to a :class:`MemberWatch`, with ``fit`` (or the module) as the fit."""

    def __init__(self, watch: MemberWatch, fit: MemberFit | None = None) -> None:
        self.watch = watch
        self.fit = fit

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *args: object) -> None:
        self.watch.after_update(self.fit or module)

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.watch.after_validation(self.fit or module)


class OneMember:
    """A plain one-trial fit seen as a :class:`MemberFit` of one member (member 0).

    Its accuracy is the value the fit logged (a float32 tensor, read as a float), so a trial
    reports what a one-trial fit always reported; another ``metric`` is scored by
    :func:`~svmhpo.svm.scores.member_scores` on ``val``'s samples after each validation. Stopping
    it asks the trainer to stop after this epoch; a loss that turned NaN/inf ends the fit, and the
    member is then reported diverged.
    """

    def __init__(self, metric: Metric = "accuracy", val: tuple[Tensor, Tensor] | None = None) -> None:
        if metric != "accuracy" and val is None:
            raise ValueError(f"scoring {metric} needs the validation samples")
        self.current_epoch = 0
        self.trainer: pl.Trainer | None = None
        self.metric, self._val = metric, val
        self._score: float | None = None
        self._live: tuple[int, ...] = (0,)
        self._diverged: dict[int, str] = {}

    @property
    def live(self) -> tuple[int, ...]:
        return self._live

    @property
    def val_score(self) -> dict[int, float]:
        if not self._live or self.trainer is None:
            return {}
        if self.metric != "accuracy":
            return {} if self._score is None else {0: self._score}
        if VAL_ACC not in self.trainer.callback_metrics:
            return {}
        return {0: float(self.trainer.callback_metrics[VAL_ACC])}

    def validated(self, module: SVMModule) -> None:
        """After a validation: score the metric that the fit does not log."""
        if self.metric != "accuracy" and self._val is not None:
            x, y = self._val
            pred = module.predict_labels(x).view(1, -1)
            (self._score,) = member_scores(pred, y, module.hparams.n_classes, self.metric)

    def take_diverged(self) -> dict[int, str]:
        diverged, self._diverged = self._diverged, {}
        return diverged

    def stop(self, members: Iterable[int]) -> None:
        if 0 in set(members) and self._live:
            self._live = ()
            if self.trainer is not None:
                self.trainer.should_stop = True

    def diverged(self, reason: str) -> None:
        self._live, self._diverged = (), {0: reason}


class _Tracking(Watching):
    """:class:`Watching` for a :class:`OneMember`, which it keeps up to date with the trainer and epoch."""

    fit: OneMember

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *args: object) -> None:
        self.fit.trainer, self.fit.current_epoch = trainer, module.current_epoch
        super().on_train_batch_end(trainer, module, *args)

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.fit.trainer, self.fit.current_epoch = trainer, module.current_epoch
        if not trainer.sanity_checking:
            self.fit.validated(module)
        super().on_validation_end(trainer, module)


def fit_one(
    members: Sequence[SVMParams],
    data: DeviceData,
    *,
    epochs: int = _FIT.epochs,
    batch_size: int = _FIT.batch_size,
    seed: int = 0,
    watch: MemberWatch | None = None,
    metric: Metric = "accuracy",
) -> tuple[OneMember, pl.Trainer | None]:
    """A batch of one trained by the plain one-trial fit (:func:`~svmhpo.svm.training.fit`).

    It has :func:`~svmhpo.svm.batched.fit_batch`'s signature, so a study runs one trial per fit
    through the same loop as a batch; the plain fit is the faster of the two for one member. A
    member whose loss diverges is reported to ``watch`` as diverged, not raised.
    """
    (params,) = members
    member = OneMember(metric, (data.x_val, data.y_val))
    callbacks = [] if watch is None else [_Tracking(watch, member)]
    try:
        _, trainer = fit(params, data, epochs=epochs, batch_size=batch_size, seed=seed, callbacks=callbacks)
    except DivergedError as exc:
        member.diverged(str(exc))
        if watch is not None:
            watch.after_update(member)
        return member, None
    member.trainer = trainer
    return member, trainer

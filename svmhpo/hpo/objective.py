"""One trial: sample the hyperparameters, fit with Lightning, report ``val_acc`` every epoch."""

from __future__ import annotations

from collections.abc import Callable

import optuna
from optuna_integration import PyTorchLightningPruningCallback

from svmhpo.hpo import records
from svmhpo.hpo.config import StudyConfig
from svmhpo.hpo.space import suggest
from svmhpo.svm.data import DeviceData
from svmhpo.svm.model import DivergedError
from svmhpo.svm.training import fit

__all__ = ["FitFn", "Objective"]

#: A trainer: ``fit_fn(params, data, *, epochs, batch_size, seed, callbacks) -> (module, trainer)``
#: whose trainer's ``callback_metrics`` holds the final ``val_acc``.
FitFn = Callable[..., tuple]


class Objective:
    """The study's objective over data loaded once per process.

    Each call is a fit whose pruning callback reports :data:`~svmhpo.hpo.records.METRIC` after
    every epoch, so that the study's pruner can stop it early. A fit whose loss turns NaN or
    infinite is pruned and marked ``diverged``, and the study goes on. The trial's seed
    (``config.seed + trial.number``) and worker are stored on it.
    """

    #: The trainer when none is given; :mod:`svmhpo.testing` swaps in a no-op one for a whole
    #: process, to test and time the study machinery without training.
    default_fit: FitFn = staticmethod(fit)

    def __init__(self, config: StudyConfig, data: DeviceData | None, *, fit_fn: FitFn | None = None) -> None:
        self.config = config
        self.data = data
        self.fit_fn = fit_fn or self.default_fit

    def __call__(self, trial: optuna.Trial) -> float:
        params, batch_size = suggest(trial, self.config)
        seed = self.config.seed + trial.number
        records.set_trial_origin(trial, seed)
        pruning = PyTorchLightningPruningCallback(trial, monitor=records.METRIC)
        try:
            _, trainer = self.fit_fn(
                params,
                self.data,
                epochs=self.config.training.epochs,
                batch_size=batch_size,
                seed=seed,
                callbacks=[pruning],
            )
        except DivergedError as exc:
            records.mark_diverged(trial, str(exc))
            raise optuna.TrialPruned(f"diverged: {exc}") from None
        return float(trainer.callback_metrics[records.METRIC])

"""One trial: sample the hyperparameters, fit with Lightning, report ``val_acc`` every epoch."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

import optuna
from optuna_integration import PyTorchLightningPruningCallback

from svmhpo.config import StudyConfig
from svmhpo.data import DeviceData
from svmhpo.model import VAL_ACC, DivergedError
from svmhpo.search import suggest
from svmhpo.training import fit

__all__ = ["WORKER_ID", "Objective"]

#: Which process ran a trial, stored on it: host and process id.
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


class Objective:
    """The study's objective over data loaded once per process.

    Each call is a Lightning fit whose pruning callback reports :data:`~svmhpo.model.VAL_ACC`
    after every epoch, so that the study's pruner can stop it early. A fit whose loss turns NaN or
    infinite is pruned, with the user attribute ``diverged``, and the study goes on. The trial's
    seed (``config.seed + trial.number``) is stored as the user attribute ``seed``.
    """

    def __init__(self, config: StudyConfig, data: DeviceData, *, fit_fn: Callable[..., tuple] = fit) -> None:
        self.config = config
        self.data = data
        self.fit_fn = fit_fn  # the benchmarks swap in a no-op trainer to time the study machinery

    def __call__(self, trial: optuna.Trial) -> float:
        params, batch_size = suggest(trial, self.config)
        seed = self.config.seed + trial.number
        trial.set_user_attr("seed", seed)
        trial.set_user_attr("worker", WORKER_ID)
        pruning = PyTorchLightningPruningCallback(trial, monitor=VAL_ACC)
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
            trial.set_user_attr("diverged", str(exc))
            raise optuna.TrialPruned(f"diverged: {exc}") from None
        return float(trainer.callback_metrics[VAL_ACC])

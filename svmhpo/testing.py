"""Test and benchmark helpers: a no-op model side that drives the study machinery without training.

:class:`NoOpTrainer` stands in for the trainers of a study's batches
(:func:`~svmhpo.svm.members.fit_one`, :func:`~svmhpo.svm.batched.fit_batch`): each member
reports a made-up ``val_acc`` every epoch to the study's real watch
(:class:`~svmhpo.hpo.objective.MemberPruning`, so Optuna's report, pruning and tell paths all
run), and it optionally sleeps per epoch, so a trial can be caught running. :class:`NoOpSide`
is the whole model side of such a process (:mod:`svmhpo.hpo.modelside`): the no-op trainer, no
data loaded (:class:`NoOpData`), and a refit that writes a stand-in model zip (:func:`noop_refit`)
through the real artifact, record and election code. It imports neither torch, scikit-learn
nor Lightning, so a process starts and finishes a study in about a second. Only a warm start,
where the config asks for one, is real. The budget, resume, worker, retry and progress tests
and the study-overhead benchmark use it; real fits are tested where the fit is the point.

``python -m svmhpo.testing ARGS`` is the ``svmhpo`` command line with the no-op side in that
process and in every worker it starts. ``SVMHPO_NOOP_EPOCH_S`` sets the sleep per epoch;
``SVMHPO_NOOP_MARK`` and ``SVMHPO_NOOP_HOLD_AT`` let a test act inside a fit
(:data:`MARK_ENV`, :data:`HOLD_ENV`); ``SVMHPO_NOOP_ONLY_TRIALS=1`` keeps the real data and
refit (only the trials are no-op), for the tests of a real model made by a worker process.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

from optuna.trial import FrozenTrial

from svmhpo.hpo import modelside, records
from svmhpo.hpo.config import StudyConfig
from svmhpo.svm.params import SVMParams

__all__ = [
    "HOLD_ENV",
    "MARK_ENV",
    "NOOP_MODEL_FILE",
    "NoOpData",
    "NoOpSide",
    "NoOpTrainer",
    "free_port",
    "install_noop_trainer",
    "main",
    "noop_score",
    "wait_for",
]


class _NoOpMembers:
    """A :class:`~svmhpo.svm.members.MemberFit` whose members only report made-up scores."""

    def __init__(self, members: Sequence[SVMParams]) -> None:
        self.members = list(members)
        self.current_epoch = 0
        self._live = list(range(len(members)))
        self._val_score: dict[int, float] = {}

    @property
    def live(self) -> tuple[int, ...]:
        return tuple(self._live)

    @property
    def val_score(self) -> dict[int, float]:
        return dict(self._val_score)

    def take_diverged(self) -> dict[int, str]:
        return {}

    def stop(self, members) -> None:
        gone = set(members)
        self._live = [i for i in self._live if i not in gone]
        for i in gone:
            self._val_score.pop(i, None)


class NoOpTrainer:
    """A batch trainer whose members report :func:`noop_score` for ``epochs`` epochs, without training.

    The value grows with the epoch and peaks at ``lr = 0.1``, a rate that also trains well for
    real (where the refit is real, ``only_trials``), so TPE and the median pruner have
    something to work on. It tells ``watch`` after every epoch, as the real trainers do after
    every validation, and optionally sleeps per epoch (once for the whole batch). Any batch
    size, one included.
    """

    def __init__(self, epoch_seconds: float = 0.0) -> None:
        self.epoch_seconds = epoch_seconds

    def __call__(self, members: Sequence[SVMParams], data, *, epochs: int, batch_size: int, seed: int, watch=None):
        module = _NoOpMembers(members)
        for epoch in range(epochs):
            if not module.live:
                break
            if self.epoch_seconds:
                time.sleep(self.epoch_seconds)
            module.current_epoch = epoch
            module._val_score = {i: noop_score(members[i].lr, epoch, epochs) for i in module.live}
            if watch is not None:
                watch.after_validation(module)
            if MARK_ENV in os.environ:  # tests: "this process is inside a fit", without polling the study
                with open(os.environ[MARK_ENV], "a") as mark:
                    mark.write(f"{epoch}\n")
                _hold_if_asked(os.environ[MARK_ENV])
        return module, None


def _hold_if_asked(mark: str) -> None:
    """Stop inside the fit, until killed, once the mark file holds :data:`HOLD_ENV` epochs.

    A test that kills a process mid-trial then catches it there every time, instead of racing
    its poll against the trial's end and the next trial's start.
    """
    hold = os.environ.get(HOLD_ENV)
    if hold and sum(1 for _ in open(mark)) >= int(hold):
        while True:
            time.sleep(3600)


#: A file to which :class:`NoOpTrainer` appends each epoch it has reported (tests wait on it to
#: act inside a fit: the reported values reach the study only in bulk, see :mod:`svmhpo.hpo.reports`).
MARK_ENV = "SVMHPO_NOOP_MARK"

#: With :data:`MARK_ENV`: the number of reported epochs (lines in the mark file) after which
#: :class:`NoOpTrainer` holds inside its fit until the process is killed.
HOLD_ENV = "SVMHPO_NOOP_HOLD_AT"


def noop_score(lr: float, epoch: int, epochs: int) -> float:
    """The made-up ``val_acc`` of :class:`NoOpTrainer` at ``epoch`` (0-based) of ``epochs``."""
    return max(0.0, 1.0 - abs(math.log10(lr) + 1.0) / 4.0) * (epoch + 1) / epochs


def wait_for(predicate, timeout: float = 60, what: str = "the condition", interval: float = 0.5):
    """Call ``predicate`` until it returns something true, and return that; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NoOpData:
    """Stands in for a study's data in a no-op process: the source's name, nothing loaded (no sizes)."""

    def __init__(self, config: StudyConfig) -> None:
        self.name = f"{config.data.source} (not loaded: no-op trainer)"
        self.feature_names: tuple[str, ...] | None = None
        self.label: str | None = None
        self.notes: tuple[str, ...] = ()
        self.n_features = self.n_classes = 0
        self.split_sizes = (0, 0, 0)


#: The one file of a no-op refit's model zip (``svmhpo.load_model`` refuses it: it holds no weights).
NOOP_MODEL_FILE = "noop-model.json"


def noop_refit(study_name: str, trial: FrozenTrial, archive: Path) -> dict:
    """A refit without a fit: the ``final`` record scores the trial's own ``val_acc``, the zip names the trial."""
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(NOOP_MODEL_FILE, json.dumps({"study": study_name, "trial": trial.number, "params": trial.params}))
    return {
        "trial": trial.number,
        "params": trial.params,
        "val_acc": trial.value,
        "test_acc": trial.value,
        "test_f1": trial.value,
        "fit_seconds": 0.0,
        "worker": records.WORKER_ID,
    }


class NoOpSide(modelside.LightningSide):
    """The model side of a no-op process: :class:`NoOpTrainer`, :class:`NoOpData`, :func:`noop_refit`.

    A warm start is real (it loads the real data for it). With ``only_trials`` the data and the
    refit are real too.
    """

    def __init__(self, epoch_seconds: float = 0.0, *, only_trials: bool = False) -> None:
        self.fit = NoOpTrainer(epoch_seconds)
        self.only_trials = only_trials

    def load_data(self, config: StudyConfig):
        return super().load_data(config) if self.only_trials else NoOpData(config)

    def trainer(self, batch_trials: int, cv: int = 1, fold_seed: int = 0, metric: str = "accuracy") -> NoOpTrainer:
        return self.fit

    def warm_start(self, study, data, config: StudyConfig) -> dict[str, dict]:
        real = data if self.only_trials else modelside.load_study_data(config)
        return super().warm_start(study, real, config)

    def refit(self, study_name: str, trial: FrozenTrial, config: StudyConfig, data, archive: Path) -> dict:
        if self.only_trials:
            return super().refit(study_name, trial, config, data, archive)
        return noop_refit(study_name, trial, archive)

    def baseline(self, config: StudyConfig, data) -> dict:
        if self.only_trials:
            return super().baseline(config, data)
        return {"model": "none (no-op trainer)", "C": None, "val_acc": 0.0, "test_acc": 0.0, "test_f1": 0.0}


def install_noop_trainer(epoch_seconds: float = 0.0, *, only_trials: bool = False) -> None:
    """Make the no-op side (:class:`NoOpSide`) this process's model side and that of the workers it starts."""
    from svmhpo.hpo import workers

    modelside.install(NoOpSide(epoch_seconds, only_trials=only_trials))
    workers.WORKER_MODULE = "svmhpo.testing"  # not __name__, which is __main__ under `python -m`


def main(argv: Sequence[str] | None = None) -> int:
    """The ``svmhpo`` command line with the no-op side installed (see the module's docstring)."""
    from svmhpo.cli import main as cli_main

    install_noop_trainer(
        float(os.environ.get("SVMHPO_NOOP_EPOCH_S", "0")),
        only_trials=os.environ.get("SVMHPO_NOOP_ONLY_TRIALS", "") == "1",
    )
    return cli_main(argv)


if __name__ == "__main__":
    from svmhpo.cli import exit_now

    exit_now(main())  # as the svmhpo command leaves (svmhpo.cli.run)

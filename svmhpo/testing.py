"""Test and benchmark helpers: a no-op trainer that drives the study machinery without training.

:class:`NoOpTrainer` stands in for the trainers of a study's batches
(:func:`~svmhpo.svm.members.fit_one`, :func:`~svmhpo.svm.batched.fit_batch`): each member
reports a made-up ``val_acc`` every epoch to the study's real watch
(:class:`~svmhpo.hpo.objective.MemberPruning`, so Optuna's report, pruning and tell paths all
run), and it optionally sleeps per epoch, so a trial can be caught running. It reads no data and
imports neither torch nor Lightning. The budget, resume, worker and retry tests and the
study-overhead benchmark use it, and run in seconds instead of minutes.

``python -m svmhpo.testing ARGS`` is the ``svmhpo`` command line with the no-op trainer in that
process and in every worker it starts; ``SVMHPO_NOOP_EPOCH_S`` sets the sleep per epoch.
"""

from __future__ import annotations

import math
import os
import socket
import sys
import time
from collections.abc import Sequence

from svmhpo.svm.params import SVMParams

__all__ = [
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
        self._val_acc: dict[int, float] = {}

    @property
    def live(self) -> tuple[int, ...]:
        return tuple(self._live)

    @property
    def val_acc(self) -> dict[int, float]:
        return dict(self._val_acc)

    def take_diverged(self) -> dict[int, str]:
        return {}

    def stop(self, members) -> None:
        gone = set(members)
        self._live = [i for i in self._live if i not in gone]
        for i in gone:
            self._val_acc.pop(i, None)


class NoOpTrainer:
    """A batch trainer whose members report :func:`noop_score` for ``epochs`` epochs, without training.

    The value grows with the epoch and peaks at ``lr = 0.1``, a rate that also trains well for
    real (the final refit of the best trial is a real fit), so TPE and the median pruner have
    something to work on. It tells ``watch`` after every epoch, as the real trainers do after
    every validation, and optionally sleeps per epoch (once for the whole batch). Any batch
    size, one included.
    """

    #: It never reads the data, so a worker with this trainer loads none (and no torch): it
    #: starts in about a second.
    needs_data = False

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
            module._val_acc = {i: noop_score(members[i].lr, epoch, epochs) for i in module.live}
            if watch is not None:
                watch.after_validation(module)
        return module, None


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


def install_noop_trainer(epoch_seconds: float = 0.0) -> None:
    """Make the no-op trainer the default of this process and of the workers it starts."""
    from svmhpo.hpo import workers
    from svmhpo.hpo.objective import BatchObjective

    BatchObjective.default_fit = staticmethod(NoOpTrainer(epoch_seconds))
    workers.WORKER_MODULE = "svmhpo.testing"  # not __name__, which is __main__ under `python -m`


def main(argv: Sequence[str] | None = None) -> int:
    """The ``svmhpo`` command line with the no-op trainer installed."""
    from svmhpo.cli import main as cli_main

    install_noop_trainer(float(os.environ.get("SVMHPO_NOOP_EPOCH_S", "0")))
    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())

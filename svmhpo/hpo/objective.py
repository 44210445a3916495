"""Trials: sample the hyperparameters, fit with Lightning, report ``val_acc`` every epoch.

:class:`Objective` runs one trial per fit, as ``study.optimize`` calls it. :class:`BatchObjective`
runs several asked trials as the members of one batched fit
(:func:`~svmhpo.svm.batched.fit_batch`), each reporting to its own trial and pruned on its own.
"""

from __future__ import annotations

import contextlib
import itertools
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import lightning.pytorch as pl
import numpy as np
import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState
from optuna_integration import PyTorchLightningPruningCallback

from svmhpo.errors import DatabaseUnavailable
from svmhpo.hpo import records
from svmhpo.hpo.config import StudyConfig
from svmhpo.hpo.space import suggest
from svmhpo.hpo.storage import budget_lock
from svmhpo.hpo.studies import count_trials
from svmhpo.interrupts import ctrl_c_deferred
from svmhpo.svm.batched import MemberFit, fit_batch
from svmhpo.svm.data import DeviceData
from svmhpo.svm.model import DivergedError
from svmhpo.svm.params import SVMParams
from svmhpo.svm.training import fit

__all__ = ["BatchFitFn", "BatchObjective", "FitFn", "Member", "MemberPruning", "Objective", "make_objective"]

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


#: A batch trainer: ``fit_fn(members, data, *, epochs, batch_size, seed, callbacks) -> (module, trainer)``
#: whose callbacks see a :class:`~svmhpo.svm.batched.MemberFit` as the module.
BatchFitFn = Callable[..., tuple]


@dataclass(frozen=True)
class Member:
    """An asked trial with its sampled hyperparameters and batch size."""

    trial: optuna.Trial
    params: SVMParams
    batch_size: int


def _as_logged(value: float) -> float:
    """``value`` as a one-trial fit reports it: logged as a float32 tensor, then read with ``.item()``."""
    return float(np.float32(value))


class MemberPruning(pl.Callback):
    """Each member of a batch reports to its own trial and is pruned on its own.

    After every validation each live member's ``val_acc`` is reported to its trial at the
    epoch, and the pruner is asked, exactly as optuna-integration's
    ``PyTorchLightningPruningCallback`` does for a one-trial fit (the same value, float32 as
    logged, the same step, the same question); a member the pruner stops is stopped alone and
    its trial told PRUNED at once. A member whose loss turned NaN/inf is pruned and marked
    ``diverged`` as soon as the batch notices. What is told is kept in :attr:`told` and passed
    to ``on_told`` at once.
    """

    def __init__(
        self, study: optuna.Study, members: list[Member], on_told: Callable[[FrozenTrial], None] | None = None
    ) -> None:
        self.study = study
        self.members = members
        self.on_told = on_told
        self.told: dict[int, FrozenTrial] = {}

    def tell(self, member: int, state: TrialState | None = None, value: float | None = None) -> None:
        trial = self.members[member].trial
        try:
            self.told[member] = self.study.tell(trial, value, state=state, skip_if_finished=True)
        except UpdateFinishedTrialError:  # failed as stale by another process between Optuna's check and write
            self.told[member] = self.study._storage.get_trial(trial._trial_id)
        if self.on_told is not None:
            self.on_told(self.told[member])

    def _tell_diverged(self, module: MemberFit) -> None:
        for member, reason in module.take_diverged().items():
            with contextlib.suppress(UpdateFinishedTrialError):  # already failed as stale elsewhere
                records.mark_diverged(self.members[member].trial, reason)
            self.tell(member, TrialState.PRUNED)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self._tell_diverged(module)

    def on_validation_end(self, trainer: pl.Trainer, module: MemberFit) -> None:
        self._tell_diverged(module)
        if trainer.sanity_checking:
            return
        pruned = []
        taken = []
        for member, value in module.val_acc.items():
            trial = self.members[member].trial
            try:
                trial.report(_as_logged(value), step=module.current_epoch)
                if trial.should_prune():
                    pruned.append(member)
            except UpdateFinishedTrialError:  # failed as stale by another process after a long outage
                taken.append(member)
        if pruned or taken:
            module.stop(pruned + taken)
            for member in pruned:
                self.tell(member, TrialState.PRUNED)
            for member in taken:
                self.tell(member, TrialState.FAIL)  # already finished: reads it back as it is


class BatchObjective:
    """Runs asked trials as the members of batched fits, over data loaded once per process.

    :meth:`ask` asks the study for trials one by one (so that TPE's constant liar sees each
    asked point before sampling the next) and stores on each the seed of its batch and this
    worker. :meth:`run` trains them, one fit per batch size among them, and tells every trial:
    COMPLETE with its last ``val_acc``, PRUNED as it is pruned or diverges, FAIL (with the
    reason) if its fit raises. Member ``i`` makes the updates of a single fit with the stored
    seed, so a batched trial is reproduced alone by ``svmhpo train`` with its parameters and seed.
    """

    #: The batch trainer when none is given; :mod:`svmhpo.testing` swaps in a no-op one.
    default_fit: BatchFitFn = staticmethod(fit_batch)

    def __init__(
        self,
        config: StudyConfig,
        data: DeviceData | None,
        *,
        batch_trials: int,
        fit_fn: BatchFitFn | None = None,
    ) -> None:
        if batch_trials < 1:
            raise ValueError(f"batch_trials must be at least 1, got {batch_trials}")
        self.config = config
        self.data = data
        self.batch_trials = batch_trials
        self.fit_fn = fit_fn or self.default_fit

    def ask(self, study: optuna.Study, n: int, *, on_ask: Callable[[int], None] | None = None) -> list[Member]:
        """Ask up to ``n`` trials (enqueued ones first) and sample each one's hyperparameters.

        ``on_ask`` gets each trial's storage id as soon as it is asked (to start its heartbeat).

        Each ask is preceded by a count of the study, both under
        :func:`~svmhpo.hpo.storage.budget_lock`, and asking stops once its finished and running
        trials fill the budget, so processes asking side by side never overshoot it. (Measured
        on ``svmhpo run --trials 200`` alone: 20.8 s with the count before every ask, 20.9 s
        without, within the run-to-run noise.)
        """
        members: list[Member] = []
        asked: list[optuna.Trial] = []
        try:
            for _ in range(n):
                with budget_lock(study), warnings.catch_warnings():  # heartbeats: hpo.storage.heartbeats
                    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
                    counts = count_trials(study)
                    if counts.finished + counts.running >= self.config.trials:
                        break
                    with ctrl_c_deferred():  # Optuna creates the trial before returning it: hold it first
                        asked.append(study.ask())
                trial = asked[-1]
                if on_ask is not None:
                    on_ask(trial._trial_id)  # Optuna's own id; Trial has no public accessor for it
                # the batch's seed is its first trial's; seed and worker are stored as soon as asked
                seed = self.config.seed + (members[0].trial.number if members else trial.number)
                try:
                    records.set_trial_origin(trial, seed)
                    members.append(Member(trial, *suggest(trial, self.config)))
                except UpdateFinishedTrialError:
                    # the database was away past the grace period and another process failed this
                    # trial as stale and re-queued it: it is no longer this batch's
                    continue
        except BaseException as exc:  # Ctrl-C or a storage error while asking: leave nothing RUNNING
            reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else repr(exc)
            for trial in asked:
                _fail_trial(study, trial, reason)
            raise
        return members

    def run(
        self, study: optuna.Study, members: list[Member], on_told: Callable[[FrozenTrial], None] | None = None
    ) -> list[FrozenTrial]:
        """Train and tell every member; return the told trials in the members' order.

        ``on_told`` gets each trial as it is told: a pruned member while the others still train.
        """
        seed = self.config.seed + members[0].trial.number
        told: dict[int, FrozenTrial] = {}
        by_batch_size = itertools.groupby(sorted(members, key=lambda m: m.batch_size), key=lambda m: m.batch_size)
        for batch_size, group in by_batch_size:
            group = list(group)
            pruning = MemberPruning(study, group, on_told)
            try:
                module, _ = self.fit_fn(
                    [m.params for m in group],
                    self.data,
                    epochs=self.config.training.epochs,
                    batch_size=batch_size,
                    seed=seed,
                    callbacks=[pruning],
                )
                values = module.val_acc
                for member in module.live:
                    pruning.tell(member, value=values[member])
            except DatabaseUnavailable:  # nothing can be told: the next run fails these as stale
                raise
            except Exception as exc:
                self._fail(pruning, group, repr(exc))
            except BaseException:  # Ctrl-C, or Lightning's exit on it: no trial is left running
                self._fail(pruning, group, "interrupted")
                raise
            told.update({group[i].trial.number: t for i, t in pruning.told.items()})
        return [told[m.trial.number] for m in members]

    @staticmethod
    def _fail(pruning: MemberPruning, group: list[Member], reason: str) -> None:
        for i, member in enumerate(group):
            if i not in pruning.told:
                with contextlib.suppress(UpdateFinishedTrialError):  # already failed as stale elsewhere
                    records.set_fail_reason(member.trial, reason)
                pruning.tell(i, TrialState.FAIL)


def _fail_trial(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    """Fail ``trial`` with ``reason``, unless another process already finished it (failed it as stale)."""
    with contextlib.suppress(UpdateFinishedTrialError):
        records.set_fail_reason(trial, reason)
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)


def make_objective(config: StudyConfig, data: DeviceData | None) -> Objective | BatchObjective:
    """One trial per fit when ``[training] batch_trials`` is 1, else batches of that many."""
    k = config.training.batch_trials
    return Objective(config, data) if k == 1 else BatchObjective(config, data, batch_trials=k)

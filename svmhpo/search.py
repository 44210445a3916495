"""The search space, sampler and pruner of a study, built from its :class:`~svmhpo.config.StudyConfig`."""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

from svmhpo.config import StudyConfig
from svmhpo.params import SVMParams

__all__ = ["SnapshotPruner", "make_pruner", "make_sampler", "suggest"]


def suggest(trial: optuna.Trial, config: StudyConfig) -> tuple[SVMParams, int]:
    """Sample the SVM hyperparameters and the batch size of ``trial``."""
    space = config.search
    params = SVMParams(
        lr=trial.suggest_float("lr", *space.lr, log=True),
        weight_decay=trial.suggest_float("weight_decay", *space.weight_decay, log=True),
        squared=trial.suggest_categorical("squared", list(space.squared)),
        strategy=trial.suggest_categorical("strategy", list(space.strategy)),
        optimizer=trial.suggest_categorical("optimizer", list(space.optimizer)),
    )
    if space.batch_size:
        batch_size = trial.suggest_categorical("batch_size", list(space.batch_size))
    else:
        batch_size = config.training.batch_size
    return params, int(batch_size)


def make_sampler(config: StudyConfig, *, seed: int | None, shared: bool = True) -> optuna.samplers.BaseSampler:
    """TPE (default), random, QMC or GP, seeded with ``seed``.

    TPE is multivariate. For a ``shared`` study (workers pulling trials side by side) it uses the
    constant liar, so that workers do not all sample next to the same running trial. The liar
    costs one extra storage read per trial (it must see running trials fresh), and a process that
    runs a study's trials alone has no other running trial to lie about: it samples the same
    points without it.
    """
    if config.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=shared, n_startup_trials=10)
    if config.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if config.sampler == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    if config.sampler == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    raise ValueError(f"unknown sampler {config.sampler!r}")


class SnapshotPruner(optuna.pruners.BasePruner):
    """Run a percentile/median pruner on the trials the study read when this trial started.

    Optuna's median pruner re-reads every completed trial from the storage at each
    ``should_prune``; on SQLite that was half of the study's per-trial overhead. Optuna keeps,
    per thread, one read of the study's trials from the start of the current trial (``ask`` resets
    it, the sampler fills it); the pruner answers from that. Within one process no other trial
    completes while a trial runs, so the snapshot is exact; with several workers it can miss
    completions for at most one trial's duration, which moves a median little.
    """

    def __init__(self, inner: optuna.pruners.BasePruner) -> None:
        self._inner = inner

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        return self._inner.prune(_SnapshotView(study), trial)  # type: ignore[arg-type]


class _SnapshotView:
    """A study whose ``get_trials`` answers from the trial-start snapshot; all else is the study's."""

    def __init__(self, study: optuna.Study) -> None:
        self._study = study

    def get_trials(self, deepcopy: bool = True, states: tuple[TrialState, ...] | None = None) -> list[FrozenTrial]:
        return self._study._get_trials(deepcopy=deepcopy, states=states, use_cache=True)

    def __getattr__(self, name: str):
        return getattr(self._study, name)


def make_pruner(config: StudyConfig) -> optuna.pruners.BasePruner:
    """Median (default), Hyperband over the epoch budget, or none."""
    if config.pruner == "median":
        return SnapshotPruner(optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2))
    if config.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=config.training.epochs, reduction_factor=3)
    return optuna.pruners.NopPruner()

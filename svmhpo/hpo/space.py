"""The search space, sampler and pruner of a study, built from its :class:`~svmhpo.hpo.config.StudyConfig`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from svmhpo.hpo.config import StudyConfig
from svmhpo.svm.params import SVMParams

__all__ = [
    "SEARCHED",
    "SnapshotPruner",
    "decode",
    "default_point",
    "encode",
    "make_pruner",
    "make_sampler",
    "sampling_seed",
    "suggest",
]


#: The SVM hyperparameters a study samples; ``batch_size`` joins them when its choices are given.
SEARCHED: tuple[str, ...] = ("lr", "weight_decay", "squared", "strategy", "optimizer")
_LOG_UNIFORM = ("lr", "weight_decay")


def suggest(trial: optuna.Trial, config: StudyConfig) -> tuple[SVMParams, int]:
    """Sample the SVM hyperparameters and the batch size of ``trial``."""
    space = config.search
    values = {
        name: trial.suggest_float(name, *getattr(space, name), log=True)
        if name in _LOG_UNIFORM
        else trial.suggest_categorical(name, list(getattr(space, name)))
        for name in SEARCHED
    }
    if space.batch_size:
        batch_size = int(trial.suggest_categorical("batch_size", list(space.batch_size)))
    else:
        batch_size = config.training.batch_size
    return SVMParams(**values), batch_size


def encode(params: SVMParams, batch_size: int, config: StudyConfig) -> dict:
    """The trial parameters of ``params`` in the study's space, as :func:`suggest` names them."""
    values = {name: getattr(params, name) for name in SEARCHED}
    if config.search.batch_size:
        values["batch_size"] = batch_size
    return values


def decode(trial_params: dict, config: StudyConfig) -> tuple[SVMParams, int]:
    """The hyperparameters and batch size of a trial's parameters (the inverse of :func:`encode`)."""
    params = SVMParams(**{k: v for k, v in trial_params.items() if k in SEARCHED})
    return params, int(trial_params.get("batch_size", config.training.batch_size))


def default_point(config: StudyConfig, **fixed) -> tuple[SVMParams, int]:
    """A point of the space: ``fixed`` values (clipped to their range), else the defaults where allowed.

    A categorical default outside the configured choices becomes the first choice.
    """
    space, defaults = config.search, SVMParams()
    values = {}
    for name in SEARCHED:
        choices = getattr(space, name)
        if name in _LOG_UNIFORM:
            low, high = choices
            values[name] = float(min(max(fixed.get(name, getattr(defaults, name)), low), high))
        else:
            value = fixed.get(name, getattr(defaults, name))
            values[name] = value if value in choices else choices[0]
    batch = config.training.batch_size
    if space.batch_size and batch not in space.batch_size:
        batch = space.batch_size[0]
    return SVMParams(**values), batch


def sampling_seed(seed: int, number: int) -> int:
    """The seed of the sampler's random state when it samples trial ``number`` of a study seeded ``seed``.

    Trial numbers are handed out by the storage, once each, so every trial of a study gets its
    own stream, whichever process asks for it: workers started together, a run and its workers,
    a run killed and resumed. One process running a study alone still samples the same points
    for the same seed.
    """
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def _random_states(sampler: optuna.samplers.BaseSampler) -> list:
    """The ``LazyRandomState`` objects a sampler draws from: its own and its fallback sampler's.

    Optuna reseeds them only at random (``reseed_rng``); these are the objects it reseeds.
    A test pins that every sampler svmhpo builds has at least one.
    """
    found = []
    for holder in (sampler, getattr(sampler, "_random_sampler", None), getattr(sampler, "_independent_sampler", None)):
        state = getattr(holder, "_rng", None)
        if state is not None and hasattr(state, "rng"):
            found.append(state)
    return found


class _SeededPerTrial:
    """Mixin for an Optuna sampler: reseed from (study seed, trial number) before each trial.

    A sampler seeded once per process draws the same sequence in every process that opens the
    study with the same seed, so workers started together sample the same configurations. Here
    the draws of trial ``n`` depend on the study seed, ``n`` and the trials before it, and trial
    numbers are unique across processes (see :func:`sampling_seed`).
    """

    def __init__(self, *args, seed: int, **kwargs) -> None:
        super().__init__(*args, seed=seed, **kwargs)  # type: ignore[call-arg]
        self._study_seed = seed

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        seed = sampling_seed(self._study_seed, trial.number)
        for state in _random_states(self):  # type: ignore[arg-type]
            state.rng.seed(seed)
        super().before_trial(study, trial)  # type: ignore[misc]


class TrialSeededTPESampler(_SeededPerTrial, optuna.samplers.TPESampler):
    """TPE reseeded per trial (see :class:`_SeededPerTrial`)."""


class TrialSeededRandomSampler(_SeededPerTrial, optuna.samplers.RandomSampler):
    """Random sampling reseeded per trial (see :class:`_SeededPerTrial`)."""


class TrialSeededGPSampler(_SeededPerTrial, optuna.samplers.GPSampler):
    """GP sampling reseeded per trial (see :class:`_SeededPerTrial`)."""


def make_sampler(config: StudyConfig, *, shared: bool = True) -> optuna.samplers.BaseSampler:
    """TPE (default), random, QMC or GP, seeded from the study seed and each trial's number.

    Every process that opens a study builds the same sampler, and no two trials share a random
    stream (:class:`_SeededPerTrial`), so processes side by side sample different points with
    nothing to configure. QMC is the exception: its points come from one scrambled sequence
    whose position is a counter in the study, so it keeps the study seed as it is.

    TPE is multivariate. For a ``shared`` study (workers pulling trials side by side) it uses the
    constant liar, so that workers do not all sample next to the same running trial. The liar
    costs one extra storage read per trial (it must see running trials fresh), and a process that
    runs a study's trials alone has no other running trial to lie about: it samples the same
    points without it.
    """
    seed = config.seed
    if config.sampler == "tpe":
        return TrialSeededTPESampler(seed=seed, multivariate=True, constant_liar=shared, n_startup_trials=10)
    if config.sampler == "random":
        return TrialSeededRandomSampler(seed=seed)
    if config.sampler == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    if config.sampler == "gp":
        return TrialSeededGPSampler(seed=seed)
    raise ValueError(f"unknown sampler {config.sampler!r}")


class SnapshotPruner(optuna.pruners.BasePruner):
    """A percentile/median pruner that reads the completed trials once per trial, not once per report.

    Optuna's median pruner re-reads every completed trial from the storage at each
    ``should_prune``; on SQLite that was half of the study's per-trial overhead. This pruner
    reads them when a trial (or a batch of trials: :meth:`prune_member`) it has not seen asks
    first, and answers later checks from that read. Within one process no trial completes while
    a trial or a batch runs, so the read is exact; with several workers it can miss completions
    for at most one trial's or batch's duration, which moves a median little.

    A batch member is pruned against the finished trials and its running peers
    (:meth:`prune_member`, ``[training] batch_pruning = "peers"``), with Optuna's pruner.
    """

    def __init__(self, inner: optuna.pruners.BasePruner) -> None:
        self._inner = inner
        self._study: str | None = None
        self._seen: set[int] = set()
        self._completed: list[FrozenTrial] = []

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        return self.prune_member(study, trial, (trial.number,))

    def prune_member(
        self, study: optuna.Study, trial: FrozenTrial, batch: Iterable[int], peers: Sequence[FrozenTrial] = ()
    ) -> bool:
        """:meth:`prune` for a member of a batch of trials (their ``batch`` numbers): the completed
        trials are read once for the whole batch, and ``peers`` (the other members, as trials
        completed at the step being decided) join them as the pruner's evidence."""
        if study.study_name != self._study:
            self._study, self._seen = study.study_name, set()
        if trial.number not in self._seen:
            self._completed = study.get_trials(deepcopy=False, states=_COMPLETE)
            self._seen.update(batch)
            self._seen.add(trial.number)
        evidence = [*self._completed, *self._counted(study, trial.last_step, peers)] if peers else self._completed
        return bool(self._inner.prune(_CompletedView(study, evidence), trial))  # type: ignore[arg-type]

    def _counted(self, study: optuna.Study, step: int | None, peers: Sequence[FrozenTrial]) -> list[FrozenTrial]:
        """The peers that count as evidence at ``step``: those whose best value so far is at least
        the finished trials' percentile at ``step`` (all of them while no finished trial has a
        value there).

        A running peer stands for a trial that a one-trial-per-fit study would have seen finish.
        One doing worse than the finished trials would likely have been pruned before it finished,
        and would not be among them: counted, such peers would pull the median down and prune
        less than one trial per fit does (measured: more epochs than without peers on one seed).
        """
        if step is None:
            return []
        values = [t.intermediate_values[step] for t in self._completed if step in t.intermediate_values]
        if not values:
            return list(peers)
        maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        percentile = float(getattr(self._inner, "_percentile", 50.0))
        bar = float(np.nanpercentile(np.array(values, dtype=float), 100 - percentile if maximize else percentile))
        counted = []
        for peer in peers:
            curve = [v for s, v in peer.intermediate_values.items() if s <= step and not np.isnan(v)]
            if curve and (max(curve) >= bar if maximize else min(curve) <= bar):
                counted.append(peer)
        return counted


_COMPLETE = (TrialState.COMPLETE,)


class _CompletedView:
    """A study whose completed trials are a given list; every other read goes to the study."""

    def __init__(self, study: optuna.Study, completed: list[FrozenTrial]) -> None:
        self._study = study
        self._completed = completed

    def get_trials(self, deepcopy: bool = True, states: tuple[TrialState, ...] | None = None) -> list[FrozenTrial]:
        if tuple(states or ()) == _COMPLETE and not deepcopy:
            return self._completed
        return self._study.get_trials(deepcopy=deepcopy, states=states)

    def __getattr__(self, name: str):
        return getattr(self._study, name)


def make_pruner(config: StudyConfig) -> optuna.pruners.BasePruner:
    """Median (default), Hyperband over the epoch budget, or none."""
    if config.pruner == "median":
        return SnapshotPruner(optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2))
    if config.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=config.training.epochs, reduction_factor=3)
    return optuna.pruners.NopPruner()

"""The study service's one door to the model side: the data, the trainers, the warm start, the refit.

The study machinery (asking and telling trials, budgets, workers, heartbeats, the model
artifact and its records) imports none of torch, scikit-learn or Lightning. What it needs of
them it asks of the process's :class:`ModelSide` (:func:`current`). The real one,
:class:`LightningSide`, imports the model side the first time it is used, under
:func:`~svmhpo.interrupts.ctrl_c_deferred` (an import interrupted halfway was seen to end in a
``RecursionError`` or a death by SIGINT instead of exit 130). :mod:`svmhpo.testing` installs a
no-op side, whose processes start and finish studies in about a second each.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from optuna.trial import FrozenTrial

from svmhpo.errors import DataError
from svmhpo.hpo.config import StudyConfig, is_data_path
from svmhpo.interrupts import ctrl_c_deferred
from svmhpo.svm.tables import TableFormat

if TYPE_CHECKING:
    from svmhpo.hpo.handle import StudyHandle
    from svmhpo.hpo.objective import BatchFitFn
    from svmhpo.svm.data import DeviceData

__all__ = [
    "LightningSide",
    "ModelSide",
    "StudyData",
    "current",
    "install",
    "load_study_data",
    "table_format",
]


class StudyData(Protocol):
    """What the study service reads of a study's loaded data (:class:`~svmhpo.svm.data.DeviceData` has it)."""

    name: str
    feature_names: tuple[str, ...] | None
    label: str | None
    notes: tuple[str, ...]

    @property
    def n_features(self) -> int: ...

    @property
    def n_classes(self) -> int: ...

    @property
    def split_sizes(self) -> tuple[int, int, int]:
        """Samples in the training, validation and test splits."""
        ...


class ModelSide(Protocol):
    """What the study service asks of the model side; every method may import it on first use."""

    def load_data(self, config: StudyConfig) -> StudyData:
        """The study's data, loaded and split once for this process, on the training device."""
        ...

    def trainer(self, batch_trials: int, cv: int = 1, fold_seed: int = 0, metric: str = "accuracy") -> BatchFitFn:
        """The trainer of batches of ``batch_trials`` members (see :class:`~svmhpo.hpo.objective.BatchObjective`),
        each cross-validated on ``cv`` folds made with ``fold_seed`` when ``cv`` > 1, each scored by ``metric``."""
        ...

    def warm_start(self, study: StudyHandle, data: StudyData, config: StudyConfig) -> dict[str, dict]:
        """Run the LR finder once per optimizer, record the curves and enqueue the picks; return the curves."""
        ...

    def refit(self, study_name: str, trial: FrozenTrial, config: StudyConfig, data: StudyData, archive: Path) -> dict:
        """Refit ``trial`` on train+validation, score it once on test, write the model zip to ``archive``.

        Returns the ``final`` record without the artifact's fields.
        """
        ...

    def baseline(self, config: StudyConfig, data: StudyData) -> dict:
        """scikit-learn's ``LinearSVC`` on the same split (the ``baseline`` record)."""
        ...


def load_study_data(config: StudyConfig, device: str | None = None) -> DeviceData:
    """Load and split the study's data once for this process, on the training device."""
    with ctrl_c_deferred():  # the model side, only when data is loaded, and imported whole
        from svmhpo.svm.data import prepare_data, training_device

    d = config.data
    if is_data_path(d.source) and not Path(d.source).expanduser().exists():
        # a worker on another host, or a file moved since: say which path the study names
        raise DataError(
            f"{d.source}: no such file on this host (the [data] source of {config.path}); "
            "every worker needs the data file at this path"
        )
    data = prepare_data(
        d.source,
        val_size=d.val_size,
        test_size=d.test_size,
        seed=config.seed,
        scaling=d.scaling,
        device=device or training_device(),
        table=table_format(config),
    )
    if config.cv > 1:  # made now (and kept for the fits): a class too rare for k folds is one line here
        from svmhpo.svm.folds import make_folds

        make_folds(data, config.cv, config.seed)
    return data


def table_format(config: StudyConfig) -> TableFormat:
    """How the study's ``[data]`` section says to read a table file."""
    d = config.data
    return TableFormat(label=d.label, features=d.features, delimiter=d.delimiter, header=d.header)


class LightningSide:
    """The real model side: hand-written SVMs trained with Lightning, scikit-learn's baseline."""

    def load_data(self, config: StudyConfig) -> DeviceData:
        return load_study_data(config)

    def trainer(self, batch_trials: int, cv: int = 1, fold_seed: int = 0, metric: str = "accuracy") -> BatchFitFn:
        """The plain one-trial fit for one (it is the faster of the two there, and gives the values
        one trial per fit always gave), else the batched fit; with ``cv`` > 1, the batched fit of
        every trial's folds (:func:`~svmhpo.svm.batched.fit_folds`), whatever the batch size.
        Each scores its members by ``metric``."""
        with ctrl_c_deferred():
            if cv > 1:
                from svmhpo.svm.batched import fit_folds

                return functools.partial(fit_folds, k=cv, fold_seed=fold_seed, metric=metric)
            if batch_trials == 1:
                from svmhpo.svm.members import fit_one as trainer
            else:
                from svmhpo.svm.batched import fit_batch as trainer
        return functools.partial(trainer, metric=metric)

    def warm_start(self, study: StudyHandle, data: DeviceData, config: StudyConfig) -> dict[str, dict]:
        with ctrl_c_deferred():
            from svmhpo.hpo.warmstart import run_warm_start
        return run_warm_start(study, data, config)

    def refit(self, study_name: str, trial: FrozenTrial, config: StudyConfig, data: DeviceData, archive: Path) -> dict:
        with ctrl_c_deferred():
            from svmhpo.hpo.refit import refit_to_archive
        return refit_to_archive(study_name, trial, config, data, archive)

    def baseline(self, config: StudyConfig, data: DeviceData) -> dict:
        with ctrl_c_deferred():
            from svmhpo.hpo.refit import fit_baseline
        return fit_baseline(config, data)


_current: list[ModelSide] = [LightningSide()]


def current() -> ModelSide:
    """This process's model side: :class:`LightningSide` unless :func:`install` put another."""
    return _current[0]


def install(side: ModelSide) -> None:
    """Make ``side`` this process's model side (:mod:`svmhpo.testing` installs its no-op one)."""
    _current[0] = side

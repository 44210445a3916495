"""What the commands that run studies do, as plain functions: init, run, worker.

The commands that only read studies (``studies``, ``best``, ``report``, ``dashboard``) live in
:mod:`svmhpo.view`, which does not import torch; ``hpo/`` never imports ``view/``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from optuna.trial import FrozenTrial

from svmhpo.errors import SvmhpoError
from svmhpo.hpo import modelside, records
from svmhpo.hpo.config import StudyConfig
from svmhpo.hpo.election import elected_to_finalize, final_is_current, wait_for_final
from svmhpo.hpo.finalize import finalize
from svmhpo.hpo.handle import StudyHandle
from svmhpo.hpo.objective import BatchObjective
from svmhpo.hpo.publish import publish
from svmhpo.hpo.resilience import watching_outages
from svmhpo.hpo.runner import run_trials
from svmhpo.hpo.storage import resolve_storage_url
from svmhpo.hpo.studies import (
    Counts,
    best_trial,
    count_trials,
    join_study,
    read_study,
    start_study,
    study_config,
    summary,
)
from svmhpo.hpo.workers import follow_parent, run_workers, visible_gpus
from svmhpo.interrupts import ctrl_c_deferred

if TYPE_CHECKING:  # the model side is imported where a fit runs (svmhpo.hpo.modelside)
    import torch

    from svmhpo.hpo.modelside import StudyData
    from svmhpo.svm.data import DeviceData

__all__ = ["init_study", "refit_study", "reproduce_refit", "run_study", "run_worker"]

#: Receives one line per phase of a run (data loaded, the warm start, the trials, the refit).
OnEvent = Callable[[str], None]


def _say(on_event: OnEvent | None, text: str) -> None:
    if on_event is not None:
        on_event(text)


def _data_line(data: StudyData) -> str:
    train, val, test = data.split_sizes
    return (
        f"data {data.name}: {train} train, {val} validation, {test} test samples; "
        f"{data.n_features} features, {data.n_classes} classes" + "".join(f"; {note}" for note in data.notes)
    )


def _warm_start(study: StudyHandle, data: StudyData, config: StudyConfig, on_event: OnEvent | None) -> None:
    if records.warm_start(study) is not None:
        _say(on_event, "warm start: the LR-finder picks stored on the study are reused")
        return
    _say(on_event, f"warm start: LR finder, once per optimizer ({', '.join(config.search.optimizer)})")
    curves = modelside.current().warm_start(study, data, config)
    picks = ", ".join(f"{name} {curve['chosen_lr']:.3g}" for name, curve in curves.items())
    _say(on_event, f"warm start: picked lr {picks}; enqueued as the first trials")


def _trials_line(study: StudyHandle, config: StudyConfig, workers: str) -> str:
    counts = count_trials(study)
    k = config.training.batch_trials
    per = "one per fit" if k == 1 else f"{k} per batched fit"
    if counts.finished >= config.trials:
        return f"trials: {counts.finished} of {config.trials} finished; nothing left to run"
    return f"trials: {counts.finished} of {config.trials} finished; running the rest, {per}, {workers}"


def _finalize(
    study: StudyHandle,
    config: StudyConfig,
    data: StudyData,
    on_event: OnEvent | None,
    *,
    force: bool = False,
) -> None:
    """Refit the best trial and store it, unless the stored refit already is the best trial's.

    That check comes first, without the model side: a worker that finds the study finalized by
    another does not import Lightning. :func:`~svmhpo.hpo.finalize.finalize` checks again under
    the study's lock.
    """
    if not force and final_is_current(study):
        return
    _say(on_event, "refit: the best trial on train+validation, scored once on test; LinearSVC baseline")
    finalize(study, config, data, force=force)
    publish(study)


def _create(config: StudyConfig, url: str, data: StudyData) -> StudyHandle:
    """Create (or continue) the study, recording its data's columns the first time."""
    study = start_study(config, url)
    if records.features(study) is None:
        records.set_features(study, data.n_features, data.feature_names, data.label)
    return study


def init_study(
    config: StudyConfig, url: str | None = None, *, warm: bool = True, on_event: OnEvent | None = None
) -> StudyHandle:
    """Create the study (or find it) and record the warm start, running no trials.

    The data is loaded and checked first, as ``run`` does, so a study whose workers could not
    load its data is never created.
    """
    url = resolve_storage_url(url)
    data = modelside.current().load_data(config)  # before the study: no ghost
    _say(on_event, _data_line(data))
    study = _create(config, url, data)
    if warm and config.warm_start.enabled:
        _warm_start(study, data, config, on_event)
    publish(study)
    return study


def _watching_outages_on_event(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Send the database lost/back lines to the call's ``on_event`` (a progress bar's writer); see
    :func:`~svmhpo.hpo.resilience.watching_outages`."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        with watching_outages(kwargs.get("on_event")):
            return fn(*args, **kwargs)

    return call


@_watching_outages_on_event
def run_study(
    config: StudyConfig,
    url: str | None = None,
    *,
    jobs: int = 1,
    timeout: float | None = None,
    warm: bool = True,
    on_progress: Callable[[Counts], None] | None = None,
    on_event: OnEvent | None = None,
    on_trial: Callable[[FrozenTrial], None] | None = None,
) -> dict[str, Any]:
    """Create or continue the study, fill its budget with ``jobs`` workers, then finalize it.

    ``on_progress`` gets the study's counts as trials finish, ``on_event`` a line per phase,
    ``on_trial`` every trial that finishes while it runs.
    Returns :func:`~svmhpo.hpo.studies.summary` of the study.
    """
    if jobs < 1:
        raise SvmhpoError(f"jobs must be at least 1, got {jobs}")
    url = resolve_storage_url(url)
    # The data loads first: a run that cannot load it (a download offline, a bad file) leaves
    # no empty study behind.
    data = modelside.current().load_data(config)
    _say(on_event, _data_line(data))
    study = _create(config, url, data)
    if warm and config.warm_start.enabled:
        _warm_start(study, data, config, on_event)
    publish(study)
    _say(on_event, _trials_line(study, config, "in this process" if jobs == 1 else f"in {jobs} worker processes"))
    if jobs == 1:
        objective = BatchObjective(config, data)
        counts = run_trials(study, objective, timeout=timeout, on_counts=on_progress, on_finished=on_trial)
    else:
        codes = run_workers(
            study.study_name,
            url,
            jobs,
            timeout=timeout,
            on_poll=on_progress,
            on_trial=on_trial,
            batch_trials=config.training.batch_trials,
        )
        counts = count_trials(study)
        if any(codes) and counts.finished < config.trials:
            raise SvmhpoError(
                f"study {study.study_name!r}: worker exit codes {codes}; "
                f"{counts.finished} of {config.trials} trials finished"
            )
    if counts.finished >= config.trials:
        if jobs == 1 and not elected_to_finalize(study, config):
            wait_for_final(study, config)  # the worker that finished last refits; the run ends with its model
        _finalize(study, config, data, on_event)  # a no-op when the stored model is the best trial's
    return summary(study)


@_watching_outages_on_event
def run_worker(
    name: str,
    url: str | None = None,
    *,
    timeout: float | None = None,
    gpus: str | None = None,
    batch_trials: int | None = None,
    on_progress: Callable[[Counts], None] | None = None,
    on_event: OnEvent | None = None,
    on_trial: Callable[[FrozenTrial], None] | None = None,
) -> dict[str, Any]:
    """Join an existing study and run trials until its budget is met; finalize if nobody has.

    ``gpus`` (``all``, a count or ids ``0,1``) runs one worker process per GPU instead, each
    seeing only its own GPU, and waits for them: one container or host serves all its GPUs.
    ``batch_trials`` overrides the study's ``[training] batch_trials`` for this worker (a GPU
    worker can train far more trials per batch than a CPU one).
    """
    follow_parent()  # a worker of `svmhpo run --jobs`: stop with the parent
    url = resolve_storage_url(url)
    if gpus is not None:
        devices = visible_gpus(gpus)
        study = join_study(name, url)  # fails here, in one line, if the study does not exist
        codes = run_workers(
            name,
            url,
            len(devices),
            devices=devices,
            timeout=timeout,
            on_poll=on_progress,
            on_trial=on_trial,
            batch_trials=batch_trials,
        )
        if any(codes):
            raise SvmhpoError(f"study {name!r}: GPU worker exit codes {codes} (GPUs {', '.join(devices)})")
        return summary(study)
    study = join_study(name, url)
    config = study_config(study)
    if batch_trials is not None:
        config = config.replace(training={"batch_trials": batch_trials})
    data = modelside.current().load_data(config)
    _say(on_event, _data_line(data))
    objective = BatchObjective(config, data)
    _say(on_event, _trials_line(study, config, f"worker {records.WORKER_ID}"))
    counts = run_trials(study, objective, timeout=timeout, on_counts=on_progress, on_finished=on_trial)
    if counts.finished >= config.trials and elected_to_finalize(study, config):
        _finalize(study, config, data, on_event)
    return summary(study)


def refit_study(name: str, url: str | None = None, *, on_event: OnEvent | None = None) -> dict[str, Any]:
    """Redo study ``name``'s final refit from its best trial (same seed and split) and attach the model again.

    The way back when the model was deleted (optuna-dashboard's delete button) or lives on a
    disk this host cannot see: the same seed and split give the same weights and test score.
    Returns :func:`~svmhpo.hpo.studies.summary` of the study.
    """
    url = resolve_storage_url(url)
    study = read_study(name, url)
    if best_trial(study) is None:
        raise SvmhpoError(f"study {name!r} has no completed trial to refit")
    config = study_config(study)
    data = modelside.current().load_data(config)
    _say(on_event, _data_line(data))
    _finalize(study, config, data, on_event, force=True)
    return summary(study)


def reproduce_refit(name: str, url: str | None = None) -> tuple[dict[str, Any], torch.nn.Module, DeviceData]:
    """Fit study ``name``'s best trial as its final refit did (train+validation, same seed and
    split), scored on the test split, without touching the study: ``svmhpo train --from-study``.

    Returns the result (the numbers ``svmhpo best`` shows, for the same trial), the module and the data.
    """
    study = read_study(name, url)
    trial = best_trial(study)
    if trial is None:
        raise SvmhpoError(f"study {name!r} has no completed trial yet")
    config = study_config(study)
    data = modelside.load_study_data(config)
    with ctrl_c_deferred():
        from svmhpo.hpo.refit import refit_best

    result, module = refit_best(trial, config, data)
    result["study"] = name
    result["baseline"] = records.baseline(study)
    return result, module, data

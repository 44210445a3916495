"""Start, join, read and count studies, without importing torch.

A study carries its config (see :mod:`svmhpo.hpo.records`), so a worker needs only the study
name and the storage URL. The openers are named by role, and each returns a
:class:`~svmhpo.hpo.handle.StudyHandle`:

- :func:`start_study` creates a study from a config, or continues it (``run``, ``init``);
- :func:`join_study` opens it as a worker sharing it with others (``worker``), with the
  sampler, pruner, heartbeats and outage limit its stored config asks for;
- :func:`read_study` opens it to read it (``best``, ``report``, ``predict``, ``refit``).

:func:`study_config` reads the stored config back.
"""

from __future__ import annotations

import contextlib
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import TrialState

from svmhpo.errors import ConfigError, StorageError
from svmhpo.hpo import records
from svmhpo.hpo.artifacts import FOLDER, model_store_of
from svmhpo.hpo.config import StudyConfig, config_differences, load_config
from svmhpo.hpo.handle import StudyHandle
from svmhpo.hpo.resilience import retried
from svmhpo.hpo.space import make_pruner, make_sampler
from svmhpo.hpo.storage import (
    mask_url,
    open_storage,
    resolve_storage_url,
    set_heartbeat,
    set_outage_limit,
)
from svmhpo.svm.params import metric_key

__all__ = [
    "FINISHED",
    "Counts",
    "best_trial",
    "count_states",
    "count_trials",
    "delete_study",
    "join_study",
    "model_state",
    "read_study",
    "refit_command",
    "run_config",
    "start_study",
    "study_config",
    "summary",
]

#: The states that count toward a study's budget.
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass(frozen=True)
class Counts:
    """Trial counts of a study by outcome, and the best value so far."""

    complete: int
    pruned: int
    failed: int
    running: int
    waiting: int
    best: float | None

    @property
    def finished(self) -> int:
        return self.complete + self.pruned

    def after(self, trial: optuna.trial.FrozenTrial) -> Counts:
        """These counts once ``trial``, counted as running, has finished (no storage read): how
        progress moves member by member while a batch trains."""
        state = trial.state
        best = self.best
        if state == TrialState.COMPLETE and trial.value is not None and (best is None or trial.value > best):
            best = trial.value
        return Counts(
            self.complete + (state == TrialState.COMPLETE),
            self.pruned + (state == TrialState.PRUNED),
            self.failed + (state == TrialState.FAIL),
            max(0, self.running - 1),
            self.waiting,
            best,
        )


def count_trials(study: optuna.Study) -> Counts:
    """Count the study's trials by state (one storage read)."""
    by_state = dict.fromkeys(TrialState, 0)
    best = None
    for t in study.get_trials(deepcopy=False):
        by_state[t.state] += 1
        if t.state == TrialState.COMPLETE and t.value is not None and (best is None or t.value > best):
            best = t.value
    return Counts(
        by_state[TrialState.COMPLETE],
        by_state[TrialState.PRUNED],
        by_state[TrialState.FAIL],
        by_state[TrialState.RUNNING],
        by_state[TrialState.WAITING],
        best,
    )


def count_states(study: StudyHandle) -> dict[TrialState, int]:
    """The study's trials counted by state: one ``GROUP BY`` statement on a relational storage.

    The budget is counted before every ask (:meth:`~svmhpo.hpo.objective.BatchObjective.ask`);
    :func:`count_trials` reads every unfinished trial whole to do it, where a count is all that
    is needed. Other storages are read whole.
    """
    from optuna.storages import RDBStorage

    storage = study.storage
    if not isinstance(storage, RDBStorage):
        by_state = dict.fromkeys(TrialState, 0)
        for t in study.get_trials(deepcopy=False):
            by_state[t.state] += 1
        return by_state

    import sqlalchemy
    from optuna.storages._rdb import models

    trials = models.TrialModel
    query = (
        sqlalchemy.select(trials.state, sqlalchemy.func.count())
        .where(trials.study_id == study.id)
        .group_by(trials.state)
    )

    def count() -> dict[TrialState, int]:
        with storage.engine.connect() as conn:
            return {**dict.fromkeys(TrialState, 0), **dict(conn.execute(query).all())}

    return retried(storage, "count_states", count)


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The best complete trial (the earliest of those tied), or ``None`` when every trial was pruned or failed.

    Validation accuracy moves in steps of one sample, so ties are common; Optuna's own
    ``best_trial`` then returns whichever row the database lists first, which can change between
    two reads on PostgreSQL. svmhpo refits, reports and exports the earliest of the tied trials,
    the same one every time.
    """
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    if not complete:
        return None
    return max(complete, key=lambda t: (t.value, -t.number))


def study_config(study: StudyHandle) -> StudyConfig:
    """The config stored on ``study``."""
    raw = records.stored_config(study)
    if raw is None:
        raise ConfigError(f"study {study.study_name!r} was not created by svmhpo: it has no stored config")
    return StudyConfig.from_dict(raw, path=f"study {study.study_name!r}")


def read_study(name: str, url: str | None = None) -> StudyHandle:
    """Open the existing study ``name`` to read it: no heartbeat, and Optuna's default sampler."""
    url = resolve_storage_url(url)
    return _open(name, open_storage(url), url)


def _open(name: str, storage: optuna.storages.RDBStorage, url: str, **kwargs: Any) -> StudyHandle:
    try:
        return StudyHandle(name, storage, url, **kwargs)
    except KeyError:
        names = ", ".join(s.study_name for s in optuna.get_all_study_summaries(storage)) or "none"
        raise StorageError(f"{mask_url(url)}: no study named {name!r} (studies: {names})") from None


def join_study(name: str, url: str | None = None) -> StudyHandle:
    """Open the existing study ``name`` as a worker that shares it with others.

    Its sampler uses TPE's constant liar and draws each trial from its own random stream
    (:func:`~svmhpo.hpo.space.make_sampler`), so workers side by side sample different points
    with nothing to pass. Heartbeats are on, with the stored config's interval.
    """
    url = resolve_storage_url(url)
    storage = open_storage(url)
    study = _open(name, storage, url)
    config = study_config(study)
    set_heartbeat(storage, config.heartbeat_interval, config.grace_period)
    set_outage_limit(storage, config.db_outage_limit)
    study.sampler = make_sampler(config)
    study.pruner = make_pruner(config)
    return study


def start_study(config: StudyConfig, url: str | None = None) -> StudyHandle:
    """Create the study ``config.name``, or continue it with the same config.

    The returned study samples as the only process running its trials (``svmhpo run`` with one
    job), with TPE's constant liar when it runs them in batches; workers open theirs with
    :func:`join_study`. An existing study keeps its stored config, except for the trial budget,
    which may change, and ``batch_trials``, which each run chooses; any other difference is refused.
    """
    url = resolve_storage_url(url)
    storage = open_storage(
        url,
        heartbeat_interval=config.heartbeat_interval,
        grace_period=config.grace_period,
        outage_limit=config.db_outage_limit,
    )
    with contextlib.suppress(optuna.exceptions.DuplicatedStudyError):  # it exists: continue it
        storage.create_new_study([StudyDirection.MAXIMIZE], config.name)
    study = StudyHandle(
        config.name,
        storage,
        url,
        sampler=make_sampler(config, shared=config.training.batch_trials > 1),
        pruner=make_pruner(config),
    )
    stored = records.stored_config(study)
    wanted = config.to_dict()
    if stored is None:
        records.set_config(study, wanted)
    elif differences := config_differences(stored, wanted):
        shown = "; ".join(differences[:4]) + (f"; and {len(differences) - 4} more" if len(differences) > 4 else "")
        raise ConfigError(
            f"{config.path}: study {config.name!r} already exists with another config ({shown}); "
            "leave out --config to continue it with its own, or use another study name"
        )
    elif stored.get("trials") != config.trials:
        finished = count_trials(study).finished
        if config.trials < finished:
            raise ConfigError(
                f"study {config.name!r} already has {finished} finished trials; a budget of {config.trials} "
                f"is below that (give {finished} or more)"
            )
        records.set_budget(study, config.trials)
    return study


def run_config(
    config: str | None,
    name: str | None = None,
    url: str | None = None,
    *,
    trials: int | None = None,
    batch_trials: int | None = None,
    cv: int | None = None,
    metric: str | None = None,
) -> StudyConfig:
    """The config a run of study ``name`` uses, with this run's ``trials`` and ``batch_trials``
    (and ``cv`` and ``metric``, which are the study's: a study that exists with others is refused).

    With a ``config`` (a TOML path or a shipped config's name) it is that file's (and a study
    that exists with another config is refused when the run starts). Without one, an existing
    study ``name`` continues with the config stored on it; a new one gets the default
    (``digits``).
    """
    if config is None and name is not None:
        url = resolve_storage_url(url)
        try:
            study = StudyHandle(name, open_storage(url), url)
        except KeyError:
            study = None
        if study is not None:
            return study_config(study).replace(
                trials=trials, cv=cv, metric=metric, training={"batch_trials": batch_trials} if batch_trials else None
            )
    return load_config(config).replace(
        name=name,
        trials=trials,
        cv=cv,
        metric=metric,
        training={"batch_trials": batch_trials} if batch_trials else None,
    )


def refit_command(name: str, storage: str | None = None) -> str:
    """The command that rebuilds study ``name``'s model (``svmhpo refit``), ready to paste."""
    command = f"svmhpo refit --study-name {shlex.quote(name)}"
    if storage and storage != resolve_storage_url(None):  # the default storage goes without saying
        command += f" --storage {shlex.quote(mask_url(storage))}"
    return command


def model_state(study: StudyHandle) -> tuple[str, str | None]:
    """Where the study's model is: ``("none", None)`` before its refit, ``("live", path)``, or
    ``("missing", path)`` when its artifact was deleted (optuna-dashboard's delete button) or is
    in none of the study's artifact stores. ``path`` is the model's file in the artifact folder,
    or ``None`` for a model in the study's database (:mod:`svmhpo.hpo.artifacts`)."""
    final = records.final(study)
    if not final or "model_artifact_id" not in final:
        return "none", None
    artifact_id = final["model_artifact_id"]
    in_folder = final.get("model_store", FOLDER) == FOLDER  # a record without one is from before the database store
    path = str((study.artifacts / artifact_id).absolute()) if in_folder else None
    live = {meta["artifact_id"] for meta in records.model_artifacts(study)}
    present = (
        Path(path).is_file() if path is not None else model_store_of(final, study.artifact_store()).exists(artifact_id)
    )
    return ("live" if artifact_id in live and present else "missing"), path


def _best_record(best: optuna.trial.FrozenTrial, metric: str) -> dict[str, Any]:
    """The best trial as :func:`summary` gives it: number, value (under the ``metric``'s key:
    ``val_acc``, ``val_balanced_acc``, ``val_macro_f1``), parameters, and a cross-validated
    trial's fold scores and their standard deviation (its value is their mean)."""
    record: dict[str, Any] = {"trial": best.number, metric_key(metric): best.value, "params": best.params}
    if records.CV_SCORES in best.user_attrs:
        record |= {"cv_scores": best.user_attrs[records.CV_SCORES], "cv_std": best.user_attrs.get(records.CV_STD)}
    return record


def summary(study: StudyHandle) -> dict[str, Any]:
    """The best trial, its test result, the baseline and the trial counts, as JSON-ready data.

    ``final.model`` says where the model is: ``live`` (in the study's database, or
    ``model_path`` is a file that ``svmhpo predict --model`` and ``load_model`` take) or
    ``missing`` (deleted, or on another host's disk; ``model_path`` is then ``None`` and
    ``refit`` the command that rebuilds it).
    """
    counts = count_trials(study)
    attrs = study.user_attrs
    best = best_trial(study)
    final = records.final(attrs)
    metric = records.metric(attrs)
    if final and "model_artifact_id" in final:
        state, path = model_state(study)
        final = dict(final, model=state, model_path=path if state == "live" else None)
        if state == "missing":
            final["refit"] = refit_command(study.study_name, study.url)
    return {
        "study": study.study_name,
        "metric": metric,
        "budget": records.budget(attrs),
        "trials": {
            "complete": counts.complete,
            "pruned": counts.pruned,
            "failed": counts.failed,
            "running": counts.running,
            "waiting": counts.waiting,
        },
        "best": None if best is None else _best_record(best, metric),
        "final": final,
        "baseline": records.baseline(attrs),
        "warm_start": records.warm_start(attrs) or {},
    }


def delete_study(name: str, url: str | None = None) -> int:
    """Delete study ``name``, its trials, and the artifacts (saved models) it owns; return how many artifacts.

    Artifacts in the study's database or its artifact folder go; files an older svmhpo wrote
    into another machine's folder are not reachable from here and stay there.
    """
    study = read_study(name, url)  # one line if it does not exist
    removed = 0
    store = model_store_of(records.final(study) or {}, study.artifact_store())
    for meta in records.model_artifacts(study):
        if store.exists(meta["artifact_id"]):
            store.remove(meta["artifact_id"])
            removed += 1
    optuna.delete_study(study_name=name, storage=study.storage)  # the opened storage: no second pool
    return removed

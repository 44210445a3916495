"""Create, open and count studies, without importing torch.

A study carries its config (see :mod:`svmhpo.hpo.records`), so a worker needs only the study
name and the storage URL. :func:`create_study` and :func:`load_study` return plain Optuna
studies, with the sampler, pruner and heartbeat their config asks for; :func:`study_config`
reads the config back.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from svmhpo.errors import ConfigError, StorageError
from svmhpo.hpo import records
from svmhpo.hpo.config import StudyConfig, config_differences, load_config
from svmhpo.hpo.space import make_pruner, make_sampler
from svmhpo.hpo.storage import (
    artifact_dir,
    artifact_store,
    mask_url,
    open_storage,
    resolve_storage_url,
    set_heartbeat,
    set_outage_limit,
)

__all__ = [
    "FINISHED",
    "Counts",
    "best_trial",
    "count_trials",
    "create_study",
    "delete_study",
    "load_study",
    "model_state",
    "open_study",
    "refit_command",
    "run_config",
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


def study_config(study: optuna.Study) -> StudyConfig:
    """The config stored on ``study``."""
    raw = records.stored_config(study)
    if raw is None:
        raise ConfigError(f"study {study.study_name!r} was not created by svmhpo: it has no stored config")
    return StudyConfig.from_dict(raw, path=f"study {study.study_name!r}")


def open_study(name: str, url: str | None = None) -> optuna.Study:
    """Open the existing study ``name`` to read it: no heartbeat, and Optuna's default sampler."""
    return _load(name, open_storage(url), url)


def _load(name: str, storage: optuna.storages.RDBStorage, url: str | None) -> optuna.Study:
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = ", ".join(s.study_name for s in optuna.get_all_study_summaries(storage)) or "none"
        raise StorageError(
            f"{mask_url(resolve_storage_url(url))}: no study named {name!r} (studies: {names})"
        ) from None


def load_study(name: str, url: str | None = None) -> optuna.Study:
    """Open the existing study ``name`` as a worker that shares it with others.

    Its sampler uses TPE's constant liar and draws each trial from its own random stream
    (:func:`~svmhpo.hpo.space.make_sampler`), so workers side by side sample different points
    with nothing to pass. Heartbeats are on, with the stored config's interval.
    """
    storage = open_storage(url)
    study = _load(name, storage, url)
    config = study_config(study)
    set_heartbeat(storage, config.heartbeat_interval, config.grace_period)
    set_outage_limit(storage, config.db_outage_limit)
    study.sampler = make_sampler(config)
    study.pruner = make_pruner(config)
    return study


def create_study(config: StudyConfig, url: str | None = None) -> optuna.Study:
    """Create the study ``config.name``, or continue it with the same config.

    The returned study samples as the only process running its trials (``svmhpo run`` with one
    job), with TPE's constant liar when it runs them in batches; workers open theirs with
    :func:`load_study`. An existing study keeps its stored config, except for the trial budget,
    which may change, and ``batch_trials``, which each run chooses; any other difference is refused.
    """
    storage = open_storage(
        url,
        heartbeat_interval=config.heartbeat_interval,
        grace_period=config.grace_period,
        outage_limit=config.db_outage_limit,
    )
    study = optuna.create_study(
        study_name=config.name,
        storage=storage,
        direction="maximize",
        sampler=make_sampler(config, shared=config.training.batch_trials > 1),
        pruner=make_pruner(config),
        load_if_exists=True,
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
) -> StudyConfig:
    """The config a run of study ``name`` uses, with this run's ``trials`` and ``batch_trials``.

    With a ``config`` (a TOML path or a shipped config's name) it is that file's (and a study
    that exists with another config is refused when the run starts). Without one, an existing
    study ``name`` continues with the config stored on it; a new one gets the default
    (``digits``).
    """
    if config is None and name is not None:
        storage = open_storage(url)
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            study = None
        if study is not None:
            return study_config(study).replace(
                trials=trials, training={"batch_trials": batch_trials} if batch_trials else None
            )
    return load_config(config).replace(
        name=name, trials=trials, training={"batch_trials": batch_trials} if batch_trials else None
    )


def refit_command(name: str, storage: str | None = None) -> str:
    """The command that rebuilds study ``name``'s model (``svmhpo refit``), ready to paste."""
    command = f"svmhpo refit --study-name {shlex.quote(name)}"
    if storage and storage != resolve_storage_url(None):  # the default storage goes without saying
        command += f" --storage {shlex.quote(mask_url(storage))}"
    return command


def model_state(study: optuna.Study, url: str) -> tuple[str, str | None]:
    """Where the study's model is: ``("none", None)`` before its refit, ``("live", path)``, or
    ``("missing", path)`` when its artifact was deleted (optuna-dashboard's delete button) or its
    file is not in the artifact folder."""
    final = records.final(study)
    if not final or "model_artifact_id" not in final:
        return "none", None
    artifact_id = final["model_artifact_id"]
    path = str((artifact_dir(url) / artifact_id).absolute())
    live = {meta["artifact_id"] for meta in records.model_artifacts(study)}
    return ("live" if artifact_id in live and Path(path).is_file() else "missing"), path


def summary(study: optuna.Study, url: str | None = None) -> dict[str, Any]:
    """The best trial, its test result, the baseline and the trial counts, as JSON-ready data.

    ``final.model`` says where the model is: ``live`` (``model_path`` is a file that
    ``svmhpo predict --model`` and ``load_model`` take) or ``missing`` (deleted, or on another
    host's disk; ``model_path`` is then ``None`` and ``refit`` the command that rebuilds it).
    """
    counts = count_trials(study)
    attrs = study.user_attrs
    best = best_trial(study)
    final = records.final(attrs)
    if final and "model_artifact_id" in final:
        state, path = model_state(study, resolve_storage_url(url))
        final = dict(final, model=state, model_path=path if state == "live" else None)
        if state == "missing":
            final["refit"] = refit_command(study.study_name, url)
    return {
        "study": study.study_name,
        "budget": records.budget(attrs),
        "trials": {
            "complete": counts.complete,
            "pruned": counts.pruned,
            "failed": counts.failed,
            "running": counts.running,
            "waiting": counts.waiting,
        },
        "best": None if best is None else {"trial": best.number, "val_acc": best.value, "params": best.params},
        "final": final,
        "baseline": records.baseline(attrs),
        "warm_start": records.warm_start(attrs) or {},
    }


def delete_study(name: str, url: str | None = None) -> int:
    """Delete study ``name``, its trials, and the artifact files (saved models) it owns; return how many files.

    Artifacts live in :func:`~svmhpo.hpo.storage.artifact_dir` beside the storage; files written
    by another machine into its own folder are not reachable from here and stay there.
    """
    url = resolve_storage_url(url)
    study = open_study(name, url)  # one line if it does not exist
    store_dir = artifact_dir(url)
    removed = 0
    if store_dir.is_dir():
        store = artifact_store(url)
        for meta in records.model_artifacts(study):
            if (store_dir / meta["artifact_id"]).exists():
                store.remove(meta["artifact_id"])
                removed += 1
    optuna.delete_study(study_name=name, storage=study._storage)  # the opened storage: no second pool
    return removed

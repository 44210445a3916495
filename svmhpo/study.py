"""The study service: create or continue a study, fill its trial budget, with one or many workers.

The budget is the study's total of *finished* trials (complete plus pruned), across every
process and every resumed run. :func:`work` runs trials until the study holds that many, so
re-running after an interruption tops the study up instead of adding the budget again. Several
workers may overshoot by at most one trial each (a trial started before the budget was met is
allowed to finish).

The config a study was created with is stored on it (user attribute ``config``), so that a
worker needs only the study name and the storage URL.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

from svmhpo.config import StudyConfig
from svmhpo.errors import ConfigError, StorageError, SvmhpoError
from svmhpo.search import make_pruner, make_sampler
from svmhpo.storage import mask_url, open_storage, resolve_storage_url

if TYPE_CHECKING:  # the trial loop needs torch; opening and counting studies does not
    from svmhpo.data import DeviceData
    from svmhpo.objective import Objective

__all__ = [
    "CONFIG_ATTR",
    "FINISHED",
    "Counts",
    "budget",
    "count_trials",
    "create_study",
    "load_study",
    "load_study_data",
    "run_workers",
    "work",
]

CONFIG_ATTR = "config"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
#: A worker gives up after this many failed trials in a row: something is broken, not unlucky.
MAX_CONSECUTIVE_FAILURES = 5

optuna.logging.set_verbosity(optuna.logging.WARNING)


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
    trials = study.get_trials(deepcopy=False)
    by_state = {state: 0 for state in TrialState}
    best = None
    for t in trials:
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


def _storage(url: str | None, config: StudyConfig | None = None) -> optuna.storages.RDBStorage:
    if config is None:
        return open_storage(url)
    return open_storage(url, heartbeat_interval=config.heartbeat_interval, grace_period=config.grace_period)


def load_study(
    name: str, url: str | None = None, *, worker_index: int | None = None
) -> tuple[optuna.Study, StudyConfig]:
    """Open an existing study and the config stored on it.

    ``worker_index`` gives local worker ``i`` of ``svmhpo run --jobs`` its own sampler seed
    (``seed + 1000·(i+1)``), so that workers do not sample the same points.
    """
    probe = open_storage(url, heartbeat_interval=None)
    try:
        stored = optuna.load_study(study_name=name, storage=probe)
    except KeyError:
        names = ", ".join(s.study_name for s in optuna.get_all_study_summaries(probe)) or "none"
        raise StorageError(
            f"{mask_url(resolve_storage_url(url))}: no study named {name!r} (studies: {names})"
        ) from None
    raw = stored.user_attrs.get(CONFIG_ATTR)
    if raw is None:
        raise ConfigError(f"study {name!r} was not created by svmhpo: it has no stored config")
    config = StudyConfig.from_dict(raw, path=f"study {name!r}")
    seed = config.seed if worker_index is None else config.seed + 1000 * (worker_index + 1)
    study = optuna.load_study(
        study_name=name,
        storage=_storage(url, config),
        sampler=make_sampler(config, seed=seed),
        pruner=make_pruner(config),
    )
    return study, config


def create_study(config: StudyConfig, url: str | None = None) -> tuple[optuna.Study, bool]:
    """Create the study ``config.name``, or continue it; return it and whether it is new.

    The returned study samples as the only process running its trials (``svmhpo run`` with one
    job); workers open theirs with :func:`load_study`, whose sampler allows for the others.

    An existing study keeps its stored config, except for the trial budget, which the caller's
    config may change.
    """
    storage = _storage(url, config)
    study = optuna.create_study(
        study_name=config.name,
        storage=storage,
        direction="maximize",
        sampler=make_sampler(config, seed=config.seed, shared=False),
        pruner=make_pruner(config),
        load_if_exists=True,
    )
    stored = study.user_attrs.get(CONFIG_ATTR)
    created = stored is None
    if created:
        study.set_user_attr(CONFIG_ATTR, config.to_dict())
        study.set_user_attr("metric", "val_acc")
    elif {k: v for k, v in stored.items() if k != "trials"} != {
        k: v for k, v in config.to_dict().items() if k != "trials"
    }:
        raise ConfigError(
            f"{config.path}: study {config.name!r} already exists with a different config; "
            "use another --study-name or the config it was created with"
        )
    elif stored.get("trials") != config.trials:
        study.set_user_attr(CONFIG_ATTR, dict(stored, trials=config.trials))  # the budget may change
    return study, created


def budget(user_attrs: dict) -> int | None:
    """A study's trial budget, from its stored config (``study.user_attrs`` or a summary's)."""
    return (user_attrs.get(CONFIG_ATTR) or {}).get("trials")


def load_study_data(config: StudyConfig, device: str | None = None) -> DeviceData:
    """Load and split the study's data once for this process, on the training device."""
    import torch

    from svmhpo.data import prepare_data

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    d = config.data
    return prepare_data(
        d.source, val_size=d.val_size, test_size=d.test_size, seed=config.seed, scaling=d.scaling, device=device
    )


class _StopWhen:
    """Optuna callback: stop at the budget, or after repeated failures."""

    def __init__(self, budget: int, on_trial: Callable[[Counts], None] | None) -> None:
        self.budget = budget
        self.on_trial = on_trial
        self.consecutive_failures = 0
        self.last_error: str | None = None

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state == TrialState.FAIL:
            self.consecutive_failures += 1
            self.last_error = trial.system_attrs.get("fail_reason") or self.last_error
        else:
            self.consecutive_failures = 0
        counts = count_trials(study)
        if self.on_trial is not None:
            self.on_trial(counts)
        if counts.finished >= self.budget or self.consecutive_failures >= MAX_CONSECUTIVE_FAILURES:
            study.stop()


def work(
    study: optuna.Study,
    config: StudyConfig,
    data: DeviceData,
    *,
    timeout: float | None = None,
    on_trial: Callable[[Counts], None] | None = None,
    objective: Objective | None = None,
) -> Counts:
    """Run trials in this process until the study holds ``config.trials`` finished trials.

    Stale trials of dead workers are failed and re-queued by the storage's heartbeat callback
    when this process starts a trial. Returns the final counts.
    """
    if objective is None:
        from svmhpo.objective import Objective

        objective = Objective(config, data)
    stopper = _StopWhen(config.trials, on_trial)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        counts = count_trials(study)
        remaining = config.trials - counts.finished
        if remaining <= 0:
            return counts
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return counts
        study.optimize(
            objective,
            n_trials=remaining,
            timeout=left,
            callbacks=[stopper],
            catch=(Exception,),
            gc_after_trial=False,
            show_progress_bar=False,
        )
        if stopper.consecutive_failures >= MAX_CONSECUTIVE_FAILURES:
            raise SvmhpoError(
                f"study {study.study_name!r}: {stopper.consecutive_failures} trials failed in a row "
                f"(last: {stopper.last_error}); stopping"
            )


def run_workers(
    name: str,
    url: str,
    jobs: int,
    *,
    timeout: float | None = None,
    on_poll: Callable[[Counts], None] | None = None,
    poll_s: float = 1.0,
) -> list[int]:
    """Start ``jobs`` local ``svmhpo worker`` processes on the study and wait for them.

    Each gets a share of the CPU threads and its own sampler seed. Returns their exit codes.
    """
    threads = max(1, (os.cpu_count() or 1) // jobs)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), SVMHPO_STORAGE=url)
    command = [sys.executable, "-m", "svmhpo", "worker", "--study-name", name, "--quiet"]
    if timeout is not None:
        command += ["--timeout", str(timeout)]
    procs = [subprocess.Popen([*command, "--worker-index", str(i)], env=env) for i in range(jobs)]
    study = optuna.load_study(study_name=name, storage=open_storage(url, heartbeat_interval=None))
    try:
        while any(p.poll() is None for p in procs):
            if on_poll is not None:
                on_poll(count_trials(study))
            time.sleep(poll_s)
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        raise
    finally:
        for p in procs:
            p.wait()
    if on_poll is not None:
        on_poll(count_trials(study))
    return [p.returncode for p in procs]

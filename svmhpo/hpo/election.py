"""Who refits: of the workers that fill a study's budget together, exactly one refits the best trial.

The refit itself is :func:`~svmhpo.hpo.finalize.finalize`; this module only decides which
process runs it, and lets the others wait for its result. It reads the study and imports no
model code, so a worker decides before it loads any.
"""

from __future__ import annotations

import time

from optuna.trial import TrialState

from svmhpo.hpo import records
from svmhpo.hpo.config import StudyConfig
from svmhpo.hpo.handle import StudyHandle
from svmhpo.hpo.liveness import adopt_orphans, fail_dead_local_trials, fail_stale
from svmhpo.hpo.studies import FINISHED, best_trial

__all__ = ["elected_to_finalize", "final_is_current", "wait_for_final"]


def final_is_current(study: StudyHandle) -> bool:
    """Whether the stored ``final`` refits the best trial and its model artifact is still there:
    then there is nothing to refit (and no model code to load)."""
    trial, stored = best_trial(study), records.final(study)
    if trial is None or not stored or stored.get("trial") != trial.number:
        return False
    return stored.get("model_artifact_id") in {meta["artifact_id"] for meta in records.model_artifacts(study)}


def wait_for_final(study: StudyHandle, config: StudyConfig) -> None:
    """Wait, up to the grace period, for another process's refit of the best trial to be stored."""
    deadline = time.monotonic() + config.grace_period
    while time.monotonic() < deadline:
        trial, stored = best_trial(study), records.final(study)
        if trial is None or (stored and stored.get("trial") == trial.number):
            return
        time.sleep(0.5)


def elected_to_finalize(study: StudyHandle, config: StudyConfig) -> bool:
    """Whether this worker refits the best trial, so that workers finishing together do not all do it.

    Once no trial runs, the last finished trial is fixed, and the worker that finished it is
    elected: one worker, whatever the order in which they get here. So each worker first fails
    stale trials (their workers died; see :func:`~svmhpo.hpo.liveness.adopt_orphans` for those
    that died before their first heartbeat) and waits, up to twice the heartbeat grace period,
    for the trials still running; a worker still running one decides for itself when it ends. A worker
    that finished no trial of the study (it joined late, or restarted under a new identity)
    steps in. :func:`~svmhpo.hpo.finalize.finalize` skips when the stored result already
    describes the best trial.
    """
    deadline = time.monotonic() + 2 * config.grace_period + config.heartbeat_interval
    adopted: set[int] = set()
    while True:
        fail_stale(study)
        fail_dead_local_trials(study)
        adopt_orphans(study, config.grace_period, adopted)
        trials = study.get_trials(deepcopy=False)
        if not any(t.state == TrialState.RUNNING for t in trials):
            break
        if time.monotonic() > deadline:
            return False
        time.sleep(min(1.0, config.heartbeat_interval))
    finished = [t for t in trials if t.state in FINISHED]
    if not any(records.trial_worker(t) == records.WORKER_ID for t in finished):
        return True
    last = max(finished, key=lambda t: t.datetime_complete)
    return records.trial_worker(last) == records.WORKER_ID

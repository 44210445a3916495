"""The trial loop of one process: load the data once, then run trials until the study's budget is met.

The budget is the study's total of *finished* trials (complete plus pruned), across every
process and every resumed run, so re-running after an interruption tops the study up instead of
adding the budget again. There is one loop, whatever the batch size: ask up to ``batch_trials``
trials, train them as one fit, tell them, repeat. Every ask is preceded by a count of the
finished and running trials, the two under a lock that every process on the study takes
(:func:`~svmhpo.hpo.liveness.budget_lock`), so workers side by side meet the budget exactly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from optuna.trial import FrozenTrial, TrialState

from svmhpo.errors import SvmhpoError
from svmhpo.hpo import records
from svmhpo.hpo.handle import StudyHandle
from svmhpo.hpo.liveness import adopt_orphans, fail_dead_local_trials, fail_stale, heartbeats
from svmhpo.hpo.objective import BatchObjective
from svmhpo.hpo.studies import Counts, count_trials
from svmhpo.interrupts import raise_if_lost

if TYPE_CHECKING:
    pass

__all__ = ["MAX_CONSECUTIVE_FAILURES", "run_trials"]

#: A worker gives up after this many failed trials in a row: something is broken, not unlucky.
MAX_CONSECUTIVE_FAILURES = 5


def run_trials(
    study: StudyHandle,
    objective: BatchObjective,
    *,
    timeout: float | None = None,
    on_counts: Callable[[Counts], None] | None = None,
    on_finished: Callable[[FrozenTrial], None] | None = None,
) -> Counts:
    """Run ``objective`` in this process until the study holds its config's budget of finished trials.

    ``on_counts`` gets the study's counts as trials finish; ``on_finished`` each trial this
    process finished (complete, pruned or failed), once.

    Trials left RUNNING by processes of this host that are gone are failed and re-queued at
    once; stale trials of other dead workers by the storage's heartbeat callback when this
    process starts a trial or a batch. Returns the final counts.
    """
    fail_dead_local_trials(study)
    # Each batch asks at most the budget left after the study's finished and running trials, so
    # the budget holds across workers. While other workers' running trials would fill the budget,
    # this one waits for them (a dead worker's trials are failed and re-queued after the grace
    # period, and then run here).
    config = objective.config
    deadline = None if timeout is None else time.monotonic() + timeout
    failures, last_error = 0, None
    adopted: set[int] = set()
    poll = min(1.0, float(config.heartbeat_interval))
    while True:
        raise_if_lost()
        fail_stale(study)  # under the budget lock: failed and queued again as one step
        counts = count_trials(study)
        if on_counts is not None:
            on_counts(counts)
        if counts.finished >= config.trials:
            return counts
        if failures >= MAX_CONSECUTIVE_FAILURES:
            raise SvmhpoError(
                f"study {study.study_name!r}: {failures} trials failed in a row (last: {last_error}); stopping"
            )
        if deadline is not None and time.monotonic() >= deadline:
            return counts
        left = config.trials - counts.finished - counts.running
        if left <= 0:  # the rest of the budget is running elsewhere: wait for it, or for it to go stale
            adopt_orphans(study, config.grace_period, adopted)
            time.sleep(poll)
            continue
        with heartbeats(study) as beats:  # ask recounts, under the budget lock
            members = objective.ask(study, min(objective.batch_trials, left), on_ask=beats.add)
            if not members:  # another process took the rest of the budget since the count above
                continue
            moving = Counts(counts.complete, counts.pruned, counts.failed, counts.running + len(members),
                            counts.waiting, counts.best)  # fmt: skip

            def told_one(trial: FrozenTrial) -> None:
                """Progress moves as each member finishes (a pruned member mid-batch), not per batch."""
                nonlocal moving
                moving = moving.after(trial)
                if on_counts is not None:
                    on_counts(moving)
                if on_finished is not None:
                    on_finished(trial)

            with objective.failing_untold(study, members):
                told = objective.run(study, members, on_told=told_one)
        for trial in told:
            if trial.state == TrialState.FAIL and records.fail_reason(trial) is None:
                continue  # failed as stale by another process after a long outage: not this batch's failure
            if trial.state == TrialState.FAIL:
                failures += 1
                last_error = records.fail_reason(trial) or last_error
            else:
                failures = 0

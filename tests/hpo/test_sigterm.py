"""SIGTERM (``docker stop``, a pod evicted, a spot host reclaimed) means leave now, cleanly.

A real worker process (the no-op trainer of :mod:`svmhpo.testing`) is stopped mid-batch: it
exits 0 within 10 s with one line, its running trials are put back in the queue at once (not
after the heartbeat grace period), a second worker runs them, and the study ends with exactly its
budget, nothing RUNNING and no configuration counted twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from svmhpo.hpo import records
from svmhpo.hpo.objective import STOPPED
from svmhpo.hpo.studies import read_study
from svmhpo.testing import MARK_ENV, wait_for

NOOP = [sys.executable, "-m", "svmhpo.testing"]


@pytest.mark.parametrize("batch_trials", [1, 16])
def test_a_stopped_worker_puts_its_trials_back_at_once(tmp_path: Path, study_config, batch_trials: int) -> None:
    url = f"sqlite:///{tmp_path / 'term.db'}"
    budget = 4 if batch_trials == 1 else 24
    # a grace period far longer than the test: only the stop itself can put the trials back
    config = study_config(
        "term", trials=budget, epochs=4, warm=False, pruner="none", heartbeat=1, grace=600, batch_trials=batch_trials
    )
    init = subprocess.run([*NOOP, "init", "--config", str(config), "--storage", url], capture_output=True, text=True)
    assert init.returncode == 0, init.stderr
    worker = [*NOOP, "worker", "--study-name", "term", "--storage", url, "--quiet"]
    mark = tmp_path / "epochs"  # the no-op worker notes each epoch it has reported (svmhpo.testing.MARK_ENV)
    slow = subprocess.Popen(
        worker,
        env=dict(os.environ, SVMHPO_NOOP_EPOCH_S="1.0", **{MARK_ENV: str(mark)}),
        stderr=subprocess.PIPE,
        text=True,
    )

    try:
        wait_for(lambda: mark.is_file() and mark.read_text().strip(), 120, "the worker to be inside a fit", 0.05)
        held = read_study("term", url).get_trials(states=(TrialState.RUNNING,))
        slow.send_signal(signal.SIGTERM)
        start = time.monotonic()
        _, err = slow.communicate(timeout=30)
        took = time.monotonic() - start
    finally:
        if slow.poll() is None:
            slow.kill()
    assert slow.returncode == 0, err
    assert took < 10
    assert err.strip().splitlines()[-1].startswith("svmhpo: stopped (SIGTERM): the running trials were put back")

    study = read_study("term", url)
    assert not study.get_trials(states=(TrialState.RUNNING,))
    stopped = [t for t in study.trials if t.state == TrialState.FAIL]
    assert {t.number for t in held} <= {t.number for t in stopped}
    assert stopped and all(records.fail_reason(t) == STOPPED for t in stopped), [
        (t.number, records.fail_reason(t)) for t in stopped
    ]
    waiting = study.get_trials(states=(TrialState.WAITING,))
    # each stopped trial is queued again, once, with its parameters: WAITING already, not after the grace period
    assert sorted(t.system_attrs["failed_trial"] for t in waiting) == sorted(t.number for t in stopped)
    by_number = {t.number: t for t in stopped}
    assert all(t.params == by_number[t.system_attrs["failed_trial"]].params for t in waiting)

    done = subprocess.run(
        worker, env=dict(os.environ, SVMHPO_NOOP_EPOCH_S="0"), capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    study = read_study("term", url)
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(finished) == budget  # exactly the budget: nothing lost, nothing counted twice
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    retried = [t.system_attrs.get("failed_trial") for t in finished if "failed_trial" in t.system_attrs]
    assert sorted(retried) == sorted(by_number)  # every stopped trial ran again, once
    # the re-runs do not carry their originals' reason
    assert all(records.fail_reason(t) is None for t in finished if "failed_trial" in t.system_attrs)
    assert records.final(study) is not None  # the second worker refit; the stopped one never started it


def test_a_stop_inside_a_commit_still_puts_the_trial_back(tmp_path: Path) -> None:
    """A SIGTERM inside Optuna's commit left an idle pooled connection holding SQLite's write lock:
    the worker's next write waited on itself and its trials were failed with "database is locked"
    instead of being put back (seen at K = 16 on a busy machine)."""
    import sqlalchemy

    from svmhpo.hpo.handle import StudyHandle
    from svmhpo.hpo.objective import _fail_trial
    from svmhpo.hpo.storage import open_storage
    from svmhpo.interrupts import Terminated

    url = f"sqlite:///{tmp_path / 'commit.db'}"
    storage = open_storage(url)
    optuna.create_study(storage=storage, study_name="commit", direction="maximize")
    study = StudyHandle("commit", storage, url)
    trial = study.ask()
    armed = [True]

    def stop_here(*args) -> None:
        if armed.pop() if armed else False:
            raise Terminated

    sqlalchemy.event.listen(storage.engine, "commit", stop_here)
    with pytest.raises(Terminated):
        trial.report(0.5, 0)
    _fail_trial(study, trial, STOPPED)
    trials = read_study("commit", url).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]  # failed, and queued again
    assert records.fail_reason(trials[0]) == STOPPED

"""Which RUNNING trials of this host a worker fails at once when it starts (``fail_dead_local_trials``),
on a real SQLite study: those whose process is gone, told apart by its PID namespace and start
time as well as its id, and none of another container that shares the host's name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from svmhpo.hpo import records
from svmhpo.hpo.handle import StudyHandle, trial_id
from svmhpo.hpo.liveness import fail_dead_local_trials
from svmhpo.hpo.storage import open_storage, set_heartbeat

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")


def _dead_pid() -> int:
    """The id of a process that has just ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.skipif(records.WORKER_PROCESS is None, reason="no /proc: processes are told apart by their id alone")
def test_a_gone_process_is_told_apart_by_its_namespace_and_start_not_its_id_alone(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dead.db'}"
    storage = open_storage(url)
    optuna.create_study(storage=storage, study_name="dead", direction="maximize")
    study = StudyHandle("dead", storage, url)
    set_heartbeat(storage, 1, 600)  # the copies come from the storage's retry callback
    host, me = records.WORKER_ID.rpartition(":")[0], records.WORKER_ID.rpartition(":")[2]
    namespace = records.WORKER_PROCESS.partition(":")[0]
    dead = _dead_pid()
    cases = {  # worker, process token, failed at once
        "gone, same namespace": (f"{host}:{dead}", f"{namespace}:1", True),
        "gone, no token (an older svmhpo)": (f"{host}:{dead}", None, True),
        "this process": (records.WORKER_ID, records.WORKER_PROCESS, False),
        "this id, an earlier start (a reused id)": (records.WORKER_ID, f"{namespace}:1", True),
        "another container on the host's network": (f"{host}:{dead}", "1:1", False),
        "another host": (f"elsewhere:{dead}", f"{namespace}:1", False),
    }
    numbers = {}
    for case, (worker, token, _) in cases.items():
        trial = study.ask()
        trial.set_user_attr(records.WORKER, worker)
        if token is not None:
            storage.set_trial_system_attr(trial_id(trial), records.PROCESS, token)
        numbers[case] = trial.number
    assert me.isdigit()

    failed = fail_dead_local_trials(study)

    assert sorted(failed) == sorted(numbers[c] for c, (_, _, gone) in cases.items() if gone)
    trials = study.get_trials()
    for case, (worker, _, gone) in cases.items():
        trial = trials[numbers[case]]
        assert trial.state == (TrialState.FAIL if gone else TrialState.RUNNING), case
        if gone:
            assert records.fail_reason(trial) == f"its worker {worker} is gone", case
    copies = sorted(t.system_attrs["failed_trial"] for t in trials if t.state == TrialState.WAITING)
    assert copies == sorted(failed)  # each queued again, once


def test_a_queued_copy_is_judged_by_its_new_worker_not_its_originals(tmp_path: Path) -> None:
    """A copy carries its original's ``worker`` until the worker that takes it stores its own;
    the check reads the trial again under the budget lock, which that worker holds meanwhile."""
    url = f"sqlite:///{tmp_path / 'copy.db'}"
    storage = open_storage(url)
    optuna.create_study(storage=storage, study_name="copy", direction="maximize")
    study = StudyHandle("copy", storage, url)
    set_heartbeat(storage, 1, 600)
    host = records.WORKER_ID.rpartition(":")[0]
    trial = study.ask()
    trial.set_user_attr(records.WORKER, f"{host}:{_dead_pid()}")  # as a copy of a dead worker's trial reads
    taker = (
        "import time\n"
        "from svmhpo.hpo.handle import StudyHandle\n"
        "from svmhpo.hpo.liveness import study_lock\n"
        "from svmhpo.hpo.storage import open_storage\n"
        f"study = StudyHandle('copy', open_storage({url!r}), {url!r})\n"
        "with study_lock(study, 'budget', 10) as held:\n"
        "    print(bool(held), flush=True)\n"
        "    time.sleep(1.5)  # the check reads the trial meanwhile, and waits for the lock\n"
        f"    study.storage.set_trial_user_attr({trial_id(trial)}, 'worker', 'another-host:1')\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", taker], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "True"  # the taker holds the lock, about to store its start
    assert fail_dead_local_trials(study) == []
    assert holder.wait(timeout=30) == 0
    assert study.get_trials()[0].state == TrialState.RUNNING

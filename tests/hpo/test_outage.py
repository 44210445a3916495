"""The database goes away mid-study: the real PostgreSQL server is restarted, or stopped for longer
than the outage limit, under a running ``svmhpo run`` and ``svmhpo worker`` (no-op trainer)."""

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

from svmhpo.hpo.storage import open_storage
from svmhpo.hpo.studies import read_study
from svmhpo.testing import wait_for

SVMHPO_NOOP = [sys.executable, "-m", "svmhpo.testing"]
DONE = (TrialState.COMPLETE, TrialState.PRUNED)


def _states(url: str, name: str) -> dict[TrialState, list[optuna.trial.FrozenTrial]]:
    try:
        trials = read_study(name, url).get_trials(deepcopy=False)
    except Exception:  # not created yet, or the server is restarting
        return {}
    return {state: [t for t in trials if t.state == state] for state in TrialState}


def _finished(url: str, name: str) -> int:
    states = _states(url, name)
    return sum(len(states.get(s, [])) for s in DONE)


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    command = [*SVMHPO_NOOP, *args]
    return subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)


def _assert_retried(states: dict) -> None:
    """Every FAIL trial was re-queued by the heartbeat machinery: a later trial re-runs it."""
    retried = {t.system_attrs.get("failed_trial") for state in states.values() for t in state}
    assert all(t.number in retried for t in states.get(TrialState.FAIL, []))


@pytest.mark.postgres
@pytest.mark.parametrize("batch_trials", [1, 16])
def test_a_restart_mid_study_loses_nothing_and_both_processes_carry_on(pg_server, study_config, batch_trials) -> None:
    """One trial per fit and batches of 16 go through the same loop, and both ride out the restart."""
    server, url = pg_server
    trials = 30 if batch_trials == 1 else 160  # each process takes several fits before the outage
    config = study_config(
        "restart", trials=trials, epochs=4, warm=False, batch_trials=batch_trials, heartbeat=1, grace=10
    )
    # slow enough that the study is far from done when the database goes, and down for longer
    # than a heartbeat: both processes meet the outage whatever the machine's speed (a plain
    # restart right after trial 16 once found the study all but finished, and no line was printed)
    env = dict(os.environ, SVMHPO_NOOP_EPOCH_S="0.15")
    run = _start(["run", "--config", str(config), "--storage", url], env)
    try:
        wait_for(lambda: _finished(url, "restart") >= 4, timeout=120, what="the run's first trials", interval=0.1)
        worker = _start(["worker", "--study-name", "restart", "--storage", url], env)
        try:

            def both_running() -> bool:  # the worker connected and training, not still starting
                running = _states(url, "restart").get(TrialState.RUNNING, [])
                return len({t.user_attrs.get("worker") for t in running} - {None}) == 2

            wait_for(both_running, timeout=120, what="trials running in both", interval=0.1)
            server.stop()
            time.sleep(2)
            server.start()
            run_err = run.communicate(timeout=180)[1]
            worker_err = worker.communicate(timeout=180)[1]
        finally:
            worker.kill()
    finally:
        run.kill()
    for err, proc in ((run_err, run), (worker_err, worker)):
        assert proc.returncode == 0, err
        assert "Traceback" not in err and "Caught an error from sqlalchemy" not in err
    lost = [line for err in (run_err, worker_err) for line in err.splitlines() if line.startswith("database lost: ")]
    back = [line for err in (run_err, worker_err) for line in err.splitlines() if line.startswith("database back ")]
    assert lost and len(back) == len(lost)  # a line when it is lost, one when it is back
    assert all(url in line for line in lost + back)  # the URL as given, password masked (it has none)
    states = _states(url, "restart")
    assert len(states[TrialState.COMPLETE]) + len(states[TrialState.PRUNED]) == trials  # exactly the budget
    assert states[TrialState.RUNNING] == [] and states[TrialState.WAITING] == []
    _assert_retried(states)


@pytest.mark.postgres
def test_an_outage_past_the_limit_ends_in_one_line_and_a_rerun_tops_up(pg_server, study_config) -> None:
    server, url = pg_server
    config = study_config("outage", trials=40, epochs=4, warm=False, batch_trials=4, heartbeat=1, grace=3)
    text = config.read_text().replace("grace_period = 3\n", "grace_period = 3\ndb_outage_limit = 3\n")
    config.write_text(text)
    env = dict(os.environ, SVMHPO_NOOP_EPOCH_S="0.05")
    command = ["run", "--config", str(config), "--storage", url]
    run = _start(command, env)
    try:
        wait_for(lambda: _finished(url, "outage") >= 8, timeout=120, what="the first trials", interval=0.1)
        started = time.monotonic()  # before the stop: the run may meet the outage while the server stops
        server.stop()
        err = run.communicate(timeout=120)[1]
        waited = time.monotonic() - started
    finally:
        run.kill()
        server.start()
    assert run.returncode == 1, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"svmhpo: error: {url}:")
    assert "past [study] db_outage_limit = 3 s" in last and "the same command tops it up" in last
    assert 3 <= waited < 30
    # the same command again: the dead run's trials are failed as stale, re-queued, and the budget met
    wait_for(lambda: _states(url, "outage"), timeout=60, what="the server back")
    rerun = subprocess.run([*SVMHPO_NOOP, *command, "--quiet"], capture_output=True, text=True, env=env, timeout=180)
    assert rerun.returncode == 0, rerun.stderr
    states = _states(url, "outage")
    assert len(states[TrialState.COMPLETE]) + len(states[TrialState.PRUNED]) == 40
    assert states[TrialState.RUNNING] == [] and states[TrialState.WAITING] == []
    _assert_retried(states)


def test_sqlite_keeps_its_plain_storage(tmp_path: Path) -> None:
    from optuna.storages import RDBStorage

    from svmhpo.hpo.resilience import ResilientRDBStorage

    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    assert type(storage) is RDBStorage and not isinstance(storage, ResilientRDBStorage)


@pytest.mark.postgres
def test_ctrl_c_while_the_database_is_waited_for_stops_at_once(pg_server, study_config) -> None:
    server, url = pg_server
    config = study_config("waiting", trials=400, epochs=4, warm=False, batch_trials=4, heartbeat=1, grace=3)
    run = _start(["run", "--config", str(config), "--storage", url], dict(os.environ, SVMHPO_NOOP_EPOCH_S="0.05"))
    try:
        wait_for(lambda: _finished(url, "waiting") >= 8, timeout=120, what="the first trials", interval=0.1)
        server.stop()
        time.sleep(3)  # well inside the default 120 s limit
        run.send_signal(signal.SIGINT)
        err = run.communicate(timeout=30)[1]
    finally:
        run.kill()
        server.start()
    assert run.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("svmhpo: interrupted: postgresql+psycopg://postgres@")

"""The budget lock on a real PostgreSQL server: held across a batch's asks, lost with its
connection when the server restarts, and taken again before the next ask (``HeldLock.ensure``)."""

from __future__ import annotations

import optuna
import psycopg
import pytest

from svmhpo.hpo.liveness import ADVISORY_LOCK_CLASS, budget_lock, study_lock
from svmhpo.hpo.resilience import watching_outages
from svmhpo.hpo.studies import read_study


def _try_lock(dsn: str, study_id: int) -> bool:
    """Whether another session can take the study's budget lock now (and then lets it go)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        took = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (ADVISORY_LOCK_CLASS["budget"], study_id))
        got = bool(took.fetchone()[0])
        if got:
            conn.execute("SELECT pg_advisory_unlock(%s, %s)", (ADVISORY_LOCK_CLASS["budget"], study_id))
        return got


@pytest.mark.postgres
def test_a_budget_lock_lost_in_a_restart_is_taken_again_before_the_next_ask(pg_server) -> None:
    server, url = pg_server
    optuna.create_study(storage=url, study_name="lock", direction="maximize")
    study = read_study("lock", url)
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with watching_outages(lambda line: None), budget_lock(study) as lock:
        assert lock and lock.ensure() and not _try_lock(dsn, study.id)  # held
        server.stop()
        server.start()
        assert _try_lock(dsn, study.id)  # the restart freed it: another worker could ask beside this one
        assert lock.ensure()  # taken again, on a new connection
        assert not _try_lock(dsn, study.id)
    assert _try_lock(dsn, study.id)  # and let go at the end of the block


def test_a_trial_failed_and_queued_again_is_one_step_for_an_asking_worker(tmp_path, study_config, noop_trainer) -> None:
    """Optuna fails a stale trial and queues its copy in two transactions. A worker that counted
    between them saw the slot free and nothing waiting, filled it with a new trial, and the copy
    was left WAITING once the budget was met (the compose test). Here the gap is held open for
    4 s under ``requeue_lock`` while a worker starts: it must wait, then run the copy, and no
    other process may take the budget lock (count and ask) meanwhile."""
    import os
    import subprocess
    import sys
    import time

    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    from svmhpo.cli import main
    from svmhpo.hpo.config import load_config
    from svmhpo.hpo.liveness import requeue_lock
    from svmhpo.hpo.space import suggest

    url = f"sqlite:///{tmp_path / 'gap.db'}"
    config = study_config("gap", trials=1, epochs=2, warm=False, batch_trials=4)
    assert main(["init", "--config", str(config), "--storage", url]) == 0
    study = read_study("gap", url)
    lost = study.ask()
    suggest(lost, load_config(config))  # the search space's parameters, as a worker asks them
    env = dict(os.environ, SVMHPO_HOME=str(tmp_path))
    with requeue_lock(study):
        study.tell(lost, state=TrialState.FAIL)  # the slot is free and nothing waits: the gap
        worker = subprocess.Popen(
            [sys.executable, "-m", "svmhpo.testing", "worker", "--study-name", "gap", "--storage", url, "--quiet"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(4)  # the worker starts and would count and ask now, were it not for the lock
        probe = (
            "from svmhpo.hpo.liveness import study_lock\n"
            "from svmhpo.hpo.studies import read_study\n"
            f"with study_lock(read_study('gap', {url!r}), 'budget', 1.0) as held:\n"
            "    print(bool(held))\n"
        )
        asker = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60)
        assert asker.stdout.strip() == "False", asker.stderr  # an asker's budget lock waits for the re-queue
        RetryHeartbeatStaleTrialCallback(max_retry=3)(study, study.trials[lost.number])
    assert worker.wait(timeout=120) == 0, worker.stderr.read()
    trials = read_study("gap", url).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE], trials  # the copy ran, nothing new
    assert trials[1].params == trials[0].params


def test_a_stopped_fits_members_are_failed_and_queued_again_under_the_budget_lock(
    tmp_path, study_config, noop_trainer, monkeypatch
) -> None:
    """SIGTERM mid-fit fails every member and queues its copy. Done outside the budget lock, a
    worker counting between a member's failure and its copy saw a free slot and nothing waiting,
    asked a new trial, and the copy was left WAITING at the end (the compose test: 60 finished, one
    WAITING). Every copy is queued while no other process can take the lock."""
    from optuna.trial import TrialState

    from svmhpo.cli import main
    from svmhpo.hpo import objective, records
    from svmhpo.hpo.config import load_config
    from svmhpo.hpo.liveness import study_lock
    from svmhpo.interrupts import Terminated

    url = f"sqlite:///{tmp_path / 'stop.db'}"
    config = study_config("stop", trials=4, epochs=2, warm=False, batch_trials=4)
    assert main(["init", "--config", str(config), "--storage", url]) == 0
    study = read_study("stop", url)
    held: list[bool] = []
    put_back = objective._put_back

    def probed(study, failed) -> None:
        with study_lock(read_study("stop", url), "budget", 0.0) as other:  # another asker, now
            held.append(not other)
        put_back(study, failed)

    def stopped(*args, **kwargs):
        raise Terminated

    monkeypatch.setattr(objective, "_put_back", probed)
    batch = objective.BatchObjective(load_config(config), None, batch_trials=4, fit_fn=stopped)
    members = batch.ask(study, 4)
    with pytest.raises(Terminated):
        batch.run(study, members)
    assert held == [True] * 4
    trials = read_study("stop", url).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL] * 4 + [TrialState.WAITING] * 4
    assert all(records.fail_reason(t) == objective.STOPPED for t in trials[:4])


@pytest.mark.postgres
def test_a_budget_lock_asked_for_while_the_database_is_away_waits_for_it(pg_server) -> None:
    """A worker that came to count and ask while the database was away went on without the lock
    (it could not connect to take it): when the database came back, it asked beside the worker
    that held the lock, and the budget was overshot. It waits for the database, as its storage
    calls do, and then queues for the lock."""
    import threading

    server, url = pg_server
    optuna.create_study(storage=url, study_name="away", direction="maximize")
    study = read_study("away", url)
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    lines: list[str] = []
    server.stop()
    back = threading.Timer(3.0, server.start)
    back.start()
    try:
        with watching_outages(lines.append), budget_lock(study) as lock:
            assert lock and not _try_lock(dsn, study.id)  # taken once the database is back
    finally:
        back.join()
    assert len(lines) == 2 and lines[0].startswith("database lost: ") and lines[1].startswith("database back after ")


@pytest.mark.postgres
def test_a_budget_lock_held_elsewhere_past_the_wait_is_gone_without_and_is_no_outage(pg_server) -> None:
    """A wait for the lock that runs out (PostgreSQL's ``lock_timeout``) is not the database going
    away: the holder keeps it, the waiter goes on without it after its wait, and says nothing."""
    import time

    _, url = pg_server
    optuna.create_study(storage=url, study_name="held", direction="maximize")
    study = read_study("held", url)
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    lines: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s, %s)", (ADVISORY_LOCK_CLASS["budget"], study.id))
        start = time.monotonic()
        with watching_outages(lines.append), study_lock(study, "budget", 1.0) as lock:
            assert not lock
        assert 1.0 <= time.monotonic() - start < 10
    assert lines == []


@pytest.mark.postgres
@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_an_outage_longer_than_the_grace_period_fails_no_live_trial(pg_server) -> None:
    """No heartbeat is written while the database is away: after an outage longer than the grace
    period every running trial looked stale, and the first process to look failed its live peers'
    trials and queued copies (every batch then trained twice). Stale trials are failed only once
    the database has been back a grace period; a trial still silent then is."""
    import threading
    import time

    from optuna.trial import TrialState

    from svmhpo.hpo.liveness import fail_stale
    from svmhpo.hpo.storage import set_heartbeat
    from svmhpo.hpo.studies import count_states

    server, url = pg_server
    optuna.create_study(storage=url, study_name="grace", direction="maximize")
    study = read_study("grace", url)
    set_heartbeat(study.storage, 1, 2)
    trial = study.ask()
    study.storage.record_heartbeat(trial._trial_id)
    server.stop()
    back = threading.Timer(3.0, server.start)  # past the grace period
    back.start()
    try:
        with watching_outages(lambda line: None):
            count_states(study)  # waits for the database, as a worker's next call does
    finally:
        back.join()
    fail_stale(study)  # just back: the live worker has had no chance to beat
    assert study.storage.get_trial(trial._trial_id).state == TrialState.RUNNING
    time.sleep(2.5)  # a grace period later, still silent: stale
    fail_stale(study)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]


@pytest.mark.postgres
@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_a_trial_asked_while_a_restart_freed_the_lock_is_dropped_if_the_budget_is_full(
    pg_server, study_config, noop_trainer
) -> None:
    """A database restart frees the budget lock. An ask in flight then completed once the
    database was back, while another worker, holding the lock anew, counted without it and filled
    the budget: one trial too many (the compose test's last copy left WAITING). Here the restart
    and the other worker's asks happen inside this worker's ask: its new trial is failed as over
    the budget, not run and not re-queued."""
    from optuna.trial import TrialState

    from svmhpo.cli import main
    from svmhpo.hpo import objective, records
    from svmhpo.hpo.config import load_config

    server, url = pg_server
    config = study_config("race", trials=3, epochs=2, warm=False, batch_trials=4)
    assert main(["init", "--config", str(config), "--storage", url]) == 0
    loaded = load_config(config)
    mine, other = read_study("race", url), read_study("race", url)
    theirs: list = []
    ask = mine.ask

    def ask_across_a_restart():
        if not theirs:
            server.stop()
            server.start()  # this worker's lock is gone with its connection
            theirs.extend(objective.BatchObjective(loaded, None, batch_trials=4).ask(other, 4))
        return ask()

    mine.ask = ask_across_a_restart
    with watching_outages(lambda line: None):
        members = objective.BatchObjective(loaded, None, batch_trials=4).ask(mine, 4)
    assert members == [] and len(theirs) == 3  # the other worker filled the budget
    trials = read_study("race", url).get_trials()
    assert [t.state for t in trials].count(TrialState.RUNNING) == 3
    (dropped,) = [t for t in trials if t.state == TrialState.FAIL]
    assert records.fail_reason(dropped) == objective.OVER_BUDGET
    assert not [t for t in trials if t.state == TrialState.WAITING]  # not re-queued

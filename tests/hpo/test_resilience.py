"""The retry logic of ResilientRDBStorage, call by call, on a real SQLite storage.

A storage method is made to raise what SQLAlchemy raises when the server goes away
(``OperationalError`` with ``connection_invalidated=True``); the real PostgreSQL restart is
tested end to end in ``test_outage.py``. These run in about a second.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from svmhpo.errors import DatabaseUnavailable
from svmhpo.hpo import resilience
from svmhpo.hpo.resilience import RETRIED, ResilientRDBStorage, watching_outages


def _lost() -> sqlalchemy.exc.OperationalError:
    return sqlalchemy.exc.OperationalError(
        "SELECT 1", {}, Exception("server closed the connection unexpectedly"), connection_invalidated=True
    )


@pytest.fixture
def storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ResilientRDBStorage:
    monkeypatch.setattr(resilience, "MAX_BACKOFF_S", 0.05)  # the waits, not their lengths, are under test
    return ResilientRDBStorage(f"sqlite:///{tmp_path / 'r.db'}", shown="test.db", outage_limit=5)


def _failing(times: int, result: object = 42, calls: list | None = None):
    calls = [] if calls is None else calls

    def method(self, *args, **kwargs):
        calls.append(args)
        if len(calls) <= times:
            raise _lost()
        return result

    return method, calls


def test_a_lost_connection_is_retried_until_the_database_is_back(storage: ResilientRDBStorage) -> None:
    lines: list[str] = []
    method, calls = _failing(2)
    with watching_outages(lines.append):
        assert storage._retry("get_study_user_attrs", method, (1,), {}) == 42
    assert len(calls) == 3
    assert lines[0] == "database lost: test.db (server closed the connection unexpectedly); retrying for up to 5 s"
    assert re.fullmatch(r"database back after \d+\.\d s: test\.db", lines[1]) and len(lines) == 2


def test_other_errors_are_not_retried(storage: ResilientRDBStorage) -> None:
    calls: list = []

    def method(self, *args):
        calls.append(args)
        raise sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("duplicate key"))

    with pytest.raises(sqlalchemy.exc.IntegrityError):
        storage._retry("set_study_user_attr", method, (), {})
    assert len(calls) == 1


def test_past_the_limit_every_call_fails_at_once_in_one_line(storage: ResilientRDBStorage) -> None:
    storage.outage_limit = 0.2
    method, _ = _failing(10**6)
    with watching_outages(lambda line: None), pytest.raises(DatabaseUnavailable) as info:
        storage._retry("get_all_studies", method, (), {})
    assert "past [study] db_outage_limit = 0.2 s" in str(info.value) and "tops it up" in str(info.value)
    start = time.monotonic()
    with pytest.raises(DatabaseUnavailable):
        storage._retry("get_study_directions", _failing(0)[0], (1,), {})  # even one that would succeed
    assert time.monotonic() - start < 0.1


def test_heartbeats_never_give_up_and_are_not_retried(storage: ResilientRDBStorage) -> None:
    storage.outage_limit = 0.01
    method, calls = _failing(10**6)
    with watching_outages(lambda line: None):
        for _ in range(3):
            time.sleep(0.02)
            assert storage._retry("record_heartbeat", method, (1,), {}) is None
    assert len(calls) == 3  # one attempt each: the next beat comes an interval later
    assert storage._outage.given_up is None  # heartbeats alone never end the run
    with watching_outages(lambda line: None), pytest.raises(DatabaseUnavailable):
        storage._retry("get_trial", method, (1,), {})  # a real call past the limit does


def test_a_commit_that_landed_is_not_told_twice(storage: ResilientRDBStorage) -> None:
    """``tell`` committed, then the answer was lost: the retry finds the trial told and counts it done."""
    study = optuna.create_study(storage=storage, direction="maximize")
    trial = study.ask()
    real = RDBStorage.set_trial_state_values
    attempts: list[int] = []

    def commit_then_lose(self, trial_id, state, values=None):
        attempts.append(trial_id)
        real(self, trial_id, state, values)  # the second attempt raises UpdateFinishedTrialError here
        if len(attempts) == 1:
            raise _lost()
        return True

    with watching_outages(lambda line: None):
        assert storage._retry(
            "set_trial_state_values", commit_then_lose, (trial._trial_id, TrialState.COMPLETE, [0.5]), {}
        )
    assert len(attempts) == 2
    (told,) = storage.get_all_trials(study._study_id)
    assert told.state == TrialState.COMPLETE and told.values == [0.5]


def test_a_nested_call_is_retried_by_the_outer_one_only(storage: ResilientRDBStorage) -> None:
    inner, inner_calls = _failing(1, result="inner")
    outer_calls: list = []

    def outer(self):
        outer_calls.append(1)
        return storage._retry("get_trial", inner, (), {})  # nested: raises through to the outer retry

    with watching_outages(lambda line: None):
        assert storage._retry("_get_trials", outer, (), {}) == "inner"
    assert len(outer_calls) == 2 and len(inner_calls) == 2


def test_ctrl_c_while_waiting_stops_the_waiting_everywhere(
    storage: ResilientRDBStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted_sleep(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(resilience.time, "sleep", interrupted_sleep)
    method, calls = _failing(10**6)
    with watching_outages(lambda line: None):
        with pytest.raises(KeyboardInterrupt):
            storage._retry("get_all_studies", method, (), {})
        with pytest.raises(DatabaseUnavailable) as info:  # every later call, in any thread, stops at once
            storage._retry("set_trial_state_values", method, (1, TrialState.FAIL), {})
    assert info.value.interrupted and len(calls) == 1


def test_every_backend_call_of_optunas_cache_is_retried() -> None:
    """A new Optuna private call on the backend must not slip through un-retried: its name shows up here."""
    import inspect

    from optuna.storages import _cached_storage

    called = set(re.findall(r"self\._backend\.(\w+)\(", inspect.getsource(_cached_storage)))
    in_memory = {"get_heartbeat_interval", "get_heartbeat_stale_trial_callback"}  # attributes, no database
    assert called, "optuna's _CachedStorage no longer calls a backend: re-check RETRIED"
    assert called - in_memory <= set(RETRIED), sorted(called - in_memory - set(RETRIED))
    for name in RETRIED:  # and each retried name is a real RDBStorage method, wrapped
        assert getattr(ResilientRDBStorage, name) is not getattr(RDBStorage, name), name


@pytest.mark.postgres
def test_a_server_that_goes_away_while_opening_is_waited_for(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seen in the compose test: a worker starting while PostgreSQL restarted got Optuna's
    StorageInternalError from its schema checks (connected, then the server went away), then
    could not connect, and exited. A server that answered is now waited for, up to the outage
    limit; one that never answered still fails at once; the line quotes the driver, not
    Optuna's "invalid data" guess."""
    from svmhpo.errors import StorageError
    from svmhpo.hpo import storage as storage_module

    monkeypatch.setattr(resilience, "MAX_BACKOFF_S", 0.0)
    real_init = ResilientRDBStorage.__init__
    attempts: list[str] = []

    def going_away(self, *args, plan: list[str], **kwargs):
        step = plan[len(attempts)] if len(attempts) < len(plan) else "ok"
        attempts.append(step)
        if step == "commit":  # answered, then terminated mid-commit
            try:
                raise sqlalchemy.exc.OperationalError("COMMIT", {}, Exception("terminating connection"))
            except sqlalchemy.exc.OperationalError as exc:
                raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.") from exc
        if step == "refused":
            raise sqlalchemy.exc.OperationalError("connect", {}, Exception("Connection refused"))
        real_init(self, *args, **kwargs)

    def plan(*steps: str) -> None:
        attempts.clear()
        monkeypatch.setattr(
            ResilientRDBStorage, "__init__", lambda self, *a, **k: going_away(self, *a, plan=list(steps), **k)
        )

    plan("commit", "refused", "refused")
    lines: list[str] = []
    with watching_outages(lines.append):
        assert isinstance(storage_module.open_storage(pg_url), ResilientRDBStorage)
    assert attempts == ["commit", "refused", "refused", "ok"]
    assert lines[0].endswith("(terminating connection); retrying for up to 120 s") and "database lost" in lines[0]
    assert lines[1].startswith("database back after ") and len(lines) == 2
    plan("refused")  # never answered: a wrong URL as often as a server that is down
    with pytest.raises(StorageError, match=r": cannot connect \(Connection refused\)$"):
        storage_module.open_storage(pg_url)
    assert attempts == ["refused"]
    plan(*["commit"] * 10**6)  # answered, then never again: one line when the limit is reached
    with watching_outages(lambda line: None), pytest.raises(StorageError) as info:
        storage_module.open_storage(pg_url, outage_limit=0.05)
    assert "past [study] db_outage_limit = 0.05 s (terminating connection)" in str(info.value)
    assert len(attempts) > 1 and "invalid data" not in str(info.value)


def test_a_batch_heartbeat_says_the_outage_and_its_end_and_is_not_retried(
    storage: ResilientRDBStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The heartbeat thread may be the only one to touch the database while a long epoch trains:
    its beats (one write for a batch's trials) say when the database is lost and back, as any
    other call does, without waiting and without giving up."""
    from svmhpo.hpo.liveness import Heartbeats

    study = optuna.create_study(storage=storage, direction="maximize")
    trial = study.ask()
    storage.record_heartbeat(trial._trial_id)  # the first beat, stored with the trial's start
    beats = Heartbeats(storage, 1)
    beats.add(trial._trial_id)
    engine = storage.engine
    with engine.connect() as conn:
        first = conn.execute(sqlalchemy.text("SELECT heartbeat FROM trial_heartbeats")).scalar_one()
    real_begin = type(engine).begin
    down = [True]

    def begin(self, *args, **kwargs):
        if down[0]:
            raise _lost()
        return real_begin(self, *args, **kwargs)

    monkeypatch.setattr(type(engine), "begin", begin)
    storage.outage_limit = 0.01
    lines: list[str] = []
    with watching_outages(lines.append):
        start = time.monotonic()
        beats.beat()
        time.sleep(0.02)
        beats.beat()  # past the limit: a heartbeat still does not give up
        assert time.monotonic() - start < 1 and storage._outage.given_up is None
        down[0] = False
        time.sleep(1.1)  # the database's clock stores whole seconds on SQLite
        beats.beat()
    assert lines[0].startswith("database lost: test.db (server closed the connection unexpectedly)")
    assert re.fullmatch(r"database back after \d+\.\d s: test\.db", lines[1]) and len(lines) == 2
    with engine.connect() as conn:
        assert conn.execute(sqlalchemy.text("SELECT heartbeat FROM trial_heartbeats")).scalar_one() > first

"""What a batch costs its database: a member's start in one write, a batch's tells in one write,
connections checked only when idle, and the committed transactions per trial the server counts.

Each bulk write goes through Optuna's own row writes inside one transaction; the trials must read
back exactly as Optuna's per-call path leaves them (two copies of one study, one written each
way, on real SQLite files), and the counts are the server's own (``pg_stat_database`` of a fresh
database on the tests' own PostgreSQL server).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages._rdb import models
from optuna.trial import TrialState

from svmhpo.hpo import records, starts
from svmhpo.hpo import storage as storage_mod
from svmhpo.hpo.config import load_config
from svmhpo.hpo.handle import StudyHandle, trial_id
from svmhpo.hpo.objective import BatchObjective
from svmhpo.hpo.reports import write_intermediate_values
from svmhpo.hpo.runner import run_trials
from svmhpo.hpo.space import suggest
from svmhpo.hpo.storage import open_storage
from svmhpo.hpo.studies import start_study
from svmhpo.hpo.tells import tell_many
from svmhpo.testing import NoOpTrainer


class Transactions:
    """Transactions begun on an engine (SQLAlchemy's ``begin`` event) and write statements sent,
    counted while ``on``."""

    def __init__(self, engine: sqlalchemy.Engine) -> None:
        self.count, self.writes, self.on = 0, 0, False
        sqlalchemy.event.listen(engine, "begin", self._begin)
        sqlalchemy.event.listen(engine, "before_cursor_execute", self._statement)

    def _begin(self, conn) -> None:
        self.count += self.on

    def _statement(self, conn, cursor, statement: str, *args) -> None:
        self.writes += self.on and statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))


def _ask_twelve(config, url: str, deferred: bool) -> list:
    """Ask 12 trials (past TPE's 10 startup trials, so the constant liar stores its attribute),
    telling each a value from its lr; their starts written in one go or Optuna's way."""
    study = start_study(config, url)
    for number in range(12):
        trial = study.ask()
        if deferred:
            with starts.deferred(trial, study, heartbeat=True):
                records.set_trial_origin(trial, 7)
                params, _ = suggest(trial, config)
        else:
            records.set_trial_origin(trial, 7)
            params, _ = suggest(trial, config)
            study.storage.record_heartbeat(trial_id(trial))
        if number < 11:
            study.tell(trial, -abs(math.log10(params.lr) + 1))
    return study.get_trials()


def test_a_start_written_in_one_go_reads_back_as_optunas_writes_leave_it(tmp_path: Path, study_config) -> None:
    config = load_config(study_config("starts", trials=20, warm=False, batch_trials=4))
    ours = _ask_twelve(config, f"sqlite:///{tmp_path / 'a.db'}", deferred=True)
    optunas = _ask_twelve(config, f"sqlite:///{tmp_path / 'b.db'}", deferred=False)
    for a, b in zip(ours, optunas, strict=True):
        assert (a.params, a.distributions, a.user_attrs) == (b.params, b.distributions, b.user_attrs)
        assert a.system_attrs == b.system_attrs
    assert any(k.startswith("tpe:relative_params") for k in ours[-1].system_attrs)  # the sampler's own, kept too


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 's.db'}"
    return request.getfixturevalue("pg_server")[1]


def test_a_start_is_one_transaction_with_its_heartbeat(url: str, study_config) -> None:
    config = load_config(study_config("one-write", trials=20, warm=False, batch_trials=4))
    study = start_study(config, url)
    counted = Transactions(study.storage.engine)
    trial = study.ask()
    counted.on = True
    with starts.deferred(trial, study, heartbeat=True):
        records.set_trial_origin(trial, 3)
        params, _ = suggest(trial, config)
        assert counted.writes == 0  # nothing written while sampling (the sampler reads the study)
        counted.count = 0
    # one insert each: parameters, user attributes, the process token (a system attribute), heartbeat
    assert counted.count == 1 and counted.writes == 3 + (records.WORKER_PROCESS is not None)
    stored = study.storage.get_trial(trial_id(trial))
    assert stored.params == trial.params and stored.params["lr"] == params.lr
    assert stored.user_attrs[records.SEED] == 3
    with study.storage.engine.connect() as conn:
        beats = models.TrialHeartbeatModel.__table__
        assert conn.execute(sqlalchemy.select(beats).where(beats.c.trial_id == trial_id(trial))).first()
    # written again (a retry after a lost answer): the parameters stay as they are
    pending = starts.PendingWrites(study._storage, trial_id(trial))
    pending.params["lr"] = (0.5, stored.distributions["lr"])
    starts.write_start(study.storage, pending, study_id=study.id, heartbeat=True)
    assert study.storage.get_trial(trial_id(trial)).params["lr"] == params.lr


def test_a_start_of_a_trial_finished_elsewhere_is_refused_whole(tmp_path: Path, study_config) -> None:
    config = load_config(study_config("gone", trials=20, warm=False, batch_trials=4))
    study = start_study(config, f"sqlite:///{tmp_path / 'g.db'}")
    trial = study.ask()
    study.storage.set_trial_state_values(trial_id(trial), TrialState.FAIL)  # failed as stale by another worker
    with pytest.raises(UpdateFinishedTrialError):
        with starts.deferred(trial, study, heartbeat=True):
            records.set_trial_origin(trial, 1)
            suggest(trial, config)
    stored = study.storage.get_trial(trial_id(trial))
    assert stored.params == {} and records.SEED not in stored.user_attrs


def _handle(url: str, name: str) -> StudyHandle:
    storage = open_storage(url)
    optuna.create_study(storage=storage, study_name=name, direction="maximize")
    return StudyHandle(name, storage, url)


def _tell_five(url: str, bulk: bool) -> list:
    """Complete, NaN, pruned with a curve, pruned without, and one failed elsewhere first."""
    study = _handle(url, "tells")
    trials = [study.ask() for _ in range(5)]
    curve = {0: 0.25, 1: 0.5}
    write_intermediate_values(study.storage, {trial_id(trials[2]): curve})
    study.tell(trials[4], state=TrialState.FAIL)
    told = [(trials[0], None, 0.75), (trials[1], None, math.nan), (trials[2], TrialState.PRUNED, None),
            (trials[3], TrialState.PRUNED, None), (trials[4], None, 0.9)]  # fmt: skip
    if bulk:
        returned = tell_many(study, told, {trial_id(trials[2]): curve})
    else:
        with pytest.warns(UserWarning):  # Optuna warns of the NaN it fails
            returned = [study.tell(t, v, state=s, skip_if_finished=True) for t, s, v in told]
    return returned, study.get_trials()


def test_a_batch_told_in_one_go_is_stored_as_study_tell_stores_it(tmp_path: Path) -> None:
    ours, stored_ours = _tell_five(f"sqlite:///{tmp_path / 'a.db'}", bulk=True)
    optunas, stored_optunas = _tell_five(f"sqlite:///{tmp_path / 'b.db'}", bulk=False)
    assert [t.state for t in ours] == [
        TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED, TrialState.PRUNED, TrialState.FAIL
    ]  # fmt: skip
    for a, b, sa, sb in zip(ours, optunas, stored_ours, stored_optunas, strict=True):
        assert (a.state, a.values, a.intermediate_values) == (b.state, b.values, b.intermediate_values)
        assert (sa.state, sa.values) == (sb.state, sb.values) == (a.state, a.values)
        assert sa.datetime_complete is not None


@pytest.mark.postgres
def test_a_batch_is_told_in_one_write_and_one_read(pg_server, study_config) -> None:
    url = pg_server[1]
    study = _handle(url, "tell-count")
    trials = [study.ask() for _ in range(16)]
    counted = Transactions(study.storage.engine)
    counted.on = True
    tell_many(study, [(t, None, 0.5 + i / 100) for i, t in enumerate(trials)])
    assert counted.count == 2  # Optuna's study.tell: 3 per trial
    assert [t.value for t in study.get_trials()] == [0.5 + i / 100 for i in range(16)]


@pytest.mark.postgres
def test_an_idle_connection_that_died_is_replaced_and_a_busy_one_is_not_checked(
    pg_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    server, url = pg_server
    monkeypatch.setattr(storage_mod, "PING_IDLE_S", 0.5)
    storage = open_storage(url)
    optuna.create_study(storage=storage, study_name="idle")
    database = sqlalchemy.make_url(url).database
    admin = f"host=127.0.0.1 port={server.port} user=postgres dbname=postgres"

    def ended() -> tuple[int, int]:
        """The database's committed and rolled-back transactions, once this process's connections ended."""
        storage.engine.dispose()  # the backends end, and their statistics reach pg_stat_database
        time.sleep(1.0)
        with psycopg.connect(admin, autocommit=True) as conn:
            query = "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = %s"
            return conn.execute(query, (database,)).fetchone()

    before = ended()
    for _ in range(20):  # busy: one transaction per use, and no check (a check is a rolled-back SELECT 1)
        storage.get_all_studies()
    after = ended()
    assert after[0] - before[0] in (20, 21)  # one per use (and one for the reconnection)
    assert after[1] - before[1] <= 2  # with a check on every use (pool_pre_ping): 20 or more
    storage.get_all_studies()
    with psycopg.connect(admin, autocommit=True) as conn:  # the server drops the idle pooled connection
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,))
    time.sleep(0.7)
    assert [s.study_name for s in storage.get_all_studies()] == ["idle"]  # checked, replaced, no error


@pytest.mark.postgres
def test_a_batched_study_commits_at_most_ten_transactions_per_trial(pg_server, study_config) -> None:
    """The server's own count (``pg_stat_database.xact_commit``) for a fresh study database: 64
    no-op trials in batches of 16, heartbeats on, pruning on (issue 23's bound; 40 before)."""
    import psycopg

    server, url = pg_server
    database = sqlalchemy.make_url(url).database
    admin = f"host=127.0.0.1 port={server.port} user=postgres dbname=postgres"

    def commits() -> int:
        with psycopg.connect(admin, autocommit=True) as conn:
            row = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (database,))
            return row.fetchone()[0]

    config = load_config(study_config("xact", trials=64, epochs=10, warm=False, batch_trials=16))
    study = start_study(config, url)
    time.sleep(1.0)
    before = commits()
    counts = run_trials(study, BatchObjective(config, None, batch_trials=16, fit_fn=NoOpTrainer(0.0)))
    assert counts.finished == 64 and counts.pruned > 0
    study.storage.engine.dispose()
    deadline, after = time.monotonic() + 10, commits()
    while time.monotonic() < deadline:  # until the ended backends' statistics are all in
        time.sleep(1.0)
        after, last = commits(), after
        if after == last:
            break
    assert 0 < (after - before) / 64 <= 10, after - before


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_optunas_tables_are_what_the_start_and_tell_writes_expect(backend: str, tmp_path: Path, request) -> None:
    """Pins the schema the bulk writes rely on (a new Optuna that changes it fails here first)."""
    url = f"sqlite:///{tmp_path / 'schema.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    inspector = sqlalchemy.inspect(open_storage(url).engine)
    expected = {
        "trial_params": ({"trial_id", "param_name", "param_value", "distribution_json"}, {"trial_id", "param_name"}),
        "trial_user_attributes": ({"trial_id", "key", "value_json"}, {"trial_id", "key"}),
        "trial_system_attributes": ({"trial_id", "key", "value_json"}, {"trial_id", "key"}),
        "trial_heartbeats": ({"trial_id", "heartbeat"}, {"trial_id"}),
        "trial_values": ({"trial_id", "objective", "value", "value_type"}, {"trial_id", "objective"}),
        "trials": ({"trial_id", "study_id", "state", "datetime_complete"}, None),
    }
    for table, (columns, unique) in expected.items():
        assert columns <= {c["name"] for c in inspector.get_columns(table)}, table
        if unique is not None:
            assert unique in [set(u["column_names"]) for u in inspector.get_unique_constraints(table)], table


def test_a_batch_skips_reading_an_empty_queue_and_takes_a_queued_trial(
    tmp_path: Path, study_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(study_config("queue", trials=20, warm=False, batch_trials=4))
    study = start_study(config, f"sqlite:///{tmp_path / 'q.db'}")
    objective = BatchObjective(config, None, batch_trials=4, fit_fn=NoOpTrainer(0.0))
    reads = []
    pop = optuna.Study._pop_waiting_trial_id  # the hook StudyHandle overrides: Optuna's ask still calls it

    def counted(self):
        reads.append(1)
        return pop(self)

    monkeypatch.setattr(optuna.Study, "_pop_waiting_trial_id", counted)
    assert len(objective.ask(study, 4)) == 4 and reads == []  # nothing queued: no read of the queue
    study.enqueue_trial({"lr": 0.0123, "weight_decay": 1e-5, "squared": True, "strategy": "one_vs_rest",
                         "optimizer": "adam"})  # fmt: skip
    members = objective.ask(study, 4)
    assert reads and members[0].params.lr == 0.0123  # the queued trial, first
    assert study.queue_empty is False


def test_a_batch_beats_in_one_transaction_and_goes_stale_without_it(url: str, study_config) -> None:
    from svmhpo.hpo.liveness import Heartbeats

    config = load_config(study_config("beats", trials=20, warm=False, batch_trials=4, heartbeat=1, grace=2))
    study = start_study(config, url)
    beats = Heartbeats(study.storage, 1)
    members = BatchObjective(config, None, batch_trials=4, fit_fn=NoOpTrainer(0.0)).ask(study, 4, on_ask=beats.add)
    assert len(members) == 4
    counted = Transactions(study.storage.engine)
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:  # beating: 3.5 s past a grace period of 2 s, none goes stale
        counted.on = True
        beats.beat()
        counted.on = False
        assert counted.count == 1  # every member's beat, one transaction
        counted.count = 0
        optuna.storages.fail_stale_trials(study)
        assert all(t.state == TrialState.RUNNING for t in study.get_trials())
        time.sleep(0.5)
    time.sleep(3.0)  # no beat past the grace period: every member is stale
    optuna.storages.fail_stale_trials(study)
    assert {t.state for t in study.get_trials() if t.number < 4} == {TrialState.FAIL}

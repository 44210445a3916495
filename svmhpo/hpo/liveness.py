"""Liveness of a shared study: heartbeats, orphaned and dead trials, and the study's locks.

Every process that runs trials keeps them alive with heartbeats (:func:`heartbeats`); a trial
whose worker died is failed and re-queued, after the grace period by Optuna's stale-trial check,
at once when its worker was a process of this host (:func:`fail_dead_local_trials`), and after
one adopted heartbeat when it died before its first (:func:`adopt_orphans`). The study's locks
(:func:`budget_lock`, :func:`study_lock`) make count-then-ask and the refit one process's step
at a time. Connecting to the storage is :mod:`svmhpo.hpo.storage`'s job.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import sqlalchemy

from svmhpo.hpo.handle import trial_id
from svmhpo.hpo.records import WORKER_ID, WORKER_PROCESS, process_token, set_fail_reason_of, trial_process, trial_worker
from svmhpo.hpo.resilience import retried
from svmhpo.hpo.storage import is_transaction_pooled

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from svmhpo.hpo.handle import StudyHandle

__all__ = [
    "BUDGET_LOCK_WAIT_S",
    "FINALIZE_LOCK_WAIT_S",
    "Heartbeats",
    "HeldLock",
    "adopt_orphans",
    "budget_lock",
    "fail_dead_local_trials",
    "heartbeats",
    "study_lock",
]


class Heartbeats:
    """Trials whose heartbeat this process keeps; see :func:`heartbeats`."""

    def __init__(self, storage, interval: float | None) -> None:
        self.storage = storage
        self.interval = interval
        self._ids: list[int] = []
        self._lock = threading.Lock()

    def add(self, tid: int) -> None:
        """Beat for trial ``tid`` (its storage id) from now on; its first beat is already stored.

        The first beat goes with the trial's start (:func:`svmhpo.hpo.starts.deferred`), as soon as
        the trial is asked: a RUNNING trial with no heartbeat at all is never found stale, so a
        worker killed before its first beat would leave it running forever (one killed before its
        start was stored leaves an orphan, which :func:`adopt_orphans` covers).
        """
        if self.interval:
            with self._lock:
                self._ids.append(tid)

    def beat(self) -> None:
        """One beat for every trial kept: one transaction on a relational storage (Optuna's
        ``record_heartbeat`` is one per trial: K per interval for a batch of K).

        A beat that fails (the database away) is skipped, as the storage's own heartbeats are
        (:mod:`svmhpo.hpo.resilience`): the next one comes an interval later.
        """
        with self._lock:
            ids = list(self._ids)
        if not ids:
            return
        if not isinstance(self.storage, optuna.storages.RDBStorage):
            for tid in ids:
                self.storage.record_heartbeat(tid)
            return
        from optuna.storages._rdb import models

        beats = models.TrialHeartbeatModel

        def write() -> None:
            with self.storage.engine.begin() as conn:  # the database's clock, read and stored as record_heartbeat does
                now = conn.execute(sqlalchemy.select(sqlalchemy.func.now())).scalar_one()
                conn.execute(sqlalchemy.update(beats).where(beats.trial_id.in_(ids)).values(heartbeat=now))

        once = getattr(self.storage, "once", None)  # a server: an outage met here is said, as any other
        try:
            write() if once is None else once(write)
        except sqlalchemy.exc.SQLAlchemyError:
            return


@contextlib.contextmanager
def heartbeats(study: StudyHandle) -> Iterator[Heartbeats]:
    """Within the block, write a heartbeat every heartbeat interval for each trial added to the yielded set.

    One daemon thread beats for every trial of a batch (of one trial or many), so a worker
    killed mid-batch leaves every one of its trials stale, to be failed and re-queued. Nothing is
    written when the storage has heartbeats off.
    """
    beats = Heartbeats(study.storage, study.storage.get_heartbeat_interval())
    if not beats.interval:
        yield beats
        return
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(beats.interval):
            beats.beat()

    thread = threading.Thread(target=loop, name="svmhpo-heartbeat", daemon=True)
    thread.start()
    try:
        yield beats
    finally:
        stop.set()
        thread.join()


#: First key of the PostgreSQL advisory locks svmhpo takes, by purpose; the second is the study's id.
ADVISORY_LOCK_CLASS = {"budget": 0x5A3D, "finalize": 0x5A3E}
#: How long to wait for the budget lock before asking without it. A holder holds it for one count
#: and ask (0.2–0.6 s with 32 workers on one PostgreSQL), and waiters queue: 10 s was passed with
#: 32 workers, and the budget was overshot by one (bench.many_workers).
BUDGET_LOCK_WAIT_S = 300.0
#: How long to wait for the finalize lock: a holder holds it for one refit, minutes on MNIST.
FINALIZE_LOCK_WAIT_S = 3600.0


class HeldLock:
    """A study lock as :func:`study_lock` yields it: true while held, and re-taken by :meth:`ensure`
    when the connection that held it died (a PostgreSQL restart frees every advisory lock)."""

    def __init__(self, held: bool, conn: sqlalchemy.Connection | None = None, retake=None) -> None:
        self._held = held
        self.conn = conn
        self._retake = retake
        #: How many times :meth:`ensure` found the lock lost and took it again.
        self.retakes = 0

    def __bool__(self) -> bool:
        return self._held

    def ensure(self) -> bool:
        """Before a step that needs the lock: check its connection (one ``SELECT 1`` in its open
        transaction); if the connection is gone, take the lock again on a new one, waiting out an
        outage as the storage's calls do. Returns whether the lock is held."""
        if self.conn is None or self._retake is None:
            return self._held
        try:
            self.conn.execute(sqlalchemy.text("SELECT 1"))
            return True
        except sqlalchemy.exc.SQLAlchemyError:
            with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError):
                self.conn.close()
        self.conn = self._retake()
        self._held = self.conn is not None
        self.retakes += 1
        return self._held


#: How long a stopping worker waits for the budget lock to put its trials back (within the grace
#: period a stop gets): past it, it puts them back without.
REQUEUE_LOCK_WAIT_S = 5.0


@contextlib.contextmanager
def requeue_lock(study: StudyHandle, wait_s: float = BUDGET_LOCK_WAIT_S) -> Iterator[HeldLock]:
    """The budget lock, held while a trial is failed and its copy queued (WAITING).

    Optuna fails a stale trial and queues its copy in two transactions. A worker counting the
    study between them saw the trial's slot free and nothing waiting, filled the slot with a new
    trial, and the copy was left WAITING once the budget was met (the compose test, clean-clone
    CI, 2026-12-06). Under this lock an asker's count and ask never fall between the two.
    """
    with study_lock(study, "budget", wait_s) as held:
        yield held


def fail_stale(study: StudyHandle) -> None:
    """Optuna's ``fail_stale_trials`` (fail trials whose heartbeat stopped, queue their copies)
    under :func:`requeue_lock`; not within a grace period of the database coming back.

    No heartbeat is written while the database is away, so after an outage longer than the grace
    period every running trial looks stale, its worker alive and training it: the first process
    to look would fail them all and queue copies, and every worker's batch would be trained
    twice. Once the database is back, the live workers beat within an interval; a trial still
    silent a grace period later is stale.
    """
    interval = study.storage.get_heartbeat_interval()
    back_for = getattr(study.storage, "back_for", lambda: None)()
    if interval and back_for is not None and back_for < (study.storage.grace_period or 2 * interval):
        return
    with requeue_lock(study):
        optuna.storages.fail_stale_trials(study)


@contextlib.contextmanager
def budget_lock(study: StudyHandle) -> Iterator[HeldLock]:
    """Within the block, no other process sharing ``study`` is within its own: for count-then-ask.

    Workers that count the study's finished and running trials and then ask for one, side by
    side, could both see room for the last trial and overshoot the budget. Under this lock the
    two steps are one. A lock that cannot be taken (see :func:`study_lock`) within
    :data:`BUDGET_LOCK_WAIT_S` is gone without: the budget may then be overshot by one trial per
    worker (a database that cannot take the lock). A caller that holds it across several steps
    calls :meth:`HeldLock.ensure` before each: a database restart frees the lock with its
    connection, and a holder that went on without it let another worker ask beside it (the
    compose test's budget of 60 overshot by a trial, left WAITING when its worker was killed).
    """
    with study_lock(study, "budget", BUDGET_LOCK_WAIT_S) as held:
        yield held


@contextlib.contextmanager
def study_lock(study: StudyHandle, purpose: str, wait_s: float) -> Iterator[HeldLock]:
    """Hold the study's ``purpose`` lock (``budget`` or ``finalize``) in the block; yield whether it is held.

    PostgreSQL: an advisory lock on a connection of its own (released by the server if that
    connection dies). SQLite: ``flock`` on a file beside the database (its processes share one
    machine; the lock dies with its process). A server that is away is waited for, as every
    storage call waits (:mod:`svmhpo.hpo.resilience`). Other databases, or a lock not free
    within ``wait_s`` seconds, yield ``False``: the caller goes on unlocked or gives up, as its
    purpose allows.
    """
    engine = study.storage.engine
    backend = engine.url.get_backend_name()
    if backend == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        suffix = ".budget-lock" if purpose == "budget" else f".{purpose}-lock"
        try:
            handle = open(Path(engine.url.database).with_suffix(suffix), "a")
        except OSError:  # a read-only folder: nothing can be written there anyway
            yield HeldLock(False)
            return
        with handle:
            deadline = time.monotonic() + wait_s
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        yield HeldLock(False)
                        return
                    time.sleep(0.01)
            try:
                yield HeldLock(True)  # a file lock dies only with its process
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    if backend != "postgresql":
        yield HeldLock(False)
        return
    key = {"c": ADVISORY_LOCK_CLASS[purpose], "s": study.id}
    pooled = is_transaction_pooled(study.storage)
    take = _polled_take if pooled else _queued_take

    def take_now() -> sqlalchemy.Connection | None:
        conn = engine.connect()
        try:
            if take(conn, key, wait_s):
                return conn
        except BaseException:
            with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError):
                conn.close()
            raise
        conn.close()  # the wait ran out
        return None

    def connect_and_take() -> sqlalchemy.Connection | None:
        """The lock on a connection of its own (at the start, or again after a restart freed it),
        or ``None`` when its wait ran out.

        A database that is away is waited for as the storage's calls wait (up to the outage
        limit, with their lost/back lines), and then the lock is queued for. Going on without it
        instead let every worker that came to count and ask during an outage ask beside the one
        that held the lock once the database was back (the compose test's budget overshot by one,
        and its last copy left WAITING).
        """
        try:
            return retried(study.storage, f"{purpose}_lock", take_now)
        except sqlalchemy.exc.SQLAlchemyError:  # not an outage: go on without, as the caller allows
            return None

    conn = connect_and_take()
    if conn is None:
        yield HeldLock(False)
        return
    lock = HeldLock(True, conn, connect_and_take)
    try:
        yield lock
    finally:
        if lock.conn is not None:  # none when it could not be taken again
            _release(lock.conn, key, pooled)


def _release(conn: sqlalchemy.Connection, key: dict[str, int], pooled: bool) -> None:
    with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError):
        if not pooled:  # a session lock; the polled one is the transaction's and ends with it
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:c, :s)"), key)
        conn.rollback()
    with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError):
        conn.close()


#: PostgreSQL's SQLSTATE for a lock wait that ran out (``lock_timeout``).
LOCK_NOT_AVAILABLE = "55P03"


def _queued_take(conn: sqlalchemy.Connection, key: dict[str, int], wait_s: float) -> bool:
    """Wait on the server for the advisory lock ``key`` (a session lock), up to ``wait_s``.

    The server queues the waiters (first come, first served; a try-lock polled every 10 ms by
    32 workers starved some past the wait and sent thousands of queries a second). A holder cut
    off by the network would keep its lock until the server noticed, which can take TCP
    keepalive's hours: this session asks the server to probe it after 30 s idle and drop it after
    three missed probes, so a lost holder's lock is free within about a minute. Settings made in
    this transaction end with it (the rollback at release), not in the pool. Returns ``False``
    when the wait runs out (``lock_timeout``).
    """
    for setting in ("tcp_keepalives_idle = 30", "tcp_keepalives_interval = 10", "tcp_keepalives_count = 3"):
        conn.execute(sqlalchemy.text(f"SET {setting}"))
    conn.execute(sqlalchemy.text(f"SET lock_timeout = {max(1, int(wait_s * 1000))}"))
    try:
        conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:c, :s)"), key)
    except sqlalchemy.exc.OperationalError as exc:
        # the wait ran out: PostgreSQL's lock_not_available, an OperationalError as a lost
        # connection is, and not one (the outage retries would wait on it again)
        if getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            return False
        raise
    return True


#: Longest pause between two tries of a polled lock (behind a transaction pooler); the pauses
#: grow from 10 ms with random jitter, so waiters neither flood the server nor move in step.
LOCK_POLL_MAX_S = 0.25


def _polled_take(conn: sqlalchemy.Connection, key: dict[str, int], wait_s: float) -> bool:
    """Try for the advisory lock ``key`` through a transaction-mode pooler, up to ``wait_s``.

    A waiter queued on the server (:func:`_queued_take`) holds a server connection while it
    waits, and through a pooler with fewer server connections than waiters the holder then
    cannot get one to do its work: every worker stood still (32 workers, PgBouncer with a pool of
    10). Here each try is a transaction of its own that ends at once unless the lock is taken
    (the pooler's connection goes back to its pool between tries); the lock taken is
    transaction-scoped (``pg_try_advisory_xact_lock``), so it lives exactly as long as the one
    server connection the holder keeps, and the end of that transaction (or of the holder's
    connection) releases it.
    """
    deadline = time.monotonic() + wait_s
    pause = 0.01
    while not conn.execute(sqlalchemy.text("SELECT pg_try_advisory_xact_lock(:c, :s)"), key).scalar_one():
        conn.rollback()
        if time.monotonic() > deadline:
            return False
        time.sleep(random.uniform(pause / 2, pause))
        pause = min(2 * pause, LOCK_POLL_MAX_S)
    return True


def adopt_orphans(study: StudyHandle, grace_period: float, adopted: set[int]) -> None:
    """Give RUNNING trials that no process ever claimed one heartbeat, so that they can go stale.

    A worker killed between Optuna creating its trial and the trial's first heartbeat leaves a
    RUNNING trial with no heartbeat at all, which Optuna's stale-trial check never sees: the
    budget would wait for it forever. A live worker stores ``worker`` on a trial right after
    asking for it, so a RUNNING trial without it, older than the grace period, is an orphan:
    one heartbeat from here (once per process, ids kept in ``adopted``) lets
    ``fail_stale_trials`` fail it after the grace period and the retry callback re-queue it.
    """
    if study.storage.get_heartbeat_interval() is None:
        return
    now = datetime.datetime.now()
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        started, tid = trial.datetime_start, trial_id(trial)
        if tid in adopted or trial_worker(trial) is not None or started is None:
            continue
        if (now - started).total_seconds() > grace_period:
            study.storage.record_heartbeat(tid)
            adopted.add(tid)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _gone(trial: FrozenTrial) -> str | None:
    """The worker (``host:pid``) of RUNNING ``trial`` if it is a process of this host that is gone."""
    worker = trial_worker(trial) or ""
    worker_host, _, pid = worker.rpartition(":")
    if trial.state != optuna.trial.TrialState.RUNNING or worker_host != WORKER_ID.rpartition(":")[0]:
        return None
    if not pid.isdigit():
        return None
    recorded, namespace = trial_process(trial), (WORKER_PROCESS or "").partition(":")[0]
    if recorded and namespace:
        if recorded.partition(":")[0] != namespace:  # another container's process: not visible here
            return None
        if _pid_alive(int(pid)) and process_token(int(pid)) in (recorded, None):
            return None  # the same process (or one /proc will not describe): alive
    elif _pid_alive(int(pid)):
        return None
    return worker


def fail_dead_local_trials(study: StudyHandle) -> list[int]:
    """Fail, at once, the RUNNING trials of processes of this host that no longer exist; return their numbers.

    A worker killed by SIGKILL, a full disk or a crash leaves its trials RUNNING; heartbeats
    get them failed after the grace period by whichever process looks. A trial whose ``worker``
    names this host and a process that is gone needs no grace period: it is failed now and
    re-queued with the same parameters (the storage's retry callback, as for a stale trial).

    A process is told apart by its PID namespace and start time as well as its id
    (:func:`~svmhpo.hpo.records.process_token`, stored on the trial). Containers that share the
    host's network share its name but each numbers its own processes: a trial of another PID
    namespace is left to the heartbeats (its worker was taken for dead here, and its live trial
    failed, when its id was not one of this container's processes). So is a restarted
    container's predecessor, whose namespace is gone (it cannot be told apart from another
    container's). A reused process id in this namespace is told apart by its start time. A
    trial without the token (an older svmhpo) is judged by its id alone.
    """
    storage = study.storage
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if _gone(trial) is None:
            continue
        tid = trial_id(trial)
        with requeue_lock(study):  # failed and queued again as one step for the budget's counts
            # read again under the lock: a queued copy carries its original's worker until the
            # worker that takes it (holding this lock) stores its own
            gone = _gone(storage.get_trial(tid))
            if gone is None:
                continue
            try:
                set_fail_reason_of(storage, tid, f"its worker {gone} is gone")
                storage.set_trial_state_values(tid, state=optuna.trial.TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:  # another process got there first
                continue
            failed.append(trial.number)
            callback = storage.get_heartbeat_stale_trial_callback()  # as fail_stale_trials does
            if callback is not None:
                callback(study, storage.get_trial(tid))
    return failed

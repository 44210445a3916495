"""Study storage: where studies live and how svmhpo connects to them.

- The default is a SQLite file, :func:`default_storage_url`, needing no server.
- ``--storage`` or ``$SVMHPO_STORAGE`` take any SQLAlchemy URL, PostgreSQL
  (``postgresql+psycopg://user:pass@host/db``) included.

SQLite connections get WAL journalling, ``synchronous=NORMAL`` and a 60 s busy timeout, so that
several processes on one file wait for each other instead of failing with "database is locked".
A study that runs trials gets Optuna heartbeats and the retry callback (:func:`set_heartbeat`),
so that a trial whose worker died is failed after the grace period and re-queued. Connection errors become one-line
:class:`~svmhpo.errors.StorageError` messages with the password masked.

A database server (PostgreSQL, MySQL) gets :class:`~svmhpo.hpo.resilience.ResilientRDBStorage`,
which waits out an outage of up to ``[study] db_outage_limit`` seconds mid-study. Opening a
storage does not wait: a wrong URL or a server that is down at the start is one line at once.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import os
import re
import shutil
import sqlite3
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, unquote

import optuna
import sqlalchemy
from optuna.artifacts import FileSystemArtifactStore
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from sqlalchemy.engine import URL, make_url

from svmhpo.errors import StorageError, first_line
from svmhpo.files import write_atomically
from svmhpo.hpo.config import DB_OUTAGE_LIMIT_S
from svmhpo.hpo.resilience import Outage, ResilientRDBStorage, exception_chain

__all__ = [
    "CONNECT_TIMEOUT_S",
    "AtomicArtifactStore",
    "Heartbeats",
    "adopt_orphans",
    "artifact_dir",
    "artifact_store",
    "budget_lock",
    "default_storage_url",
    "fail_dead_local_trials",
    "heartbeats",
    "mask_url",
    "open_storage",
    "parse_url",
    "resolve_storage_url",
    "set_heartbeat",
    "set_outage_limit",
    "storage_failure",
    "study_lock",
]

#: How long a connection attempt may take before the URL is reported unreachable.
CONNECT_TIMEOUT_S = 5
SQLITE_BUSY_TIMEOUT_S = 60
MAX_RETRY = 3


def data_home() -> Path:
    """``$SVMHPO_HOME``, else ``$XDG_DATA_HOME/svmhpo``, else ``~/.local/share/svmhpo``."""
    if "SVMHPO_HOME" in os.environ:
        return Path(os.environ["SVMHPO_HOME"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base).expanduser() / "svmhpo"


def default_storage_url() -> str:
    """The SQLite file that ``svmhpo run`` uses when no storage is given."""
    return f"sqlite:///{data_home() / 'studies.db'}"


def resolve_storage_url(url: str | None) -> str:
    """An explicit URL, else ``$SVMHPO_STORAGE``, else the default SQLite file."""
    return url or os.environ.get("SVMHPO_STORAGE") or default_storage_url()


#: Query parameters that carry a password (libpq's and the MySQL drivers' spellings).
_SECRET_QUERY = re.compile(r"(?i)([?&](?:password|passwd|pwd|sslpassword|sslkey_password)=)([^&#]*)")


def mask_url(url: str) -> str:
    """``url`` with every password replaced by ``***``, for every message a user sees.

    The userinfo password (``user:secret@host``, even one holding a raw ``@``) and password
    query parameters (``?password=secret``) are masked, and the text is not parsed as a URL
    first, so a URL that SQLAlchemy cannot parse (a bad port) is masked too.
    """
    span = _userinfo_password(url)
    if span is not None:
        url = url[: span[0]] + "***" + url[span[1] :]
    return _SECRET_QUERY.sub(r"\1***", url)


def _userinfo_password(url: str) -> tuple[int, int] | None:
    """Where the password of ``scheme://user:password@host`` is in ``url`` (up to the last ``@``)."""
    start = url.find("://")
    if start < 0:
        return None
    start += 3
    at = url.rfind("@", start)
    colon = url.find(":", start, at) if at > start else -1
    return (colon + 1, at) if colon >= 0 else None


def _secrets(url: str) -> list[str]:
    """The passwords written in ``url``, as written and URL-decoded."""
    found = [m.group(2) for m in _SECRET_QUERY.finditer(url)]
    span = _userinfo_password(url)
    if span is not None:
        found.append(url[span[0] : span[1]])
    return [s for secret in found if secret for s in {secret, unquote(secret)}]


def parse_url(url: str) -> URL:
    """``url`` parsed by SQLAlchemy, or one :class:`StorageError` line naming it (password masked)."""
    try:
        return make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError) as exc:
        reason = mask_in(first_line(exc), url)
        raise StorageError(
            f"{mask_url(url)}: not a valid database URL ({reason}; "
            "e.g. sqlite:///studies.db or postgresql+psycopg://user@host:5432/db)"
        ) from None


def artifact_dir(url: str) -> Path:
    """Where model files and other artifacts go: beside a SQLite file, else under data_home()."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return Path(parsed.database).with_suffix(".artifacts")
    return data_home() / "artifacts"


def _read_only(database: Path) -> bool:
    """Whether an existing SQLite file cannot be written here (a read-only mount, folder or file).

    WAL needs its ``-wal`` and ``-shm`` files beside the database, so a read-only folder is
    read-only for SQLite too, even when the file itself is writable.
    """
    return database.is_file() and not (os.access(database, os.W_OK) and os.access(database.parent, os.W_OK))


def _sqlite_creator(database: str):
    """Connections with WAL and a busy timeout; on a file that cannot be written, read-only ones.

    A read-only connection does not switch the journal mode (that is a write), and opens the
    file as immutable: nothing can change it, so SQLite needs no lock or ``-shm`` file, and a
    study on a read-only disk can still be listed, reported and used for predictions.
    """
    path = Path(database)

    def connect() -> sqlite3.Connection:
        if _read_only(path):
            uri = f"file:{quote(str(path.resolve()))}?mode=ro&immutable=1"
            return sqlite3.connect(uri, uri=True, timeout=SQLITE_BUSY_TIMEOUT_S, check_same_thread=False)
        conn = sqlite3.connect(database, timeout=SQLITE_BUSY_TIMEOUT_S, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    return connect


def _engine_kwargs(url: str) -> dict:
    parsed = parse_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            folder = Path(database).expanduser().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"{url}: cannot create the folder {folder} ({exc.strerror})") from None
            return {"creator": _sqlite_creator(str(Path(database).expanduser()))}
        return {}
    if backend == "postgresql":
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}, "pool_pre_ping": True}
    if backend in ("mysql", "mariadb"):
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}, "pool_pre_ping": True}
    return {}


def _open(url: str, shown: str, sqlite: bool, outage_limit: float, kwargs: dict[str, Any]) -> RDBStorage:
    """The storage object; a server that answered and then went away while Optuna checked its
    schema (a restart: seen in the compose test, a worker starting while PostgreSQL restarted) is
    waited for as an outage mid-run is (:class:`~svmhpo.hpo.resilience.Outage`: the same lines,
    backoff and limit). A server that never answered fails at once: that is a wrong URL as often
    as a server that is down."""
    if sqlite:
        return RDBStorage(url, engine_kwargs=kwargs)
    outage: Outage | None = None
    while True:
        try:
            storage = ResilientRDBStorage(url, shown=shown, outage_limit=outage_limit, engine_kwargs=kwargs)
        except optuna.exceptions.StorageInternalError as exc:  # connected, then a commit failed
            outage = outage or Outage(shown, outage_limit)
            wait = outage.delay_after(exc.__cause__ or exc)  # past the limit: DatabaseUnavailable, one line
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as exc:
            if outage is None:  # never answered
                raise
            wait = outage.delay_after(exc)
        else:
            if outage is not None:
                outage.recovered()
            return storage
        time.sleep(wait)


def open_storage(
    url: str | None = None,
    *,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    outage_limit: float = DB_OUTAGE_LIMIT_S,
) -> RDBStorage:
    """Connect to the study storage at ``url`` (see :func:`resolve_storage_url`).

    ``heartbeat_interval`` turns heartbeats on (see :func:`set_heartbeat`); readers leave it off.
    On a database server, an outage of up to ``outage_limit`` seconds is waited out (see
    :mod:`svmhpo.hpo.resilience`).
    Raises :class:`StorageError` with one line (password masked) when the URL is malformed, the
    driver is missing, or the server cannot be reached within :data:`CONNECT_TIMEOUT_S`.
    """
    url = resolve_storage_url(url)
    shown = mask_url(url)
    kwargs = _engine_kwargs(url)
    sqlite = parse_url(url).get_backend_name() == "sqlite"
    try:
        storage = _open(url, shown, sqlite, outage_limit, kwargs)
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.DatabaseError) as exc:
        if parse_url(url).get_backend_name() == "sqlite":
            raise StorageError(f"{shown}: cannot open the SQLite file ({first_line(exc)})") from None
        raise StorageError(f"{shown}: cannot connect ({mask_in(first_line(exc), url)})") from None
    except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError, ModuleNotFoundError, ImportError) as exc:
        raise StorageError(f"{shown}: unsupported database URL ({mask_in(first_line(exc), url)})") from None
    except optuna.exceptions.StorageInternalError as exc:
        cause = exc.__cause__ or exc  # Optuna's message blames "invalid data"; the driver's says what happened
        raise StorageError(f"{shown}: storage error ({mask_in(first_line(cause), url)})") from None
    set_heartbeat(storage, heartbeat_interval, grace_period)
    return storage


def storage_failure(exc: BaseException, url: str) -> StorageError | None:
    """One line for a storage that failed mid-command, or ``None`` if ``exc`` is not such a failure.

    Optuna turns every database error in a write into ``StorageInternalError`` with a message
    about "invalid data ... exceeding max length", which says nothing about a full disk or a
    corrupt file; the driver's own message, found in the exception's chain, does.
    """
    for e in exception_chain(exc):
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return StorageError(f"{mask_url(url)}: no space left on the device")
        if isinstance(e, (sqlite3.DatabaseError, sqlalchemy.exc.DBAPIError)):
            text = first_line(e)
            if "disk is full" in text or "No space left" in text:
                return StorageError(f"{mask_url(url)}: the disk is full ({mask_in(text, url)})")
            if "readonly" in text or "read-only" in text:
                return StorageError(
                    f"{mask_url(url)}: the study database is read-only here; it can be read "
                    "(studies, best, trials, report, predict) but trials cannot run on it"
                )
            if isinstance(e, sqlite3.DatabaseError) or isinstance(getattr(e, "orig", None), sqlite3.DatabaseError):
                return StorageError(f"{mask_url(url)}: the SQLite file cannot be used ({text})")
    return None


def set_heartbeat(storage: RDBStorage, interval: int | None, grace_period: int | None = None) -> None:
    """Turn heartbeats and the retry of stale trials on (``interval`` in seconds) or off (``None``).

    Every trial of a process then writes a heartbeat; when one has been silent longer than
    ``grace_period`` (its worker died), the next trial to start fails it and re-queues it with
    the same parameters, up to :data:`MAX_RETRY` times. These are the storage's public settings,
    so a study opened before its config was read gets them without a second connection pool.
    """
    storage.heartbeat_interval = interval
    storage.grace_period = grace_period if interval else None
    with warnings.catch_warnings():  # marked experimental since Optuna 2.8; svmhpo depends on it knowingly
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        callback = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY) if interval else None
    storage.heartbeat_stale_trial_callback = storage.failed_trial_callback = callback


def set_outage_limit(storage: RDBStorage, seconds: float) -> None:
    """Wait out database outages of up to ``seconds`` (``[study] db_outage_limit``); no-op on SQLite."""
    if isinstance(storage, ResilientRDBStorage):
        storage.outage_limit = seconds


def mask_in(text: str, url: str) -> str:
    """Remove the password of ``url`` from ``text`` (driver messages sometimes quote it)."""
    for secret in sorted(_secrets(url), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


class Heartbeats:
    """Trials whose heartbeat this process keeps; see :func:`heartbeats`."""

    def __init__(self, storage, interval: float | None) -> None:
        self._storage = storage
        self.interval = interval
        self._ids: list[int] = []
        self._lock = threading.Lock()

    def add(self, trial_id: int) -> None:
        """Beat for ``trial_id`` from now on, starting with one beat at once.

        Call it as soon as a trial is asked: a RUNNING trial with no heartbeat at all is never
        found stale, so a worker killed before its first beat would leave it running forever.
        """
        if self.interval:
            self._storage.record_heartbeat(trial_id)
            with self._lock:
                self._ids.append(trial_id)

    def beat(self) -> None:
        with self._lock:
            ids = list(self._ids)
        for trial_id in ids:
            self._storage.record_heartbeat(trial_id)


@contextlib.contextmanager
def heartbeats(study: optuna.Study) -> Iterator[Heartbeats]:
    """Within the block, write a heartbeat every heartbeat interval for each trial added to the yielded set.

    ``study.optimize`` keeps one trial alive this way; a batch of trials runs outside it, so one
    thread here beats for all of them, and a worker killed mid-batch leaves every one of its
    trials stale, to be failed and re-queued. Nothing is written when the storage has
    heartbeats off.
    """
    storage = study._storage  # the study's own storage: Optuna exposes no public accessor
    get_interval = getattr(storage, "get_heartbeat_interval", None)  # RDB storages, cached or not
    beats = Heartbeats(storage, get_interval() if get_interval is not None else None)
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
#: How long to wait for the budget lock before asking without it (a holder holds it for one ask).
BUDGET_LOCK_WAIT_S = 10.0
#: How long to wait for the finalize lock: a holder holds it for one refit, minutes on MNIST.
FINALIZE_LOCK_WAIT_S = 3600.0


@contextlib.contextmanager
def budget_lock(study: optuna.Study) -> Iterator[bool]:
    """Within the block, no other process sharing ``study`` is within its own: for count-then-ask.

    Workers that count the study's finished and running trials and then ask for one, side by
    side, could both see room for the last trial and overshoot the budget. Under this lock the
    two steps are one. A lock that cannot be taken (see :func:`study_lock`) within
    :data:`BUDGET_LOCK_WAIT_S` is gone without: the budget may then be overshot by one trial per
    worker, as with one trial per fit.
    """
    with study_lock(study, "budget", BUDGET_LOCK_WAIT_S) as held:
        yield held


@contextlib.contextmanager
def study_lock(study: optuna.Study, purpose: str, wait_s: float) -> Iterator[bool]:
    """Hold the study's ``purpose`` lock (``budget`` or ``finalize``) in the block; yield whether it is held.

    PostgreSQL: an advisory lock on a connection of its own (released by the server if that
    connection dies). SQLite: ``flock`` on a file beside the database (its processes share one
    machine; the lock dies with its process). Other databases, a lock that cannot be taken
    because the database is away, or one not free within ``wait_s`` seconds, yield ``False``:
    the caller goes on unlocked or gives up, as its purpose allows.
    """
    storage = getattr(study._storage, "_backend", study._storage)  # under Optuna's cache
    engine = getattr(storage, "engine", None)
    backend = engine.url.get_backend_name() if engine is not None else None
    if backend == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        suffix = ".budget-lock" if purpose == "budget" else f".{purpose}-lock"
        try:
            handle = open(Path(engine.url.database).with_suffix(suffix), "a")
        except OSError:  # a read-only folder: nothing can be written there anyway
            yield False
            return
        with handle:
            deadline = time.monotonic() + wait_s
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        yield False
                        return
                    time.sleep(0.01)
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    if backend != "postgresql":
        yield False
        return
    key = {"c": ADVISORY_LOCK_CLASS[purpose], "s": study._study_id}
    conn = None
    try:
        conn = engine.connect()
        # try, not wait: a holder cut off by the network keeps its lock until the server notices,
        # which can take TCP keepalive's hours; past the wait, go on without
        deadline = time.monotonic() + wait_s
        while not conn.execute(sqlalchemy.text("SELECT pg_try_advisory_lock(:c, :s)"), key).scalar():
            if time.monotonic() > deadline:
                raise TimeoutError
            time.sleep(0.01)
    except (sqlalchemy.exc.SQLAlchemyError, TimeoutError):  # the database is away: the storage calls wait
        if conn is not None:
            with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError):
                conn.close()
        conn = None
    if conn is None:
        yield False
        return
    try:
        yield True
    finally:
        with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError):
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:c, :s)"), key)
            conn.rollback()
        with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError):
            conn.close()


class AtomicArtifactStore(FileSystemArtifactStore):
    """Optuna's file-system artifact store, writing each file under a temporary name and renaming it.

    A reader (the dashboard, ``svmhpo predict``) never sees half a model, and a process killed
    mid-write leaves a hidden temporary file (:data:`svmhpo.files.TEMP_PREFIX`), not a truncated
    artifact. A write that fails raises :class:`~svmhpo.errors.OutputError`.
    """

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        write_atomically(self._get_filepath(artifact_id), lambda out: shutil.copyfileobj(content_body, out))


def artifact_store(url: str) -> AtomicArtifactStore:
    """The artifact store of the storage at ``url`` (see :func:`artifact_dir`); its folder is not created."""
    return AtomicArtifactStore(artifact_dir(url))


def adopt_orphans(study: optuna.Study, grace_period: float, adopted: set[int]) -> None:
    """Give RUNNING trials that no process ever claimed one heartbeat, so that they can go stale.

    A worker killed between Optuna creating its trial and the trial's first heartbeat leaves a
    RUNNING trial with no heartbeat at all, which Optuna's stale-trial check never sees: the
    budget would wait for it forever. A live worker stores ``worker`` on a trial right after
    asking for it, so a RUNNING trial without it, older than the grace period, is an orphan:
    one heartbeat from here (once per process, ids kept in ``adopted``) lets
    ``fail_stale_trials`` fail it after the grace period and the retry callback re-queue it.
    """
    from svmhpo.hpo.records import trial_worker

    storage = study._storage  # the study's own storage: Optuna exposes no public accessor
    if getattr(storage, "get_heartbeat_interval", lambda: None)() is None:
        return
    now = datetime.datetime.now()
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        started = trial.datetime_start
        if trial._trial_id in adopted or trial_worker(trial) is not None or started is None:
            continue
        if (now - started).total_seconds() > grace_period:
            storage.record_heartbeat(trial._trial_id)
            adopted.add(trial._trial_id)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def fail_dead_local_trials(study: optuna.Study) -> list[int]:
    """Fail, at once, the RUNNING trials of processes of this host that no longer exist; return their numbers.

    A worker killed by SIGKILL, a full disk or a crash leaves its trials RUNNING; heartbeats
    get them failed after the grace period by whichever process looks. A trial whose ``worker``
    names this host and a process id that is gone needs no grace period: it is failed now and
    re-queued with the same parameters (the storage's retry callback, as for a stale trial).
    A reused process id only makes this wait for the heartbeat, never fail a live trial here.
    """
    from svmhpo.hpo.records import WORKER_ID, set_fail_reason_of, trial_worker

    host = WORKER_ID.rpartition(":")[0]
    storage = study._storage  # the study's own storage: Optuna exposes no public accessor
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        worker_host, _, pid = (trial_worker(trial) or "").rpartition(":")
        if worker_host != host or not pid.isdigit() or _pid_alive(int(pid)):
            continue
        try:
            set_fail_reason_of(storage, trial._trial_id, f"its worker {worker_host}:{pid} is gone")
            storage.set_trial_state_values(trial._trial_id, state=optuna.trial.TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:  # another process got there first
            continue
        failed.append(trial.number)
        get_callback = getattr(storage, "get_heartbeat_stale_trial_callback", None)  # as fail_stale_trials
        callback = get_callback() if get_callback is not None else None
        if callback is not None:
            callback(study, storage.get_trial(trial._trial_id))
    return failed

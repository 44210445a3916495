"""Study storage: where studies live and how svmhpo connects to them (liveness is :mod:`svmhpo.hpo.liveness`).

- The default is a SQLite file, :func:`default_storage_url`, needing no server.
- ``--storage`` or ``$SVMHPO_STORAGE`` take any SQLAlchemy URL, PostgreSQL
  (``postgresql+psycopg://user:pass@host/db``) included.

SQLite connections get WAL journalling, ``synchronous=NORMAL`` and a 60 s busy timeout, so that
several processes on one file wait for each other instead of failing with "database is locked".
A study that runs trials gets Optuna heartbeats and the retry callback (:func:`set_heartbeat`),
so that a trial whose worker died is failed after the grace period and re-queued.
The URL is parsed once, when the storage is opened (:func:`open_storage`). Connection errors become one-line
:class:`~svmhpo.errors.StorageError` messages with the password masked.

A database server (PostgreSQL, MySQL) gets :class:`~svmhpo.hpo.resilience.ResilientRDBStorage`,
which waits out an outage of up to ``[study] db_outage_limit`` seconds mid-study. Opening a
storage does not wait: a wrong URL or a server that is down at the start is one line at once.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import sqlite3
import time
import warnings
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
    "POOLER_PARAM",
    "AtomicArtifactStore",
    "artifact_dir",
    "default_storage_url",
    "is_transaction_pooled",
    "mask_url",
    "open_storage",
    "parse_url",
    "resolve_storage_url",
    "set_heartbeat",
    "set_outage_limit",
    "storage_failure",
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


def _engine_kwargs(url: str, parsed: URL, pooled: bool = False) -> dict:
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
        connect_args: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_S}
        if pooled and parsed.get_driver_name() == "psycopg":
            # psycopg 3 prepares a statement on the server after its fifth run on a connection; a
            # transaction pooler hands the next transaction another server connection ("prepared
            # statement "_pg3_0" already exists" through PgBouncer 1.18)
            connect_args["prepare_threshold"] = None
        return {"connect_args": connect_args}
    if backend in ("mysql", "mariadb"):
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    return {}


#: A pooled connection idle for longer than this is checked before it is handed out again.
PING_IDLE_S = 10.0


def ping_when_idle(engine: sqlalchemy.Engine, idle_s: float = PING_IDLE_S) -> None:
    """Check a pooled connection (``SELECT 1``) before handing it out, if it sat idle ``idle_s`` or more.

    SQLAlchemy's ``pool_pre_ping`` checks it before every use. On PostgreSQL each ping was a
    transaction of its own: half of the study's committed transactions (40 per trial of the
    digits study, 20 of them pings), each a round trip. The connections that die unseen are
    idle ones (a server's or a firewall's idle timeout, a restart between two batches), and a
    connection that dies while in use is an outage (:mod:`svmhpo.hpo.resilience`) either way. A
    failed check makes the pool open a new connection (SQLAlchemy's own recipe for pessimistic
    disconnect handling).
    """

    @sqlalchemy.event.listens_for(engine, "checkin")
    def _idle_from(dbapi_connection: Any, record: Any) -> None:
        record.info["svmhpo_idle_since"] = time.monotonic()

    @sqlalchemy.event.listens_for(engine, "checkout")
    def _check(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        since = record.info.get("svmhpo_idle_since")
        if since is None or time.monotonic() - since < idle_s:
            return
        try:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("SELECT 1")
            finally:
                cursor.close()
            dbapi_connection.rollback()
        except Exception as exc:
            raise sqlalchemy.exc.DisconnectionError(str(exc)) from exc


def _open(
    url: str, shown: str, sqlite: bool, outage_limit: float, kwargs: dict[str, Any], pooled: bool = False
) -> RDBStorage:
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
            storage = ResilientRDBStorage(
                url, shown=shown, outage_limit=outage_limit, engine_kwargs=kwargs, skip_compatibility_check=pooled
            )
            if pooled:
                _check_schema(storage, shown)
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


def _check_schema(storage: RDBStorage, shown: str) -> None:
    """Optuna's schema check, one connection at a time (behind a transaction pooler).

    Optuna's own check reads ``version_info`` in a transaction and, still inside it, opens a
    second connection for the Alembic revision. Through a pooler every open transaction holds a
    server connection: workers started together filled a pool of 4 with such half-done checks,
    each waiting for a second connection, and none went on.
    """
    current, head = storage.get_current_version(), storage.get_head_version()
    if current != head:
        hint = (
            "run `optuna storage upgrade --storage URL`"
            if current in storage.get_all_versions()
            else "this Optuna is older than the study's; upgrade it"
        )
        raise StorageError(f"{shown}: the study tables have Optuna schema {current}, this Optuna uses {head}: {hint}")


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
    parsed = parse_url(url)
    pooled = transaction_pooler(parsed, shown)
    engine_url = url
    if POOLER_PARAM in parsed.query:  # svmhpo's own parameter: the driver would refuse it
        parsed = parsed.difference_update_query([POOLER_PARAM])
        engine_url = parsed.render_as_string(hide_password=False)
    kwargs = _engine_kwargs(url, parsed, pooled)
    sqlite = parsed.get_backend_name() == "sqlite"
    try:
        storage = _open(engine_url, shown, sqlite, outage_limit, kwargs, pooled)
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.DatabaseError) as exc:
        if sqlite:
            raise StorageError(f"{shown}: cannot open the SQLite file ({first_line(exc)})") from None
        raise StorageError(f"{shown}: cannot connect ({mask_in(first_line(exc), url)})") from None
    except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError, ModuleNotFoundError, ImportError) as exc:
        raise StorageError(f"{shown}: unsupported database URL ({mask_in(first_line(exc), url)})") from None
    except optuna.exceptions.StorageInternalError as exc:
        cause = exc.__cause__ or exc  # Optuna's message blames "invalid data"; the driver's says what happened
        raise StorageError(f"{shown}: storage error ({mask_in(first_line(cause), url)})") from None
    if not sqlite:
        ping_when_idle(storage.engine, PING_IDLE_S)
    set_heartbeat(storage, heartbeat_interval, grace_period)
    storage.transaction_pooled = pooled
    return storage


#: The URL query parameter that says the URL reaches PostgreSQL through a transaction-mode
#: connection pooler (PgBouncer's ``pool_mode = transaction``, and poolers like it):
#: ``postgresql+psycopg://user@pgbouncer:6432/db?pooler=transaction``.
POOLER_PARAM = "pooler"


def transaction_pooler(parsed: URL, shown: str) -> bool:
    """Whether ``parsed`` says ``?pooler=transaction``; any other value is one line.

    Through such a pooler each transaction may run on another server connection, so nothing may
    outlive a transaction: psycopg's prepared statements are off, and the study's locks are
    transaction-scoped and polled instead of queued on the server (a waiter queued there would
    hold a server connection, and waiters filling the pool would starve the holder: a deadlock
    seen with 32 workers on a pool of 10).
    """
    value = parsed.query.get(POOLER_PARAM)
    if value is None:
        return False
    if value != "transaction" or parsed.get_backend_name() != "postgresql":
        raise StorageError(
            f"{shown}: {POOLER_PARAM}={value} is not understood; {POOLER_PARAM}=transaction says that a "
            "PostgreSQL URL reaches the server through a transaction-mode pooler such as PgBouncer"
        )
    return True


def is_transaction_pooled(storage: optuna.storages.BaseStorage) -> bool:
    """Whether ``storage`` was opened with ``?pooler=transaction`` (see :func:`transaction_pooler`)."""
    return bool(getattr(storage, "transaction_pooled", False))


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


class AtomicArtifactStore(FileSystemArtifactStore):
    """Optuna's file-system artifact store, writing each file under a temporary name and renaming it.

    A reader (the dashboard, ``svmhpo predict``) never sees half a model, and a process killed
    mid-write leaves a hidden temporary file (:data:`svmhpo.files.TEMP_PREFIX`), not a truncated
    artifact. A write that fails raises :class:`~svmhpo.errors.OutputError`.
    """

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        write_atomically(self._get_filepath(artifact_id), lambda out: shutil.copyfileobj(content_body, out))

    def exists(self, artifact_id: str) -> bool:
        """Whether the artifact's file is in the folder."""
        return Path(self._get_filepath(artifact_id)).is_file()

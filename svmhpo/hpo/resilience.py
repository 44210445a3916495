"""Riding out a database outage: a study storage that waits for its server to come back.

Managed PostgreSQL restarts for upgrades and failovers, networks drop, idle connections are cut.
:class:`ResilientRDBStorage` is Optuna's ``RDBStorage`` with every storage operation Optuna and
svmhpo make (``ask``, ``report``, ``should_prune``, ``tell``, attributes, reads) retried with
backoff while the error is a lost or refused connection, for up to ``outage_limit`` seconds
(``[study] db_outage_limit``) counted from the start of the outage. Connections idle for a
while are checked before use (:func:`svmhpo.hpo.storage.ping_when_idle`), so a connection that
died while idle is replaced, not handed out.

- One line says when the database is lost and one when it is back (:func:`watching_outages`
  says where they go; stderr by default).
- Ctrl-C stops the waiting at once, in every thread, including the writes that fail the
  running trials on the way out (:func:`watching_outages` notes the key press; see
  :mod:`svmhpo.interrupts`).
- A heartbeat is not retried: a missed beat is harmless, and the next one comes an interval later.
- A ``tell`` whose commit landed but whose answer was lost is not written twice: its retry
  finds the trial already in the state it was told and counts that as done.
- Past the limit every storage call raises :class:`~svmhpo.errors.DatabaseUnavailable` at once,
  so the process ends with one line. Its finished trials are in the database; the trials it was
  running keep their last heartbeat, so the next run or worker fails them after the grace period
  and re-queues them.

The storage sits below Optuna's own cache (``optuna.storages._CachedStorage`` wraps any
``RDBStorage``), so retries cost nothing while the database is up.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RDBStorage

from svmhpo.errors import DatabaseUnavailable, first_line
from svmhpo.hpo.config import DB_OUTAGE_LIMIT_S
from svmhpo.interrupts import ctrl_c_pressed, noting_ctrl_c

__all__ = ["Outage", "ResilientRDBStorage", "exception_chain", "retried", "watching_outages"]

#: The longest wait between two attempts.
MAX_BACKOFF_S = 5.0

#: Storage methods that go to the database. Optuna's public methods (``create_new_trial``,
#: ``get_all_trials``, ``set_trial_param``, ``get_best_trial``) go through the private ones named
#: here, which its cache calls directly.
RETRIED = (
    "create_new_study",
    "delete_study",
    "set_study_user_attr",
    "set_study_system_attr",
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_all_studies",
    "_create_new_trial",
    "_set_trial_param",
    "get_trial_param",
    "get_trial_id_from_study_id_trial_number",
    "_get_best_trial_id",
    "set_trial_state_values",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "get_trial_user_attrs",
    "get_trial_system_attrs",
    "get_trial",
    "_get_trials",
    "record_heartbeat",
    "_get_stale_trial_ids",
)


class _NoFallbackNotice(logging.Filter):
    """Drop Optuna's multi-line "Caught an error from sqlalchemy ... slower alternative" warning
    when it is a lost connection, which is reported here in one line and retried. Its other
    cause, a query with too many SQL variables, still shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        return not text.startswith("Caught an error from sqlalchemy") or "too many" in text.lower()


_RDB_LOGGER = logging.getLogger("optuna.storages._rdb.storage")
_NO_FALLBACK_NOTICE = _NoFallbackNotice()

_outage_line: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731


@contextlib.contextmanager
def watching_outages(say: Callable[[str], None] | None) -> Iterator[None]:
    """Within the block, the database lost/back lines go to ``say`` (a progress bar's writer, or
    stderr when ``None``), and Ctrl-C is noted (:func:`~svmhpo.interrupts.noting_ctrl_c`), so
    that no storage call waits for the database any more once it is pressed."""
    global _outage_line
    previous, _outage_line = _outage_line, say or _outage_line
    added = _NO_FALLBACK_NOTICE not in _RDB_LOGGER.filters  # installed here, not at import: nested blocks share it
    if added:
        _RDB_LOGGER.addFilter(_NO_FALLBACK_NOTICE)
    try:
        with noting_ctrl_c():
            yield
    finally:
        _outage_line = previous
        if added:
            _RDB_LOGGER.removeFilter(_NO_FALLBACK_NOTICE)


def exception_chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc``, then what it was raised from or while handling, and so on."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        yield exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__


def _handling_interrupt() -> bool:
    """Whether this call comes from code handling Ctrl-C (``sys.exc_info`` sees up the stack)."""
    return any(isinstance(e, KeyboardInterrupt) for e in exception_chain(sys.exc_info()[1]))


def _lost_connection(exc: BaseException) -> BaseException | None:
    """The error in ``exc``'s chain that says the connection is gone or refused, if any.

    The driver's own error is preferred, deepest first, over SQLAlchemy's "can't reconnect until
    invalid transaction is rolled back", which only says that an earlier one happened.
    """
    found: BaseException | None = None
    for current in exception_chain(exc):
        if isinstance(current, sqlalchemy.exc.DBAPIError) and (
            current.connection_invalidated
            or isinstance(current, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError))
        ):
            found = current
        elif isinstance(current, sqlalchemy.exc.PendingRollbackError) and found is None:
            found = current
    return found


def _reason(exc: BaseException) -> str:
    """The first line of the driver's message, without SQLAlchemy's background link."""
    return first_line(exc).split(" (Background on this error at:")[0].strip()


class Outage:
    """The outage a storage is in, shared by its threads: when it began, and whether it was given up."""

    def __init__(self, shown: str, limit: float) -> None:
        self.shown = shown
        self.limit = limit
        self.since: float | None = None
        #: When the last outage ended (``time.monotonic()``), or ``None``.
        self.back_at: float | None = None
        self.failures = 0
        self.given_up: str | None = None
        self.interrupted = False
        self._lock = threading.Lock()

    def check(self) -> None:
        if self.given_up is not None:
            raise DatabaseUnavailable(self.given_up, interrupted=self.interrupted)

    def delay_after(self, exc: BaseException, *, may_give_up: bool = True) -> float:
        """Note a lost connection; return how long to wait before the next attempt, or give up.

        A heartbeat does not give up (``may_give_up=False``): while a long epoch trains, only
        heartbeats may see an outage, and if the database is back by the next report, the run
        carries on.
        """
        with self._lock:
            now = time.monotonic()
            if self.since is None:
                self.since, self.failures = now, 0
                _outage_line(f"database lost: {self.shown} ({_reason(exc)}); retrying for up to {self.limit:g} s")
            self.failures += 1
            left = self.since + self.limit - now
            if not may_give_up:
                return 0.0
            if left <= 0:
                self._give_up(
                    f"the database was unreachable for {now - self.since:.0f} s, past "
                    f"[study] db_outage_limit = {self.limit:g} s ({_reason(exc)})"
                )
            self.check()
            return min(MAX_BACKOFF_S, 0.25 * 2 ** min(self.failures - 1, 5), left)

    def interrupt(self) -> None:
        """Ctrl-C while waiting: stop waiting, here and in every thread."""
        with self._lock:
            if self.given_up is None:
                self.interrupted = True
                self._give_up("interrupted while the database was unreachable")

    def _give_up(self, why: str) -> None:
        if self.given_up is None:
            kept = "the finished trials are kept in the study, and the same command tops it up"
            self.given_up = f"{self.shown}: {why}; {kept}"

    def recovered(self) -> None:
        if self.since is None:  # the common case, read without the lock
            return
        with self._lock:
            if self.since is not None:
                self.back_at = time.monotonic()
                _outage_line(f"database back after {self.back_at - self.since:.1f} s: {self.shown}")
                self.since = None


def retried(storage: object, name: str, fn: Callable[[], Any]) -> Any:
    """Call ``fn`` (svmhpo's own database work on ``storage``'s engine) with the retries of
    :meth:`ResilientRDBStorage.retrying` where ``storage`` has them (a database server), else once
    (SQLite, which has no outages to wait for)."""
    retrying = getattr(storage, "retrying", None)
    return fn() if retrying is None else retrying(name, fn)


class ResilientRDBStorage(RDBStorage):
    """``RDBStorage`` that waits out database outages of up to ``outage_limit`` seconds (see the module)."""

    def __init__(self, url: str, *, shown: str, outage_limit: float = DB_OUTAGE_LIMIT_S, **kwargs: Any) -> None:
        self._outage = Outage(shown, outage_limit)
        self._nested = threading.local()
        super().__init__(url, **kwargs)

    @property
    def outage_limit(self) -> float:
        return self._outage.limit

    @outage_limit.setter
    def outage_limit(self, seconds: float) -> None:
        self._outage.limit = seconds

    def back_for(self) -> float | None:
        """Seconds since this process last saw the database come back from an outage, or ``None``."""
        back_at = self._outage.back_at
        return None if back_at is None else time.monotonic() - back_at

    def retrying(self, name: str, fn: Callable[[], Any]) -> Any:
        """Call ``fn`` (svmhpo's own database work on :attr:`engine`, such as an artifact write) with
        the retries every Optuna storage call gets; ``name`` is for nothing but telling them apart."""
        return self._retry(name, lambda _self: fn(), (), {})

    def once(self, fn: Callable[[], Any]) -> Any:
        """Call ``fn`` once, not retried (a heartbeat: the next comes an interval later); a lost
        connection is noted as an outage (its "database lost" line) and ``None`` returned, and a
        success ends an outage noted before (its "database back" line)."""
        try:
            result = fn()
        except Exception as exc:
            lost = _lost_connection(exc)
            if lost is None:
                raise
            self._outage.delay_after(lost, may_give_up=False)
            return None
        self._outage.recovered()
        return result

    def _retry(self, name: str, method: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        if getattr(self._nested, "depth", 0):  # called from a retried method: the outer call retries
            return method(self, *args, **kwargs)
        lost_before = False
        while True:
            if name == "record_heartbeat" and self._outage.given_up is not None:
                return None
            self._outage.check()
            self._nested.depth = 1
            try:
                result = method(self, *args, **kwargs)
            except KeyboardInterrupt:
                if self._outage.since is not None:  # Ctrl-C inside a call during an outage: stop waiting
                    self._outage.interrupt()
                raise
            except UpdateFinishedTrialError:
                if lost_before and name == "set_trial_state_values" and self._already_told(*args, **kwargs):
                    break  # the lost attempt's commit had landed
                raise
            except Exception as exc:
                lost = _lost_connection(exc)
                if lost is None:
                    raise
                lost_before = True
                if name == "record_heartbeat":  # a missed beat is harmless; the next comes an interval later
                    self._outage.delay_after(lost, may_give_up=False)
                    return None
                wait = self._outage.delay_after(lost)
                if ctrl_c_pressed() or _handling_interrupt():  # e.g. failing the running trials after Ctrl-C
                    self._outage.interrupt()
                    self._outage.check()
                self.remove_session()
                try:
                    time.sleep(wait)
                except KeyboardInterrupt:
                    self._outage.interrupt()
                    raise
                continue
            finally:
                self._nested.depth = 0
            self._outage.recovered()
            return result
        self._outage.recovered()
        return True

    def _already_told(self, trial_id: int, state: Any, values: Any = None) -> bool:
        trial = self.get_trial(trial_id)
        return trial.state == state and (values is None or list(trial.values or []) == list(values))


def _retried(name: str) -> Callable[..., Any]:
    method = getattr(RDBStorage, name)

    @functools.wraps(method)
    def call(self: ResilientRDBStorage, *args: Any, **kwargs: Any) -> Any:
        return self._retry(name, method, args, kwargs)

    return call


for _name in RETRIED:
    setattr(ResilientRDBStorage, _name, _retried(_name))

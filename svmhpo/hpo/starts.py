"""A trial's start in one write: its sampled parameters, its attributes and its first heartbeat.

Optuna stores every ``suggest_*`` and every ``set_user_attr`` of a trial in a transaction of its
own. A member of a batch made eight of them before it trained (five parameters, the sampler's
attribute, seed and worker) and a ninth for its first heartbeat: on PostgreSQL each one a
commit and a round trip, K times per batch. Here they are kept in memory while the trial is
sampled (:func:`deferred`: the trial and the study write to a stand-in for their storage,
:class:`PendingWrites`, which passes every other call and every other trial's writes on)
and stored together at the end, in one transaction on Optuna's relational storage, through
Optuna's own per-row writes (the same checks: the trial still running, each parameter's
distribution compatible with the study's). Any other storage gets Optuna's calls one by one.

What a sampler or pruner reads is unchanged: the trial answers ``params`` and ``user_attrs``
from its own cache, as it does after a write, and a sampler's system attributes are read back
from the pending ones first.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage, RDBStorage

from svmhpo.hpo.handle import StudyHandle, trial_id
from svmhpo.hpo.resilience import retried

__all__ = ["PendingWrites", "deferred", "upsert_attrs", "write_start"]

#: Distributions already checked against the study, by (storage, study id, parameter): Optuna's
#: ``_CachedStorage`` keeps the same, so that each parameter's first row is read once per process.
_KNOWN: dict[tuple[int, int, str], BaseDistribution] = {}


class PendingWrites:
    """A trial's parameter and attribute writes, kept; every other call goes to ``storage``."""

    def __init__(self, storage: BaseStorage, tid: int) -> None:
        self._inner = storage
        self.tid = tid
        self.params: dict[str, tuple[float, BaseDistribution]] = {}
        self.user_attrs: dict[str, Any] = {}
        self.system_attrs: dict[str, Any] = {}

    def set_trial_param(self, tid: int, name: str, internal: float, distribution: BaseDistribution) -> None:
        if tid != self.tid:
            return self._inner.set_trial_param(tid, name, internal, distribution)
        self.params[name] = (internal, distribution)

    def set_trial_user_attr(self, tid: int, key: str, value: Any) -> None:
        if tid != self.tid:
            return self._inner.set_trial_user_attr(tid, key, value)
        json.dumps(value)  # refused now, as Optuna's write would, not at the end
        self.user_attrs[key] = value

    def set_trial_system_attr(self, tid: int, key: str, value: Any) -> None:
        if tid != self.tid:
            return self._inner.set_trial_system_attr(tid, key, value)
        json.dumps(value)
        self.system_attrs[key] = value

    def get_trial_system_attrs(self, tid: int) -> dict[str, Any]:
        stored = self._inner.get_trial_system_attrs(tid)
        return {**stored, **self.system_attrs} if tid == self.tid else stored

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@contextlib.contextmanager
def deferred(trial: optuna.Trial, study: StudyHandle, *, heartbeat: bool = False) -> Iterator[PendingWrites]:
    """Within the block, ``trial``'s parameter and attribute writes are kept; after it they are
    stored (with a first heartbeat if ``heartbeat``) in one write to the storage ``study`` was
    opened with. A block that raises stores nothing (its caller fails the trial)."""
    real, study_storage = trial.storage, study._storage
    pending = PendingWrites(real, trial_id(trial))
    # Optuna's Trial writes through its ``storage``, a sampler (TPE's constant liar) through the study's
    trial.storage = study._storage = pending
    try:
        yield pending
    finally:
        trial.storage, study._storage = real, study_storage
    write_start(study.storage, pending, study_id=study.id, heartbeat=heartbeat)


def write_start(storage: BaseStorage, pending: PendingWrites, *, study_id: int, heartbeat: bool = False) -> None:
    """Store ``pending`` (and a first heartbeat): one transaction on a relational storage.

    Raises ``UpdateFinishedTrialError`` when the trial is no longer running (failed as stale by
    another process during an outage), as the first of Optuna's writes would.
    """
    if isinstance(storage, RDBStorage):
        retried(storage, "write_start", lambda: _write_rdb(storage, pending, study_id, heartbeat))
        return
    for name, (internal, distribution) in pending.params.items():
        storage.set_trial_param(pending.tid, name, internal, distribution)
    for key, value in pending.user_attrs.items():
        storage.set_trial_user_attr(pending.tid, key, value)
    for key, value in pending.system_attrs.items():
        storage.set_trial_system_attr(pending.tid, key, value)
    if heartbeat:
        storage.record_heartbeat(pending.tid)


def _write_rdb(storage: RDBStorage, pending: PendingWrites, study_id: int, heartbeat: bool) -> None:
    """One transaction on Optuna's tables: the trial's state, then a multi-row insert per table.

    Optuna's per-row writes read the trial again before every row (twenty statements for a
    member's start); here it is read once. Parameters already stored stay (a retry after a lost
    answer); attributes are upserted as Optuna's ``set_trial_*_attr`` do (a re-queued trial
    already carries its original's).
    """
    import sqlalchemy
    from optuna.distributions import check_distribution_compatibility, distribution_to_json, json_to_distribution
    from optuna.storages._rdb import models

    tid = pending.tid
    trials, params = models.TrialModel, models.TrialParamModel
    with storage.engine.begin() as conn:
        state = conn.execute(sqlalchemy.select(trials.state).where(trials.trial_id == tid)).scalar_one_or_none()
        if state is None:
            raise KeyError(f"No trial with trial_id {tid} exists.")
        storage.check_trial_is_updatable(tid, state)  # UpdateFinishedTrialError
        upsert = _dialect_insert(conn)  # PostgreSQL, SQLite: rows already there are skipped by the insert
        if pending.params:
            there: set[str] = set()
            if upsert is None:
                query = sqlalchemy.select(params.param_name).where(params.trial_id == tid)
                there = set(conn.execute(query).scalars())
            rows = []
            for name, (internal, distribution) in pending.params.items():
                if name in there:
                    continue
                key = (id(storage), study_id, name)
                if key not in _KNOWN:  # the study's first row of this parameter, as Optuna checks it
                    query = (
                        sqlalchemy.select(params.distribution_json)
                        .join(trials, trials.trial_id == params.trial_id)
                        .where(trials.study_id == study_id, params.param_name == name)
                        .limit(1)
                    )
                    previous = conn.execute(query).scalar_one_or_none()
                    if previous is not None:
                        check_distribution_compatibility(json_to_distribution(previous), distribution)
                    _KNOWN[key] = distribution
                else:
                    check_distribution_compatibility(_KNOWN[key], distribution)
                rows.append(
                    {
                        "trial_id": tid,
                        "param_name": name,
                        "param_value": internal,
                        "distribution_json": distribution_to_json(distribution),
                    }
                )
            if rows and upsert is not None:
                conn.execute(
                    upsert(params).values(rows).on_conflict_do_nothing(index_elements=["trial_id", "param_name"])
                )
            elif rows:
                conn.execute(sqlalchemy.insert(params), rows)
        for model, attrs in (
            (models.TrialUserAttributeModel, pending.user_attrs),
            (models.TrialSystemAttributeModel, pending.system_attrs),
        ):
            if attrs:
                upsert_attrs(conn, model, tid, attrs)
        if heartbeat:
            beats = models.TrialHeartbeatModel
            if upsert is not None:
                conn.execute(upsert(beats).values(trial_id=tid).on_conflict_do_nothing(index_elements=["trial_id"]))
            elif conn.execute(sqlalchemy.select(beats.trial_id).where(beats.trial_id == tid)).first() is None:
                conn.execute(sqlalchemy.insert(beats).values(trial_id=tid))


def _dialect_insert(conn):
    """The dialect's ``insert`` with ``ON CONFLICT`` clauses (PostgreSQL, SQLite), or ``None``."""
    from sqlalchemy.dialects import postgresql, sqlite

    return {"postgresql": postgresql.insert, "sqlite": sqlite.insert}.get(conn.dialect.name)


def upsert_attrs(conn, model, tid: int, attrs: dict[str, Any]) -> None:
    """Set ``attrs`` on trial ``tid`` (insert, or replace a value stored under the same key)."""
    import sqlalchemy

    rows = [{"trial_id": tid, "key": key, "value_json": json.dumps(value)} for key, value in attrs.items()]
    upsert = _dialect_insert(conn)
    if upsert is not None:
        insert = upsert(model).values(rows)
        conn.execute(
            insert.on_conflict_do_update(
                index_elements=["trial_id", "key"], set_={"value_json": insert.excluded.value_json}
            )
        )
        return
    query = sqlalchemy.select(model.key).where(model.trial_id == tid, model.key.in_(list(attrs)))
    there = set(conn.execute(query).scalars())
    for row in rows:
        if row["key"] in there:
            update = sqlalchemy.update(model).where(model.trial_id == tid, model.key == row["key"])
            conn.execute(update.values(value_json=row["value_json"]))
    fresh = [row for row in rows if row["key"] not in there]
    if fresh:
        conn.execute(sqlalchemy.insert(model), fresh)

"""Intermediate values in bulk: the members of a batch report every epoch, the study hears it in one write.

Optuna writes each ``trial.report`` in a transaction of its own: at K members and E epochs a
batch made K·E of them, one round trip each (1,700 reports on the 200-trial digits study, and
several times the cost of a SQLite call on PostgreSQL). Here a batch's values are kept in memory
(:class:`ReportBuffer`, where the pruner reads them: see
:class:`~svmhpo.hpo.objective.MemberPruning`) and written for all its members at once
(:func:`write_intermediate_values`): when a member is pruned or told, and at most every
:data:`FLUSH_S` seconds while they run, so the dashboard still shows running curves.

On Optuna's relational storage the write is one transaction on its own tables (the trials'
states, the steps already there, then one multi-row insert); a test pins the schema it relies
on. Any other storage gets Optuna's per-value calls. Either way the values end up exactly where
``trial.report`` puts them, and a trial already finished (failed as stale by another process)
gets none, as ``trial.report`` would refuse them.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RDBStorage

from svmhpo.hpo.resilience import retried

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

__all__ = ["FLUSH_S", "ReportBuffer", "write_intermediate_values"]

#: Longest time a running member's reported values stay in memory only (the dashboard's lag).
FLUSH_S = 5.0


def write_intermediate_values(storage: BaseStorage, values: dict[int, dict[int, float]]) -> set[int]:
    """Write ``values`` (trial id → step → value) and return the ids of the trials already finished.

    A step already stored for a trial keeps its first value, as ``trial.report`` does; a
    finished trial gets nothing. On a relational storage this is one transaction, retried
    through an outage like every storage call (it is idempotent: steps already there are skipped).
    """
    values = {tid: steps for tid, steps in values.items() if steps}
    if not values:
        return set()
    if isinstance(storage, RDBStorage):
        return retried(storage, "write_intermediate_values", lambda: _write_rdb(storage, values))
    finished: set[int] = set()
    for tid, steps in values.items():
        for step, value in sorted(steps.items()):
            try:
                storage.set_trial_intermediate_value(tid, step, value)
            except UpdateFinishedTrialError:
                finished.add(tid)
                break
    return finished


def _write_rdb(storage: RDBStorage, values: dict[int, dict[int, float]]) -> set[int]:
    import sqlalchemy
    from optuna.storages._rdb import models

    trials, stored = models.TrialModel, models.TrialIntermediateValueModel
    with storage.engine.begin() as conn:
        query = sqlalchemy.select(trials.trial_id, trials.state).where(trials.trial_id.in_(list(values)))
        states = {tid: state for tid, state in conn.execute(query)}
        finished = {tid for tid in values if tid not in states or states[tid].is_finished()}
        live = [tid for tid in values if tid not in finished]
        if not live:
            return finished
        query = sqlalchemy.select(stored.trial_id, stored.step).where(stored.trial_id.in_(live))
        there = {(tid, step) for tid, step in conn.execute(query)}
        rows = []
        for tid in live:
            for step, value in sorted(values[tid].items()):
                if (tid, step) not in there:
                    number, kind = stored.intermediate_value_to_stored_repr(value)
                    rows.append(
                        {"trial_id": tid, "step": step, "intermediate_value": number, "intermediate_value_type": kind}
                    )
        if rows:
            conn.execute(sqlalchemy.insert(stored), rows)
    return finished


class ReportBuffer:
    """The values a batch's members reported that the study has not heard yet, by trial id."""

    def __init__(self, storage: BaseStorage, every_s: float = FLUSH_S) -> None:
        self.storage = storage
        self.every_s = every_s
        self.pending: dict[int, dict[int, float]] = {}
        self._since = time.monotonic()

    def add(self, tid: int, step: int, value: float) -> None:
        """Keep ``value`` for ``step`` of trial ``tid`` (the first value of a step wins, as in Optuna)."""
        self.pending.setdefault(tid, {}).setdefault(step, float(value))

    def due(self) -> bool:
        """Whether values have waited :attr:`every_s` seconds since the last write of them all."""
        return bool(self.pending) and time.monotonic() - self._since >= self.every_s

    def flush(self, tids: list[int] | None = None) -> set[int]:
        """Write the pending values of ``tids`` (all when ``None``) in one go; return the trials
        among them found already finished. Values that could not be written are dropped: their
        trial cannot be told either (the database is gone past its outage limit)."""
        chosen = list(self.pending) if tids is None else [tid for tid in tids if tid in self.pending]
        batch = {tid: self.pending.pop(tid) for tid in chosen}
        if tids is None:
            self._since = time.monotonic()
        return write_intermediate_values(self.storage, batch)

"""Telling a batch's members in one write: the members the pruner stops at one epoch, and the
ones that train to the end.

Optuna's ``study.tell`` reads the trial, writes its state and value, and reads it again: three
transactions per trial, and a batch of K members told at its end made 3·K of them (the largest
share of what the digits study committed on PostgreSQL after the bulk reports). :func:`tell_many`
decides each state and value as ``study.tell`` does (a NaN value fails the trial; a pruned trial
takes its last intermediate value), hands each trial to the sampler's ``after_trial`` as Optuna
does, writes them all in one transaction on Optuna's tables (a trial already finished by another
process left as it is, as ``skip_if_finished`` leaves it; the schema is pinned by a test), and
reads them back in one read through the study's cache. Any other storage gets ``study.tell`` per
trial.
"""

from __future__ import annotations

import copy
import datetime
import math
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from svmhpo.hpo.handle import StudyHandle, trial_id
from svmhpo.hpo.resilience import retried
from svmhpo.hpo.starts import upsert_attrs

__all__ = ["as_running", "tell_many"]


def tell_many(
    study: StudyHandle,
    told: Sequence[tuple[optuna.Trial, TrialState | None, float | None]],
    curves: Mapping[int, Mapping[int, float]] | None = None,
    started: datetime.datetime | None = None,
    user_attrs: Mapping[int, Mapping[str, Any]] | None = None,
) -> list[FrozenTrial]:
    """Tell each ``(trial, state, value)`` (``state`` ``None``: COMPLETE with ``value``, or FAIL
    if it is NaN; PRUNED takes the trial's last intermediate value from ``curves``, by trial id)
    and return the trials as stored, in order. Their intermediate values must already be stored.

    ``started``: when their fit started, stored as their start. Optuna's start is when a trial
    was asked, and a batch's members are asked one after another before they train together: the
    first one's duration counted every later one's sampling, the last one's hardly any of its
    training.

    ``user_attrs`` (by trial id): attributes set on the trials in the same write (a
    cross-validated trial's fold scores).
    """
    if not told:
        return []
    user_attrs = user_attrs or {}
    if not isinstance(study.storage, RDBStorage):
        for trial, _, _ in told:
            for key, value in user_attrs.get(trial_id(trial), {}).items():
                trial.set_user_attr(key, value)
        return [study.tell(trial, value, state=state, skip_if_finished=True) for trial, state, value in told]
    curves = curves or {}
    rows: list[tuple[int, TrialState, list[float] | None]] = []
    for trial, state, value in told:
        tid = trial_id(trial)
        state, values = _decided(state, value, curves.get(tid, {}))
        frozen = as_running(trial, curves.get(tid, {}))
        study.sampler.after_trial(optuna.pruners._filter_study(study, frozen), frozen, state, values)
        rows.append((tid, state, values))
    retried(study.storage, "tell_many", lambda: _write(study.storage, rows, started, user_attrs))
    study._thread_local.cached_all_trials = None  # as Optuna's tell: the trials' cache is stale now
    stored = {t.number: t for t in study.get_trials(deepcopy=False)}
    return [copy.deepcopy(stored[trial.number]) for trial, _, _ in told]


def _decided(state: TrialState | None, value: float | None, curve: Mapping[int, float]) -> tuple:
    """The state and values ``study.tell`` would store for ``state`` and ``value``."""
    if state is None:
        if value is None or math.isnan(float(value)):
            return TrialState.FAIL, None
        return TrialState.COMPLETE, [float(value)]
    if state == TrialState.PRUNED:
        if curve:
            last = curve[max(curve)]
            if not math.isnan(last):
                return state, [float(last)]
        return state, None
    return state, None if value is None else [float(value)]


def as_running(
    trial: optuna.Trial, curve: Mapping[int, float], system_attrs: Mapping[str, Any] | None = None
) -> FrozenTrial:
    """``trial`` as it stands, still RUNNING, with ``curve`` as its intermediate values, without
    reading it back: as ``study.tell`` hands it to the sampler's ``after_trial`` and
    ``Trial.should_prune`` to the pruner."""
    return FrozenTrial(
        number=trial.number,
        state=TrialState.RUNNING,
        value=None,
        datetime_start=trial.datetime_start,
        datetime_complete=None,
        params=trial.params,
        distributions=trial.distributions,
        user_attrs=trial.user_attrs,
        system_attrs={} if system_attrs is None else system_attrs,  # type: ignore[arg-type]
        intermediate_values=dict(curve),
        trial_id=trial_id(trial),
    )


def _write(
    storage: RDBStorage,
    rows: list[tuple[int, TrialState, list[float] | None]],
    started: datetime.datetime | None,
    user_attrs: Mapping[int, Mapping[str, Any]],
) -> None:
    """One transaction on Optuna's tables: the trials' states, their values (one insert), their new
    states (one update per state). A trial already finished (failed as stale elsewhere, or told
    by this write before a retry) is left as it is."""
    import sqlalchemy
    from optuna.storages._rdb import models

    trials, stored = models.TrialModel, models.TrialValueModel
    with storage.engine.begin() as conn:
        query = sqlalchemy.select(trials.trial_id, trials.state).where(trials.trial_id.in_([r[0] for r in rows]))
        if conn.dialect.name != "sqlite":
            query = query.with_for_update()
        states = {tid: state for tid, state in conn.execute(query)}
        missing = [tid for tid, _, _ in rows if tid not in states]
        if missing:
            raise KeyError(f"No trial with trial_id {missing[0]} exists.")
        live = [(tid, state, values) for tid, state, values in rows if not states[tid].is_finished()]
        values = []
        for tid, _, told in live:
            for objective, value in enumerate(told or ()):
                number, kind = stored.value_to_stored_repr(value)
                values.append({"trial_id": tid, "objective": objective, "value": number, "value_type": kind})
        if values:
            conn.execute(sqlalchemy.insert(stored), values)
        for tid, _, _ in live:
            if user_attrs.get(tid):
                upsert_attrs(conn, models.TrialUserAttributeModel, tid, dict(user_attrs[tid]))
        now = datetime.datetime.now()
        for state in {state for _, state, _ in live}:
            ids = [tid for tid, s, _ in live if s == state]
            update = sqlalchemy.update(trials).where(trials.trial_id.in_(ids))
            times = {"datetime_complete": now} | ({"datetime_start": started} if started else {})
            conn.execute(update.values(state=state, **times))

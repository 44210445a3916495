"""Intermediate values in bulk (``svmhpo.hpo.reports``) and pruning decisions from memory.

The bulk write goes to Optuna's own tables, so its schema is pinned here; the values must read
back exactly as ``trial.report`` leaves them, on a real SQLite file and the real PostgreSQL; and
the pruner's answer for a batch member, from the curve in memory, must be the answer Optuna's
``trial.report`` + ``trial.should_prune`` give on the same evidence, member by member.
"""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from svmhpo.hpo.config import load_config
from svmhpo.hpo.objective import BatchObjective, Member, MemberPruning
from svmhpo.hpo.reports import write_intermediate_values
from svmhpo.hpo.runner import run_trials
from svmhpo.hpo.storage import open_storage
from svmhpo.hpo.studies import start_study
from svmhpo.testing import NoOpTrainer

CURVE = {0: 0.5, 1: math.nan, 2: math.inf, 3: -math.inf, 4: 0.25}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def storage(request, tmp_path: Path):
    if request.param == "sqlite":
        return open_storage(f"sqlite:///{tmp_path / 'r.db'}")
    return open_storage(request.getfixturevalue("pg_url"))


def test_optunas_tables_are_what_the_bulk_write_expects(storage) -> None:
    """Pins the schema the bulk write relies on (a new Optuna that changes it fails here first)."""
    inspector = sqlalchemy.inspect(storage.engine)
    columns = {c["name"] for c in inspector.get_columns("trial_intermediate_values")}
    assert {"trial_id", "step", "intermediate_value", "intermediate_value_type"} <= columns
    assert {"trial_id", "state"} <= {c["name"] for c in inspector.get_columns("trials")}
    uniques = [set(u["column_names"]) for u in inspector.get_unique_constraints("trial_intermediate_values")]
    assert {"trial_id", "step"} in uniques


def _same(a: dict[int, float], b: dict[int, float]) -> bool:
    return a.keys() == b.keys() and all(a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in a)


def test_bulk_values_read_back_as_trial_report_leaves_them(storage) -> None:
    study = optuna.create_study(storage=storage, direction="maximize")
    reported, bulk, done = study.ask(), study.ask(), study.ask()
    for step, value in CURVE.items():
        reported.report(value, step)
    assert write_intermediate_values(storage, {bulk._trial_id: dict(CURVE)}) == set()
    # written again (a retry after a lost answer, or a later flush): the first value of a step stays
    assert write_intermediate_values(storage, {bulk._trial_id: {0: 0.9, 5: 0.75}}) == set()
    reported.report(0.75, 5)
    study.tell(done, 0.5)
    assert write_intermediate_values(storage, {done._trial_id: {0: 0.1}, bulk._trial_id: {}}) == {done._trial_id}
    ours, optunas = storage.get_trial(bulk._trial_id), storage.get_trial(reported._trial_id)
    assert _same(ours.intermediate_values, optunas.intermediate_values)
    assert storage.get_trial(done._trial_id).intermediate_values == {}  # a finished trial takes no values


def _evidence(config, url: str) -> optuna.Study:
    """A study with eight finished trials whose curves the pruner weighs (asked as a study would)."""
    from svmhpo.hpo.space import make_pruner

    study = start_study(config, url)
    study.pruner = make_pruner(config)
    for i in range(8):
        trial = study.ask()
        for step in range(6):
            trial.report(0.4 + 0.07 * ((3 * i) % 8) + 0.01 * step, step)
            if trial.should_prune():
                study.tell(trial, state=TrialState.PRUNED)
                break
        else:
            study.tell(trial, 0.4 + 0.07 * ((3 * i) % 8) + 0.05)
    return study


@pytest.mark.parametrize("pruner", ["median", "hyperband"])
def test_a_members_decision_from_memory_is_optunas(tmp_path: Path, study_config, pruner: str) -> None:
    """Two copies of one study (same name, same trials, two files): members decided from memory in
    one, the same curves through ``trial.report`` + ``should_prune`` in the other. Hyperband also
    writes each trial's rungs, which later decisions read: each copy keeps its own."""
    config = load_config(study_config("decide", trials=60, epochs=6, warm=False, pruner=pruner))
    ours, optunas = (
        _evidence(config, f"sqlite:///{tmp_path / 'a.db'}"),
        _evidence(config, f"sqlite:///{tmp_path / 'b.db'}"),
    )
    curves = [[0.3 + 0.09 * ((5 * m) % 7) + 0.02 * s for s in range(6)] for m in range(7)]
    members = [ours.ask() for _ in curves]
    twins = [optunas.ask() for _ in curves]
    watch = MemberPruning(ours, [Member(t, None, 1) for t in members])  # type: ignore[arg-type]
    decided, expected = [], []
    live = set(range(len(curves)))
    for step in range(6):
        for m in sorted(live):
            watch.curves.setdefault(m, {})[step] = curves[m][step]
            decided.append(watch.should_prune(m))
            twins[m].report(curves[m][step], step)
            expected.append(twins[m].should_prune())
            if expected[-1]:
                live.discard(m)
    assert decided == expected
    assert any(decided) and not all(decided)  # the evidence made both answers


def test_a_batch_writes_its_values_in_one_go_and_every_curve_is_whole(tmp_path: Path, study_config) -> None:
    url = f"sqlite:///{tmp_path / 'bulk.db'}"
    config = load_config(study_config("bulk", trials=24, epochs=6, warm=False, batch_trials=8, pruner="none"))
    study = start_study(config, url)
    inserts = []

    def count(conn, cursor, statement, *args) -> None:
        if statement.startswith("INSERT INTO trial_intermediate_values"):
            inserts.append(statement)

    sqlalchemy.event.listen(study.storage.engine, "before_cursor_execute", count)
    objective = BatchObjective(config, None, batch_trials=8, fit_fn=NoOpTrainer(0.0))
    counts = run_trials(study, objective)
    assert counts.finished == 24
    assert len(inserts) == 3  # one write per batch of 8 members × 6 epochs (Optuna's way: 144)
    for trial in study.get_trials(states=(TrialState.COMPLETE,)):
        assert sorted(trial.intermediate_values) == list(range(6))

"""The budget lock on a real PostgreSQL server: held across a batch's asks, lost with its
connection when the server restarts, and taken again before the next ask (``HeldLock.ensure``)."""

from __future__ import annotations

import optuna
import psycopg
import pytest

from svmhpo.hpo.liveness import ADVISORY_LOCK_CLASS, budget_lock
from svmhpo.hpo.resilience import watching_outages
from svmhpo.hpo.studies import read_study


def _try_lock(dsn: str, study_id: int) -> bool:
    """Whether another session can take the study's budget lock now (and then lets it go)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        took = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (ADVISORY_LOCK_CLASS["budget"], study_id))
        got = bool(took.fetchone()[0])
        if got:
            conn.execute("SELECT pg_advisory_unlock(%s, %s)", (ADVISORY_LOCK_CLASS["budget"], study_id))
        return got


@pytest.mark.postgres
def test_a_budget_lock_lost_in_a_restart_is_taken_again_before_the_next_ask(pg_server) -> None:
    server, url = pg_server
    optuna.create_study(storage=url, study_name="lock", direction="maximize")
    study = read_study("lock", url)
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with watching_outages(lambda line: None), budget_lock(study) as lock:
        assert lock and lock.ensure() and not _try_lock(dsn, study.id)  # held
        server.stop()
        server.start()
        assert _try_lock(dsn, study.id)  # the restart freed it: another worker could ask beside this one
        assert lock.ensure()  # taken again, on a new connection
        assert not _try_lock(dsn, study.id)
    assert _try_lock(dsn, study.id)  # and let go at the end of the block

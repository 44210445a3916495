"""Workers through a transaction-mode connection pooler: PgBouncer, the answer once a fleet
outgrows the server's ``max_connections``.

Through PgBouncer in transaction mode each transaction may run on another server connection.
Two things broke there: psycopg's server-side prepared statements ("prepared statement "_pg3_0"
already exists" on the first study created), and the study's locks, whose waiters queued on the
server each held a server connection, so that with more waiters than the pool held the holder
could never get one and every worker stood still. ``?pooler=transaction`` in the URL turns both
off (see :func:`svmhpo.hpo.storage.transaction_pooler`). The test sends three times as many
workers as the pool has server connections through a real PgBouncer to the real server.
"""

from __future__ import annotations

import pytest
from conftest import PGBOUNCER_POOL

from bench.many_workers import one
from svmhpo.errors import StorageError
from svmhpo.hpo.storage import open_storage

pytestmark = pytest.mark.postgres

WORKERS = 3 * PGBOUNCER_POOL


def test_workers_through_pgbouncer_fill_the_budget_exactly(pgbouncer: str) -> None:
    result = one(f"{pgbouncer}?pooler=transaction", workers=WORKERS, trials=60)
    assert result["worker_exit_codes"] == [0], result["errors"]  # the last one refit and stored the model there
    assert result["finished"] == 60, result
    assert result["running_or_waiting"] == 0 and result["failed"] == 0, result


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql+psycopg://u@127.0.0.1:1/db?pooler=session", "pooler=session is not understood"),
        ("sqlite:////tmp/x.db?pooler=transaction", "pooler=transaction is not understood"),
    ],
)
def test_a_pooler_other_than_transaction_is_one_line(url: str, message: str) -> None:
    with pytest.raises(StorageError, match=message):
        open_storage(url)

"""Many workers on one PostgreSQL study at once: the small version of ``bench.many_workers``.

Eight real worker processes (svmhpo's own, with the no-op model side) are started together on one
study on the real server; the study ends with exactly its budget, nothing RUNNING or WAITING, no
failed trial and every worker exiting 0, and the bench's figures come out measured.
"""

from __future__ import annotations

import pytest

from bench.many_workers import one

pytestmark = pytest.mark.postgres


def test_eight_workers_started_together_fill_the_budget_exactly(pg_url: str) -> None:
    result = one(pg_url, workers=8, trials=120)
    assert result["finished"] == 120, result
    assert result["running_or_waiting"] == 0 and result["failed"] == 0, result
    assert result["worker_exit_codes"] == [0], result["errors"]
    assert result["peak_connections"] >= 8  # every worker was connected at once
    assert result["round_trips_per_trial"] > 0 and result["ask_p99_ms"] > 0 and result["tell_p99_ms"] > 0

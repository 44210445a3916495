"""How many workers one PostgreSQL holds: N no-op workers on one study, trials of 10 reports each.

For each worker count, a fresh study on the PostgreSQL server (one trial per fit, the median
pruner, heartbeats as configured by default, no warm start) gets ``--trials`` trials from N
worker processes started together. Each worker is svmhpo's own (``svmhpo worker`` with the no-op
model side of :mod:`svmhpo.testing`: the study machinery and the database are all that work)
and also counts every SQL statement it sends (a SQLAlchemy ``before_cursor_execute`` listener)
and times every ask and tell (a batch's members told together are one tell). The driver polls
the server's connection count
(``pg_stat_activity``) while they run, then reads the study back.

Printed per worker count: trials/s, p50/p99 of an ask and of a tell, SQL round trips per
finished trial, the peak connection count; and the checks: exactly the budget finished, no trial
RUNNING or WAITING, no worker that exited non-zero.

    python -m bench.many_workers [--workers 8 16 32] [--trials 2000] [--storage postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy

from svmhpo.hpo.storage import POOLER_PARAM, open_storage

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
ROOT = Path(__file__).resolve().parent.parent
REPORTS = 10

CONFIG = """
[study]
name = "{name}"
trials = {trials}
heartbeat_interval = 10
grace_period = 30

[data]
source = "digits"

[training]
epochs = {reports}
batch_trials = 1

[warm_start]
enabled = false
"""


def worker(name: str, url: str, out: str) -> int:
    """One instrumented no-op worker: svmhpo's worker, its SQL statements counted, its asks and tells timed."""
    import optuna
    import sqlalchemy.event

    from svmhpo.cli import main
    from svmhpo.hpo import tells
    from svmhpo.testing import install_noop_trainer

    statements = [0]
    sqlalchemy.event.listen(
        sqlalchemy.engine.Engine, "before_cursor_execute", lambda *a: statements.__setitem__(0, statements[0] + 1)
    )
    times: dict[str, list[float]] = {"ask": [], "tell": []}

    def timed(kind: str, method):
        def call(self, *args, **kwargs):
            start = time.perf_counter()
            try:
                return method(self, *args, **kwargs)
            finally:
                times[kind].append(time.perf_counter() - start)

        return call

    optuna.Study.ask = timed("ask", optuna.Study.ask)
    optuna.Study.tell = timed("tell", optuna.Study.tell)
    tells.tell_many = timed("tell", tells.tell_many)  # the members a batch tells together: one call
    install_noop_trainer()
    code = main(["worker", "--study-name", name, "--storage", url, "--quiet"])
    Path(out).write_text(json.dumps({"statements": statements[0], **times}))
    return code


def _connections(engine: sqlalchemy.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            sqlalchemy.text("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
        ).scalar_one()


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else (values or [0])[0]


def one(url: str, workers: int, trials: int) -> dict:
    """Run one study with ``workers`` workers; return its figures and checks."""
    import optuna
    from optuna.trial import TrialState

    name = f"bench-many-{workers}-{uuid.uuid4().hex[:6]}"
    # a connection per poll: psycopg would otherwise prepare the repeated count, which a
    # transaction-mode pooler (PgBouncer) cannot keep
    plain = sqlalchemy.make_url(url).difference_update_query([POOLER_PARAM])  # svmhpo's own parameter
    engine = sqlalchemy.create_engine(plain, poolclass=sqlalchemy.pool.NullPool)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "c.toml"
        config.write_text(CONFIG.format(name=name, trials=trials, reports=REPORTS))
        env = dict(os.environ, OMP_NUM_THREADS="1")
        subprocess.run(
            [sys.executable, "-m", "svmhpo.testing", "init", "--config", str(config), "--storage", url],
            check=True, capture_output=True, cwd=ROOT, env=env,
        )  # fmt: skip
        outs = [Path(tmp) / f"w{i}.json" for i in range(workers)]
        start = time.perf_counter()
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "bench.many_workers", "--worker", name, url, str(out)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for out in outs
        ]
        peak = 0
        try:
            while any(p.poll() is None for p in procs):
                peak = max(peak, _connections(engine))
                time.sleep(0.5)
        finally:  # a failed poll (the database or pooler gone) leaves no worker behind
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        seconds = time.perf_counter() - start
        codes = [p.returncode for p in procs]
        stats = [json.loads(out.read_text()) for out in outs if out.exists()]
    storage = open_storage(url)
    study = optuna.load_study(study_name=name, storage=storage)
    states = [t.state for t in study.get_trials(deepcopy=False)]
    finished = sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states)
    asks = [x for s in stats for x in s["ask"]]
    tells = [x for s in stats for x in s["tell"]]
    result = {
        "workers": workers,
        "trials": trials,
        "seconds": round(seconds, 1),
        "trials_per_s": round(finished / seconds, 2),
        "ask_p50_ms": round(1000 * _percentile(asks, 50), 1),
        "ask_p99_ms": round(1000 * _percentile(asks, 99), 1),
        "tell_p50_ms": round(1000 * _percentile(tells, 50), 1),
        "tell_p99_ms": round(1000 * _percentile(tells, 99), 1),
        "round_trips_per_trial": round(sum(s["statements"] for s in stats) / max(finished, 1), 1),
        "peak_connections": peak,
        "finished": finished,
        "running_or_waiting": sum(s in (TrialState.RUNNING, TrialState.WAITING) for s in states),
        "failed": sum(s == TrialState.FAIL for s in states),
        "worker_exit_codes": sorted(set(codes)),
        "errors": [p.stderr.read()[-500:] for p in procs if p.returncode],
    }
    optuna.delete_study(study_name=name, storage=storage)
    engine.dispose()
    return result


def main(workers: list[int], trials: int, url: str) -> list[dict]:
    """Every worker count in turn; print one line each and return the figures."""
    results = []
    for n in workers:
        r = one(url, n, trials)
        results.append(r)
        ok = r["finished"] == trials and r["running_or_waiting"] == 0 and r["worker_exit_codes"] == [0]
        print(
            f"{n} workers, {trials} trials × {REPORTS} reports: {r['trials_per_s']} trials/s ({r['seconds']} s); "
            f"ask p50 {r['ask_p50_ms']} ms p99 {r['ask_p99_ms']} ms; tell p50 {r['tell_p50_ms']} ms "
            f"p99 {r['tell_p99_ms']} ms; {r['round_trips_per_trial']} SQL round trips per trial; "
            f"peak {r['peak_connections']} connections; finished {r['finished']}, failed {r['failed']}, "
            f"left running/waiting {r['running_or_waiting']}: {'OK' if ok else 'FAILED'}",
            flush=True,
        )
    return results


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        sys.exit(worker(*sys.argv[2:5]))
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--storage", default=PG)
    a = parser.parse_args()
    main(a.workers, a.trials, a.storage)

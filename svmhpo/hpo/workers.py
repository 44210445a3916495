"""Local worker processes: ``svmhpo run --jobs K`` starts K ``svmhpo worker`` processes on one study.

They share the study through its storage, exactly as workers on other machines do; nothing but
the storage connects them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable

import optuna

from svmhpo.hpo.storage import open_storage
from svmhpo.hpo.studies import Counts, count_trials

__all__ = ["WORKER_MODULE", "run_workers"]

#: The module the workers run as ``python -m``; :mod:`svmhpo.testing` swaps in its own.
WORKER_MODULE = "svmhpo"


def run_workers(
    name: str,
    url: str,
    jobs: int,
    *,
    timeout: float | None = None,
    on_poll: Callable[[Counts], None] | None = None,
    poll_s: float = 1.0,
) -> list[int]:
    """Start ``jobs`` local ``svmhpo worker`` processes on the study and wait for them.

    Each gets a share of the CPU threads and its own sampler seed. Returns their exit codes.
    """
    threads = max(1, (os.cpu_count() or 1) // jobs)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), SVMHPO_STORAGE=url)
    command = [sys.executable, "-m", WORKER_MODULE, "worker", "--study-name", name, "--quiet"]
    if timeout is not None:
        command += ["--timeout", str(timeout)]
    procs = [subprocess.Popen([*command, "--worker-index", str(i)], env=env) for i in range(jobs)]
    study = optuna.load_study(study_name=name, storage=open_storage(url))
    try:
        while any(p.poll() is None for p in procs):
            if on_poll is not None:
                on_poll(count_trials(study))
            time.sleep(poll_s)
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        raise
    finally:
        for p in procs:
            p.wait()
    if on_poll is not None:
        on_poll(count_trials(study))
    return [p.returncode for p in procs]

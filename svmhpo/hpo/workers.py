"""Local worker processes: ``svmhpo run --jobs K`` starts K ``svmhpo worker`` processes on one study.

They share the study through its storage, exactly as workers on other machines do; nothing but
the storage connects them.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable

from optuna.trial import FrozenTrial, TrialState

from svmhpo.errors import SvmhpoError
from svmhpo.hpo.studies import Counts, count_trials, read_study

__all__ = ["PARENT_ENV", "WORKER_MODULE", "follow_parent", "run_workers", "visible_gpus"]

#: The module the workers run as ``python -m``; :mod:`svmhpo.testing` swaps in its own.
WORKER_MODULE = "svmhpo"
_DONE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
#: Set by :func:`run_workers` in each worker's environment: the process id of the parent it serves.
PARENT_ENV = "SVMHPO_PARENT_PID"
_PR_SET_PDEATHSIG = 1


def follow_parent() -> None:
    """In a worker that :func:`run_workers` started, be interrupted when the parent dies.

    The kernel sends this process SIGINT when its parent exits, even by SIGKILL (Linux's
    parent-death signal), so the worker fails its running trials and exits as on Ctrl-C instead
    of running on under PID 1. A parent already gone by now is noticed too. Elsewhere than Linux,
    or outside ``run_workers``, this does nothing.
    """
    parent = os.environ.get(PARENT_ENV)
    if not parent or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGINT)
    if os.getppid() != int(parent):  # it died before the signal was armed
        os.kill(os.getpid(), signal.SIGINT)


def visible_gpus(spec: str) -> list[str]:
    """The GPUs ``spec`` names: ``all`` (every GPU this process sees), a count ``N`` (the first N),
    or a list of ids ``0,2``. Ids are as ``CUDA_VISIBLE_DEVICES`` names them."""
    spec = spec.strip()
    if spec == "all" or spec.isdigit():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is not None:
            ids = [g for g in visible.split(",") if g.strip()]
        else:
            import torch

            ids = [str(i) for i in range(torch.cuda.device_count())]
        if spec != "all":
            if int(spec) > len(ids):
                raise SvmhpoError(f"{spec} GPUs asked for, {len(ids)} visible")
            ids = ids[: int(spec)]
        if not ids:
            raise SvmhpoError("no GPU is visible to this process (CUDA_VISIBLE_DEVICES, driver or container runtime)")
        return ids
    ids = [g.strip() for g in spec.split(",") if g.strip()]
    if not ids:
        raise SvmhpoError(f"GPUs {spec!r}: expected all, a count, or ids such as 0,1")
    return ids


def run_workers(
    name: str,
    url: str,
    jobs: int,
    *,
    devices: list[str] | None = None,
    timeout: float | None = None,
    on_poll: Callable[[Counts], None] | None = None,
    on_trial: Callable[[FrozenTrial], None] | None = None,
    poll_s: float = 1.0,
    batch_trials: int | None = None,
) -> list[int]:
    """Start ``jobs`` local ``svmhpo worker`` processes on the study and wait for them.

    Each gets a share of the CPU threads; with ``devices`` (one GPU id
    per process) each sees only its own GPU. ``batch_trials`` overrides the study's for each
    worker. ``on_poll`` gets the study's counts every ``poll_s`` seconds, ``on_trial`` each trial
    that finished since the last poll. Returns their exit codes.
    """
    if devices is not None and len(devices) != jobs:
        raise ValueError(f"{jobs} workers but {len(devices)} devices")
    threads = max(1, (os.cpu_count() or 1) // jobs)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), SVMHPO_STORAGE=url, **{PARENT_ENV: str(os.getpid())})
    command = [sys.executable, "-m", WORKER_MODULE, "worker", "--study-name", name, "--quiet"]
    if timeout is not None:
        command += ["--timeout", str(timeout)]
    if batch_trials is not None:
        command += ["--batch-trials", str(batch_trials)]
    procs = [
        subprocess.Popen(
            command,
            env=env if devices is None else dict(env, CUDA_VISIBLE_DEVICES=devices[i]),
        )
        for i in range(jobs)
    ]
    study = read_study(name, url)
    seen = {t.number for t in study.get_trials(deepcopy=False, states=_DONE)}

    def poll() -> None:
        if on_trial is not None:
            for t in study.get_trials(deepcopy=False, states=_DONE):
                if t.number not in seen:
                    seen.add(t.number)
                    on_trial(t)
        if on_poll is not None:
            on_poll(count_trials(study))

    try:
        while any(p.poll() is None for p in procs):
            poll()
            time.sleep(poll_s)
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        raise
    finally:
        for p in procs:
            p.wait()
    poll()
    return [p.returncode for p in procs]

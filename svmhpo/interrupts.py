"""Ctrl-C, noted as well as raised.

Python raises ``KeyboardInterrupt`` wherever the main thread happens to be when SIGINT arrives.
Two places lose it: a garbage-collector callback or ``__del__`` (Python prints "Exception
ignored in ..." with a traceback and carries on, so a study ran to its end after a Ctrl-C; within
:func:`noting_ctrl_c` that print is silenced, as the interrupt is noted), and code that catches
it to clean up and then goes on in a plain block (Optuna fails an interrupted trial after its
``except`` block, where the interrupt is no longer visible). Within :func:`noting_ctrl_c`, a
Ctrl-C is also noted: :func:`raise_if_lost` re-raises a lost one at the next safe point (each
training step, each trial), and :func:`ctrl_c_pressed` tells the database retries to stop waiting.
Within :func:`ctrl_c_deferred` (asking Optuna for a trial, which creates it before returning it),
the interrupt waits for the end of the block, so that the caller holds what it must clean up.
This module imports neither torch nor Optuna.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["Terminated", "ctrl_c_deferred", "ctrl_c_pressed", "noting_ctrl_c", "raise_if_lost"]


class Terminated(KeyboardInterrupt):
    """SIGTERM within :func:`noting_ctrl_c`: the host is being taken away (``docker stop``, a pod
    evicted, a spot instance reclaimed). It unwinds exactly as Ctrl-C does (every handler of
    ``KeyboardInterrupt`` fails what it holds), but the running trials are put back in the queue
    for other workers, and the command exits 0."""


_pressed = threading.Event()
_deferring = 0  # nesting depth of ctrl_c_deferred blocks (the handler runs in the main thread)
_deferred = False
_signal: type[KeyboardInterrupt] = KeyboardInterrupt  # what the last noted signal raises


@contextlib.contextmanager
def noting_ctrl_c() -> Iterator[None]:
    """Within the block (main thread only), a Ctrl-C raises ``KeyboardInterrupt`` as always, and is
    noted; SIGTERM raises :class:`Terminated` (a ``KeyboardInterrupt``), noted the same way."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    previous_term = signal.getsignal(signal.SIGTERM)

    def on_ctrl_c(signum: int, frame: Any) -> Any:
        global _deferred
        _pressed.set()
        if _deferring:
            _deferred = True
            return None
        if callable(previous):
            return previous(signum, frame)
        if previous != signal.SIG_IGN:
            raise KeyboardInterrupt
        return None

    def on_sigterm(signum: int, frame: Any) -> Any:
        global _deferred, _signal
        _signal = Terminated
        _pressed.set()
        if _deferring:
            _deferred = True
            return None
        raise Terminated

    previous_hook = sys.unraisablehook

    def quiet_when_noted(unraisable: Any) -> None:
        # "Exception ignored in <gc callback>" and its traceback are noise: the interrupt is
        # noted and raise_if_lost raises it at the next safe point
        if not (isinstance(unraisable.exc_value, KeyboardInterrupt) and _pressed.is_set()):
            previous_hook(unraisable)

    global _signal
    _signal = KeyboardInterrupt
    signal.signal(signal.SIGINT, on_ctrl_c)
    signal.signal(signal.SIGTERM, on_sigterm)
    sys.unraisablehook = quiet_when_noted
    try:
        yield
    finally:
        global _deferred
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)
        sys.unraisablehook = previous_hook
        _pressed.clear()
        _deferred = False


@contextlib.contextmanager
def ctrl_c_deferred() -> Iterator[None]:
    """Within the block, a Ctrl-C raises ``KeyboardInterrupt`` only when the block ends."""
    global _deferring, _deferred
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
    if not _deferring and _deferred:
        _deferred = False
        raise _signal


def ctrl_c_pressed() -> bool:
    """Whether Ctrl-C was pressed within the current :func:`noting_ctrl_c` block."""
    return _pressed.is_set()


def raise_if_lost() -> None:
    """Raise ``KeyboardInterrupt`` if Ctrl-C was pressed: call it only where no interrupt is being handled."""
    if _pressed.is_set():
        raise _signal

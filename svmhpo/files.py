"""Files svmhpo writes for a user: whole or not at all, and one line when they cannot be written.

A report, an exported or saved model and a study's model artifact are written to a temporary
file in the target's own folder, flushed to disk, then renamed over the target: a reader (a
browser, ``svmhpo predict``, the dashboard) sees the old file or the new one, never half of
one, and a kill or a full disk mid-write leaves the old file as it was. A folder that cannot be
created or written (read-only, full, ``/proc``, a file in the way) is one
:class:`~svmhpo.errors.OutputError` line naming it. This module imports neither torch nor Optuna.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from svmhpo.errors import OutputError

__all__ = ["TEMP_PREFIX", "ensure_folder", "write_atomically"]

#: Temporary files start with this; a kill can leave one behind, hidden, beside its target.
TEMP_PREFIX = ".svmhpo-tmp-"


def _reason(exc: OSError) -> str:
    return exc.strerror or exc.__class__.__name__


def ensure_folder(folder: str | Path, what: str = "folder") -> Path:
    """Create ``folder`` (and its parents) if needed; one :class:`OutputError` line if it cannot be."""
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        reason = "a file of that name is in the way"
        raise OutputError(f"{folder}: cannot create the {what}: {reason}", reason=reason) from None
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create the {what} ({_reason(exc)})", reason=_reason(exc)) from None
    return folder


def write_atomically(path: str | Path, content: bytes | str | Callable[[BinaryIO], None]) -> Path:
    """Write ``content`` (bytes, text as UTF-8, or a function that writes to a binary file) to ``path``.

    The file appears whole under its name or not at all; see the module docstring.
    """
    path = Path(path).expanduser()
    ensure_folder(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({_reason(exc)})", reason=_reason(exc)) from None
    try:
        with os.fdopen(fd, "wb") as out:
            if callable(content):
                content(out)
            else:
                out.write(content.encode("utf-8") if isinstance(content, str) else content)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise OutputError(f"{path}: cannot write ({_reason(exc)})", reason=_reason(exc)) from None
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

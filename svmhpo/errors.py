"""One error root for everything a user can get wrong.

The command line maps :class:`SvmhpoError` (and only it) to a one-line message and a non-zero exit
code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DataError",
    "DatabaseUnavailable",
    "ModelError",
    "OutputError",
    "StorageError",
    "SvmhpoError",
    "first_line",
]


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (a database driver's own, under SQLAlchemy's
    wrapper), or its class name when it has none: what a one-line error quotes."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


class SvmhpoError(Exception):
    """Root of the errors a user can cause and fix: bad config, bad data, bad storage."""


class ConfigError(SvmhpoError, ValueError):
    """A configuration file, key or value is invalid."""


class DataError(SvmhpoError, ValueError):
    """A data set cannot be found, downloaded or parsed, or its contents are unusable."""


class StorageError(SvmhpoError):
    """A study storage URL is malformed, unreachable or refused."""


class DatabaseUnavailable(StorageError):
    """The study's database stayed unreachable past the outage limit (``[study] db_outage_limit``),
    or the user pressed Ctrl-C while it was waited for (``interrupted``)."""

    def __init__(self, message: str, *, interrupted: bool = False) -> None:
        super().__init__(message)
        self.interrupted = interrupted


class OutputError(SvmhpoError):
    """A file or folder svmhpo was asked to write cannot be written: read-only, full, or not a folder.

    ``reason`` is the system's word for it (``No space left on device``), for callers that
    report the failure in their own terms.
    """

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class ModelError(SvmhpoError, ValueError):
    """A saved model is missing, of another kind or format, or does not fit its own description."""

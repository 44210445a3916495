"""Storage URLs: SQLite pragmas, unreachable and refused databases, masked passwords."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from svmhpo.cli import ExitStatus, main
from svmhpo.errors import StorageError
from svmhpo.hpo.storage import default_storage_url, mask_url, open_storage, resolve_storage_url


def test_default_storage_is_a_sqlite_file_under_svmhpo_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SVMHPO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SVMHPO_STORAGE", raising=False)
    assert default_storage_url() == f"sqlite:///{tmp_path / 'home' / 'studies.db'}"
    assert resolve_storage_url(None) == default_storage_url()
    monkeypatch.setenv("SVMHPO_STORAGE", "sqlite:///elsewhere.db")
    assert resolve_storage_url(None) == "sqlite:///elsewhere.db"
    assert resolve_storage_url("sqlite:///x.db") == "sqlite:///x.db"


def test_sqlite_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "s.db"
    open_storage(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_mask_url() -> None:
    assert mask_url("postgresql+psycopg://user:hunter2@db:5432/x") == "postgresql+psycopg://user:***@db:5432/x"
    assert mask_url("sqlite:///a.db") == "sqlite:///a.db"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_refused_database_is_one_masked_line(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"postgresql+psycopg://svm:hunter2@127.0.0.1:{_free_port()}/studies"
    start = time.monotonic()
    assert main(["studies", "--storage", url]) == ExitStatus.USER_ERROR
    assert time.monotonic() - start < 10
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "hunter2" not in err
    assert "svm:***@127.0.0.1" in err and "cannot connect" in err


def test_silent_server_times_out_within_10_seconds() -> None:
    """A server that accepts the TCP connection and never answers (a firewall black hole on loopback)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    url = f"postgresql+psycopg://svm:hunter2@127.0.0.1:{listener.getsockname()[1]}/studies"
    start = time.monotonic()
    try:
        with pytest.raises(StorageError) as info:
            open_storage(url)
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()
    assert time.monotonic() - start < 10
    assert "hunter2" not in str(info.value) and "***" in str(info.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [("nosuchdb://x/y", "unsupported database URL"), ("not a url", "not a valid database URL")],
)
def test_malformed_urls(url: str, message: str) -> None:
    with pytest.raises(StorageError, match=message):
        open_storage(url)


def test_postgres_storage_opens(pg_url: str) -> None:
    storage = open_storage(pg_url)
    assert storage.engine.dialect.name == "postgresql"

"""Files and disks: whole files or none, unwritable targets, read-only and full disks, corrupt databases, orphans.

Read-only and full disks are real: small tmpfs mounts (the tests run as root in CI; elsewhere
they are skipped, saying so). Each case asserts the exit status, the one line and what is left.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from svmhpo.cli import main
from svmhpo.errors import OutputError, StorageError
from svmhpo.files import TEMP_PREFIX, write_atomically
from svmhpo.hpo.storage import open_storage
from svmhpo.hpo.studies import read_study
from svmhpo.testing import wait_for

NOOP = [sys.executable, "-m", "svmhpo.testing"]


def _one_line(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("svmhpo: error: ") and "Traceback" not in err, err
    return err.strip()


# --- whole files or none ---------------------------------------------------------------------------
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = write_atomically(tmp_path / "report.html", "old")

    def half_then_fail(out) -> None:
        out.write(b"new, half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputError, match=r"report\.html: cannot write \(No space left on device\)"):
        write_atomically(target, half_then_fail)
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["report.html"]


def test_a_write_killed_midway_keeps_the_old_file(tmp_path: Path) -> None:
    target = write_atomically(tmp_path / "report.html", "old " * 1000)
    script = (
        "import os, signal, sys\n"
        "from svmhpo.files import write_atomically\n"
        "def half(out):\n"
        "    out.write(b'new' * 1000); out.flush(); os.kill(os.getpid(), signal.SIGKILL)\n"
        "write_atomically(sys.argv[1], half)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(target)], timeout=60)
    assert done.returncode == -signal.SIGKILL
    assert target.read_text() == "old " * 1000  # the reader sees the old report, whole
    leftovers = [p for p in os.listdir(tmp_path) if p != "report.html"]
    assert all(p.startswith(TEMP_PREFIX) for p in leftovers)


# --- unwritable targets ------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["proc", "under-a-file"])
def test_unwritable_targets_are_one_line(tmp_path: Path, small_study, capsys, where: str) -> None:
    url, name = small_study
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    target = Path("/proc/svmhpo-out") if where == "proc" else blocker / "out"
    for argv in (
        ["report", "--study-name", name, "--storage", url, "--out", str(target)],
        ["export", "--study-name", name, "--storage", url, "--out", str(target)],
        ["train", "--epochs", "1", "--save", str(target)],
    ):
        assert main(argv) == 1, argv
        line = _one_line(capsys.readouterr().err)
        assert str(target) in line and "cannot" in line, line


# --- read-only and full disks ------------------------------------------------------------------------
@pytest.fixture
def tmpfs(tmp_path: Path):
    """Mount a small tmpfs (``size`` in kB), yield its path and a remount function; unmount after."""
    mounts: list[Path] = []

    def mount(name: str, size_kb: int) -> Path:
        point = tmp_path / name
        point.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(point)], capture_output=True
        )
        if done.returncode != 0:
            pytest.skip(f"CANNOT MOUNT A TMPFS here ({done.stderr.decode().strip()}): disk tests SKIPPED")
        mounts.append(point)
        return point

    yield mount
    for point in mounts:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def test_a_study_on_a_read_only_disk_can_be_read(tmp_path: Path, small_study, tmpfs, capsys) -> None:
    url, name = small_study
    disk = tmpfs("ro", 64 * 1024)
    source = Path(url.removeprefix("sqlite:///"))
    shutil.copytree(source.with_suffix(".artifacts"), disk / "r.artifacts")
    src, dst = sqlite3.connect(source), sqlite3.connect(disk / "r.db")
    src.backup(dst)  # the study with what its WAL holds, as one file
    dst.execute("PRAGMA journal_mode=WAL")  # as svmhpo leaves every study file
    dst.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    src.close()
    dst.close()
    for extra in disk.glob("r.db-*"):
        extra.unlink()
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    ro_url = f"sqlite:///{disk / 'r.db'}"
    rows = tmp_path / "rows.csv"
    rows.write_text(",".join(["3"] * 64) + "\n")
    for argv in (
        ["studies"],
        ["best", "--study-name", name],
        ["trials", "--study-name", name],
        ["report", "--study-name", name, "--out", str(tmp_path / "rep")],
        ["predict", "--study-name", name, str(rows)],
    ):
        assert main([*argv, "--storage", ro_url]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "label" in out and (tmp_path / "rep" / f"{name}.html").is_file()
    assert sorted(os.listdir(disk)) == ["r.artifacts", "r.db"]  # no -wal, -shm or lock file was made
    assert main(["run", "--storage", ro_url, "--study-name", name, "--trials", "9", "--no-warm-start", "--quiet"]) == 1
    assert "read-only here" in _one_line(capsys.readouterr().err)


def test_a_full_disk_mid_run_is_one_line_and_the_next_run_leaves_nothing_running(
    tmp_path: Path, study_config, tmpfs
) -> None:
    disk = tmpfs("full", 16 * 1024)
    url = f"sqlite:///{disk / 's.db'}"
    config = study_config("full", trials=400, epochs=2, warm=False, pruner="none", batch_trials=16)
    command = [*NOOP, "run", "--config", str(config), "--storage", url, "--quiet"]
    env = dict(os.environ, SVMHPO_NOOP_EPOCH_S="0.02")
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)

    def trials() -> int:
        try:
            with sqlite3.connect(f"file:{disk / 's.db'}?mode=ro", uri=True, timeout=5) as conn:
                return conn.execute("SELECT count(*) FROM trials").fetchone()[0]
        except sqlite3.Error:
            return 0

    wait_for(lambda: trials() > 20, timeout=120, what="trials to run", interval=0.2)
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)  # take the rest of the disk
    try:
        while True:
            os.write(fd, bytes(65536))
    except OSError:
        pass
    finally:
        os.close(fd)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert "the disk is full" in _one_line(err), err
    filler.unlink()
    again = subprocess.run([*command[:-1], "--trials", "60", "--quiet"], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    study = read_study("full", url)
    assert not study.get_trials(states=(TrialState.RUNNING,))  # the dead run's trials failed at once
    retried = {t.system_attrs.get("failed_trial") for t in study.trials}
    assert all(t.number in retried for t in study.get_trials(states=(TrialState.FAIL,)))  # and re-queued
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) >= 60


# --- corrupt databases ---------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["header", "pages", "truncated"])
def test_a_corrupt_database_file_is_one_line_naming_it(tmp_path: Path, small_study, capsys, damage: str) -> None:
    url, name = small_study
    source = Path(url.removeprefix("sqlite:///"))
    copy = tmp_path / "broken.db"
    with sqlite3.connect(source) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    data = bytearray(copy.read_bytes())
    if damage == "header":
        data[:16] = b"not a database!!"
    elif damage == "pages":
        for at in range(4096 * 2, len(data), 4096):
            data[at : at + 256] = os.urandom(256)
    else:
        data = data[: len(data) // 3]
    copy.write_bytes(bytes(data))
    for argv in (["studies"], ["best", "--study-name", name], ["trials", "--study-name", name]):
        assert main([*argv, "--storage", f"sqlite:///{copy}"]) == 1
        line = _one_line(capsys.readouterr().err)
        assert str(copy) in line, line


# --- init checks the data, --jobs workers follow their parent ----------------------------------------
def test_init_refuses_data_that_run_would_refuse(tmp_path: Path, capsys) -> None:
    config = tmp_path / "p.toml"
    config.write_text('[study]\nname = "p"\n[data]\nsource = "/etc/passwd"\n')
    url = f"sqlite:///{tmp_path / 'p.db'}"
    assert main(["init", "--config", str(config), "--storage", url, "--no-warm-start"]) == 1
    assert "/etc/passwd: unknown file type" in _one_line(capsys.readouterr().err)
    assert not optuna.get_all_study_summaries(open_storage(url))


def test_jobs_workers_stop_when_their_parent_is_killed(tmp_path: Path, study_config) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    config = study_config("jobs", trials=200, epochs=4, warm=False, pruner="none", batch_trials=1, grace=30)
    env = dict(os.environ, SVMHPO_NOOP_EPOCH_S="0.3")
    parent = subprocess.Popen(
        [*NOOP, "run", "--config", str(config), "--storage", url, "--jobs", "2", "--quiet"],
        env=env,
        stderr=subprocess.DEVNULL,
    )

    def running() -> list:
        try:
            study = read_study("jobs", url)
            return study.get_trials(states=(TrialState.RUNNING,))
        except StorageError:  # not created yet
            return []

    try:
        busy = wait_for(lambda: len(running()) == 2 and running(), timeout=120, what="both workers running a trial")
    finally:
        parent.kill()
        parent.wait(timeout=30)
    pids = {int(t.user_attrs["worker"].rpartition(":")[2]) for t in busy}

    def gone() -> bool:
        return all(not Path(f"/proc/{pid}").exists() or "Z" in _state(pid) for pid in pids)

    wait_for(gone, timeout=60, what="the workers to exit after their parent", interval=0.2)
    time.sleep(0.5)
    study = read_study("jobs", url)
    assert not study.get_trials(states=(TrialState.RUNNING,))  # each worker failed its trial on the way out
    assert {study.trials[t.number].state for t in busy} <= {TrialState.FAIL, TrialState.COMPLETE}


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
    except OSError:
        return "Z"

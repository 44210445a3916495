"""Shared fixtures. Importing this file loads neither torch nor Lightning: fixtures import them lazily."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import shutil
import sqlite3
import struct
import subprocess
import sys
import tempfile
import termios
import textwrap
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# One thread per process: the suite runs side by side (pytest-xdist) and starts many worker
# processes, and on 2 cores two OpenMP threads per process spin against each other; the fits here
# are small (digits), for which one thread is as fast. Subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

if TYPE_CHECKING:
    from svmhpo.svm.data import DeviceData


@pytest.fixture(scope="session")
def digits() -> DeviceData:
    """The default 72/8/20 digits split (random_state 0), standardised, on CPU."""
    from svmhpo.svm.data import prepare_data

    return prepare_data("digits", seed=0)


@pytest.fixture
def noop_trainer(monkeypatch: pytest.MonkeyPatch):
    """Make the no-op trainer (:mod:`svmhpo.testing`) the trainer of this test's in-process runs;
    their data and refit stay real (``only_trials``). Worker processes they start are wholly no-op."""
    from svmhpo.hpo import modelside, workers
    from svmhpo.testing import NoOpSide

    side = NoOpSide(only_trials=True)
    monkeypatch.setattr(modelside, "_current", [side])
    monkeypatch.setattr(workers, "WORKER_MODULE", "svmhpo.testing")
    return side.fit


def dashboard_request(url: str, method: str, path: str) -> tuple[int, bytes]:
    """``method path`` through optuna-dashboard's WSGI app on the storage at ``url``, with svmhpo's
    artifact store (as ``svmhpo dashboard`` serves it); returns the status code and the body."""
    import io
    import wsgiref.util

    import optuna_dashboard

    from svmhpo.hpo.artifacts import store_for
    from svmhpo.hpo.storage import artifact_dir, open_storage

    storage = open_storage(url)
    app = optuna_dashboard.wsgi(storage, artifact_store=store_for(storage, artifact_dir(url)))
    environ: dict = {}
    wsgiref.util.setup_testing_defaults(environ)
    environ.update(REQUEST_METHOD=method, PATH_INFO=path, **{"wsgi.input": io.BytesIO(b"")})
    status: list[str] = []
    body = b"".join(app(environ, lambda s, h, *a: status.append(s)))
    return int(status[0].split()[0]), body


def assert_one_model(study) -> None:
    """One model record on ``study``, ``final`` naming it, and its file alone in the artifact folder."""
    from svmhpo.hpo import records

    models = records.model_artifacts(study)
    assert len(models) == 1, models
    final = records.final(study)
    assert final and final["model_artifact_id"] == models[0]["artifact_id"]
    folder = Path(final["model_path"]).parent
    assert sorted(p.name for p in folder.iterdir()) == [models[0]["artifact_id"]]


# --- PostgreSQL ------------------------------------------------------------------------------
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
_pg_skipped: list[str] = []


def _pg_ready() -> bool:
    import psycopg

    try:
        psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3").close()
        return True
    except psycopg.OperationalError:
        return False


def _start_pg() -> None:
    if shutil.which("pg_ctlcluster") is None or not Path("/etc/postgresql").is_dir():
        return
    for version in sorted(p.name for p in Path("/etc/postgresql").iterdir()):
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
            capture_output=True,
            timeout=60,
            check=False,
        )


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The real local PostgreSQL server, started if it is down; skipped loudly if it cannot be."""
    if not _pg_ready():
        _start_pg()
    if not _pg_ready():
        reason = "NO POSTGRESQL SERVER at 127.0.0.1:5432 and none could be started: PostgreSQL tests SKIPPED"
        _pg_skipped.append(reason)
        pytest.skip(reason)
    return PG_URL


def _pg_bin() -> Path | None:
    """The newest PostgreSQL server binaries on this machine (Debian's layout), if any."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


class PostgresServer:
    """A PostgreSQL server of the tests' own, which a test may stop and start (it is started again after).

    Its own cluster (``initdb`` in a temporary folder, a free port on 127.0.0.1, trust auth):
    stopping it disturbs no other test, so the suite can run side by side (pytest-xdist) while
    one test takes its database away. As root, the server runs as the ``postgres`` user, as
    PostgreSQL requires.
    """

    def __init__(self, bin_dir: Path) -> None:
        from svmhpo.testing import free_port

        self.bin = bin_dir
        self.folder = Path(tempfile.mkdtemp(prefix="svmhpo-pg-"))
        self.port = free_port()
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.folder, "postgres")
        self._run("initdb", "-D", str(self.folder / "data"), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self._as, str(self.bin / tool), *args], capture_output=True, timeout=120, check=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def ready(self) -> bool:
        import psycopg

        try:
            dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres connect_timeout=3"
            psycopg.connect(dsn).close()
            return True
        except psycopg.OperationalError:
            return False

    def start(self) -> None:
        if self.ready():
            return
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.folder / "log")
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def _own_pg():
    bin_dir = _pg_bin()
    if bin_dir is None or (os.geteuid() == 0 and shutil.which("runuser") is None):
        reason = "no PostgreSQL server binaries to start a server of the tests' own: restart tests SKIPPED"
        _pg_skipped.append(reason)
        pytest.skip(reason)
    server = PostgresServer(bin_dir)
    yield server
    server.destroy()


@pytest.fixture
def pg_server(_own_pg: PostgresServer):
    """A PostgreSQL server that the test may stop and start, and a fresh database on it (its URL).

    Each test gets a fresh database, dropped after, and the server is running again after it.
    """
    import psycopg

    name = f"svmhpo_{uuid.uuid4().hex[:10]}"
    admin = f"host=127.0.0.1 port={_own_pg.port} user=postgres dbname=postgres connect_timeout=5"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _own_pg, _own_pg.url(name)
    finally:
        _own_pg.start()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


#: Server connections PgBouncer keeps to PostgreSQL in the tests: fewer than the workers sent through it.
PGBOUNCER_POOL = 4


@pytest.fixture(scope="session")
def pgbouncer(pg_url: str):
    """PgBouncer in transaction mode in front of the real PostgreSQL's ``test`` database, with a
    pool of :data:`PGBOUNCER_POOL` server connections; yields its URL (without svmhpo's
    ``?pooler=``). Debian's ``pgbouncer`` package (``dev/test`` installs it); skipped loudly
    where it is missing."""
    import psycopg

    from svmhpo.testing import free_port, wait_for

    exe = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(exe).is_file():
        reason = "NO PGBOUNCER (Debian package pgbouncer): the PostgreSQL connection-pooler tests SKIPPED"
        _pg_skipped.append(reason)
        pytest.skip(reason)
    folder = Path(tempfile.mkdtemp(prefix="svmhpo-pgbouncer-"))
    folder.chmod(0o755)  # run as postgres when root: it reads the files
    port = free_port()
    (folder / "users.txt").write_text('"postgres" ""\n')
    (folder / "pgbouncer.ini").write_text(
        textwrap.dedent(f"""\
            [databases]
            test = host=127.0.0.1 port=5432 dbname=test
            [pgbouncer]
            listen_addr = 127.0.0.1
            listen_port = {port}
            unix_socket_dir =
            auth_type = trust
            auth_file = {folder / "users.txt"}
            pool_mode = transaction
            default_pool_size = {PGBOUNCER_POOL}
            max_client_conn = 500
            ignore_startup_parameters = extra_float_digits,options
            """)
    )
    as_user = ["-u", "postgres"] if os.geteuid() == 0 else []  # it refuses to run as root
    log = open(folder / "log", "w")
    proc = subprocess.Popen([exe, *as_user, str(folder / "pgbouncer.ini")], stdout=log, stderr=log)

    def ready() -> bool:
        try:
            psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=test connect_timeout=2").close()
            return True
        except psycopg.OperationalError:
            return proc.poll() is not None  # exited: reported below

    wait_for(ready, 30, "PgBouncer to accept connections")
    if proc.poll() is not None:
        raise AssertionError(f"pgbouncer exited {proc.returncode}: {(folder / 'log').read_text()[-2000:]}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/test"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


def pytest_terminal_summary(terminalreporter) -> None:
    """A red banner for every service whose tests were skipped because it could not be started.

    The reasons come from the skip reports, so the banner shows whichever process skipped them
    (the tests run in pytest-xdist worker processes; this hook runs in the controller).
    """
    reasons = list(_pg_skipped) + list(_docker_skipped)
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = getattr(report, "longrepr", None)
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr or "")
        reasons.append(reason.removeprefix("Skipped: "))
    for title, marker in (("PostgreSQL", "PostgreSQL"), ("PgBouncer", "PGBOUNCER"), ("Docker", "DOCKER")):
        found = [r for r in reasons if marker in r and "SKIPPED" in r]
        if found:
            terminalreporter.section(title, sep="!", red=True, bold=True)
            terminalreporter.write_line(found[0], red=True, bold=True)


# --- Docker: the engine, the stand-in base images and the wheelhouse ----------------------------
ROOT = Path(__file__).resolve().parent.parent
_docker_skipped: list[str] = []


def _engine_up() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """A running Docker engine, started the way this sandbox allows if none runs; skipped loudly otherwise."""
    if not _engine_up() and shutil.which("dockerd") and os.geteuid() == 0:
        log = open("/tmp/svmhpo-dockerd.log", "ab")
        subprocess.Popen(
            ["dockerd", "--storage-driver=vfs", "--iptables=false", "--ip6tables=false", "--bridge=none"],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _engine_up():
            time.sleep(1)
    if not _engine_up() or shutil.which("docker-compose") is None:
        reason = "NO DOCKER ENGINE (or no docker-compose) and none could be started: compose end-to-end test SKIPPED"
        _docker_skipped.append(reason)
        pytest.skip(reason)
    if shutil.which("iptables") is None:  # seen: an apt install stopped halfway left it unconfigured
        reason = (
            "NO IPTABLES (Debian package iptables): the engine sets up each container's embedded DNS with it, "
            "and without it no service name resolves ('postgres': Temporary failure in name resolution): "
            "compose end-to-end test SKIPPED"
        )
        _docker_skipped.append(reason)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def standin_images(docker_engine) -> dict[str, str]:
    """The stand-in base images, built once per machine by dev/standin-images (kept if present)."""
    subprocess.run([str(ROOT / "dev" / "standin-images")], check=True, timeout=1800)
    return {"python": "svmhpo-standin/python:3.11", "postgres": "svmhpo-standin/postgres:15"}


@pytest.fixture(scope="session")
def wheelhouse() -> Path:
    """wheelhouse/ filled by dev/wheelhouse (it fetches only what is missing)."""
    subprocess.run([str(ROOT / "dev" / "wheelhouse")], check=True, timeout=900)
    return ROOT / "wheelhouse"


# --- study configs ---------------------------------------------------------------------------
@pytest.fixture
def study_config(tmp_path: Path):
    """Write a small study config; keyword arguments fill the template."""

    def make(
        name: str | None = None,
        *,
        trials: int = 6,
        epochs: int = 3,
        source: str = "digits",
        pruner: str = "median",
        warm: bool = True,
        heartbeat: int = 10,
        grace: int = 30,
        sampler: str = "tpe",
        batch_trials: int | None = None,
        batch_pruning: str | None = None,
        extra: str = "",
    ) -> Path:
        name = name or f"t-{uuid.uuid4().hex[:8]}"
        path = tmp_path / f"{name}.toml"
        path.write_text(
            textwrap.dedent(f"""
            [study]
            name = "{name}"
            trials = {trials}
            seed = 0
            sampler = "{sampler}"
            pruner = "{pruner}"
            heartbeat_interval = {heartbeat}
            grace_period = {grace}

            [data]
            source = "{source}"

            [training]
            epochs = {epochs}
            batch_size = 64
            {"" if batch_trials is None else f"batch_trials = {batch_trials}"}
            {"" if batch_pruning is None else f'batch_pruning = "{batch_pruning}"'}

            [warm_start]
            enabled = {str(warm).lower()}
            num_training = 30

            [baseline]
            C = [0.01, 0.1]
            """)
            + extra
        )
        return path

    return make


# --- a small finished study for the report and browser tests -----------------------------------
@pytest.fixture(scope="session")
def small_study(tmp_path_factory) -> tuple[str, str]:
    """A real 8-trial digits study with warm start, finalized, in a SQLite file.

    Its 8 trials are one batch, pruned against finished trials only, so all of them complete:
    the report's panels (importances, contours) need complete trials.
    """
    from filelock import FileLock

    from svmhpo.hpo.config import load_config
    from svmhpo.hpo.service import run_study

    # built once for all the test processes (pytest-xdist), each of which gets its own copy
    shared = tmp_path_factory.getbasetemp().parent / "small-study"
    with FileLock(f"{shared}.lock"):
        if not (shared / "done").exists():
            shared.mkdir(exist_ok=True)
            config_path = shared / "r.toml"
            config_path.write_text(
                '[study]\nname = "r"\ntrials = 8\n[training]\nepochs = 4\nbatch_pruning = "finished"\n'
                "[warm_start]\nnum_training = 30\n"
                "[baseline]\nC = [0.1]\n"
            )
            run_study(load_config(config_path), f"sqlite:///{shared / 'r.db'}")
            (shared / "done").touch()
    tmp = tmp_path_factory.mktemp("report")
    with sqlite3.connect(shared / "r.db") as src, sqlite3.connect(tmp / "r.db") as dst:
        src.backup(dst)  # the write-ahead log too, which a file copy would miss
    shutil.copytree(shared / "r.artifacts", tmp / "r.artifacts")
    return f"sqlite:///{tmp / 'r.db'}", "r"


# --- a real terminal ------------------------------------------------------------------------------
class Terminal:
    """``python -m svmhpo ARGS`` (or another module) on a pseudo-terminal, its output collected as it comes."""

    def __init__(self, args: list[str], env: dict[str, str], module: str = "svmhpo") -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the pty is its controlling terminal, 100 columns wide
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
            os.chdir(Path(__file__).resolve().parent.parent)
            os.execve(sys.executable, [sys.executable, "-m", module, *args], env)
        self.output = b""
        self.status: int | None = None

    def _read(self, timeout: float) -> None:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if ready:
            try:
                self.output += os.read(self.fd, 65536)
            except OSError:  # the child closed the terminal
                pass

    def ctrl_c(self) -> None:
        os.write(self.fd, b"\x03")

    def wait(self, timeout: float = 120) -> int:
        deadline = time.monotonic() + timeout
        while self.status is None and time.monotonic() < deadline:
            self._read(0.2)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
        self._read(0.2)
        if self.status is None:
            os.kill(self.pid, 9)
            raise AssertionError(f"svmhpo did not exit; output:\n{self.text}")
        os.close(self.fd)
        return self.status

    def poll_output(self) -> None:
        self._read(0)

    @property
    def text(self) -> str:
        return self.output.decode(errors="replace").replace("\r", "\n")


@pytest.fixture
def terminal() -> type[Terminal]:
    """Start a command on a pseudo-terminal: ``terminal(args, env)``; type into it, wait for it."""
    return Terminal

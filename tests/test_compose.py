"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

The structure is parsed and checked; then the exact commands of the ``init`` and ``worker``
services run as local processes against the real local PostgreSQL: init, then 3 workers.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from svmhpo.hpo.studies import best_trial

ROOT = Path(__file__).resolve().parent.parent


def _compose(name: str = "docker-compose.yml") -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def test_services_and_their_dependencies() -> None:
    services = _compose()["services"]
    assert set(services) == {"postgres", "init", "worker", "dashboard"}
    pg = services["postgres"]
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert any(v.split(":")[0] == "postgres-data" for v in pg["volumes"])  # a named volume
    assert "ports" not in pg  # the database is not published
    assert services["init"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["init"]["command"][0] == "init"
    assert services["init"]["restart"] == "no"
    for name in ("worker", "dashboard"):
        assert services[name]["depends_on"]["init"]["condition"] == "service_completed_successfully"
    # the database is the only shared state: no svmhpo service mounts a volume
    gpu = _compose("docker-compose.gpu.yml")["services"]["gpu-worker"]
    assert [s.get("volumes") for s in (services["init"], services["worker"], services["dashboard"], gpu)] == [None] * 4
    assert set(_compose()["volumes"]) == {"postgres-data"}
    assert services["worker"]["stop_grace_period"] == gpu["stop_grace_period"] == "15s"  # SIGTERM leaves in seconds


def test_worker_scales_and_ports_are_loopback_only() -> None:
    services = _compose()["services"]
    worker = services["worker"]
    assert worker["command"][0] == "worker"
    assert "container_name" not in worker and "ports" not in worker
    for service in services.values():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), port
    assert services["dashboard"]["ports"] == ["127.0.0.1:8080:8080"]


def test_no_secrets_in_compose_files_or_image() -> None:
    for name in ("docker-compose.yml", "docker-compose.gpu.yml"):
        text = (ROOT / name).read_text()
        assert "change-me" not in text
        for service in _compose(name)["services"].values():
            for key, value in (service.get("environment") or {}).items():
                if "PASSWORD" in key:
                    assert str(value).startswith("${POSTGRES_PASSWORD"), (name, key)
                if "@postgres" in str(value):  # a database URL: its password is a reference to .env
                    assert re.search(r":\$\{POSTGRES_PASSWORD[^}]*\}@postgres", str(value)), (name, key)
    example = (ROOT / ".env.example").read_text()
    assert "POSTGRES_PASSWORD=change-me" in example  # a placeholder, not a password
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    ignored = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert ignored[0] == "*" and not [line for line in ignored if line.startswith("!.env")]  # never in the context
    assert "PASSWORD" not in (ROOT / "Dockerfile").read_text()


def test_gpu_overlay_serves_every_gpu_of_a_host_from_one_service() -> None:
    services = _compose("docker-compose.gpu.yml")["services"]
    assert list(services) == ["gpu-worker"]  # no per-GPU services to edit for 1, 2 or 8 GPUs
    service = services["gpu-worker"]
    (device,) = service["deploy"]["resources"]["reservations"]["devices"]
    assert device == {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}
    assert service["command"][:1] == ["worker"] and service["command"][-2:] == ["--gpus", "${SVMHPO_GPUS:-all}"]
    assert service["depends_on"]["init"]["condition"] == "service_completed_successfully"
    base = _compose()["services"]["worker"]
    assert "deploy" not in base  # without the overlay, compose runs on CPU


def _instructions() -> list[tuple[str, str]]:
    lines = (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
        for line in lines
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_dockerfile_structure() -> None:
    steps = _instructions()
    kinds = [k for k, _ in steps]
    assert kinds[0] in ("ARG", "FROM") and "FROM" in kinds  # ARGs before FROM may name the base image
    args = [v for k, v in steps if k == "ARG"]
    assert any(v.startswith("TORCH_VARIANT=cpu") for v in args)  # CPU by default, CUDA by build argument
    assert "PYTHON_IMAGE=python:3.11-slim" in args  # the base image is a setting (mirrors, stand-ins)
    assert [v for k, v in steps if k == "FROM"][-1] == "${PYTHON_IMAGE}"
    # few layers: under Docker's vfs driver (this project's CI) every layer is a full copy of the
    # filesystem; the build context is one COPY of an allowlist, and the runtime takes one COPY
    stages: list[list[str]] = []
    for kind, _ in steps:
        if kind == "FROM":
            stages.append([])
        elif stages and kind in ("RUN", "COPY", "ADD", "WORKDIR"):
            stages[-1].append(kind)
    assert [len(stage) for stage in stages] == [2, 3], stages
    assert ("COPY", ". /src/") in steps and ("COPY", "--from=build /out/ /") in steps
    allowed = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert allowed[0] == "*" and {"!wheelhouse/", "!pyproject.toml", "!README.md", "!svmhpo/"} <= set(allowed)
    user = [v for k, v in steps if k == "USER"]
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert kinds.index("USER") > max(i for i, k in enumerate(kinds) if k == "RUN")
    assert [v for k, v in steps if k == "ENTRYPOINT"] == ['["svmhpo"]']


def _compose_cli() -> list[str] | None:
    """``docker compose`` (v2 plugin) or ``docker-compose`` (v1, Debian's package), if either runs."""
    candidates = [["docker", "compose"], ["docker-compose"]]
    for cli in candidates:
        if shutil.which(cli[0]) is None:
            continue
        probe = subprocess.run([*cli, "version"], capture_output=True, text=True, timeout=30)
        if probe.returncode == 0:
            return cli
    return None


@pytest.mark.parametrize("files", [["docker-compose.yml"], ["docker-compose.yml", "docker-compose.gpu.yml"]])
def test_compose_config_validates(files: list[str], tmp_path: Path) -> None:
    """The compose CLI validates the files against the Compose schema; no engine is needed for that."""
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no compose CLI (docker compose or docker-compose): 'compose config' SKIPPED")
    args = [arg for f in files for arg in ("-f", str(ROOT / f))]
    env = dict(os.environ, POSTGRES_PASSWORD="ci")
    done = subprocess.run([*cli, *args, "config", "-q"], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    broken = tmp_path / "broken.yml"  # and it does reject what is wrong
    broken.write_text("services:\n  worker:\n    image: x\n    depends_on:\n      init:\n        condition: soon\n")
    done = subprocess.run([*cli, "-f", str(broken), "config", "-q"], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0


def test_dockerfile_lint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed: Dockerfile lint SKIPPED")
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def _expand(arg: str, env: dict[str, str]) -> str:
    """Compose's ${VAR:-default} / ${VAR:?message} / ${VAR} substitution."""

    def repl(m: re.Match) -> str:
        name, op, word = m.group(1), m.group(2), m.group(3)
        if env.get(name):
            return env[name]
        if op == ":-":
            return word
        raise AssertionError(f"{name} must be set: {word}")

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", repl, arg)


@pytest.mark.postgres
def test_init_then_three_workers_fill_the_budget(pg_url: str, tmp_path: Path) -> None:
    services = _compose()["services"]
    study = f"compose-{uuid.uuid4().hex[:8]}"
    env = {"SVMHPO_STUDY": study, "SVMHPO_TRIALS": "9", "SVMHPO_CONFIG": "digits"}
    run_env = dict(os.environ, SVMHPO_STORAGE=pg_url, SVMHPO_HOME=str(tmp_path))
    init = [_expand(a, env) for a in services["init"]["command"]]
    worker = [_expand(a, env) for a in services["worker"]["command"]]
    try:
        subprocess.run(
            [sys.executable, "-m", "svmhpo", *init], cwd=ROOT, env=run_env, check=True, timeout=300, capture_output=True
        )
        # the workers' exact arguments, with the no-op trainer (svmhpo.testing): the commands and the
        # study machinery are the point here, not the fits; the one refit is real
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "svmhpo.testing", *worker, "--quiet"],
                cwd=ROOT,
                env=run_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        for p in procs:
            _, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
        loaded = optuna.load_study(study_name=study, storage=pg_url)
        finished = len(loaded.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)))
        assert finished == 9
        final = loaded.user_attrs["final"]
        assert loaded.user_attrs["warm_start"] and final["test_acc"] > 0.9
        # The stored result describes the best trial and came from one of the three workers. Which
        # one refits is a race (a worker that joined after the last trial steps in), so the test
        # pins the outcome.
        assert final["trial"] == best_trial(loaded).number
        assert final["worker"] in {f"{socket.gethostname()}:{p.pid}" for p in procs}
        assert not loaded.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    finally:
        optuna.delete_study(study_name=study, storage=pg_url)

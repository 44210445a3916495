"""The Kubernetes manifests (``deploy/kubernetes``): rendered, validated, secured and run.

No cluster can run here. What is checked: every overlay renders with ``kubectl kustomize``
(offline); every rendered object validates strictly (unknown fields are errors) against the
API schemas of a current Kubernetes release (``kubernetes-validate``); every pod follows the
security rules below; and every svmhpo container's command, arguments and environment, taken
from the rendered YAML, run against the project here (the no-op trainer, a fresh database on
the local PostgreSQL server standing in for the Secret's URL), so a renamed flag or variable
fails here and not on a user's cluster.
"""

from __future__ import annotations

import copy
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from svmhpo.testing import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "kubernetes"
OVERLAYS = ["base", "overlays/dev", "overlays/gpu", "overlays/external-db"]
KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(
    KUBECTL is None, reason="NO KUBECTL (Debian package kubernetes-client): the Kubernetes manifest tests SKIPPED"
)
WORKLOADS = ("Deployment", "StatefulSet", "Job")


def render(overlay: str) -> list[dict]:
    out = subprocess.run([KUBECTL, "kustomize", str(DEPLOY / overlay)], capture_output=True, text=True, check=True)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def pod_specs(objects: list[dict]) -> list[tuple[str, dict]]:
    return [(o["metadata"]["name"], o["spec"]["template"]["spec"]) for o in objects if o["kind"] in WORKLOADS]


def containers(spec: dict) -> list[dict]:
    return spec.get("initContainers", []) + spec["containers"]


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_renders_and_validates_strictly(overlay: str) -> None:
    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    objects = render(overlay)
    kinds = sorted(o["kind"] for o in objects)
    expected = ["Deployment", "Job", "Job", "Service", "Service", "StatefulSet"]
    if overlay.endswith("external-db"):
        expected = ["Deployment", "Job", "Job", "Service"]
    assert kinds == expected
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)
    # strict means strict: an unknown field is an error
    broken = copy.deepcopy(objects[0])
    broken["spec"]["replicaz"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_locked_down(overlay: str) -> None:
    objects = render(overlay)
    text = yaml.safe_dump_all(objects)
    assert not [o for o in objects if o["kind"] in ("Secret", "ConfigMap")]  # the Secret is the user's
    assert "postgresql+psycopg://" not in text and "password:" not in text.lower().replace("key: password", "")
    for name, spec in pod_specs(objects):
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert not spec.get("hostNetwork") and not spec.get("hostPID"), name
        assert not [v for v in spec.get("volumes", []) if "hostPath" in v], name
        for container in containers(spec):
            where = f"{name}/{container['name']}"
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == ["ALL"], where
            assert not context.get("privileged"), where
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), where
            image = container["image"]
            assert ":" in image and not image.endswith(":latest"), where
            for env in container.get("env", []):  # credentials only by reference to the Secret
                assert "value" not in env or "://" not in str(env["value"]), where
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    assert services["svmhpo-dashboard"]["spec"]["type"] == "ClusterIP"  # never exposed by default
    images = {c["image"] for _, spec in pod_specs(objects) for c in containers(spec) if "postgres" not in c["image"]}
    assert len(images) == 1  # one kustomize `images:` entry sets the registry and tag for all


@needs_kubectl
def test_the_worker_job_scales_retries_and_stops_as_the_service_does() -> None:
    objects = {o["metadata"]["name"]: o for o in render("base")}
    job = objects["svmhpo-worker"]["spec"]
    assert job["parallelism"] == job["completions"] >= 2 and job["backoffLimit"] >= 1
    rules = job["podFailurePolicy"]["rules"]
    assert {"action": "FailJob", "onExitCodes": {"containerName": "worker", "operator": "In", "values": [2]}} in rules
    assert {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]} in rules
    assert job["template"]["spec"]["restartPolicy"] == "Never"
    # a stopped worker puts its trials back and exits within about 10 s (tests/test_compose_up.py)
    assert job["template"]["spec"]["terminationGracePeriodSeconds"] >= 15
    gpu = {o["metadata"]["name"]: o for o in render("overlays/gpu")}["svmhpo-worker"]["spec"]["template"]["spec"]
    assert gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert gpu["tolerations"][0]["key"] == "nvidia.com/gpu"


def _database(pg_url: str) -> tuple[str, str]:
    import psycopg
    import sqlalchemy

    name = f"svmhpo_k8s_{uuid.uuid4().hex[:8]}"
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, sqlalchemy.make_url(pg_url).set(database=name).render_as_string(hide_password=False)


def _run_env(container: dict, url: str, home: Path, shims: Path) -> dict[str, str]:
    env = dict(os.environ, SVMHPO_HOME=str(home), PATH=f"{shims}{os.pathsep}{os.environ['PATH']}")
    env.pop("SVMHPO_STORAGE", None)
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "svmhpo-database", item
            env[item["name"]] = {"url": url, "password": "unused"}[ref["key"]]
    return env


@needs_kubectl
@pytest.mark.postgres
def test_the_manifests_commands_run_here(pg_url: str, tmp_path: Path) -> None:
    """init, the workers' wait for the study, the worker and the dashboard, as rendered (the
    image's `svmhpo` is the project's CLI with the no-op trainer; its working folder, /app, holds
    `studies/` as the repository does)."""
    import optuna
    import psycopg

    shims = tmp_path / "bin"
    shims.mkdir()
    shim = shims / "svmhpo"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m svmhpo.testing "$@"\n')
    shim.chmod(0o755)
    objects = {o["metadata"]["name"]: o for o in render("base")}
    spec = {name: objects[name]["spec"]["template"]["spec"] for name in ("svmhpo-init", "svmhpo-worker")}
    spec["svmhpo-dashboard"] = objects["svmhpo-dashboard"]["spec"]["template"]["spec"]
    (init,) = spec["svmhpo-init"]["containers"]
    (wait,) = spec["svmhpo-worker"]["initContainers"]
    (worker,) = spec["svmhpo-worker"]["containers"]
    (dashboard,) = spec["svmhpo-dashboard"]["containers"]
    database, url = _database(pg_url)

    def run(container: dict, timeout: float, **kwargs) -> subprocess.CompletedProcess:
        command = container["command"] + container.get("args", [])
        env = _run_env(container, url, tmp_path / "home", shims)
        return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, **kwargs)

    try:
        with pytest.raises(subprocess.TimeoutExpired):  # no study yet: the workers' init container waits
            run(wait, 8)
        done = run(init, 240)
        assert done.returncode == 0, done.stderr
        assert run(wait, 60).returncode == 0  # the study is there: the worker may start
        done = run(worker, 400)
        assert done.returncode == 0, done.stderr
        study = optuna.load_study(study_name="digits", storage=url)
        states = [t.state for t in study.get_trials()]
        assert sum(s.is_finished() for s in states) == 200 and not [s for s in states if not s.is_finished()]
        port = free_port()
        args = [str(port) if a == "8080" else a for a in dashboard["args"]]
        env = _run_env(dashboard, url, tmp_path / "home", shims)
        proc = subprocess.Popen(dashboard["command"] + args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
        try:
            path = objects["svmhpo-dashboard"]["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
            wait_for(lambda: _ok(f"http://127.0.0.1:{port}{path['httpGet']['path']}"), 60, "the dashboard")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    finally:
        with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def _ok(address: str) -> bool:
    try:
        with urllib.request.urlopen(address, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False

"""``dev/gpu-check``, rehearsed here: ``prepare`` for the GPU machine's Python (the wheels it lacks,
under the 64 MiB the machine takes) and for this one, then ``run --device cpu``: the same script
end to end, the wheels installed the same way into a temporary folder, every part on the CPU at
small sizes. Needs PyPI (the registries are reachable here and in CI)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "dev" / "gpu-check"


def _prepare(python: str, wheels: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, str(SCRIPT), "prepare", "--python", python, "--wheels", str(wheels)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_prepare_fetches_what_the_gpu_machine_lacks_and_it_fits(tmp_path: Path) -> None:
    done = _prepare("3.12", tmp_path / "wheels")
    assert done.returncode == 0, done.stderr
    assert "under the 64 MiB limit" in done.stdout and "python3 dev/gpu-check run" in done.stdout
    names = {w.name.split("-")[0].lower() for w in (tmp_path / "wheels").glob("*.whl")}
    assert {"optuna", "optuna_integration", "optuna_dashboard", "sqlalchemy", "alembic", "pydantic", "plotly"} <= names
    assert {"pydantic_core", "pandas", "pytest"} <= names
    assert not names & {"torch", "lightning", "numpy", "scikit_learn", "scipy", "tqdm"}  # the image has them
    for wheel in (tmp_path / "wheels").glob("*.whl"):  # built for CPython 3.12 (or pure Python)
        tag = wheel.name.rsplit("-", 3)[1]
        assert tag in ("py3", "py2.py3") or "cp312" in tag, wheel.name
        with zipfile.ZipFile(wheel) as archive:
            assert archive.namelist()


def test_run_rehearses_every_part_on_the_cpu(tmp_path: Path) -> None:
    wheels, out = tmp_path / "wheels", tmp_path / "out"
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert _prepare(python, wheels).returncode == 0
    command = [sys.executable, str(SCRIPT), "run", "--device", "cpu", "--wheels", str(wheels), "--out", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads((out / "gpu.json").read_text())
    assert figures["device"] == "cpu" and figures["machine"]["gpu"] is None
    for module, path in figures["machine"]["modules"].items():  # imported from the installed wheels
        assert "gpu-check-" in path, (module, path)
    parts = figures["parts"]
    assert list(parts) == ["tests", "epoch", "throughput", "study"]  # smallest first
    assert all(part["status"] == "ok" for part in parts.values()), parts
    assert parts["epoch"]["figures"]["ratio_bs256"] > 0
    assert set(parts["throughput"]["figures"]["trials_per_s"]) == {"1", "4"}
    study = parts["study"]["figures"]
    assert study["one_per_fit"]["finished"] > 0 and study["batched"]["finished"] > 0
    assert "device: CPU" in (out / "gpu.log").read_text()

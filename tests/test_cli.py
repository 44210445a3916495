"""The command line, run in-process through main(argv) and once as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from svmhpo.cli import ExitStatus, main


def test_train_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--epochs", "5", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["data"] == "digits"
    assert result["val_acc"] > 0.9 and result["test"]["acc"] > 0.9


def test_user_error_is_one_line_without_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "svmhpo", "train", "--data", "/nonexistent/data.csv"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == ExitStatus.USER_ERROR
    assert proc.stderr.strip() == "svmhpo: error: /nonexistent/data.csv: no such file"
    assert "Traceback" not in proc.stderr


def test_commands_that_only_read_studies_do_not_import_torch(small_study: tuple[str, str], tmp_path) -> None:
    """``studies``, ``best`` and ``report`` start in about a second: torch and Lightning stay unloaded."""
    url, name = small_study
    script = (
        "import sys\n"
        "from svmhpo.cli import main\n"
        f"assert main(['studies', '--storage', {url!r}, '--json']) == 0\n"
        f"assert main(['best', '--study-name', {name!r}, '--storage', {url!r}, '--json']) == 0\n"
        f"assert main(['report', '--study-name', {name!r}, '--storage', {url!r}, '--out', {str(tmp_path)!r}]) == 0\n"
        "print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert list(tmp_path.glob("*.html"))

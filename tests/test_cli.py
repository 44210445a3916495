"""The command line, run in-process through main(argv) and once as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from svmhpo.cli import EXIT_USER_ERROR, main


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
    assert proc.returncode == EXIT_USER_ERROR
    assert proc.stderr.strip() == "svmhpo: error: /nonexistent/data.csv: no such file"
    assert "Traceback" not in proc.stderr

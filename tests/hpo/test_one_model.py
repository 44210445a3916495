"""Exactly one model per study: a run killed at each point of storing its model, a failed write, a re-run.

Each case runs the real command line (with the no-op trainer for the trials and a real refit) in
a process of its own that dies or fails at one point of :func:`svmhpo.hpo.finalize.finalize`,
then reads the study: the exit status, the one line, the artifact records and files, ``final``.
The same command then tops the study up to exactly one model.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest

from svmhpo.files import TEMP_PREFIX
from svmhpo.hpo import records
from svmhpo.hpo.studies import read_study

#: The svmhpo command line with the no-op trainer and one fault planted where the test says.
FAULTY = textwrap.dedent("""
    import errno, os, signal, sys
    from svmhpo.testing import install_noop_trainer
    from svmhpo.hpo import records, storage

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    def disk_full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    def during_upload(fault_fn):  # the fault strikes only while the artifact store writes
        real = storage.write_atomically
        def write(path, content):
            os.fsync = fault_fn
            return real(path, content)
        return write

    fault = sys.argv[1]
    if fault == "after-upload":  # the model file and record are stored; final is not
        records.set_final = die
    elif fault == "mid-write":  # the record is stored, the file written under its temporary name
        storage.write_atomically = during_upload(die)  # killed before the rename
    elif fault == "disk-full":
        storage.write_atomically = during_upload(disk_full)
    install_noop_trainer()
    from svmhpo.cli import main
    sys.exit(main(sys.argv[2:]))
""")


from conftest import assert_one_model  # noqa: E402


def optuna_writes_first() -> bool:
    """Whether this Optuna's ``upload_artifact`` writes the file before its record (5.1 and later)."""
    return tuple(int(part) for part in optuna.__version__.split(".")[:2]) >= (5, 1)


def _study(url: str) -> optuna.Study:
    return read_study("one", url)


@pytest.mark.parametrize("fault", ["after-upload", "mid-write", "disk-full"])
def test_a_run_that_dies_or_fails_storing_its_model_leaves_one_model_after_the_rerun(
    tmp_path: Path, study_config, fault: str
) -> None:
    url = f"sqlite:///{tmp_path / 'one.db'}"
    config = study_config("one", trials=4, epochs=2, warm=False, pruner="none", batch_trials=1)
    args = ["run", "--config", str(config), "--storage", url, "--quiet"]
    broken = subprocess.run([sys.executable, "-c", FAULTY, fault, *args], capture_output=True, text=True, timeout=180)
    study = _study(url)
    folder = tmp_path / "one.artifacts"
    files = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    if fault == "disk-full":
        assert broken.returncode == 1, broken.stderr
        assert broken.stderr.strip().splitlines() == [
            f"svmhpo: error: {folder}: cannot write the study's model (No space left on device)"
        ]
        assert records.model_artifacts(study) == [] and files == []  # no record names a missing file
        best = subprocess.run(
            [sys.executable, "-m", "svmhpo", "best", "--study-name", "one", "--storage", url],
            capture_output=True,
            text=True,
        )
        assert "the budget is spent but no refit is stored" in best.stdout, best.stdout
    else:
        assert broken.returncode == -9, broken.stderr  # SIGKILL
        stored = records.model_artifacts(study)
        if fault == "after-upload":
            assert len(stored) == 1 and files == [stored[0]["artifact_id"]]
        else:
            assert [f for f in files if not f.startswith(TEMP_PREFIX)] == []  # never half a model under its name
            # Optuna before 5.1 records the artifact before writing its file, 5.1 after: at most one record
            assert len(stored) == (0 if optuna_writes_first() else 1)
    assert records.final(study) is None
    again = subprocess.run([sys.executable, "-m", "svmhpo.testing", *args], capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stderr
    study = _study(url)
    files = [p for p in folder.iterdir() if not p.name.startswith(TEMP_PREFIX)]
    assert len(files) == 1
    if fault == "mid-write":
        _one_record(study, files[0])
    else:
        assert_one_model(study)


def _one_record(study: optuna.Study, file: Path) -> None:
    """After a kill mid-write a hidden temporary file may stay; the model itself is one."""
    models = records.model_artifacts(study)
    assert [m["artifact_id"] for m in models] == [file.name] == [records.final(study)["model_artifact_id"]]

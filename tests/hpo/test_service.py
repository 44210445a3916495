"""The study service end to end: SQLite and PostgreSQL, budgets, resume, workers, SIGKILL, stock CLI.

Real Lightning fits where the fit is the point (the warm start, divergence, the refit); the no-op
trainer of :mod:`svmhpo.testing` where the study machinery is (budgets, workers, retries).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from svmhpo.cli import ExitStatus, main
from svmhpo.hpo import records
from svmhpo.hpo.config import load_config
from svmhpo.hpo.service import run_study
from svmhpo.hpo.space import decode
from svmhpo.hpo.studies import read_study
from svmhpo.svm.training import fit
from svmhpo.testing import HOLD_ENV, MARK_ENV, wait_for

SVMHPO_NOOP = [sys.executable, "-m", "svmhpo.testing"]  # the svmhpo command line with the no-op trainer


def _study(url: str, name: str) -> optuna.Study:
    return read_study(name, url)


def _finished(study: optuna.Study) -> int:
    return len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)))


def test_a_real_study_warm_starts_reports_every_epoch_and_refits(tmp_path: Path, study_config, digits, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    config = study_config("real", trials=6)  # batches of 8 by default: one batch of 6
    assert main(["run", "--config", str(config), "--storage", url, "--quiet", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    study = _study(url, "real")
    assert _finished(study) == 6
    assert set(study.user_attrs["warm_start"]) == {"sgd", "asgd", "adam", "adamw"}
    assert set(records.lr_finder_curves(study)) == {"sgd", "asgd", "adam", "adamw"}
    warm = [t for t in study.trials if t.user_attrs.get("source") == "warm_start"]
    assert [t.number for t in warm] == [0, 1, 2, 3]  # the warm-start rates ran first
    # what a person reads stays human-sized: the curves and the config are system attributes
    assert {k: len(json.dumps(v)) < 600 for k, v in study.user_attrs.items()} == dict.fromkeys(
        ["metric", "budget", "data", "features", "warm_start", "final", "baseline"], True
    )
    listing = subprocess.run(
        [str(Path(sys.executable).with_name("optuna")), "studies", "--storage", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "real" in listing and max(map(len, listing.splitlines())) < 1500
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        assert len(t.intermediate_values) == 3  # val_acc reported every epoch
        assert t.user_attrs["seed"] == 0  # the batch's seed: config seed + its first trial's number
        # a batch member is its single fit: the stored seed reproduces its value alone
        params, batch_size = decode(t.params, load_config(config))
        _, trainer = fit(params, digits, epochs=3, batch_size=batch_size, seed=t.user_attrs["seed"])
        assert float(trainer.callback_metrics["val_acc"]) == pytest.approx(t.value, abs=1e-5)
    final = first["final"]
    assert final["trial"] == first["best"]["trial"] and 0.5 < final["test_acc"] <= 1
    assert Path(final["model_path"]).is_file()
    assert first["baseline"]["test_acc"] > 0.9
    # a larger budget tops up to it, reusing the stored warm start
    assert main(["run", "--config", str(config), "--storage", url, "--trials", "8", "--quiet"]) == 0
    study = _study(url, "real")
    assert _finished(study) == 8
    assert len([t for t in study.trials if t.user_attrs.get("source") == "warm_start"]) == 4
    assert {t.user_attrs["seed"] for t in study.trials[6:]} == {6}


def test_budget_counts_every_run_and_resume_tops_up(tmp_path: Path, study_config, noop_trainer, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    config = study_config("resume", trials=6, warm=False)
    assert main(["run", "--config", str(config), "--storage", url, "--quiet"]) == 0
    study = _study(url, "resume")
    assert _finished(study) == 6
    # the same command again: the budget is met, nothing more runs
    assert main(["run", "--config", str(config), "--storage", url, "--quiet"]) == 0
    assert len(_study(url, "resume").trials) == 6
    # a larger budget tops up to it; an interrupted run (a timeout here) is topped up by the next
    assert main(["run", "--config", str(config), "--storage", url, "--trials", "20", "--quiet"]) == 0
    assert _finished(_study(url, "resume")) == 20
    capsys.readouterr()
    assert main(["best", "--study-name", "resume", "--storage", url, "--json"]) == 0
    best = json.loads(capsys.readouterr().out)
    assert best["final"]["trial"] == best["best"]["trial"]  # refit once the budget was met
    assert best["trials"]["complete"] + best["trials"]["pruned"] == 20 and best["budget"] == 20


def test_a_different_config_under_the_same_name_is_refused(tmp_path: Path, study_config, noop_trainer, capsys) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["run", "--config", str(study_config("same", trials=1, warm=False)), "--storage", url, "--quiet"]) == 0
    other = study_config("same", trials=1, epochs=5, warm=False)
    assert main(["run", "--config", str(other), "--storage", url, "--quiet"]) == ExitStatus.USER_ERROR
    assert "already exists with another config ([training] epochs 3 -> 5)" in capsys.readouterr().err
    assert len(_study(url, "same").trials) == 1  # the study is untouched


def test_diverging_trials_are_pruned_and_the_study_goes_on(tmp_path: Path, study_config) -> None:
    config = load_config(
        study_config(
            "diverge",
            trials=3,
            warm=False,
            pruner="none",
            extra="""
[search]
lr = [1e20, 1e30]
squared = [true]
optimizer = ["sgd"]
weight_decay = [1e-9, 1e-8]
""",
        )
    )
    result = run_study(config, f"sqlite:///{tmp_path / 'd.db'}")
    study = _study(f"sqlite:///{tmp_path / 'd.db'}", "diverge")
    assert len(study.get_trials(states=(TrialState.PRUNED,))) == 3
    assert all("diverged" in t.user_attrs for t in study.trials)
    assert result["final"] is None and result["best"] is None


def test_stock_optuna_cli_reads_the_study(tmp_path: Path, study_config, noop_trainer) -> None:
    url = f"sqlite:///{tmp_path / 'stock.db'}"
    run_study(load_config(study_config("stock", trials=2, warm=False)), url)
    optuna_cli = Path(sys.executable).with_name("optuna")
    out = subprocess.run(
        [str(optuna_cli), "studies", "--storage", url, "-f", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert [s["name"] for s in json.loads(out)] == ["stock"]
    out = subprocess.run(
        [str(optuna_cli), "trials", "--storage", url, "--study-name", "stock", "-f", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert len(json.loads(out)) == 2


@pytest.mark.postgres
def test_postgres_two_workers_share_one_study(pg_url: str, study_config, noop_trainer, monkeypatch, capsys) -> None:
    name = f"pg-{uuid.uuid4().hex[:8]}"
    # trials long enough (0.4 s each) that both workers get some after their imports
    monkeypatch.setenv("SVMHPO_NOOP_EPOCH_S", "0.1")
    # one trial per fit, so that both workers get trials whatever their start-up times (a batch
    # of 16 would let the first take the whole budget); batches across workers: test_compose_up
    config = study_config(name, trials=8, epochs=4, source="synthetic:2000x64x10", warm=False, batch_trials=1)
    try:
        assert main(["run", "--config", str(config), "--storage", pg_url, "--jobs", "2", "--quiet"]) == 0
        study = _study(pg_url, name)
        finished = _finished(study)
        assert finished == 8  # one trial per fit meets the budget exactly too
        workers = {
            t.user_attrs.get("worker") for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        }
        assert len(workers) == 2  # both processes pulled trials from the one study
        # refit once, by the worker that finished last (a no-op refit there; the real refit on a
        # server and its model in the database: test_artifacts)
        assert study.user_attrs["final"]["trial"] == study.best_trial.number
        assert study.user_attrs["final"]["model_store"] == "database"
        capsys.readouterr()
        assert main(["studies", "--storage", pg_url, "--json"]) == 0
        rows = {r["study"]: r for r in json.loads(capsys.readouterr().out)}
        assert rows[name]["complete"] + rows[name]["pruned"] == finished
    finally:
        optuna.delete_study(study_name=name, storage=pg_url)


def _wait_inside_a_fit(mark: Path, timeout: float = 180) -> None:
    """Wait until the no-op process has reported an epoch (:data:`svmhpo.testing.MARK_ENV`): it is
    inside a fit, every member asked with its parameters (a kill while a batch is being asked is
    the orphan case of test_batches). The study hears reported values only in bulk, so polling
    it for them would wait for its first write."""
    wait_for(lambda: mark.is_file() and mark.read_text().strip(), timeout, "the worker to be inside a fit", 0.05)


@pytest.mark.parametrize("batch_trials", [1, 4])
def test_sigkilled_worker_loses_nothing(tmp_path: Path, study_config, batch_trials: int) -> None:
    """SIGKILL mid-trial; the stale trial is failed after the grace period, retried, and the budget met exactly."""
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    config = study_config(
        "kill", trials=4, epochs=4, warm=False, pruner="none", heartbeat=1, grace=3, batch_trials=batch_trials
    )
    command = [*SVMHPO_NOOP, "run", "--config", str(config), "--storage", url, "--quiet"]
    env = dict(os.environ, SVMHPO_NOOP_EPOCH_S="0.2")
    mark = tmp_path / "epochs"
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env=dict(env, **{MARK_ENV: str(mark), HOLD_ENV: "1"}),  # held inside its first fit until killed
    )  # fmt: skip
    try:
        _wait_inside_a_fit(mark)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    study = _study(url, "kill")
    victims = [t for t in study.trials if t.state == TrialState.RUNNING]
    # left behind by the dead worker: its one trial, or every member of its batch
    assert len(victims) == (1 if batch_trials == 1 else 4)
    time.sleep(4)  # past the grace period
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    study = _study(url, "kill")
    for victim in victims:
        assert study.trials[victim.number].state == TrialState.FAIL
        retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == victim.number]
        assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
        assert retried[0].params == study.trials[victim.number].params
    assert _finished(study) == 4  # exactly the budget with one process
    assert "final" in study.user_attrs


def test_three_workers_on_one_sqlite_file_never_lock(tmp_path: Path, study_config, noop_trainer, monkeypatch, capfd):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    # trials long enough (0.3 s) that the workers overlap after their imports
    monkeypatch.setenv("SVMHPO_NOOP_EPOCH_S", "0.1")
    config = study_config("shared", trials=15, epochs=3, warm=False, pruner="none", batch_trials=1)
    assert main(["run", "--config", str(config), "--storage", url, "--jobs", "3", "--quiet"]) == 0
    study = _study(url, "shared")
    assert _finished(study) == 15  # one trial per fit, three processes: exactly the budget
    assert not study.get_trials(states=(TrialState.FAIL,))
    assert len({t.user_attrs["worker"] for t in study.trials}) >= 2
    assert "database is locked" not in capfd.readouterr().err


def test_batch_size_is_searchable(tmp_path: Path, study_config, noop_trainer) -> None:
    config = load_config(
        study_config(
            "bs",
            trials=4,
            epochs=2,
            pruner="none",
            extra="""
[search]
batch_size = [32, 256]
""",
        )
    )
    result = run_study(config, f"sqlite:///{tmp_path / 'bs.db'}")
    study = _study(f"sqlite:///{tmp_path / 'bs.db'}", "bs")
    assert {t.params["batch_size"] for t in study.trials} <= {32, 256}
    warm = [t for t in study.trials if t.user_attrs.get("source") == "warm_start"]
    assert all(t.params["batch_size"] == 32 for t in warm)  # the configured size is not a choice: the first one
    assert "batch_size" in result["final"]["params"]


def test_one_worker_command_serves_several_gpus(tmp_path: Path, study_config, noop_trainer, monkeypatch) -> None:
    """``worker --gpus 0,1`` runs one process per GPU id, each told its own CUDA_VISIBLE_DEVICES.

    On this CPU machine the children train on the CPU; what is checked is the fan-out."""
    from svmhpo.errors import SvmhpoError
    from svmhpo.hpo.workers import visible_gpus

    url = f"sqlite:///{tmp_path / 'gpus.db'}"
    # one trial per fit, ~1 s each: the second process gets trials even when the first starts
    # seconds earlier on a loaded machine (a batch would take the whole budget at once)
    monkeypatch.setenv("SVMHPO_NOOP_EPOCH_S", "0.3")
    config = study_config("gpus", trials=10, epochs=3, warm=False, pruner="none", batch_trials=1)
    assert main(["init", "--config", str(config), "--storage", url]) == 0
    assert main(["worker", "--study-name", "gpus", "--storage", url, "--gpus", "0,1", "--quiet"]) == 0
    study = _study(url, "gpus")
    assert _finished(study) == 10
    assert len({t.user_attrs["worker"] for t in study.trials}) == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5,6")
    assert visible_gpus("all") == ["3", "5", "6"] and visible_gpus("2") == ["3", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(SvmhpoError, match="no GPU is visible"):
        visible_gpus("all")


def test_a_budget_below_the_finished_trials_is_refused(tmp_path: Path, study_config, noop_trainer, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}"
    config = study_config("shrink", trials=6, warm=False)
    assert main(["run", "--config", str(config), "--storage", url, "--quiet"]) == 0
    capsys.readouterr()
    assert main(["run", "--config", str(config), "--storage", url, "--trials", "4", "--quiet"]) == ExitStatus.USER_ERROR
    err = capsys.readouterr().err.strip()
    assert err == (
        "svmhpo: error: study 'shrink' already has 6 finished trials; a budget of 4 is below that (give 6 or more)"
    )
    assert records.budget(_study(url, "shrink")) == 6  # the stored budget is untouched


def test_a_run_whose_data_cannot_load_leaves_no_study(tmp_path: Path, study_config, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'g.db'}"
    config = study_config("ghost", source=str(tmp_path / "missing.csv"))
    assert main(["run", "--config", str(config), "--storage", url, "--quiet"]) == ExitStatus.USER_ERROR
    assert "missing.csv: no such file" in capsys.readouterr().err
    assert optuna.get_all_study_names(storage=url) == []

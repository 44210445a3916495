"""Every process samples differently: workers started together, a run with workers, a run killed and resumed.

Processes are real (``python -m svmhpo.testing``: the command line with the no-op trainer) and
start together on one SQLite file, as ``docker compose up --scale worker=N`` starts them; each
test reads the study afterwards: finished trials, distinct configurations, nothing RUNNING,
one model.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from svmhpo.hpo import records
from svmhpo.hpo.space import _random_states, make_sampler, sampling_seed
from svmhpo.hpo.studies import read_study
from svmhpo.testing import HOLD_ENV, MARK_ENV, wait_for

NOOP = [sys.executable, "-m", "svmhpo.testing"]
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def _study(url: str, name: str) -> optuna.Study:
    return read_study(name, url)


def _distinct_share(study: optuna.Study) -> tuple[int, int]:
    """(distinct parameter sets, finished trials) among the finished trials."""
    finished = study.get_trials(deepcopy=False, states=FINISHED)
    return len({tuple(sorted(t.params.items())) for t in finished}), len(finished)


def _assert_settled(study: optuna.Study, budget: int) -> None:
    distinct, finished = _distinct_share(study)
    assert finished == budget, finished  # exactly the budget, whatever the batch size
    assert distinct >= 0.95 * finished, f"{distinct} distinct configurations of {finished}"
    assert not study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
    assert len(records.model_artifacts(study)) == 1
    assert "final" in study.user_attrs


def _env(epoch_s: float) -> dict[str, str]:
    return dict(os.environ, SVMHPO_NOOP_EPOCH_S=str(epoch_s), OMP_NUM_THREADS="1")


@pytest.mark.parametrize("batch_trials", [1, 16])
@pytest.mark.parametrize("first", ["worker", "run"])
def test_four_processes_started_together_sample_different_points(
    tmp_path: Path, study_config, batch_trials: int, first: str
):
    """On a study ``init`` created, four processes started at one moment, as ``docker compose up
    --scale worker=4`` starts them: four workers, or ``svmhpo run`` and three workers."""
    url = f"sqlite:///{tmp_path / 'four.db'}"
    budget = 32 if batch_trials == 1 else 64
    config = study_config("four", trials=budget, epochs=3, warm=False, pruner="none", batch_trials=batch_trials)
    init = subprocess.run([*NOOP, "init", "--config", str(config), "--storage", url], capture_output=True, text=True)
    assert init.returncode == 0, init.stderr
    worker = [*NOOP, "worker", "--study-name", "four", "--storage", url, "--quiet"]
    run = [*NOOP, "run", "--config", str(config), "--storage", url, "--quiet"]
    commands = [run if first == "run" else worker, worker, worker, worker]
    procs = [subprocess.Popen(c, env=_env(0.02), stderr=subprocess.PIPE, text=True) for c in commands]
    errors = [p.communicate(timeout=240)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    study = _study(url, "four")
    _assert_settled(study, budget)
    assert len({t.user_attrs["worker"] for t in study.trials}) >= 2  # they really ran side by side


@pytest.mark.parametrize("batch_trials", [1, 16])
def test_a_run_killed_and_resumed_samples_new_points(tmp_path: Path, study_config, batch_trials: int):
    """K = 16: killed inside its first batch, all 16 asked. K = 1: killed after 6 trials. Either
    way a resumed run that drew the same sequence again would repeat what the killed run drew."""
    url = f"sqlite:///{tmp_path / 'resume.db'}"
    budget = 24 if batch_trials == 1 else 40
    config = study_config(
        "resume", trials=budget, epochs=3, warm=False, pruner="none", batch_trials=batch_trials, heartbeat=1, grace=2
    )
    command = [*NOOP, "run", "--config", str(config), "--storage", url, "--quiet"]
    before = 0 if batch_trials > 1 else 6
    # the no-op fit notes each epoch it reports and holds, until killed, inside the first batch's
    # first epoch (K = 16) or the seventh trial's (K = 1: 6 trials of 3 epochs done before it), so
    # the kill lands inside a fit every time, whatever the machine's load
    mark = tmp_path / "epochs"
    hold = 1 if batch_trials > 1 else 3 * before + 1
    env = dict(_env(0.0), **{MARK_ENV: str(mark), HOLD_ENV: str(hold)})

    def caught() -> bool:
        if not mark.exists() or len(mark.read_text().splitlines()) < hold:
            return False
        study = _study(url, "resume")
        running = study.get_trials(states=(TrialState.RUNNING,))
        return len(study.get_trials(states=FINISHED)) >= before and len(running) >= min(batch_trials, 16)

    proc = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(caught, timeout=90, what="a running trial", interval=0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    killed = _study(url, "resume").get_trials(states=(TrialState.RUNNING,))
    finished = _study(url, "resume").get_trials(states=FINISHED)
    assert killed and len(finished) < budget // 2
    if batch_trials > 1:
        assert not finished  # killed inside its first batch
    done = subprocess.run(command, env=_env(0.0), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    study = _study(url, "resume")
    _assert_settled(study, budget)
    # the killed run's trials were failed at once (their process is gone) and re-run
    assert {t.number for t in study.get_trials(states=(TrialState.FAIL,))} == {t.number for t in killed}


def test_each_trial_has_its_own_random_stream_and_a_lone_run_repeats() -> None:
    assert sampling_seed(0, 1) != sampling_seed(0, 2) != sampling_seed(1, 2)
    assert sampling_seed(7, 3) == sampling_seed(7, 3)
    for sampler in ("tpe", "random", "gp"):
        config = _config(sampler)
        assert _random_states(make_sampler(config)), f"{sampler}: no random state found to reseed"

    def draws(seed_trials: int) -> list[float]:
        study = optuna.create_study(sampler=make_sampler(_config("tpe")), direction="maximize")
        for _ in range(seed_trials):
            study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
        return [t.params["x"] for t in study.trials]

    assert draws(12) == draws(12)  # the same study seed and order: the same points
    assert len(set(draws(12))) == 12


def _config(sampler: str):
    from svmhpo.hpo.config import StudyConfig

    return StudyConfig().replace(sampler=sampler)


def test_ties_resolve_to_the_earliest_trial_every_time(tmp_path: Path) -> None:
    """Validation accuracy moves in steps of one sample: tied trials are common, and the refit,
    the report and ``best`` must name the same one, whatever order the database returns."""
    from svmhpo.hpo.studies import best_trial

    study = optuna.create_study(direction="maximize", storage=f"sqlite:///{tmp_path / 't.db'}")
    for value in (0.5, 0.75, 0.75, 0.25, 0.75):
        study.add_trial(optuna.trial.create_trial(value=value))
    assert best_trial(study).number == 1

"""Ctrl-C typed in a real terminal: inside a fit (one trial per fit, and a batch) and during the warm start.

``svmhpo run`` runs on a pseudo-terminal as its controlling terminal, and the test types ``^C``
into it, so the terminal driver sends SIGINT to the foreground process group exactly as a person's
Ctrl-C does. The run must exit 130 with one line, leave no trial RUNNING, and the same command
must then top the study up.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from svmhpo.errors import StorageError
from svmhpo.hpo.studies import read_study
from svmhpo.testing import wait_for


def _study(url: str, name: str) -> optuna.Study | None:
    try:
        return read_study(name, url)
    except StorageError:  # not created yet
        return None


def _last_line(text: str) -> str:
    """The last line printed, without the ``^C`` the terminal echoes when Ctrl-C is typed."""
    return [line for line in text.splitlines() if line.strip()][-1].removeprefix("^C")


INTERRUPTED = (
    "svmhpo: interrupted: finished trials are kept and the running ones were marked failed; "
    "the same command tops the study up"
)


@pytest.mark.parametrize("batch_trials", [1, 16])
def test_ctrl_c_inside_a_fit_fails_the_running_trials_and_exits_130(
    tmp_path: Path, study_config, terminal, batch_trials: int
) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    config = study_config("ctrlc", trials=400, epochs=20, warm=False, batch_trials=batch_trials)
    command = ["run", "--config", str(config), "--storage", url, "--quiet"]
    env = dict(os.environ, SVMHPO_HOME=str(tmp_path))
    term = terminal(command, env)

    def running() -> bool:
        term.poll_output()
        study = _study(url, "ctrlc")
        return bool(study and study.get_trials(states=(TrialState.RUNNING,)))

    wait_for(running, 90, "a trial to run", interval=0.1)
    term.ctrl_c()
    assert term.wait() == 130, term.text
    assert _last_line(term.text) == INTERRUPTED, term.text
    assert "Traceback" not in term.text and "KeyboardInterrupt" not in term.text, term.text
    study = _study(url, "ctrlc")
    assert not study.get_trials(states=(TrialState.RUNNING,)), term.text
    assert study.get_trials(states=(TrialState.FAIL,)), term.text  # the interrupted trial(s)
    finished = len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)))
    # the same command, with a budget a little above what was kept, tops the study up
    again = terminal([*command, "--trials", str(finished + 3)], env)
    assert again.wait() == 0, again.text
    assert len(_study(url, "ctrlc").get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == finished + 3


def test_ctrl_c_during_the_warm_start_exits_130_and_keeps_nothing_half_done(
    tmp_path: Path, study_config, terminal
) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    # a long LR-finder sweep, so that Ctrl-C lands inside it
    path = study_config("warmc", trials=3, epochs=2)
    path.write_text(path.read_text().replace("num_training = 30\n", "num_training = 3000\n"))
    command = ["run", "--config", str(path), "--storage", url, "--quiet"]
    env = dict(os.environ, SVMHPO_HOME=str(tmp_path))
    term = terminal(command, env)

    def warming_up() -> bool:
        term.poll_output()
        study = _study(url, "warmc")
        return bool(study and not study.trials and "warm_start" not in study.user_attrs)

    wait_for(warming_up, 90, "the warm start", interval=0.1)
    time.sleep(1.0)  # inside the LR finder's sweep
    term.ctrl_c()
    assert term.wait() == 130, term.text
    assert _last_line(term.text) == INTERRUPTED
    assert "Traceback" not in term.text
    study = _study(url, "warmc")
    assert not study.trials and "warm_start" not in study.user_attrs

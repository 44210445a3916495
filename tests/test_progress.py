"""What a person sees while a study runs: phases and counts, piped, in a terminal, from a worker."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from svmhpo.hpo.studies import Counts, read_study
from svmhpo.view.progress import StudyProgress

SVMHPO_NOOP = [sys.executable, "-m", "svmhpo.testing"]  # the command line with the no-op trainer


def _counts(complete: int, pruned: int = 0, best: float | None = 0.9) -> Counts:
    return Counts(complete, pruned, 0, 0, 0, best)


def test_lines_come_at_an_interval_with_a_rate_from_the_trials_alone() -> None:
    now = [0.0]
    out = io.StringIO()
    progress = StudyProgress(40, stream=out, mode="lines", interval=5, clock=lambda: now[0])
    now[0] = 100.0  # a long warm start before the first trial report: not part of the rate
    progress(_counts(0))
    now[0] = 102.0
    progress(_counts(4))  # within the interval: no line
    now[0] = 110.0
    progress(_counts(10))
    now[0] = 130.0
    progress(_counts(40))  # the budget: a line at once
    progress.close()  # nothing new: no repeat
    lines = out.getvalue().splitlines()
    assert lines == [
        "trials 10/40: 10 complete, pruned 0, failed 0, best val_acc 0.9000; 1.00 trials/s, ETA 0:30",
        "trials 40/40: 40 complete, pruned 0, failed 0, best val_acc 0.9000; 1.33 trials/s, done",
    ]


def test_a_finished_study_run_again_prints_no_rate_and_no_eta() -> None:
    out = io.StringIO()
    progress = StudyProgress(40, stream=out, mode="lines", interval=5, clock=lambda: 0.0)
    progress(_counts(40))
    progress.close()
    assert out.getvalue() == ""


def test_no_eta_until_a_tenth_of_the_run_has_finished_and_no_line_twice() -> None:
    now = [0.0]
    out = io.StringIO()
    progress = StudyProgress(200, stream=out, mode="lines", interval=5, clock=lambda: now[0])
    for t, counts in [
        (0, Counts(0, 0, 0, 2, 0, None)),
        (6, Counts(0, 0, 0, 4, 0, None)),  # workers still starting: no trial finished
        (12, Counts(0, 0, 0, 6, 0, None)),  # the same line again: not printed
        (18, Counts(1, 2, 0, 16, 0, 0.5)),  # a batch's first pruned members: a rate, no ETA from 3 trials
        (60, Counts(10, 20, 0, 16, 0, 0.9)),  # a tenth of the run: the ETA
    ]:
        now[0] = t
        progress(counts)
    assert out.getvalue().splitlines() == [
        "trials 0/200: 0 complete, pruned 0, failed 0, best val_acc -; no trial finished yet",
        "trials 3/200: 1 complete, pruned 2, failed 0, best val_acc 0.5000; 0.17 trials/s",
        "trials 30/200: 10 complete, pruned 20, failed 0, best val_acc 0.9000; 0.50 trials/s, ETA 5:40",
    ]


def _env(tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, SVMHPO_HOME=str(tmp_path), SVMHPO_NOOP_EPOCH_S="0.002")


def test_piped_run_and_worker_print_their_phases_and_counts(tmp_path: Path, study_config) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    config = study_config("piped", trials=40, epochs=4)
    run = subprocess.run(  # the real data (its warm start reads it anyway) and refit
        [*SVMHPO_NOOP, "run", "--config", str(config), "--storage", url],
        capture_output=True, text=True, timeout=300, env=dict(_env(tmp_path), SVMHPO_NOOP_ONLY_TRIALS="1"),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    lines = run.stderr.splitlines()
    assert "\r" not in run.stderr  # no bar when piped
    assert lines[0] == "data digits: 1293 train, 144 validation, 360 test samples; 64 features, 10 classes"
    assert lines[1] == "warm start: LR finder, once per optimizer (sgd, asgd, adam, adamw)"
    assert lines[2].startswith("warm start: picked lr sgd ")
    assert lines[3] == "trials: 0 of 40 finished; running the rest, 16 per batched fit, in this process"
    counts = [i for i, line in enumerate(lines) if line.startswith("trials 40/40: ")]
    refit = lines.index("refit: the best trial on train+validation, scored once on test; LinearSVC baseline")
    assert counts and counts[0] < refit
    # a worker on the finished study says that nothing is left
    assert subprocess.run(
        [*SVMHPO_NOOP, "run", "--config", str(config), "--storage", url, "--trials", "40", "--quiet"],
        capture_output=True, text=True, timeout=300, env=_env(tmp_path),
    ).stderr == ""  # fmt: skip
    worker = subprocess.run(
        [*SVMHPO_NOOP, "worker", "--study-name", "piped", "--storage", url],
        capture_output=True, text=True, timeout=300, env=_env(tmp_path),
    )  # fmt: skip
    assert worker.returncode == 0, worker.stderr
    # the no-op side reads no data, and says so
    data, trials = worker.stderr.splitlines()[:2]
    assert data.startswith("data digits (not loaded: no-op trainer): 0 train")
    assert trials == "trials: 40 of 40 finished; nothing left to run"  # no rate, no ETA
    assert not [line for line in worker.stderr.splitlines() if "ETA" in line]
    assert worker.stdout.startswith("study piped: ")  # its summary, as `run` prints it


def test_run_with_jobs_piped_gives_an_eta_that_holds_and_no_line_twice(tmp_path: Path, study_config) -> None:
    """Two local worker processes, stderr read as it comes: every ETA printed is within 3× (plus
    5 s) of the time the run really took from that line to its last count line."""
    import itertools
    import re
    import time

    url = f"sqlite:///{tmp_path / 'j.db'}"
    config = study_config("jobs", trials=120, epochs=10, warm=False)
    env = dict(_env(tmp_path), SVMHPO_NOOP_EPOCH_S="0.3")
    command = [*SVMHPO_NOOP, "run", "--config", str(config), "--storage", url, "--jobs", "2"]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    seen = [(time.monotonic(), line.rstrip("\n")) for line in proc.stderr]
    assert proc.wait(timeout=300) == 0, seen
    counts = [(t, line) for t, line in seen if line.startswith("trials ") and "/120: " in line]
    assert counts and counts[-1][1].startswith("trials 120/120: ") and counts[-1][1].endswith("done"), seen
    assert "ETA ?" not in str(seen)
    texts = [line for _, line in counts]
    assert all(a != b for a, b in itertools.pairwise(texts)), texts  # never the same line twice
    end = counts[-1][0]
    etas = [(t, re.search(r"ETA (\d+):(\d+)$", line)) for t, line in counts]
    for t, eta in etas:
        if eta:
            said = int(eta[1]) * 60 + int(eta[2])
            assert said <= 3 * (end - t) + 5, (said, end - t, texts)


def test_a_terminal_shows_a_bar_with_the_phases_above_it(tmp_path: Path, study_config, terminal) -> None:
    url = f"sqlite:///{tmp_path / 't.db'}"
    config = study_config("tty", trials=40, epochs=4)
    term = terminal(["run", "--config", str(config), "--storage", url], _env(tmp_path), module="svmhpo.testing")
    assert term.wait() == 0, term.text
    assert "warm start: picked lr sgd " in term.text
    assert "40/40" in term.text and "trial/s" in term.text  # tqdm's bar
    assert "trials 40/40: " not in term.text  # no plain count lines in a terminal


def test_a_trial_line_says_state_value_epochs_parameters_and_worker() -> None:
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from svmhpo.view.progress import trial_line

    space = {"lr": FloatDistribution(1e-4, 3.0, log=True)}

    def made(state: TrialState, values: dict[int, float], **attrs) -> str:
        value = values[max(values)] if state == TrialState.COMPLETE else None
        trial = create_trial(
            state=state, value=value, params={"lr": 0.25}, distributions=space,
            intermediate_values=values, user_attrs={"worker": "host:7", **attrs},
        )  # fmt: skip
        trial.number = 7
        return trial_line(trial)

    assert made(TrialState.COMPLETE, {0: 0.5, 1: 0.75}) == (
        "trial 7 complete, val_acc 0.7500 after 2 epochs: lr=0.25; worker host:7"
    )
    assert made(TrialState.PRUNED, {0: 0.5}) == "trial 7 pruned after 1 epochs, val_acc 0.5000: lr=0.25; worker host:7"
    assert made(TrialState.PRUNED, {}, diverged="loss became nan") == (
        "trial 7 pruned, diverged (loss became nan): lr=0.25; worker host:7"
    )
    assert made(TrialState.FAIL, {}, fail_reason="RuntimeError('boom')") == (
        "trial 7 fail (RuntimeError('boom')): lr=0.25; worker host:7"
    )


def _trial_lines(text: str) -> list[int]:
    return sorted(int(line.split()[1]) for line in text.splitlines() if line.startswith("trial "))


def _done_since(url: str, first: int) -> list[int]:

    study = read_study("verbose", url)
    return [t.number for t in study.trials if t.number >= first and t.state.is_finished()]


def test_verbose_prints_each_finished_trial_once_in_process_in_workers_and_in_a_terminal(
    tmp_path: Path, study_config, terminal
) -> None:
    url = f"sqlite:///{tmp_path / 'v.db'}"
    config = study_config("verbose", trials=20, epochs=4, warm=False)
    run = subprocess.run(
        [*SVMHPO_NOOP, "run", "--config", str(config), "--storage", url, "-v"],
        capture_output=True, text=True, timeout=300, env=_env(tmp_path),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert _trial_lines(run.stderr) == list(range(20))
    # local worker processes: the parent prints what they finished, each trial once
    jobs = subprocess.run(
        [*SVMHPO_NOOP, "run", "--config", str(config), "--storage", url, "--trials", "30", "--jobs", "2", "-v"],
        capture_output=True, text=True, timeout=300, env=_env(tmp_path),
    )  # fmt: skip
    assert jobs.returncode == 0, jobs.stderr
    assert _trial_lines(jobs.stderr) == _done_since(url, 20)
    before = len(_done_since(url, 0))
    args = ["run", "--config", str(config), "--storage", url, "--trials", "36", "-v"]
    term = terminal(args, _env(tmp_path), module="svmhpo.testing")
    assert term.wait() == 0, term.text
    assert "36/36" in term.text and _trial_lines(term.text.replace("\r", "\n")) == _done_since(url, before)

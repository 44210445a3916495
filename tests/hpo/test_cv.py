"""``--cv k`` end to end on digits: real batched fits of every trial's folds, the fold scores on the
trials, pruning on the mean, ``trials`` showing them, and the study refusing another k."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from optuna.trial import TrialState

from svmhpo.cli import main
from svmhpo.hpo import records
from svmhpo.hpo.studies import read_study
from svmhpo.hpo.studies import study_config as stored_config


def test_a_cross_validated_study_scores_each_trial_on_its_folds(
    tmp_path: Path, study_config, capsys: pytest.CaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'cv.db'}"
    config = study_config("cv", trials=8, epochs=3, warm=False, batch_trials=4, pruner="median")
    assert main(["run", "--config", str(config), "--storage", url, "--cv", "3", "--quiet", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    study = read_study("cv", url)
    assert stored_config(study).cv == 3
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(finished) == 8
    for trial in finished:
        scores = trial.user_attrs[records.CV_SCORES]
        assert len(scores) == 3 and all(0 <= s <= 1 for s in scores)
        assert trial.user_attrs[records.CV_STD] == pytest.approx(statistics.pstdev(scores))
        # the value and the last reported value are the mean of the folds' at that epoch
        last = trial.intermediate_values[max(trial.intermediate_values)]
        assert last == pytest.approx(statistics.fmean(scores))
        if trial.state == TrialState.COMPLETE:
            assert trial.value == pytest.approx(statistics.fmean(scores))
            assert len(trial.intermediate_values) == 3
    assert max(t.value for t in finished if t.value is not None) > 0.9
    assert summary["final"]["test_acc"] > 0.85  # the refit on train+validation as before
    assert len(summary["best"]["cv_scores"]) == 3
    assert main(["best", "--study-name", "cv", "--storage", url]) == 0
    assert "(mean of 3 folds, std 0." in capsys.readouterr().out
    from svmhpo.hpo.publish import results_markdown

    assert "mean over 3 cross-validation folds" in results_markdown(study)  # the dashboard's study note

    assert main(["trials", "--study-name", "cv", "--storage", url, "-f", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert all(len(row["cv_scores"]) == 3 and row["cv_std"] is not None for row in rows if row["state"] != "FAIL")
    assert main(["trials", "--study-name", "cv", "--storage", url]) == 0
    table = capsys.readouterr().out
    assert "cv_scores" in table.splitlines()[0] and "cv_std" in table.splitlines()[0]

    # the folds are the study's: topping it up with another k is refused, in one line
    assert main(["run", "--config", str(config), "--storage", url, "--cv", "5", "--trials", "10"]) != 0
    err = capsys.readouterr().err
    assert "cv" in err and "Traceback" not in err


def test_a_class_too_rare_for_k_folds_is_one_line_before_any_study(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text('[study]\nname = "tiny"\ntrials = 4\n[data]\nsource = "synthetic:40x4x2"\n')
    url = f"sqlite:///{tmp_path / 'tiny.db'}"
    assert main(["run", "--config", str(config), "--storage", url, "--cv", "20", "--no-warm-start"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        "svmhpo: error: cv = 20 needs at least 20 samples of each class in the training and validation "
        "splits; class 0 of synthetic:40x4x2 has 16"
    ), err
    assert main(["studies", "--storage", url]) == 0
    assert "(none)" in capsys.readouterr().out  # no study was created

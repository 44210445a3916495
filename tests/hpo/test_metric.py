"""``--metric``: a study maximises balanced accuracy or macro F1 end to end, and says so everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from optuna.trial import TrialState

from svmhpo.cli import main
from svmhpo.hpo.studies import read_study


def test_a_macro_f1_study_is_tuned_refit_compared_and_shown_in_its_metric(
    tmp_path: Path, study_config, capsys: pytest.CaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'f1.db'}"
    config = study_config("f1", trials=8, epochs=3, warm=False, batch_trials=4)
    assert main(["run", "--config", str(config), "--storage", url, "--metric", "macro_f1", "--quiet", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["metric"] == "macro_f1"
    best = summary["best"]
    assert "val_acc" not in best and best["val_macro_f1"] > 0.85
    study = read_study("f1", url)
    assert study.metric_names == ["val_macro_f1"]  # the dashboard's axis
    assert best["val_macro_f1"] == max(t.value for t in study.get_trials(states=(TrialState.COMPLETE,)))
    final, base = summary["final"], summary["baseline"]
    assert final["metric"] == "macro_f1" and final["val_macro_f1"] == best["val_macro_f1"]
    assert final["test_macro_f1"] == pytest.approx(final["test_f1"], abs=1e-6)  # ours and torchmetrics' agree
    assert {"val_macro_f1", "test_macro_f1", "test_acc"} <= set(base)  # C picked by macro F1 too

    assert main(["best", "--study-name", "f1", "--storage", url]) == 0
    out = capsys.readouterr().out
    assert f"best trial {best['trial']}: val_macro_f1 {best['val_macro_f1']:.4f}" in out
    assert "points of macro F1" in out or "TIE with the tuned model on test macro F1" in out
    assert main(["studies", "--storage", url, "-f", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["metric"], row["best"], row["test"]) == ("macro_f1", best["val_macro_f1"], final["test_macro_f1"])

    from svmhpo.hpo.publish import results_markdown
    from svmhpo.view.plots import target

    assert "| model | validation macro F1 | test macro F1 |" in results_markdown(study)
    assert target(study) == "validation macro F1 (val_macro_f1)"

    # the metric is the study's: going on with another is refused, in one line naming it
    assert main(["run", "--config", str(config), "--storage", url, "--metric", "accuracy", "--trials", "10"]) == 1
    err = capsys.readouterr().err
    error = [line for line in err.splitlines() if line.startswith("svmhpo: error:")]
    assert len(error) == 1 and "[study] metric 'macro_f1' -> 'accuracy'" in error[0] and "Traceback" not in err, err

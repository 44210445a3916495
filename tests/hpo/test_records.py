"""The study's stored layout: what a study written by an earlier svmhpo holds is still read and continued."""

from __future__ import annotations

import json
from pathlib import Path

import optuna

from svmhpo.cli import main
from svmhpo.hpo import records
from svmhpo.hpo.config import load_config
from svmhpo.hpo.studies import read_study
from svmhpo.hpo.studies import study_config as stored_study_config

CURVES = {
    "sgd": {"lr": [1e-3, 1e-2, 1e-1], "loss": [2.0, 1.0, 3.0], "chosen_lr": 0.05, "lightning_suggestion": 1e-5},
    "adam": {"lr": [1e-3, 1e-2, 1e-1], "loss": [2.0, 1.5, 4.0], "chosen_lr": 0.004, "lightning_suggestion": None},
}


def test_a_study_in_the_first_layout_is_read_and_continued(tmp_path: Path, study_config, noop_trainer, capsys) -> None:
    """svmhpo 0.1.0 kept the config and the LR-finder curves as user attributes."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    path = study_config("old", trials=6, warm=False)
    config = load_config(path)
    optuna.create_study(study_name="old", storage=url, direction="maximize")  # as 0.1.0 did
    study = read_study("old", url)
    study.set_user_attr("config", config.to_dict())
    study.set_user_attr("metric", "val_acc")
    study.set_user_attr("warm_start", CURVES)

    assert records.budget(study) == 6 and records.budget(study.user_attrs) == 6
    assert stored_study_config(study).to_dict() == config.to_dict()
    assert records.lr_finder_curves(study) == CURVES
    assert records.warm_start(study) == {"sgd": 0.05, "adam": 0.004}

    # the same config continues it, with a new budget
    assert main(["run", "--config", str(path), "--storage", url, "--trials", "8", "--quiet"]) == 0
    study = read_study("old", url)
    assert len(study.trials) == 8 and records.budget(study) == 8
    assert stored_study_config(study).trials == 8
    capsys.readouterr()
    assert main(["studies", "--storage", url, "-f", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["budget"] == 8


def test_the_config_lives_beside_a_small_budget(tmp_path: Path, study_config, noop_trainer) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    path = study_config("new", trials=6, warm=False)
    assert main(["run", "--config", str(path), "--storage", url, "--quiet"]) == 0
    study = read_study("new", url)
    assert study.user_attrs["budget"] == 6 and study.user_attrs["data"] == "digits"
    assert "config" not in study.user_attrs
    assert stored_study_config(study).to_dict() == load_config(path).to_dict()

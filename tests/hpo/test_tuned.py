"""The study's product: load_model and export_model give back the scored model, scaler included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest

from svmhpo.errors import ModelError
from svmhpo.hpo.config import load_config
from svmhpo.hpo.service import run_study
from svmhpo.hpo.studies import read_study
from svmhpo.hpo.tuned import export_model, load_model
from svmhpo.svm.data import load_dataset, split_dataset


def _study_with_winner(tmp_path: Path, study_config, optimizer: str) -> tuple[str, str, dict]:
    name = f"winner-{optimizer}"
    extra = f'[search]\noptimizer = ["{optimizer}"]\nlr = [0.05, 0.5]\n'
    config = load_config(study_config(name, trials=3, epochs=4, warm=False, pruner="none", extra=extra))
    url = f"sqlite:///{tmp_path / 'm.db'}"
    result = run_study(config, url)
    assert result["best"]["params"]["optimizer"] == optimizer
    return name, url, result["final"]


@pytest.mark.parametrize("optimizer", ["asgd", "sgd"])
def test_load_model_scores_the_study_test_split_as_stored(tmp_path: Path, study_config, optimizer: str) -> None:
    name, url, final = _study_with_winner(tmp_path, study_config, optimizer)
    model = load_model(name, url)
    raw = split_dataset(load_dataset("digits"), val_size=0.08, test_size=0.2, seed=0, scaling="none")
    classes = model.named_steps["svm"].classes_
    assert model.score(raw.X_test, classes[raw.y_test]) == pytest.approx(final["test_acc"], abs=1e-6)
    # exported, it loads without the study database
    out = export_model(name, tmp_path / "exported", url)
    (tmp_path / "m.db").unlink()
    again = load_model(out)
    np.testing.assert_array_equal(again.predict(raw.X_test), model.predict(raw.X_test))
    assert again.score(raw.X_test, classes[raw.y_test]) == pytest.approx(final["test_acc"], abs=1e-6)


def test_the_model_is_a_zip_artifact_on_the_study(tmp_path: Path, study_config) -> None:
    name, url, final = _study_with_winner(tmp_path, study_config, "sgd")
    study = read_study(name, url)
    (meta,) = optuna.artifacts.get_all_artifact_meta(study)
    assert meta.artifact_id == final["model_artifact_id"]
    assert meta.mimetype == "application/zip"
    assert meta.filename == f"{name}-trial{final['trial']}-model.zip"


def test_a_study_without_a_model_says_so(tmp_path: Path, study_config) -> None:
    url = f"sqlite:///{tmp_path / 'n.db'}"
    optuna.create_study(study_name="empty", storage=url)
    with pytest.raises(ModelError, match="study 'empty' has no tuned model yet"):
        load_model("empty", url)

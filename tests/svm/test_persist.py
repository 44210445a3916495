"""A saved model is the model that was scored: round trips, pickling, and refusing bad files."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from svmhpo.errors import ModelError
from svmhpo.svm.data import DataSplit, DeviceData, load_dataset, split_dataset
from svmhpo.svm.estimator import HingeSVC
from svmhpo.svm.params import OPTIMIZERS, SVMParams
from svmhpo.svm.persist import META, WEIGHTS, load_pipeline, read_model, save_model, zip_model
from svmhpo.svm.training import fit, held_out_metrics

RATES = {"sgd": 0.1, "asgd": 0.5, "adam": 0.01, "adamw": 0.02}


@pytest.fixture(scope="module")
def raw_digits() -> DataSplit:
    """The digits split of the ``digits`` fixture (seed 0), unscaled, labels as the data set has them."""
    return split_dataset(load_dataset("digits"), seed=0, scaling="none")


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_save_load_score_equals_the_stored_score(
    optimizer: str, digits: DeviceData, raw_digits: DataSplit, tmp_path: Path
) -> None:
    params = SVMParams(optimizer=optimizer, lr=RATES[optimizer])
    module, trainer = fit(params, digits, epochs=4, seed=1)
    scored = float(trainer.callback_metrics["val_acc"])  # during the fit: ASGD swapped its average in
    stored = held_out_metrics(module, digits.x_test, digits.y_test)["acc"]
    state = module.net.state_dict()
    path = save_model(tmp_path / "m", state, params=params, classes=digits.classes, scaler=digits.scaler)
    for source in (path, zip_model(path, tmp_path / "m.zip")):
        model = load_pipeline(source)
        assert model.score(raw_digits.X_val, digits.classes[raw_digits.y_val]) == pytest.approx(scored, abs=1e-6)
        assert model.score(raw_digits.X_test, digits.classes[raw_digits.y_test]) == pytest.approx(stored, abs=1e-6)
        with torch.no_grad():
            logits = module(digits.x_test).numpy()
        np.testing.assert_allclose(model.decision_function(raw_digits.X_test), logits, rtol=1e-5, atol=1e-5)


def test_a_pickled_asgd_estimator_keeps_the_averaged_weights(digits: DeviceData) -> None:
    x, y = digits.x_train.numpy(), digits.y_train.numpy()
    estimator = HingeSVC(0.5, optimizer="asgd", epochs=4, random_state=0).fit(x, y)
    again = pickle.loads(pickle.dumps(estimator))
    np.testing.assert_array_equal(again.decision_function(x), estimator.decision_function(x))


def _saved(tmp_path: Path) -> Path:
    net = torch.nn.Linear(4, 3)
    state = {"linear.weight": net.weight.detach(), "linear.bias": net.bias.detach()}
    return save_model(tmp_path / "m", state, params=SVMParams(), classes=[0, 1, 2], scaler=None)


def test_bad_model_files_fail_in_one_line(tmp_path: Path) -> None:
    good = _saved(tmp_path)
    assert read_model(good)[1]["n_features"] == 4
    with pytest.raises(ModelError, match="no such model"):
        read_model(tmp_path / "missing")
    with pytest.raises(ModelError, match="neither a model directory nor a zip"):
        read_model(good / META)
    meta = json.loads((good / META).read_text())
    for change, message in (
        ({"kind": "something-else"}, "not an svmhpo model"),
        ({"format": 99}, "model format 99; this svmhpo reads format 1"),
        ({"n_features": 5}, r"linear.weight has shape \(3, 4\), expected \(3, 5\)"),
        ({"classes": [0, 1]}, "2 classes listed for n_classes = 3"),
        ({"params": {"lr": -1}}, "incomplete or invalid"),
    ):
        (good / META).write_text(json.dumps(meta | change))
        with pytest.raises(ModelError, match=message):
            read_model(good)
    (good / META).write_text(json.dumps(meta))


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_weights_that_are_not_plain_tensors_are_refused(tmp_path: Path, capsys) -> None:
    good = _saved(tmp_path)
    torch.save({"linear.weight": _Payload(), "linear.bias": torch.zeros(3)}, good / WEIGHTS)
    meta = json.loads((good / META).read_text())
    del meta["weights_sha256"]  # as a model saved before the hash, or a forged description
    (good / META).write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=r"weights\.pt is not a tensor file"):
        read_model(good)
    assert "this must never run" not in capsys.readouterr().out

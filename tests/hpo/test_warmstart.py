"""The LR-finder warm start: a robust pick on real curves, stored once, enqueued first."""

from __future__ import annotations

import numpy as np
import optuna
import pytest

from svmhpo.hpo import records
from svmhpo.hpo.config import StudyConfig, WarmStartConfig
from svmhpo.hpo.studies import read_study
from svmhpo.hpo.warmstart import find_lr, pick_lr, run_warm_start
from svmhpo.svm.data import DeviceData
from svmhpo.svm.params import SVMParams
from svmhpo.svm.training import fit


def test_pick_lr_on_a_synthetic_curve() -> None:
    lrs = np.logspace(-6, 1, 100)
    x = np.log10(lrs)
    # flat, a descent centred at 1e-2, a minimum near 1, then divergence
    losses = 2 - 1.5 / (1 + np.exp(-(x + 2) * 3)) + np.where(x > 0, (x * 4) ** 2, 0)
    losses[:10] = 0.5  # the biased first points must be ignored
    losses[-3:] = np.nan
    assert pick_lr(lrs, losses, backoff=1.0) == pytest.approx(1e-2, rel=0.2)
    assert pick_lr(lrs, losses) == pytest.approx(1e-2 / 3, rel=0.2)


def test_warm_start_beats_lightnings_suggestion_on_digits(digits: DeviceData) -> None:
    """Lightning's suggestion() is ~1e-5 on this model; the pick trains to >= 0.93."""
    config = StudyConfig(warm_start=WarmStartConfig(num_training=100))
    curve = find_lr(digits, "sgd", config)
    assert len(curve.lrs) == len(curve.losses) > 50
    assert 1e-3 <= curve.chosen_lr <= 3.0
    _, picked = fit(SVMParams(lr=curve.chosen_lr), digits, epochs=20)
    assert picked.callback_metrics["val_acc"].item() >= 0.93
    if curve.lightning_suggestion is not None and curve.lightning_suggestion < 1e-3:
        _, stock = fit(SVMParams(lr=curve.lightning_suggestion), digits, epochs=20)
        assert stock.callback_metrics["val_acc"].item() < picked.callback_metrics["val_acc"].item() - 0.3


def test_warm_start_is_stored_enqueued_and_reused(digits: DeviceData, tmp_path) -> None:
    config = StudyConfig(warm_start=WarmStartConfig(num_training=30))
    url = f"sqlite:///{tmp_path / 's.db'}"
    optuna.create_study(study_name="w", storage=url, direction="maximize")
    study = read_study("w", url)
    curves = run_warm_start(study, digits, config)
    assert set(curves) == {"sgd", "asgd", "adam", "adamw"}
    assert records.lr_finder_curves(study) == curves
    picked = {k: pytest.approx(c["chosen_lr"], rel=1e-3) for k, c in curves.items()}
    assert study.user_attrs[records.WARM_START] == picked  # rounded for the eye
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    fixed = [t.system_attrs["fixed_params"] for t in waiting]  # enqueued, not yet run
    assert sorted(p["optimizer"] for p in fixed) == ["adam", "adamw", "asgd", "sgd"]
    assert all(t.user_attrs["source"] == "warm_start" for t in waiting)
    for p in fixed:
        chosen = curves[p["optimizer"]]["chosen_lr"]
        assert p["lr"] == pytest.approx(min(max(chosen, config.search.lr[0]), config.search.lr[1]))
        assert (p["strategy"], p["squared"]) == ("crammer_singer", False)
    # a second call finds the curves on the study and neither runs the finder nor enqueues again
    again = run_warm_start(study, None, config)  # type: ignore[arg-type]
    assert again == curves
    assert len(study.get_trials(states=(optuna.trial.TrialState.WAITING,))) == 4

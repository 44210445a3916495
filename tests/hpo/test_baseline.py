"""The LinearSVC baseline: C picked by the study's metric, and a fit that did not converge said in words."""

from __future__ import annotations

import warnings

import pytest
from sklearn.exceptions import ConvergenceWarning

from svmhpo.hpo import refit
from svmhpo.hpo.config import StudyConfig
from svmhpo.svm.data import DeviceData


def test_a_baseline_that_did_not_converge_is_recorded_not_warned(
    digits: DeviceData, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from svmhpo.cli import _print_baseline

    config = StudyConfig().replace(baseline={"C": [0.1, 1.0]})
    monkeypatch.setattr(refit, "MAX_ITER", 3)  # liblinear cannot converge in 3 iterations
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        record = refit.fit_baseline(config, digits)
    assert not [w for w in caught if issubclass(w.category, ConvergenceWarning)]  # nothing raw on stderr
    assert record["not_converged"] == [0.1, 1.0] and record["C"] in (0.1, 1.0)
    _print_baseline(record, None)
    assert capsys.readouterr().out.rstrip().endswith("(liblinear stopped before it converged at C = 0.1, 1)")

    monkeypatch.setattr(refit, "MAX_ITER", 5000)
    assert refit.fit_baseline(config.replace(baseline={"C": [0.01]}), digits)["not_converged"] == []

"""HingeSVC as a scikit-learn classifier: contract, pipelines, cross-validation, grid search."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from svmhpo import HingeSVC


@pytest.fixture(scope="module")
def xy() -> tuple[np.ndarray, np.ndarray]:
    return load_digits(return_X_y=True)


def test_params_round_trip_and_clone() -> None:
    est = HingeSVC(lr=0.3, optimizer="adamw", squared=True, strategy="one_vs_rest", weight_decay=1e-3)
    params = est.get_params()
    assert {"lr", "weight_decay", "squared", "strategy", "optimizer", "epochs", "batch_size"} <= set(params)
    assert clone(est).get_params() == params
    assert est.set_params(lr=0.01) is est and est.lr == 0.01


def test_fit_predict_score_decision_function(xy) -> None:
    X, y = xy
    model = make_pipeline(StandardScaler(), HingeSVC(random_state=0, epochs=10)).fit(X, y)
    assert model.score(X, y) > 0.95
    assert model.decision_function(X[:5]).shape == (5, 10)
    assert model.predict(X[:5]).tolist() == np.argmax(model.decision_function(X[:5]), axis=1).tolist()


def test_string_labels_binary(xy) -> None:
    X, y = xy
    labels = np.array(["even", "odd"])[y % 2]
    model = make_pipeline(StandardScaler(), HingeSVC(random_state=0, epochs=5)).fit(X, labels)
    svc = model[-1]
    assert list(svc.classes_) == ["even", "odd"]
    assert svc.n_features_in_ == 64
    scores = model.decision_function(X[:20])
    assert scores.shape == (20,)
    assert model.predict(X[:20]).tolist() == np.where(scores > 0, "odd", "even").tolist()
    assert model.score(X, labels) > 0.85


def test_cross_val_score_and_grid_search(xy) -> None:
    X, y = xy
    scores = cross_val_score(make_pipeline(StandardScaler(), HingeSVC(epochs=5, random_state=0)), X, y, cv=3)
    assert scores.mean() > 0.85
    grid = GridSearchCV(
        make_pipeline(StandardScaler(), HingeSVC(epochs=5, random_state=0)),
        {"hingesvc__lr": [1e-5, 0.1]},
        cv=2,
    ).fit(X, y)
    assert grid.best_params_ == {"hingesvc__lr": 0.1}


def test_unfitted_and_wrong_width_errors(xy) -> None:
    X, y = xy
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        HingeSVC().predict(X)
    fitted = HingeSVC(epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        fitted.predict(X[:, :10])


def test_scikit_learn_estimator_checks_pass() -> None:
    """All of scikit-learn's estimator checks, check_fit2d_1sample's wording included."""
    import warnings

    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(HingeSVC(), on_fail=None)
    failed = {r["check_name"]: repr(r["exception"]) for r in results if r["status"] == "failed"}
    assert not failed and len(results) >= 50


def test_linear_model_attributes_and_feature_names_as_scikit_learn_has_them() -> None:
    """``coef_``/``intercept_`` as ``LinearSVC``'s (binary: one row), ``feature_names_in_`` from a DataFrame."""
    import pandas as pd
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=120, n_features=4, n_informative=3, n_redundant=0, random_state=0)
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    model = HingeSVC(epochs=3, batch_size=32, random_state=0).fit(frame, y)
    assert model.coef_.shape == (1, 4) and model.intercept_.shape == (1,)
    assert list(model.feature_names_in_) == ["a", "b", "c", "d"] and model.n_features_in_ == 4
    scores = X.astype(np.float32) @ model.coef_.T + model.intercept_
    assert np.allclose(model.decision_function(frame), scores[:, 0], atol=1e-5)
    X3, y3 = make_classification(
        n_samples=150, n_features=5, n_informative=4, n_redundant=0, n_classes=3, random_state=0
    )
    multi = HingeSVC(epochs=2, random_state=0).fit(X3, y3)
    assert multi.coef_.shape == (3, 5) and multi.intercept_.shape == (3,)
    assert not hasattr(multi, "feature_names_in_")

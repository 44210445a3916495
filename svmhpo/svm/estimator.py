"""``HingeSVC``: the Lightning-trained linear SVM as a scikit-learn classifier.

It follows scikit-learn's estimator contract: ``__init__`` only stores its arguments, ``fit``
returns ``self``, learned attributes end in ``_``, and any label type (strings included) works
through ``classes_``. It does not scale features itself; put a ``StandardScaler`` in front of it
in a ``Pipeline``, as with ``LinearSVC``.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import ClassVar, Literal, get_args, get_origin

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from svmhpo.svm.data import TensorBatches
from svmhpo.svm.model import SVMModule
from svmhpo.svm.params import FitSettings, Optimizer, Strategy, SVMParams, bounds
from svmhpo.svm.training import build_module, quiet_trainer

__all__ = ["HingeSVC"]

_PARAMS, _FIT = SVMParams(), FitSettings()


def _constraints(settings: type[SVMParams] | type[FitSettings]) -> dict[str, list]:
    """scikit-learn parameter constraints of every setting, from its one definition."""
    out: dict[str, list] = {}
    for name, info in settings.model_fields.items():
        kind = info.annotation
        if get_origin(kind) is Literal:
            out[name] = [StrOptions(set(get_args(kind)))]
        elif kind is bool:
            out[name] = ["boolean"]
        else:
            low, low_inc, high, high_inc = bounds(info)
            closed = {(True, True): "both", (True, False): "left", (False, True): "right"}.get((low_inc, high_inc))
            out[name] = [Interval(Integral if kind is int else Real, low, high, closed=closed or "neither")]
    return out


class HingeSVC(ClassifierMixin, BaseEstimator):
    """Soft-margin linear SVM with hinge or squared-hinge loss, trained by Lightning.

    Parameters are the study's search space (``lr``, ``weight_decay``, ``squared``, ``strategy``,
    ``optimizer``) plus the training budget (``epochs``, ``batch_size``), the fixed ``C`` and
    ``margin``, ``random_state`` and the Lightning ``accelerator``.
    """

    _parameter_constraints: ClassVar[dict] = {
        **_constraints(SVMParams),
        **_constraints(FitSettings),
        "random_state": ["random_state"],
        "accelerator": [str],
    }

    def __init__(
        self,
        lr: float = _PARAMS.lr,
        *,
        weight_decay: float = _PARAMS.weight_decay,
        squared: bool = _PARAMS.squared,
        strategy: Strategy = _PARAMS.strategy,
        optimizer: Optimizer = _PARAMS.optimizer,
        epochs: int = _FIT.epochs,
        batch_size: int = _FIT.batch_size,
        C: float = _PARAMS.C,
        margin: float = _PARAMS.margin,
        random_state: int | None = None,
        accelerator: str = "auto",
    ) -> None:
        self.lr = lr
        self.weight_decay = weight_decay
        self.squared = squared
        self.strategy = strategy
        self.optimizer = optimizer
        self.epochs = epochs
        self.batch_size = batch_size
        self.C = C
        self.margin = margin
        self.random_state = random_state
        self.accelerator = accelerator

    def _params(self) -> SVMParams:
        return SVMParams(**{name: getattr(self, name) for name in SVMParams.model_fields})

    def fit(self, X, y) -> HingeSVC:
        """Train on ``X`` (n × d) and labels ``y``; return ``self``."""
        self._validate_params()
        X, y = validate_data(self, X, y, dtype=np.float32)
        check_classification_targets(y)
        self._encoder = LabelEncoder().fit(y)
        self.classes_ = self._encoder.classes_
        if len(self.classes_) < 2:
            # the wording scikit-learn's check_fit2d_1sample looks for ("1 class")
            raise ValueError(f"HingeSVC needs at least two classes; got {len(self.classes_)} class")
        seed = 0 if self.random_state is None else int(self.random_state)
        module = build_module(
            self._params(), X.shape[1], len(self.classes_), n_train=len(X), batch_size=self.batch_size, seed=seed
        )
        with quiet_trainer(self.epochs, accelerator=self.accelerator, validate=False) as trainer:
            x_t = torch.as_tensor(X).to(trainer.strategy.root_device)
            y_t = torch.as_tensor(self._encoder.transform(y), dtype=torch.long).to(x_t.device)
            trainer.fit(module, train_dataloaders=TensorBatches(x_t, y_t, len(x_t), shuffle=True, seed=seed))
        module.eval()
        self.module_: SVMModule = module.cpu()
        return self

    @classmethod
    def from_weights(
        cls, state: dict[str, torch.Tensor], *, classes: np.ndarray, params: SVMParams, **settings
    ) -> HingeSVC:
        """A fitted estimator holding given weights (a ``LinearSVM`` state dict), as a saved model loads.

        ``settings`` are the other constructor arguments (``epochs``, ``batch_size``, ...), kept
        so that ``clone`` and refitting behave as for the estimator that was trained.
        """
        estimator = cls(**params.as_dict(), **settings)
        estimator._encoder = LabelEncoder().fit(classes)
        estimator.classes_ = estimator._encoder.classes_
        if not np.array_equal(estimator.classes_, classes):
            raise ValueError("classes must be sorted and distinct, as LabelEncoder orders them")
        n_features = state["linear.weight"].shape[1]
        module = SVMModule(n_features, len(classes), **params.as_dict(), batch_size=estimator.batch_size)
        module.net.load_state_dict(state)
        module.eval()
        estimator.module_ = module
        estimator.n_features_in_ = n_features
        return estimator

    def _weights(self) -> tuple[np.ndarray, np.ndarray]:
        check_is_fitted(self, "module_")
        with torch.no_grad(), self.module_.averaged_weights():
            linear = self.module_.net.linear
            return linear.weight.detach().cpu().numpy().copy(), linear.bias.detach().cpu().numpy().copy()

    @property
    def coef_(self) -> np.ndarray:
        """Weights, as ``LinearSVC`` has them: shape (1, d) for two classes, (K, d) otherwise."""
        return self._weights()[0]

    @property
    def intercept_(self) -> np.ndarray:
        """Biases: shape (1,) for two classes, (K,) otherwise."""
        return self._weights()[1]

    def _logits(self, X) -> torch.Tensor:
        check_is_fitted(self, "module_")
        X = validate_data(self, X, dtype=np.float32, reset=False)
        with torch.no_grad(), self.module_.averaged_weights():
            return self.module_(torch.as_tensor(X))

    def decision_function(self, X) -> np.ndarray:
        """Signed distances up to scale: shape (n,) for two classes, (n, K) otherwise."""
        logits = self._logits(X).numpy()
        return logits[:, 0] if len(self.classes_) == 2 else logits

    def predict(self, X) -> np.ndarray:
        """Class labels (from ``classes_``) of ``X``."""
        scores = self.decision_function(X)
        index = (scores > 0).astype(int) if scores.ndim == 1 else scores.argmax(axis=1)
        return self.classes_[index]

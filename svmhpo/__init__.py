"""svmhpo: hyperparameter search for hand-written soft-margin linear SVMs.

The library behind the ``svmhpo`` command: hinge losses, the Lightning SVM module, data loading,
a scikit-learn estimator, and (in :mod:`svmhpo.study`) the Optuna study service.
"""

from typing import TYPE_CHECKING

from svmhpo.errors import ConfigError, DataError, StorageError, SvmhpoError
from svmhpo.params import VAL_ACC

if TYPE_CHECKING:
    from svmhpo.estimator import HingeSVC
    from svmhpo.losses import BinaryHingeLoss, MultiClassHingeLoss
    from svmhpo.model import LinearSVM, SVMModule

__all__ = [
    "VAL_ACC",
    "BinaryHingeLoss",
    "ConfigError",
    "DataError",
    "HingeSVC",
    "LinearSVM",
    "MultiClassHingeLoss",
    "SVMModule",
    "StorageError",
    "SvmhpoError",
]

# The torch-backed names load on first use, so that ``import svmhpo`` (and with it the commands
# that only read studies) does not pay the five seconds torch and Lightning take to import.
_LAZY = {
    "HingeSVC": "svmhpo.estimator",
    "BinaryHingeLoss": "svmhpo.losses",
    "MultiClassHingeLoss": "svmhpo.losses",
    "LinearSVM": "svmhpo.model",
    "SVMModule": "svmhpo.model",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'svmhpo' has no attribute {name!r}")


__version__ = "0.1.0"

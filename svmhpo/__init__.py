"""svmhpo: hyperparameter search for hand-written soft-margin linear SVMs.

The library behind the ``svmhpo`` command: hinge losses, the Lightning SVM module, data loading,
a scikit-learn estimator, and (in :mod:`svmhpo.study`) the Optuna study service.
"""

from svmhpo.errors import ConfigError, DataError, StorageError, SvmhpoError
from svmhpo.estimator import HingeSVC
from svmhpo.losses import BinaryHingeLoss, MultiClassHingeLoss
from svmhpo.model import VAL_ACC, LinearSVM, SVMModule

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
__version__ = "0.1.0"

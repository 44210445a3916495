"""svmhpo: hyperparameter search for hand-written soft-margin linear SVMs.

The package has three sides:

- :mod:`svmhpo.svm`: the model and its training (losses, optimizers, the Lightning module, data,
  the scikit-learn estimator); it never imports optuna;
- :mod:`svmhpo.hpo`: the study service (config, storage, search space, the trial loop, workers,
  the warm start, the final refit) and :mod:`svmhpo.hpo.records`, what a study stores;
- :mod:`svmhpo.view`: the read-only views (catalog, plots, report, dashboard, progress); they
  never import torch, Lightning or :mod:`svmhpo.svm`.

The public names below load on first use, so that ``import svmhpo`` (and the commands that only
read studies) does not pay the seconds torch and Lightning take to import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from svmhpo.errors import ConfigError, DataError, ModelError, StorageError, SvmhpoError

if TYPE_CHECKING:
    from svmhpo.hpo.config import StudyConfig, load_config
    from svmhpo.hpo.service import init_study, run_study, run_worker
    from svmhpo.hpo.tuned import export_model, load_model
    from svmhpo.svm.estimator import HingeSVC
    from svmhpo.svm.losses import BinaryHingeLoss, MultiClassHingeLoss
    from svmhpo.svm.model import LinearSVM, SVMModule
    from svmhpo.svm.params import FitSettings, SVMParams
    from svmhpo.view.catalog import best_summary, list_studies, write_study_report

__version__ = "0.1.0"

_LAZY = {
    "HingeSVC": "svmhpo.svm.estimator",
    "BinaryHingeLoss": "svmhpo.svm.losses",
    "MultiClassHingeLoss": "svmhpo.svm.losses",
    "LinearSVM": "svmhpo.svm.model",
    "SVMModule": "svmhpo.svm.model",
    "SVMParams": "svmhpo.svm.params",
    "FitSettings": "svmhpo.svm.params",
    "StudyConfig": "svmhpo.hpo.config",
    "load_config": "svmhpo.hpo.config",
    "load_model": "svmhpo.hpo.tuned",
    "export_model": "svmhpo.hpo.tuned",
    "init_study": "svmhpo.hpo.service",
    "run_study": "svmhpo.hpo.service",
    "run_worker": "svmhpo.hpo.service",
    "best_summary": "svmhpo.view.catalog",
    "list_studies": "svmhpo.view.catalog",
    "write_study_report": "svmhpo.view.catalog",
}

__all__ = [
    "BinaryHingeLoss",
    "ConfigError",
    "DataError",
    "FitSettings",
    "HingeSVC",
    "LinearSVM",
    "ModelError",
    "MultiClassHingeLoss",
    "SVMModule",
    "SVMParams",
    "StorageError",
    "StudyConfig",
    "SvmhpoError",
    "__version__",
    "best_summary",
    "export_model",
    "init_study",
    "list_studies",
    "load_config",
    "load_model",
    "run_study",
    "run_worker",
    "write_study_report",
]


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'svmhpo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)

"""The model and its training: losses, optimizers, the Lightning module, data, the estimator. Never imports optuna."""

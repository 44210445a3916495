"""The study the way Optuna's examples write it, for ``bench.digits_study`` to compare against.

Modelled on optuna-examples' ``pytorch/pytorch_lightning_simple.py``: every trial builds a new
``Trainer`` and a new ``DataLoader`` over a ``TensorDataset``, trains with automatic
optimization (one Lightning step per mini-batch), logs ``val_acc`` each epoch and is pruned by
``PyTorchLightningPruningCallback``; TPE and the median pruner at Optuna's defaults, on a SQLite
file. The model, losses, optimizers, schedules, search space, split and epochs are svmhpo's, so
that both sides search the same problem and only the way of running it differs. It runs in its
own process (imports included, as ``svmhpo run`` does) and prints one JSON line.

    python -m bench.examples_way [--trials 200] [--seed 0] [--storage sqlite:///x.db]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
import warnings

import lightning.pytorch as pl
import optuna
import torch
from optuna_integration import PyTorchLightningPruningCallback
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from svmhpo.hpo.config import load_config
from svmhpo.hpo.modelside import load_study_data
from svmhpo.svm.losses import MultiClassHingeLoss
from svmhpo.svm.optim import SCHEDULE_POWER, bottou_factor, build_optimizer, parameter_groups


class LitSVM(pl.LightningModule):
    """A linear SVM in the plain Lightning style: automatic optimization, one step per batch."""

    def __init__(self, n_features: int, n_classes: int, lr: float, weight_decay: float, squared: bool,
                 strategy: str, optimizer: str, steps_per_epoch: int) -> None:  # fmt: skip
        super().__init__()
        self.save_hyperparameters()
        self.linear = nn.Linear(n_features, n_classes)
        self.loss_fn = MultiClassHingeLoss(squared=squared, strategy=strategy)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return self.loss_fn(self.linear(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_acc", (self.linear(x).argmax(1) == y).float().mean())

    def configure_optimizers(self):
        hp = self.hparams
        opt = build_optimizer(
            hp.optimizer, parameter_groups(self.linear, hp.weight_decay), hp.lr, asgd_t0=float(hp.steps_per_epoch)
        )
        power = SCHEDULE_POWER[hp.optimizer]
        if power is None:
            return opt
        schedule = torch.optim.lr_scheduler.LambdaLR(opt, bottou_factor(hp.lr, hp.weight_decay, power))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def main(trials: int = 200, seed: int = 0, storage: str | None = None) -> dict:
    start = time.perf_counter()
    config = load_config("digits").replace(seed=seed)
    data = load_study_data(config, device="cpu")
    space, epochs, batch_size = config.search, config.training.epochs, config.training.batch_size
    steps = -(-len(data.x_train) // batch_size)

    def objective(trial: optuna.Trial) -> float:
        params = {
            "lr": trial.suggest_float("lr", *space.lr, log=True),
            "weight_decay": trial.suggest_float("weight_decay", *space.weight_decay, log=True),
            "squared": trial.suggest_categorical("squared", list(space.squared)),
            "strategy": trial.suggest_categorical("strategy", list(space.strategy)),
            "optimizer": trial.suggest_categorical("optimizer", list(space.optimizer)),
        }
        model = LitSVM(data.n_features, data.n_classes, steps_per_epoch=steps, **params)
        train = DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=batch_size, shuffle=True)
        val = DataLoader(TensorDataset(data.x_val, data.y_val), batch_size=len(data.x_val))
        trainer = pl.Trainer(
            max_epochs=epochs,
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[PyTorchLightningPruningCallback(trial, monitor="val_acc")],
        )
        trainer.fit(model, train_dataloaders=train, val_dataloaders=val)
        return trainer.callback_metrics["val_acc"].item()

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        study = optuna.create_study(
            direction="maximize",
            storage=storage or f"sqlite:///{tmp}/examples.db",
            sampler=optuna.samplers.TPESampler(seed=seed),
            pruner=optuna.pruners.MedianPruner(),
        )
        study.optimize(objective, n_trials=trials)
        result = {"seconds": time.perf_counter() - start, "best_val_acc": study.best_value}
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--storage")
    args = parser.parse_args()
    print(json.dumps(main(args.trials, args.seed, args.storage)))

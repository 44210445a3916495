"""Lightning fit versus a plain PyTorch loop: same module, same batches, same optimizer.

Both sides train the same configuration (digits, batch size 64, 20 epochs) from the same initial
weights on the same in-memory tensor batches, in the same order, and compute the same validation
metrics (``SVMModule.evaluate``) once per epoch. The ratio is what the
Lightning machinery costs. Target: at most 1.3×.

    python -m bench.lightning_vs_loop
"""

from __future__ import annotations

import statistics
import time

from svmhpo.svm.data import DeviceData, prepare_data
from svmhpo.svm.params import SVMParams
from svmhpo.svm.training import build_module, fit, train_loader

EPOCHS = 20
BATCH_SIZE = 64


def plain_loop(params: SVMParams, data: DeviceData, *, epochs: int, batch_size: int, seed: int = 0) -> float:
    """Train the same module without Lightning; return the final validation accuracy."""
    module = build_module(
        params, data.n_features, data.n_classes, n_train=len(data.x_train), batch_size=batch_size, seed=seed
    )
    config = module.configure_optimizers()
    optimizer = config["optimizer"]
    scheduler = config.get("lr_scheduler", {}).get("scheduler")
    batches = train_loader(data, batch_size, seed, updates_per_step=1)
    acc = 0.0
    for _ in range(epochs):
        module.train()
        for x, y in batches:
            optimizer.zero_grad(set_to_none=True)
            loss = module.loss(module(x), y)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
        module.eval()
        acc = module.evaluate(data.x_val, data.y_val)["acc"].item()
    return acc


def measure(data: DeviceData, params: SVMParams, repeats: int = 15) -> dict[str, float]:
    """Both sides timed back to back, ``repeats`` times; the ratio is the median of the pairs' ratios.

    This machine's timings drift by 20-50% within minutes. Each pair runs within half a second,
    so a pair's ratio cancels most of that drift; the median then drops the pairs that a burst of
    other load hit on one side only. Minimum times are reported beside them.
    """
    plain, lightning, ratios = [], [], []
    plain_loop(params, data, epochs=1, batch_size=BATCH_SIZE)  # warm-up
    fit(params, data, epochs=1, batch_size=BATCH_SIZE)
    for _ in range(repeats):
        t = time.perf_counter()
        acc_plain = plain_loop(params, data, epochs=EPOCHS, batch_size=BATCH_SIZE)
        plain.append(time.perf_counter() - t)
        t = time.perf_counter()
        _, trainer = fit(params, data, epochs=EPOCHS, batch_size=BATCH_SIZE)
        lightning.append(time.perf_counter() - t)
        ratios.append(lightning[-1] / plain[-1])
    return {
        "plain_s": statistics.median(plain),
        "lightning_s": statistics.median(lightning),
        "ratio": statistics.median(ratios),
        "ratio_of_minimums": min(lightning) / min(plain),
        "plain_val_acc": acc_plain,
        "lightning_val_acc": float(trainer.callback_metrics["val_acc"]),
    }


def main() -> dict[str, float]:
    data = prepare_data("digits")
    result = measure(data, SVMParams())
    print(
        f"digits, batch {BATCH_SIZE}, {EPOCHS} epochs: plain loop {result['plain_s']:.3f} s, "
        f"Lightning {result['lightning_s']:.3f} s, ratio {result['ratio']:.2f}x "
        f"(of minimums {result['ratio_of_minimums']:.2f}x; target <= 1.3x); "
        f"val acc {result['plain_val_acc']:.3f} / {result['lightning_val_acc']:.3f}"
    )
    return result


if __name__ == "__main__":
    main()

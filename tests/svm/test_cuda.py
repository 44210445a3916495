"""The GPU path (``pytest -m gpu``; skipped where PyTorch sees no CUDA device).

Runs on a lent GPU machine through ``dev/gpu-check run`` (with ``--noconftest``: self-contained,
no fixture from ``tests/conftest.py``): the batched model equals its single fits on CUDA with the
CPU tests' tolerances; data and stacked weights stay on the device (no copy back to the CPU per
step); Lightning's ``accelerator="auto"`` trains on the GPU; ``svmhpo worker --gpus all`` gives each
process one device; and a model trained on CUDA loads and predicts on a CPU-only machine.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the GPU tests run on a GPU machine"),
]

ROOT = Path(__file__).resolve().parents[2]
EPOCHS, SEED, RTOL = 4, 3, 1e-5  # as tests/svm/test_batched.py
RATES = {"sgd": 0.1, "asgd": 0.03, "adam": 0.01, "adamw": 0.02}


def _digits():
    from svmhpo.svm.data import prepare_data

    return prepare_data("digits", device="cuda")


def _variants():
    from svmhpo.svm.params import OPTIMIZERS, SVMParams

    return [
        SVMParams(lr=RATES[o], optimizer=o, squared=sq, strategy=st, weight_decay=1e-3)
        for o, sq, st in itertools.product(OPTIMIZERS, (False, True), ("crammer_singer", "one_vs_rest"))
    ]


def test_the_batched_model_equals_its_single_fits_on_cuda() -> None:
    from svmhpo.svm.batched import fit_batch
    from svmhpo.svm.training import fit

    data = _digits()
    members = _variants()
    module, _ = fit_batch(members, data, epochs=EPOCHS, seed=SEED)
    for i, params in enumerate(members):
        alone, _ = fit(params, data, epochs=EPOCHS, seed=SEED)
        with alone.averaged_weights():
            weights = {k: v.clone() for k, v in alone.net.state_dict().items()}
        batched = module.member_state(i)
        for name, value in weights.items():
            assert value.device.type == "cuda" and batched[name].device.type == "cuda"
            scale = value.abs().max().item()
            assert (batched[name] - value).abs().max().item() <= RTOL * scale, (i, name)


def test_data_and_stacked_weights_stay_on_the_device() -> None:
    from svmhpo.svm.batched import fit_batch

    data = _digits()
    assert data.x_train.device.type == "cuda" and data.y_train.device.type == "cuda"
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as profile:
        module, _ = fit_batch(_variants()[:8], data, epochs=2, seed=SEED, batch_size=64)
    assert all(p.device.type == "cuda" for p in module.parameters())
    steps = 2 * (len(data.x_train) // 64)
    to_host = [e for e in profile.events() if "DtoH" in e.name or "Memcpy DtoH" in e.name]
    assert len(to_host) < steps / 4, f"{len(to_host)} device-to-host copies for {steps} steps"


def test_lightning_trains_on_the_gpu_with_accelerator_auto() -> None:
    from svmhpo.svm.params import SVMParams
    from svmhpo.svm.training import fit

    module, trainer = fit(SVMParams(), _digits(), epochs=1)
    assert trainer.accelerator.__class__.__name__ == "CUDAAccelerator"
    assert next(module.parameters()).device.type == "cuda"


def test_worker_gpus_all_gives_each_process_one_device() -> None:
    from svmhpo.hpo.workers import visible_gpus

    devices = visible_gpus("all")
    assert len(devices) == torch.cuda.device_count() >= 1
    for device in devices:  # as run_workers starts each process
        env = dict(os.environ, CUDA_VISIBLE_DEVICES=device)
        code = "import torch; print(torch.cuda.device_count())"
        assert (
            subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip() == "1"
        )


def test_a_model_trained_on_cuda_predicts_on_a_cpu_only_machine(tmp_path: Path) -> None:
    from svmhpo.svm.params import SVMParams
    from svmhpo.svm.persist import save_fit
    from svmhpo.svm.training import fit

    data = _digits()
    module, _ = fit(SVMParams(lr=0.1), data, epochs=2)
    save_fit(tmp_path / "model", module, SVMParams(lr=0.1), data, {})
    x = data.x_test[:20].cpu().numpy()
    raw = data.scaler.inverse_transform(x) if data.scaler is not None else x
    np.save(tmp_path / "x.npy", raw)
    expected = module.net(data.x_test[:20]).argmax(dim=1).cpu().numpy()
    code = (
        "import numpy as np, torch, sys\n"
        "assert not torch.cuda.is_available()\n"
        "from svmhpo.svm.persist import load_pipeline\n"
        f"print(list(load_pipeline({str(tmp_path / 'model')!r}).predict(np.load({str(tmp_path / 'x.npy')!r}))))"
    )
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    predicted = [int(v) for v in done.stdout.strip().strip("[]").split(",")]
    assert predicted == [int(data.classes[i]) for i in expected]

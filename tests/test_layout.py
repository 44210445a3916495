"""The package's rooms keep their rules: svm/ never imports optuna; view/ never imports torch,
Lightning or svm/; hpo/ never imports view/; and the read-only side really loads without them."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "svmhpo"

#: room -> module prefixes its files may not import (directly, at any depth of the file)
FORBIDDEN = {
    "svm": ("optuna", "optuna_integration", "optuna_dashboard", "svmhpo.hpo", "svmhpo.view"),
    "view": ("torch", "lightning", "pytorch_lightning", "torchmetrics", "svmhpo.svm"),
    "hpo": ("svmhpo.view",),
}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("room", sorted(FORBIDDEN))
def test_rooms_import_only_what_they_may(room: str) -> None:
    files = sorted((PACKAGE / room).glob("*.py"))
    assert files
    broken = [
        f"{path.relative_to(PACKAGE.parent)} imports {name}"
        for path in files
        for name in sorted(_imports(path))
        if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN[room])
    ]
    assert broken == []


def test_the_rule_checker_sees_a_violation(tmp_path: Path) -> None:
    """The checker itself can fail: a planted import of optuna in a function body is found."""
    planted = tmp_path / "m.py"
    planted.write_text("def f():\n    from optuna.trial import TrialState\n    import torch.nn\n")
    assert {"optuna.trial", "torch.nn"} <= _imports(planted)


def _loaded_after(imports: str) -> list[str]:
    script = f"import sys\n{imports}\nprint(sorted({{m.split('.')[0] for m in sys.modules}}))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    return eval(done.stdout.strip().splitlines()[-1])


#: What no file of svmhpo/ may contain: Optuna's private study and storage attributes, the thread
#: internals the old trial loop read, and Optuna's own loop (svmhpo has one trial loop, its own).
PRIVATE_REACHES = ("._storage", "._backend", "._study_id", "._target", "._args", ".optimize(")


#: The reaches into Optuna's internals svmhpo makes, each in one place, each pinned by a test.
ALLOWED_REACHES = {
    # a trial's start written once: the study's storage stands in while its trial is sampled
    # (TPE's constant liar writes through it); tests/hpo/test_batch_storage.py
    "svmhpo/hpo/starts.py: ._storage",
    # a batch's asks read the study once: a stand-in storage serves the sampler's reads while the
    # batch is asked; tests/hpo/test_batch_reads.py
    "svmhpo/hpo/batchreads.py: ._storage",
}


def test_no_reach_into_optuna_internals_and_one_trial_loop() -> None:
    found = [
        f"{path.relative_to(PACKAGE.parent)}: {needle}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for needle in PRIVATE_REACHES
        if needle in path.read_text()
    ]
    assert set(found) == ALLOWED_REACHES
    # a trial's storage id has no public accessor: one helper reads it
    # (``._trial_id_to_study_id_and_number``, Optuna's cache's map read by batchreads.py, is another name)
    readers = [path.name for path in sorted(PACKAGE.rglob("*.py")) if re.search(r"\._trial_id\b", path.read_text())]
    assert readers == ["handle.py"]


def test_importing_every_view_and_the_study_machinery_loads_no_torch() -> None:
    """The study machinery (the trial loop, the worker, the no-op trainer of the tests) loads the
    model side only when a real fit runs: a no-op worker starts in about a second."""
    modules = sorted(f"svmhpo.view.{p.stem}" for p in (PACKAGE / "view").glob("*.py") if p.stem != "__init__")
    modules += ["svmhpo", "svmhpo.cli", "svmhpo.hpo.records", "svmhpo.hpo.studies", "svmhpo.hpo.config"]
    modules += ["svmhpo.hpo.service", "svmhpo.hpo.runner", "svmhpo.hpo.objective", "svmhpo.testing"]
    modules += ["svmhpo.hpo.finalize", "svmhpo.hpo.modelside", "svmhpo.hpo.election"]
    loaded = _loaded_after("\n".join(f"import {m}" for m in modules))
    assert not {"torch", "lightning", "torchmetrics"} & set(loaded)


def test_importing_the_model_side_loads_no_optuna() -> None:
    modules = sorted(f"svmhpo.svm.{p.stem}" for p in (PACKAGE / "svm").glob("*.py") if p.stem != "__init__")
    loaded = _loaded_after("\n".join(f"import {m}" for m in modules))
    assert "torch" in loaded and "optuna" not in loaded


def test_importing_the_library_leaves_logging_and_warnings_as_they_were() -> None:
    script = (
        "import logging, warnings, sys\n"
        "import torch, lightning.pytorch, optuna.visualization, optuna_integration, optuna_dashboard, plotly.offline\n"
        "import optuna.artifacts  # third-party imports first: this one imports boto3 where it is installed\n"
        "logging.getLogger('lightning.pytorch').setLevel(logging.INFO)  # as an app might, after third-party imports\n"
        "loggers = [logging.getLogger(n) for n in ('lightning.pytorch', 'optuna', 'optuna.storages._rdb.storage')]\n"
        "state = lambda: (list(warnings.filters), [(g.level, list(g.filters)) for g in loggers])\n"
        "before = state()\n"
        "import svmhpo.svm.training, svmhpo.hpo.service, svmhpo.view.report\n"
        "from svmhpo.svm.data import prepare_data\n"
        "from svmhpo.svm.params import SVMParams\n"
        "svmhpo.svm.training.fit(SVMParams(), prepare_data('digits'), epochs=1)\n"
        "after = state()\n"
        "print(before == after, optuna.logging.get_verbosity() == optuna.logging.INFO)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180, check=True)
    assert done.stdout.split() == ["True", "True"]

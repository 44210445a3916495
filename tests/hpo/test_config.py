"""Study configs: the shipped ones load, and every kind of mistake is one line naming file and key."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from svmhpo.cli import ExitStatus, main
from svmhpo.errors import ConfigError
from svmhpo.hpo.config import StudyConfig, load_config

STUDIES = Path(__file__).resolve().parents[2] / "svmhpo" / "studies"


@pytest.mark.parametrize("name", ["digits", "mnist", "fashion-mnist"])
def test_shipped_configs_load(name: str) -> None:
    config = load_config(STUDIES / f"{name}.toml")
    assert config.data.source == name
    assert config.search.optimizer and config.trials > 0


def test_round_trip_through_the_stored_form() -> None:
    config = load_config(STUDIES / "digits.toml")
    assert StudyConfig.from_dict(config.to_dict(), path=config.path) == config


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[search]\nlrr = [0.1, 1.0]\n", "[search] unknown key 'lrr'"),
        ("[study]\ntrials = 'many'\n", "[study] trials: input should be a valid integer, got 'many'"),
        ("[study]\ntrials = true\n", "[study] trials: input should be a valid integer, got True"),
        ("[search]\nlr = ['0.1', 1.0]\n", "[search] lr: input should be a valid number, got '0.1'"),
        ("[search]\nlr = [1.0, 0.1]\n", "[search] lr: low must be below high, got [1.0, 0.1]"),
        ("[search]\nweight_decay = [0.0, 0.1]\n", "[search] weight_decay: a log-uniform range needs low > 0"),
        (
            "[search]\noptimizer = ['sgd', 'lbfgs']\n",
            "[search] optimizer: input should be 'sgd', 'asgd', 'adam' or 'adamw', got 'lbfgs'",
        ),
        ("[search]\noptimizer = ['sgd', 'sgd']\n", "[search] optimizer: choices repeat"),
        ("[search]\nsquared = ['yes']\n", "[search] squared: input should be a valid boolean, got 'yes'"),
        ("[study]\nsampler = 'cmaes'\n", "CMA-ES cannot sample categorical parameters"),
        ("[study]\npruner = 'asha'\n", "[study] pruner: input should be 'median', 'hyperband' or 'none', got 'asha'"),
        ("[study]\ngrace_period = 5\n", "[study]: grace_period must exceed heartbeat_interval, got 5 and 10"),
        ("[data]\nval_size = 0.5\ntest_size = 0.6\n", "[data]: val_size + test_size must be below 1"),
        ("[training]\nepochs = 0\n", "[training] epochs: input should be greater than or equal to 1, got 0"),
        ("[study]\ndata = 'x'\n", "[study] unknown key 'data'"),
        ("[tuning]\nx = 1\n", "unknown section [tuning]"),
        ("[study\n", "not valid TOML"),
    ],
)
def test_bad_configs_name_file_and_key(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert text.startswith(f"{path}:")
    assert message in text
    assert "\n" not in text


def test_cli_rejects_a_bad_config_before_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[search]\nlr = [1.0, 0.1]\n")
    storage = tmp_path / "never.db"
    assert main(["run", "--config", str(path), "--storage", f"sqlite:///{storage}", "--quiet"]) == ExitStatus.USER_ERROR
    err = capsys.readouterr().err.strip()
    assert err == f"svmhpo: error: {path}: [search] lr: low must be below high, got [1.0, 0.1]"
    assert not storage.exists()  # nothing ran, nothing was created


def test_missing_config_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--config", "/nonexistent/study.toml", "--quiet"]) == ExitStatus.USER_ERROR
    assert "/nonexistent/study.toml: no such config file" in capsys.readouterr().err


def test_command_line_overrides_config(tmp_path: Path) -> None:
    config = load_config(STUDIES / "digits.toml").replace(trials=7, name="other")
    assert (config.trials, config.name) == (7, "other")
    with pytest.raises(ConfigError, match=r"\[study\] trials: input should be greater than or equal to 1, got 0"):
        config.replace(trials=0)


def test_the_shipped_configs_are_in_the_wheel(tmp_path: Path) -> None:
    """Built as for `pip install .`, unpacked, and used from there: --config mnist works outside the source tree."""
    root = Path(__file__).resolve().parents[2]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), root],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("svmhpo-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        assert {"svmhpo/studies/digits.toml", "svmhpo/studies/mnist.toml"} <= set(zf.namelist())
        zf.extractall(tmp_path / "site")
    site = str(tmp_path / "site")
    script = (
        f"import svmhpo.hpo.config as c; assert c.__file__.startswith({site!r}), c.__file__; "
        "print(c.bundled_configs(), c.load_config('mnist').data.source, c.load_config(None).name)"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={"PYTHONPATH": site, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['digits', 'fashion-mnist', 'mnist'] mnist digits"


def test_a_data_path_is_relative_to_the_config_and_stored_absolute(tmp_path, monkeypatch) -> None:
    from svmhpo.hpo.config import config_differences

    (tmp_path / "cfg").mkdir()
    config = tmp_path / "cfg" / "s.toml"
    config.write_text('[data]\nsource = "../data/x.csv"\nlabel = "species"\n')
    monkeypatch.chdir("/")
    loaded = load_config(config)
    assert loaded.data.source == str(tmp_path / "data" / "x.csv") and loaded.data.label == "species"
    monkeypatch.setenv("HOME", str(tmp_path))
    config.write_text('[data]\nsource = "~/y.csv"\n')
    assert load_config(config).data.source == str(tmp_path / "y.csv")
    for name in ("digits", "synthetic:100x4x2", "mnist"):
        config.write_text(f'[data]\nsource = "{name}"\n')
        assert load_config(config).data.source == name
    # a source stored relative by an older svmhpo equals the absolute path it names from here
    old = loaded.to_dict() | {"data": loaded.to_dict()["data"] | {"source": "data/x.csv"}}
    monkeypatch.chdir(tmp_path)
    assert config_differences(old, loaded.to_dict()) == []
    assert config_differences(old, loaded.replace(seed=3).to_dict()) == ["[study] seed 0 -> 3"]

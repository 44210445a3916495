"""Study configs: the shipped ones load, and every kind of mistake is one line naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from svmhpo.cli import EXIT_USER_ERROR, main
from svmhpo.config import StudyConfig, load_config
from svmhpo.errors import ConfigError

STUDIES = Path(__file__).resolve().parent.parent / "studies"


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
        ("[study]\ntrials = 'many'\n", "[study] trials: expected an integer, got 'many'"),
        ("[search]\nlr = [1.0, 0.1]\n", "[search] lr: low must be below high, got [1.0, 0.1]"),
        ("[search]\nweight_decay = [0.0, 0.1]\n", "[search] weight_decay: a log-uniform range needs low > 0"),
        ("[search]\noptimizer = ['sgd', 'lbfgs']\n", "[search] optimizer: unknown choice 'lbfgs'"),
        ("[search]\nsquared = ['yes']\n", "[search] squared: expected a list of bool"),
        ("[study]\nsampler = 'cmaes'\n", "CMA-ES cannot sample categorical parameters"),
        ("[study]\npruner = 'asha'\n", "[study] pruner 'asha'"),
        ("[training]\nepochs = 0\n", "[training] epochs and batch_size must be positive"),
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
    assert main(["run", "--config", str(path), "--storage", f"sqlite:///{storage}", "--quiet"]) == EXIT_USER_ERROR
    err = capsys.readouterr().err.strip()
    assert err == f"svmhpo: error: {path}: [search] lr: low must be below high, got [1.0, 0.1]"
    assert not storage.exists()  # nothing ran, nothing was created


def test_missing_config_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--config", "/nonexistent/study.toml", "--quiet"]) == EXIT_USER_ERROR
    assert "/nonexistent/study.toml: no such config file" in capsys.readouterr().err


def test_command_line_overrides_config(tmp_path: Path) -> None:
    config = load_config(STUDIES / "digits.toml").replace(trials=7, name="other")
    assert (config.trials, config.name) == (7, "other")
    with pytest.raises(ConfigError, match="trials must be at least 1"):
        config.replace(trials=0)

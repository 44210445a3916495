"""Every number finite and in range at every entry point: the config, the command line, the Python API.

NaN passes no comparison, so a range alone lets it through; ±inf passes a lower bound. Each case
is refused before anything runs, in one line naming the key or the flag, and leaves no study.
"""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest

from svmhpo.cli import main

BAD_CONFIG = [
    ("[search]\nlr = [nan, 1.0]", "[search] lr: input should be a finite number, got nan"),
    ("[search]\nlr = [1e-4, inf]", "[search] lr: input should be a finite number, got inf"),
    ("[search]\nweight_decay = [nan, nan]", "[search] weight_decay: input should be a finite number"),
    ("[warm_start]\nmax_lr = inf", "[warm_start] max_lr: input should be a finite number"),
    ("[baseline]\nC = [nan]", "[baseline] C: input should be a finite number"),
    ("[data]\nval_size = nan", "[data] val_size: input should be a finite number"),
    ("[study]\ndb_outage_limit = inf", "[study] db_outage_limit: input should be a finite number"),
    ("[study]\nseed = -1", "[study] seed: input should be greater than or equal to 0, got -1"),
    ("[study]\nseed = 9223372036854775807", "[study] seed: input should be less than or equal to 4294967295"),
    ("[study]\nheartbeat_interval = 9223372036854775806", "[study] heartbeat_interval: input should be less than"),
    ("[study]\ntrials = 9223372036854775807", "[study] trials: input should be less than or equal to"),
    ("[training]\nepochs = 9223372036854775807", "[training] epochs: input should be less than or equal to"),
]


@pytest.mark.parametrize("text,message", BAD_CONFIG, ids=[t.split("\n")[1] for t, _ in BAD_CONFIG])
def test_a_non_finite_or_out_of_range_config_value_is_one_line(tmp_path: Path, capsys, text: str, message: str):
    config = tmp_path / "c.toml"
    config.write_text(text + "\n")
    url = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["run", "--config", str(config), "--storage", url, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err == f"svmhpo: error: {config}: {message}" + err.split(message, 1)[1]
    assert err.count("\n") == 1
    assert not (tmp_path / "s.db").exists() or not optuna.get_all_study_summaries(url)


def test_a_config_that_is_not_utf8_is_one_line(tmp_path: Path, capsys) -> None:
    config = tmp_path / "latin1.toml"
    config.write_bytes('[study]\nname = "caf\xe9"\n'.encode("latin-1"))
    assert main(["init", "--config", str(config), "--storage", f"sqlite:///{tmp_path / 's.db'}"]) == 1
    assert (
        capsys.readouterr().err
        == f"svmhpo: error: {config}: not UTF-8 text, as TOML must be (byte 19: invalid continuation byte)\n"
    )


@pytest.mark.parametrize(
    "argv,flag",
    [
        (["train", "--lr", "nan"], "--lr"),
        (["train", "--lr", "inf"], "--lr"),
        (["train", "--C", "nan"], "--C"),
        (["train", "--weight-decay", "nan"], "--weight-decay"),
        (["train", "--margin=-inf"], "--margin"),
        (["train", "--seed", "4294967296"], "--seed"),
        (["run", "--timeout", "nan"], "--timeout"),
        (["worker", "--study-name", "x", "--timeout", "inf"], "--timeout"),
    ],
)
def test_a_non_finite_or_out_of_range_flag_is_a_usage_line(capsys, argv: list[str], flag: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"argument {flag}: must be" in err, err


@pytest.mark.parametrize(
    "name,value", [("lr", math.nan), ("lr", math.inf), ("weight_decay", math.nan), ("C", -math.inf)]
)
def test_the_python_api_refuses_non_finite_values(digits, name: str, value: float) -> None:
    from svmhpo import HingeSVC, SVMModule

    with pytest.raises(ValueError, match=name):
        HingeSVC(**{name: value}).fit(digits.x_train[:50].numpy(), digits.y_train[:50].numpy())
    with pytest.raises(ValueError, match=name):
        SVMModule(4, 3, **{name: value})

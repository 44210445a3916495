"""The command line, run in-process through main(argv) and once as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from svmhpo.cli import ExitStatus, main


def test_train_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--epochs", "5", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["data"] == "digits"
    assert result["val_acc"] > 0.9 and result["test"]["acc"] > 0.9


def test_user_error_is_one_line_without_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "svmhpo", "train", "--data", "/nonexistent/data.csv"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == ExitStatus.USER_ERROR
    assert proc.stderr.strip() == "svmhpo: error: /nonexistent/data.csv: no such file"
    assert "Traceback" not in proc.stderr


def test_commands_that_only_read_studies_do_not_import_torch(small_study: tuple[str, str], tmp_path) -> None:
    """``studies``, ``best`` and ``report`` start in about a second: torch and Lightning stay unloaded."""
    url, name = small_study
    script = (
        "import sys\n"
        "from svmhpo.cli import main\n"
        f"assert main(['studies', '--storage', {url!r}, '--json']) == 0\n"
        f"assert main(['best', '--study-name', {name!r}, '--storage', {url!r}, '--json']) == 0\n"
        f"assert main(['report', '--study-name', {name!r}, '--storage', {url!r}, '--out', {str(tmp_path)!r}]) == 0\n"
        "print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert list(tmp_path.glob("*.html"))


def test_usage_errors_and_user_errors_have_distinct_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    # a value outside its definition's range is a usage error, named by argparse, before anything runs
    assert main(["train", "--lr", "-1"]) == ExitStatus.USAGE
    assert "argument --lr: must be > 0, got -1" in capsys.readouterr().err
    assert main(["train", "--batch-size", "0"]) == ExitStatus.USAGE
    assert "argument --batch-size: must be >= 1, got 0" in capsys.readouterr().err
    assert main(["dashboard", "--port", "99999"]) == ExitStatus.USAGE
    assert main(["run", "--trials", "many"]) == ExitStatus.USAGE
    assert "expected an integer, got 'many'" in capsys.readouterr().err
    assert main(["worker", "--study-name", "s", "--quiet", "-v"]) == ExitStatus.USAGE
    assert capsys.readouterr().err == (
        "svmhpo worker: error: argument -v/--verbose: not allowed with argument --quiet (see svmhpo worker --help)\n"
    )
    # a missing file is the user's to fix: one line, its own status
    assert main(["train", "--data", "/nonexistent/x.npz"]) == ExitStatus.USER_ERROR
    assert capsys.readouterr().err == "svmhpo: error: /nonexistent/x.npz: no such file\n"
    assert len({ExitStatus.OK, ExitStatus.USER_ERROR, ExitStatus.USAGE, ExitStatus.INTERNAL_ERROR}) == 4


def test_debug_shows_the_traceback_of_a_user_error(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--debug", "train", "--data", "/nonexistent/x.npz"], ["train", "--data", "/none/x.npz", "--debug"]):
        assert main(argv) == ExitStatus.USER_ERROR
        err = capsys.readouterr().err
        assert "Traceback (most recent call last)" in err and "DataError" in err
        assert err.strip().splitlines()[-1].startswith("svmhpo: error: ")


def test_train_options_come_from_the_one_definition(capsys: pytest.CaptureFixture[str]) -> None:
    from svmhpo.cli import _parser
    from svmhpo.svm.params import FitSettings, SVMParams

    args = vars(_parser().parse_args(["train"]))
    for model in (SVMParams, FitSettings):
        for name, info in model.model_fields.items():
            assert args[name] == info.default, name
    assert main(["train", "--help"]) == ExitStatus.OK
    help_text = capsys.readouterr().out
    assert "{sgd,asgd,adam,adamw}" in help_text and "(default: 0.1)" in help_text


def test_predict_export_and_train_close_the_loop(small_study: tuple[str, str], tmp_path, capsys) -> None:
    import numpy as np
    from sklearn.datasets import load_digits

    url, name = small_study
    X, y = load_digits(return_X_y=True)
    np.savez(tmp_path / "labelled.npz", X=X[:300], y=y[:300])
    np.savetxt(tmp_path / "features.csv", X[:4], delimiter=",")

    out = tmp_path / "predictions.csv"
    labelled = str(tmp_path / "labelled.npz")
    assert main(["predict", "--study-name", name, "--storage", url, labelled, "--out", str(out)]) == 0
    summary = capsys.readouterr().out
    assert "300 predictions written to" in summary and "accuracy 0." in summary and "macro F1 0." in summary
    rows = out.read_text().splitlines()
    assert rows[0] == "label" and len(rows) == 301
    assert np.mean(np.array(rows[1:], dtype=int) == y[:300]) > 0.85

    assert main(["export", "--study-name", name, "--storage", url, "--out", str(tmp_path / "model")]) == 0
    capsys.readouterr()
    assert main(["predict", "--model", str(tmp_path / "model"), str(tmp_path / "features.csv")]) == 0
    printed = capsys.readouterr()
    assert printed.out.splitlines()[0] == "label" and len(printed.out.splitlines()) == 5  # no labels: no accuracy
    assert "4 predictions" in printed.err and "accuracy" not in printed.err

    # train --from-study reproduces the best trial; --save writes a model predict takes
    assert main(["best", "--study-name", name, "--storage", url, "--json"]) == 0
    best = json.loads(capsys.readouterr().out)["best"]
    saved = tmp_path / "trained"
    assert main(["train", "--from-study", name, "--storage", url, "--save", str(saved), "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained["params"] == trained["params"] | best["params"]
    assert trained["val_acc"] == pytest.approx(best["val_acc"], abs=1e-6)
    assert main(["predict", "--model", str(saved), str(tmp_path / "labelled.npz")]) == 0
    assert "accuracy" in capsys.readouterr().err

    assert main(["predict", "--model", str(tmp_path / "nope"), "digits"]) == ExitStatus.USER_ERROR
    assert capsys.readouterr().err.strip() == f"svmhpo: error: {tmp_path / 'nope'}: no such model"


def test_version_and_a_bare_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    from svmhpo import __version__

    assert main(["--version"]) == ExitStatus.OK
    assert capsys.readouterr().out.strip() == f"svmhpo {__version__}"
    assert main([]) == ExitStatus.OK  # a bare `svmhpo` shows what it can do
    out = capsys.readouterr().out
    assert out.startswith("usage: svmhpo") and "predict" in out and "run" in out


def test_studies_and_trials_in_every_format_and_delete(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    import csv
    import io

    import yaml

    env = dict(__import__("os").environ, SVMHPO_HOME=str(tmp_path))
    url = f"sqlite:///{tmp_path / 'f.db'}"
    command = ["run", "--trials", "6", "--storage", url, "--study-name", "fmt", "--quiet"]
    subprocess.run([sys.executable, "-m", "svmhpo.testing", *command], check=True, env=env, capture_output=True)
    assert main(["studies", "--storage", url]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == [
        "study",
        "complete",
        "pruned",
        "failed",
        "running",
        "budget",
        "metric",
        "best",
        "test",
    ]
    name, complete, pruned, failed, running, budget = table[2].split()[:6]
    assert running == "0"
    assert (name, int(complete) + int(pruned), failed, budget) == ("fmt", 6, "0", "6")  # one batch, peers pruned
    parsers = {"json": json.loads, "yaml": yaml.safe_load, "csv": lambda t: list(csv.DictReader(io.StringIO(t)))}
    for fmt, parse in parsers.items():
        assert main(["studies", "--storage", url, "-f", fmt]) == 0
        (row,) = parse(capsys.readouterr().out)
        assert row["study"] == "fmt" and int(row["complete"]) == int(complete)
    assert main(["trials", "--study-name", "fmt", "--storage", url, "-f", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 6
    assert {"number", "state", "value", "epochs", "lr", "optimizer", "seed", "worker"} <= set(rows[0])
    done = [row for row in rows if row["state"] == "COMPLETE"]
    assert len(done) == int(complete) and all(row["epochs"] == "20" and row["worker"] for row in done)
    # delete: refused without --yes when nobody can be asked, then done with it, models included
    artifacts = list((tmp_path / "f.artifacts").iterdir())
    assert artifacts
    assert main(["delete", "--study-name", "fmt", "--storage", url]) == ExitStatus.USER_ERROR
    assert "needs --yes" in capsys.readouterr().err
    assert main(["delete", "--study-name", "fmt", "--storage", url, "--yes"]) == 0
    assert capsys.readouterr().out.strip() == "deleted study 'fmt' and its model"
    assert not any(p.exists() for p in artifacts)
    assert main(["studies", "--storage", url, "-f", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_a_closed_pipe_is_not_an_error(small_study: tuple[str, str]) -> None:
    """`svmhpo best --json | head -1`: the reader stops early; svmhpo exits 0 without a traceback."""
    url, name = small_study
    proc = subprocess.Popen(
        [sys.executable, "-m", "svmhpo", "best", "--study-name", name, "--storage", url, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # before svmhpo writes anything
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, stderr
    assert stderr == ""


def _bad_values(action) -> list[str]:
    """Values the option must refuse: out-of-range and unparsable numbers, unknown choices."""
    if action.choices is not None:
        return ["nope"]
    if getattr(action.type, "__name__", "") in ("int", "float"):
        return ["abc", "-1000000"]
    return []


def test_every_bad_option_value_and_odd_name_is_one_line_and_leaves_the_study_intact(
    tmp_path, noop_trainer, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from svmhpo.cli import _parser

    url = f"sqlite:///{tmp_path / 'walk.db'}"
    assert main(["run", "--trials", "4", "--no-warm-start", "--study-name", "walk", "--storage", url, "--quiet"]) == 0
    needed = {  # what each command needs besides the option under test
        "predict": ["digits", "--study-name", "walk"],
        "export": ["--study-name", "walk", "--out", str(tmp_path / "x")],
        "worker": ["--study-name", "walk"],
        "trials": ["--study-name", "walk"],
        "delete": ["--study-name", "walk"],
    }
    (commands,) = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    tried = 0
    for name, sub in commands.choices.items():
        for action in sub._actions:
            for bad in _bad_values(action) if action.option_strings else []:
                capsys.readouterr()
                argv = [name, *needed.get(name, []), "--storage", url, action.option_strings[-1], bad]
                assert main(argv) == ExitStatus.USAGE, argv
                err = capsys.readouterr().err.strip().splitlines()
                assert len(err) == 1 and err[0].startswith(f"svmhpo {name}: error: argument "), (argv, err)
                tried += 1
    assert tried >= 25
    odd = "no/such <study> é"
    for argv in (
        ["best", "--study-name", odd],
        ["trials", "--study-name", odd],
        ["report", "--study-name", odd, "--out", str(tmp_path / "r")],
        ["export", "--study-name", odd, "--out", str(tmp_path / "e")],
        ["predict", "--study-name", odd, "digits"],
        ["worker", "--study-name", odd],
        ["delete", "--study-name", odd, "--yes"],
    ):
        assert main([*argv, "--storage", url]) == ExitStatus.USER_ERROR, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("svmhpo: error: ") and "no study named" in err[0], (argv, err)
    assert main(["trials", "--study-name", "walk", "--storage", url, "-f", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 4  # the study is intact


def test_a_mistyped_option_or_config_key_gets_a_suggestion(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--trails", "5"]) == 2
    assert "unrecognized arguments: --trails 5; did you mean --trials?" in capsys.readouterr().err
    assert main(["worker", "--study-name", "x", "--batch-trails", "4"]) == 2
    assert "did you mean --batch-trials?" in capsys.readouterr().err
    assert main(["run", "--zzzz"]) == 2
    assert "did you mean" not in capsys.readouterr().err  # nothing close: no guess
    config = tmp_path / "typo.toml"
    config.write_text('[study]\ntrails = 5\n[data]\nsorce = "digits"\n')
    assert main(["run", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "unknown key 'trails'; did you mean 'trials'?" in err or "unknown key 'sorce'; did you mean 'source'?" in err


def test_best_and_trials_read_like_studies(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """``best -f json`` as ``studies -f json``; ``trials`` defaults to the digits study as ``best`` does;
    running trials are counted where a study is summed up."""
    import optuna

    url = f"sqlite:///{tmp_path / 'views.db'}"
    env = dict(__import__("os").environ, SVMHPO_HOME=str(tmp_path))
    command = ["run", "--trials", "4", "--storage", url, "--quiet", "--no-warm-start"]
    subprocess.run([sys.executable, "-m", "svmhpo.testing", *command], check=True, env=env, capture_output=True)
    assert main(["best", "--storage", url, "-f", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["study"] == "digits"
    assert main(["trials", "--storage", url, "-f", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 4
    study = optuna.load_study(study_name="digits", storage=url)
    study.ask(), study.ask()  # two trials running elsewhere
    assert main(["best", "--storage", url]) == 0
    assert ", 2 running (budget 4)" in capsys.readouterr().out.splitlines()[0]
    assert main(["studies", "--storage", url, "-f", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["running"] == 2


def test_dashboard_on_a_port_in_use_says_so_in_one_line_before_anything_else(tmp_path, capfd) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["dashboard", "--storage", f"sqlite:///{tmp_path / 'd.db'}", "--port", str(port)])
    out, err = capfd.readouterr()
    assert code == 1
    assert err == f"svmhpo: error: cannot listen on 127.0.0.1:{port} (Address already in use)\n"
    assert "Listening on" not in out + err


def test_every_commands_help_examples_parse() -> None:
    """The examples under each --help are real command lines (a renamed flag fails here)."""
    import shlex

    from svmhpo.cli import EXAMPLES, _parser

    parser = _parser()
    for name, lines in EXAMPLES.items():
        assert parser._subparsers is not None
        for line in lines:
            words = shlex.split(line.split("#")[0].split("|")[0].split(">")[0])
            assert words[0] == "svmhpo" and words[1] == name, line
            parser.parse_args(words[1:])  # exits 2 on a flag that does not exist


#: Commands whose output is not a result to format: predict writes the labels (a CSV of its own),
#: dashboard serves pages until stopped.
NO_RESULT = {"predict", "dashboard"}


def test_every_command_has_help_with_examples_and_every_result_comes_in_every_format(
    tmp_path, noop_trainer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Walks every command of the parser: ``--help`` with an Examples section, and ``-f json``
    (``yaml``, ``csv`` and ``--json`` too) parsed back, in one study's life from init to delete."""
    import csv
    import io

    import yaml

    from svmhpo.cli import _parser

    commands = set(_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    for name in sorted(commands):
        assert main([name, "--help"]) == 0
        text = capsys.readouterr().out
        assert "\nexamples:\n  svmhpo " + name in text, name
        assert ("-f {table,json,csv,yaml}" in text) == (name not in NO_RESULT), name

    url = f"sqlite:///{tmp_path / 'walk.db'}"
    where = ["--storage", url, "--study-name", "walk"]
    parsers = {"json": json.loads, "yaml": yaml.safe_load, "csv": lambda t: list(csv.DictReader(io.StringIO(t)))}
    walked = set()

    def result(command: list[str], fmt: str = "json"):
        walked.add(command[0])
        assert main([*command, "-f", fmt]) == 0, command
        out = capsys.readouterr().out
        return parsers[fmt](out)

    made = result(["init", *where, "--trials", "6", "--no-warm-start"])
    assert made == {"study": "walk", "budget": 6, "warm_start": {}}
    run = result(["run", *where, "--quiet"])
    assert run["study"] == "walk" and run["trials"]["complete"] + run["trials"]["pruned"] == 6
    assert result(["worker", *where, "--quiet"], "yaml")["final"] == run["final"]  # nothing left: the summary
    best = result(["best", *where])
    assert best["metric"] == "accuracy" and best["final"]["test_acc"] > 0.5
    (row,) = result(["best", *where], "csv")  # one row, the nested keys joined by dots
    assert row["best.trial"] == str(best["best"]["trial"]) and row["final.test_acc"] == repr(best["final"]["test_acc"])
    assert result(["studies", "--storage", url])[0]["study"] == "walk"
    assert len(result(["trials", *where], "yaml")) == 6
    assert result(["refit", *where])["final"]["trial"] == best["final"]["trial"]
    exported = result(["export", *where, "--out", str(tmp_path / "m.zip")])
    assert exported == {"study": "walk", "model": str(tmp_path / "m.zip"), "as": "zip"}
    report = result(["report", *where, "--out", str(tmp_path / "r.html"), "--plotlyjs", "cdn"])
    assert report["report"] == str(tmp_path / "r.html") and report["bytes"] > 10_000
    trained = result(["train", "--epochs", "2"])
    assert trained["val_acc"] > 0.8 and set(trained["test"]) == {"acc", "loss", "f1"}
    again = result(["train", "--from-study", "walk", "--storage", url])
    assert again["trial"] == best["final"]["trial"]
    assert main(["studies", "--storage", url, "--json"]) == 0  # --json, the alias, as -f json
    assert json.loads(capsys.readouterr().out)[0]["study"] == "walk"
    assert result(["delete", *where, "--yes"]) == {"study": "walk", "deleted": True, "model": True}
    assert walked == commands - NO_RESULT


def test_config_usage_and_study_errors_answer_before_torch_is_imported(tmp_path) -> None:
    """A config typo, an unknown study and a misspelled option: one line each, and torch never
    loaded (importing it and Lightning took `run` 11-25 s before it read the TOML; the figures
    measured end to end are in the README)."""
    config = tmp_path / "typo.toml"
    config.write_text("[study]\ntrails = 5\n")
    cases = [
        (["run", "--config", str(config)], 1, "unknown key 'trails'; did you mean 'trials'?"),
        (["best", "--study-name", "nope", "--storage", f"sqlite:///{tmp_path / 'x.db'}"], 1, "no study named 'nope'"),
        (["run", "--trails", "3"], 2, "did you mean --trials?"),
        (["worker", "--study-name", "nope", "--storage", f"sqlite:///{tmp_path / 'x.db'}"], 1, "no study named"),
    ]
    for argv, status, said in cases:
        script = (
            "import sys\nfrom svmhpo.cli import main\n"
            f"code = main({argv!r})\n"
            "print(code, sorted(m for m in ('torch', 'lightning') if m in sys.modules), file=sys.stderr)\n"
        )
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
        *lines, last = done.stderr.strip().splitlines()
        assert last == f"{status} []", (argv, done.stderr)
        assert len(lines) == 1 and said in lines[0] and "Traceback" not in done.stderr, (argv, done.stderr)


def test_the_baseline_line_names_the_winner_in_the_studys_metric(capsys: pytest.CaptureFixture[str]) -> None:
    from svmhpo.cli import _print_baseline

    base = {"model": "LinearSVC", "C": 0.1, "test_acc": 0.95, "test_f1": 0.94, "test_balanced_acc": 0.96}
    tuned = {"test_acc": 0.96, "test_f1": 0.95, "test_balanced_acc": 0.93}
    _print_baseline(base, tuned, "balanced_accuracy")
    assert capsys.readouterr().out == (
        "baseline LinearSVC C=0.1: test balanced acc 0.9600, acc 0.9500, macro F1 0.9400; the BASELINE WINS by "
        "3.00 points of balanced accuracy: the tuned SVM is worse than LinearSVC here\n"
    )
    _print_baseline(base, tuned, "accuracy")
    assert capsys.readouterr().out.endswith("; the tuned model WINS by 1.00 points of accuracy\n")
    older = {k: v for k, v in base.items() if k != "test_balanced_acc"}  # stored before [study] metric
    _print_baseline(older, dict(tuned, test_acc=0.95), "balanced_accuracy")
    assert capsys.readouterr().out.endswith("; a TIE with the tuned model on test accuracy\n")

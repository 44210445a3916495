"""No command prints a database password, in any of the forms a URL can carry one.

Every command that takes a storage is run against URLs whose server refuses the connection (or
which do not parse), with the password in the userinfo (plain, URL-encoded, with a raw ``@``),
as a ``password=`` query parameter, and through ``$SVMHPO_STORAGE``. Each must exit 1 with one
error line on stderr, last (after any progress line, such as the data ``init`` loaded), that
names the URL with ``***``, and print the password nowhere.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from svmhpo.cli import main

SECRET = "Sup3rS3cret"
FORMS = {
    "userinfo": f"postgresql+psycopg://svmhpo:{SECRET}@127.0.0.1:1/db",
    "encoded": f"postgresql+psycopg://svmhpo:{SECRET}%2F%40x@127.0.0.1:1/db",
    "raw-at": f"postgresql+psycopg://svmhpo:{SECRET}@x@127.0.0.1:1/db",
    "query": f"postgresql+psycopg://svmhpo@127.0.0.1:1/db?password={SECRET}&sslmode=disable",
    "bad-port": f"postgresql+psycopg://svmhpo:{SECRET}@127.0.0.1:abc/db",
    "mysql-query": f"mysql+pymysql://svmhpo@127.0.0.1:1/db?passwd={SECRET}",
}


def _commands(tmp_path: Path) -> dict[str, list[str]]:
    data = tmp_path / "rows.csv"
    data.write_text("0," * 63 + "0\n")
    return {
        "run": ["run", "--no-warm-start", "--trials", "2", "--quiet"],
        "init": ["init", "--no-warm-start"],
        "worker": ["worker", "--study-name", "digits", "--quiet"],
        "studies": ["studies"],
        "trials": ["trials", "--study-name", "digits"],
        "delete": ["delete", "--study-name", "digits", "--yes"],
        "best": ["best"],
        "report": ["report", "--out", str(tmp_path / "r")],
        "predict": ["predict", "--study-name", "digits", str(data)],
        "export": ["export", "--study-name", "digits", "--out", str(tmp_path / "e")],
        "train": ["train", "--from-study", "digits", "--epochs", "1"],
        "refit": ["refit", "--study-name", "digits"],
        "dashboard": ["dashboard", "--port", "1"],
    }


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("via", ["flag", "env"])
def test_no_command_prints_the_password(tmp_path: Path, capsys, monkeypatch, form: str, via: str) -> None:
    url = FORMS[form]
    for name, args in _commands(tmp_path).items():
        if via == "env":
            monkeypatch.setenv("SVMHPO_STORAGE", url)
            argv = args
        else:
            monkeypatch.delenv("SVMHPO_STORAGE", raising=False)
            argv = [*args, "--storage", url]
        status = main(argv)
        out, err = capsys.readouterr()
        assert SECRET not in out + err, f"{name} printed the password: {out + err}"
        assert status == 1, f"{name}: exit {status}: {err}"
        errors = [line for line in err.splitlines() if line.startswith("svmhpo")]
        assert len(errors) == 1 and "***" in errors[0] and err.endswith(errors[0] + "\n"), f"{name}: {err}"
        assert "Traceback" not in err

"""The study's product end to end, as a user reaches it: a study on a named CSV continued by name
from another folder, the model at the path ``best`` prints, ``export`` to a zip, ``report`` to a
file, the model deleted through optuna-dashboard's own API and rebuilt by ``svmhpo refit``, and
``train --from-study`` giving the numbers ``best`` shows. Real fits, a real SQLite file."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from conftest import assert_one_model, dashboard_request
from sklearn.datasets import load_breast_cancer

from svmhpo.cli import ExitStatus, main


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict:
    assert main(argv) == ExitStatus.OK, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _dashboard_delete(url: str, study_id: int, artifact_id: str) -> int:
    """DELETE an artifact through optuna-dashboard's WSGI app, as its delete button does."""
    return dashboard_request(url, "DELETE", f"/api/artifacts/{study_id}/{artifact_id}")[0]


@pytest.fixture
def cancer(tmp_path: Path) -> Path:
    """A config in its own folder naming a CSV beside it by a relative path, the label column first and named."""
    folder = tmp_path / "project"
    folder.mkdir()
    data = load_breast_cancer(as_frame=True)
    frame = data.frame.rename(columns={"target": "diagnosis"})
    frame = frame[["diagnosis", *data.feature_names]]
    frame.to_csv(folder / "cancer.csv", index=False)
    config = folder / "cancer.toml"
    config.write_text(
        '[study]\nname = "cancer"\ntrials = 6\n'
        '[data]\nsource = "cancer.csv"\nlabel = "diagnosis"\n'
        "[training]\nepochs = 4\nbatch_trials = 3\n[baseline]\nC = [0.1]\n"
    )
    return config


def test_continue_export_report_delete_refit_and_train_from_study(
    cancer: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from svmhpo.hpo.studies import read_study
    from svmhpo.hpo.tuned import load_model
    from svmhpo.svm.data import TableFormat, load_dataset, split_dataset

    url = f"sqlite:///{tmp_path / 'studies.db'}"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # neither the config's folder nor the data's
    run = ["run", "--storage", url, "--no-warm-start", "--quiet", "--json"]
    first = _json(capsys, [*run, "--config", str(cancer)])
    assert first["budget"] == 6 and first["final"]["model"] == "live"
    study = read_study("cancer", url)
    stored = study.user_attrs
    assert stored["data"] == str(cancer.parent / "cancer.csv")  # stored absolute
    assert stored["features"] == {"count": 30, "named": True, "label": "diagnosis"}

    # continued by name, from yet another folder, with the stored (non-default) config
    monkeypatch.chdir(tmp_path)
    more = _json(capsys, [*run, "--study-name", "cancer", "--trials", "9"])
    assert more["budget"] == 9 and more["trials"]["complete"] + more["trials"]["pruned"] == 9
    # a config that differs is refused, naming what differs
    changed = cancer.with_name("changed.toml")
    changed.write_text(cancer.read_text().replace("epochs = 4", "epochs = 5"))
    assert main([*run, "--config", str(changed)]) == ExitStatus.USER_ERROR
    err = capsys.readouterr().err
    assert "study 'cancer' already exists with another config ([training] epochs 4 -> 5)" in err

    # the path best prints is what load_model and predict --model take
    assert main(["best", "--study-name", "cancer", "--storage", url]) == ExitStatus.OK
    shown = capsys.readouterr().out
    path = re.search(r"^model: (\S+)$", shown, re.M).group(1)
    assert "WINS" in shown or "TIE" in shown
    model = load_model(path)
    assert list(model.feature_names_in_) == list(load_breast_cancer().feature_names)
    final = more["final"]
    csv = str(cancer.parent / "cancer.csv")
    split = split_dataset(load_dataset(csv, table=TableFormat(label="diagnosis")), seed=0)
    raw_test = split.scaler.inverse_transform(split.X_test)
    test = pd.DataFrame(raw_test, columns=model.feature_names_in_)
    assert model.score(test, split.classes[split.y_test]) == pytest.approx(final["test_acc"], abs=1e-6)
    assert main(["predict", "--model", path, str(cancer.parent / "cancer.csv"), "--out", "p.csv"]) == 0
    capsys.readouterr()

    # export to a zip, refused over it without --force; report to a file
    assert main(["export", "--study-name", "cancer", "--storage", url, "--out", "m.zip"]) == ExitStatus.OK
    assert capsys.readouterr().out.strip() == str(Path("m.zip"))
    assert zipfile.is_zipfile("m.zip") and sorted(zipfile.ZipFile("m.zip").namelist()) == ["model.json", "weights.pt"]
    assert main(["export", "--study-name", "cancer", "--storage", url, "--out", "m.zip"]) == ExitStatus.USER_ERROR
    assert "m.zip: exists; pass --force to replace it" in capsys.readouterr().err
    assert main(["export", "--study-name", "cancer", "--storage", url, "--out", "m.zip", "--force"]) == 0
    capsys.readouterr()
    assert load_model(Path("m.zip")).score(test, split.classes[split.y_test]) == pytest.approx(final["test_acc"])
    assert main(["report", "--study-name", "cancer", "--storage", url, "--out", "out/r.html"]) == ExitStatus.OK
    assert Path("out/r.html").is_file() and capsys.readouterr().out.strip() == "out/r.html"
    assert main(["report", "--study-name", "cancer", "--storage", url, "--out", "out/r.html"]) == 0  # refreshed
    Path("other.html").write_text("<p>mine</p>")
    assert main(["report", "--study-name", "cancer", "--storage", url, "--out", "other.html"]) == 1
    assert Path("other.html").read_text() == "<p>mine</p>"
    capsys.readouterr()

    # one click in the dashboard deletes the model; best and predict say so and name the way back
    assert _dashboard_delete(url, study._study_id, final["model_artifact_id"]) == 204
    assert main(["best", "--study-name", "cancer", "--storage", url]) == ExitStatus.OK
    shown = capsys.readouterr().out
    assert "model: missing" in shown and "svmhpo refit --study-name cancer" in shown
    assert main(["predict", "--study-name", "cancer", "--storage", url, str(cancer.parent / "cancer.csv")]) == 1
    err = capsys.readouterr().err
    assert "its model is missing" in err and "svmhpo refit --study-name cancer" in err and "another" not in err
    rebuilt = _json(capsys, ["refit", "--study-name", "cancer", "--storage", url, "--json"])
    assert rebuilt["final"]["model"] == "live" and rebuilt["final"]["trial"] == final["trial"]
    assert rebuilt["final"]["test_acc"] == final["test_acc"] and rebuilt["final"]["test_f1"] == final["test_f1"]
    assert_one_model(read_study("cancer", url))

    # train --from-study redoes the refit: the numbers best shows
    again = _json(capsys, ["train", "--from-study", "cancer", "--storage", url, "--json"])
    assert again["trial"] == final["trial"] and again["test_acc"] == final["test_acc"]

    # a worker on a host without the data file names the path the study stores
    (cancer.parent / "cancer.csv").rename(tmp_path / "moved.csv")
    assert main(["worker", "--study-name", "cancer", "--storage", url, "--quiet"]) == ExitStatus.USER_ERROR
    err = capsys.readouterr().err
    assert f"{cancer.parent / 'cancer.csv'}: no such file on this host (the [data] source of study 'cancer')" in err

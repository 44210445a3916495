"""Files made the way users make them, through the command line: the right labels, or one line naming row and column.

A model is trained once (``svmhpo train --save``) on a pandas-written CSV whose label column
comes first; every other file is a variant of the same 50 held-back rows, and its predictions
must be the model's predictions on those rows in their own order.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits

from svmhpo.cli import ExitStatus, main

N_NEW = 50
FEATURES = [f"x{i}" for i in range(64)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame, np.ndarray]:
    """A model saved by ``train --save`` from ``label,x0..x63``; 50 new rows, and what the model says of them."""
    from svmhpo.hpo.tuned import load_model

    folder = tmp_path_factory.mktemp("tables")
    X, y = load_digits(return_X_y=True)
    frame = pd.DataFrame(X, columns=FEATURES)
    frame.insert(0, "label", y)
    frame.iloc[N_NEW:].to_csv(folder / "train.csv", index=False)
    code = main(["train", "--data", str(folder / "train.csv"), "--epochs", "3", "--save", str(folder / "model")])
    assert code == ExitStatus.OK
    new = frame.iloc[:N_NEW].reset_index(drop=True)
    model = load_model(folder / "model")
    assert list(model.feature_names_in_) == FEATURES
    expected = model.predict(new[FEATURES])
    assert (expected == new["label"]).mean() > 0.8  # a real model, so that a shifted row shows
    return folder, new, expected


def _predict(model: Path, data: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, np.ndarray | None]:
    out = data.with_suffix(".predicted.csv")
    code = main(["predict", "--model", str(model), str(data), "--out", str(out)])
    captured = capsys.readouterr()
    labels = pd.read_csv(out)["label"].to_numpy() if code == ExitStatus.OK else None
    return code, captured.out + captured.err, labels


MAKERS = {
    "features only, no index": lambda f, p: f.drop(columns="label").to_csv(p, index=False),
    "features only, with index": lambda f, p: f.drop(columns="label").to_csv(p),
    "label first, with index": lambda f, p: f.to_csv(p),
    "label last": lambda f, p: f[[*FEATURES, "label"]].to_csv(p, index=False),
    "columns swapped": lambda f, p: f[["label", "x5", "x4", *FEATURES[:4], *FEATURES[6:]]].to_csv(p, index=False),
    "semicolons and decimal commas": lambda f, p: (f.drop(columns="label") / 3).to_csv(
        p, sep=";", decimal=",", index=False
    ),
    "quoted": lambda f, p: f.to_csv(p, index=False, quoting=1),
    "tab-separated": lambda f, p: f.to_csv(p.with_suffix(".tsv"), sep="\t", index=False),
    "Excel CSV UTF-8 with CRLF": lambda f, p: p.write_bytes(
        b"\xef\xbb\xbf" + f.to_csv(index=False, lineterminator="\r\n").encode()
    ),
}


@pytest.mark.parametrize("kind", list(MAKERS))
def test_prediction_files_give_the_models_labels_row_for_row(
    trained, kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, new, expected = trained
    path = tmp_path / "new.csv"
    frame = new.copy()
    if kind == "semicolons and decimal commas":  # values scaled so that they have decimals; labels follow
        from svmhpo.hpo.tuned import load_model

        expected = load_model(folder / "model").predict(frame[FEATURES] / 3)
    MAKERS[kind](frame, path)
    if kind == "tab-separated":
        path = path.with_suffix(".tsv")
    code, output, labels = _predict(folder / "model", path, capsys)
    assert code == ExitStatus.OK, output
    assert f"{N_NEW} predictions" in output
    assert np.array_equal(labels, expected)
    if "label" in pd.read_csv(path, sep=None, engine="python").columns:
        accuracy = float(output.split("accuracy ")[1].split(",")[0])
        assert accuracy == pytest.approx((expected == new["label"]).mean(), abs=1e-4)


def test_the_label_column_is_found_by_name_for_training_too(trained, capsys: pytest.CaptureFixture[str]) -> None:
    folder, _, _ = trained
    # the model was trained on label-first data: had the label been read as x63, its classes would be pixel values
    from svmhpo.hpo.tuned import load_model

    model = load_model(folder / "model")
    assert list(model.classes_) == list(range(10))
    assert model.named_steps["svm"].coef_.shape == (10, 64)
    assert model.named_steps["svm"].label_name_ == "label"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "the file is empty"),
        ("\n\n", "the file is empty"),
        ("x1,x2,label\n", "a header line and no data rows"),
        ("x1;x2;label\n1,5;2;a\n", None),  # decimal comma: fine
        ("a,b,label\n1,2,x\n3,4\n5,6,y,7\n", "line 4 has 4 fields where the lines before it have 3"),
        ("a,b,label\n1,2,x\n3,oops,y\n", r"row 2 \(line 3\), column 'b': 'oops' is not a number"),
        ("a,b,label\n1,2,x\n3,inf,y\n", r"row 2 \(line 3\), column 'b': 'inf' is not a finite number"),
        ("a,b,label\n1,2,x\n3,4,\n", r"row 2 \(line 3\), column 'label': missing label"),
        ("a,b,target,label\n1,2,x,y\n", "could each be the label"),
        ("a,a,label\n1,2,x\n", "'a' appears more than once"),
        ("only\n1\n2\n", "one column found"),
        ("a,b,label\n1,2,x\n\n3,4,y\n\n5,,z\n\n", r"row 3 \(line 6\), column 'b': missing value"),
    ],
)
def test_bad_training_files_are_one_line_naming_row_and_column(
    tmp_path: Path, content: str, message: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    code = main(["train", "--data", str(path), "--epochs", "1"])
    err = capsys.readouterr().err
    if message is None:  # a two-row file passes reading, then fails the class count, in words
        assert code == ExitStatus.USER_ERROR and "found 2" not in err
        return
    assert code == ExitStatus.USER_ERROR, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"svmhpo: error: {path}: "), err
    assert pytest.importorskip("re").search(message, lines[0]), lines[0]
    assert "np." not in lines[0] and "Traceback" not in err


def test_nan_in_row_17_column_x3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    X, y = load_digits(return_X_y=True)
    frame = pd.DataFrame(X[:300, :8], columns=[f"x{i}" for i in range(1, 9)]).assign(label=y[:300])
    frame.loc[16, "x3"] = np.nan  # the 17th data row; pandas writes it as an empty cell
    frame.to_csv(tmp_path / "nan.csv", index=False)
    assert main(["train", "--data", str(tmp_path / "nan.csv"), "--epochs", "1"]) == ExitStatus.USER_ERROR
    assert capsys.readouterr().err.strip() == (
        f"svmhpo: error: {tmp_path / 'nan.csv'}: row 17 (line 18), column 'x3': missing value"
    )


def test_prediction_files_that_do_not_fit_the_model(trained, tmp_path: Path, capsys) -> None:
    folder, new, _ = trained
    cases = {
        "missing.csv": (new.drop(columns="x3"), r"no column 'x3' \(a feature of the model\)"),
        "extra.csv": (new.assign(notes="n"), "column 'notes' is not a feature of the model, nor a label"),
        "narrow.csv": (pd.DataFrame(np.zeros((3, 30))), "30 columns; the model takes 64 features"),
        "header-only.csv": (new.iloc[:0], "a header line and no data rows"),
    }
    for name, (frame, message) in cases.items():
        frame.to_csv(tmp_path / name, index=False)
        code, output, _ = _predict(folder / "model", tmp_path / name, capsys)
        assert code == ExitStatus.USER_ERROR, (name, output)
        assert pytest.importorskip("re").search(message, output), (name, output)
        assert len(output.strip().splitlines()) == 1
    (tmp_path / "empty.csv").write_text("")
    code, output, _ = _predict(folder / "model", tmp_path / "empty.csv", capsys)
    assert code == ExitStatus.USER_ERROR and "the file is empty" in output


def test_an_unnamed_model_counts_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A model trained on digits (no column names): pandas' ``0..63`` header is a header, not a row."""
    X, y = load_digits(return_X_y=True)
    assert main(["train", "--epochs", "2", "--save", str(tmp_path / "m")]) == ExitStatus.OK
    capsys.readouterr()
    pd.DataFrame(X[:N_NEW]).to_csv(tmp_path / "x.csv", index=False)
    code, output, labels = _predict(tmp_path / "m", tmp_path / "x.csv", capsys)
    assert code == ExitStatus.OK and f"{N_NEW} predictions" in output and len(labels) == N_NEW
    pd.DataFrame(X[:N_NEW]).assign(label=y[:N_NEW]).to_csv(tmp_path / "xy.csv", index=False)
    code, output, labels2 = _predict(tmp_path / "m", tmp_path / "xy.csv", capsys)
    assert code == ExitStatus.OK and np.array_equal(labels, labels2) and "accuracy" in output
    pd.DataFrame(np.zeros((4, 66))).to_csv(tmp_path / "wide.csv", index=False)
    code, output, _ = _predict(tmp_path / "m", tmp_path / "wide.csv", capsys)
    assert code == ExitStatus.USER_ERROR and "66 columns; the model takes 64 features" in output


@pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None, reason="pyarrow is not installed")
def test_parquet(trained, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder, new, expected = trained
    new[["x5", "label", *[c for c in FEATURES if c != "x5"]]].to_parquet(tmp_path / "new.parquet")
    code, output, labels = _predict(folder / "model", tmp_path / "new.parquet", capsys)
    assert code == ExitStatus.OK, output
    assert np.array_equal(labels, expected)


def test_a_named_label_column_from_the_config(tmp_path: Path) -> None:
    from svmhpo.svm.data import load_dataset
    from svmhpo.svm.tables import TableFormat

    frame = pd.DataFrame({"species": ["a", "b"] * 10, "w": range(20), "h": range(20, 40), "y": [0.5] * 20})
    frame.to_csv(tmp_path / "d.csv", index=False)
    data = load_dataset(str(tmp_path / "d.csv"), table=TableFormat(label="species", features=("h", "w")))
    assert data.feature_names == ("h", "w") and data.label == "species"
    assert list(np.unique(data.y)) == ["a", "b"] and data.X[0].tolist() == [20.0, 0.0]
    # without a label set, "y" is the label by its name; "species" is then refused as a feature
    with pytest.raises(Exception, match=r"row 1 \(line 2\), column 'species': 'a' is not a number"):
        load_dataset(str(tmp_path / "d.csv"))


@pytest.mark.parametrize("kind", list(MAKERS))
def test_the_fast_reading_equals_the_exact_one(trained, kind: str, tmp_path: Path) -> None:
    """pandas parses the numbers of a clean file itself; what it gives is what reading every cell as text gives."""
    from svmhpo.svm.tables import TableFormat, _cells, _training

    _, new, _ = trained
    path = tmp_path / "new.csv"
    MAKERS[kind](new.copy(), path)
    path = path.with_suffix(".tsv") if kind == "tab-separated" else path
    fast, exact = (_training(_cells(path, TableFormat(), exact=e), TableFormat()) for e in (False, True))
    assert np.array_equal(fast.X, exact.X) and np.array_equal(fast.y, exact.y)
    assert fast.feature_names == exact.feature_names and fast.label == exact.label and fast.notes == exact.notes


def test_train_takes_the_label_column_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    X, y = load_digits(return_X_y=True)
    frame = pd.DataFrame(X[:600], columns=[f"f{i}" for i in range(64)]).assign(digit=y[:600])
    frame[["digit", *frame.columns[:-1]]].to_csv(tmp_path / "d.csv", index=False)
    assert main(["train", "--data", str(tmp_path / "d.csv"), "--label", "digit", "--epochs", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["test"]["acc"] > 0.5  # ten classes learned, not pixel values
    assert main(["train", "--data", str(tmp_path / "d.csv"), "--label", "Digit", "--epochs", "1"]) == 1
    err = capsys.readouterr().err
    assert err.strip().endswith("no column named 'Digit' for the label (did you mean 'digit'?)")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda lines: lines.__setitem__(250, lines[250].replace("1.5", "x", 1)), r"row 250 \(line 251\), column 'b'"),
        (lambda lines: lines.__setitem__(280, lines[280].rstrip() + ",9\n"), "line 281 has 4 fields where"),
        (lambda lines: lines.insert(10, "\n") or lines.__setitem__(290, "1,,c\n"), r"row 289 \(line 291\), column 'b'"),
        (lambda lines: lines.__setitem__(260, "1,inf,c\n"), r"row 260 \(line 261\), column 'b': 'inf' is not a finite"),
    ],
)
def test_bad_cells_past_the_first_lines_are_named_as_well(tmp_path: Path, change, message: str) -> None:
    """Past the lines read as text to decide the layout, pandas parses the file; a bad cell there is named too."""
    from svmhpo.errors import DataError
    from svmhpo.svm.data import load_dataset

    lines = ["a,b,label\n"] + [f"{i},1.5,{'xyz'[i % 3]}\n" for i in range(400)]
    change(lines)
    (tmp_path / "long.csv").write_text("".join(lines))
    with pytest.raises(DataError, match=message):
        load_dataset(str(tmp_path / "long.csv"))

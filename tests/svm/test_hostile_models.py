"""Model files that are broken or hostile: each is refused in one ModelError line, within bounds.

Every case starts from a real saved model and breaks one thing the way a truncated download, a
hand edit or an attacker would, then reads it with :func:`read_model` and through
``svmhpo predict --model``: exit 1, one line, no traceback.
"""

from __future__ import annotations

import json
import resource
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.preprocessing import StandardScaler

from svmhpo.cli import main
from svmhpo.errors import ModelError
from svmhpo.hpo.tuned import load_model
from svmhpo.svm.params import SVMParams
from svmhpo.svm.persist import META, WEIGHTS, load_pipeline, read_model, save_model, zip_model


def _saved(tmp_path: Path, n_features: int = 4) -> Path:
    net = torch.nn.Linear(n_features, 3)
    state = {"linear.weight": net.weight.detach(), "linear.bias": net.bias.detach()}
    scaler = StandardScaler().fit(np.random.default_rng(0).normal(size=(20, n_features)))
    return save_model(tmp_path / "m", state, params=SVMParams(), classes=[0, 1, 2], scaler=scaler)


def _meta(model: Path) -> dict:
    return json.loads((model / META).read_text())


def _with_meta(model: Path, meta: dict | str) -> Path:
    (model / META).write_text(meta if isinstance(meta, str) else json.dumps(meta))
    return model


def _refused(model: Path, match: str, capsys: pytest.CaptureFixture[str], data: Path) -> None:
    with pytest.raises(ModelError, match=match) as info:
        load_pipeline(model)
    assert "\n" not in str(info.value)
    capsys.readouterr()
    assert main(["predict", "--model", str(model), str(data)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("svmhpo: error: ") and "Traceback" not in err, err


@pytest.fixture
def rows(tmp_path: Path) -> Path:
    path = tmp_path / "rows.csv"
    path.write_text("\n".join(",".join(["0.5"] * 4) for _ in range(3)) + "\n")
    return path


MALFORMED = [
    ("no scaler", lambda m: {k: v for k, v in m.items() if k != "scaler"}, r"scaler: Field required"),
    ("scaler not an object", lambda m: m | {"scaler": [1, 2]}, r"scaler: Input should be"),
    ("string scale", lambda m: m | {"scaler": m["scaler"] | {"scale": ["1"] * 4}}, r"scaler\.standard\.scale\.0"),
    ("NaN scale", lambda m: json.dumps(m).replace('"scale": [', '"scale": [NaN, '), "NaN is not a number JSON allows"),
    ("zero scale", lambda m: m | {"scaler": m["scaler"] | {"scale": [0.0] * 4}}, "a scale must not be zero"),
    ("mixed classes", lambda m: m | {"classes": [0, "1", 2]}, r"classes"),
    ("unsorted classes", lambda m: m | {"classes": [2, 1, 0]}, "distinct and sorted"),
    ("repeated classes", lambda m: m | {"classes": [0, 0, 1]}, "distinct and sorted"),
    ("n_features Infinity", lambda m: json.dumps(m | {"n_features": 1e999}), "Infinity is not a number JSON allows"),
    ("n_features float", lambda m: m | {"n_features": 4.0}, r"n_features: Input should be a valid integer"),
    ("n_classes too many", lambda m: m | {"n_classes": 10**6}, r"n_classes: Input should be less than or equal"),
    ("nested 100k deep", lambda m: m | {"source": "X"}, None),  # replaced below: raw text
    ("format true", lambda m: m | {"format": True}, "model format True; this svmhpo reads format 1"),
    ("format 1.0", lambda m: m | {"format": 1.0}, "model format 1.0; this svmhpo reads format 1"),
    ("params NaN lr", lambda m: json.dumps(m | {"params": {"lr": 1}}).replace('"lr": 1', '"lr": NaN'), "NaN is not"),
    ("params negative lr", lambda m: m | {"params": {"lr": -1}}, r"params\.lr: Input should be greater than 0"),
    ("not an object", lambda m: "[1, 2, 3]", "not an svmhpo model"),
    ("feature names too few", lambda m: m | {"feature_names": ["a", "b"]}, "2 feature names for n_features = 4"),
    ("feature names repeated", lambda m: m | {"feature_names": ["a"] * 4}, "feature names must be distinct"),
    ("feature name a number", lambda m: m | {"feature_names": [1, 2, 3, 4]}, r"feature_names\.0"),
]


@pytest.mark.parametrize("case,change,match", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_model_json_is_one_line(tmp_path: Path, rows: Path, capsys, case: str, change, match) -> None:
    model = _saved(tmp_path)
    if case == "nested 100k deep":
        text = json.dumps(_meta(model))[:-1] + ', "deep": ' + "[" * 100_000 + "]" * 100_000 + "}"
        _with_meta(model, text)
        match = "nested too deeply"
    else:
        _with_meta(model, change(_meta(model)))
    _refused(model, match, capsys, rows)


def test_two_model_json_members_are_refused(tmp_path: Path, rows: Path, capsys) -> None:
    model = _saved(tmp_path)
    archive = zip_model(model, tmp_path / "m.zip")
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(archive, "a") as zf:
        zf.writestr(META, json.dumps(_meta(model) | {"classes": ["a", "b", "c"]}))
    _refused(archive, "holds model.json 2 times", capsys, rows)


@pytest.mark.parametrize(
    "weights,match",
    [
        ({"linear.weight": torch.full((3, 4), float("nan")), "linear.bias": torch.zeros(3)}, "NaN or infinite"),
        ({"linear.weight": torch.zeros(3, 4), "linear.bias": torch.tensor([0, float("inf"), 0])}, "NaN or infinite"),
        ({"linear.weight": torch.zeros(3, 4, dtype=torch.complex64), "linear.bias": torch.zeros(3)}, "complex64"),
        ({"linear.weight": torch.zeros(3, 4, dtype=torch.int64), "linear.bias": torch.zeros(3)}, "int64"),
    ],
    ids=["nan-weight", "inf-bias", "complex", "integer"],
)
def test_weights_must_be_finite_real_numbers(tmp_path: Path, rows: Path, capsys, weights, match: str) -> None:
    model = _saved(tmp_path)
    torch.save(weights, model / WEIGHTS)
    _refused(model, "not the file model.json describes", capsys, rows)  # the hash catches it first
    _with_meta(model, {k: v for k, v in _meta(model).items() if k != "weights_sha256"})  # a forged description
    _refused(model, match, capsys, rows)


def test_oversized_members_are_refused_before_they_are_read(tmp_path: Path, rows: Path, capsys) -> None:
    """A small zip that inflates to 256 MiB, and model.json padded past 32 MiB: refused by size, in bounded memory."""
    model = _saved(tmp_path)
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(META, (model / META).read_text())
        with zf.open(WEIGHTS, "w") as out:
            chunk = bytes(2**20)
            for _ in range(256):
                out.write(chunk)
    assert bomb.stat().st_size < 2**20
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    _refused(bomb, r"weights\.pt is larger than the [\d,]+ bytes a model's can be", capsys, rows)
    assert time.perf_counter() - start < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 100 * 2**10  # KiB: under 100 MiB more
    padded = _saved(tmp_path / "padded")
    with open(padded / META, "a") as out:
        out.write(" " * (33 * 2**20))
    _refused(padded, r"model\.json is larger than the [\d,]+ bytes", capsys, rows)


def test_the_largest_legitimate_model_shape_is_accepted(tmp_path: Path) -> None:
    """1,000 classes × 100,000 features is within bounds; one feature more is not."""
    meta = _meta(_saved(tmp_path)) | {"n_features": 100_000, "n_classes": 1000, "classes": list(range(1000))}
    meta["scaler"] = {"kind": "none"}
    from svmhpo.svm.persist import ModelMeta, _weights_limit

    described = ModelMeta.model_validate(meta)
    assert _weights_limit(described) >= 1000 * 100_001 * 4
    with pytest.raises(ValueError, match="n_features"):
        ModelMeta.model_validate(meta | {"n_features": 100_001})


def test_a_good_model_still_loads(tmp_path: Path) -> None:
    model = _saved(tmp_path)
    state, meta = read_model(model)
    assert meta["n_features"] == 4 and state["linear.weight"].dtype == torch.float32
    assert load_pipeline(zip_model(model, tmp_path / "ok.zip")).predict(np.zeros((2, 4))).shape == (2,)


def test_a_study_name_never_resolves_to_a_folder(tmp_path: Path, rows: Path, capsys, monkeypatch) -> None:
    """``predict --study-name m`` with a model folder ./m: the study is meant, and there is none."""
    _saved(tmp_path)  # ./m is a valid model
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    assert main(["predict", "--study-name", "m", "--storage", url, str(rows)]) == 1
    assert "no study named 'm'" in capsys.readouterr().err
    assert main(["predict", "--model", "m", str(rows)]) == 0  # as a path it is the model
    with pytest.raises(ModelError, match="no such model"):
        load_model(path="missing")

"""Loaders by name and path, the split, scaling, batches, and one-line errors on bad data."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import dump_svmlight_file

from svmhpo.errors import DataError
from svmhpo.svm import data
from svmhpo.svm.data import TensorBatches, load_dataset, split_dataset


def test_digits_split_is_72_8_20_stratified_and_scaled_on_train_only() -> None:
    split = split_dataset(load_dataset("digits"), seed=0)
    n = len(split.X_train) + len(split.X_val) + len(split.X_test)
    assert n == 1797
    assert len(split.X_test) == pytest.approx(0.2 * n, abs=1)
    assert len(split.X_val) == pytest.approx(0.08 * n, abs=2)
    assert split.X_train.mean(axis=0) == pytest.approx(0.0, abs=1e-5)
    assert abs(split.X_val.mean()) > 1e-4  # the scaler did not see validation data
    for part in (split.y_train, split.y_val, split.y_test):
        assert set(np.unique(part)) == set(range(10))
    again = split_dataset(load_dataset("digits"), seed=0)
    assert np.array_equal(split.y_test, again.y_test)
    assert not np.array_equal(split.y_test, split_dataset(load_dataset("digits"), seed=1).y_test)


def test_minmax_scaling_option() -> None:
    split = split_dataset(load_dataset("digits"), scaling="minmax")
    assert split.X_train.min() == pytest.approx(0.0) and split.X_train.max() == pytest.approx(1.0)


def test_synthetic_of_a_given_shape() -> None:
    ds = load_dataset("synthetic:300x12x3", seed=0)
    assert ds.X.shape == (300, 12) and ds.X.dtype == np.float32
    assert set(np.unique(ds.y)) == {0, 1, 2}


@pytest.mark.parametrize("suffix", [".npz", ".csv", ".svmlight"])
def test_local_files_load(tmp_path: Path, suffix: str) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 4)).astype(np.float32)
    y = np.repeat([3, 5, 7], 10)
    path = tmp_path / f"data{suffix}"
    if suffix == ".npz":
        np.savez(path, X=X, y=y)
    elif suffix == ".csv":
        np.savetxt(path, np.column_stack([X, y]), delimiter=",", header="a,b,c,d,label", comments="")
    else:
        dump_svmlight_file(X, y, str(path))
    ds = load_dataset(str(path))
    assert ds.X.shape == (30, 4)
    assert np.allclose(ds.X, X, atol=1e-5)
    assert sorted(np.unique(ds.y).astype(int)) == [3, 5, 7]


def test_csv_with_string_labels(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("".join(f"{i},{i * 2},{'cat' if i % 2 else 'dog'}\n" for i in range(10)))
    split = split_dataset(load_dataset(str(path)), val_size=0.3, test_size=0.3)
    assert list(split.classes) == ["cat", "dog"]


def _text(tmp_path: Path, name: str, content: str) -> str:
    path = tmp_path / name
    path.write_text(content)
    return str(path)


def _write(tmp_path: Path, name: str, **arrays: np.ndarray) -> str:
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: _write(p, "a.npz", X=np.zeros((4, 2, 2)), y=np.arange(4)), "2-dimensional"),
        (lambda p: _write(p, "b.npz", X=np.zeros((4, 2)), y=np.arange(5)), "4 rows but y has 5"),
        (lambda p: _write(p, "c.npz", X=np.full((4, 2), np.nan), y=np.arange(4)), "NaN or inf"),
        (lambda p: _write(p, "d.npz", X=np.zeros((4, 2)), y=np.zeros(4)), "at least two classes"),
        (lambda p: _write(p, "e.npz", features=np.zeros((4, 2))), "missing X, y"),
        (lambda p: _text(p, "f.csv", "1,2,x\n3,oops,y\n"), r"row 2 \(line 2\), column 2: 'oops' is not a number"),
        (lambda p: _text(p, "g.npz", "not a zip"), "cannot parse"),
        (lambda p: _text(p, "h.svm", "1 bad:line\n"), "cannot parse"),
        (lambda p: str(p / "missing.csv"), "no such file"),
        (lambda p: _text(p, "i.parquet", ""), "not a readable Parquet file"),
        (lambda p: _text(p, "j.xlsx", ""), "unknown file type"),
    ],
)
def test_bad_data_gives_one_line_naming_the_file(tmp_path: Path, make, message: str) -> None:
    source = make(tmp_path)
    with pytest.raises(DataError, match=message) as info:
        load_dataset(source)
    assert source in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_name_and_offline_openml_without_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError, match="unknown data set 'imagenet'"):
        load_dataset("imagenet")
    monkeypatch.setenv("SVMHPO_CACHE", str(tmp_path / "cache"))

    def offline(*args, **kwargs):  # what scikit-learn raises with no network; the test never reaches one
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(data, "fetch_openml", offline)
    with pytest.raises(DataError) as info:
        load_dataset("mnist")
    assert str(tmp_path / "cache") in str(info.value) and "\n" not in str(info.value)


def test_openml_cache_is_used_without_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SVMHPO_CACHE", str(tmp_path))
    X = np.random.default_rng(0).random((20, 784), dtype=np.float32)
    np.savez(tmp_path / "fashion-mnist.npz", X=X, y=np.arange(20) % 10)
    ds = load_dataset("fashion-mnist")
    assert ds.X.shape == (20, 784) and ds.name == "fashion-mnist"


def test_too_few_samples_per_class_for_stratification() -> None:
    ds = load_dataset("synthetic:40x3x2")
    from svmhpo.svm.data import Dataset

    tiny = Dataset(X=ds.X[:5], y=np.array([0, 0, 0, 0, 1]), name="tiny")
    with pytest.raises(DataError, match="at least 3 per class"):
        split_dataset(tiny)


def test_tensor_batches_cover_every_sample_once_per_pass_and_reshuffle() -> None:
    x = torch.arange(10, dtype=torch.float32).unsqueeze(1)
    y = torch.arange(10)
    batches = TensorBatches(x, y, 4, shuffle=True, seed=0)
    assert len(batches) == 3
    first = [b[1] for b in batches]
    assert [len(b) for b in first] == [4, 4, 2]
    assert sorted(torch.cat(first).tolist()) == list(range(10))
    for bx, by in batches:
        assert torch.equal(bx.squeeze(1).long(), by)  # features and labels stay paired
    second = torch.cat([b[1] for b in batches])
    assert not torch.equal(torch.cat(first), second)
    assert [b[1].tolist() for b in TensorBatches(x, y, 4)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]

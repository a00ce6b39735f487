"""Fashion-MNIST (70,000 28x28 grayscale images, 10 classes)."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from . import _common

DEFAULT_DATA_HOME = "/usr/share/datasets/fashion-mnist"
_INSTALL_HINT = "apt-get install dataset-fashion-mnist"

# Official class order: code i is TARGET_NAMES[i]. Not alphabetical.
TARGET_NAMES = [
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

_PREFIXES = {"train": ("train",), "test": ("t10k",), "all": ("train", "t10k")}
_IMAGE_SHAPE = (28, 28)
_IDX_UINT8 = 0x08

_DESCR = """\
.. _fashion_mnist_dataset:

Fashion-MNIST
-------------

**Data Set Characteristics:**

:Number of Instances: 70000 (60000 train, 10000 test)
:Number of Classes: 10 (7000 images each: 6000 train, 1000 test)
:Number of Attributes: 784 (28x28 grayscale pixels, uint8 0-255)
:Classes (official order, codes 0-9): T-shirt/top, Trouser, Pullover,
    Dress, Coat, Sandal, Shirt, Sneaker, Bag, Ankle boot
:License: MIT
:Source: Zalando Research; read from the IDX files installed by Debian's
    ``dataset-fashion-mnist`` package

Fashion-MNIST is a data set of Zalando's article images meant as a drop-in
replacement for MNIST: same image size, same number of classes, same
train/test split. The class codes follow the official label order, which is
not alphabetical; ``target_names[code]`` gives the class name.

.. rubric:: References

- H. Xiao, K. Rasul and R. Vollgraf. "Fashion-MNIST: a Novel Image Dataset
  for Benchmarking Machine Learning Algorithms", arXiv:1708.07747, 2017.
"""


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """Read a gzip-compressed IDX file of unsigned bytes with ``ndim`` axes.

    IDX layout: two zero bytes, a type code (0x08 = uint8), the number of
    dimensions, then one big-endian uint32 per dimension, then the data.
    """
    with _common.file_errors(
        path, install_hint=_INSTALL_HINT, errors=(OSError, EOFError, zlib.error), what="Fashion-MNIST file"
    ):
        with gzip.open(path, "rb") as f:
            raw = f.read()

    def bad(reason):
        return ValueError(
            f"Fashion-MNIST file {path} is not a valid IDX file: {reason}. "
            f"Reinstall it with `{_INSTALL_HINT}`."
        )

    if len(raw) < 4:
        raise bad(f"it holds {len(raw)} bytes, fewer than the 4-byte magic number")
    zero1, zero2, type_code, n_dims = raw[:4]
    if zero1 != 0 or zero2 != 0 or type_code != _IDX_UINT8 or n_dims != ndim:
        raise bad(
            f"magic number {raw[:4].hex()} differs from the expected "
            f"{bytes([0, 0, _IDX_UINT8, ndim]).hex()} (uint8, {ndim} dimensions)"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise bad("its header is truncated")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims, dtype=np.int64)) + header
    if len(raw) != expected:
        raise bad(
            f"its header announces shape {dims} ({expected} bytes in all) but "
            f"it holds {len(raw)} bytes"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load_fashion_mnist(*, subset="all", return_X_y=False, as_frame=False, data_home=None):
    """Load the Fashion-MNIST image classification data set.

    70,000 28x28 grayscale images of clothing in 10 classes (60,000 train,
    10,000 test), read from the gzip-compressed IDX files installed by
    Debian's ``dataset-fashion-mnist`` package
    (``apt-get install dataset-fashion-mnist``) in
    ``/usr/share/datasets/fashion-mnist``. Nothing is downloaded.

    =================   ==================
    Classes                             10
    Samples per class   7000 (6000 + 1000)
    Samples total                    70000
    Dimensionality         28x28 = 784
    Features            integers 0-255
    =================   ==================

    ``target`` keeps the official Fashion-MNIST class order (0 =
    T-shirt/top, ..., 9 = Ankle boot), which is **not** alphabetical: the
    codes index ``target_names``.

    Parameters
    ----------
    subset : {"train", "test", "all"}, default="all"
        Which split to load: the 60,000 training images, the 10,000 test
        images, or all 70,000 (training images first, then test images).

    return_X_y : bool, default=False
        If True, return ``(data, target)`` instead of a Bunch object.

    as_frame : bool, default=False
        If True, ``data`` is a pandas DataFrame with 784 uint8 columns
        ``pixel0`` .. ``pixel783`` (row-major pixel order), ``target`` a
        pandas Series named ``target`` and ``frame`` a DataFrame with all
        785 columns.

    data_home : str or path-like, default=None
        Directory holding ``train-images-idx3-ubyte.gz``,
        ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz`` and
        ``t10k-labels-idx1-ubyte.gz``. Defaults to
        ``/usr/share/datasets/fashion-mnist``.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes.

        data : ndarray of shape (n_samples, 28, 28) of uint8, or DataFrame
            The images. A DataFrame of shape (n_samples, 784) if
            ``as_frame=True``.
        target : ndarray of shape (n_samples,) of int64, or Series
            Class codes 0-9 in the official order;
            ``target_names[target[i]]`` is the class of image ``i``.
        target_names : list of str
            ``['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat',
            'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot']``.
        feature_names : list of str
            ``['pixel0', ..., 'pixel783']``, the column names used with
            ``as_frame=True``.
        frame : DataFrame of shape (n_samples, 785) or None
            Only present when ``as_frame=True``: the pixel columns and
            ``target``. None otherwise.
        DESCR : str
            Description of the data set.

    (data, target) : tuple if ``return_X_y`` is True
        ``data`` and ``target`` as described above.

    Raises
    ------
    ValueError
        If ``subset`` is not one of "train", "test", "all", or if a data file
        is corrupt, truncated or not an IDX file of the expected shape.
    FileNotFoundError
        If the data files are not in ``data_home``.

    Examples
    --------
    >>> from sktransfer.datasets import load_fashion_mnist
    >>> bunch = load_fashion_mnist(subset="test")  # doctest: +SKIP
    >>> bunch.data.shape, bunch.data.dtype  # doctest: +SKIP
    ((10000, 28, 28), dtype('uint8'))
    >>> bunch.target_names[bunch.target[0]]  # doctest: +SKIP
    'Ankle boot'
    >>> X, y = load_fashion_mnist(return_X_y=True, as_frame=True)  # doctest: +SKIP
    >>> X.shape  # doctest: +SKIP
    (70000, 784)
    """
    if not isinstance(subset, str) or subset not in _PREFIXES:
        raise ValueError(
            f"subset must be one of 'train', 'test' or 'all'; got {subset!r}."
        )
    directory = Path(os.fspath(data_home) if data_home is not None else DEFAULT_DATA_HOME)

    files = []
    for prefix in _PREFIXES[subset]:
        files.append(
            (
                directory / f"{prefix}-images-idx3-ubyte.gz",
                directory / f"{prefix}-labels-idx1-ubyte.gz",
            )
        )
    missing = [p.name for pair in files for p in pair if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST files not found in {directory}: {', '.join(missing)}. "
            f"On Debian, install them with `{_INSTALL_HINT}`, or pass "
            f"data_home= the directory that holds them."
        )

    images, labels = [], []
    for image_path, label_path in files:
        x = _read_idx(image_path, ndim=3)
        y = _read_idx(label_path, ndim=1)
        if x.shape[1:] != _IMAGE_SHAPE:
            raise ValueError(
                f"Fashion-MNIST file {image_path} holds images of shape "
                f"{x.shape[1:]}, expected {_IMAGE_SHAPE}."
            )
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"Fashion-MNIST files {image_path} and {label_path} disagree: "
                f"{x.shape[0]} images but {y.shape[0]} labels."
            )
        if y.size and y.max() >= len(TARGET_NAMES):
            raise ValueError(
                f"Fashion-MNIST file {label_path} holds label {int(y.max())}; "
                f"labels must be 0-{len(TARGET_NAMES) - 1}."
            )
        images.append(x)
        labels.append(y)
    # concatenate copies even a single part: the result is writable and does
    # not keep the decompressed buffer alive.
    data = np.concatenate(images)
    target = np.concatenate(labels).astype(np.int64)

    feature_names = [f"pixel{i}" for i in range(_IMAGE_SHAPE[0] * _IMAGE_SHAPE[1])]

    def to_frame(images):
        import pandas as pd

        return pd.DataFrame(images.reshape(len(images), -1), columns=feature_names)

    return _common.bunch(
        data, target, TARGET_NAMES, _DESCR, as_frame=as_frame, to_frame=to_frame, return_X_y=return_X_y,
        feature_names=feature_names,
    )

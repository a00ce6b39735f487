"""Open Clip Art Library: colour clip art by category (imbalanced)."""

from __future__ import annotations

import warnings

import numpy as np

from . import _common

DEFAULT_DATA_HOME = "/usr/share/openclipart/png"
_INSTALL_HINT = "apt-get install openclipart-png"

# Concrete-object categories. The others are left out of the default:
# computer (mostly icon sets), shapes (mostly stars), signs_and_symbols
# (mostly flags), special (gradients, patterns), unsorted, and small or
# mixed ones (recreation mixes games, music, sport and holidays).
DEFAULT_CATEGORIES = [
    "animals",
    "buildings",
    "food",
    "people",
    "plants",
    "tools",
    "transportation",
]

_DESCR = """\
.. _openclipart_dataset:

Open Clip Art by category
-------------------------

**Data Set Characteristics:**

:Number of Instances: 1,752 with the 7 default categories
:Number of Classes: 7 by default (any of the 22 top-level directories on
    request)
:Class Distribution: imbalanced: animals 316, buildings 70, food 355,
    people 398, plants 95, tools 149, transportation 369
:Feature: a colour image, returned as ``image_size x image_size x 3`` uint8
:License: public domain (Creative Commons Public Domain Dedication)
:Source: the PNG files installed by Debian's ``openclipart-png`` package
    (Open Clip Art Library 0.18) in ``/usr/share/openclipart/png``

Colour clip art drawn by many contributors, filed by topic in one directory
per category (and sub-directories, e.g. ``animals/birds``, that are merged
into their category). Originals differ in size (16 to over 1,000 pixels),
palette and transparency: each image is composited onto white, scaled to
fit the square keeping its aspect ratio, and centred. Drawing styles vary
widely within a class, so the task is harder than its few classes suggest.
Drawings of more than 4 megapixels (14 of the default set, up to 623
megapixels) are skipped by their header size, as decoding them would take
minutes. Loading decodes about 1,750 PNGs: expect a minute or more on a
small CPU, and cache the result (e.g. with ``joblib.Memory``) when reused.
"""


# A few drawings are huge (up to 623 megapixels): decoding them would take
# minutes and gigabytes for a thumbnail. They are skipped (14 of the default
# 1,765), by the size in their header, before any pixel is decoded.
MAX_PIXELS = 4_000_000


def _small_enough(path, image_module):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", image_module.DecompressionBombWarning)
            with image_module.open(path) as img:
                width, height = img.size
    except image_module.DecompressionBombError:
        return False
    except Exception:  # unreadable: the loading loop reports it, naming the file
        return True
    return width * height <= MAX_PIXELS


def _category_files(home, categories, image_module):
    return {
        c: [
            p
            for p in sorted((home / c).rglob("*.png"), key=lambda p: str(p))
            if _small_enough(p, image_module)
        ]
        for c in categories
    }


def load_openclipart(
    *,
    categories=None,
    image_size=64,
    shuffle=True,
    random_state=42,
    return_X_y=False,
    data_home=None,
):
    """Load Open Clip Art colour images by category (imbalanced).

    1,752 public-domain clip-art images in 7 categories by default, read from
    the PNG files installed by Debian's ``openclipart-png`` package
    (``apt-get install openclipart-png``). Nothing is downloaded.

    =================   =================================
    Classes                                     7 (default)
    Samples total                                      1752
    Samples per class   70 to 398
    Features            RGB uint8, image_size x image_size
    =================   =================================

    Parameters
    ----------
    categories : list of str, default=None
        Top-level directories to load, in the order of the class codes (None:
        ``DEFAULT_CATEGORIES``). Images in sub-directories count for their
        top-level category.

    image_size : int, default=64
        Side of the returned square images (8 to 1024).

    shuffle : bool, default=True
        Whether to shuffle the rows. If False they come by category, then by
        path.

    random_state : int, RandomState instance or None, default=42
        Seed of the shuffle (ignored when ``shuffle=False``).

    return_X_y : bool, default=False
        If True, return ``(data, target)`` instead of a Bunch.

    data_home : str or path-like, default=None
        Directory holding one sub-directory per category. Defaults to
        ``/usr/share/openclipart/png``.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes.

        data : ndarray of shape (n_samples, image_size, image_size, 3), uint8
            The images, RGB, one per row.
        images : the same array
            The same array as ``data``.
        target : ndarray of int64
            Integer class codes; ``target_names[target[i]]`` is the class of row ``i``.
        target_names : list of str
            The category names (``'animals'``, ``'food'``, ...).
        filenames : ndarray of str
            Path of the file each row was read from.
        DESCR : str
            Description of the data set.

    (data, target) : tuple if ``return_X_y`` is True

    Raises
    ------
    FileNotFoundError
        If the directory is missing.
    ValueError, TypeError
        If an argument is invalid, a category holds no image, or an image
        cannot be read (the message names the file).
    """
    from PIL import Image

    image_size = _common.check_image_size(image_size)
    home = _common.data_dir(
        data_home, DEFAULT_DATA_HOME, loader="load_openclipart", what="clip art", install_hint=_INSTALL_HINT
    )
    available = {p.name for p in home.iterdir() if p.is_dir()}
    categories = _common.check_categories(
        categories,
        available,
        DEFAULT_CATEGORIES,
        loader="load_openclipart",
        install_hint=_INSTALL_HINT,
    )
    files = _category_files(home, categories, Image)
    empty = [c for c, fs in files.items() if not fs]
    if empty:
        raise ValueError(f"load_openclipart: no PNG image in the categories {empty} of {home}.")

    paths = [p for c in categories for p in files[c]]
    target = np.asarray(
        [code for code, c in enumerate(categories) for _ in files[c]], dtype=np.int64
    )
    return _common.image_bunch(
        _common.read_images(paths, image_size, loader="load_openclipart", install_hint=_INSTALL_HINT),
        target,
        categories,
        _DESCR,
        rows={"filenames": [str(p) for p in paths]},
        shuffle=shuffle, random_state=random_state, return_X_y=return_X_y,
    )

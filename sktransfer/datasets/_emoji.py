"""Emoji images by Unicode category: colour, 9 classes, imbalanced."""

from __future__ import annotations

from . import _common

_PACKAGE = "emoji-datasource-google"
_INSTALL_HINT = "npm install -g emoji-datasource-google@16.0.0"
_IMG_DIR = "img/google/64"

# Unicode's emoji groups, in the order of its emoji-test.txt. "Component"
# (skin tones and hair styles, 5 images) is not a class.
TARGET_NAMES = [
    "Smileys & Emotion",
    "People & Body",
    "Animals & Nature",
    "Food & Drink",
    "Travel & Places",
    "Activities",
    "Objects",
    "Symbols",
    "Flags",
]

_DESCR = """\
.. _emoji_dataset:

Emoji by category (Noto Emoji images)
-------------------------------------

**Data Set Characteristics:**

:Number of Instances: 1,906
:Number of Classes: 9 (Unicode emoji groups)
:Class Distribution: imbalanced: Smileys & Emotion 169, People & Body 386,
    Animals & Nature 159, Food & Drink 131, Travel & Places 218,
    Activities 85, Objects 264, Symbols 224, Flags 270
:Feature: a colour image, 64x64 as shipped (``image_size`` rescales it),
    returned as ``image_size x image_size x 3`` uint8 on white
:License: the images are Google's Noto Emoji (Apache 2.0); the npm package
    ``emoji-datasource-google`` that ships them with their metadata is MIT
:Source: ``img/google/64/*.png`` and ``emoji.json`` of the npm package
    ``emoji-datasource-google`` (16.0.0)

Every emoji of Unicode 16 that has a Google image (skin-tone variants
excluded), labelled with its Unicode group. Each row's Unicode name (e.g.
``GRINNING FACE``) and subgroup are returned too.
"""


def load_emoji(
    *,
    image_size=64,
    shuffle=True,
    random_state=42,
    return_X_y=False,
    data_home=None,
):
    """Load emoji images labelled by Unicode category (colour, imbalanced).

    1,906 emoji drawn by Google (Noto Emoji), in 9 Unicode groups, read from
    the npm package ``emoji-datasource-google``
    (``npm install -g emoji-datasource-google@16.0.0``). Nothing is
    downloaded.

    =================   ==================================
    Classes                                              9
    Samples total                                     1906
    Samples per class   85 to 386
    Features            RGB uint8, image_size x image_size
    =================   ==================================

    Parameters
    ----------
    image_size : int, default=64
        Side of the returned square images (8 to 1024; 64 is the shipped
        size).

    shuffle : bool, default=True
        Whether to shuffle the rows. If False they keep Unicode's order.

    random_state : int, RandomState instance or None, default=42
        Seed of the shuffle (ignored when ``shuffle=False``).

    return_X_y : bool, default=False
        If True, return ``(data, target)`` instead of a Bunch.

    data_home : str or path-like, default=None
        The package directory, or a ``node_modules`` directory holding it.
        By default it is looked for in ``./node_modules``, ``NODE_PATH``,
        ``/usr/local/lib/node_modules``, ``/usr/lib/node_modules`` and npm's
        global root.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes.

        data : ndarray of shape (1906, image_size, image_size, 3), uint8
            The images, RGB, one per row.
        images : the same array
            The same array as ``data``.
        target : ndarray of int64
            Integer class codes; ``target_names[target[i]]`` is the class of row ``i``.
        target_names : list of str
            The 9 Unicode groups, in Unicode's order.
        names : ndarray of str
            The Unicode name of each emoji.
        subcategories : ndarray of str
            The Unicode subgroup (``'animal-mammal'``, ...).
        filenames : ndarray of str
            Path of the file each row was read from.
        DESCR : str
            Description of the data set.

    (data, target) : tuple if ``return_X_y`` is True

    Raises
    ------
    FileNotFoundError
        If the npm package is not found, or an image it lists is missing.
    ValueError
        If ``image_size`` is invalid, or a file is corrupt.
    """
    image_size = _common.check_image_size(image_size)
    pkg = _common.npm_package_dir(
        _PACKAGE,
        data_home=data_home,
        loader="load_emoji",
        install_hint=_INSTALL_HINT,
        required="emoji.json",
    )
    meta = _common.read_json(pkg / "emoji.json", install_hint=_INSTALL_HINT)
    if not isinstance(meta, list):
        raise ValueError(f"{pkg / 'emoji.json'} is not a list of emoji.")
    rows = []
    for e in meta:
        if not isinstance(e, dict) or not e.get("has_img_google"):
            continue
        if e.get("category") not in TARGET_NAMES:
            continue
        rows.append(e)
    rows.sort(key=lambda e: e.get("sort_order", 0))
    if not rows:
        raise ValueError(f"{pkg / 'emoji.json'} lists no emoji with a Google image.")

    paths = [pkg / _IMG_DIR / str(e.get("image")) for e in rows]
    return _common.image_bunch(
        _common.read_images(paths, image_size, loader="load_emoji", install_hint=_INSTALL_HINT, listed_in="emoji.json"),
        _common.encode_labels([e["category"] for e in rows], TARGET_NAMES),
        TARGET_NAMES,
        _DESCR,
        rows={
            "names": [str(e.get("name") or "") for e in rows],
            "subcategories": [str(e.get("subcategory") or "") for e in rows],
            "filenames": [str(p) for p in paths],
        },
        shuffle=shuffle, random_state=random_state, return_X_y=return_X_y,
    )

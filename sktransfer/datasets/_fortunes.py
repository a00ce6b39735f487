"""Fortune cookies by topic: many-class topic classification of short texts."""

from __future__ import annotations

import re

import numpy as np

from . import _common

DEFAULT_DATA_HOME = "/usr/share/games/fortunes"
_INSTALL_HINT = "apt-get install fortunes"

# The 20 topical files of Debian's ``fortunes`` + ``fortunes-min``, with the
# human-readable class name used in ``target_names`` (a zero-shot classifier
# reads these names). Files such as ``cookie``, ``miscellaneous``, ``zippy``
# or ``wisdom`` are collections by origin or tone, not by topic, and are left
# out of the default; they can still be asked for by file name.
DEFAULT_CATEGORIES = {
    "art": "art",
    "computers": "computers",
    "drugs": "drugs",
    "education": "education",
    "food": "food",
    "kids": "kids",
    "law": "law",
    "linux": "Linux",
    "literature": "literature",
    "love": "love",
    "medicine": "medicine",
    "men-women": "men and women",
    "pets": "pets",
    "politics": "politics",
    "riddles": "riddles",
    "science": "science",
    "songs-poems": "songs and poems",
    "sports": "sports",
    "startrek": "Star Trek",
    "work": "work",
}

_OVERSTRIKE = re.compile(r"[^\x08]\x08")
_SEPARATOR = re.compile(r"^%[ \t]*$", re.MULTILINE)

_DESCR = """\
.. _fortunes_dataset:

Fortune cookies by topic
------------------------

**Data Set Characteristics:**

:Number of Instances: 7,090 with the 20 default topics
:Number of Classes: 20 by default (any of the installed files on request)
:Class Distribution: imbalanced, from 51 (pets) to 1,048 (computers)
:Feature: the raw text of one fortune: a quotation, joke, definition or
    short poem (median 113 characters)
:License: distributed with BSD fortune(6) under its BSD licence (Debian's
    ``fortunes`` and ``fortunes-min`` packages)
:Source: the files in ``/usr/share/games/fortunes``

The fortune cookie files of the BSD ``fortune`` program, one file per topic.
The default 20 topics are the topical files (art, computers, drugs,
education, food, kids, law, linux, literature, love, medicine, men-women,
pets, politics, riddles, science, songs-poems, sports, startrek, work); the
class names are made readable (``men-women`` -> ``men and women``,
``startrek`` -> ``Star Trek``). Labels are noisy, as humour is: a fortune
in ``science`` may be a joke about anything said by a scientist. Terminal
overstrike sequences (``x<BS>x``) are removed; files are decoded as UTF-8,
or Latin-1 when not valid UTF-8. A fortune filed under two of the loaded
topics is dropped (13 in the default set), one filed twice under the same
topic is kept once.
"""


def _read_fortunes(path):
    text = _common.decode_text(path.read_bytes())
    items = []
    for chunk in _SEPARATOR.split(text):
        while "\x08" in chunk:
            stripped = _OVERSTRIKE.sub("", chunk)
            chunk = stripped if stripped != chunk else chunk.replace("\x08", "")
        chunk = chunk.strip("\n")
        if chunk.strip():
            items.append(chunk)
    return items


def _available(data_home):
    return {
        p.name
        for p in data_home.iterdir()
        if p.is_file() and not p.is_symlink() and p.suffix not in (".dat", ".u8") and p.name[0] != "."
    }


def load_fortunes(
    *,
    categories=None,
    shuffle=True,
    random_state=42,
    return_X_y=False,
    as_frame=False,
    data_home=None,
):
    """Load fortune cookies by topic (many-class topic task, short texts).

    7,090 fortunes in 20 topics, read from the files installed by Debian's
    ``fortunes`` package (``apt-get install fortunes``; it pulls in
    ``fortunes-min``) in ``/usr/share/games/fortunes``. Nothing is
    downloaded.

    =================   ===============================
    Classes                                  20 (default)
    Samples total                                    7090
    Samples per class   51 to 1048
    Features            raw text (str)
    =================   ===============================

    Parameters
    ----------
    categories : list of str, default=None
        File names of the topics to load, in the order of the class codes.
        None loads the 20 topical files (see ``DEFAULT_CATEGORIES``). Other
        files of the directory (``wisdom``, ``cookie``, ...) may be named.

    shuffle : bool, default=True
        Whether to shuffle the rows. If False they come by category (in the
        order of ``categories``), then in file order.

    random_state : int, RandomState instance or None, default=42
        Seed of the shuffle (ignored when ``shuffle=False``).

    return_X_y : bool, default=False
        If True, return ``(data, target)`` instead of a Bunch.

    as_frame : bool, default=False
        If True, ``data`` is a DataFrame with one ``text`` column, ``target``
        a Series named ``target`` and ``frame`` a DataFrame with both.

    data_home : str or path-like, default=None
        Directory of the fortune files. Defaults to
        ``/usr/share/games/fortunes``.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes.

        data : list of str, or DataFrame
            The fortunes (one text per row); a DataFrame if ``as_frame=True``.
        target : ndarray of int64, or Series
            ``target_names[target[i]]`` is the topic of fortune ``i``.
        target_names : list of str
            Readable topic names (``'men and women'``, ``'Star Trek'``, ...).
        categories : list of str
            The file names, in the same order as ``target_names``.
        frame : DataFrame or None
            Only present when ``as_frame=True``: the inputs and ``target`` as columns. None otherwise.
        DESCR : str
            Description of the data set.

    (data, target) : tuple if ``return_X_y`` is True

    Raises
    ------
    FileNotFoundError
        If the fortune directory is missing.
    ValueError, TypeError
        If ``categories`` is invalid or names a file that is not installed.
    """
    home = _common.data_dir(
        data_home, DEFAULT_DATA_HOME, loader="load_fortunes", what="fortune", install_hint=_INSTALL_HINT
    )
    categories = _common.check_categories(
        categories,
        _available(home),
        DEFAULT_CATEGORIES,
        loader="load_fortunes",
        install_hint=_INSTALL_HINT,
    )
    target_names = [DEFAULT_CATEGORIES.get(c, c) for c in categories]
    texts, codes = [], []
    for code, name in enumerate(categories):
        items = _read_fortunes(home / name)
        if not items:
            raise ValueError(f"load_fortunes: the file {home / name} holds no fortune.")
        texts += items
        codes += [code] * len(items)
    # A fortune filed under two topics has no single label: drop every copy.
    # One filed twice under the same topic is kept once.
    labels_of = {}
    for text, code in zip(texts, codes):
        labels_of.setdefault(text, set()).add(code)
    seen, kept_texts, kept_codes = set(), [], []
    for text, code in zip(texts, codes):
        if len(labels_of[text]) == 1 and text not in seen:
            seen.add(text)
            kept_texts.append(text)
            kept_codes.append(code)
    return _common.text_bunch(
        kept_texts, np.asarray(kept_codes, dtype=np.int64), target_names, _DESCR, categories=list(categories),
        shuffle=shuffle, random_state=random_state, return_X_y=return_X_y, as_frame=as_frame,
    )

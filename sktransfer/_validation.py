"""Validation of targets shared by every estimator.

One label validator for the whole package: the classifiers, the zero-shot
candidate labels, the domain-adaptation source labels and the
transferability scores all read ``y`` through :func:`check_labels`.

Why not ``np.asarray(y)`` alone: numpy coerces a list that mixes strings and
numbers to strings (``["a", 1]`` becomes ``["a", "1"]``) and a missing value
in a list of strings to the string ``"nan"``, so a label ``1`` would come
back from ``predict`` as ``"1"`` and ``nan`` would become a class. The
elements are inspected as the user gave them, before any coercion.
"""

import numbers

import numpy as np
from sklearn.utils.multiclass import type_of_target


try:
    import pandas as _pd
except ImportError:  # pragma: no cover - pandas is a dependency
    _pd = None
_PANDAS_MISSING = () if _pd is None else (_pd.NA, _pd.NaT)


def _is_missing(v):
    if v is None:
        return True
    if isinstance(v, (float, np.floating)) and np.isnan(v):
        return True
    return any(v is m for m in _PANDAS_MISSING)


def _kind(v):
    # bytes and bools are kinds of their own: np.asarray(["a", b"b"]) makes
    # b"b" the string "b", and np.asarray([True, 2]) makes True the number 1.
    if isinstance(v, (bytes, np.bytes_)):
        return "bytes"
    if isinstance(v, (str, np.str_)):
        return "string"
    if isinstance(v, (bool, np.bool_)):
        return "bool"
    if isinstance(v, (numbers.Number, np.number)):
        return "number"
    return type(v).__name__


def _show(v):
    """A label as the user would write it: ``1.0``, not ``np.float64(1.0)``."""
    return repr(v.item() if isinstance(v, np.generic) else v)


def check_labels(y, *, name="y", n_rows=None, min_classes=2, task="a classifier"):
    """Validate class labels; return them as a 1-D ndarray with their types intact.

    Parameters
    ----------
    y : array-like of shape (n_samples,) or (n_samples, 1)
    name : str, default="y"
        How the error messages call ``y``.
    n_rows : int or None, default=None
        The number of inputs ``y`` must match.
    min_classes : int, default=2
        Fewest distinct labels accepted (0 to skip the check).
    task : str, default="a classifier"
        What needs the labels, for the error messages.

    Returns
    -------
    y : ndarray of shape (n_samples,)

    Raises
    ------
    ValueError
        ``y`` is not 1-D, has a missing value (the row is named), mixes
        strings and numbers (a row of each is named), is continuous, or has
        fewer than ``min_classes`` labels.
    """
    if y is None:
        raise ValueError(f"{name} is None; {task} needs one label per input.")
    if isinstance(y, (str, bytes)):
        raise ValueError(f"{name} is a single {type(y).__name__}; pass one label per input, e.g. a list.")
    raw = np.asarray(y, dtype=object) if not isinstance(y, np.ndarray) else y
    if raw.ndim == 2 and raw.shape[1] == 1:
        raw = raw[:, 0]
    if raw.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one label per input), got shape {raw.shape}.")
    if len(raw) == 0:
        raise ValueError(f"{name} is empty (and so, presumably, is X): {task} needs at least one labelled input.")
    if n_rows is not None and len(raw) != n_rows:
        raise ValueError(f"X and {name} have different lengths: {n_rows} inputs but {len(raw)} labels.")
    if raw.dtype.kind in "fc":
        bad = np.flatnonzero(np.isnan(raw))
        if bad.size:
            raise ValueError(f"Row {bad[0]} of {name} is missing (NaN); every input needs a label.")
    elif raw.dtype.kind == "O":
        first = {}
        for i, v in enumerate(raw):
            if _is_missing(v):
                raise ValueError(f"Row {i} of {name} is missing (None/NaN); every input needs a label.")
            first.setdefault(_kind(v), i)
        if len(first) > 1:
            kinds = sorted(first, key=first.get)
            rows = ", ".join(f"row {first[k]} is a {k} ({_show(raw[first[k]])})" for k in kinds[:3])
            raise ValueError(
                f"{name} mixes label types: {rows}. Use one type for every label "
                f"(e.g. all strings: [str(v) for v in {name}])."
            )
    # Consistent types: numpy's own dtype now loses nothing.
    out = np.asarray(raw.tolist()) if raw.dtype.kind == "O" else np.asarray(raw)
    if out.ndim != 1:
        raise ValueError(f"{name} must hold one scalar label per input; row 0 is {_show(raw[0])}.")
    if out.dtype.kind == "f" and type_of_target(out) == "continuous":
        raise ValueError(
            f"{name} is continuous (e.g. {_show(out[0])}); {task} needs class labels. "
            "For continuous targets use a regressor (e.g. FineTunedRegressor)."
        )
    if min_classes:
        classes = np.unique(out)
        if len(classes) < min_classes:
            what = f"a single class ({_show(classes[0])})" if len(classes) else "no labels"
            raise ValueError(f"{name} has {what}; {task} needs at least {min_classes}.")
    return out


def encode_labels(y, **kwargs):
    """:func:`check_labels`, then ``(y, classes, codes)`` with ``codes`` int64 indices into ``classes``."""
    y = check_labels(y, **kwargs)
    classes, codes = np.unique(y, return_inverse=True)
    return y, classes, codes.astype(np.int64)


def check_model_params(est=None, *, params=None, saved=False):
    """The parameters that pick and feed the backbone, checked before it loads.

    ``fit`` (through each estimator's ``_check_params``) and ``load`` (on a
    saved config, ``saved=True``) check them alike, so that
    ``max_length="evil"`` or ``device="evil"`` is refused up front, naming
    the parameter, not deep inside the tokenizer or torch. ``device`` must
    parse, not be present (a model saved on a GPU may be loaded where there
    is none: resolving it then says so). A save always names its backbone;
    a fit may be given a module.
    """
    import torch

    if params is None:
        params = est.get_params(deep=False)
    backbone = params.get("backbone")
    if saved or isinstance(backbone, (str, bytes)) or backbone is None:
        if not isinstance(backbone, str) or not backbone.strip():
            raise ValueError(f"backbone must be a model name or path, got {backbone!r}.")
    if "pooling" in params and not (isinstance(params["pooling"], str) and params["pooling"] in ("mean", "cls")):
        raise ValueError(f"pooling must be 'mean' or 'cls', got {params['pooling']!r}.")
    device = params.get("device")
    if device is not None and device != "auto":
        try:
            if not isinstance(device, (str, torch.device)):
                raise TypeError
            torch.device(device)
        except (RuntimeError, TypeError, ValueError):
            raise ValueError(
                f"device must be 'auto', None or a torch device name such as 'cpu' or 'cuda:0', got {device!r}."
            ) from None
    max_length = params.get("max_length")
    if max_length is not None and (
        isinstance(max_length, (bool, np.bool_)) or not isinstance(max_length, numbers.Integral) or max_length < 1
    ):
        raise ValueError(f"max_length must be None or a positive integer, got {max_length!r}.")

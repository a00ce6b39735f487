"""Validation shared by every estimator: targets and parameters.

One label validator for the whole package: the classifiers, the zero-shot
candidate labels, the domain-adaptation source labels, the transferability
scores and ``score`` all read ``y`` through :func:`check_labels`
(:func:`encode_labels` in ``fit``, :func:`encode_known_labels` when scoring);
continuous targets through :func:`check_targets`.

Parameters are declared, not hand-checked: each estimator's
``_parameter_constraints`` table (scikit-learn's ``_param_validation``) is
checked in ``fit`` by :func:`check_params`; what a table can't say (a device
that must parse, rules between parameters, limits of the loaded model) is
checked by small explicit code after it.

Why not ``np.asarray(y)`` alone: numpy coerces a list that mixes strings and
numbers to strings (``["a", 1]`` becomes ``["a", "1"]``) and a missing value
in a list of strings to the string ``"nan"``, so a label ``1`` would come
back from ``predict`` as ``"1"`` and ``nan`` would become a class. The
elements are inspected as the user gave them, before any coercion.
"""

import numbers

import numpy as np
from sklearn.utils._param_validation import Interval, InvalidParameterError, make_constraint
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


_REGRESSOR_ADVICE = "For continuous targets use a regressor (e.g. FineTunedRegressor)."


def check_labels(y, *, name="y", n_rows=None, min_classes=2, task="a classifier", advice=_REGRESSOR_ADVICE):
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
    advice : str, default="For continuous targets use a regressor (e.g. FineTunedRegressor)."
        What to do instead, when ``y`` is continuous.

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
            f"{name} is continuous (e.g. {_show(out[0])}); {task} needs class labels. {advice}"
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


def check_targets(y, *, name="y", n_rows=None, task="a regressor"):
    """Validate continuous targets; return them as float64 of shape (n_samples, n_outputs).

    Raises
    ------
    ValueError
        ``y`` is not numeric, not 1-D or 2-D, empty, of another length than
        ``n_rows``, or has a NaN or infinite value (the row is named).
    """
    try:
        y = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numeric targets, one per input, for {task}.") from None
    if y.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D or 2-D, got shape {y.shape}.")
    if y.shape[0] == 0:
        raise ValueError(f"{name} is empty (and so, presumably, is X): {task} needs at least one input with a target.")
    if n_rows is not None and len(y) != n_rows:
        raise ValueError(f"X and {name} have different lengths: {n_rows} inputs but {len(y)} targets.")
    y2 = y[:, None] if y.ndim == 1 else y
    bad = np.flatnonzero(~np.isfinite(y2).all(axis=1))
    if bad.size:
        raise ValueError(f"Row {bad[0]} of {name} is NaN or infinite; every input needs a finite target.")
    return y2


def encode_known_labels(y, classes, *, name="y"):
    """Labels to score or evaluate: :func:`check_labels` (any number of classes), all among ``classes``.

    Returns ``(y, codes)``, ``codes`` the index of each label in ``classes``
    (sorted, as :func:`encode_labels` makes them). Labels ``fit`` never saw
    raise a ``ValueError`` that names them and the known classes.
    """
    y = check_labels(y, name=name, min_classes=0, task="scoring")
    classes = np.asarray(classes)
    unseen = sorted(set(y.tolist()) - set(classes.tolist()), key=str)
    if unseen:
        raise ValueError(
            f"{name} contains labels never seen during fit: {unseen[:10]}. Known classes: {classes.tolist()}."
        )
    return y, np.searchsorted(classes, y).astype(np.int64)


def check_params(est):
    """Validate ``est``'s parameters against its ``_parameter_constraints``.

    scikit-learn's own check (``est._validate_params()``: an
    :class:`~sklearn.utils._param_validation.InvalidParameterError`, a
    ``ValueError``, naming the parameter, what it must be and the value),
    plus the one thing sklearn's ``Interval`` lets through: ``True`` or
    ``False`` where a number is expected (``lr=True`` is not a rate).
    """
    est._validate_params()
    params = est.get_params(deep=False)
    for name, constraints in est._parameter_constraints.items():
        value = params.get(name)
        if (
            constraints != "no_validation"
            and isinstance(value, bool)
            and any(isinstance(c, Interval) for c in constraints)
            and not any(c == "boolean" or c == "verbose" or c is bool for c in constraints)
        ):
            shown = [c for c in map(make_constraint, constraints) if not c.hidden]
            what = str(shown[0]) if len(shown) == 1 else f"{', '.join(map(str, shown[:-1]))} or {shown[-1]}"
            raise InvalidParameterError(
                f"The {name!r} parameter of {type(est).__name__} must be {what}. Got {value!r} instead."
            )


def check_backbone_and_device(params, *, saved=False):
    """What a constraint table can't say about ``backbone`` and ``device``, checked before the backbone loads.

    ``backbone``: a name must not be blank (a save always names its
    backbone; a fit may be given a module). ``device`` must parse as a
    torch device (``"cuda:x"`` is refused naming the parameter, not deep
    inside torch); it need not be present: a model saved on a GPU may be
    loaded where there is none, and resolving it then says so.
    """
    import torch

    backbone = params.get("backbone")
    if saved or isinstance(backbone, (str, bytes)) or backbone is None:
        if not isinstance(backbone, str) or not backbone.strip():
            raise ValueError(f"backbone must be a model name or path, got {backbone!r}.")
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


def check_model_params(est=None, *, params=None, saved=False):
    """The parameters that pick and feed the backbone, checked before it loads.

    For what declares no ``_parameter_constraints`` (a saved config,
    ``saved=True``, read by ``load``; estimators not yet converted):
    ``backbone`` and ``device`` (:func:`check_backbone_and_device`),
    ``pooling`` and ``max_length``, so that ``max_length="evil"`` is refused
    up front, naming the parameter, not deep inside the tokenizer. An
    estimator with a constraint table checks ``pooling`` and ``max_length``
    there and calls :func:`check_backbone_and_device` only.
    """
    if params is None:
        params = est.get_params(deep=False)
    check_backbone_and_device(params, saved=saved)
    if "pooling" in params and not (isinstance(params["pooling"], str) and params["pooling"] in ("mean", "cls")):
        raise ValueError(f"pooling must be 'mean' or 'cls', got {params['pooling']!r}.")
    max_length = params.get("max_length")
    if max_length is not None and (
        isinstance(max_length, (bool, np.bool_)) or not isinstance(max_length, numbers.Integral) or max_length < 1
    ):
        raise ValueError(f"max_length must be None or a positive integer, got {max_length!r}.")


# Why the extractor's and zero-shot's ``progress`` became ``verbose``.
_WHY_VERBOSE = "every estimator of the package names its output verbosity verbose"


def renamed_param(est, old, new, *, why, warn=True, new_default=None):
    """``(value, name)`` of the parameter ``new``, or of its deprecated old name ``old``.

    ``old`` is unset while it holds the string ``"deprecated"`` (its
    default); set, it is used (with a ``FutureWarning`` when ``warn``), and
    setting both (``new`` other than its default ``new_default``) raises a
    ``ValueError``. ``why`` says, in the warning, why the name changed.
    """
    value = getattr(est, old)
    if isinstance(value, str) and value == "deprecated":
        return getattr(est, new), new
    given = getattr(est, new)
    if not (given is new_default or (isinstance(given, str) and given == new_default)):
        raise ValueError(f"Give {new}= only: {old}= is its deprecated old name, and both were given.")
    if warn:
        import warnings

        from ._utils import user_stacklevel

        warnings.warn(
            f"{type(est).__name__}({old}=...) was renamed {new}=... in 0.2 ({why}); {old}= will be removed in 0.4.",
            FutureWarning,
            stacklevel=user_stacklevel(),
        )
    return value, old

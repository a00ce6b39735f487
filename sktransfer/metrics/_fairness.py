"""Bias monitoring: a fitted model's quality per group of people, and how transfer moved it.

Both functions are thin layers over fairlearn's
:class:`~fairlearn.metrics.MetricFrame`: they predict with the fitted
estimator, validate the sensitive features, compute the metrics per group
with MetricFrame's bootstrap (``n_boot``, ``ci_quantiles``, ``random_state``)
and return a small result object whose tables are pandas DataFrames.
"""

from __future__ import annotations

import numbers
import warnings
from functools import partial

import numpy as np

# Below this many rows a group's bootstrap interval is unreliable (percentile
# intervals of a proportion need a few dozen rows), so a warning names it.
MIN_GROUP_ROWS = 30

_COMPARE_METHODS = ("between_groups", "to_overall")


# ----------------------------------------------------------------- metrics
# Plain numpy metrics: the bootstrap calls them (n_boot + 1) x (groups + 1)
# times, and sklearn's input validation would dominate the run time.


def _accuracy(y_true, y_pred):
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def _selection_rate(y_true, y_pred, *, label):
    return float(np.mean(np.asarray(y_pred) == label))


def _rate(y_true, y_pred, *, pos_label, true_is, pred_is):
    """Rate of ``pred == pos_label`` (``pred_is``) among rows whose ``true == pos_label`` is ``true_is``."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    rows = (y_true == pos_label) == true_is
    if not rows.any():
        return float("nan")
    return float(np.mean((y_pred[rows] == pos_label) == pred_is))


def _balanced_accuracy(y_true, y_pred):
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    recalls = [np.mean(y_pred[y_true == c] == c) for c in np.unique(y_true)]
    return float(np.mean(recalls))


_BINARY_ONLY = {
    "true_positive_rate": dict(true_is=True, pred_is=True),
    "false_negative_rate": dict(true_is=True, pred_is=False),
    "false_positive_rate": dict(true_is=False, pred_is=True),
    "true_negative_rate": dict(true_is=False, pred_is=False),
}
_NAMED = ("accuracy", "balanced_accuracy", "selection_rate", *_BINARY_ONLY)


def _resolve_metrics(metrics, classes, pos_label):
    """``{name: callable(y_true, y_pred)}`` from the ``metrics`` argument."""
    binary = len(classes) == 2

    def selection_rates():
        if binary:
            return {"selection_rate": partial(_selection_rate, label=pos_label)}
        return {f"selection_rate[{c}]": partial(_selection_rate, label=c) for c in classes}

    def named(name):
        if name == "accuracy":
            return {"accuracy": _accuracy}
        if name == "balanced_accuracy":
            return {"balanced_accuracy": _balanced_accuracy}
        if name == "selection_rate":
            return selection_rates()
        if name in _BINARY_ONLY:
            if not binary:
                raise ValueError(
                    f"metrics: {name!r} needs a binary task, but the estimator has {len(classes)} "
                    f"classes {list(classes)}; use 'accuracy', 'balanced_accuracy' or 'selection_rate' "
                    f"(one rate per class), or pass your own callables."
                )
            return {name: partial(_rate, pos_label=pos_label, **_BINARY_ONLY[name])}
        raise ValueError(f"metrics: unknown metric name {name!r}; known names are {list(_NAMED)}.")

    if metrics is None:
        return {"accuracy": _accuracy, **selection_rates()}
    if isinstance(metrics, str):
        metrics = [metrics]
    resolved = {}
    if isinstance(metrics, dict):
        for name, func in metrics.items():
            if not isinstance(name, str):
                raise TypeError(f"metrics: the keys must be metric names (str), got {name!r}.")
            if isinstance(func, str):
                func = next(iter(named(func).values()))
            if not callable(func):
                raise TypeError(f"metrics[{name!r}] must be a callable f(y_true, y_pred) or a name, got {func!r}.")
            resolved[name] = func
    else:
        for name in metrics:
            if not isinstance(name, str):
                raise TypeError(
                    f"metrics: a list holds metric names (str); got {name!r}. "
                    f"Pass a dict {{name: callable}} for your own metrics."
                )
            resolved.update(named(name))
    if not resolved:
        raise ValueError("metrics is empty: name at least one metric, or pass None for the defaults.")
    if "count" in resolved:
        raise ValueError("metrics: 'count' is always reported; use another name for your metric.")
    return resolved


# ------------------------------------------------------------ validation


def _check_estimator(estimator, name):
    from sklearn.utils.validation import check_is_fitted

    if not hasattr(estimator, "predict"):
        raise TypeError(f"{name} must be a fitted estimator with a predict method, got {type(estimator).__name__}.")
    check_is_fitted(estimator)  # NotFittedError names the estimator


def _n_rows(X, name):
    from sklearn.utils.validation import _num_samples

    try:
        return _num_samples(X)
    except TypeError as exc:
        raise TypeError(f"{name} must be a sequence of samples with a length: {exc}") from exc


def _check_y(y, n):
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.ravel()
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D (one label per row), got shape {y.shape}.")
    if len(y) != n:
        raise ValueError(f"X has {n} rows but y has {len(y)}: they must describe the same samples.")
    return y


def _check_sensitive_features(sensitive_features, n):
    """A DataFrame of the sensitive features on a 0..n-1 index, checked for length and missing values."""
    import pandas as pd

    sf = sensitive_features
    if isinstance(sf, pd.Series):
        frame = sf.to_frame(name=sf.name if sf.name is not None else "sensitive_feature")
    elif isinstance(sf, pd.DataFrame):
        frame = sf.copy()
    elif isinstance(sf, dict):
        frame = pd.DataFrame({k: np.asarray(v, dtype=object) for k, v in sf.items()})
    else:
        arr = np.asarray(sf, dtype=object)
        if arr.ndim == 1:
            frame = pd.DataFrame({"sensitive_feature": arr})
        elif arr.ndim == 2:
            frame = pd.DataFrame(arr, columns=[f"sensitive_feature_{j}" for j in range(arr.shape[1])])
        else:
            raise ValueError(f"sensitive_features must be 1-D or 2-D, got shape {arr.shape}.")
    if frame.shape[1] == 0:
        raise ValueError("sensitive_features has no column: give at least one feature.")
    if len(frame) != n:
        raise ValueError(
            f"sensitive_features has {len(frame)} rows but X and y have {n}: give one value per row "
            f"(in the same order as X)."
        )
    frame.columns = [str(c) for c in frame.columns]
    labels = frame.index
    frame = frame.reset_index(drop=True)
    for col in frame.columns:
        missing = np.flatnonzero(pd.isna(frame[col]).to_numpy())
        if len(missing):
            shown = ", ".join(str(i) for i in missing[:5]) + (", ..." if len(missing) > 5 else "")
            where = f"rows (positions) [{shown}]"
            if not isinstance(labels, pd.RangeIndex):
                where += f", index labels {list(labels[missing[:5]])}"
            raise ValueError(
                f"sensitive_features column {col!r} has {len(missing)} missing value(s) (NaN/None) at {where}. "
                f"Fill them with an explicit group (e.g. 'unknown') or drop those rows from X, y and "
                f"sensitive_features."
            )
    return frame


def _check_bootstrap(n_boot, ci):
    if n_boot is not None and (
        isinstance(n_boot, bool) or not isinstance(n_boot, numbers.Integral) or n_boot < 1
    ):
        raise ValueError(f"n_boot must be a positive int or None (no intervals), got {n_boot!r}.")
    if isinstance(ci, bool) or not isinstance(ci, numbers.Real) or not 0 < ci < 1:
        raise ValueError(f"ci must be a float in (0, 1), e.g. 0.95, got {ci!r}.")
    alpha = (1.0 - float(ci)) / 2.0
    return [alpha, 1.0 - alpha]


def _classes(estimators, y, preds):
    for est in estimators:
        classes = getattr(est, "classes_", None)
        if classes is not None:
            return np.asarray(classes)
    return np.unique(np.concatenate([np.asarray(y)] + [np.asarray(p) for p in preds]))


def _check_pos_label(pos_label, classes):
    if pos_label is None:
        return classes[-1]
    if pos_label not in set(classes.tolist()):
        raise ValueError(f"pos_label={pos_label!r} is not one of the classes {list(classes)}.")
    return pos_label


def _groups(sf):
    """``(codes, keys)``: each row's group number, and the groups in that order (sorted, as MetricFrame's)."""
    grouped = sf.groupby(list(sf.columns), sort=True)
    return grouped.ngroup().to_numpy(), grouped.size().index


def _group_counts(sf, index):
    codes, keys = _groups(sf)
    import pandas as pd

    return pd.Series(np.bincount(codes, minlength=len(keys)), index=keys).reindex(index).fillna(0).astype(int)


def _warn_small_groups(counts, n_boot, stacklevel=3):
    small = counts[(counts > 0) & (counts < MIN_GROUP_ROWS)]
    if len(small) and n_boot is not None:
        listed = ", ".join(f"{_label(g)!s} ({int(c)} rows)" for g, c in small.items())
        warnings.warn(
            f"Groups with fewer than {MIN_GROUP_ROWS} rows: {listed}. Their bootstrap intervals are "
            f"unreliable (and a group missing from a resample is skipped there); collect more rows or "
            f"merge small groups.",
            UserWarning,
            stacklevel=stacklevel,
        )


def _label(group):
    return ", ".join(str(g) for g in group) if isinstance(group, tuple) else str(group)


def _metric_frame(metrics, y, y_pred, sf, *, n_boot, quantiles, random_state, sample_params=None):
    from fairlearn.metrics import MetricFrame

    kwargs = {}
    if n_boot is not None:
        kwargs = dict(n_boot=int(n_boot), ci_quantiles=quantiles, random_state=random_state)
    with warnings.catch_warnings():
        # MetricFrame also bootstraps ratios for every metric; 0 / 0 there (a
        # metric that is 0 in a group) warns from numpy, and is reported as NaN.
        warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
        # A combination of several features with no row is all NaN.
        warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
        return MetricFrame(
            metrics=metrics, y_true=y, y_pred=y_pred, sensitive_features=sf, sample_params=sample_params, **kwargs
        )


def _with_intervals(values, low, high, names, count=None):
    """Interleave ``name``, ``name_low``, ``name_high`` columns (``count`` first)."""
    import pandas as pd

    if isinstance(values, pd.Series):  # overall: one row
        out = {} if count is None else {"count": count}
        for m in names:
            out[m] = values[m]
            if low is not None:
                out[f"{m}_low"], out[f"{m}_high"] = low[m], high[m]
        return pd.Series(out, dtype=float, name="overall")
    out = pd.DataFrame(index=values.index)
    if count is not None:
        out["count"] = count
    for m in names:
        out[m] = values[m].astype(float)
        if low is not None:
            out[f"{m}_low"], out[f"{m}_high"] = low[m].astype(float), high[m].astype(float)
    if count is not None:  # MetricFrame lists every combination of several features, even empty ones
        out = out[out["count"] > 0]
    return out


def _gap_table(mf, names, method, kind):
    import pandas as pd

    if method not in _COMPARE_METHODS:
        raise ValueError(f"method must be one of {list(_COMPARE_METHODS)}, got {method!r}.")
    value = getattr(mf, kind)(method=method)
    table = pd.DataFrame({"value": value[names].astype(float)})
    if mf.n_boot is not None:
        low, high = getattr(mf, f"{kind}_ci")(method=method)
        table["low"], table["high"] = low[names].astype(float), high[names].astype(float)
    table.index.name = "metric"
    return table


# ---------------------------------------------------------------- results


class GroupReport:
    """Per-group metrics of one fitted model, with bootstrap intervals.

    Returned by :func:`group_report`; not built by hand.

    Attributes
    ----------
    by_group : DataFrame
        One row per group (a MultiIndex when there are several sensitive
        features: their intersections that have rows). Columns: ``count`` (rows of the
        group, exact), then for each metric ``m`` its value ``m`` and, when
        bootstrapped, the interval ``m_low`` and ``m_high``.
    overall : Series
        The same columns for all rows together.
    metric_frame : fairlearn.metrics.MetricFrame
        The underlying MetricFrame, for anything else fairlearn offers
        (``group_min()``, ``by_group_ci``, its own plots).
    metrics : list of str
        The metric names, in column order.
    y_pred : ndarray
        The estimator's predictions on ``X``.
    ci : float
        The coverage of the intervals.
    n_boot : int or None
        Bootstrap resamples (None: no intervals).
    """

    def __init__(self, metric_frame, counts, metrics, *, y_pred, ci):
        self.metric_frame = metric_frame
        self.metrics = list(metrics)
        self.y_pred = y_pred
        self.ci = ci
        self.n_boot = metric_frame.n_boot
        mf = metric_frame
        lo = hi = olo = ohi = None
        if self.n_boot is not None:
            lo, hi = mf.by_group_ci
            olo, ohi = mf.overall_ci
        self.by_group = _with_intervals(mf.by_group, lo, hi, self.metrics, count=counts)
        self.overall = _with_intervals(mf.overall, olo, ohi, self.metrics, count=int(counts.sum()))

    def difference(self, method="between_groups"):
        """Largest difference of each metric between groups, with its interval.

        Parameters
        ----------
        method : {"between_groups", "to_overall"}, default="between_groups"
            ``"between_groups"``: best group minus worst group;
            ``"to_overall"``: the largest absolute difference between a
            group and the overall value (fairlearn's definitions).

        Returns
        -------
        table : DataFrame
            One row per metric; columns ``value`` and, when bootstrapped,
            ``low`` and ``high`` (the bootstrap distribution of the
            difference itself, not a combination of the groups' intervals).
        """
        return _gap_table(self.metric_frame, self.metrics, method, "difference")

    def ratio(self, method="between_groups"):
        """Smallest ratio of each metric between groups (<= 1), with its interval.

        A selection-rate ratio below 0.8 is the "four-fifths rule" of US
        employment law. Same parameters and table as :meth:`difference`.
        """
        return _gap_table(self.metric_frame, self.metrics, method, "ratio")

    def plot(self, metric=None, *, ax=None):
        """Dot-and-whisker chart of one metric per group, the overall value dashed.

        Parameters
        ----------
        metric : str or None, default=None
            A name from :attr:`metrics`; None: the first.
        ax : matplotlib Axes or None, default=None
            Where to draw; None: a new figure.

        Returns
        -------
        ax : matplotlib Axes
        """
        import matplotlib.pyplot as plt

        metric = self._metric(metric)
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 0.5 * len(self.by_group) + 1.5))
        rows = self.by_group
        ypos = np.arange(len(rows))[::-1]
        value = rows[metric].to_numpy()
        xerr = None
        if self.n_boot is not None:
            xerr = np.vstack([value - rows[f"{metric}_low"], rows[f"{metric}_high"] - value])
            ax.axvspan(self.overall[f"{metric}_low"], self.overall[f"{metric}_high"], color="0.9", zorder=0)
        ax.errorbar(value, ypos, xerr=xerr, fmt="o", color="#4c72b0", capsize=3)
        ax.axvline(self.overall[metric], color="0.4", ls="--", label="overall")
        ax.set_yticks(ypos, [f"{_label(g)} (n={c:,})" for g, c in zip(rows.index, rows["count"])])
        ax.set_ylim(-0.6, len(rows) - 0.4)
        ax.set_xlabel(metric + ("" if self.n_boot is None else f"  ({self.ci:.0%} bootstrap interval)"))
        ax.legend(loc="best", fontsize="small")
        return ax

    def _metric(self, metric):
        if metric is None:
            return self.metrics[0]
        if metric not in self.metrics:
            raise ValueError(f"metric must be one of {self.metrics}, got {metric!r}.")
        return metric

    def __repr__(self):
        import pandas as pd

        with pd.option_context("display.width", 120, "display.max_columns", 20, "display.precision", 3):
            return (
                f"GroupReport({len(self.by_group)} groups, {int(self.overall['count'])} rows, "
                f"n_boot={self.n_boot}, ci={self.ci})\n{self.by_group}\noverall:\n{self.overall.to_frame().T}"
            )


class TransferComparison:
    """How each group's metrics moved from one fitted model to another.

    Returned by :func:`compare_transfer`; not built by hand.

    Attributes
    ----------
    by_group : DataFrame
        One row per group. Columns: ``count``, then for each metric ``m``:
        ``m_before``, ``m_after`` and ``m_delta`` (after minus before), each
        with ``_low`` / ``_high`` bootstrap bounds when bootstrapped. The
        bounds of ``m_delta`` come from a paired bootstrap (both models
        scored on the same resampled rows), so they are narrower than the
        before and after intervals suggest when the two models err on the
        same rows.
    overall : Series
        The same columns for all rows together.
    gap : DataFrame
        One row per metric: the gap between groups (``difference`` with
        ``method="between_groups"``: best group minus worst group) before
        and after (``before``, ``after`` with ``_low`` / ``_high``), its
        change ``change`` = after - before with a paired bootstrap interval
        (``change_low``, ``change_high``), and ``verdict``: ``"widened"``
        when the whole interval of the change is above 0, ``"narrowed"``
        when it is below 0, ``"no clear change"`` otherwise (without a
        bootstrap: the sign of the change, with ``"(no interval)"``).
    metric_frame : fairlearn.metrics.MetricFrame
        The underlying MetricFrame (metrics ``m_before`` and ``m_after``).
    metrics : list of str
        The base metric names.
    y_pred_before, y_pred_after : ndarray
        The two models' predictions on ``X``.
    ci : float
        The coverage of the intervals.
    n_boot : int or None
        Bootstrap resamples (None: no intervals).
    """

    def __init__(self, metric_frame, by_group, overall, metrics, gap, *, y_pred_before, y_pred_after, ci):
        self.metric_frame = metric_frame
        self.by_group = by_group
        self.overall = overall
        self.metrics = list(metrics)
        self.gap = gap
        self.y_pred_before = y_pred_before
        self.y_pred_after = y_pred_after
        self.ci = ci
        self.n_boot = metric_frame.n_boot

    @property
    def gap_widened(self):
        """Series of bool, one per metric: did the gap widen beyond the bootstrap noise?"""
        return self.gap["verdict"] == "widened"

    def plot(self, metric=None, *, axes=None):
        """Two panels: each group's metric before and after, and its change.

        Parameters
        ----------
        metric : str or None, default=None
            A name from :attr:`metrics`; None: the first.
        axes : sequence of two matplotlib Axes or None, default=None
            Where to draw; None: a new figure of two panels.

        Returns
        -------
        axes : ndarray of two matplotlib Axes
        """
        import matplotlib.pyplot as plt

        metric = GroupReport._metric(self, metric)
        if axes is None:
            _, axes = plt.subplots(
                1, 2, figsize=(10, 0.5 * len(self.by_group) + 2), sharey=True,
                gridspec_kw=dict(width_ratios=[3, 2]),
            )
        axes = np.asarray(axes).ravel()
        rows = self.by_group
        ypos = np.arange(len(rows))[::-1]
        boot = self.n_boot is not None

        def err(col, shift):
            if not boot:
                return None
            v = rows[col].to_numpy()
            return np.vstack([v - rows[f"{col}_low"], rows[f"{col}_high"] - v])

        ax = axes[0]
        for kind, shift, color in (("before", 0.12, "0.55"), ("after", -0.12, "#c44e52")):
            col = f"{metric}_{kind}"
            ax.errorbar(rows[col], ypos + shift, xerr=err(col, shift), fmt="o", color=color, capsize=3, label=kind)
        for y0, b, a in zip(ypos, rows[f"{metric}_before"], rows[f"{metric}_after"]):
            ax.annotate("", xy=(a, y0 - 0.12), xytext=(b, y0 + 0.12), arrowprops=dict(arrowstyle="->", color="0.7"))
        ax.set_yticks(ypos, [f"{_label(g)} (n={c:,})" for g, c in zip(rows.index, rows["count"])])
        ax.set_ylim(-0.6, len(rows) - 0.4)
        ax.set_xlabel(metric)
        g = self.gap.loc[metric]
        ax.set_title(f"gap {g['before']:.3f} -> {g['after']:.3f} ({g['verdict']})", fontsize="medium")
        ax.legend(loc="best", fontsize="small")

        ax = axes[1]
        col = f"{metric}_delta"
        ax.errorbar(rows[col], ypos, xerr=err(col, 0), fmt="s", color="#4c72b0", capsize=3)
        ax.axvline(0, color="0.4", lw=1)
        ax.axvline(self.overall[col], color="0.4", ls="--", lw=1, label="overall")
        ax.set_xlabel(f"change of {metric}\n(after - before" + (")" if not boot else f", {self.ci:.0%} interval)"))
        ax.legend(loc="best", fontsize="small")
        return axes

    def __repr__(self):
        import pandas as pd

        with pd.option_context("display.width", 120, "display.max_columns", 20, "display.precision", 3):
            return (
                f"TransferComparison({len(self.by_group)} groups, {int(self.overall['count'])} rows, "
                f"n_boot={self.n_boot}, ci={self.ci})\n{self.by_group}\ngap:\n{self.gap}"
            )


# --------------------------------------------------------------- functions


def _prepare(estimators, names, X, y, sensitive_features, metrics, pos_label, n_boot, ci):
    for est, name in zip(estimators, names):
        _check_estimator(est, name)
    quantiles = _check_bootstrap(n_boot, ci)
    n = _n_rows(X, "X")
    y = _check_y(y, n)
    sf = _check_sensitive_features(sensitive_features, n)
    preds = [np.asarray(est.predict(X)) for est in estimators]
    for p, name in zip(preds, names):
        if p.shape[0] != n:
            raise ValueError(f"{name}.predict(X) returned {p.shape[0]} predictions for {n} rows.")
    classes = _classes(estimators, y, preds)
    pos_label = _check_pos_label(pos_label, classes) if len(classes) == 2 else pos_label
    resolved = _resolve_metrics(metrics, classes, pos_label)
    return y, sf, preds, resolved, quantiles


def group_report(
    estimator, X, y, sensitive_features, *, metrics=None, pos_label=None, n_boot=200, ci=0.95, random_state=None
):
    """Per-group accuracy, selection rate and count of a fitted model, with bootstrap intervals.

    Predicts ``X`` with ``estimator`` and measures each metric on each group
    of rows that ``sensitive_features`` defines (their intersections when
    there are several), on all rows together, and the gap between groups.
    The work is fairlearn's :class:`~fairlearn.metrics.MetricFrame`; its
    bootstrap (rows resampled with replacement ``n_boot`` times) gives the
    percentile intervals.

    Parameters
    ----------
    estimator : fitted classifier
        Anything with ``predict`` that :func:`~sklearn.utils.validation.check_is_fitted`
        accepts: a Pipeline, a :class:`~sktransfer.FineTunedClassifier`, ...

    X : array-like, list of str, or list of images
        The inputs, as ``estimator.predict`` takes them. Use data the model
        was not trained on.

    y : array-like of shape (n_samples,)
        The true labels.

    sensitive_features : array-like, Series, DataFrame or dict of arrays
        The group of each row, e.g. a column ``sex``. Several columns (a
        DataFrame or a dict) define intersectional groups. Missing values
        are refused: fill them with an explicit group such as ``"unknown"``.

    metrics : None, list of str, or dict, default=None
        None: ``accuracy`` and ``selection_rate``. For a binary task the
        selection rate is the fraction of rows predicted ``pos_label``; for
        more classes there is one column ``selection_rate[c]`` per class
        ``c`` (the fraction of rows predicted ``c``). Names also accepted:
        ``"balanced_accuracy"``, and for a binary task
        ``"true_positive_rate"``, ``"false_positive_rate"``,
        ``"false_negative_rate"``, ``"true_negative_rate"``. A dict maps
        column names to such names or to callables ``f(y_true, y_pred) ->
        float``. The row ``count`` is always reported, exactly.

    pos_label : label or None, default=None
        The positive class of a binary task (the selected one); None: the
        last of ``estimator.classes_`` (e.g. 1 of {0, 1}).

    n_boot : int or None, default=200
        Bootstrap resamples for the intervals; None for point values only.
        fairlearn's bootstrap is a Python loop whose time grows with
        ``n_boot`` x metrics x rows (about 3 s of CPU per 100 resamples of
        2,000 rows and 2 metrics): 200 suits monitoring, raise it to 1000
        or more for figures you publish. A group with fewer than
        ``MIN_GROUP_ROWS`` (30) rows raises a warning: its interval is
        unreliable.

    ci : float, default=0.95
        Coverage of the intervals: the ``(1 - ci) / 2`` and
        ``(1 + ci) / 2`` quantiles of the bootstrap distribution.

    random_state : int, RandomState instance or None, default=None
        Seeds the bootstrap; an int makes the intervals reproducible.

    Returns
    -------
    report : GroupReport
        ``report.by_group`` (DataFrame: one row per group, columns
        ``count``, then each metric with ``_low`` / ``_high`` bounds),
        ``report.overall`` (Series), ``report.difference()`` and
        ``report.ratio()`` (the gap between groups, with its interval),
        ``report.plot()`` and ``report.metric_frame`` (the MetricFrame).

    Raises
    ------
    NotFittedError
        If ``estimator`` is not fitted.
    ValueError
        If ``X``, ``y`` and ``sensitive_features`` differ in length, or
        ``sensitive_features`` has a missing value (the message names the
        column and the rows).

    See Also
    --------
    compare_transfer : How each group's metrics moved between two models.
    fairlearn.metrics.MetricFrame : The engine underneath.

    Examples
    --------
    A model that is always right on group ``a`` and right on half the rows
    of group ``b``:

    >>> import numpy as np
    >>> from sklearn.tree import DecisionTreeClassifier
    >>> from sktransfer.metrics import group_report
    >>> X = np.arange(200).reshape(-1, 1)
    >>> group = np.repeat(["a", "b"], 100)
    >>> y = np.where(group == "a", X.ravel() % 2, 1)
    >>> model = DecisionTreeClassifier().fit(X, np.where(group == "a", y, X.ravel() % 2))
    >>> report = group_report(model, X, y, group, n_boot=50, random_state=0)
    >>> report.by_group[["count", "accuracy", "selection_rate"]]
                       count  accuracy  selection_rate
    sensitive_feature...
    a                    100       1.0             0.5
    b                    100       0.5             0.5
    >>> float(report.difference().loc["accuracy", "value"])
    0.5
    """
    y, sf, (y_pred,), resolved, quantiles = _prepare(
        [estimator], ["estimator"], X, y, sensitive_features, metrics, pos_label, n_boot, ci
    )
    mf = _metric_frame(resolved, y, y_pred, sf, n_boot=n_boot, quantiles=quantiles, random_state=random_state)
    counts = _group_counts(sf, mf.by_group.index)
    _warn_small_groups(counts, n_boot)
    return GroupReport(mf, counts, resolved, y_pred=y_pred, ci=ci)


def _before(y_true, y_pred, y_pred_before, *, func):
    return func(y_true, y_pred_before)


def _gap(per_group):
    """Best group minus worst group (fairlearn's ``between_groups`` difference), NaN skipped."""
    per_group = per_group[~np.isnan(per_group)]
    return per_group.max() - per_group.min() if len(per_group) else np.nan


def _paired_changes(resolved, y, before, after, codes, n_groups, *, n_boot, quantiles, random_state):
    """Paired bootstrap bounds of the changes after - before, per metric.

    Returns ``{metric: (group_bounds (n_groups, 2), overall_bounds (2,), gap_change_bounds (2,))}``;
    each resample draws all rows with replacement once, and both models are scored on it.
    """
    from sklearn.utils import check_random_state

    rng = check_random_state(random_state)
    n = len(y)
    draws = {m: np.empty((n_boot, n_groups + 2)) for m in resolved}  # groups, overall, gap change
    for b in range(n_boot):
        idx = rng.randint(0, n, n)
        c = codes[idx]
        members = [idx[c == g] for g in range(n_groups)] + [idx]
        for m, func in resolved.items():
            vals = np.full((2, n_groups + 1), np.nan)
            for k, pred in enumerate((before, after)):
                for g, rows in enumerate(members):
                    if len(rows):
                        vals[k, g] = func(y[rows], pred[rows])
            draws[m][b, : n_groups + 1] = vals[1] - vals[0]
            draws[m][b, -1] = _gap(vals[1, :n_groups]) - _gap(vals[0, :n_groups])
    out = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
        for m, d in draws.items():
            q = np.nanquantile(d, quantiles, axis=0).T  # (n_groups + 2, 2)
            out[m] = (q[:n_groups], q[n_groups], q[n_groups + 1])
    return out


def compare_transfer(
    before,
    after,
    X,
    y,
    sensitive_features,
    *,
    metrics=None,
    pos_label=None,
    n_boot=200,
    ci=0.95,
    random_state=None,
):
    """How each group's metrics moved from one fitted model to another.

    The question this answers: did fine-tuning (``after``) widen the gap
    between groups that the frozen model (``before``, e.g. a linear probe on
    pretrained features) had? Both models predict the same ``X``; each
    metric is measured per group for both, with the change and the change
    of the gap between groups, all with bootstrap intervals in which the
    two models are scored on the same resampled rows (a paired bootstrap).

    Parameters
    ----------
    before, after : fitted classifiers
        The two models, e.g. ``make_pipeline(PretrainedFeatureExtractor(...),
        LogisticRegression())`` and a :class:`~sktransfer.FineTunedClassifier`
        or :class:`~sktransfer.LoRAClassifier` on the same task and classes.

    X, y, sensitive_features, metrics, pos_label, n_boot, ci, random_state
        As in :func:`group_report`.

    Returns
    -------
    comparison : TransferComparison
        ``comparison.by_group`` (DataFrame: one row per group; for each
        metric ``m`` the columns ``m_before``, ``m_after``, ``m_delta`` with
        ``_low`` / ``_high`` bounds), ``comparison.overall``,
        ``comparison.gap`` (one row per metric: the gap before and after,
        its change with a paired interval, and a ``verdict``: ``widened``,
        ``narrowed`` or ``no clear change``), ``comparison.gap_widened``
        and ``comparison.plot()``.

    Raises
    ------
    NotFittedError
        If either model is not fitted.
    ValueError
        As :func:`group_report`, and if the two models' classes differ.

    See Also
    --------
    group_report : One model's per-group metrics.

    Notes
    -----
    The before and after values, their intervals and those of the gaps come
    from fairlearn's MetricFrame bootstrap. The intervals of the changes
    (``m_delta`` and the gap's ``change``) need both models' values on each
    resample together, which MetricFrame does not expose; they come from a
    paired bootstrap of the same scheme (all rows resampled with
    replacement, ``n_boot`` times) in a loop of this module, seeded by
    ``random_state`` too.

    Examples
    --------
    Fine-tuning that fixes group ``b`` (from half right to all right):

    >>> import numpy as np
    >>> from sklearn.dummy import DummyClassifier
    >>> from sklearn.tree import DecisionTreeClassifier
    >>> from sktransfer.metrics import compare_transfer
    >>> X = np.arange(200).reshape(-1, 1)
    >>> group = np.repeat(["a", "b"], 100)
    >>> y = X.ravel() % 2
    >>> after = DecisionTreeClassifier().fit(X, y)
    >>> before = DecisionTreeClassifier().fit(X, np.where(group == "a", y, X.ravel() // 2 % 2))
    >>> comparison = compare_transfer(before, after, X, y, group, n_boot=50, random_state=0)
    >>> comparison.by_group[["accuracy_before", "accuracy_after", "accuracy_delta"]]
                       accuracy_before  accuracy_after  accuracy_delta
    sensitive_feature...
    a                              1.0             1.0             0.0
    b                              0.5             1.0             0.5
    >>> gap = comparison.gap.loc["accuracy"]
    >>> float(gap["before"]), float(gap["after"]), gap["verdict"]
    (0.5, 0.0, 'narrowed')
    """
    y, sf, (y_before, y_after), resolved, quantiles = _prepare(
        [before, after], ["before", "after"], X, y, sensitive_features, metrics, pos_label, n_boot, ci
    )
    cb, ca = getattr(before, "classes_", None), getattr(after, "classes_", None)
    if cb is not None and ca is not None and (len(cb) != len(ca) or np.any(np.asarray(cb) != np.asarray(ca))):
        raise ValueError(
            f"before and after must classify into the same classes; got {list(cb)} and {list(ca)}. "
            f"Fit both on the same labels."
        )
    paired, sample_params = {}, {}
    for m, func in resolved.items():
        paired[f"{m}_before"] = partial(_before, func=func)
        paired[f"{m}_after"] = func
        sample_params[f"{m}_before"] = {"y_pred_before": y_before}
    if isinstance(random_state, numbers.Integral):
        seed_mf = seed_pairs = int(random_state)
    else:  # draw both seeds from the given generator (or from fresh entropy)
        from sklearn.utils import check_random_state

        seed_mf, seed_pairs = (int(v) for v in check_random_state(random_state).randint(0, 2**31 - 1, size=2))
    mf = _metric_frame(
        paired, y, y_after, sf, n_boot=n_boot, quantiles=quantiles, random_state=seed_mf,
        sample_params=sample_params,
    )
    counts = _group_counts(sf, mf.by_group.index)
    _warn_small_groups(counts, n_boot)

    import pandas as pd

    names = list(resolved)
    columns = [f"{m}_{k}" for m in names for k in ("before", "after")]
    lo = hi = olo = ohi = None
    if n_boot is not None:
        lo, hi = mf.by_group_ci
        olo, ohi = mf.overall_ci
    by_group = _with_intervals(mf.by_group, lo, hi, columns, count=counts)
    overall = _with_intervals(mf.overall, olo, ohi, columns, count=int(counts.sum()))

    b = _gap_table(mf, [f"{m}_before" for m in names], "between_groups", "difference")
    a = _gap_table(mf, [f"{m}_after" for m in names], "between_groups", "difference")
    gap = pd.DataFrame(index=pd.Index(names, name="metric"))
    for kind, table in (("before", b), ("after", a)):
        for col in table.columns:
            gap[kind if col == "value" else f"{kind}_{col}"] = table[col].to_numpy()
    gap["change"] = gap["after"] - gap["before"]

    bounds = None
    if n_boot is not None:
        codes, keys = _groups(sf)
        bounds = _paired_changes(
            resolved, y, y_before, y_after, codes, len(keys),
            n_boot=int(n_boot), quantiles=quantiles, random_state=seed_pairs,
        )
    for m in names:  # insert m_delta (+ bounds) after m_after
        pos = list(by_group.columns).index(f"{m}_after_high" if bounds else f"{m}_after") + 1
        new = {f"{m}_delta": by_group[f"{m}_after"] - by_group[f"{m}_before"]}
        if bounds:
            group_bounds = pd.DataFrame(bounds[m][0], index=keys).reindex(by_group.index)
            new[f"{m}_delta_low"], new[f"{m}_delta_high"] = group_bounds[0], group_bounds[1]
        for offset, (col, values) in enumerate(new.items()):
            by_group.insert(pos + offset, col, values.astype(float))
        overall_new = {f"{m}_delta": overall[f"{m}_after"] - overall[f"{m}_before"]}
        if bounds:
            overall_new[f"{m}_delta_low"], overall_new[f"{m}_delta_high"] = bounds[m][1]
        overall = pd.concat([overall, pd.Series(overall_new, dtype=float)])
    overall = overall[[c for c in by_group.columns]]
    overall.name = "overall"

    if bounds:
        gap["change_low"] = [bounds[m][2][0] for m in names]
        gap["change_high"] = [bounds[m][2][1] for m in names]
        gap["verdict"] = np.where(
            gap["change_low"] > 0, "widened", np.where(gap["change_high"] < 0, "narrowed", "no clear change")
        )
    else:
        gap["verdict"] = np.where(
            gap["change"] > 0, "widened (no interval)",
            np.where(gap["change"] < 0, "narrowed (no interval)", "unchanged"),
        )
    return TransferComparison(
        mf, by_group, overall, names, gap, y_pred_before=y_before, y_pred_after=y_after, ci=ci
    )

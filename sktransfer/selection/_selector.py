"""`BackboneSelector`: rank candidate backbones (and layers) by transferability."""

import os
import time
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone
from sklearn.utils import get_tags
from sklearn.utils._param_validation import HasMethods, Hidden, Interval, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from .._validation import check_labels, check_params, check_targets, renamed_param
from ._scores import PROBABILITY_SCORES, SCORES, SourceProbabilityExtractor, get_score_function

_EXTRACTOR_PARAMS = (
    "backbone", "layer", "pooling", "normalize", "batch_size", "max_length",
    "image_size", "device", "cache", "verbose", "progress",
)


def _default_head():
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=2000)


def _backbone_label(backbone):
    return backbone if isinstance(backbone, str) else type(backbone).__name__


def _parse_candidate(candidate, i):
    """A candidate → ``(label, params of PretrainedFeatureExtractor)``."""
    from torch import nn

    if isinstance(candidate, (str, nn.Module)):
        params = {"backbone": candidate}
    elif isinstance(candidate, tuple):
        if len(candidate) != 2 or not isinstance(candidate[0], (str, nn.Module)):
            raise ValueError(
                f"candidates[{i}] is a tuple {candidate!r:.80}; a tuple must be (backbone, layer), "
                "e.g. ('timm/tf_efficientnet_lite0', 3)."
            )
        params = {"backbone": candidate[0], "layer": candidate[1]}
    elif isinstance(candidate, dict):
        params = dict(candidate)
        if "backbone" not in params:
            raise ValueError(f"candidates[{i}] is a dict without a 'backbone' key: {sorted(params)}.")
        unknown = set(params) - set(_EXTRACTOR_PARAMS) - {"name"}
        if unknown:
            raise ValueError(
                f"candidates[{i}] has keys that are not PretrainedFeatureExtractor parameters: "
                f"{sorted(unknown)} (allowed: {list(_EXTRACTOR_PARAMS)} and 'name')."
            )
    else:
        raise ValueError(
            f"candidates[{i}] is a {type(candidate).__name__}; a candidate is a backbone name, an "
            "nn.Module, a (backbone, layer) tuple or a dict of PretrainedFeatureExtractor parameters."
        )
    name = params.pop("name", None)
    if name is None:
        name = _backbone_label(params["backbone"])
        if params.get("layer") is not None:
            name += f" [layer {params['layer']}]"
    return str(name), params


def _best_has(attr):
    def check(self):
        if not self.refit:
            raise AttributeError(
                f"This BackboneSelector was initialized with refit=False: {attr} is available only "
                "after refitting the best candidate (refit=True)."
            )
        if hasattr(self, "best_estimator_"):
            return hasattr(self.best_estimator_, attr)
        return hasattr(self._estimator(), attr)

    return check


class BackboneSelector(MetaEstimatorMixin, BaseEstimator):
    """Rank candidate backbones by a transferability score, then refit the best.

    Each candidate is embedded once with
    :class:`~sktransfer.PretrainedFeatureExtractor` (use ``cache`` so that
    the embeddings are reused by the refit, by later runs and by other
    estimators) and scored with a transferability score such as LogME, which
    needs no training. Optionally the ``confirm_top_k`` best are checked
    with a cross-validated probe (``head`` on the frozen embeddings), and
    the best candidate is refit as a pipeline ``extractor → head``.

    A candidate that fails (a model that can't be loaded, inputs it can't
    read) is reported in :attr:`ranking_` with its error; the others are
    still ranked.

    Parameters
    ----------
    candidates : list
        Each one is a backbone spec (``"timm/tf_efficientnet_lite0"``), an
        ``nn.Module``, a ``(backbone, layer)`` tuple, or a dict of
        :class:`~sktransfer.PretrainedFeatureExtractor` parameters (with an
        optional ``"name"`` used as its label).
    metric : {"logme", "hscore", "regularized_hscore", "leep", "nce"} or callable, default="logme"
        Higher is better. ``"leep"`` and ``"nce"`` use the source
        classifier's probabilities (:class:`SourceProbabilityExtractor`),
        so they apply to timm/torchvision candidates without ``layer``. A
        callable takes ``(features, y)``.
    estimator : estimator or None, default=None
        The probe, refit on the best candidate's embeddings (None:
        ``LogisticRegression(max_iter=2000)``). It sets the task: a
        classifier ranks for class labels, a regressor (with
        ``metric="logme"``) for continuous targets. (Named ``head`` before
        0.2; ``head`` still works with a ``FutureWarning`` until 0.4.)
    confirm_top_k : int, default=2
        Cross-validate ``estimator`` on the embeddings of the ``k``
        best-scored candidates and pick the best by probe score (0: trust
        the score; 1 never changes the pick). The default was chosen leave
        one task out on the evaluation suite as the cheapest setting within
        half a point of the best regret: it halved the regret of trusting
        LogME for a fraction of a second on cached embeddings
        (``benchmarks/RESULTS.md``, "How many candidates should BackboneSelector confirm").
    cv : int or cross-validation generator, default=5
        Folds of the probe.
    probe_scoring : str, callable or None, default=None
        Scoring of the probe (None: the head's ``score``, accuracy for
        classifiers).
    extractor_params : dict or None, default=None
        PretrainedFeatureExtractor parameters shared by all candidates
        (e.g. ``{"image_size": 64}``); a candidate's own dict wins.
    cache : None, True or str, default=None
        Embedding cache of the extractors (see
        :class:`~sktransfer.PretrainedFeatureExtractor`).
    refit : bool, default=True
        Fit ``head`` on the best candidate's embeddings of all of ``X``
        (``best_estimator_``), enabling ``predict``.
    verbose : int, default=0
        1 prints one line per candidate.

    Attributes
    ----------
    ranking_ : pandas.DataFrame
        One row per candidate, best first: ``candidate``, ``backbone``,
        ``layer``, ``score``, ``probe_score``, ``seconds`` (embedding +
        score), ``embed_seconds``, ``score_seconds``, ``probe_seconds``,
        ``rank`` and ``error`` (None when it worked). Failed candidates come
        last with a NaN score.
    best_candidate_ : str
        Label of the chosen candidate.
    best_backbone_ : str or torch.nn.Module
        Its backbone.
    best_layer_ : int or None
    best_params_ : dict
        PretrainedFeatureExtractor parameters of the best candidate.
    best_score_ : float
        Its transferability score.
    best_estimator_ : sklearn.pipeline.Pipeline
        Fitted ``extractor → head`` (when ``refit=True``).
    classes_ : ndarray
        Class labels (when the head is a classifier and ``refit=True``).

    See Also
    --------
    logme_score, make_transferability_scorer

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sktransfer.selection import BackboneSelector
    >>> digits = load_digits()
    >>> X = (digits.images[:200] * 16).clip(0, 255).astype("uint8")
    >>> y = digits.target[:200]
    >>> sel = BackboneSelector(["timm/tf_efficientnet_lite0", ("timm/tf_efficientnet_lite0", 3),
    ...                         "no/such-model"], extractor_params={"image_size": 32})
    >>> sel = sel.fit(X, y)  # doctest: +SKIP
    >>> sel.ranking_[["candidate", "score", "error"]]  # doctest: +SKIP
    >>> sel.predict(X[:3])  # doctest: +SKIP
    """

    def __init__(
        self,
        candidates,
        *,
        metric="logme",
        estimator=None,
        confirm_top_k=2,
        cv=5,
        probe_scoring=None,
        extractor_params=None,
        cache=None,
        refit=True,
        verbose=0,
        head="deprecated",
    ):
        self.candidates = candidates
        self.metric = metric
        self.estimator = estimator
        self.confirm_top_k = confirm_top_k
        self.cv = cv
        self.probe_scoring = probe_scoring
        self.extractor_params = extractor_params
        self.cache = cache
        self.refit = refit
        self.verbose = verbose
        self.head = head

    def _estimator(self, warn=False):
        """The probe: ``estimator``, the deprecated ``head`` (a FutureWarning with ``warn``), or the default."""
        given, _ = renamed_param(
            self, "head", "estimator", why="head is the torch head in the estimators that train", warn=warn
        )
        return given if given is not None else _default_head()

    # -------------------------------------------------------------- checks
    _parameter_constraints: dict = {
        # Any iterable of candidates; what each may be is checked by
        # _parse_candidate (a structure no table can describe).
        "candidates": "no_validation",
        "metric": [StrOptions(set(SCORES)), callable],
        "estimator": [HasMethods(["fit"]), None],
        "confirm_top_k": [Interval(Integral, 0, None, closed="left")],
        "cv": ["cv_object"],
        "probe_scoring": [str, callable, None],
        "extractor_params": [dict, None],
        "cache": ["boolean", str, bytes, os.PathLike, None],
        "refit": ["boolean"],
        "verbose": [Interval(Integral, 0, 2, closed="both"), "boolean"],
        "head": [Hidden(StrOptions({"deprecated"})), HasMethods(["fit"]), None],  # deprecated: estimator=
    }

    def _check_params(self):
        check_params(self)
        if isinstance(self.candidates, (str, dict, tuple)) or not hasattr(self.candidates, "__iter__"):
            raise ValueError(f"candidates must be a list of candidates, got {type(self.candidates).__name__}.")
        parsed = [_parse_candidate(c, i) for i, c in enumerate(self.candidates)]
        if not parsed:
            raise ValueError("candidates is empty: give at least one backbone.")
        labels = [name for name, _ in parsed]
        dup = sorted({n for n in labels if labels.count(n) > 1})
        if dup:
            raise ValueError(f"Candidate labels must be unique, got duplicates {dup}; give them a 'name'.")
        if self.extractor_params is not None:
            unknown = set(self.extractor_params) - set(_EXTRACTOR_PARAMS) - {"backbone", "layer"}
            bad = unknown | ({"backbone", "layer"} & set(self.extractor_params))
            if bad:
                raise ValueError(
                    f"extractor_params may not set {sorted(bad)}: backbone and layer come from the "
                    f"candidates, and the allowed keys are {[p for p in _EXTRACTOR_PARAMS if p not in ('backbone', 'layer')]}."
                )
        self._estimator(warn=True)  # estimator and head both given: an error; head alone: a FutureWarning
        return parsed

    def _check_y(self, y, n):
        """Validated ``y`` and the task the head sets: ``"classification"`` or ``"regression"``.

        The head decides the task: a classifier (the default) needs class
        labels, a regressor numeric targets, which only LogME (or a
        callable metric) can score.
        """
        head = self._estimator()
        head_name = type(head).__name__
        named = isinstance(self.metric, str)
        labels_only = named and self.metric not in ("logme",)
        if get_tags(head).estimator_type == "regressor":
            if labels_only:
                raise ValueError(
                    f"metric={self.metric!r} scores class labels, but the head {head_name} is a regressor. "
                    "To rank backbones for continuous targets use metric='logme' (or a callable); "
                    "for class labels use a classifier head."
                )
            if y is None or isinstance(y, (str, bytes)):
                raise ValueError("y must be numeric targets, one per input, for a regressor head.")
            try:
                targets = np.asarray(y, dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError(
                    f"y must be numeric targets for the regressor head {head_name}, got "
                    f"{np.asarray(y, dtype=object).ravel()[:3].tolist()!r}...; for class labels use a "
                    "classifier head."
                ) from None
            check_targets(targets, n_rows=n, task=f"the regressor head {head_name}")  # names a NaN/infinite row
            return targets, "regression"

        why = f"metric={self.metric!r} scores class labels" if labels_only else f"the head {head_name} is a classifier"
        labels = check_labels(
            y, n_rows=n, task="ranking backbones for a classifier",
            advice=(
                f"Here {why}: to rank backbones for continuous targets use metric='logme' with a regressor "
                "head, e.g. BackboneSelector(candidates, estimator=Ridge())."
            ),
        )
        return labels, "classification"

    def _extractor_params(self, params):
        merged = {"cache": self.cache}
        merged.update(self.extractor_params or {})
        merged.update(params)
        return merged

    def _make_extractor(self, params):
        from .._feature_extractor import PretrainedFeatureExtractor

        return PretrainedFeatureExtractor(**params)

    def _make_scored_transformer(self, params):
        if self.metric in PROBABILITY_SCORES:
            if params.get("layer") is not None:
                raise ValueError(
                    f"metric={self.metric!r} scores the source classifier's probabilities; an intermediate "
                    "layer has none. Use a feature metric ('logme') to rank layers."
                )
            return SourceProbabilityExtractor(
                params["backbone"],
                image_size=params.get("image_size"),
                batch_size=params.get("batch_size") or 32,
                device=params.get("device", "auto"),
            )
        return self._make_extractor(params)

    # ----------------------------------------------------------------- fit
    def fit(self, X, y):
        """Embed and score every candidate, then refit the best one.

        Parameters
        ----------
        X : list, array, Series or one-column DataFrame
            Texts or images, as for PretrainedFeatureExtractor.
        y : array-like of shape (n_samples,)
            Class labels for a classifier ``head`` (the default). With a
            regressor ``head`` (e.g. ``Ridge()``), numeric targets, scored
            by ``metric="logme"`` as a regression (whole numbers too). ``y``
            is checked before any model is loaded: continuous targets with
            a classifier head, a missing label or mixed label types raise
            a ``ValueError``.

        Returns
        -------
        self : BackboneSelector
        """
        import pandas as pd

        from .._inputs import as_rows

        parsed = self._check_params()
        n = len(as_rows(X))
        # Check y once, before any model is loaded or any input embedded.
        y, task = self._check_y(y, n)
        score_fn = get_score_function(self.metric)
        if self.metric == "logme":
            base_fn = score_fn

            def score_fn(Z, y):
                return base_fn(Z, y, task=task)

        keep = max(1, int(self.confirm_top_k))
        kept = {}  # label -> (score, extractor, features): the `keep` best so far
        rows = []
        for name, params in parsed:
            params = self._extractor_params(params)
            row = {
                "candidate": name, "backbone": _backbone_label(params["backbone"]), "layer": params.get("layer"),
                "score": np.nan, "probe_score": np.nan, "seconds": np.nan, "embed_seconds": np.nan,
                "score_seconds": np.nan, "probe_seconds": np.nan, "error": None,
            }
            t0 = time.perf_counter()
            try:
                est = self._make_scored_transformer(params)
                Z = est.fit_transform(X)
                t1 = time.perf_counter()
                score = float(score_fn(Z, y))
                t2 = time.perf_counter()
                if not np.isfinite(score):
                    raise ValueError(f"the {self.metric} score is {score} (features may be constant or degenerate)")
            except Exception as exc:  # noqa: BLE001 - recorded in ranking_, the others still run
                row["error"] = f"{type(exc).__name__}: {exc}"
                row["seconds"] = time.perf_counter() - t0
                if self.verbose:
                    print(f"[BackboneSelector] {name}: failed ({row['error'][:200]})")
                rows.append(row)
                continue
            row.update(score=score, embed_seconds=t1 - t0, score_seconds=t2 - t1, seconds=t2 - t0)
            if self.verbose:
                print(f"[BackboneSelector] {name}: {self.metric}={score:.4f} ({t2 - t0:.1f} s)")
            rows.append(row)
            kept[name] = (score, est, params, Z)
            if len(kept) > keep:
                worst = min(kept, key=lambda k: kept[k][0])
                del kept[worst]

        if not kept:
            errors = "; ".join(f"{r['candidate']}: {r['error']}" for r in rows)
            raise ValueError(f"All {len(rows)} candidates failed. {errors}")

        head = self._estimator()
        by_name = {r["candidate"]: r for r in rows}
        if self.confirm_top_k:
            from sklearn.model_selection import cross_val_score

            for name, (_, est, params, Z) in kept.items():
                Zf = Z if self.metric not in PROBABILITY_SCORES else self._features_for(params, X)
                t0 = time.perf_counter()
                probe = cross_val_score(clone(head), Zf, y, cv=self.cv, scoring=self.probe_scoring)
                by_name[name]["probe_seconds"] = time.perf_counter() - t0
                by_name[name]["probe_score"] = float(np.mean(probe))
                if self.verbose:
                    print(f"[BackboneSelector] {name}: probe {np.mean(probe):.4f}")
            best = max(kept, key=lambda k: (by_name[k]["probe_score"], kept[k][0]))
        else:
            best = max(kept, key=lambda k: kept[k][0])

        ranking = pd.DataFrame(rows)
        ranking["layer"] = ranking["layer"].astype("Int64")
        order = sorted(
            range(len(rows)),
            key=lambda i: (
                rows[i]["error"] is not None,
                rows[i]["candidate"] != best,
                -(rows[i]["probe_score"] if np.isfinite(rows[i]["probe_score"]) else -np.inf),
                -(rows[i]["score"] if np.isfinite(rows[i]["score"]) else -np.inf),
            ),
        )
        ranking = ranking.iloc[order].reset_index(drop=True)
        failed = ranking["error"].notna().to_numpy()
        ranks = pd.array([pd.NA if f else i + 1 for i, f in enumerate(failed)], dtype="Int64")
        ranking.insert(ranking.columns.get_loc("error"), "rank", ranks)
        self.ranking_ = ranking

        score, est, params, Z = kept[best]
        self.best_candidate_ = best
        self.best_backbone_ = params["backbone"]
        self.best_layer_ = params.get("layer")
        self.best_params_ = dict(params)
        self.best_score_ = score
        if self.refit:
            from sklearn.pipeline import Pipeline

            if self.metric in PROBABILITY_SCORES:
                extractor = self._make_extractor(params)
                Z = extractor.fit_transform(X)
            else:
                extractor = est
            fitted_head = clone(head).fit(Z, y)
            self.best_estimator_ = Pipeline([("extractor", extractor), ("head", fitted_head)])
            if hasattr(fitted_head, "classes_"):
                self.classes_ = fitted_head.classes_
        return self

    def _features_for(self, params, X):
        return self._make_extractor(params).fit_transform(X)

    # ------------------------------------------------------------ delegate
    def _check_refit(self):
        check_is_fitted(self, "ranking_")
        if not hasattr(self, "best_estimator_"):
            raise AttributeError("This BackboneSelector was fitted with refit=False: there is no best_estimator_ to predict with.")

    @available_if(_best_has("predict"))
    def predict(self, X):
        """Predict with the refit best pipeline."""
        self._check_refit()
        return self.best_estimator_.predict(X)

    @available_if(_best_has("predict_proba"))
    def predict_proba(self, X):
        """Class probabilities of the refit best pipeline."""
        self._check_refit()
        return self.best_estimator_.predict_proba(X)

    @available_if(_best_has("decision_function"))
    def decision_function(self, X):
        """Decision function of the refit best pipeline."""
        self._check_refit()
        return self.best_estimator_.decision_function(X)

    @available_if(_best_has("score"))
    def score(self, X, y):
        """Score of the refit best pipeline (accuracy for classifiers)."""
        self._check_refit()
        return self.best_estimator_.score(X, y)

    def transform(self, X):
        """Embeddings from the best candidate's extractor."""
        check_is_fitted(self, "ranking_")
        if hasattr(self, "best_estimator_"):
            return self.best_estimator_[0].transform(X)
        return self._make_extractor(self.best_params_).fit_transform(X)

    # ---------------------------------------------------------------- plot
    def plot_ranking(self, ax=None, path=None):
        """Bar chart of the scores (and probe scores), best at the top.

        Parameters
        ----------
        ax : matplotlib Axes or None, default=None
            Where to draw (None: a new figure).
        path : str or None, default=None
            Also save the figure to this file (PNG by its extension).

        Returns
        -------
        ax : matplotlib Axes
        """
        check_is_fitted(self, "ranking_")
        import matplotlib

        if ax is None and path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        r = self.ranking_.iloc[::-1]
        if ax is None:
            _, ax = plt.subplots(figsize=(7, 0.45 * len(r) + 1.2))
        y_pos = np.arange(len(r))
        ok = r["error"].isna().to_numpy()
        scores = r["score"].to_numpy(dtype=float)
        colors = ["tab:green" if c == self.best_candidate_ else "tab:blue" for c in r["candidate"]]
        ax.barh(y_pos[ok], scores[ok], color=[c for c, o in zip(colors, ok) if o])
        finite = scores[ok]
        x0 = float(np.min(finite)) if finite.size else 0.0
        for yp, failed in zip(y_pos, ~ok):
            if failed:
                ax.text(x0, yp, "  failed", va="center", color="tab:red")
        ax.set_yticks(y_pos)
        ax.set_yticklabels(r["candidate"])
        name = self.metric if isinstance(self.metric, str) else getattr(self.metric, "__name__", "score")
        ax.set_xlabel(f"{name} (higher is better)")
        if r["probe_score"].notna().any():
            ax2 = ax.twiny()
            ax2.plot(r["probe_score"].to_numpy(dtype=float), y_pos, "o", color="tab:orange", label="probe")
            ax2.set_xlabel("cross-validated probe score", color="tab:orange")
        ax.set_title("Backbone ranking")
        ax.figure.tight_layout()
        if path is not None:
            ax.figure.savefig(path, dpi=120)
        return ax

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        head = self._estimator()
        tags.estimator_type = get_tags(head).estimator_type
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.requires_fit = True
        return tags

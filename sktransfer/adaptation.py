"""Unsupervised domain adaptation: labelled source data, unlabelled target data.

Two estimators, one convention for the data:

- :class:`EmbeddingDAClassifier`: frozen embeddings, aligned by a skada
  adapter (CORAL, subspace alignment, TCA, optimal transport, importance
  reweighting), then a head trained on the aligned source rows. Cheap:
  nothing is back-propagated through the backbone.
- :class:`DANNClassifier`: domain-adversarial fine-tuning (Ganin et al.,
  2016). The backbone trains with a gradient-reversal layer and a domain
  classifier so that its features stop telling source from target.

Both take ``fit(X, y, X_target=...)`` (source rows with labels, target rows
without), or skada's convention ``fit(X, y, sample_domain=...)`` with
source rows marked by positive domain ids and target rows by negative ids
(their labels are ignored).

skada and metadata routing: ``import skada`` switches scikit-learn's
metadata routing on for the importing thread (skada 0.6 calls
``sklearn.set_config(enable_metadata_routing=True)``). This module imports
skada lazily, inside ``sklearn.config_context()``, which restores the
previous setting, and runs skada's pipelines inside
``config_context(enable_metadata_routing=True)``: importing or using
``sktransfer.adaptation`` leaves the configuration as it was.
"""

import math
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from skorch.callbacks import Callback
from torch import nn

from ._fine_tuning import _FineTunedBase
from ._inputs import as_rows
from ._validation import check_params, encode_known_labels, encode_labels
from ._training import _CLASS_WEIGHT, _ClassifierOutputs
from .callbacks import _n_train_batches_done, planned_train_steps

__all__ = [
    "ADAPTERS",
    "DANNClassifier",
    "EmbeddingDAClassifier",
    "GradientReversalSchedule",
    "UNSUPERVISED_SCORERS",
    "unsupervised_scorer",
]

# Adapter names → skada classes (all "…Adapter": they transform the
# embeddings or weight the source rows; the head stays ours).
ADAPTERS = {
    "coral": "CORALAdapter",
    "subspace": "SubspaceAlignmentAdapter",
    "tca": "TransferComponentAnalysisAdapter",
    "linear_ot": "LinearOTMappingAdapter",
    "ot": "EntropicOTMappingAdapter",
    "density_reweight": "DensityReweightAdapter",
    "discriminator_reweight": "DiscriminatorReweightAdapter",
}
_REWEIGHTING = {"density_reweight", "discriminator_reweight"}
_DEFAULT_TARGET_DOMAIN = -2  # skada's default id of the first target domain
_MASKED = -1  # skada's masked classification label


# --------------------------------------------------------------------- skada
def _import_skada():
    """Import skada without leaving metadata routing switched on."""
    import sklearn

    try:
        with sklearn.config_context():
            import skada
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "EmbeddingDAClassifier needs skada: pip install skada (or sktransfer[adapt])."
        ) from exc
    return skada


def _routing():
    import sklearn

    return sklearn.config_context(enable_metadata_routing=True)


# ------------------------------------------------------------ data handling
def _n_rows(X):
    return len(as_rows(X))


def _take(X, idx):
    rows = as_rows(X)
    if isinstance(rows, np.ndarray):
        return rows[idx]
    return [rows[i] for i in idx]


def _concat(A, B):
    a, b = as_rows(A), as_rows(B)
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape[1:] == b.shape[1:] and a.dtype == b.dtype:
        return np.concatenate([a, b])
    return list(a) + list(b)


def _split_domains(X, y, X_target, sample_domain):
    """→ ``(X_source, y_source, X_target, source_domains, target_domain)``."""
    if X_target is not None and sample_domain is not None:
        raise ValueError("Pass either X_target (separate target rows) or sample_domain (marking rows of X), not both.")
    if sample_domain is None:
        if X_target is None:
            raise ValueError(
                "Unsupervised domain adaptation needs unlabeled target rows: pass X_target=... "
                "(or sample_domain with negative ids for the target rows of X). Inside GridSearchCV, "
                "pass sample_domain to the search's fit with metadata routing enabled "
                "(sklearn.set_config(enable_metadata_routing=True)) so that it reaches this fit."
            )
        n_t = _n_rows(X_target)
        if n_t == 0:
            raise ValueError("X_target is empty: adaptation needs at least one unlabeled target row.")
        if y is None:
            raise ValueError("y is None: the source rows X need labels.")
        # y as given: np.asarray would turn ["a", 1] into ["a", "1"] before the label check sees it.
        return X, y, X_target, np.ones(_n_rows(X), dtype=np.int64), _DEFAULT_TARGET_DOMAIN
    sd = np.asarray(sample_domain)
    n = _n_rows(X)
    if sd.ndim != 1 or len(sd) != n:
        raise ValueError(f"sample_domain must be 1-D with one domain id per row of X ({n}), got shape {sd.shape}.")
    if sd.dtype.kind not in "iu" or (sd == 0).any():
        bad = np.flatnonzero(sd == 0)
        where = f" (row {bad[0]} is 0)" if bad.size else ""
        raise ValueError(
            f"sample_domain must hold non-zero ints: positive for source domains, negative for "
            f"target domains{where}."
        )
    src, tgt = np.flatnonzero(sd > 0), np.flatnonzero(sd < 0)
    if tgt.size == 0:
        raise ValueError(
            "sample_domain marks no target rows (negative ids): unsupervised adaptation needs "
            "unlabeled target rows."
        )
    if src.size == 0:
        raise ValueError("sample_domain marks no source rows (positive ids): the source rows carry the labels.")
    targets = np.unique(sd[tgt])
    if targets.size > 1:
        raise ValueError(f"sample_domain has {targets.size} target domains {targets.tolist()}; adapt to one at a time.")
    if y is None:
        raise ValueError("y is None: the source rows need labels.")
    # object dtype keeps each label's type for the label check (target rows' labels are ignored).
    y = y if isinstance(y, np.ndarray) else np.asarray(y, dtype=object)
    if len(y) != n:
        raise ValueError(f"X and y have different lengths: {n} inputs but {len(y)} targets.")
    return _take(X, src), y[src], _take(X, tgt), sd[src].astype(np.int64), int(targets[0])


def _check_source_labels(y, n_rows):
    _, classes, y_enc = encode_labels(y, name="the source labels", n_rows=n_rows)
    return classes, y_enc


def _predict_domains(sample_domain, n, allow_source):
    """Domain ids of rows to predict (skada's convention), or None (all target).

    skada's scorers call ``predict_proba(X, sample_domain=...)`` on target
    rows, and ``score``/``predict_proba(..., allow_source=True)`` on source
    rows (importance-weighted, DEV). As in skada, source rows (positive ids)
    are refused unless ``allow_source=True``.
    """
    if sample_domain is None:
        return None
    sd = np.asarray(sample_domain)
    if sd.ndim == 0:
        sd = np.full(n, sd)
    if sd.ndim != 1 or len(sd) != n or sd.dtype.kind not in "iu" or (sd == 0).any():
        raise ValueError(f"sample_domain must hold one non-zero int domain id per row of X ({n}), got {sample_domain!r:.80}.")
    if not allow_source and (sd > 0).any():
        raise ValueError(
            f"sample_domain marks {int((sd > 0).sum())} of the rows to predict as source rows (positive ids); "
            "pass allow_source=True to predict them (skada's convention), or negative ids for target rows."
        )
    return sd.astype(np.int64)


# Under metadata routing (needed to pass ``sample_domain`` through GridSearchCV
# to the splitter, the estimator and the scorer), the DA estimators request
# sample_domain in fit, as skada's own estimators do. Prediction methods
# accept it when called directly (skada's scorers do) without requesting it,
# and score requests sample_weight (skada's ImportanceWeightedScorer passes
# its weights there, and checks that score consumes them).
_DA_METADATA_REQUESTS = {
    "__metadata_request__fit": {"sample_domain": True},
    "__metadata_request__predict": {"sample_domain": False, "allow_source": False},
    "__metadata_request__predict_proba": {"sample_domain": False, "allow_source": False},
    "__metadata_request__score": {"sample_domain": False, "allow_source": False, "sample_weight": True},
}


def _accuracy(clf, X, y, sample_weight, sample_domain, allow_source):
    from sklearn.metrics import accuracy_score

    return accuracy_score(y, clf.predict(X, sample_domain=sample_domain, allow_source=allow_source), sample_weight=sample_weight)


# ----------------------------------------------- shallow: skada on embeddings
def _default_estimator():
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=2000)


class EmbeddingDAClassifier(ClassifierMixin, MetaEstimatorMixin, BaseEstimator):
    """Frozen embeddings aligned across domains with skada, then a classifier.

    The source and target inputs are embedded together (by ``extractor``,
    or taken as given when ``extractor=None``), standardised, aligned by a
    skada adapter fitted on both domains, and ``estimator`` is trained on the
    aligned, labelled source rows. ``predict`` treats new rows as target
    domain rows.

    The skada pipeline runs with metadata routing switched on only inside
    this estimator's methods: the global scikit-learn configuration is left
    as it was.

    Parameters
    ----------
    extractor : transformer or None, default=None
        E.g. :class:`~sktransfer.PretrainedFeatureExtractor`. None: ``X``
        and ``X_target`` are already numeric feature matrices.
    adapter : str, skada adapter or None, default="coral"
        ``"coral"`` (CORAL, second-order alignment), ``"subspace"``
        (subspace alignment), ``"tca"`` (transfer component analysis),
        ``"linear_ot"``, ``"ot"`` (entropic optimal-transport mapping),
        ``"density_reweight"``, ``"discriminator_reweight"`` (importance
        weights on the source rows), an adapter instance from skada, or
        None (no adaptation: a baseline).
    estimator : classifier or None, default=None
        Trained on the adapted source rows (None:
        ``LogisticRegression(max_iter=2000)``).
    adapter_params : dict or None, default=None
        Parameters of an adapter given by name (e.g.
        ``{"n_components": 32}`` for ``"subspace"``, whose default here is
        ``min(n_source, n_target, n_features)``).
    scale : bool, default=True
        Standardise the embeddings (statistics of both domains) first.

    Attributes
    ----------
    classes_ : ndarray
    extractor_ : transformer or None
        The fitted extractor.
    pipeline_ : sklearn.pipeline.Pipeline
        The fitted skada pipeline (scaler, adapter, estimator).
    target_domain_ : int
        The (negative) domain id new rows are predicted as.
    embedding_dim_ : int
        Width of the embeddings (of ``X`` itself when ``extractor=None``,
        which also sets ``n_features_in_``).
    n_source_, n_target_ : int
        Rows of each domain used in ``fit``.

    See Also
    --------
    DANNClassifier : adapt the backbone itself.

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer.adaptation import EmbeddingDAClassifier
    >>> rng = np.random.RandomState(0)
    >>> y = rng.randint(0, 2, 200)
    >>> Xs = rng.randn(200, 5) + 2 * y[:, None]
    >>> Xt = 3 * (rng.randn(200, 5) + 2 * y[:, None]) + 4   # rescaled and shifted
    >>> clf = EmbeddingDAClassifier(adapter="coral").fit(Xs, y, X_target=Xt)
    >>> bool(clf.score(Xt, y) > 0.8)
    True
    """

    __metadata_request__fit = _DA_METADATA_REQUESTS["__metadata_request__fit"]
    __metadata_request__predict = _DA_METADATA_REQUESTS["__metadata_request__predict"]
    __metadata_request__predict_proba = _DA_METADATA_REQUESTS["__metadata_request__predict_proba"]
    __metadata_request__score = _DA_METADATA_REQUESTS["__metadata_request__score"]

    def __init__(self, extractor=None, adapter="coral", estimator=None, *, adapter_params=None, scale=True):
        self.extractor = extractor
        self.adapter = adapter
        self.estimator = estimator
        self.adapter_params = adapter_params
        self.scale = scale

    _parameter_constraints: dict = {
        "extractor": [HasMethods(["fit", "transform"]), None],
        "adapter": [StrOptions(set(ADAPTERS)), HasMethods(["fit_transform"]), None],
        "estimator": [HasMethods(["fit", "predict"]), None],
        "adapter_params": [dict, None],
        "scale": ["boolean"],
    }

    def _check_params(self):
        check_params(self)
        if self.adapter_params and not (self.adapter is None or isinstance(self.adapter, str)):
            raise ValueError(
                f"adapter_params={self.adapter_params!r} applies to adapters given by name; set the parameters "
                f"on the adapter instance ({type(self.adapter).__name__})."
            )

    def _make_adapter(self, skada, n_source, n_target, n_features):
        if self.adapter is None:
            return None
        if not isinstance(self.adapter, str):
            return clone(self.adapter)
        params = dict(self.adapter_params or {})
        if self.adapter == "subspace" and params.get("n_components") is None:
            # skada 0.6 defaults to min(n_samples, n_features) over *both*
            # domains, then fits a PCA per domain: too many components.
            params["n_components"] = min(n_source, n_target, n_features)
        return getattr(skada, ADAPTERS[self.adapter])(**params)

    def _embed(self, X, name, fitting=False):
        if self.extractor_ is None:
            from .selection._scores import _check_matrix

            Z = _check_matrix(X, name)
            if not fitting and Z.shape[1] != self.embedding_dim_:
                raise ValueError(f"{name} has {Z.shape[1]} features, but this classifier was fitted with {self.embedding_dim_}.")
            return Z
        Z = self.extractor_.fit_transform(X) if fitting else self.extractor_.transform(X)
        return np.asarray(Z, dtype=np.float64)

    def fit(self, X, y, *, X_target=None, sample_domain=None):
        """Embed both domains, fit the adapter, train the classifier.

        Parameters
        ----------
        X : inputs or array of shape (n_samples, n_features)
            Labelled source rows (with ``X_target``), or rows of both
            domains (with ``sample_domain``).
        y : array-like of shape (n_samples,)
            Labels of the rows of ``X`` (ignored for target rows).
        X_target : inputs or array, default=None
            Unlabelled target rows.
        sample_domain : array-like of int, default=None
            skada's convention: a positive id per source row, a negative id
            for target rows.

        Returns
        -------
        self
        """
        self._check_params()
        skada = _import_skada()
        estimator = clone(self.estimator) if self.estimator is not None else _default_estimator()
        X_s, y_s, X_t, sd_s, target = _split_domains(X, y, X_target, sample_domain)
        classes, y_enc = _check_source_labels(y_s, _n_rows(X_s))
        self.extractor_ = clone(self.extractor) if self.extractor is not None else None
        if self.extractor_ is None:
            from .selection._scores import _check_matrix

            Zs, Zt = _check_matrix(X_s, "X"), _check_matrix(X_t, "X_target")
            if Zs.shape[1] != Zt.shape[1]:
                raise ValueError(
                    f"X_target has {Zt.shape[1]} features but X has {Zs.shape[1]}: both domains must "
                    "be embedded by the same model."
                )
            Z = np.vstack([Zs, Zt])
        else:
            Z = self._embed(_concat(X_s, X_t), "X", fitting=True)
        n_s, n_t = len(y_enc), len(Z) - len(y_enc)
        adapter = self._make_adapter(skada, n_s, n_t, Z.shape[1])
        y_all = np.concatenate([y_enc, np.full(n_t, _MASKED, dtype=np.int64)])
        sd = np.concatenate([sd_s, np.full(n_t, target, dtype=np.int64)])
        with _routing():
            steps = []
            if self.scale:
                from sklearn.preprocessing import StandardScaler

                steps.append(StandardScaler())
            if adapter is not None:
                steps.append(adapter)
                if (self.adapter in _REWEIGHTING or "Reweight" in type(adapter).__name__) and hasattr(estimator, "set_fit_request"):
                    estimator = estimator.set_fit_request(sample_weight=True)
            steps.append(estimator)
            pipe = skada.make_da_pipeline(*steps)
            try:
                pipe.fit(Z, y_all, sample_domain=sd)  # skada masks y in place: y_all is ours
            except ValueError as exc:
                if "infs or NaNs" not in str(exc) and "infinity" not in str(exc):
                    raise
                # skada's adapter returned NaN/inf features and the estimator
                # after it failed on them: say which step and why.
                raise ValueError(
                    f"adapter={self.adapter!r} produced non-finite features from {n_s} source and {n_t} target "
                    f"rows of {Z.shape[1]} dimensions (covariance-based adapters need more rows than "
                    "dimensions, or regularisation). Reduce the dimension first (fewer components or a "
                    "smaller embedding), pass regularisation through adapter_params (e.g. {'reg': 1e-2}), "
                    "or use adapter='coral' or 'subspace'."
                ) from exc
        self.pipeline_ = pipe
        self.classes_ = classes
        self.target_domain_ = target
        self.embedding_dim_ = Z.shape[1]
        if self.extractor_ is None:
            self.n_features_in_ = Z.shape[1]
        self.n_source_, self.n_target_ = n_s, n_t
        return self

    def _route(self, method, X, sample_domain=None, allow_source=False):
        check_is_fitted(self, "pipeline_")
        Z = self._embed(X, "X")
        sd = _predict_domains(sample_domain, len(Z), allow_source)
        params = {}
        if sd is None:
            sd = np.full(len(Z), self.target_domain_)
        else:
            sd = np.where(sd < 0, self.target_domain_, sd)  # one target domain: the fitted one
            if allow_source:
                params["allow_source"] = True
        with _routing():
            return getattr(self.pipeline_, method)(Z, sample_domain=sd, **params)

    def predict(self, X, *, sample_domain=None, allow_source=False):
        """Predict labels of target-domain rows.

        ``sample_domain`` and ``allow_source`` follow skada (its scorers pass
        them): by default every row is a target row; source rows (positive
        ids, with ``allow_source=True``) go through the adapter's source
        side (e.g. CORAL's re-colouring).
        """
        check_is_fitted(self, "pipeline_")
        return self.classes_[np.asarray(self._route("predict", X, sample_domain, allow_source), dtype=np.int64)]

    def predict_proba(self, X, *, sample_domain=None, allow_source=False):
        """Class probabilities of target-domain rows, columns in ``classes_`` order.

        ``sample_domain`` and ``allow_source``: as in :meth:`predict`.
        """
        return self._route("predict_proba", X, sample_domain, allow_source)

    def score(self, X, y, sample_weight=None, *, sample_domain=None, allow_source=False):
        """Accuracy on ``(X, y)``, rows taken as target rows unless ``sample_domain`` says otherwise.

        ``sample_weight`` is requested under metadata routing, for skada's
        :class:`~skada.metrics.ImportanceWeightedScorer`.
        """
        return _accuracy(self, X, y, sample_weight, sample_domain, allow_source)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        if self.extractor is not None:
            tags.input_tags.two_d_array = False
            tags.input_tags.string = True
        return tags


# ------------------------------------------------------------ deep: DANN
class _GradientReversal(torch.autograd.Function):
    """Identity forward; gradient times ``-lambda`` backward (Ganin & Lempitsky, 2015)."""

    @staticmethod
    def forward(ctx, x, lambd):
        ctx.lambd = lambd
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad.neg() * ctx.lambd, None


class _DANNHead(nn.Module):
    """Class head, plus (in training) a domain logit behind gradient reversal.

    In training mode the output is ``[class logits | domain logit]``, shape
    ``(n, n_classes + 1)``, so that skorch and the loss see one tensor; in
    eval mode it is the class logits alone (predict is unchanged).
    """

    def __init__(self, classifier, domain_classifier):
        super().__init__()
        self.classifier = classifier
        self.domain_classifier = domain_classifier
        self.grl_lambda = 0.0

    def forward(self, features):
        logits = self.classifier(features)
        if not self.training:
            return logits
        domain = self.domain_classifier(_GradientReversal.apply(features, float(self.grl_lambda)))
        return torch.cat([logits, domain.reshape(-1, 1).to(logits.dtype)], dim=1)


class _DANNLoss(nn.Module):
    """Cross-entropy on labelled rows + domain BCE balanced over the two domains.

    Target rows carry the label -100 (ignored by the class loss); they are
    the domain-1 rows of the domain loss.
    """

    def __init__(self, n_classes, weight=None):
        super().__init__()
        self.n_classes = n_classes
        self.register_buffer("weight", weight)
        self.last_domain_loss = float("nan")
        self.last_domain_accuracy = float("nan")

    def forward(self, y_pred, y_true):
        import torch.nn.functional as F

        C = self.n_classes
        y_true = y_true.long()
        labeled = y_true >= 0
        logits = y_pred[:, :C]
        if labeled.any():
            loss = F.cross_entropy(logits[labeled], y_true[labeled], weight=self.weight)
        else:
            loss = logits.sum() * 0.0
        if y_pred.shape[1] == C + 1:
            d = y_pred[:, C]
            is_target = (~labeled).to(d.dtype)
            per_row = F.binary_cross_entropy_with_logits(d, is_target, reduction="none")
            parts = [per_row[m].mean() for m in (labeled, ~labeled) if m.any()]
            domain_loss = torch.stack(parts).mean()
            self.last_domain_loss = float(domain_loss.detach())
            self.last_domain_accuracy = float(((d > 0) == (~labeled)).float().mean())
            loss = loss + domain_loss
        return loss


class _DANNLossFactory:
    """Picklable criterion factory (skorch instantiates the criterion)."""

    def __init__(self, n_classes, weight=None):
        self.n_classes = n_classes
        self.weight = weight

    def __call__(self):
        return _DANNLoss(self.n_classes, self.weight)


class GradientReversalSchedule(Callback):
    """Set the gradient-reversal strength before every training batch.

    ``"ganin"``: ``lambda_p = weight * (2 / (1 + exp(-gamma p)) - 1)`` with
    ``p`` the fraction of training done (Ganin et al., 2016), so the
    adversarial signal starts at 0 while the domain classifier is still
    random. ``"constant"``: ``weight`` throughout. Records ``grl_lambda``,
    ``domain_loss`` and ``domain_acc`` (the domain classifier's accuracy:
    near 0.5 means the features no longer tell the domains apart) in the
    batch history.

    Parameters
    ----------
    weight : float, default=1.0
    schedule : {"ganin", "constant"}, default="ganin"
    total_steps : int or None, default=None
        Training batches of the whole fit. None: counted at
        ``on_train_begin`` from the data ``fit`` was given, as
        :class:`~sktransfer.callbacks.WarmupCosine` does.
    gamma : float, default=10.0
    """

    def __init__(self, weight=1.0, schedule="ganin", total_steps=None, gamma=10.0):
        self.weight = weight
        self.schedule = schedule
        self.total_steps = total_steps
        self.gamma = gamma

    def _lambda(self, net):
        if self.schedule == "constant":
            return float(self.weight)
        p = min(1.0, _n_train_batches_done(net) / max(1, self.total_steps_))
        return float(self.weight) * (2.0 / (1.0 + math.exp(-self.gamma * p)) - 1.0)

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        self.total_steps_ = planned_train_steps(net, X, y) if self.total_steps is None else int(self.total_steps)

    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        if training:
            _dann_head(net).grl_lambda = self._lambda(net)

    def on_batch_end(self, net, batch=None, training=False, **kwargs):
        if training:
            net.history.record_batch("grl_lambda", _dann_head(net).grl_lambda)
            crit = net.criterion_
            net.history.record_batch("domain_loss", getattr(crit, "last_domain_loss", float("nan")))
            net.history.record_batch("domain_acc", getattr(crit, "last_domain_accuracy", float("nan")))


def _dann_head(net):
    m = net.module_
    m = m.get_base_model() if hasattr(m, "get_base_model") else m
    return m.task_head


def _domain_classifier(in_features, hidden):
    # Ganin et al.'s discriminator: two hidden ReLU layers, one logit.
    return nn.Sequential(
        nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1)
    )


class DANNClassifier(_ClassifierOutputs, ClassifierMixin, _FineTunedBase):
    """Domain-adversarial fine-tuning (DANN) of a pretrained backbone.

    A fine-tuned classifier (:class:`~sktransfer.FineTunedClassifier`'s
    machinery: skorch loop, warm-up + cosine schedule, freezing strategies,
    discriminative learning rates) with a second head: a domain classifier
    behind a gradient-reversal layer. The class head learns from the
    labelled source rows; the domain head learns to tell source from
    target; the reversed gradient pushes the backbone towards features that
    the domain head can't separate, so that the class head carries over to
    the target domain (Ganin et al., 2016).

    Training batches mix source and target rows at random (in proportion to
    their counts); the domain loss is averaged per domain so that neither
    dominates. The history records ``grl_lambda``, ``domain_loss`` and
    ``domain_acc`` per batch.

    Parameters
    ----------
    backbone : str, default="sentence-transformers/all-MiniLM-L6-v2"
    domain_weight : float, default=1.0
        Largest gradient-reversal strength (``lambda``).
    domain_schedule : {"ganin", "constant"}, default="ganin"
        ``"ganin"`` ramps ``lambda`` from 0 to ``domain_weight`` with
        ``2 / (1 + exp(-10 p)) - 1``.
    domain_hidden : int, default=256
        Width of the domain classifier's two hidden layers.
    strategy : {"partial", "full", "progressive"}, default="full"
        As in FineTunedClassifier; ``"linear_probe"`` is refused (a frozen
        backbone can't adapt).
    freeze_bn_stats : bool, default=True
        BatchNorm layers keep their pretrained running statistics. With
        ``False`` they update them on the mixed source and target batches
        (as in AdaBN); on the shifted-image benchmark that put DANN below no
        adaptation on every seed, and freezing them was the one change
        that put it above (``benchmarks/RESULTS.md``, "Choosing a DANN
        recipe"). The defaults of ``freeze_bn_stats``, ``head_init``,
        ``lr`` and ``backbone_lr_ratio`` are that benchmark's recipe,
        chosen leave-one-target-out among five.
    head_init : {"auto", "random", "probe"}, default="auto"
        ``"auto"``: ``"probe"`` for a linear head, ``"random"`` for an MLP
        head. ``"probe"`` starts the class head from the linear probe (LP-FT, as
        in FineTunedClassifier): a ``LogisticRegression`` fitted on the
        frozen features of the labelled source rows that train sets the
        linear class head before training. The domain classifier starts
        random. Needs ``head="linear"``.
    lr : float or "auto", default=3e-3
        Learning rate of the heads (class and domain). ``"auto"`` chooses
        it with a learning-rate range test on all training rows, source
        and target, on the DANN loss (the gradient reversal off, as at the
        start of the ``"ganin"`` schedule); see
        :class:`~sktransfer.FineTunedClassifier`.
    backbone_lr_ratio : float, default=0.3
        The backbone's rate as a share of ``lr``.
    num_workers : int, default=0
        Worker processes that prepare the training batches of source and
        target rows (decoded, tokenized) while the model trains, as in
        :class:`~sktransfer.FineTunedClassifier`: batches are prepared as
        they are read, whatever the value; the model is the same for every
        value.
    accelerator : accelerate.Accelerator or None, default=None
        Train through Hugging Face accelerate: mixed precision and several
        GPUs of one machine (``accelerate launch``), as in
        :class:`~sktransfer.FineTunedClassifier`; ``device`` is then left
        to the accelerator (``accelerator.device``). None: as without it.
        Unverified on GPUs in this project's CI (verified on the CPU): see
        ``docs/scaling.md``.
    **others
        Every other parameter is FineTunedClassifier's.

    Attributes
    ----------
    classes_ : ndarray
    net_ : skorch.NeuralNet
    history_ : skorch.History
    n_target_ : int
        Unlabelled target rows used in training.
    lr_ : float
        The learning rate trained at: ``lr``, or the one ``lr="auto"`` chose.
    lr_finder_ : LRFinderResult or None
        The range test of ``lr="auto"`` (None with a numeric ``lr``).

    See Also
    --------
    EmbeddingDAClassifier : cheap alignment of frozen embeddings.

    References
    ----------
    Y. Ganin, E. Ustinova, H. Ajakan, P. Germain, H. Larochelle, F.
    Laviolette, M. Marchand, V. Lempitsky. "Domain-Adversarial Training of
    Neural Networks", JMLR 2016.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> from sktransfer.adaptation import DANNClassifier
    >>> d = load_digits()
    >>> X = (d.images[:64] * 16).clip(0, 255).astype(np.uint8)
    >>> clf = DANNClassifier("timm/tf_efficientnet_lite0", image_size=32, max_epochs=1,
    ...                      random_state=0).fit(X, d.target[:64], X_target=255 - X)
    >>> clf.predict(255 - X[:2]).shape
    (2,)
    """

    __metadata_request__fit = _DA_METADATA_REQUESTS["__metadata_request__fit"]
    __metadata_request__predict = _DA_METADATA_REQUESTS["__metadata_request__predict"]
    __metadata_request__predict_proba = _DA_METADATA_REQUESTS["__metadata_request__predict_proba"]
    __metadata_request__score = _DA_METADATA_REQUESTS["__metadata_request__score"]

    def __init__(
        self,
        backbone="sentence-transformers/all-MiniLM-L6-v2",
        *,
        domain_weight=1.0,
        domain_schedule="ganin",
        domain_hidden=256,
        strategy="full",
        unfreeze_last=2,
        unfreeze_every=1,
        head="linear",
        head_hidden=256,
        head_dropout=0.1,
        head_init="auto",
        lr=3e-3,
        backbone_lr_ratio=0.3,
        layer_decay=None,
        warmup=0.1,
        weight_decay=0.01,
        grad_clip=1.0,
        l2sp=0.0,
        wise_alpha=1.0,
        freeze_bn_stats=True,
        max_epochs=5,
        batch_size=32,
        validation_fraction=0.0,
        early_stopping=None,
        checkpoint_dir=None,
        augment=True,
        image_size=None,
        max_length=None,
        pooling="mean",
        bf16=True,
        device="auto",
        num_workers=0,
        random_state=None,
        verbose=0,
        callbacks=None,
        class_weight=None,
        accelerator=None,
    ):
        super().__init__(
            backbone,
            strategy=strategy,
            unfreeze_last=unfreeze_last,
            unfreeze_every=unfreeze_every,
            head=head,
            head_hidden=head_hidden,
            head_dropout=head_dropout,
            head_init=head_init,
            lr=lr,
            backbone_lr_ratio=backbone_lr_ratio,
            layer_decay=layer_decay,
            warmup=warmup,
            weight_decay=weight_decay,
            grad_clip=grad_clip,
            l2sp=l2sp,
            wise_alpha=wise_alpha,
            freeze_bn_stats=freeze_bn_stats,
            max_epochs=max_epochs,
            batch_size=batch_size,
            validation_fraction=validation_fraction,
            early_stopping=early_stopping,
            checkpoint_dir=checkpoint_dir,
            augment=augment,
            image_size=image_size,
            max_length=max_length,
            pooling=pooling,
            bf16=bf16,
            device=device,
            num_workers=num_workers,
            random_state=random_state,
            verbose=verbose,
            callbacks=callbacks,
            accelerator=accelerator,
        )
        self.domain_weight = domain_weight
        self.domain_schedule = domain_schedule
        self.domain_hidden = domain_hidden
        self.class_weight = class_weight

    # ---------------------------------------------------------- validation
    _parameter_constraints: dict = {
        **_FineTunedBase._parameter_constraints,
        "domain_weight": [Interval(Real, 0, None, closed="left")],
        "domain_schedule": [StrOptions({"ganin", "constant"})],
        "domain_hidden": [Interval(Integral, 1, None, closed="left")],
        "class_weight": _CLASS_WEIGHT,
    }

    def _check_params(self):
        super()._check_params()
        # Explicit rather than a narrower StrOptions: the message says what to use instead.
        if self.strategy == "linear_probe":
            raise ValueError(
                "DANNClassifier adapts the backbone's features: strategy='linear_probe' freezes them. "
                "Use 'full', 'partial' or 'progressive' (or EmbeddingDAClassifier for frozen features)."
            )

    # --------------------------------------------------------------- hooks
    def _build_module(self, shared, n_out):
        module = super()._build_module(shared, n_out)
        module.task_head = _DANNHead(module.task_head, _domain_classifier(shared.embedding_dim, self.domain_hidden))
        return module

    def _init_head(self, module, data, y_enc, stratify, seed):
        # The class head only (the domain classifier starts random); the
        # probe sees the labelled source rows that train (target rows carry
        # the code -100 and are left out).
        from ._head_init import init_head_for

        init_head_for(self, module, data, y_enc, stratify, seed, heads=[module.task_head.classifier])

    def _method_callbacks(self, module, shared):
        cbs = list(super()._method_callbacks(module, shared))
        # The ramp's length is counted from skorch's loader at on_train_begin.
        cbs.append(("grl", GradientReversalSchedule(self.domain_weight, self.domain_schedule)))
        return cbs

    def _criterion(self, y_enc):
        y_enc = np.asarray(y_enc)
        base = super()._criterion(y_enc[y_enc >= 0])()
        weight = getattr(base, "weight", None)
        return _DANNLossFactory(len(self.classes_), weight)

    # ----------------------------------------------------- skada's calls
    # The adapted network treats every row alike: sample_domain is checked
    # (skada's convention, as in EmbeddingDAClassifier) and otherwise unused.
    def predict(self, X, *, sample_domain=None, allow_source=False):
        """Predict labels; ``sample_domain``/``allow_source`` as in skada (checked, not needed)."""
        _predict_domains(sample_domain, _n_rows(X), allow_source)
        return super().predict(X)

    def predict_proba(self, X, *, sample_domain=None, allow_source=False):
        """Class probabilities; ``sample_domain``/``allow_source`` as in skada (checked, not needed)."""
        _predict_domains(sample_domain, _n_rows(X), allow_source)
        return super().predict_proba(X)

    def score(self, X, y, sample_weight=None, *, sample_domain=None, allow_source=False):
        """Accuracy; ``sample_weight`` is requested under metadata routing (importance-weighted scoring)."""
        return _accuracy(self, X, y, sample_weight, sample_domain, allow_source)

    # ----------------------------------------------------------------- fit
    def fit(self, X, y, *, X_target=None, sample_domain=None):
        """Fine-tune on labelled source rows and unlabelled target rows.

        Parameters
        ----------
        X : list, array, Series or one-column DataFrame
            Source inputs (with ``X_target``), or inputs of both domains
            (with ``sample_domain``).
        y : array-like of shape (n_samples,)
            Labels of the rows of ``X`` (ignored for target rows).
        X_target : inputs, default=None
            Unlabelled target inputs.
        sample_domain : array-like of int, default=None
            skada's convention: positive ids for source rows, negative for
            target rows.

        Returns
        -------
        self
        """
        self._check_params()
        X_s, y_s, X_t, _, _ = _split_domains(X, y, X_target, sample_domain)
        classes, y_enc = _check_source_labels(y_s, _n_rows(X_s))
        self.classes_ = classes
        n_t = _n_rows(X_t)
        X_all = _concat(X_s, X_t)
        y_all = np.concatenate([y_enc, np.full(n_t, -100, dtype=np.int64)])
        self.n_target_ = n_t
        return self._fit(X_all, y_all, len(classes), True)


# ------------------------------------- model selection without target labels
# Names → skada.metrics classes. Each scores a fitted DA estimator on a
# validation fold of source rows (labelled) and target rows (labels masked):
# no target label is read.
UNSUPERVISED_SCORERS = {
    "importance_weighted": "ImportanceWeightedScorer",
    "prediction_entropy": "PredictionEntropyScorer",
    "dev": "DeepEmbeddedValidation",
    "snd": "SoftNeighborhoodDensity",
    "circular": "CircularValidation",
}


def _dev_scorer_class(skada):
    class _DeepEmbeddedValidation(skada.metrics.DeepEmbeddedValidation):
        """skada's DEV, also for :class:`EmbeddingDAClassifier`.

        skada's DEV reads features from a skada pipeline (or a skada deep
        model); an EmbeddingDAClassifier holds its fitted skada pipeline in
        ``pipeline_``: DEV is computed on it, with the inputs embedded and the
        source labels encoded as it was fitted (DEV indexes classes by label).
        """

        def _score(self, method_caller, estimator, X, y, sample_domain=None, **kwargs):
            if isinstance(estimator, EmbeddingDAClassifier):
                check_is_fitted(estimator, "pipeline_")
                Z = estimator._embed(X, "X")
                sd = np.asarray(sample_domain) if sample_domain is not None else None
                y = y if isinstance(y, np.ndarray) else np.asarray(y, dtype=object)  # each label's type kept
                if sd is None or len(sd) != len(Z):
                    raise ValueError("DeepEmbeddedValidation needs sample_domain, one id per row of X.")
                src = sd > 0
                y_enc = np.full(len(Z), _MASKED, dtype=np.int64)
                _, y_enc[src] = encode_known_labels(y[src], estimator.classes_, name="the source labels of the scored fold")
                sd = np.where(sd < 0, estimator.target_domain_, sd)
                with _routing():
                    return super()._score(method_caller, estimator.pipeline_, Z, y_enc, sd, **kwargs)
            with _routing():
                return super()._score(method_caller, estimator, X, y, sample_domain, **kwargs)

    return _DeepEmbeddedValidation


def unsupervised_scorer(name, **kwargs):
    """A skada scorer that ranks domain-adaptation settings without target labels.

    A convenience over :mod:`skada.metrics`: builds the scorer (skada's
    scorers request ``sample_domain``, which needs metadata routing on at
    construction; this builds them inside a
    ``config_context(enable_metadata_routing=True)`` and leaves the global
    setting alone). Use it as ``scoring=`` of a search, with a skada splitter
    and ``sample_domain`` passed to the search's ``fit`` under metadata
    routing. Each scorer reads source labels and unlabelled target rows
    only.

    Parameters
    ----------
    name : {"importance_weighted", "prediction_entropy", "dev", "snd", "circular"}
        ``"importance_weighted"``: source accuracy weighted by the target /
        source density ratio (Sugiyama et al., 2007; skada's
        ``ImportanceWeightedScorer``, kernel density by default).
        ``"prediction_entropy"``: minus the mean entropy of the target
        predictions (Morerio et al., 2018). ``"dev"``: deep embedded
        validation (You et al., 2019), an importance-weighted source loss in
        the adapted feature space, with a control variate.
        ``"snd"``: soft neighbourhood density of the target predictions
        (Saito et al., 2021). ``"circular"``: refit on the target rows with
        the predicted labels, score back on the source (Bruzzone &
        Marconcini, 2010); costs one extra fit per fold.
    **kwargs
        Passed to the skada scorer (e.g. ``weight_estimator=`` for
        ``"importance_weighted"``, ``random_state=`` for ``"dev"``, ``T=``
        for ``"snd"``).

    Returns
    -------
    scorer : skada scorer
        Greater is better (loss-like scores are negated by skada).

    Notes
    -----
    skada's scorers check their input with ``check_array``: ``X`` must be
    numeric (embeddings, images as arrays), not raw text. For text, embed
    once with :class:`~sktransfer.PretrainedFeatureExtractor` and search
    over ``EmbeddingDAClassifier(extractor=None)`` on the embeddings (every
    candidate then shares them). ``"dev"`` needs features: for
    :class:`EmbeddingDAClassifier` it uses the fitted skada pipeline; for
    :class:`DANNClassifier` skada's DEV does not apply (it looks for a skada
    deep model's ``layer_name``).

    Examples
    --------
    >>> import numpy as np, sklearn
    >>> from sklearn.model_selection import GridSearchCV
    >>> from sktransfer.adaptation import EmbeddingDAClassifier, unsupervised_scorer
    >>> from skada.model_selection import SourceTargetShuffleSplit
    >>> rng = np.random.RandomState(0)
    >>> y = rng.randint(0, 2, 200)
    >>> X = np.vstack([rng.randn(100, 4) + 2 * y[:100, None], 3 * (rng.randn(100, 4) + 2 * y[100:, None]) + 4])
    >>> sd = np.r_[np.ones(100, int), np.full(100, -2)]
    >>> y_masked = np.where(sd > 0, y, -1)             # no target label is given
    >>> with sklearn.config_context(enable_metadata_routing=True):
    ...     search = GridSearchCV(EmbeddingDAClassifier(), {"adapter": [None, "coral"]},
    ...                           scoring=unsupervised_scorer("prediction_entropy"),
    ...                           cv=SourceTargetShuffleSplit(n_splits=2, random_state=0))
    ...     _ = search.fit(X, y_masked, sample_domain=sd)
    >>> search.best_params_["adapter"] in (None, "coral")
    True
    """
    if name not in UNSUPERVISED_SCORERS:
        raise ValueError(f"Unknown scorer {name!r}; use one of {sorted(UNSUPERVISED_SCORERS)}.")
    skada = _import_skada()
    with _routing():
        if name == "dev":
            return _dev_scorer_class(skada)(**kwargs)
        return getattr(skada.metrics, UNSUPERVISED_SCORERS[name])(**kwargs)

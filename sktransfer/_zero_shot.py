"""`ZeroShotClassifier`: classify by similarity to the label names, no training.

Also holds the label-prompt helpers that :class:`~sktransfer.FewShotClassifier`
uses to start from the label names (``init_from_labels=True``).
"""

import os
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import device as _TorchDevice, nn

from ._feature_extractor import PretrainedFeatureExtractor
from ._inputs import as_rows
from ._utils import resolve_device
from ._validation import _WHY_VERBOSE, check_backbone_and_device, check_labels, check_params, renamed_param
from .backbones import load_backbone

# Softmax temperature for sentence encoders, whose cosine similarities
# between a text and different label prompts differ by a few hundredths.
# CLIP models carry their own (learned) temperature.
_TEXT_TEMPERATURE = 0.05


# ----------------------------------------------------------------- helpers
def check_templates(template):
    """``template`` (a str or a list of str, each with ``{}``) → list of str."""
    templates = [template] if isinstance(template, str) else template
    if isinstance(templates, (bytes, dict)) or not hasattr(templates, "__iter__"):
        raise ValueError(f"template must be a str or a list of str containing '{{}}', got {template!r}.")
    templates = list(templates)
    if not templates:
        raise ValueError("template is an empty list: give at least one template such as 'This is about {}.'.")
    for i, t in enumerate(templates):
        if not isinstance(t, str):
            raise ValueError(f"template[{i}] is a {type(t).__name__} ({t!r:.40}), not a str.")
        if "{}" not in t:
            raise ValueError(
                f"template[{i}] {t!r} has no '{{}}' placeholder for the label, e.g. 'This article is about {{}}.'."
            )
    return templates


def label_texts(classes, label_descriptions=None):
    """The text standing for each class: its description, else its name.

    Raises on non-text labels without a description, on empty texts, and on
    two classes whose texts coincide (ignoring case and surrounding spaces):
    such classes can't be told apart by their names.
    """
    descriptions = {} if label_descriptions is None else label_descriptions
    if not isinstance(descriptions, dict):
        raise ValueError(
            f"label_descriptions must be None or a dict mapping labels to descriptions, got {type(descriptions).__name__}."
        )
    known = set(np.asarray(classes).tolist())
    unknown = [k for k in descriptions if k not in known]
    if unknown:
        raise ValueError(
            f"label_descriptions names labels that are not classes: {unknown[:5]}. Classes: {sorted(known, key=str)[:20]}."
        )
    texts = []
    for c in np.asarray(classes).tolist():
        text = descriptions.get(c, c)
        source = "label_descriptions" if c in descriptions else "label"
        if isinstance(text, np.str_):
            text = str(text)
        if not isinstance(text, str):
            raise ValueError(
                f"Class {c!r} ({type(c).__name__}) is not text: label prompts need a name for each class. "
                "Use string labels, or map each label to its name with label_descriptions={label: 'name', ...}."
            )
        if not text.strip():
            raise ValueError(f"The {source} of class {c!r} is empty: every class needs a non-empty name.")
        texts.append(text.strip())
    seen = {}
    for c, t in zip(np.asarray(classes).tolist(), texts):
        key = " ".join(t.lower().split())
        if key in seen:
            raise ValueError(
                f"Classes {seen[key]!r} and {c!r} have the same name {t!r} (ignoring case and spaces): "
                "zero-shot prompts could not tell them apart. Rename one or give label_descriptions."
            )
        seen[key] = c
    return texts


def fill_templates(texts, templates):
    """One prompt per (class, template): ``prompts[k]`` lists class k's prompts."""
    return [[t.replace("{}", text) for t in templates] for text in texts]


def _l2_normalize(a):
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


# --------------------------------------------------------------- estimator
class ZeroShotClassifier(ClassifierMixin, BaseEstimator):
    """Classify texts or images by their similarity to prompts made from the labels.

    Nothing is trained. ``fit`` takes the candidate labels from ``y`` and
    embeds one prompt per label and template (``"This article is about
    {}."`` → ``"This article is about sport."``); the prompts of a label
    are averaged into one unit vector (prompt ensembling).
    ``predict_proba`` is the softmax of the cosine similarities between an
    input and the labels, divided by ``temperature``.

    Text inputs work with any sentence encoder :func:`~sktransfer.load_backbone`
    accepts. Images need a model with a text tower in the same space: CLIP
    through open_clip (``"open_clip/ViT-B-32"``, or a built open_clip model).

    Parameters
    ----------
    backbone : str or torch.nn.Module, default="sentence-transformers/all-MiniLM-L6-v2"
        A sentence encoder (``"sentence-transformers/<name>"``,
        ``"hf/<org>/<name>"``, a local directory, a ``SentenceTransformer``)
        for text, or an open_clip model (``"open_clip/<arch>"``,
        ``"open_clip/<arch>:<pretrained tag>"``,
        ``"open_clip/hf-hub:<org>/<repo>"``, or the built module) for images.
    template : str or list of str, default="{}"
        Prompt(s) with a ``{}`` placeholder for the label name. Several
        templates are averaged per label.
    label_descriptions : dict or None, default=None
        Text used in place of a label's name (``{"tech": "technology and
        gadgets"}``). Needed for labels that aren't text (``{0: "sport"}``).
    temperature : float or None, default=None
        Softmax temperature. None: the model's learned one for CLIP
        (``1 / exp(logit_scale)``, 0.01 for OpenAI's), 0.05 for sentence
        encoders.
    batch_size : int or None, default=None
        Inputs per forward pass (None: the extractor's measured default).
    max_length : int or None, default=None
        Token limit for text inputs (None: the model's).
    pooling : {"mean", "cls"}, default="mean"
        Token pooling for ``hf/`` encoders.
    device : str, default="auto"
    cache : None, True or str, default=None
        Embedding cache of the inputs, as in
        :class:`~sktransfer.PretrainedFeatureExtractor`.
    verbose : bool, int or "auto", default="auto"
        Progress bar while embedding inputs, as in
        :class:`~sktransfer.PretrainedFeatureExtractor`.
    progress : bool or "auto", default="deprecated"
        Deprecated old name of ``verbose`` (since 0.2, removed in 0.4).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The candidate labels, sorted (the order of ``predict_proba``'s columns).
    label_embeddings_ : ndarray of shape (n_classes, embedding_dim)
        Unit vector of each label (mean of its normalised prompt embeddings).
    prompts_ : list of list of str
        The prompts embedded for each class.
    temperature_ : float
        The temperature in use.
    modality_ : {"text", "image"}
        What the backbone classifies.
    extractor_ : PretrainedFeatureExtractor
        Embeds the inputs (L2-normalised).

    See Also
    --------
    sktransfer.FewShotClassifier : a few labeled examples per class, and
        ``init_from_labels=True`` to start from these label prompts.

    Examples
    --------
    >>> from sktransfer import ZeroShotClassifier
    >>> clf = ZeroShotClassifier("sentence-transformers/all-MiniLM-L6-v2",
    ...                          template="This article is about {}.")
    >>> clf = clf.fit(None, ["business", "sport", "technology"])
    >>> clf.predict(["The striker scored twice in the cup final.",
    ...              "Shares fell after the bank's profit warning."]).tolist()
    ['sport', 'business']
    """

    _parameter_constraints: dict = {
        "backbone": [str, nn.Module],
        "template": [str, "array-like"],
        "label_descriptions": [dict, None],
        "temperature": [Interval(Real, 0, None, closed="neither"), None],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "max_length": [Interval(Integral, 2, None, closed="left"), None],
        "pooling": [StrOptions({"mean", "cls"})],
        "device": [str, _TorchDevice, None],
        "cache": ["boolean", str, bytes, os.PathLike, None],
        "verbose": ["boolean", Interval(Integral, 0, None, closed="left"), StrOptions({"auto"})],
        "progress": ["boolean", StrOptions({"auto", "deprecated"})],
    }

    def __init__(
        self,
        backbone="sentence-transformers/all-MiniLM-L6-v2",
        *,
        template="{}",
        label_descriptions=None,
        temperature=None,
        batch_size=None,
        max_length=None,
        pooling="mean",
        device="auto",
        cache=None,
        verbose="auto",
        progress="deprecated",
    ):
        self.backbone = backbone
        self.template = template
        self.label_descriptions = label_descriptions
        self.temperature = temperature
        self.batch_size = batch_size
        self.max_length = max_length
        self.pooling = pooling
        self.device = device
        self.cache = cache
        self.verbose = verbose
        self.progress = progress

    def _candidate_labels(self, X, y):
        if y is None:
            raise ValueError("y is None: pass the candidate labels, e.g. fit(None, ['sport', 'business']).")
        y = check_labels(y, min_classes=0, task="zero-shot classification")
        if X is None:
            # y lists the candidate labels themselves: each once.
            positions = {}
            for i, v in enumerate(y.tolist()):
                if v in positions:
                    raise ValueError(
                        f"Label {v!r} appears twice in y (positions {positions[v]} and {i}). With X=None, "
                        "y lists the candidate labels, each once."
                    )
                positions[v] = i
        else:
            n_x = len(as_rows(X))
            if n_x != len(y):
                raise ValueError(f"X and y have different lengths: {n_x} inputs but {len(y)} labels.")
        classes = np.unique(y)
        if len(classes) < 2:
            what = f"a single label ({classes.tolist()[0]!r})" if len(classes) else "no labels"
            raise ValueError(f"y has {what}; zero-shot classification needs at least two candidate labels.")
        return classes

    def fit(self, X, y):
        """Embed the prompts of the candidate labels in ``y``.

        Parameters
        ----------
        X : None, or list, array, Series or one-column DataFrame
            Not used for learning. None is allowed; given inputs are checked
            against the backbone.
        y : array-like of shape (n_labels,) or (n_samples,)
            With ``X=None``, the candidate labels, each once. With ``X``,
            one label per input; the candidates are its distinct values.

        Returns
        -------
        self : ZeroShotClassifier
        """
        check_params(self)
        verbose, _ = renamed_param(self, "progress", "verbose", why=_WHY_VERBOSE, new_default="auto")
        check_backbone_and_device(self.get_params(deep=False))  # before the backbone loads
        templates = check_templates(self.template)
        classes = self._candidate_labels(X, y)
        texts = label_texts(classes, self.label_descriptions)
        prompts = fill_templates(texts, templates)

        device = resolve_device(self.device)
        bb = load_backbone(self.backbone, device=device, pooling=self.pooling)
        self.backbone_source_ = bb.source
        # The prompts in the inputs' space (a sentence encoder, CLIP's text
        # tower); a model that can't embed them refuses here, naming why.
        emb = _l2_normalize(bb.embed_prompts([p for ps in prompts for p in ps], self.max_length).numpy())
        ext = PretrainedFeatureExtractor(
            self.backbone,
            pooling=self.pooling,
            normalize=True,
            batch_size=self.batch_size,
            max_length=self.max_length,
            device=self.device,
            cache=self.cache,
            verbose=verbose,
        )
        # The extractor checks inputs at fit: one input of the model's kind
        # stands in for an absent X.
        ext.fit(bb.example_inputs() if X is None else X)
        per_class = emb.reshape(len(classes), len(templates), -1).mean(axis=1)

        self.classes_ = classes
        self.prompts_ = prompts
        self.label_embeddings_ = _l2_normalize(per_class).astype(np.float32)
        self.modality_ = bb.modality
        temperature = self.temperature
        if temperature is None:
            temperature = 1.0 / bb.logit_scale if bb.logit_scale else _TEXT_TEMPERATURE
        self.temperature_ = float(temperature)
        self.extractor_ = ext
        return self

    def decision_function(self, X):
        """Cosine similarities to each label divided by the temperature.

        Parameters
        ----------
        X : list, array, Series or one-column DataFrame

        Returns
        -------
        scores : ndarray of shape (n_samples, n_classes)
        """
        check_is_fitted(self, "label_embeddings_")
        Z = self.extractor_.transform(X)
        return (Z @ self.label_embeddings_.T) / self.temperature_

    def predict_proba(self, X):
        """Softmax of :meth:`decision_function`, columns in ``classes_`` order."""
        s = self.decision_function(X)
        s = s - s.max(axis=1, keepdims=True)
        p = np.exp(s)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X):
        """The label whose prompts are most similar to each input."""
        scores = self.decision_function(X)
        return self.classes_[np.argmax(scores, axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.input_tags.categorical = False
        tags.requires_fit = True
        tags.non_deterministic = False
        return tags

"""`FewShotClassifier`: SetFit-style contrastive tuning, then any sklearn head.

Two stages, as in SetFit (Tunstall et al., 2022):

1. The backbone ("body") is tuned contrastively on pairs of labeled
   examples: same class → cosine similarity 1, different classes → 0
   (sentence-transformers' ``CosineSimilarityLoss``). Pairs are drawn on the
   fly by a seeded generator, class-balanced and half positive, so memory
   does not grow with the number of possible pairs (O(n²)).
2. A clone of ``head`` (any scikit-learn classifier) is fitted on the tuned
   embeddings.

Training runs on skorch (the loop, callbacks, history); the loss is
sentence-transformers'. The loss works on pooled features of any modality,
so image backbones (timm, torchvision, CLIP's image tower) train the same
way.
"""

import os
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, clone, is_classifier
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted
from torch import nn

from . import _persistence
from ._inputs import as_rows
from ._trainer import check_accelerator_device, fit_device
from ._training import INFERENCE_CONSTRAINTS, _forget_compiled, _inference_settings, check_inference_backend, compiled_forward
from ._training import compiled_runner, export_model
from ._transfer_module import TransferModule, export_spec, run_in_batches
from ._seeding import data_generator, fit_seed, isolated_torch_rng, seed_torch
from ._utils import resolve_device, trained_model_tags as _trained_model_tags
from ._validation import check_backbone_and_device, check_params, encode_known_labels, encode_labels, renamed_param
from ._zero_shot import check_templates, fill_templates, label_texts
from .backbones import load_backbone
from .backbones._base import trainable_copy
from .callbacks import WarmupCosine

# ------------------------------------------------------------ pair stream
class PairSampler:
    """Draw (i, j, similarity) pairs lazily from class labels.

    Written here rather than taken from SetFit (not a dependency), whose
    pair generation builds the whole list of pairs up front, and because
    sentence-transformers' trainer wants a materialised ``datasets.Dataset``.

    Even draws are positive pairs (two distinct examples of one class),
    odd draws negative pairs (examples of two different classes). Classes
    are picked uniformly, so a large class does not crowd out the others.
    Only the per-class index arrays are stored (O(n) memory); each call to
    :meth:`epoch` starts a generator seeded with ``(seed, epoch)``, so
    every epoch sees different pairs and a fit is repeatable.

    Parameters
    ----------
    y : ndarray of int, shape (n_samples,)
        Encoded labels 0..n_classes-1; every class needs two members.
    n_pairs : int
        Pairs per epoch.
    seed : int
    """

    def __init__(self, y, n_pairs, seed):
        y = np.asarray(y)
        self.members = [np.flatnonzero(y == k) for k in range(int(y.max()) + 1)]
        self.n_pairs = int(n_pairs)
        self.seed = int(seed)

    def epoch(self, epoch):
        rng = np.random.default_rng([self.seed, int(epoch)])
        members, n_classes = self.members, len(self.members)
        for k in range(self.n_pairs):
            if k % 2 == 0:
                m = members[rng.integers(n_classes)]
                a, b = rng.choice(len(m), size=2, replace=False)
                yield int(m[a]), int(m[b]), 1.0
            else:
                c1, c2 = rng.choice(n_classes, size=2, replace=False)
                m1, m2 = members[c1], members[c2]
                yield int(m1[rng.integers(len(m1))]), int(m2[rng.integers(len(m2))]), 0.0


class _PairDataset(torch.utils.data.IterableDataset):
    """One pass of :class:`PairSampler` per epoch, for a DataLoader."""

    def __init__(self, sampler):
        super().__init__()
        self.sampler = sampler
        self.n_epochs_seen = 0

    def __iter__(self):
        epoch = self.n_epochs_seen
        self.n_epochs_seen += 1
        return self.sampler.epoch(epoch)

    def __len__(self):
        return self.sampler.n_pairs


class _PairCollator:
    """A list of pairs → the batch skorch feeds to the module, and targets.

    Each distinct example of the batch is preprocessed and embedded once
    (with few examples, pairs share many), so the module's input holds the
    unique examples and the target holds, per pair, the positions of its two
    examples and its similarity. Texts are tokenised and images decoded here,
    batch by batch, never all at once.
    """

    def __init__(self, items, backbone, max_length=None, image_size=None):
        self.items = items
        self.backbone = backbone
        self.max_length = max_length
        self.image_size = image_size

    def __call__(self, pairs):
        arr = np.asarray(pairs, dtype=np.float64)
        ij = arr[:, :2].astype(np.int64)
        unique, pos = np.unique(ij, return_inverse=True)
        X = self.backbone.module_inputs(self.items, unique, self.max_length, self.image_size)
        y = torch.as_tensor(np.column_stack([pos.reshape(-1, 2), arr[:, 2]]), dtype=torch.float32)
        return X, y


class _PairCosineLoss(nn.Module):
    """sentence-transformers' ``CosineSimilarityLoss`` on embedded pairs.

    skorch hands the criterion the module's output (embeddings of the
    batch's distinct examples) and the target (pair positions and
    similarity); ``compute_loss_from_embeddings`` is the library's loss
    itself (MSE between cosine similarity and target), minus its own
    forward pass, which skorch's module does here.
    """

    def __init__(self):
        super().__init__()
        try:
            from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss
        except ImportError:  # older sentence-transformers layout
            from sentence_transformers.losses import CosineSimilarityLoss
        # The loss only needs a model for its own forward, which isn't used.
        self.loss = CosineSimilarityLoss(model=None)

    def forward(self, embeddings, target):
        a, b = target[:, 0].long(), target[:, 1].long()
        return self.loss.compute_loss_from_embeddings([embeddings[a], embeddings[b]], target[:, 2])


def _freeze_vocabulary(body, min_rows=1000):
    """Keep token-embedding tables (vocabularies) frozen.

    A few labeled texts use a few hundred of a vocabulary's ~30,000 rows,
    yet the table's gradient and AdamW update are dense: on a CPU they were
    about half the time of a small contrastive step (MiniLM: 11.7M of its
    22.7M weights). Position and type embeddings are small and still train.
    """
    for module in body.modules():
        if isinstance(module, nn.Embedding) and module.num_embeddings >= min_rows:
            module.weight.requires_grad_(False)


def _body_module(bb, body):
    """The module contrastive tuning trains and inference runs: ``body`` with the backbone's
    input normalisation and no head."""
    return TransferModule(body, nn.Identity(), bb.modality, bb.input_normalization(), False)


def _legacy_layout(meta):
    """A config.json written before 0.3 (classes and label_descriptions beside ``params``, not in
    ``fitted`` and ``params``) in today's layout, that of the other estimators' saves."""
    fitted = meta.get("fitted")
    if "classes" not in meta or not isinstance(fitted, dict) or "classes" in fitted:
        return meta
    params = {**meta["params"], "label_descriptions": meta.get("label_descriptions")}
    return {**meta, "params": params, "fitted": {**fitted, "classes": meta["classes"]}}


# -------------------------------------------------------------- estimator
# n_pairs="auto": SetFit's 20 pairs per example, at most 1,024 (64 steps of
# 16), chosen leave-one-task-out with lr=5e-5 on the evaluation suite's text
# tasks (benchmarks/RESULTS.md, "Defaults chosen on the suite"); the cap keeps
# a CPU fit's cost bounded whatever the rows.
AUTO_PAIRS_PER_EXAMPLE = 20
AUTO_MAX_PAIRS = 1024


def resolve_n_pairs(n_pairs, n_examples):
    """The pairs per epoch ``n_pairs`` means for ``n_examples`` training examples."""
    if isinstance(n_pairs, str):  # "auto"
        return min(AUTO_PAIRS_PER_EXAMPLE * int(n_examples), AUTO_MAX_PAIRS)
    return int(n_pairs)


def _default_head():
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=1000)


def _head_has(attr):
    def check(self):
        if hasattr(self, "estimator_"):
            return hasattr(self.estimator_, attr)
        given = self.estimator if isinstance(self.head, str) and self.head == "deprecated" else self.head
        return hasattr(given if given is not None else _default_head(), attr)

    return check


class FewShotClassifier(ClassifierMixin, BaseEstimator):
    """Few-shot classification: contrastive tuning of the backbone, then a sklearn head.

    The SetFit recipe. The backbone is first tuned so that examples of one
    class get similar embeddings and examples of different classes
    dissimilar ones (sentence-transformers' ``CosineSimilarityLoss`` on pairs
    with target 1 or 0); then a clone of ``head`` is fitted on the tuned
    embeddings. With 8 examples per class it usually beats a linear probe on
    frozen embeddings; see ``docs/few_shot.md`` for measured figures.

    Pairs are sampled lazily by a seeded generator (half positive,
    classes drawn uniformly), ``n_pairs`` per epoch: memory stays flat with
    10,000+ examples. :meth:`transform` returns the tuned embeddings, so the
    body can feed another head.

    Parameters
    ----------
    backbone : str or torch.nn.Module, default="sentence-transformers/all-MiniLM-L6-v2"
        Any name :func:`sktransfer.load_backbone` accepts. Image backbones
        (``"timm/<arch>"``, ``"torchvision/<arch>"``, ``"open_clip/<arch>"``)
        train the same way, on their pooled features.
    estimator : sklearn classifier or None, default=None
        The classifier fitted (a clone) on the tuned embeddings. None:
        ``LogisticRegression(max_iter=1000)``. Any classifier works
        (``XGBClassifier()``, ``SVC(probability=True)``...); it is trained on
        integer-coded classes and its outputs are mapped back to the labels.
        (Named ``head`` before 0.2: ``head`` is the torch head everywhere
        else in the package.)
    n_pairs : int or "auto", default="auto"
        Pairs drawn per epoch (half positive). Training time grows linearly
        with it. ``"auto"``: SetFit's 20 pairs per training example (the
        label prompts of ``init_from_labels`` count as examples), at most
        1,024 (64 steps of 16 pairs), so a fit's cost is bounded on a CPU; chosen with ``lr`` on the evaluation suite, leave one task out
        (figures: ``docs/few_shot.md`` and ``benchmarks/RESULTS.md``,
        "Defaults chosen on the suite"). On a GPU, 20-40 pairs per example
        without the cap (``n_pairs=20 * len(X)``) cost little more.
    max_epochs : int, default=1
        Passes of ``n_pairs`` pairs (each epoch draws new pairs).
    batch_size : int, default=16
        Pairs per optimisation step.
    lr : float, default=5e-5
        AdamW learning rate of the body (a warm-up then cosine decay).
        SetFit's 2e-5 gained less on the suite at the pairs above.
    warmup : float, default=0.1
        Fraction of the steps with a linear warm-up.
    weight_decay : float, default=0.01
    max_length : int or None, default=None
        Token limit for text (None: the model's). Longer texts are
        truncated, with one warning per fit.
    image_size : int or None, default=None
        Input size for images (None: the model's pretrained size).
    init_from_labels : bool, default=False
        Start from the label names, as :class:`ZeroShotClassifier` does:
        each class gets one extra example per template, the prompt made from
        its name (or description). These take part in the pairs and in the
        head's training, which helps most with 1-2 examples per class and
        allows a class with a single example. Text backbones only.
    template : str or list of str, default="{}"
        Prompts for ``init_from_labels`` (``"This article is about {}."``).
    label_descriptions : dict or None, default=None
        Text used in place of a label's name for ``init_from_labels``.
    pooling : {"mean", "cls"}, default="mean"
        Token pooling for ``hf/`` encoders.
    device : str, default="auto"
    random_state : int, RandomState or None, default=None
        Seeds the pair generator and torch: CPU runs are repeatable. The
        head keeps its own ``random_state``.
    head : sklearn classifier, deprecated
        The old name of ``estimator``; still works, with a
        ``FutureWarning``, until 0.4.
    verbose : int, default=0
        1 prints skorch's epoch table.
    inference_backend : {"torch", "onnx", "openvino"}, default="torch"
        What ``transform`` (and so ``predict``) runs: the tuned torch body,
        or the tuned body compiled for ONNX Runtime or OpenVINO on the CPU,
        as :meth:`export` writes it; the sklearn classifier stays in
        Python. Inference only (the classifier is fitted on the torch
        embeddings), as in :class:`FineTunedClassifier`: ``set_params`` on
        a fitted model takes effect at its next ``predict``.
    inference_quantize : {None, "int8"}, default=None
        int8 with a compiled ``inference_backend``; a calibrated model
        (images, OpenVINO) is calibrated on the rows given to ``fit``.
    accelerator : accelerate.Accelerator or None, default=None
        Tune the body through Hugging Face accelerate: mixed precision
        (the accelerator's ``mixed_precision``) and several GPUs of one
        machine (``accelerate launch``), as in
        :class:`~sktransfer.FineTunedClassifier`; ``device`` is then left
        to the accelerator (``accelerator.device``). None: as without it.
        Neither pickled nor saved. Unverified on GPUs in this project's CI
        (verified on the CPU): see ``docs/scaling.md``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels, in the order of ``predict_proba``'s columns.
    estimator_ : sklearn classifier
        The fitted classifier (trained on ``0..n_classes-1``); ``head_`` is
        its old name (deprecated).
    body_ : torch.nn.Module
        The tuned backbone (pooled embeddings; no head).
    history_ : skorch.History
        Training log of the contrastive stage (``train_loss`` per epoch).
    n_pairs_ : int
        Pairs drawn per epoch (``n_pairs="auto"`` resolved).
    n_label_examples_ : int
        Examples added from the label names (0 unless ``init_from_labels``).
    modality_ : {"text", "image"}
    embedding_dim_ : int

    See Also
    --------
    sktransfer.ZeroShotClassifier : no labeled examples at all.
    sktransfer.FineTunedClassifier : more data: end-to-end fine-tuning.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sktransfer import FewShotClassifier
    >>> texts = ["the striker scored twice", "a late goal won the cup",
    ...          "the coach praised his team", "shares fell sharply",
    ...          "the bank raised interest rates", "profits beat forecasts"]
    >>> y = ["sport"] * 3 + ["business"] * 3
    >>> clf = FewShotClassifier("sentence-transformers/all-MiniLM-L6-v2",
    ...                         estimator=LogisticRegression(), n_pairs=16,
    ...                         random_state=0).fit(texts, y)
    >>> clf.predict(["the goalkeeper saved a penalty"]).tolist()
    ['sport']
    >>> clf.transform(["the goalkeeper saved a penalty"]).shape
    (1, 384)
    """

    _parameter_constraints: dict = {
        "backbone": [str, nn.Module],
        "estimator": [HasMethods(["fit"]), None],
        "n_pairs": [Interval(Integral, 2, None, closed="left"), StrOptions({"auto"})],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "warmup": [Interval(Real, 0, 1, closed="both")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "max_length": [Interval(Integral, 2, None, closed="left"), None],
        "image_size": [Interval(Integral, 8, None, closed="left"), None],
        "init_from_labels": ["boolean"],
        "template": [str, "array-like"],
        "label_descriptions": [dict, None],
        "pooling": [StrOptions({"mean", "cls"})],
        "device": [str, torch.device, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "head": [StrOptions({"deprecated"}), HasMethods(["fit"])],
        **INFERENCE_CONSTRAINTS,
        "accelerator": [HasMethods(["prepare", "unwrap_model"]), None],
    }

    def __init__(
        self,
        backbone="sentence-transformers/all-MiniLM-L6-v2",
        *,
        estimator=None,
        n_pairs="auto",
        max_epochs=1,
        batch_size=16,
        lr=5e-5,
        warmup=0.1,
        weight_decay=0.01,
        max_length=None,
        image_size=None,
        init_from_labels=False,
        template="{}",
        label_descriptions=None,
        pooling="mean",
        device="auto",
        random_state=None,
        verbose=0,
        head="deprecated",
        inference_backend="torch",
        inference_quantize=None,
        accelerator=None,
    ):
        self.backbone = backbone
        self.estimator = estimator
        self.n_pairs = n_pairs
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.warmup = warmup
        self.weight_decay = weight_decay
        self.max_length = max_length
        self.image_size = image_size
        self.init_from_labels = init_from_labels
        self.template = template
        self.label_descriptions = label_descriptions
        self.pooling = pooling
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.head = head
        self.inference_backend = inference_backend
        self.inference_quantize = inference_quantize
        self.accelerator = accelerator

    # ------------------------------------------------------------ checks
    def _resolve_estimator(self):
        """``estimator``, or the deprecated ``head`` with a FutureWarning."""
        return renamed_param(self, "head", "estimator", why="head is the torch head in the other estimators")

    @property
    def head_(self):
        """Deprecated: the fitted classifier is ``estimator_``."""
        import warnings

        check_is_fitted(self, "estimator_")
        warnings.warn("head_ was renamed estimator_ in 0.2 and will be removed in 0.4.", FutureWarning, stacklevel=2)
        return self.estimator_

    def _check_params(self):
        """The declared constraints, then what they cannot say; returns the classifier to fit (or None)."""
        check_params(self)
        estimator, name = self._resolve_estimator()
        if estimator is not None and not is_classifier(estimator):
            raise ValueError(
                f"{name} must be a scikit-learn classifier (e.g. LogisticRegression()), got {estimator!r}."
            )
        check_backbone_and_device(self.get_params(deep=False))  # before the backbone loads
        check_accelerator_device(self.device, self.accelerator)
        check_inference_backend(self)
        return estimator

    @staticmethod
    def _check_class_sizes(y, classes, y_enc, n_extra_per_class):
        counts = np.bincount(y_enc, minlength=len(classes)) + n_extra_per_class
        single = np.flatnonzero(counts < 2)
        if not single.size:
            return
        where = ", ".join(f"{classes.tolist()[k]!r} (row {int(np.flatnonzero(y_enc == k)[0])})" for k in single[:5])
        more = f" and {single.size - 5} more" if single.size > 5 else ""
        lead = (
            f"y has {len(classes)} classes but only {len(y)} examples, so some class has a single example"
            if len(y) < 2 * len(classes)
            else f"{single.size} class(es) have a single example"
        )
        raise ValueError(
            f"{lead}: {where}{more}. Contrastive pairs need two examples of every class. Add examples, "
            "or set init_from_labels=True so that each label's name becomes one more example."
        )

    # --------------------------------------------------------------- fit
    def fit(self, X, y):
        """Tune the backbone on pairs of ``X``, then fit the head.

        Parameters
        ----------
        X : list, array, Series or one-column DataFrame
            Texts or images (paths, PIL images, arrays).
        y : array-like of shape (n_samples,)
            Class labels; every class needs two examples (one with
            ``init_from_labels=True``).

        Returns
        -------
        self : FewShotClassifier
        """
        estimator = self._check_params()
        y, classes, y_enc = encode_labels(y, n_rows=len(as_rows(X)))
        prompts = []
        if self.init_from_labels:
            templates = check_templates(self.template)
            prompts = fill_templates(label_texts(classes, self.label_descriptions), templates)
        self._check_class_sizes(y, classes, y_enc, len(prompts[0]) if prompts else 0)

        _forget_compiled(self, refs=True)
        self.device_ = fit_device(self.device, self.accelerator)  # an accelerator's: its own
        # Training runs on a fork of torch's global generators (the user's,
        # left as they were; see sktransfer._seeding).
        with isolated_torch_rng(self.device_):
            return self._fit_isolated(X, y, classes, y_enc, prompts, estimator)

    def _fit_isolated(self, X, y, classes, y_enc, prompts, estimator):
        from skorch.callbacks import GradientNormClipping

        from ._trainer import make_net, release_data

        # Load before seeding: the first load of a backbone in a process
        # builds it with random init before reading its weights, which would
        # make the first fit of a process differ from the later ones. The
        # seed (random_state=None: one drawn from OS entropy, not from
        # numpy's global generator) drives the pairs and torch alike.
        bb = load_backbone(self.backbone, device="cpu", pooling=self.pooling)
        self.backbone_source_ = bb.source
        seed = fit_seed(self.random_state)
        seed_torch(seed, self.device_)
        label_rows = bb.prompts_as_inputs([p for ps in prompts for p in ps], "init_from_labels=True") if prompts else []
        items = bb.check_inputs(X)
        y_train = y_enc.astype(np.int64)
        if prompts:
            items = items + label_rows
            y_train = np.concatenate([y_train, np.repeat(np.arange(len(classes)), len(prompts[0]))])
        bb.warn_truncation(items, self.max_length)

        n_pairs = resolve_n_pairs(self.n_pairs, len(items))
        body = trainable_copy(bb.body)
        for p in body.parameters():
            p.requires_grad_(True)
        _freeze_vocabulary(body)
        module = _body_module(bb, body)

        net = make_net(
            module,
            _PairCosineLoss,
            lr=self.lr,
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            generator=data_generator(seed),  # the loader's base seed, off the global generator
            callbacks=[
                ("schedule", WarmupCosine(None, self.warmup)),  # as long as the pair loader
                ("clip", GradientNormClipping(1.0)),  # as the HF/SetFit trainer
            ],
            device=self.device_,
            verbose=self.verbose,
            weight_decay=self.weight_decay,
            shuffle=False,  # an IterableDataset: the sampler randomises
            collate_fn=_PairCollator(items, bb, self.max_length, self.image_size),
            adapter_only=True,  # every trainable weight at lr (there is no head)
            bf16=False,
            accelerator=self.accelerator,  # None: a plain TransferNet
        )
        net.fit(_PairDataset(PairSampler(y_train, n_pairs, seed)), y=None)
        release_data(net)  # the accelerator (if any) lets go of the model and the loaders

        self.body_ = net.module_.eval()
        self._backbone_obj = bb
        self.classes_ = classes
        self.modality_ = bb.modality
        self.embedding_dim_ = int(bb.embedding_dim)
        self.n_pairs_ = int(n_pairs)
        self.n_label_examples_ = len(items) - len(y)
        self.history_ = net.history
        self.estimator_ = clone(estimator) if estimator is not None else _default_head()
        self.estimator_.fit(self._embed(items, backend="torch"), y_train)
        backend, quantize = _inference_settings(self)
        if backend != "torch":  # built now: a calibrated int8 model needs the training rows
            compiled_runner(self, bb, backend, quantize, calibration=items)
        return self

    # --------------------------------------------------------- inference
    def _get_backbone(self):
        bb = getattr(self, "_backbone_obj", None)
        if bb is None:
            with isolated_torch_rng():  # an unpickled model's first load: not on the user's generator
                bb = load_backbone(self.backbone, device="cpu", pooling=self.pooling)
            self._backbone_obj = bb
        return bb

    def _embed(self, items, backend=None):
        # The tuned body's embeddings, through the shared inference loop (not
        # PretrainedFeatureExtractor: it embeds with the frozen backbone).
        backend, quantize = (backend, None) if backend else _inference_settings(self)
        if backend != "torch":
            return compiled_forward(self, self._get_backbone(), items, backend, quantize, "embedding", max(32, self.batch_size))
        module = self.body_.eval()
        return run_in_batches(
            module.features, self._get_backbone(), items, batch_size=max(32, self.batch_size),
            device=next(module.parameters()).device, max_length=self.max_length, image_size=self.image_size,
        )

    def transform(self, X):
        """Embeddings from the tuned backbone (the head's input).

        Parameters
        ----------
        X : list, array, Series or one-column DataFrame

        Returns
        -------
        X_new : ndarray of shape (n_samples, ``embedding_dim_``), float32
        """
        check_is_fitted(self, "estimator_")
        return self._embed(self._get_backbone().check_inputs(X))

    def predict(self, X):
        """Predicted class labels."""
        check_is_fitted(self, "estimator_")
        codes = self.estimator_.predict(self.transform(X))
        return self.classes_[np.asarray(codes, dtype=np.int64)]

    @available_if(_head_has("predict_proba"))
    def predict_proba(self, X):
        """Class probabilities from the head, columns in ``classes_`` order."""
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict_proba(self.transform(X))

    @available_if(_head_has("decision_function"))
    def decision_function(self, X):
        """The head's decision function on the tuned embeddings."""
        check_is_fitted(self, "estimator_")
        return self.estimator_.decision_function(self.transform(X))

    def score(self, X, y, sample_weight=None):
        """Accuracy. Labels never seen in ``fit`` raise an error."""
        check_is_fitted(self, "classes_")
        y, _ = encode_known_labels(y, self.classes_)
        return super().score(X, y, sample_weight=sample_weight)

    # ------------------------------------------------ compiled inference
    def _export_spec(self, bb):
        import copy

        module = self.body_
        if any(p.device.type != "cpu" for p in module.parameters()):
            module = copy.deepcopy(module).cpu()
        return export_spec(module.eval(), bb, output=None, max_length=self.max_length, image_size=self.image_size)

    def _export_name(self):
        return f"{type(self).__name__} on {self.backbone if isinstance(self.backbone, str) else type(self.backbone).__name__!r}"

    def export(self, path, backend="onnx", quantize=None, calibration=None):
        """Write the tuned body (inputs → ``"embedding"``) for ONNX Runtime or OpenVINO.

        The classifier ``estimator_`` is a scikit-learn model and stays in
        Python: deploy the file for the embeddings and ``estimator_`` (e.g.
        with skops, as :meth:`save` writes it) on them. The file is the model
        ``transform`` runs with ``inference_backend=backend`` and
        ``inference_quantize=quantize``; inputs are the backbone's
        (``input_ids``, ``attention_mask`` for text; uint8 crops ``X`` for
        images).

        Parameters
        ----------
        path : str or path-like
            ONNX: the file to write. OpenVINO: the ``.xml`` file (weights in ``.bin`` beside it).
        backend : {"onnx", "openvino"}, default="onnx"
        quantize : {None, "int8"}, default=None
        calibration : rows of X, default=None
            Inputs to calibrate static int8 on (images; OpenVINO); not
            needed when fitted with the same ``inference_backend`` and
            ``inference_quantize``.

        Returns
        -------
        path : str, or tuple of str (xml, bin) for OpenVINO
        """
        check_is_fitted(self, "estimator_")
        return export_model(self, path, backend, quantize, calibration)

    # ------------------------------------------------------- persistence
    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_backbone_obj", None)
        state.pop("_runners", None)  # native sessions: loaded again from the cache
        if state.get("accelerator") is not None:
            state["accelerator"] = None  # bound to this process: not pickled, as not saved
        return state

    def __setstate__(self, state):
        state.setdefault("inference_backend", "torch")  # pickles from before 0.4
        state.setdefault("inference_quantize", None)
        state.setdefault("accelerator", None)  # pickles from before it
        super().__setstate__(state)

    _SAVED_FILES = ("config.json", "body.safetensors", "head.skops")

    def save(self, path):
        """Save to directory ``path``: safetensors, skops and JSON, no pickle.

        ``body.safetensors`` holds the tuned backbone's tensors,
        ``head.skops`` the fitted classifier (skops format: loading it runs
        no arbitrary code), ``config.json`` the parameters, classes and
        fitted state (the layout of every estimator's save), and
        ``manifest.json`` the SHA-256 of each, checked by :meth:`load`.
        The backbone must be given by name or path (it is rebuilt from it).
        """
        check_is_fitted(self, "estimator_")
        if not isinstance(self.backbone, str):
            raise ValueError("save() needs a backbone given by name or path (not an nn.Module) to rebuild it.")
        params = self.get_params(deep=False)
        del params["estimator"], params["head"]  # the fitted classifier is head.skops; head= is never saved
        del params["accelerator"]  # a run-time object: never saved (loads as None)
        params["label_descriptions"] = _persistence.dict_to_pairs(params["label_descriptions"])
        fitted = {
            "classes": [c.item() if hasattr(c, "item") else c for c in self.classes_],
            "n_pairs": self.n_pairs_,
            "n_label_examples": self.n_label_examples_,
        }
        os.makedirs(path, exist_ok=True)
        _persistence.write_tensors(path, "body.safetensors", self.body_.state_dict())
        _persistence.dump_skops(path, "head.skops", self.estimator_)
        _persistence.write_config(path, {"class": type(self).__name__, "params": params, "fitted": fitted})
        _persistence.write_manifest(path, self._SAVED_FILES, type(self).__name__)
        return path

    @classmethod
    def load(cls, path, backbone=None, trusted=None):
        """Rebuild a fitted classifier saved with :meth:`save`.

        The files are checked against ``manifest.json`` first: a file that
        changed since :meth:`save` raises
        :class:`~sktransfer.SaveIntegrityError` naming it (a
        ``ValueError``), as do invalid parameters and tensors that don't
        fit the configured backbone. A save without a manifest (older
        versions) loads with an :class:`~sktransfer.UnverifiedSaveWarning`;
        saves of every earlier version load.

        Parameters
        ----------
        path : str
            Directory written by :meth:`save`.
        backbone : str or None, default=None
            Build the body from this backbone instead of the saved name (e.g.
            a local copy where the hub is unreachable). The saved tensors
            replace its weights, so it must be the same architecture: another
            one is refused, naming the tensors that don't fit.
        trusted : list of str or None, default=None
            Types skops may build besides the ones it trusts by default
            (scikit-learn's own). A classifier from another library needs its
            types listed, e.g. ``["xgboost.core.Booster",
            "xgboost.sklearn.XGBClassifier"]``; the error lists them.
        """
        meta = _legacy_layout(_persistence.read_saved_config(path, cls, cls._SAVED_FILES))
        config = os.path.join(str(path), "config.json")
        head = _persistence.load_skops(path, "head.skops", trusted)
        try:
            params = dict(meta["params"])
            params["label_descriptions"] = _persistence.pairs_to_dict(
                params.get("label_descriptions"), "label_descriptions", path
            )
            fitted = meta["fitted"]
            n_pairs, n_label_examples = fitted["n_pairs"], fitted["n_label_examples"]
            classes = fitted["classes"]
        except (KeyError, TypeError) as exc:
            raise _persistence.SaveIntegrityError(f"{config!r} is missing or garbles a field: {exc!r}.") from exc
        classes = _persistence.check_classes(classes, config)
        # head= (the deprecated name) is never saved; the fitted classifier is the estimator.
        params.setdefault("inference_backend", "torch")  # saves from before they existed
        params.setdefault("inference_quantize", None)
        params.setdefault("accelerator", None)  # never saved
        est = _persistence.build_estimator(cls, {**params, "estimator": clone(head), "head": "deprecated"}, path)
        if backbone is not None:
            est.backbone = backbone
        head_classes = getattr(head, "classes_", None)
        if head_classes is not None and not np.array_equal(np.asarray(head_classes), np.arange(len(classes))):
            raise _persistence.SaveIntegrityError(
                f"{config!r} lists {len(classes)} classes but the classifier in "
                f"{os.path.join(str(path), 'head.skops')!r} was fitted on {len(head_classes)}: "
                "the files come from different models."
            )
        with isolated_torch_rng():  # a backbone's first load draws random numbers: not from the user's generator
            bb = load_backbone(est.backbone, device="cpu", pooling=est.pooling)
        module = _body_module(bb, trainable_copy(bb.body))
        state = _persistence.load_tensors(path, "body.safetensors")
        _persistence.check_state_fits(module.state_dict(), state, path, "body.safetensors", f"backbone {est.backbone!r}")
        module.load_state_dict(state, strict=True)
        est.device_ = resolve_device(est.device)
        est.body_ = module.to(est.device_).eval()
        est._backbone_obj = bb
        est.backbone_source_ = bb.source
        est.estimator_ = head
        est.classes_ = classes
        est.modality_ = bb.modality
        est.embedding_dim_ = int(bb.embedding_dim)
        est.n_pairs_ = n_pairs
        est.n_label_examples_ = n_label_examples
        return est

    def __sklearn_tags__(self):
        return _trained_model_tags(super().__sklearn_tags__(), self.random_state)

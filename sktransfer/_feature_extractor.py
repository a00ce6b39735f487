"""`PretrainedFeatureExtractor`: frozen backbones as sklearn transformers."""

import os
from contextlib import closing
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn

from . import _cache
from ._config import get_config
from ._inputs import image_digest, text_digest
from ._utils import progress_bar, resolve_device, want_progress
from ._validation import _WHY_VERBOSE, check_backbone_and_device, check_params, renamed_param
from .backbones import load_backbone

# CPU image batch: the fastest in benchmarks/bench_extractor.py on a quiet
# 2-core CPU (benchmarks/RESULTS.md, "Feature extraction", "Image
# throughput"; on a loaded machine the ranking is noisy). Text: as
# SentenceTransformer.encode. CUDA values are conventional, not measured here.
_DEFAULT_BATCH = {("image", "cpu"): 4, ("text", "cpu"): 32, ("image", "cuda"): 64, ("text", "cuda"): 64}

# Output precisions, as sentence-transformers' ``quantize_embeddings``.
_PRECISIONS = ("float32", "float16", "int8", "uint8", "binary", "ubinary")

# Texts tokenized together with long_texts chunking: their windows share
# forward passes of batch_size windows (bounded memory for the token lists).
_CHUNK_GROUP_BATCHES = 8

# Image batches decoded and resized ahead of the forward pass, in a background
# thread (0: each in its turn, in the caller's thread). Off: on an idle 2-core
# machine the thread took CPU from torch's threads (0.74-0.79x of the plain
# forward with it, 0.84-1.00x without; benchmarks/bench_image_preprocessing.py).
# Worth measuring again where decoding is I/O-bound (files on network storage).
_PREFETCH_AHEAD = 0


class PretrainedFeatureExtractor(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Embed texts or images with a frozen pretrained backbone.

    The backbone runs in eval mode under ``torch.inference_mode``, in
    batches, with preprocessing taken from the model's own pretrained
    configuration (timm data config, the tokenizer's maximum length). The
    model is loaded at ``fit`` (construction and ``clone`` are cheap) and is
    not pickled with the estimator: an unpickled extractor reloads it on
    first use and checks that the weights are the same.

    Parameters
    ----------
    backbone : str or torch.nn.Module, default="sentence-transformers/all-MiniLM-L6-v2"
        ``"sentence-transformers/<name>"``, ``"hf/<org>/<name>"`` (a
        transformers encoder with ``pooling``), ``"timm/<arch>"``,
        ``"torchvision/<arch>"``, a local model directory, or a built
        module. Known names load offline from installed packages when the
        hub can't be reached (see :func:`sktransfer.backbones.load_backbone`).
    layer : int or None, default=None
        None takes the model's final embedding. An int takes mean-pooled
        features from an intermediate layer instead (timm/torchvision: the
        model's stages from stem to head; text: hidden states, 0 = token
        embeddings). Earlier layers are more general, later ones more
        specific to the pretraining task.
    pooling : {"mean", "cls"}, default="mean"
        Token pooling for ``hf/`` encoders (sentence-transformers models use
        their own pooling).
    normalize : bool, default=False
        L2-normalise each embedding (useful with cosine-based heads), after
        ``truncate_dim`` and before ``precision``.
    truncate_dim : int or None, default=None
        Keep the first ``truncate_dim`` dimensions of each embedding
        (Matryoshka-style), then ``normalize``. Models trained with a
        Matryoshka loss (e.g. ``nomic-embed-text-v1.5``) keep most of their
        accuracy down to 64-256 dimensions; others, all-MiniLM-L6-v2
        included, were not trained for it and lose more: measure what it
        costs on your task. More than the embedding's dimension is a
        ValueError at ``fit``.
    precision : {"float32", "float16", "int8", "uint8", "binary", "ubinary"}, default="float32"
        Type of the output, as sentence-transformers' ``quantize_embeddings``:
        ``"float16"`` halves it; ``"int8"`` / ``"uint8"`` map each
        dimension's range onto 256 levels (4x smaller), with the ranges
        learned from the embeddings of the ``X`` given to ``fit``
        (``quantization_ranges_``; values outside are clipped), so every
        ``transform`` uses the same scale; ``"binary"`` (int8) /
        ``"ubinary"`` (uint8) keep the sign of each dimension, 8 per byte
        (``ceil(dim / 8)`` columns, 32x smaller; compare them with Hamming
        distance). Binary precisions need ``normalize=False``. The
        embedding cache always stores the full float32 embedding, so one
        cache serves every ``truncate_dim`` and ``precision``.
    batch_size : int or None, default=None
        Inputs per forward pass. None picks a measured default per modality
        and device.
    max_length : int or None, default=None
        Token limit for text (None: the model's default), per window with
        ``long_texts`` chunking. At most the model's positional limit (512
        for BERT-like encoders); more raises a ValueError at ``fit``.
    long_texts : {"truncate", "chunk_mean", "chunk_max"}, default="truncate"
        What to do with a text longer than ``max_length`` tokens.
        ``"truncate"`` reads its beginning only. ``"chunk_mean"`` and
        ``"chunk_max"`` split it into overlapping token windows of
        ``max_length`` tokens, embed every window (the windows of many
        texts share batches of ``batch_size`` windows), and pool the
        windows of each text by their mean or elementwise maximum. A text
        that fits in one window gets the same embedding as with
        ``"truncate"``; a long one costs one forward per window. Text
        backbones only.
    chunk_overlap : float in [0, 0.5], default=0.125
        With ``long_texts`` chunking: the fraction of a window's tokens
        repeated at the start of the next one (32 of MiniLM's 254 text
        tokens), so that a sentence cut at one window's edge is read whole
        in the next, for about 14% more windows than no overlap. A
        fraction rather than a token count, so that it suits every
        ``max_length``. Ignored with ``"truncate"``.
    image_size : int or None, default=None
        Square input size for images (None: the model's pretrained size).
        Smaller is faster and often enough for small images.
    image_resize : {"fast", "exact"}, default="fast"
        How images are resized to ``image_size`` (short side to
        ``image_size / crop_pct``, then centre crop, as the model's own eval
        transform). ``"fast"`` resizes all the images of one size in a
        batch with one call of torch's antialiased ``interpolate`` on uint8
        (PIL's filters, rounded differently: a pixel moves by a level or
        two of 255), straight into the channels-last layout the body runs
        in; measured cosine to the embeddings of timm's own pipeline
        (``timm.data.create_transform``) at least 0.9999 on photos, clip
        art and upscaled 28 px images, with unchanged probe accuracy.
        ``"exact"`` resizes each image with PIL, as timm's and
        torchvision's transforms do: the embeddings are timm's pipeline's,
        up to float rounding, at three to four times the preprocessing
        CPU time of ``"fast"`` (28 px images upscaled to 224). See ``benchmarks/RESULTS.md``
        ("Image preprocessing"). Ignored for text, and by backbones whose
        preprocessing is their library's own (open_clip).
    device : str, default="auto"
        ``"auto"`` uses CUDA, then MPS, else the CPU.
    backend : {"torch", "onnx", "openvino"}, default="torch"
        What runs the backbone. ``"onnx"`` (ONNX Runtime) and
        ``"openvino"`` export it once at ``fit`` (kept in the cache
        directory, keyed by the weights, so the next process loads it in
        about a second) and run it on the CPU: faster on CPUs, same
        embeddings up to float rounding. Final embedding only (``layer``
        must be None). Needs ``pip install 'sktransfer[onnx]'`` or
        ``'sktransfer[openvino]'``. See ``docs/fast_inference.md``.
    quantize : {None, "int8"}, default=None
        int8 inference with ``backend="onnx"`` or ``"openvino"``: dynamic
        weight quantization for transformers on ONNX Runtime; calibrated
        (static, NNCF) for CNNs and for OpenVINO, on up to 256 rows of the
        ``X`` given to ``fit``. Embeddings move a little (cosine to fp32
        about 0.99 for text, less for CNNs): check the accuracy of what
        you build on them.
    cache : None, True or str, default=None
        Directory of the persistent embedding cache (True: the configured
        default, ``~/.cache/sktransfer``). Each input is embedded once per
        backbone/preprocessing/layer/backend/``long_texts`` (full float32
        embeddings, before ``truncate_dim``, ``normalize`` and
        ``precision``) and reused across folds, clones,
        processes and restarts. A path that is a file is an error at
        ``fit``; a directory that can't be written is still read (one
        warning, the rest is computed and not stored).
    verbose : bool, int or "auto", default="auto"
        Show a progress bar while embedding: "auto" shows one for 512
        inputs or more, 0/False never, 1/True always (the same name as in
        every other estimator of the package).
    progress : bool or "auto", default="deprecated"
        Deprecated old name of ``verbose`` (since 0.2, removed in 0.4).

    Attributes
    ----------
    modality_ : {"text", "image"}
        What the backbone reads.
    embedding_dim_ : int
        Dimension of the embeddings (``truncate_dim`` when set). The output
        has this many columns, except with binary precisions:
        ``ceil(embedding_dim_ / 8)`` bytes.
    quantization_ranges_ : ndarray of shape (2, ``embedding_dim_``) or None
        With ``precision="int8"`` or ``"uint8"``: the minimum and maximum of
        each dimension over the (truncated, normalised) embeddings of the
        ``X`` given to ``fit``; None otherwise.
    layer_ : int or None
        The resolved (non-negative) layer index.
    backbone_source_ : str
        Where the weights came from: ``"hub"``, ``"package:<name>"`` (an
        installed weight package, the offline fallback), ``"path"`` or
        ``"module"``. The embedding cache is keyed by the weights' hash,
        which equal weights from two sources share.
    backbone_fingerprint_ : str
        Hash of the backbone's weights (part of every cache key).
    device_ : str
        The torch device used.
    compiled_key_ : str or None
        With ``backend`` other than ``"torch"``: the compiled model's key
        (weights, backend, quantization, calibration, tool versions), part
        of the embedding cache's key.

    See Also
    --------
    sktransfer.FineTunedClassifier : train the backbone too.

    Examples
    --------
    >>> from sktransfer import PretrainedFeatureExtractor
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.linear_model import LogisticRegression
    >>> texts = ["the match ended in a draw", "shares fell sharply",
    ...          "the striker scored twice", "the bank raised rates"]
    >>> y = ["sport", "business", "sport", "business"]
    >>> pipe = make_pipeline(PretrainedFeatureExtractor("sentence-transformers/all-MiniLM-L6-v2"),
    ...                      LogisticRegression()).fit(texts, y)
    >>> print(pipe.predict(["a late goal won the cup"])[0])
    sport
    """

    def __init__(
        self,
        backbone="sentence-transformers/all-MiniLM-L6-v2",
        *,
        layer=None,
        pooling="mean",
        normalize=False,
        truncate_dim=None,
        precision="float32",
        batch_size=None,
        max_length=None,
        long_texts="truncate",
        chunk_overlap=0.125,
        image_size=None,
        image_resize="fast",
        device="auto",
        backend="torch",
        quantize=None,
        cache=None,
        verbose="auto",
        progress="deprecated",
    ):
        self.backbone = backbone
        self.layer = layer
        self.pooling = pooling
        self.normalize = normalize
        self.truncate_dim = truncate_dim
        self.precision = precision
        self.batch_size = batch_size
        self.max_length = max_length
        self.long_texts = long_texts
        self.chunk_overlap = chunk_overlap
        self.image_size = image_size
        self.image_resize = image_resize
        self.device = device
        self.backend = backend
        self.quantize = quantize
        self.cache = cache
        self.verbose = verbose
        self.progress = progress

    # ------------------------------------------------------------------ fit
    _parameter_constraints: dict = {
        "backbone": [str, nn.Module],
        # Checked against the model in fit (negative: from the top).
        "layer": [Interval(Integral, None, None, closed="neither"), None],
        "pooling": [StrOptions({"mean", "cls"})],
        "normalize": ["boolean"],
        # Also at most the embedding's dimension: checked in fit, when it is known.
        "truncate_dim": [Interval(Integral, 1, None, closed="left"), None],
        "precision": [StrOptions(set(_PRECISIONS))],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        # Also at most the model's positional limit: checked in fit, when it is known.
        "max_length": [Interval(Integral, 2, None, closed="left"), None],
        "long_texts": [StrOptions({"truncate", "chunk_mean", "chunk_max"})],
        "chunk_overlap": [Interval(Real, 0, 0.5, closed="both")],
        "image_size": [Interval(Integral, 8, None, closed="left"), None],
        "image_resize": [StrOptions({"fast", "exact"})],
        "device": [str, torch.device, None],
        "backend": [StrOptions({"torch", "onnx", "openvino"})],
        "quantize": [StrOptions({"int8"}), None],
        # True: the configured default directory.
        "cache": ["boolean", str, bytes, os.PathLike, None],
        "verbose": ["boolean", Interval(Integral, 0, None, closed="left"), StrOptions({"auto"})],
        "progress": ["boolean", StrOptions({"auto", "deprecated"})],
    }

    def _check_params(self):
        check_params(self)
        renamed_param(self, "progress", "verbose", why=_WHY_VERBOSE, new_default="auto")  # warns once, at fit
        check_backbone_and_device(self.get_params(deep=False))  # before the backbone loads
        if self.precision in ("binary", "ubinary") and self.normalize:
            raise ValueError(
                f"precision={self.precision!r} keeps only the sign of each dimension, which normalize=True "
                "cannot change (it divides by a positive norm), and packed bits are not unit vectors: "
                "compare binary codes with Hamming distance. Set normalize=False."
            )
        if self.quantize is not None and self.backend == "torch":
            raise ValueError(
                f"quantize={self.quantize!r} needs backend='onnx' or 'openvino' (torch's own dynamic int8 "
                "moved MiniLM's embeddings to cosine 0.94: not offered). Set backend, or quantize=None."
            )
        if self.backend != "torch":
            if self.layer is not None:
                raise ValueError(
                    f"backend={self.backend!r} runs the final embedding only; layer={self.layer!r} needs "
                    "backend='torch'."
                )
            from ._runtime import check_backend

            check_backend(self.backend, self.quantize)  # a missing package: named here, before any work

    def fit(self, X, y=None):
        """Load the backbone and check that ``X`` suits it.

        The backbone stays frozen. The only thing learned from ``X`` is the
        per-dimension range of its embeddings with ``precision="int8"`` or
        ``"uint8"`` (``quantization_ranges_``). ``y`` is ignored.

        A dask collection is not computed: its first rows (up to 256, from
        its first partition) are validated, except with ``precision="int8"``
        or ``"uint8"``, whose ranges are learned from the embeddings of all
        of it, computed on the cluster (see ``docs/scaling.md``).

        Parameters
        ----------
        X : list, array, Series, one-column DataFrame, dask collection or None
            Texts, or images (paths, PIL images, arrays); or a dask
            Series, one-column DataFrame, array or bag of them. None loads
            the backbone without data (nothing is learned from ``X`` unless
            ``precision`` is int8/uint8 or ``quantize`` is set, which need
            rows).
        y : ignored

        Returns
        -------
        self : PretrainedFeatureExtractor
        """
        from . import _dask

        if _dask.is_dask_collection(X):
            return _dask.fit(self, X)
        if X is None:  # the backbone's own example input: loads it, learns the width
            if self.precision in ("int8", "uint8") or self.quantize is not None:
                learned = f"precision={self.precision!r}" if self.quantize is None else f"quantize={self.quantize!r}"
                raise ValueError(
                    f"fit(None): {learned} learns from the rows given to fit (ranges, or calibration). "
                    "Pass a representative sample of X to fit."
                )
            self._check_params()
            X = load_backbone(self.backbone, device=resolve_device(self.device), pooling=self.pooling).example_inputs()
        self._fit(X)
        return self

    def _verbose(self):
        """``verbose``, or the deprecated ``progress`` (silently: fit warned)."""
        if not hasattr(self, "verbose"):  # pickled before the rename
            return self.progress
        return renamed_param(self, "progress", "verbose", why=_WHY_VERBOSE, warn=False, new_default="auto")[0]

    @property
    def _n_features_out(self):
        if self.precision in ("binary", "ubinary"):
            return -(-self.embedding_dim_ // 8)
        return self.embedding_dim_

    def fit_transform(self, X, y=None):
        """Fit to ``X`` and embed it (each row embedded once, also when ``fit`` needs the embeddings).

        Parameters
        ----------
        X : list, array, Series, one-column DataFrame or dask collection
            Texts, or images (paths, PIL images, arrays); a dask collection
            is fitted as in ``fit`` and embedded lazily as in ``transform``.
        y : ignored

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_features_out)
            A lazy ``dask.array`` for a dask ``X``.
        """
        from . import _dask

        if _dask.is_dask_collection(X):
            return _dask.fit_transform(self, X)
        items, rows = self._fit(X)
        if rows is None:
            rows = self._finish(self._embed(items))
        return self._quantize(rows)

    def _fit(self, X):
        """Fit; returns the validated rows and, when fit embedded them, their finished float rows."""
        self._check_params()
        self.device_ = resolve_device(self.device)
        bb = load_backbone(self.backbone, device=self.device_, pooling=self.pooling)
        self._backbone_obj = bb
        self.modality_ = bb.modality
        self.layer_ = bb.check_layer(self.layer)
        dim = bb.layer_dim(self.layer_)
        if self.truncate_dim is not None and self.truncate_dim > dim:
            raise ValueError(
                f"truncate_dim={self.truncate_dim} is more than the {dim} dimensions of {self.backbone!r}'s "
                f"embedding{'' if self.layer_ is None else f' at layer {self.layer_}'}. Use truncate_dim <= {dim}, "
                "or None to keep them all."
            )
        self._backbone_dim = dim
        self.embedding_dim_ = dim if self.truncate_dim is None else int(self.truncate_dim)
        self.backbone_fingerprint_ = bb.fingerprint()
        self.backbone_source_ = bb.source
        if self.modality_ == "text":
            bb.check_max_length(self.max_length)
        if self.long_texts != "truncate":  # a backbone without token windows says so here
            bb.chunk(bb.example_inputs(), self.max_length, self.chunk_overlap)
        directory = self._cache_directory()
        if directory is not None:
            _cache.check_cache_directory(directory, self.cache)
        items = self._check_inputs(X)
        self._runner = None
        self.compiled_key_ = self.compiled_path_ = None
        if self.backend != "torch":
            from ._runtime import compile_body

            runner = compile_body(
                bb, self.backend, self.quantize, calibration=items, cache_dir=directory,
                max_length=self.max_length, image_size=self.image_size,
            )
            self._runner, self.compiled_key_, self.compiled_path_ = runner, runner.key, runner.path
        self.quantization_ranges_ = rows = None
        if self.precision in ("int8", "uint8"):
            if len(items) < 2:
                raise ValueError(
                    f"precision={self.precision!r} learns each dimension's range from the embeddings of the X "
                    f"given to fit: it needs at least 2 rows, got {len(items)} (a few hundred representative "
                    "rows give stable ranges)."
                )
            rows = self._finish(self._embed(items))
            self.quantization_ranges_ = np.stack([rows.min(axis=0), rows.max(axis=0)]).astype(np.float32)
        return items, rows

    # ------------------------------------------------------------ transform
    def _get_backbone(self):
        bb = getattr(self, "_backbone_obj", None)
        if bb is None:
            bb = load_backbone(self.backbone, device=self.device_, pooling=self.pooling)
            if bb.fingerprint() != self.backbone_fingerprint_:
                raise ValueError(
                    f"The weights of {self.backbone!r} changed since this extractor was fitted "
                    f"(fingerprint {bb.fingerprint()} != {self.backbone_fingerprint_}). Refit it."
                )
            self._backbone_obj = bb
        return bb

    def _get_runner(self, bb):
        """The compiled body (backend other than torch), loaded again after unpickling."""
        runner = getattr(self, "_runner", None)
        if runner is None:
            from ._runtime import compile_body, load_compiled

            kw = {"max_length": self.max_length, "image_size": self.image_size}
            runner = load_compiled(self.compiled_path_, self.compiled_key_, bb, self.backend, self.quantize, **kw)
            if runner is None:
                try:  # not calibrated: the same model is built again without the fit rows
                    runner = compile_body(bb, self.backend, self.quantize, **kw)
                except ValueError as exc:
                    raise ValueError(
                        f"The calibrated {self.quantize} model this extractor was fitted with is no longer at "
                        f"{self.compiled_path_!r} (cache cleared?): fit it again."
                    ) from exc
                if runner.key != self.compiled_key_:
                    raise ValueError(
                        f"The compiled {self.backend} model differs from the one this extractor was fitted "
                        "with (other package versions?): fit it again."
                    )
            self._runner = runner
        return runner

    def _check_inputs(self, X):
        return self._get_backbone().check_inputs(X)

    def _batch_size(self):
        if self.batch_size is not None:
            return int(self.batch_size)
        kind = "cuda" if str(self.device_).startswith("cuda") else "cpu"
        return _DEFAULT_BATCH[(self.modality_, kind)]

    def _cache_directory(self):
        if self.cache is None or self.cache is False:
            return None
        return get_config()["cache_dir"] if self.cache is True else self.cache

    def _cache_store(self, bb=None):
        directory = self._cache_directory()
        if directory is None:
            return None
        # The namespace labels the entries this extractor writes (`sktransfer cache info` per backbone).
        return _cache.EmbeddingCache(directory, namespace=None if bb is None else self._namespace(bb))

    def _namespace(self, bb):
        if self.modality_ == "text":
            pre = bb.preprocess_config(self.max_length)
        else:
            pre = bb.preprocess_config(self.image_size)
        return _cache.namespace_key(
            backbone=str(self.backbone) if isinstance(self.backbone, str) else type(self.backbone).__name__,
            family=bb.family,
            weights=self.backbone_fingerprint_,
            preprocessing=pre,
            layer=self.layer_,
            # Absent for torch / truncation: the keys of caches written before these options stay valid.
            **({} if self.backend == "torch" else {"compiled": self.compiled_key_}),
            **self._windows_key(),
            **self._resize_key(),
        )

    def _resize_key(self):
        # "exact" is the resize of every cache written before image_resize existed: its keys stay valid.
        if self.modality_ == "text" or getattr(self, "image_resize", "exact") == "exact":
            return {}
        return {"image_resize": self.image_resize}

    def _windows_key(self):
        long_texts = getattr(self, "long_texts", "truncate")  # absent in extractors pickled before it existed
        if long_texts == "truncate":
            return {}
        return {"long_texts": long_texts, "chunk_overlap": float(self.chunk_overlap)}

    def transform(self, X):
        """Embed ``X``.

        Parameters
        ----------
        X : list, array, Series, one-column DataFrame or dask collection
            Inputs of the backbone's modality; or a dask Series, one-column
            DataFrame, bag (of texts or paths) or array (an N×H×W[×C]
            image stack, or a 1-D array of texts or paths).

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_features_out)
            ``embedding_dim_`` columns of type ``precision`` (float32 by
            default); ``ceil(embedding_dim_ / 8)`` packed bytes with binary
            precisions. For a dask ``X``: a lazy ``dask.array`` with known
            chunks, one block per partition of ``X``, each embedded on a
            worker that loads the backbone once per process (the task
            graph carries no weights).
        """
        check_is_fitted(self, "embedding_dim_")
        from . import _dask

        if _dask.is_dask_collection(X):
            return _dask.transform(self, X)
        return self._quantize(self._finish(self._embed(self._check_inputs(X))))

    def _finish(self, out):
        """Full float32 embeddings → ``truncate_dim``, then ``normalize`` (float32)."""
        if getattr(self, "truncate_dim", None) is not None:
            out = np.ascontiguousarray(out[:, : self.truncate_dim])
        if self.normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out /= np.maximum(norms, 1e-12)
        return out

    def _quantize(self, out):
        """Float32 rows → ``precision``, as sentence-transformers' ``quantize_embeddings``
        (int8/uint8 with ``ranges=quantization_ranges_``): the same codes."""
        precision = getattr(self, "precision", "float32")
        if precision == "float32":
            return out
        if precision == "float16":
            return out.astype(np.float16)
        if precision in ("int8", "uint8"):
            starts, ends = self.quantization_ranges_
            steps = (ends - starts) / 255
            steps = np.where(steps == 0, np.float32(1), steps)  # a constant dimension maps to its start
            levels = np.clip(np.floor((out - starts) / steps), 0, 255)  # outside the fitted range: clipped
            return levels.astype(np.uint8) if precision == "uint8" else (levels - 128).astype(np.int8)
        bits = np.packbits(out > 0, axis=1)
        return bits if precision == "ubinary" else (bits.astype(np.int16) - 128).astype(np.int8)

    def _embed(self, items):
        """Full float32 embeddings of validated ``items``: the cache, then the backbone for the rest."""
        bb = self._get_backbone()
        n, dim = len(items), getattr(self, "_backbone_dim", self.embedding_dim_)
        out = np.empty((n, dim), dtype=np.float32)
        store = self._cache_store(bb)
        todo = list(range(n))
        keys = None
        if store is not None:
            ns = store.namespace
            digest = text_digest if self.modality_ == "text" else image_digest
            keys = [_cache.entry_key(ns, digest(it)) for it in items]
            unique, first_of = [], {}
            duplicates = []  # rows whose content already appears earlier in X
            for i, key in enumerate(keys):
                if key in first_of:
                    duplicates.append(i)
                    continue
                first_of[key] = i
                unique.append(i)
            vecs, found = store.get_many([keys[i] for i in unique], dim)  # a few large reads
            hits = np.asarray(unique, dtype=np.intp)[found]
            out[hits] = vecs[found]
            todo = [i for i, f in zip(unique, found) if not f]
            _cache.count("cache_hits", len(hits))
        if todo:
            if getattr(self, "long_texts", "truncate") == "truncate":
                self._compute(bb, items, todo, out, store, keys)
            else:
                self._compute_windows(bb, items, todo, out, store, keys)
        if keys is not None:
            for i in duplicates:
                out[i] = out[first_of[keys[i]]]
        return out

    def _forward(self, bb):
        """Keyword inputs of the body (``module_inputs`` / ``window_inputs``) → float32 numpy rows."""
        if self.backend != "torch":
            return lambda inputs: self._get_runner(bb)(**inputs)
        return lambda inputs: bb.embed(inputs, self.layer_).cpu().numpy()

    def _store(self, store, keys, rows, emb):
        _cache.count("computed", len(rows))
        if store is not None:
            written = store.put_many([keys[i] for i in rows], emb)  # one append per batch
            _cache.count("cache_writes", written)

    def _compute(self, bb, items, todo, out, store, keys):
        bs = self._batch_size()
        runner = None if self.backend == "torch" else self._get_runner(bb)
        if self.modality_ == "text":
            # Longest first, as SentenceTransformer.encode does: less padding.
            todo = sorted(todo, key=lambda i: -len(items[i]))
        batches = [todo[s : s + bs] for s in range(0, len(todo), bs)]
        show = want_progress(self._verbose(), len(todo))
        desc = f"Embedding {len(todo)} {'texts' if self.modality_ == 'text' else 'images'}"
        with closing(self._batch_inputs(bb, items, batches, runner)) as inputs:
            for idx, batch in progress_bar(zip(batches, inputs), total=len(batches), enabled=show, desc=desc):
                emb = runner(**batch) if runner is not None else bb.embed(batch, self.layer_).cpu().numpy()
                out[idx] = emb
                self._store(store, keys, idx, emb)

    def _batch_inputs(self, bb, items, batches, runner):
        """The inputs of each batch, in order; images decoded and resized one batch ahead, in a thread."""
        if self.modality_ == "text":
            if runner is not None:
                return (bb.module_inputs(items, idx, max_length=self.max_length) for idx in batches)
            return (bb.collate([items[i] for i in idx], max_length=self.max_length) for idx in batches)
        from .backbones._image import prefetch_batches

        resize = getattr(self, "image_resize", "exact")  # absent in extractors pickled before it existed

        def prepare(idx):
            pixels = bb.pixels(items, idx, image_size=self.image_size, resize=resize)
            return pixels if runner is None else {"X": pixels}

        return prefetch_batches(prepare, batches, ahead=_PREFETCH_AHEAD)

    def _compute_windows(self, bb, items, todo, out, store, keys):
        """``long_texts`` chunking: every window of a group of texts in shared batches, pooled per text."""
        bs = self._batch_size()
        forward = self._forward(bb)
        todo = [todo[i] for i in bb.batch_order([items[i] for i in todo])]
        size = bs * _CHUNK_GROUP_BATCHES
        groups = [todo[s : s + size] for s in range(0, len(todo), size)]
        show = want_progress(self._verbose(), len(todo))
        desc = f"Embedding {len(todo)} texts in windows"
        for group in progress_bar(groups, total=len(groups), enabled=show, desc=desc):
            windows, owner = bb.chunk([items[i] for i in group], self.max_length, self.chunk_overlap)
            order = np.argsort([-len(w["input_ids"]) for w in windows], kind="stable")  # less padding
            emb = np.empty((len(windows), out.shape[1]), dtype=np.float32)
            for s in range(0, len(order), bs):
                rows = order[s : s + bs]
                emb[rows] = forward(bb.window_inputs(windows, rows))
            if self.long_texts == "chunk_mean":
                pooled = np.zeros((len(group), out.shape[1]), dtype=np.float64)
                np.add.at(pooled, owner, emb)
                pooled /= np.bincount(owner, minlength=len(group))[:, None]
            else:
                pooled = np.full((len(group), out.shape[1]), -np.inf, dtype=np.float32)
                np.maximum.at(pooled, owner, emb)
            pooled = pooled.astype(np.float32)
            out[group] = pooled
            self._store(store, keys, group, pooled)

    # ----------------------------------------------------------- pickling
    def __getstate__(self):
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__.copy()
        state = dict(state)
        state.pop("_backbone_obj", None)
        state.pop("_runner", None)  # a native session: loaded again from the cache
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.input_tags.categorical = False
        tags.requires_fit = True
        tags.non_deterministic = False
        return tags

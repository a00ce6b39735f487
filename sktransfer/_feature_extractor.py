"""`PretrainedFeatureExtractor`: frozen backbones as sklearn transformers."""

import os
from numbers import Integral

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn

from . import _cache
from ._config import get_config
from ._inputs import image_digest, text_digest, to_rgb
from ._utils import progress_bar, resolve_device, want_progress
from ._validation import check_backbone_and_device, check_params
from .backbones import load_backbone

# CPU image batch: the fastest in benchmarks/bench_extractor.py on a quiet
# 2-core CPU (benchmarks/RESULTS.md, "Feature extraction", "Image
# throughput"; on a loaded machine the ranking is noisy). Text: as
# SentenceTransformer.encode. CUDA values are conventional, not measured here.
_DEFAULT_BATCH = {("image", "cpu"): 4, ("text", "cpu"): 32, ("image", "cuda"): 64, ("text", "cuda"): 64}


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
        L2-normalise each embedding (useful with cosine-based heads).
    batch_size : int or None, default=None
        Inputs per forward pass. None picks a measured default per modality
        and device.
    max_length : int or None, default=None
        Token limit for text (None: the model's default). Longer texts are
        truncated. At most the model's positional limit (512 for BERT-like
        encoders); more raises a ValueError at ``fit``.
    image_size : int or None, default=None
        Square input size for images (None: the model's pretrained size).
        Smaller is faster and often enough for small images.
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
        backbone/preprocessing/layer and reused across folds, clones,
        processes and restarts. A path that is a file is an error at
        ``fit``; a directory that can't be written is still read (one
        warning, the rest is computed and not stored).
    progress : bool or "auto", default="auto"
        Show a progress bar; "auto" shows one for 512 inputs or more.

    Attributes
    ----------
    modality_ : {"text", "image"}
        What the backbone reads.
    embedding_dim_ : int
        Number of output features.
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
        batch_size=None,
        max_length=None,
        image_size=None,
        device="auto",
        backend="torch",
        quantize=None,
        cache=None,
        progress="auto",
    ):
        self.backbone = backbone
        self.layer = layer
        self.pooling = pooling
        self.normalize = normalize
        self.batch_size = batch_size
        self.max_length = max_length
        self.image_size = image_size
        self.device = device
        self.backend = backend
        self.quantize = quantize
        self.cache = cache
        self.progress = progress

    # ------------------------------------------------------------------ fit
    _parameter_constraints: dict = {
        "backbone": [str, nn.Module],
        # Checked against the model in fit (negative: from the top).
        "layer": [Interval(Integral, None, None, closed="neither"), None],
        "pooling": [StrOptions({"mean", "cls"})],
        "normalize": ["boolean"],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        # Also at most the model's positional limit: checked in fit, when it is known.
        "max_length": [Interval(Integral, 2, None, closed="left"), None],
        "image_size": [Interval(Integral, 8, None, closed="left"), None],
        "device": [str, torch.device, None],
        "backend": [StrOptions({"torch", "onnx", "openvino"})],
        "quantize": [StrOptions({"int8"}), None],
        # True: the configured default directory.
        "cache": ["boolean", str, bytes, os.PathLike, None],
        "progress": ["boolean", StrOptions({"auto"})],
    }

    def _check_params(self):
        check_params(self)
        check_backbone_and_device(self.get_params(deep=False))  # before the backbone loads
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

        Nothing is learned: the backbone stays frozen. ``y`` is ignored.

        Parameters
        ----------
        X : list, array, Series or one-column DataFrame
            Texts, or images (paths, PIL images, arrays).
        y : ignored

        Returns
        -------
        self : PretrainedFeatureExtractor
        """
        self._check_params()
        self.device_ = resolve_device(self.device)
        bb = load_backbone(self.backbone, device=self.device_, pooling=self.pooling)
        self._backbone_obj = bb
        self.modality_ = bb.modality
        self.layer_ = bb.check_layer(self.layer)
        self.embedding_dim_ = bb.layer_dim(self.layer_)
        self.backbone_fingerprint_ = bb.fingerprint()
        self.backbone_source_ = bb.source
        if self.modality_ == "text":
            bb.check_max_length(self.max_length)
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
        return self

    @property
    def _n_features_out(self):
        return self.embedding_dim_

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

    def _cache_store(self):
        directory = self._cache_directory()
        return None if directory is None else _cache.EmbeddingCache(directory)

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
            # None for torch: the keys of caches written before backends existed stay valid.
            **({} if self.backend == "torch" else {"compiled": self.compiled_key_}),
        )

    def transform(self, X):
        """Embed ``X``.

        Parameters
        ----------
        X : list, array, Series or one-column DataFrame
            Inputs of the backbone's modality.

        Returns
        -------
        X_new : ndarray of shape (n_samples, embedding_dim_), float32
        """
        check_is_fitted(self, "embedding_dim_")
        items = self._check_inputs(X)
        bb = self._get_backbone()
        n, dim = len(items), self.embedding_dim_
        out = np.empty((n, dim), dtype=np.float32)
        store = self._cache_store()
        todo = list(range(n))
        keys = None
        if store is not None:
            ns = self._namespace(bb)
            digest = text_digest if self.modality_ == "text" else image_digest
            keys = [_cache.entry_key(ns, digest(it)) for it in items]
            todo, first_of = [], {}
            duplicates = []  # rows whose content already appears earlier in X
            for i, key in enumerate(keys):
                if key in first_of:
                    duplicates.append(i)
                    continue
                first_of[key] = i
                vec = store.get(key, dim)
                if vec is None:
                    todo.append(i)
                else:
                    out[i] = vec
            _cache.count("cache_hits", n - len(todo) - len(duplicates))
        if todo:
            self._compute(bb, items, todo, out, store, keys)
        if keys is not None:
            for i in duplicates:
                out[i] = out[first_of[keys[i]]]
        if self.normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out /= np.maximum(norms, 1e-12)
        return out

    def _compute(self, bb, items, todo, out, store, keys):
        bs = self._batch_size()
        runner = None if self.backend == "torch" else self._get_runner(bb)
        if self.modality_ == "text":
            # Longest first, as SentenceTransformer.encode does: less padding.
            todo = sorted(todo, key=lambda i: -len(items[i]))
        batches = [todo[s : s + bs] for s in range(0, len(todo), bs)]
        show = want_progress(self.progress, len(todo))
        desc = f"Embedding {len(todo)} {'texts' if self.modality_ == 'text' else 'images'}"
        for idx in progress_bar(batches, total=len(batches), enabled=show, desc=desc):
            if runner is not None:
                emb = runner(**bb.module_inputs(items, idx, max_length=self.max_length, image_size=self.image_size))
            else:
                if self.modality_ == "text":
                    batch = bb.collate([items[i] for i in idx], max_length=self.max_length)
                else:
                    batch = bb.collate([to_rgb(items[i], i) for i in idx], image_size=self.image_size)
                emb = bb.embed(batch, self.layer_).cpu().numpy()
            out[idx] = emb
            _cache.count("computed", len(idx))
            if store is not None:
                written = sum(store.put(keys[i], emb[j]) for j, i in enumerate(idx))
                _cache.count("cache_writes", written)

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

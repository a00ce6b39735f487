"""`PretrainedFeatureExtractor`: frozen backbones as sklearn transformers."""

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from . import _cache
from ._config import get_config
from ._inputs import check_in_range_int, image_digest, text_digest, to_rgb
from ._utils import progress_bar, resolve_device, want_progress
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
        self.cache = cache
        self.progress = progress

    # ------------------------------------------------------------------ fit
    def _check_params(self):
        from ._validation import check_model_params

        check_model_params(self)  # backbone, pooling, device, max_length: before the backbone loads
        if self.batch_size is not None:
            check_in_range_int(self.batch_size, "batch_size", 1)
        if self.max_length is not None:
            check_in_range_int(self.max_length, "max_length", 2)
        if self.image_size is not None:
            check_in_range_int(self.image_size, "image_size", 8)
        if self.progress not in (True, False, "auto"):
            raise ValueError(f"progress must be True, False or 'auto', got {self.progress!r}.")
        if not isinstance(self.normalize, (bool, np.bool_)):
            raise ValueError(f"normalize must be a bool, got {self.normalize!r}.")
        if self.cache not in (None, False, True) and not isinstance(self.cache, (str, bytes)) and not hasattr(self.cache, "__fspath__"):
            raise ValueError(f"cache must be None, True or a directory path, got {self.cache!r}.")

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
        self._check_inputs(X)
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
        if self.modality_ == "text":
            # Longest first, as SentenceTransformer.encode does: less padding.
            todo = sorted(todo, key=lambda i: -len(items[i]))
        batches = [todo[s : s + bs] for s in range(0, len(todo), bs)]
        show = want_progress(self.progress, len(todo))
        desc = f"Embedding {len(todo)} {'texts' if self.modality_ == 'text' else 'images'}"
        for idx in progress_bar(batches, total=len(batches), enabled=show, desc=desc):
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
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.input_tags.categorical = False
        tags.requires_fit = True
        tags.non_deterministic = False
        return tags

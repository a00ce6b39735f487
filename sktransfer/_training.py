"""Training machinery shared by every estimator that trains a backbone.

`FineTunedClassifier`, `FineTunedRegressor` and `LoRAClassifier` differ in
*what* trains (chosen blocks, or adapters) and in the callbacks that shape
training; the loop itself is skorch's, driven from here. Subclasses provide
three hooks: ``_build_module`` (the torch module), ``_method_callbacks``
(their skorch callbacks) and ``_net_kwargs`` (how the optimizer groups
parameters).
"""

import math
import os
import threading
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.validation import check_is_fitted

from . import _lr_finder, _persistence
from ._data import RowDataset
from ._inputs import as_rows, check_image_headers, image_digest, text_digest
from ._trainer import TransferNet as _TransferNet, make_net, release_data  # _TransferNet: the name old pickles use
from ._trainer import accelerator_fingerprint, check_accelerator_device, fit_device
from ._transfer_module import TransferModule, export_spec, make_head, run_in_batches
from ._seeding import data_generator, fit_seed, isolated_torch_rng, seed_torch
from ._utils import trained_model_tags as _trained_model_tags
from ._validation import check_backbone_and_device, check_params, check_targets, encode_known_labels, encode_labels
from .backbones import load_backbone
from .backbones._base import trainable_copy
from .callbacks import ResumableCheckpoint, WarmupCosine


class _WeightedCrossEntropy:
    """Picklable factory of a class-weighted cross-entropy criterion."""

    def __init__(self, weight):
        self.weight = weight

    def __call__(self):
        return torch.nn.CrossEntropyLoss(weight=self.weight)


# Parameters added after the first release, with the value that reproduces
# how an estimator saved or pickled before them was trained.
_LEGACY_DEFAULTS = {
    "freeze_bn_stats": False, "head_lr": None, "head_init": "random",
    "inference_backend": "torch", "inference_quantize": None, "num_workers": 0, "accelerator": None,
}


def _with_legacy_params(cls, params):
    """``params`` (a pickle's state or a saved config) with the parameters it predates filled in."""
    for name, value in _LEGACY_DEFAULTS.items():
        if name in cls._get_param_names():
            params.setdefault(name, value)
    return params


# Compiled inference (sktransfer._runtime), predict/transform only: in the
# tables of the estimators that have these parameters (not DANNClassifier).
INFERENCE_CONSTRAINTS = {
    "inference_backend": [StrOptions({"torch", "onnx", "openvino"})],
    "inference_quantize": [StrOptions({"int8"}), None],
}

# The constraint of ``class_weight``, for the classifiers' tables.
_CLASS_WEIGHT = [dict, StrOptions({"balanced"}), None]


# Stands in a pickle for a net's ``module`` when it is its ``module_``.
_SAME_AS_MODULE_ = "<sktransfer: same as module_>"


# ------------------------------------------- a fitted model as the start
# Sequential tasks (continual transfer): ``FineTunedClassifier(backbone=clf_a)``
# or ``backbone=<clf_a's save directory>`` trains on from task A's trained body
# with a new head. Everything that reads ``est.backbone`` resolves it here.
_START_CLASSES = ("FineTunedClassifier", "FineTunedRegressor")
_saved_starts = {}  # (real path, manifest/config digest) -> the fitted estimator read from it (up to 4)
_saved_starts_lock = threading.Lock()
_resolving = threading.local()  # the start directories being read in this thread (a cycle is refused)


def clear_saved_starts():
    """Forget the fitted starts read from save directories (frees memory)."""
    with _saved_starts_lock:
        _saved_starts.clear()


def _saved_class(path):
    """The estimator class named by an sktransfer save in directory ``path``, or None (not a save)."""
    if not isinstance(path, (str, os.PathLike)):
        return None
    config = os.path.join(os.fspath(path), "config.json")
    if not os.path.isfile(config) or os.path.isfile(os.path.join(os.fspath(path), "modules.json")):
        return None
    import json

    try:
        with open(config, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    name = meta.get("class") if isinstance(meta, dict) else None
    return name if isinstance(name, str) and isinstance(meta.get("params"), dict) else None


def start_estimator(spec, param="backbone"):
    """The fitted model ``spec`` names as a start: itself, or the one saved in its directory; None otherwise.

    ``spec`` is a ``backbone`` value. A fitted :class:`FineTunedClassifier`
    or :class:`FineTunedRegressor` (or the directory its ``save`` wrote) is
    a start; a name, a model folder or an ``nn.Module`` is a backbone
    (None). A LoRA model, an unfitted one or a save of another kind is
    refused, naming ``param``.
    """
    from sklearn.exceptions import NotFittedError

    if isinstance(spec, BaseEstimator):
        est, where = spec, f"{param}={type(spec).__name__}(...)"
    else:
        name = _saved_class(spec)
        if name is None:
            return None
        est, where = None, f"{param}={os.fspath(spec)!r} (a save of a {name})"
        if name in _START_CLASSES:
            import hashlib

            path = os.path.realpath(os.fspath(spec))
            stamp = os.path.join(path, _persistence.MANIFEST)
            stamp = stamp if os.path.isfile(stamp) else os.path.join(path, "config.json")
            with open(stamp, "rb") as f:  # the content, not the time: a rewrite is always seen
                key = (path, hashlib.sha256(f.read()).hexdigest())
            with _saved_starts_lock:
                est = _saved_starts.get(key)
            if est is None:
                from . import _fine_tuning

                chain = getattr(_resolving, "paths", set())
                if path in chain:
                    raise ValueError(
                        f"{where}: the save names itself as its start, through {param} (a model saved into its "
                        "own start's directory?). Save each model of a chain in a directory of its own."
                    )
                _resolving.paths = chain | {path}
                try:
                    est = getattr(_fine_tuning, name).load(path)
                finally:
                    _resolving.paths = chain
                with _saved_starts_lock:
                    while len(_saved_starts) >= 4:  # a few held (a chain of starts), the oldest read first dropped
                        _saved_starts.pop(next(iter(_saved_starts)))
                    _saved_starts[key] = est
            return est
    kind = type(est).__name__ if est is not None else name
    if kind not in _START_CLASSES:
        hint = (
            " Merge its adapters first: backbone=lora.merge() (a FineTunedClassifier), or its save directory."
            if kind == "LoRAClassifier" else ""
        )
        raise ValueError(
            f"{where}: a fitted model as the start of another fit must be a FineTunedClassifier or "
            f"FineTunedRegressor (its trained body is trained on with a new head), not a {kind}.{hint}"
        )
    try:
        check_is_fitted(est, "net_")
    except NotFittedError as exc:
        raise NotFittedError(
            f"{where} is not fitted: a model given as the backbone is the start of this fit (its trained body, "
            "a new head), so fit it first (or pass a backbone name). In a parameter grid, list the starts' save "
            "directories: GridSearchCV clones the values of a grid, which leaves a model unfitted."
        ) from exc
    return est


def _check_not_into_a_start(path, backbone):
    """Refuse to save into the directory of the model's start (or of any start before it)."""
    target = os.path.realpath(os.fspath(path))
    spec = backbone
    while isinstance(spec, (str, os.PathLike)) and _saved_class(spec) in _START_CLASSES:
        if os.path.realpath(os.fspath(spec)) == target:
            raise ValueError(
                f"save(path={os.fspath(path)!r}) would overwrite this model's start (backbone={backbone!r}): "
                "the start's weights would be lost and the save would name itself. Save into another directory."
            )
        spec = start_estimator(spec).backbone


def resolve_backbone(spec, pooling="mean"):
    """:func:`~sktransfer.load_backbone` (on the CPU), or a start's backbone carrying its trained body.

    For a fitted model (or its save directory), the backbone it was trained
    from (itself resolved: a chain of starts goes back to the pretrained
    name) with the model's trained body in place of the pretrained one:
    same preprocessing, tokenizer and block groups, the start's weights
    (and fingerprint). The body is the start's own module (not a copy):
    fitting copies it before training.
    """
    start = start_estimator(spec)
    if start is None:
        return load_backbone(spec, device="cpu", pooling=pooling)
    import copy

    base = resolve_backbone(start.backbone, start.pooling)
    body = start._core_module().body
    if any(t.device.type != "cpu" for t in body.state_dict().values()):
        body = trainable_copy(body).cpu()
    bb = copy.copy(base)
    bb.body = body
    bb._fingerprint = None
    return bb


class _SkorchTransferBase(TransformerMixin, BaseEstimator):
    """Fit/predict plumbing: inputs → rows (a RowDataset, batches prepared as read) → skorch → outputs."""

    def __getstate__(self):
        state = super().__getstate__()
        state = {k: v for k, v in state.items() if k != "_runners"}  # native sessions: loaded again from the cache
        if state.get("accelerator") is not None:
            # Bound to this process (its device, process group, accelerate's
            # process-wide state): not pickled, as not saved. The model is.
            state["accelerator"] = None
        net = state.get("net_")
        if net is not None and net.__dict__.get("module") is net.__dict__.get("module_"):
            # skorch pickles module_ apart from its constructor argument
            # ``module``, the same object here: the weights would be stored twice.
            light = object.__new__(type(net))
            light.__dict__.update(net.__dict__, module=_SAME_AS_MODULE_)
            state = {**state, "net_": light}
        return state

    def __setstate__(self, state):
        net = state.get("net_")
        if net is not None and isinstance(net.__dict__.get("module"), str) and net.module == _SAME_AS_MODULE_:
            net.module = net.module_
        super().__setstate__(_with_legacy_params(type(self), state))

    # ------------------------------------------------------------- hooks
    def _build_module(self, shared, n_out):
        """The torch module to train (default: body + new head)."""
        body = trainable_copy(shared.body)
        for p in body.parameters():
            p.requires_grad_(True)
        head = make_head(shared.embedding_dim, n_out, self.head, self.head_hidden, self.head_dropout)
        normalize = shared.input_normalization()
        return TransferModule(
            body, head, shared.modality, normalize, self._augments(), shared.block_groups(),
            freeze_bn_stats=self._freezes_bn_stats(),
        )

    def _augments(self):
        """Hook: whether images are augmented in training (``augment``; ``"auto"``: yes)."""
        return True if isinstance(self.augment, str) and self.augment == "auto" else bool(self.augment)

    def _freezes_bn_stats(self):
        """Hook: whether BatchNorm layers keep their pretrained statistics (estimators without the option: no)."""
        return False

    def _method_callbacks(self, module, shared):
        return []

    def _after_training_steps(self, module):
        """Hook: callables ``step(net, X, y)`` run in order on the trained model (FineTuned*: WiSE-FT).

        Called before training, with the module as it starts, so that a step
        can keep what it needs of the initial weights.
        """
        return []

    def _net_kwargs(self):
        return {}

    # -------------------------------------------------------- validation
    # What each parameter shared by every trained estimator may be, checked
    # by sklearn in fit (``_check_params``) before any model loads. Each
    # estimator's table is ``{**_SkorchTransferBase._parameter_constraints, ...}``
    # with its own parameters (sklearn merges nothing itself).
    _parameter_constraints: dict = {
        "backbone": [str, torch.nn.Module],
        "head": [StrOptions({"linear", "mlp"})],
        "head_hidden": [Interval(Integral, 1, None, closed="left")],
        "head_dropout": [Interval(Real, 0, 1, closed="both")],
        "head_init": [StrOptions({"auto", "random", "probe"})],
        # "auto": a learning-rate range test on the training data (_lr_finder).
        "lr": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "warmup": [Interval(Real, 0, 1, closed="both")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "grad_clip": [Interval(Real, 0, None, closed="neither"), None],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "validation_fraction": [Interval(Real, 0, 0.9, closed="both")],
        "early_stopping": [Interval(Integral, 1, None, closed="left"), None],
        "augment": ["boolean", StrOptions({"auto"})],
        "image_size": [Interval(Integral, 1, None, closed="left"), None],
        "max_length": [Interval(Integral, 1, None, closed="left"), None],
        "pooling": [StrOptions({"mean", "cls"})],
        "bf16": ["boolean"],
        "device": [str, torch.device, None],
        # DataLoader worker processes that prepare the batches (decode, tokenize); not in the checkpoint's name.
        "num_workers": [Interval(Integral, 0, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "callbacks": [list, tuple, None],
        # An accelerate.Accelerator (duck-typed: accelerate is imported only when one is given).
        "accelerator": [HasMethods(["prepare", "unwrap_model"]), None],
    }

    def _check_params(self):
        """Validate the parameters (fit, and ``load`` on a saved config), before any model loads.

        The table first (:func:`~sktransfer._validation.check_params`), then
        what it can't express: rules between parameters and the device's
        syntax. Subclasses extend this with their own such rules.
        """
        check_params(self)
        check_backbone_and_device(self.get_params(deep=False))
        check_accelerator_device(self.device, self._accelerator())
        if self.early_stopping is not None and not self.validation_fraction:
            raise ValueError(
                f"early_stopping needs validation data (early_stopping={self.early_stopping!r}, "
                f"validation_fraction={self.validation_fraction!r}): set validation_fraction, e.g. 0.2."
            )
        from ._head_init import check_head_init

        check_head_init(self)
        check_inference_backend(self)

    # ------------------------------------------------------------ inputs
    def _training_data(self, X, y_enc, bb):
        """The validated rows of ``X`` with their targets, as a :class:`~sktransfer._data.RowDataset`.

        Nothing is decoded or tokenized here: batches are prepared as they
        are read (in ``num_workers`` loader processes). Texts longer than the
        model's limit are counted now, with one warning per fit.
        """
        items = bb.check_inputs(X)
        bb.warn_truncation(items, self.max_length)
        if bb.modality == "image":
            check_image_headers(items)  # a file that is no image fails before training, not at its batch
        return RowDataset(bb, items, y_enc, max_length=self.max_length, image_size=self.image_size)

    def _encode_X(self, X, bb, fitting):
        """Every row of ``X`` preprocessed at once into arrays (the backbone's ``encode``).

        Not used to train or predict (they read batches as they go): the
        model's inputs of a few rows, for inspection and tests.
        """
        return bb.encode(bb.check_inputs(X), self.max_length, self.image_size, warn_truncation=fitting)

    def _num_workers(self):
        # Estimators pickled or saved before the parameter read 0.
        return int(getattr(self, "num_workers", 0) or 0)

    def _accelerator(self):
        # Estimators pickled or saved before the parameter had none.
        return getattr(self, "accelerator", None)

    # --------------------------------------------------------------- fit
    def _fit(self, X, y_enc, n_out, stratify):
        self._forget_compiled(refs=True)
        self.device_ = fit_device(self.device, self._accelerator())  # an accelerator's: its own
        # Everything random runs on a fork of torch's global generators, which
        # are the user's and are left as they were (sktransfer._seeding).
        with isolated_torch_rng(self.device_):
            # Load before seeding: the first load of a backbone in a process
            # builds it with random init before reading its weights, which
            # would make the first fit differ from the later ones.
            shared = resolve_backbone(self.backbone, self.pooling)
            self.modality_ = shared.modality
            self.backbone_source_ = shared.source
            data = self._training_data(X, y_enc, shared)
            # One concrete seed for the whole fit, also with random_state=None:
            # the validation split, and WiSE-FT's second pass over the training
            # rows (callbacks._training_rows), must be one and the same split.
            seed = fit_seed(self.random_state)
            checkpoint = state = None
            self.checkpoint_path_ = None
            if getattr(self, "checkpoint_dir", None):
                fingerprint = self._checkpoint_fingerprint(shared, data, y_enc, n_out, seed)
                self.checkpoint_path_ = os.path.join(str(self.checkpoint_dir), fingerprint)
                checkpoint = ResumableCheckpoint(self.checkpoint_path_, fingerprint, seed, self.max_epochs)
                state = checkpoint.read_state()
                if state is not None:
                    # A random_state=None fit resumes with the seed it drew, and
                    # keeps writing that one (not the one drawn now) in its checkpoints.
                    checkpoint.seed = seed = state["seed"]
            # Seeds the (forked) torch generator: init, dropout, augmentation;
            # the DataLoader shuffles with its own generator, the validation
            # split gets the seed itself (numpy's global state is untouched).
            seed_torch(seed, self.device_)
            generator = data_generator(seed)
            module = self._build_module(shared, n_out)
            self._init_head(module, data, y_enc, stratify, seed)
            self._train(module, shared, data, y_enc, stratify, seed, generator, checkpoint, state)
            self._compile_after_fit(X, shared)
        return self

    def _init_head(self, module, data, y_enc, stratify, seed):
        """Hook: set the new head before training (FineTuned*: ``head_init="probe"``); ``data``: a RowDataset."""

    def _checkpoint_fingerprint(self, shared, data, y_enc, n_out, seed):
        """Name of this fit's checkpoint: a hash of what the fit trains on and how.

        Covers the inputs (the content digest of each row, in order: a
        file's bytes, an array's or image's pixels, a text's characters;
        nothing is decoded), the targets, the classes
        (or the targets' scaling), every parameter that changes training
        (not ``verbose``, ``device``, ``num_workers``, ``callbacks`` or ``checkpoint_dir``;
        of ``accelerator``, its settings, not the object),
        the seed (``random_state=None``: None, so that the same fit resumes
        with the seed its checkpoint keeps) and the backbone's weights. Two
        fits share a checkpoint only when they would train the same model.
        """
        import hashlib

        params = self.get_params(deep=False)
        for name in ("verbose", "device", "num_workers", "callbacks", "checkpoint_dir"):
            params.pop(name, None)
        params["random_state"] = None if self.random_state is None else seed
        accelerator = params.pop("accelerator", None)
        if accelerator is not None:  # None leaves the names of the runs before the parameter as they were
            params["accelerator"] = accelerator_fingerprint(accelerator)
        # 2: WiSE-FT no longer inside the final save; 3: inputs hashed per row (lazy training data).
        h = hashlib.sha256(b"sktransfer-checkpoint-3\0")
        h.update(f"{type(self).__module__}.{type(self).__name__}\0{sorted(params.items())!r}\0".encode())
        h.update(f"{shared.fingerprint()}\0{shared.source}\0{n_out}\0".encode())
        for name in ("classes_", "y_mean_", "y_scale_"):
            value = getattr(self, name, None)
            if value is not None:
                h.update(f"{name}={np.asarray(value).tolist()!r}\0".encode())
        digest = text_digest if shared.modality == "text" else image_digest
        h.update(f"inputs:{shared.modality}:{len(data)}\0".encode())
        for row in data.rows:
            h.update(digest(data.items[row]).encode())
        y = np.ascontiguousarray(y_enc)
        h.update(f"y:{y.dtype.str}:{y.shape}\0".encode())
        h.update(y.tobytes())
        return "run-" + h.hexdigest()[:24]

    def _train(self, module, shared, data, y_enc, stratify, seed, generator, checkpoint, state):
        from skorch.callbacks import EarlyStopping, GradientNormClipping, ProgressBar
        from skorch.dataset import ValidSplit

        # skorch's ValidSplit (sklearn's shuffle splits) rounds the validation part up.
        n_train = len(y_enc) - int(np.ceil(len(y_enc) * self.validation_fraction))
        # A last training batch of one row has no batch statistics: a
        # BatchNorm layer that trains fails on it. Drop it (the rows are
        # shuffled every epoch, so a different one sits out each time).
        drop_last = n_train > 1 and n_train % self.batch_size == 1
        cbs = list(self._method_callbacks(module, shared))
        # Its length is counted from skorch's own loader at on_train_begin.
        cbs.append(("schedule", WarmupCosine(None, self.warmup)))
        if self.grad_clip:
            cbs.append(("clip", GradientNormClipping(self.grad_clip)))
        early = None
        if self.early_stopping:
            early = EarlyStopping(patience=self.early_stopping, load_best=True)
            cbs.append(("early_stopping", early))
        if self.verbose and self.verbose > 1:
            cbs.append(("progress", ProgressBar()))
        for i, cb in enumerate(self.callbacks or []):
            cbs.append(cb if isinstance(cb, tuple) else (f"user_{i}", cb))
        if checkpoint is not None:
            # Last: its on_train_end saves the final model, after EarlyStopping
            # restored the best weights in its own.
            checkpoint.generator, checkpoint.early_stopping = generator, early
            cbs.append(("checkpoint", checkpoint))
        after = self._after_training_steps(module)  # before training: they may keep the initial weights
        split = False
        if self.validation_fraction:
            split = ValidSplit(self.validation_fraction, stratified=stratify, random_state=seed)
        net = make_net(
            module,
            self._criterion(y_enc),
            lr=_lr_finder.START_LR if self.lr == "auto" else self.lr,  # "auto": set below
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            generator=generator,
            callbacks=cbs,
            device=self.device_,
            verbose=self.verbose,
            weight_decay=self.weight_decay,
            train_split=split,
            drop_last=drop_last,
            collate_fn=data.collate,  # batches prepared as they are read (decoded, padded to their longest)
            num_workers=self._num_workers(),
            bf16=bool(self.bf16),
            accelerator=self._accelerator(),  # None: a plain TransferNet
            **self._net_kwargs(),
        )
        net.initialize()
        self.lr_, self.lr_finder_ = float(net.lr), None
        if self.lr == "auto":
            # skorch has no LR finder: an LR range test on skorch's own steps
            # (sktransfer._lr_finder), from the initial state, which it leaves
            # as it found it. It runs again on resume (same seed, same rate).
            self.lr_finder_ = _lr_finder.lr_range_test(net, data, torch.as_tensor(y_enc), seed)
            self.lr_ = net.lr = self.lr_finder_.lr
            net.initialize_optimizer()  # the groups at their shares of lr_
        epochs = self.max_epochs
        if state is not None:
            checkpoint.restore(net, state)
            epochs = 0 if state.get("finished") else self.max_epochs - len(net.history)
            if self.verbose:
                print(f"Resuming from {checkpoint.dirname}: {len(net.history)} epochs done, {max(epochs, 0)} to go.")
        if epochs > 0:
            net.partial_fit(data, torch.as_tensor(y_enc), epochs=epochs)
        for step in after:  # explicit steps on the trained model (also a resumed, finished one)
            step(net, data, torch.as_tensor(y_enc))
        # The loaders' collate function holds the rows: not pickled with the model. A net
        # trained through an accelerator is a plain TransferNet from here on (on its device).
        self.net_ = release_data(net)
        self.n_epochs_ = len(net.history)
        self.history_ = net.history
        return self

    def _record_in_checkpoint(self):
        """A finished checkpoint says which estimator it is: ``final-estimator.json``.

        Class, parameters (as :meth:`save` writes them), fitted state and
        the learning rate used, listed with its SHA-256 in the run's
        ``checkpoint.json``: what ``sktransfer.merging.soup`` needs to
        rebuild the fits of a search run with ``refit=False`` and match them
        to its candidates. Written once, after ``fit`` (a LoRA's fitted
        state is complete only then); resuming ignores it.
        """
        run = getattr(self, "checkpoint_path_", None)
        if not run or not isinstance(self.backbone, str):
            return
        import json

        from ._utils import atomic_write_bytes, sha256_file

        state_path = os.path.join(run, ResumableCheckpoint.STATE)
        try:
            with open(state_path, encoding="utf-8") as f:
                state = json.load(f)
        except (OSError, ValueError):
            return  # no finished checkpoint to annotate (the run's own errors are reported by resume)
        if not state.get("finished") or "estimator" in state.get("files", {}):
            return
        meta = {"class": type(self).__name__, "params": self._config(),
                "fitted": {**self._fitted_json(), "lr": float(self.lr_)}}
        path = os.path.join(run, "final-estimator.json")
        atomic_write_bytes(path, json.dumps(meta, indent=1, default=str).encode("utf-8"))
        state["files"]["estimator"] = [os.path.basename(path), sha256_file(path)]
        atomic_write_bytes(state_path, json.dumps(state, indent=1).encode("utf-8"))

    # --------------------------------------------------------- inference
    def _core_module(self):
        """The TransferModule, also when PEFT wraps it."""
        m = self.net_.module_
        return m.get_base_model() if hasattr(m, "get_base_model") else m

    def _forward(self, X, features=False):
        check_is_fitted(self, "net_")
        with isolated_torch_rng():  # for its tokenizer; a first load in a process draws random numbers
            bb = resolve_backbone(self.backbone, self.pooling)
        backend, quantize = _inference_settings(self)
        if backend != "torch":
            return self._compiled_forward(bb, X, backend, quantize, "embedding" if features else None)
        items = bb.check_inputs(X)
        module = self.net_.module_
        module.eval()
        fn = self._core_module().features if features else module
        # The one inference loop (batches prepared one at a time, texts padded to
        # their batch's longest), in the precision it trained in (bf16 autocast
        # on CUDA), as net.infer.
        return run_in_batches(
            fn, bb, items, batch_size=max(self.batch_size, 32), device=self.net_.device,
            max_length=self.max_length, image_size=self.image_size, precision=self.net_.precision,
        )

    # ------------------------------------------------ compiled inference
    def _export_module(self):
        """Hook: the plain trained :class:`TransferModule` to export (LoRA: the merged model)."""
        return self._core_module()

    def _export_output(self):
        return "logits"

    def _export_rescale(self):
        return None, None

    def _export_spec(self, bb):
        import copy

        module = self._export_module()
        if any(p.device.type != "cpu" for p in module.parameters()):
            module = copy.deepcopy(module).cpu()
        mean, scale = self._export_rescale()
        return export_spec(
            module.eval(), bb, output=self._export_output(), mean=mean, scale=scale,
            max_length=self.max_length, image_size=self.image_size,
        )

    def _export_name(self):
        return f"{type(self).__name__} on {self.backbone if isinstance(self.backbone, str) else type(self.backbone).__name__!r}"

    def _compiled_forward(self, bb, X, backend, quantize, output):
        return compiled_forward(self, bb, X, backend, quantize, output, max(self.batch_size, 32))

    def _compile_after_fit(self, X, bb):
        """With a compiled ``inference_backend``: build it now (a calibrated int8 model needs the training rows)."""
        backend, quantize = _inference_settings(self)
        if backend != "torch":
            compiled_runner(self, bb, backend, quantize, calibration=bb.check_inputs(X))

    def _forget_compiled(self, refs=False):
        _forget_compiled(self, refs)

    def transform(self, X):
        """Embeddings from the trained backbone (the head's input).

        Parameters
        ----------
        X : list, array, Series or one-column DataFrame

        Returns
        -------
        X_new : ndarray of shape (n_samples, embedding_dim), float32
        """
        return self._forward(X, features=True).astype(np.float32)

    def fit_transform(self, X, y=None, **fit_params):
        return self.fit(X, y, **fit_params).transform(X)

    # ------------------------------------------------------- persistence
    _SAVED_FILES = ("config.json", "model.safetensors")

    def _config(self):
        params = self.get_params()
        params.pop("callbacks", None)
        params.pop("accelerator", None)  # a run-time object, as callbacks: never saved (loads as None)
        if "checkpoint_dir" in params:
            params["checkpoint_dir"] = None
        if isinstance(params.get("class_weight"), dict):
            # JSON keys are strings: pairs keep integer class labels intact.
            params["class_weight"] = [[getattr(k, "item", lambda: k)(), float(v)] for k, v in params["class_weight"].items()]
        if isinstance(self.backbone, BaseEstimator):
            raise ValueError(
                f"save() needs a backbone given by name or path to rebuild the model; this one started from a fitted "
                f"{type(self.backbone).__name__} held in memory (backbone=<estimator>). Save the start first "
                "(start.save(dir_a)) and fit with backbone=dir_a, whose saves then name it."
            )
        if not isinstance(params["backbone"], str):
            raise ValueError("save() needs a backbone given by name or path (not an nn.Module) to rebuild it.")
        if start_estimator(params["backbone"]) is not None:
            # The start's directory, absolute: the save is read from anywhere.
            params["backbone"] = os.path.abspath(os.path.expanduser(params["backbone"]))
        return params

    def _write_config(self, path, extra=None):
        fitted = {**self._fitted_json(), "lr": float(self.lr_)}  # lr="auto"'s choice, to train on at the same rate
        meta = {"class": type(self).__name__, "params": self._config(), "fitted": fitted, **(extra or {})}
        _persistence.write_config(path, meta)

    @classmethod
    def _read_config(cls, path):
        """Verify the save in ``path`` (manifest, parameters) and rebuild the unfitted estimator."""
        meta = _persistence.read_saved_config(path, cls, cls._SAVED_FILES, stacklevel=3)
        params = dict(meta["params"])
        for name in ("callbacks", "accelerator"):
            if name in cls._get_param_names():
                params.setdefault(name, None)  # never saved (_config)
        if isinstance(params.get("class_weight"), list):
            try:
                params["class_weight"] = {k: v for k, v in params["class_weight"]}
            except (TypeError, ValueError) as exc:
                raise _persistence.SaveIntegrityError(
                    f"{os.path.join(str(path), 'config.json')!r}: class_weight is not a list of [label, weight] pairs."
                ) from exc
        est = _persistence.build_estimator(cls, params, path, legacy=_with_legacy_params)
        config = os.path.join(str(path), "config.json")
        fitted = meta.get("fitted")
        try:
            est._restore_fitted(fitted)
            if "lr" in fitted:  # saves before 0.1 kept no rate: lr_ is then lr (1e-3 for "auto")
                est.lr_ = float(fitted["lr"])
                if not (math.isfinite(est.lr_) and est.lr_ > 0):
                    raise ValueError(f"lr {fitted['lr']!r} is not a positive number")
        except (KeyError, TypeError, ValueError) as exc:
            raise _persistence.SaveIntegrityError(f"{config!r} has no valid fitted state ('fitted': {exc!r}).") from exc
        if issubclass(cls, _ClassifierOutputs):
            est.classes_ = _persistence.check_classes(fitted["classes"], config)
        else:
            est.y_mean_, est.y_scale_ = _persistence.check_regression_state(
                fitted["n_outputs"], fitted["y_1d"], fitted["y_mean"], fitted["y_scale"], config
            )
        try:  # class_weight is checked against the classes, which fit's checks can't see
            est._criterion(np.arange(est._n_out_fitted()))
        except (TypeError, ValueError) as exc:
            raise _persistence.SaveIntegrityError(f"{config!r} holds an invalid parameter: {exc}") from exc
        return est, meta

    def _describe_saved(self):
        """What the config says the model is, for errors about weights that don't fit it."""
        n = self._n_out_fitted()
        what = f"{n} classes" if hasattr(self, "classes_") else f"{n} outputs"
        return f"backbone {self.backbone!r}, {what}, head {self.head!r}"

    def _attach_net(self, module):
        """Wrap a ready module in a skorch net for inference (after load)."""
        self.device_ = fit_device(self.device, self._accelerator())
        # The estimator's own loss, as in fit (for training on after load);
        # class_weight="balanced" needs the training labels, which a save
        # does not keep, so it comes back unweighted.
        criterion = self._criterion(np.arange(self._n_out_fitted()))
        # The rate it trained at (lr_, restored from the save; 1e-3 for an
        # lr="auto" save from before the rate was kept).
        lr = self.__dict__.get("lr_", self.lr)
        net = _TransferNet(
            module=module,
            criterion=criterion,
            lr=1e-3 if lr == "auto" else lr,
            device=self.device_,
            predict_nonlinearity=None,
            batch_size=self.batch_size,
            bf16=bool(self.bf16),
            **self._net_kwargs(),
        )
        net.initialize()
        self._forget_compiled()
        self.net_ = net
        self.modality_ = self._core_module().modality
        return self

    def save(self, path):
        """Save weights as safetensors plus a JSON config in directory ``path``.

        Writes ``model.safetensors``, ``config.json`` and ``manifest.json``
        (the SHA-256 of each file). :meth:`load` checks the digests, rebuilds
        the backbone from its name and reads tensors only: no pickle, no
        arbitrary code.
        """
        from safetensors.torch import save_file

        check_is_fitted(self, "net_")
        self._config()  # what cannot be saved is refused before anything is written
        _check_not_into_a_start(path, self.backbone)
        os.makedirs(path, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.net_.module_.state_dict().items()}
        save_file(state, os.path.join(path, "model.safetensors"))
        self._write_config(path)
        # Files _write_config added (FineTuned*: the WiSE-FT fine-tuned weights) are listed too.
        _persistence.write_manifest(path, self._SAVED_FILES + self._extra_saved_files(), type(self).__name__)
        return path

    def _extra_saved_files(self):
        """Hook: files a save holds beyond ``_SAVED_FILES`` (written by ``_write_config``), for the manifest."""
        return ()

    @classmethod
    def load(cls, path, backbone=None):
        """Rebuild a fitted estimator saved with :meth:`save`.

        The files are checked against ``manifest.json`` first: a file that
        changed since :meth:`save` raises
        :class:`~sktransfer.SaveIntegrityError` naming it (a
        ``ValueError``), as do invalid parameters and weights that don't fit
        the configured model. A save without a manifest (older versions)
        loads with an :class:`~sktransfer.UnverifiedSaveWarning`.

        Parameters
        ----------
        path : str
            Directory written by :meth:`save`.
        backbone : str or None, default=None
            Build the model from this backbone instead of the saved name
            (e.g. a local copy where the hub is unreachable). The saved
            weights replace its weights, so it must be the same architecture:
            another one is refused, naming the tensors that don't fit.
        """
        est, _ = cls._read_config(path)
        if backbone is not None:
            est.backbone = backbone
        with isolated_torch_rng():  # the backbone's first load and the new head's init draw random numbers
            shared = resolve_backbone(est.backbone, est.pooling)
            module = est._build_module(shared, est._n_out_fitted())
        est.backbone_source_ = shared.source
        state = _persistence.load_tensors(path, "model.safetensors")
        _persistence.check_state_fits(module.state_dict(), state, path, "model.safetensors", est._describe_saved())
        module.load_state_dict(state, strict=True)
        return est._attach_net(module)


class _Exportable:
    """``export``: for the estimators whose trained model is exported (FineTuned*, LoRA; not DANN yet)."""

    def export(self, path, backend="onnx", quantize=None, calibration=None):
        """Write the trained model (body + head → logits) for ONNX Runtime or OpenVINO.

        The file is the model ``predict`` runs with ``inference_backend=backend``
        and ``inference_quantize=quantize`` (both go through one cache, keyed
        by the trained weights): a classifier's graph maps the backbone's
        inputs to ``"logits"`` (softmax them for ``predict_proba``) and
        ``"embedding"``; a regressor's to ``"predictions"`` in the units of
        ``y``, and ``"embedding"``. Inputs are the backbone's: ``input_ids``
        and ``attention_mask`` (int64, padded) for text, uint8 crops ``X``
        ``(n, 3, S, S)`` for images, normalised inside the graph. A LoRA
        model is exported merged.

        Parameters
        ----------
        path : str or path-like
            ONNX: the file to write (e.g. ``"clf.onnx"``). OpenVINO: the
            ``.xml`` file; the weights go beside it in ``.bin``.
        backend : {"onnx", "openvino"}, default="onnx"
        quantize : {None, "int8"}, default=None
            int8: dynamic weights-only for transformers on ONNX Runtime;
            static, calibrated by NNCF, for CNNs and for OpenVINO.
        calibration : rows of X, default=None
            Inputs to calibrate static int8 on (e.g. the training rows; at
            most 256 are used). Not needed when the model was fitted with
            the same ``inference_backend`` and ``inference_quantize``.

        Returns
        -------
        path : str, or tuple of str (xml, bin) for OpenVINO
            What was written.
        """
        return export_model(self, path, backend, quantize, calibration)


class _ClassifierOutputs:
    """Labels in, labels and probabilities out (shared by classifiers)."""

    def fit(self, X, y):
        """Train on ``X`` (texts or images) and labels ``y``.

        Parameters
        ----------
        X : list, array, Series or one-column DataFrame
        y : array-like of shape (n_samples,)
            Class labels (strings or numbers).

        Returns
        -------
        self
        """
        self._check_params()
        y, classes, y_enc = encode_labels(y, n_rows=len(as_rows(X)))
        self.classes_ = classes
        self._fit(X, y_enc.astype(np.int64), len(classes), True)
        self._record_in_checkpoint()
        return self

    def _criterion(self, y_enc):
        cw = self.class_weight
        if cw is None:
            return torch.nn.CrossEntropyLoss
        if isinstance(cw, str):  # "balanced" (the table refuses other strings)
            weights = compute_class_weight("balanced", classes=np.arange(len(self.classes_)), y=y_enc)
        else:  # a dict; its keys are checked here, against the classes (no table can)
            unknown = set(cw) - set(self.classes_.tolist())
            if unknown:
                raise ValueError(f"class_weight names classes not in y: {sorted(unknown, key=str)}.")
            weights = np.array([cw.get(c, 1.0) for c in self.classes_.tolist()], dtype=float)
        return _WeightedCrossEntropy(torch.as_tensor(weights, dtype=torch.float32))

    def _fitted_json(self):
        return {"classes": [c.item() if hasattr(c, "item") else c for c in self.classes_]}

    def _restore_fitted(self, fitted):
        self.classes_ = np.asarray(fitted["classes"])

    def _n_out_fitted(self):
        return len(self.classes_)

    def decision_function(self, X):
        """Logits of the head, shape (n_samples, n_classes)."""
        check_is_fitted(self, ("classes_", "net_"))
        return self._forward(X)

    def predict_proba(self, X):
        """Class probabilities (softmax of the logits), columns in ``classes_`` order."""
        check_is_fitted(self, ("classes_", "net_"))
        return torch.softmax(torch.as_tensor(self._forward(X)), dim=1).numpy()

    def predict(self, X):
        """Predicted class labels."""
        check_is_fitted(self, ("classes_", "net_"))
        return self.classes_[np.argmax(self._forward(X), axis=1)]

    def score(self, X, y, sample_weight=None):
        """Accuracy. Labels never seen in ``fit`` raise an error."""
        check_is_fitted(self, "classes_")
        y, _ = encode_known_labels(y, self.classes_)
        return super().score(X, y, sample_weight=sample_weight)

    def __sklearn_tags__(self):
        return _trained_model_tags(super().__sklearn_tags__(), self.random_state)


class _RegressorOutputs:
    """Continuous targets, standardised inside, original units outside."""

    def fit(self, X, y):
        """Train on ``X`` and continuous targets ``y`` (1-D or 2-D)."""
        self._check_params()
        y2 = check_targets(y, n_rows=len(as_rows(X)))
        self.n_outputs_ = y2.shape[1]
        self._y_1d = np.ndim(y) == 1
        self.y_mean_ = y2.mean(axis=0)
        std = y2.std(axis=0)
        self.y_scale_ = np.where(std > 0, std, 1.0)
        y_enc = ((y2 - self.y_mean_) / self.y_scale_).astype(np.float32)
        self._fit(X, y_enc, self.n_outputs_, False)
        self._record_in_checkpoint()
        return self

    def _criterion(self, y_enc):
        return torch.nn.MSELoss

    def _fitted_json(self):
        return {"n_outputs": int(self.n_outputs_), "y_1d": bool(self._y_1d), "y_mean": self.y_mean_.tolist(), "y_scale": self.y_scale_.tolist()}

    def _restore_fitted(self, fitted):
        self.n_outputs_ = fitted["n_outputs"]
        self._y_1d = fitted["y_1d"]
        self.y_mean_ = np.asarray(fitted["y_mean"])
        self.y_scale_ = np.asarray(fitted["y_scale"])

    def _n_out_fitted(self):
        return self.n_outputs_

    def _export_output(self):
        return "predictions"

    def _export_rescale(self):
        return self.y_mean_, self.y_scale_

    def predict(self, X):
        """Predicted targets, in the units of ``y``."""
        if _inference_settings(self)[0] != "torch":  # the compiled graph puts them back in y's units
            pred = self._forward(X).astype(np.float64)
        else:
            pred = self._forward(X) * self.y_scale_ + self.y_mean_
        return pred[:, 0] if self._y_1d else pred

    def __sklearn_tags__(self):
        return _trained_model_tags(super().__sklearn_tags__(), self.random_state)


# ------------------------------------------------------ compiled inference
# Shared by every estimator with a trained body (FineTuned*, LoRA, FewShot).
# ``inference_backend`` / ``inference_quantize`` are parameters that only
# change predict/transform (as ``n_jobs`` does in sklearn): they are cloned,
# saved and searched like any other, and ``set_params`` on a fitted model
# takes effect at its next predict. A calibrated int8 model (images; any
# OpenVINO int8) is built at ``fit``, on the rows it trains on.
def _inference_settings(est):
    return getattr(est, "inference_backend", "torch"), getattr(est, "inference_quantize", None)


def check_inference_backend(est):
    """``inference_quantize`` needs a compiled backend; a missing package is named (with its extra) before fit."""
    backend, quantize = _inference_settings(est)
    if quantize is not None and backend == "torch":
        raise ValueError(
            f"inference_quantize={quantize!r} needs inference_backend='onnx' or 'openvino' (the torch "
            "model runs in float32). Set inference_backend, or inference_quantize=None."
        )
    if backend != "torch":
        from ._runtime import require_backend

        require_backend(backend, quantize)


def _forget_compiled(est, refs=False):
    est.__dict__.pop("_runners", None)
    if refs:
        est.__dict__.pop("_compiled_refs", None)


def compiled_runner(est, bb, backend, quantize, calibration=None):
    """The trained model compiled for ``backend`` (cached on ``est`` and on disk, by the trained weights)."""
    from . import _runtime

    runners = est.__dict__.setdefault("_runners", {})
    runner = runners.get((backend, quantize))
    if runner is not None:
        return runner
    spec = est._export_spec(bb)
    refs = est.__dict__.setdefault("_compiled_refs", {})
    ref = refs.get((backend, quantize))
    if ref is not None:  # built at fit (calibrated int8): read back, e.g. after unpickling
        runner = _runtime.load_compiled_module(ref[0], ref[1], spec.input_names, backend, quantize)
    if runner is None:
        if calibration is None and _runtime.is_static(backend, quantize, spec):
            why = (
                "its calibrated model is no longer in the compiled-model cache"
                if ref is not None
                else "it is calibrated on the rows given to fit, and this model was fitted (or loaded) with "
                f"inference_backend={_inference_settings(est)[0]!r} at the time"
            )
            raise ValueError(
                f"inference_backend={backend!r} with inference_quantize={quantize!r} needs calibration rows: {why}. "
                "Fit again with these settings, or export(path, backend=..., quantize='int8', calibration=X) "
                "and run the exported file."
            )
        runner = _runtime.compile_module(
            spec, _runtime.module_fingerprint(spec.module), backend, quantize, name=est._export_name(),
            backbone=bb, calibration=calibration, max_length=est.max_length, image_size=est.image_size,
        )
        if runner.path is not None:
            refs[(backend, quantize)] = (runner.path, runner.key)
    runners[(backend, quantize)] = runner
    return runner


def compiled_forward(est, bb, X, backend, quantize, output, batch_size):
    """Rows ``X`` through the compiled model: its ``output`` (None: the first, logits/predictions)."""
    runner = compiled_runner(est, bb, backend, quantize)
    name = output or runner.output_names[0]
    items = bb.check_inputs(X)

    def fn(**batch):
        return torch.from_numpy(runner.run(batch, (name,))[name])

    return run_in_batches(
        fn, bb, items, batch_size=batch_size, device="cpu", max_length=est.max_length, image_size=est.image_size,
    )


EXPORT_BACKENDS = ("onnx", "openvino")


def export_model(est, path, backend, quantize, calibration):
    """``est.export``: the compiled model's files written to ``path``."""
    from . import _runtime

    check_is_fitted(est)
    if backend not in EXPORT_BACKENDS:
        raise ValueError(
            f"backend={backend!r} cannot be exported; valid values: "
            + ", ".join(repr(b) for b in EXPORT_BACKENDS) + " (a torch model is saved with save(path))."
        )
    _runtime.check_backend(backend, quantize)
    with isolated_torch_rng():
        bb = resolve_backbone(est.backbone, est.pooling)
    spec = est._export_spec(bb)
    ref = est.__dict__.get("_compiled_refs", {}).get((backend, quantize))
    parts = _runtime.load_entry(*ref) if ref is not None and calibration is None else None
    if parts is None:
        if calibration is None and _runtime.is_static(backend, quantize, spec):
            raise ValueError(
                f"quantize={quantize!r} with backend={backend!r} is calibrated on inputs of the model: pass "
                "calibration=X (e.g. the rows given to fit; at most 256 are used)."
            )
        parts = _runtime.compiled_files(
            spec, _runtime.module_fingerprint(spec.module), backend, quantize, name=est._export_name(),
            backbone=bb, calibration=calibration, max_length=est.max_length, image_size=est.image_size,
        )
    return _runtime.write_model_files(parts, backend, path)

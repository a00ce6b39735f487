"""`MultiTaskClassifier` and `MultiTaskRegressor`: one backbone, one head per label column.

Trained jointly on the project's one trainer (``_training._SkorchTransferBase``
and ``_trainer.make_net``): the module is a
:class:`~sktransfer._transfer_module.TransferModule` whose head is k heads side
by side (their outputs concatenated), the loss a weighted sum of one loss per
task over the rows that have that task's label. Nothing of the loop is
re-implemented here; only *what* trains (the heads, a strategy or one shared
LoRA adapter) and the loss.
"""

import os
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn

from . import _persistence
from ._inputs import as_rows
from ._seeding import isolated_torch_rng
from ._training import _SkorchTransferBase, _with_legacy_params
from ._transfer_module import make_head
from ._utils import trained_model_tags
from ._validation import _is_missing, check_labels, encode_known_labels
from .backbones import load_backbone
from .callbacks import FreezeSchedule

MT_STRATEGIES = ("linear_probe", "partial", "full", "lora")
_HEAD_NAME = "task_head"


# --------------------------------------------------------------- the module
class _MultiHead(nn.Module):
    """k heads on one embedding; their outputs side by side, ``(n, sum of sizes)``."""

    def __init__(self, in_features, sizes, head="linear", hidden=256, dropout=0.1):
        super().__init__()
        self.sizes = [int(s) for s in sizes]
        self.heads = nn.ModuleList(make_head(in_features, s, head, hidden, dropout) for s in self.sizes)

    def forward(self, z):
        return torch.cat([h(z) for h in self.heads], dim=1)


class _MultiTaskLoss(nn.Module):
    """Weighted sum over tasks of each task's mean loss on its labelled rows of the batch.

    Classification: cross-entropy, a label ``-1`` (missing) is left out.
    Regression: squared error, a ``NaN`` target (missing) is left out. A task
    with no label in a batch adds nothing to that batch's loss.
    """

    def __init__(self, sizes, weights, regression=False):
        super().__init__()
        self.sizes = [int(s) for s in sizes]
        self.weights = [float(w) for w in weights]
        self.regression = bool(regression)

    def forward(self, y_pred, y_true):
        total = y_pred.sum() * 0.0  # a graph-connected zero: a batch with no label at all trains nothing
        start = 0
        for t, (size, weight) in enumerate(zip(self.sizes, self.weights)):
            out = y_pred[:, start : start + size].float()
            start += size
            target = y_true[:, t]
            if self.regression:
                keep = ~torch.isnan(target)
                if keep.any():
                    total = total + weight * nn.functional.mse_loss(out[keep, 0], target[keep].float())
            else:
                keep = target >= 0
                if keep.any():
                    total = total + weight * nn.functional.cross_entropy(out[keep], target[keep].long())
        return total


class _MultiTaskCriterion:
    """Picklable factory of the criterion (skorch instantiates it)."""

    def __init__(self, sizes, weights, regression=False):
        self.sizes, self.weights, self.regression = list(sizes), list(weights), regression

    def __call__(self):
        return _MultiTaskLoss(self.sizes, self.weights, self.regression)


# ------------------------------------------------------------------- labels
def _columns(Y, n_rows, what):
    """``Y`` as a 2-D object array and its column names (a DataFrame's, else ``"0"``, ``"1"``, ...)."""
    if Y is None:
        raise ValueError(f"Y is None; {what} needs a 2-D Y (n_samples, n_tasks): one column of labels per task.")
    names = [str(c) for c in Y.columns] if hasattr(Y, "columns") else None
    raw = Y.to_numpy(dtype=object) if hasattr(Y, "to_numpy") else np.asarray(Y, dtype=object)
    if raw.ndim != 2:
        raise ValueError(
            f"Y must be 2-D (n_samples, n_tasks), one column of labels per task; got shape {raw.shape}. "
            f"For a single task use {'FineTunedRegressor' if 'Regressor' in what else 'FineTunedClassifier'}, "
            "or pass Y as a column (n_samples, 1)."
        )
    if raw.shape[1] == 0:
        raise ValueError(f"Y has no columns (shape {raw.shape}); {what} needs at least one task.")
    if n_rows is not None and raw.shape[0] != n_rows:
        raise ValueError(f"X and Y have different lengths: {n_rows} inputs but {raw.shape[0]} rows of labels.")
    names = names or [str(j) for j in range(raw.shape[1])]
    missing = np.array([[_is_missing(v) for v in row] for row in raw], dtype=bool).reshape(raw.shape)
    return raw, names, missing


def _check_rows_labelled(missing, what):
    empty = np.flatnonzero(missing.all(axis=1))
    if empty.size:
        raise ValueError(
            f"Row {empty[0]} of Y has no label in any column ({empty.size} such rows): {what} learns nothing "
            "from it. Drop those rows (missing labels, None or NaN, are allowed in some columns of a row)."
        )


def _encode_Y(Y, n_rows):
    """Labels per column → (classes per column, int64 codes (n, k) with -1 where missing, column names)."""
    raw, names, missing = _columns(Y, n_rows, "MultiTaskClassifier")
    codes = np.full(raw.shape, -1, dtype=np.int64)
    classes = []
    for j, name in enumerate(names):
        keep = ~missing[:, j]
        if not keep.any():
            raise ValueError(f"Y column {name!r} has no labels (every row is missing); drop it or label some rows.")
        labels = check_labels(raw[keep, j], name=f"Y column {name!r}", task="MultiTaskClassifier")
        cls, code = np.unique(labels, return_inverse=True)
        codes[keep, j] = code
        classes.append(cls)
    _check_rows_labelled(missing, "MultiTaskClassifier")
    return classes, codes, names


def _regression_targets(Y, n_rows):
    raw, names, missing = _columns(Y, n_rows, "MultiTaskRegressor")
    out = np.full(raw.shape, np.nan)
    for j, name in enumerate(names):
        keep = ~missing[:, j]
        if not keep.any():
            raise ValueError(f"Y column {name!r} has no targets (every row is missing); drop it or fill some rows.")
        try:
            col = np.asarray(raw[keep, j].tolist(), dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"Y column {name!r} must hold numbers (NaN or None where missing).") from None
        bad = np.flatnonzero(~np.isfinite(col))
        if bad.size:
            row = np.flatnonzero(keep)[bad[0]]
            raise ValueError(f"Row {row} of Y column {name!r} is infinite; targets must be finite (NaN: missing).")
        out[keep, j] = col
    _check_rows_labelled(missing, "MultiTaskRegressor")
    return out, names


# ------------------------------------------------------------------ the base
class _MultiTaskBase(_SkorchTransferBase):
    """Parameters, module, loss and persistence shared by the two multi-task estimators."""

    def __init__(
        self,
        backbone="sentence-transformers/all-MiniLM-L6-v2",
        *,
        strategy="full",
        unfreeze_last=2,
        task_weights=None,
        head="linear",
        head_hidden=256,
        head_dropout=0.1,
        lr=1e-3,
        backbone_lr_ratio=0.1,
        r=8,
        lora_alpha=16,
        lora_dropout=0.05,
        warmup=0.1,
        weight_decay=0.01,
        grad_clip=1.0,
        freeze_bn_stats=True,
        max_epochs=5,
        batch_size=16,
        validation_fraction=0.0,
        early_stopping=None,
        augment=False,
        image_size=None,
        max_length=None,
        pooling="mean",
        bf16=True,
        device="auto",
        num_workers=0,
        random_state=None,
        verbose=0,
        callbacks=None,
        accelerator=None,
    ):
        self.backbone = backbone
        self.strategy = strategy
        self.unfreeze_last = unfreeze_last
        self.task_weights = task_weights
        self.head = head
        self.head_hidden = head_hidden
        self.head_dropout = head_dropout
        self.lr = lr
        self.backbone_lr_ratio = backbone_lr_ratio
        self.r = r
        self.lora_alpha = lora_alpha
        self.lora_dropout = lora_dropout
        self.warmup = warmup
        self.weight_decay = weight_decay
        self.grad_clip = grad_clip
        self.freeze_bn_stats = freeze_bn_stats
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.validation_fraction = validation_fraction
        self.early_stopping = early_stopping
        self.augment = augment
        self.image_size = image_size
        self.max_length = max_length
        self.pooling = pooling
        self.bf16 = bf16
        self.device = device
        self.num_workers = num_workers
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks
        self.accelerator = accelerator

    _parameter_constraints: dict = {
        **{k: v for k, v in _SkorchTransferBase._parameter_constraints.items() if k not in ("head_init", "lr")},
        "lr": [Interval(Real, 0, None, closed="neither")],
        "strategy": [StrOptions(set(MT_STRATEGIES))],
        "unfreeze_last": [Interval(Integral, 1, None, closed="left")],
        "task_weights": ["array-like", dict, None],
        "backbone_lr_ratio": [Interval(Real, 0, None, closed="left")],
        "r": [Interval(Integral, 1, None, closed="left")],
        "lora_alpha": [Interval(Real, 0, None, closed="neither")],
        "lora_dropout": [Interval(Real, 0, 1, closed="both")],
        "freeze_bn_stats": ["boolean"],
    }

    # ----------------------------------------------------------- helpers
    def _task_weights(self, names):
        """One non-negative weight per task, from ``task_weights`` (None: 1 each; a dict by column name)."""
        k = len(names)
        w = self.task_weights
        if w is None:
            return [1.0] * k
        if isinstance(w, dict):
            unknown = sorted(set(map(str, w)) - set(names))
            if unknown:
                raise ValueError(f"task_weights names columns not in Y: {unknown}; Y's columns are {names}.")
            given = {str(key): v for key, v in w.items()}
            w = [given.get(n, 1.0) for n in names]
        w = np.asarray(w, dtype=np.float64).ravel()
        if w.shape != (k,):
            raise ValueError(f"task_weights has {w.size} weights for the {k} columns of Y; give one per column.")
        if not np.all(np.isfinite(w)) or (w < 0).any() or not (w > 0).any():
            raise ValueError(f"task_weights must be finite, >= 0 and not all 0; got {w.tolist()}.")
        return w.tolist()

    def _freezes_bn_stats(self):
        return bool(self.freeze_bn_stats)

    def _augments(self):
        return bool(self.augment)

    # ------------------------------------------------------------- hooks
    def _build_module(self, shared, n_out):
        module = super()._build_module(shared, n_out)  # body + a head we replace
        module.task_head = _MultiHead(shared.embedding_dim, self._sizes(), self.head, self.head_hidden, self.head_dropout)
        if self.strategy != "lora":
            return module
        import peft

        from ._lora import auto_target_modules

        targets, _ = auto_target_modules(module, "lora", int(self.r))
        if not targets:
            raise ValueError(f"strategy='lora' found no layer to adapt in {self.backbone!r}.")
        self.target_modules_ = targets
        cfg = peft.LoraConfig(r=self.r, lora_alpha=self.lora_alpha, lora_dropout=self.lora_dropout,
                              target_modules=targets, modules_to_save=[_HEAD_NAME])
        return peft.get_peft_model(module, cfg)

    def _method_callbacks(self, module, shared):
        if self.strategy == "lora":
            return []
        groups = module.block_groups
        if self.strategy == "partial" and self.unfreeze_last > len(groups):
            raise ValueError(
                f"unfreeze_last={self.unfreeze_last} is larger than the {len(groups)} block groups of "
                f"{self.backbone!r}; use at most {len(groups)} (or strategy='full')."
            )
        return [("freeze", FreezeSchedule(self.strategy, self.unfreeze_last))]

    def _net_kwargs(self):
        if self.strategy == "lora":
            return {"adapter_only": True}
        return {"backbone_lr_ratio": self.backbone_lr_ratio}

    def _criterion(self, y_enc):
        return _MultiTaskCriterion(self._sizes(), self.task_weights_, regression=self._regression)

    def _fit_tasks(self, X, targets, names):
        self.task_names_ = np.asarray(names, dtype=object)
        self.task_weights_ = np.asarray(self._task_weights(names))
        self._fit(X, targets, int(sum(self._sizes())), False)
        if self.strategy == "lora":
            with isolated_torch_rng():
                shared = load_backbone(self.backbone, device="cpu", pooling=self.pooling)
            self.base_fingerprint_ = shared.fingerprint()
        return self

    def _outputs(self, X):
        """The heads' outputs per task: a list of k arrays."""
        out = self._forward(X)
        bounds = np.cumsum([0] + self._sizes())
        return [out[:, a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    def __sklearn_tags__(self):
        tags = trained_model_tags(super().__sklearn_tags__(), self.random_state)
        tags.target_tags.single_output = False
        tags.target_tags.multi_output = True
        tags.target_tags.required = True
        return tags

    # ------------------------------------------------------- persistence
    _SAVED_FILES = ("config.json", "model.safetensors")

    def _n_out_fitted(self):
        return int(sum(self._sizes()))

    def _describe_saved(self):
        return f"backbone {self.backbone!r}, {len(self._sizes())} tasks of sizes {self._sizes()}, head {self.head!r}"

    def _saved_state(self, module=None):
        """What a save keeps: every tensor, or (strategy="lora") the adapter and the heads only."""
        module = self.net_.module_ if module is None else module
        if self.strategy == "lora":
            import peft

            return peft.get_peft_model_state_dict(module)
        return module.state_dict()

    def save(self, path):
        """Save the model once: base (or, with ``strategy="lora"``, its fingerprint), heads and adapter.

        Writes ``model.safetensors`` (every tensor; with ``strategy="lora"``
        the shared adapter and the k heads only, the frozen base being
        reloaded by name and checked by its weights fingerprint),
        ``config.json`` and ``manifest.json`` (the SHA-256 of each file).
        :meth:`load` reads tensors and JSON only.

        Parameters
        ----------
        path : str
            Directory to write to (created if needed).

        Returns
        -------
        path : str
        """
        check_is_fitted(self, "net_")
        os.makedirs(path, exist_ok=True)
        _persistence.write_tensors(path, "model.safetensors", self._saved_state())
        extra = {"base_fingerprint": self.base_fingerprint_, "target_modules": self.target_modules_} \
            if self.strategy == "lora" else None
        self._write_config(path, extra)
        _persistence.write_manifest(path, self._SAVED_FILES, type(self).__name__)
        return path

    @classmethod
    def load(cls, path, backbone=None):
        """Rebuild a fitted estimator saved with :meth:`save`.

        The files are checked against ``manifest.json`` first (a changed
        file raises :class:`~sktransfer.SaveIntegrityError` naming it), the
        parameters as ``fit`` checks them, the base's fingerprint with
        ``strategy="lora"``, and the tensors against the model the config
        describes.

        Parameters
        ----------
        path : str
            Directory written by :meth:`save`.
        backbone : str or None, default=None
            Build the model from this backbone instead of the saved name
            (a local copy); with ``strategy="lora"`` its weights must be the
            ones the adapter was trained on.

        Returns
        -------
        estimator : fitted instance of this class
        """
        meta = _persistence.read_saved_config(path, cls, cls._SAVED_FILES, stacklevel=2)
        config = os.path.join(str(path), "config.json")
        params = dict(meta["params"])
        params.setdefault("callbacks", None)  # never saved
        params.setdefault("accelerator", None)  # never saved (a run-time object)
        est = _persistence.build_estimator(cls, params, path, legacy=_with_legacy_params)
        try:
            est._restore_fitted(meta["fitted"])
            est.lr_ = float(meta["fitted"]["lr"])
        except (KeyError, TypeError, ValueError) as exc:
            raise _persistence.SaveIntegrityError(f"{config!r} has no valid fitted state ({exc!r}).") from exc
        trained_on = est.backbone
        if backbone is not None:
            est.backbone = backbone
        with isolated_torch_rng():
            shared = load_backbone(est.backbone, device="cpu", pooling=est.pooling)
            if est.strategy == "lora":
                fingerprint = meta.get("base_fingerprint")
                if shared.fingerprint() != fingerprint:
                    raise ValueError(
                        f"The adapter in {str(path)!r} was trained on {trained_on!r} (weights fingerprint "
                        f"{fingerprint}), but {est.backbone!r} has fingerprint {shared.fingerprint()}: "
                        "refusing to load it onto a different model."
                    )
                est.base_fingerprint_ = fingerprint
            module = est._build_module(shared, est._n_out_fitted())
        est.backbone_source_ = shared.source
        state = _persistence.load_tensors(path, "model.safetensors")
        _persistence.check_state_fits(est._saved_state(module), state, path, "model.safetensors", est._describe_saved())
        if est.strategy == "lora":
            import peft

            peft.set_peft_model_state_dict(module, state)
        else:
            module.load_state_dict(state, strict=True)
        return est._attach_net(module)

    def _config(self):
        params = super()._config()
        if isinstance(params.get("task_weights"), np.ndarray):
            params["task_weights"] = params["task_weights"].tolist()
        return params


_PARAMS_DOC = """
    Parameters
    ----------
    backbone : str, default="sentence-transformers/all-MiniLM-L6-v2"
        Any name :func:`sktransfer.load_backbone` accepts (text or images).
    strategy : {"linear_probe", "partial", "full", "lora"}, default="full"
        What of the shared backbone trains, as in
        :class:`~sktransfer.FineTunedClassifier`: nothing
        (``"linear_probe"``: the k heads only), the top ``unfreeze_last``
        block groups, everything; or ``"lora"``: the base frozen, **one
        LoRA adapter shared by all tasks** (rank ``r`` on the layers
        :class:`~sktransfer.LoRAClassifier` chooses with
        ``target_modules="auto"``) plus the k heads. Not one adapter per
        task: that would run the base once per task for every batch (k
        times the cost, nothing shared) and PEFT runs several adapters in
        one batch for inference only.
    unfreeze_last : int, default=2
        Block groups trained by ``"partial"``.
    task_weights : array-like of shape (n_tasks,), dict or None, default=None
        Weight of each task's loss in the sum (None: 1 each; a dict maps
        column names of ``Y`` to weights, 1 for the others). Each task's
        loss is its mean over the rows of the batch that have its label.
    head : {"linear", "mlp"}, default="linear"
        The kind of each task's head.
    head_hidden : int, default=256
    head_dropout : float, default=0.1
    lr : float, default=1e-3
        Learning rate of the heads (and of the adapter with ``"lora"``).
    backbone_lr_ratio : float, default=0.1
        Backbone learning rate as a fraction of ``lr`` (not ``"lora"``).
    r : int, default=8
        LoRA rank (``strategy="lora"``).
    lora_alpha : float, default=16
    lora_dropout : float, default=0.05
    warmup, weight_decay, grad_clip, freeze_bn_stats, max_epochs, \
batch_size, validation_fraction, early_stopping, image_size, max_length, \
pooling, bf16, device, num_workers, random_state, verbose, callbacks
        As in :class:`~sktransfer.FineTunedClassifier`. The validation split
        is not stratified (there are k label columns).
    accelerator : accelerate.Accelerator or None, default=None
        Train through Hugging Face accelerate: mixed precision and several
        GPUs of one machine (``accelerate launch``), as in
        :class:`~sktransfer.FineTunedClassifier`; ``device`` is then left
        to the accelerator (``accelerator.device``). None: as without it.
        Neither pickled nor saved. Unverified on GPUs in this project's CI
        (verified on the CPU): see ``docs/scaling.md``.
    augment : bool, default=False
        Random crops and flips of images in training.
"""


class MultiTaskClassifier(ClassifierMixin, _MultiTaskBase):
    __doc__ = """One backbone, one classification head per label column, trained jointly.

    ``Y`` holds one column of class labels per task (e.g. the topic and the
    tone of the same texts). The tasks share the backbone's forward pass
    and are trained together on the project's trainer (schedule, clipping,
    early stopping, callbacks as in :class:`~sktransfer.FineTunedClassifier`);
    the loss is the ``task_weights``-weighted sum of each task's
    cross-entropy. Outputs follow scikit-learn's
    :class:`~sklearn.multioutput.MultiOutputClassifier`: ``predict`` gives
    ``(n_samples, n_tasks)``, ``predict_proba`` a list of one array per
    task, ``classes_`` a list of one array per task.

    Missing labels are allowed: a ``None`` or ``NaN`` (also pandas' ``NA``)
    in a column leaves that row out of that task's loss only. ``-1`` is a
    label like any other (some data sets use -1/1 classes), not a missing
    value. A row with no label at all, a column with one class, and a
    ``Y`` that is not 2-D are refused with an error naming the row or
    column.
""" + _PARAMS_DOC + """
    Attributes
    ----------
    classes_ : list of ndarray
        The classes of each task, in the order of ``predict_proba``'s
        columns for that task.
    n_tasks_ : int
    task_names_ : ndarray of str
        The column names of ``Y`` (a DataFrame's), or ``"0"``, ``"1"``, ...
    task_weights_ : ndarray of shape (n_tasks,)
        The weights the loss used.
    net_ : skorch.NeuralNet
    history_ : skorch.History
    n_epochs_ : int
    lr_ : float
    base_fingerprint_ : str
        With ``strategy="lora"``: the frozen base's weights fingerprint.

    See Also
    --------
    sklearn.multioutput.MultiOutputClassifier : one separate model per column.
    sktransfer.FineTunedClassifier : one task.

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer import MultiTaskClassifier
    >>> texts = ["the match ended in a draw", "shares fell sharply",
    ...          "the striker scored twice", "the bank raised rates"] * 4
    >>> Y = np.array([["sport", "neutral"], ["business", "bad"],
    ...               ["sport", "good"], ["business", None]] * 4, dtype=object)
    >>> mt = MultiTaskClassifier(strategy="linear_probe", lr=1e-2, max_epochs=3,
    ...                          random_state=0).fit(texts, Y)
    >>> mt.predict(["a late goal won the cup"]).shape
    (1, 2)
    >>> [c.tolist() for c in mt.classes_]
    [['business', 'sport'], ['bad', 'good', 'neutral']]
    """

    _regression = False

    def fit(self, X, Y):
        """Train on ``X`` (texts or images) and the label columns ``Y``.

        Parameters
        ----------
        X : list, array, Series or one-column DataFrame
        Y : array-like or DataFrame of shape (n_samples, n_tasks)
            One column of class labels per task; ``None`` / ``NaN`` where a
            row has no label for a task.

        Returns
        -------
        self
        """
        self._check_params()
        classes, codes, names = _encode_Y(Y, len(as_rows(X)))
        self.classes_ = classes
        self.n_tasks_ = len(classes)
        return self._fit_tasks(X, codes, names)

    def _sizes(self):
        return [len(c) for c in self.classes_]

    def _fitted_json(self):
        return {
            "classes": [[c.item() if hasattr(c, "item") else c for c in cls] for cls in self.classes_],
            "task_names": [str(n) for n in self.task_names_],
            "task_weights": [float(w) for w in self.task_weights_],
        }

    def _restore_fitted(self, fitted):
        config = "config.json"
        self.classes_ = [_persistence.check_classes(c, config) for c in fitted["classes"]]
        self.n_tasks_ = len(self.classes_)
        self.task_names_ = np.asarray(fitted["task_names"], dtype=object)
        self.task_weights_ = np.asarray(fitted["task_weights"], dtype=np.float64)
        if len(self.task_names_) != self.n_tasks_ or len(self.task_weights_) != self.n_tasks_:
            raise ValueError("classes, task_names and task_weights disagree on the number of tasks")

    def decision_function(self, X):
        """The heads' logits: a list of ``n_tasks`` arrays of shape (n_samples, n_classes of the task)."""
        check_is_fitted(self, ("classes_", "net_"))
        return self._outputs(X)

    def predict_proba(self, X):
        """Class probabilities: a list of ``n_tasks`` arrays, columns in each task's ``classes_`` order."""
        check_is_fitted(self, ("classes_", "net_"))
        return [torch.softmax(torch.as_tensor(z), dim=1).numpy() for z in self._outputs(X)]

    def predict(self, X):
        """Predicted labels, shape (n_samples, n_tasks) (object dtype when the tasks' label types differ)."""
        check_is_fitted(self, ("classes_", "net_"))
        preds = [cls[np.argmax(z, axis=1)] for cls, z in zip(self.classes_, self._outputs(X))]
        if len({p.dtype.kind for p in preds}) > 1:
            return np.column_stack([p.astype(object) for p in preds])
        return np.column_stack(preds)

    def score(self, X, Y, sample_weight=None):
        """Mean over tasks of each task's accuracy on the rows that have its label.

        Not :class:`~sklearn.multioutput.MultiOutputClassifier`'s subset
        accuracy (a row counts only when every column is right), which has
        no meaning with missing labels. Labels never seen in ``fit`` raise
        an error naming them.

        Parameters
        ----------
        X : list, array, Series or one-column DataFrame
        Y : array-like or DataFrame of shape (n_samples, n_tasks)
        sample_weight : array-like of shape (n_samples,) or None

        Returns
        -------
        score : float
        """
        check_is_fitted(self, ("classes_", "net_"))
        raw, names, missing = _columns(Y, len(as_rows(X)), "scoring")
        if raw.shape[1] != self.n_tasks_:
            raise ValueError(f"Y has {raw.shape[1]} columns; this model was fitted on {self.n_tasks_} tasks.")
        pred = self.predict(X)
        w = np.ones(len(raw)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        scores = []
        for j, name in enumerate(names):
            keep = ~missing[:, j]
            if not keep.any():
                continue
            y, _ = encode_known_labels(raw[keep, j], self.classes_[j], name=f"Y column {name!r}")
            hit = np.asarray([a == b for a, b in zip(pred[keep, j].tolist(), y.tolist())], dtype=np.float64)
            scores.append(float(np.average(hit, weights=w[keep])))
        if not scores:
            raise ValueError("Y has no label in any column: nothing to score.")
        return float(np.mean(scores))


class MultiTaskRegressor(RegressorMixin, _MultiTaskBase):
    __doc__ = """One backbone, one regression head per target column, trained jointly.

    As :class:`MultiTaskClassifier`, with continuous targets: the loss is
    the ``task_weights``-weighted sum of each column's mean squared error
    (on targets standardised per column, inside). A ``NaN`` or ``None``
    target leaves that row out of that column's loss; predictions come
    back in the units of ``Y``.
""" + _PARAMS_DOC + """
    Attributes
    ----------
    n_tasks_ : int
    task_names_ : ndarray of str
    task_weights_ : ndarray of shape (n_tasks,)
    y_mean_, y_scale_ : ndarray of shape (n_tasks,)
        The per-column standardisation (over the rows with a target).
    net_ : skorch.NeuralNet
    lr_ : float

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer import MultiTaskRegressor
    >>> texts = ["tiny", "a short sentence", "a much longer sentence than the others"] * 4
    >>> Y = np.array([[len(t), t.count(" ")] for t in texts], dtype=float)
    >>> Y[0, 1] = np.nan  # a missing target
    >>> reg = MultiTaskRegressor(strategy="linear_probe", lr=1e-2, max_epochs=2,
    ...                          random_state=0).fit(texts, Y)
    >>> reg.predict(["tiny"]).shape
    (1, 2)
    """

    _regression = True

    def fit(self, X, Y):
        """Train on ``X`` and the target columns ``Y`` (n_samples, n_tasks); NaN / None: missing."""
        self._check_params()
        y, names = _regression_targets(Y, len(as_rows(X)))
        self.n_tasks_ = y.shape[1]
        self.y_mean_ = np.nanmean(y, axis=0)
        std = np.nanstd(y, axis=0)
        self.y_scale_ = np.where(std > 0, std, 1.0)
        return self._fit_tasks(X, ((y - self.y_mean_) / self.y_scale_).astype(np.float32), names)

    def _sizes(self):
        return [1] * int(self.n_tasks_)

    def _fitted_json(self):
        return {
            "n_tasks": int(self.n_tasks_), "y_mean": self.y_mean_.tolist(), "y_scale": self.y_scale_.tolist(),
            "task_names": [str(n) for n in self.task_names_], "task_weights": [float(w) for w in self.task_weights_],
        }

    def _restore_fitted(self, fitted):
        self.n_tasks_ = int(fitted["n_tasks"])
        self.y_mean_ = np.asarray(fitted["y_mean"], dtype=np.float64)
        self.y_scale_ = np.asarray(fitted["y_scale"], dtype=np.float64)
        self.task_names_ = np.asarray(fitted["task_names"], dtype=object)
        self.task_weights_ = np.asarray(fitted["task_weights"], dtype=np.float64)
        shapes = {len(self.y_mean_), len(self.y_scale_), len(self.task_names_), len(self.task_weights_)}
        if shapes != {self.n_tasks_} or not (np.all(np.isfinite(self.y_scale_)) and (self.y_scale_ > 0).all()):
            raise ValueError("n_tasks, y_mean, y_scale, task_names and task_weights disagree")

    def predict(self, X):
        """Predicted targets, shape (n_samples, n_tasks), in the units of ``Y``."""
        check_is_fitted(self, ("y_mean_", "net_"))
        return self._forward(X).astype(np.float64) * self.y_scale_ + self.y_mean_

    def score(self, X, Y, sample_weight=None):
        """Mean over columns of R² on the rows that have a target in that column."""
        from sklearn.metrics import r2_score

        check_is_fitted(self, ("y_mean_", "net_"))
        y, _ = _regression_targets(Y, len(as_rows(X)))
        if y.shape[1] != self.n_tasks_:
            raise ValueError(f"Y has {y.shape[1]} columns; this model was fitted on {self.n_tasks_} tasks.")
        pred = self.predict(X)
        w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        scores = []
        for j in range(y.shape[1]):
            keep = ~np.isnan(y[:, j])
            scores.append(r2_score(y[keep, j], pred[keep, j], sample_weight=None if w is None else w[keep]))
        return float(np.mean(scores))

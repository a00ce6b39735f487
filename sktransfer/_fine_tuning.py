"""`FineTunedClassifier` and `FineTunedRegressor`: skorch underneath, sklearn on top."""

import copy
import json
import numbers
import os
import warnings

import numpy as np
import torch
from skorch import NeuralNet
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, TransformerMixin
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted

from ._inputs import as_rows, check_images, check_in_range_int, check_texts, to_rgb
from ._transfer_module import TransferModule, make_head
from ._utils import check_random_state_int, resolve_device
from .backbones import load_backbone
from .callbacks import L2SP, FreezeSchedule, WarmupCosine, WiSEFT

STRATEGIES = ("linear_probe", "partial", "full", "progressive")


class _TransferNet(NeuralNet):
    """A skorch net with discriminative learning rates and bf16 on CUDA."""

    def __init__(self, *args, backbone_lr_ratio=0.1, layer_decay=None, weight_decay=0.0, l2sp=0.0, bf16=True, **kwargs):
        super().__init__(*args, **kwargs)
        self.backbone_lr_ratio = backbone_lr_ratio
        self.layer_decay = layer_decay
        self.weight_decay = weight_decay
        self.l2sp = l2sp
        self.bf16 = bf16

    def initialize_optimizer(self, triggered_directly=None):
        module = self.module_
        head_lr = self.lr
        backbone_lr = head_lr * self.backbone_lr_ratio
        groups = module.block_groups
        params = dict(module.body.named_parameters())
        decay = self.weight_decay
        param_groups = [{"params": list(module.head.parameters()), "lr": head_lr, "weight_decay": decay}]
        assigned = set()
        n = len(groups)
        for depth, names in enumerate(reversed(groups)):  # depth 0 = top
            factor = self.layer_decay**depth if self.layer_decay else 1.0
            ps = [params[nm] for nm in names if nm in params]
            assigned.update(names)
            if ps:
                param_groups.append(
                    # With L2-SP the backbone is pulled to w0, not to 0.
                    {"params": ps, "lr": backbone_lr * factor, "weight_decay": 0.0 if self.l2sp else decay}
                )
        rest = [p for nm, p in params.items() if nm not in assigned]
        if rest:
            param_groups.append({"params": rest, "lr": backbone_lr * (self.layer_decay**n if self.layer_decay else 1.0)})
        self.optimizer_ = self.optimizer(param_groups, lr=head_lr)
        return self

    def infer(self, x, **fit_params):
        if self.bf16 and str(self.device).startswith("cuda"):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return super().infer(x, **fit_params).float()
        return super().infer(x, **fit_params)



class _WeightedCrossEntropy:
    """Picklable factory of a class-weighted cross-entropy criterion."""

    def __init__(self, weight):
        self.weight = weight

    def __call__(self):
        return torch.nn.CrossEntropyLoss(weight=self.weight)


class _FineTunedBase(TransformerMixin, BaseEstimator):
    """Shared machinery of the fine-tuning estimators (and LoRA, later)."""

    _estimator_type_name = "base"

    def __init__(
        self,
        backbone="sentence-transformers/all-MiniLM-L6-v2",
        *,
        strategy="full",
        unfreeze_last=2,
        unfreeze_every=1,
        head="linear",
        head_hidden=256,
        head_dropout=0.1,
        lr=1e-3,
        backbone_lr_ratio=0.1,
        layer_decay=None,
        warmup=0.1,
        weight_decay=0.01,
        grad_clip=1.0,
        l2sp=0.0,
        wise_alpha=1.0,
        max_epochs=5,
        batch_size=16,
        validation_fraction=0.0,
        early_stopping=None,
        checkpoint_dir=None,
        augment=True,
        image_size=None,
        max_length=None,
        pooling="mean",
        bf16=True,
        device="auto",
        random_state=None,
        verbose=0,
        callbacks=None,
    ):
        self.backbone = backbone
        self.strategy = strategy
        self.unfreeze_last = unfreeze_last
        self.unfreeze_every = unfreeze_every
        self.head = head
        self.head_hidden = head_hidden
        self.head_dropout = head_dropout
        self.lr = lr
        self.backbone_lr_ratio = backbone_lr_ratio
        self.layer_decay = layer_decay
        self.warmup = warmup
        self.weight_decay = weight_decay
        self.grad_clip = grad_clip
        self.l2sp = l2sp
        self.wise_alpha = wise_alpha
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.validation_fraction = validation_fraction
        self.early_stopping = early_stopping
        self.checkpoint_dir = checkpoint_dir
        self.augment = augment
        self.image_size = image_size
        self.max_length = max_length
        self.pooling = pooling
        self.bf16 = bf16
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    # ----------------------------------------------------------- validation
    def _validate_params(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}.")
        if self.head not in ("linear", "mlp"):
            raise ValueError(f"head must be 'linear' or 'mlp', got {self.head!r}.")
        check_in_range_int(self.unfreeze_last, "unfreeze_last", 1)
        check_in_range_int(self.unfreeze_every, "unfreeze_every", 1)
        check_in_range_int(self.head_hidden, "head_hidden", 1)
        check_in_range_int(self.max_epochs, "max_epochs", 1)
        check_in_range_int(self.batch_size, "batch_size", 1)
        for name, lo, hi in (
            ("lr", 0.0, None),
            ("backbone_lr_ratio", 0.0, None),
            ("warmup", 0.0, 1.0),
            ("weight_decay", 0.0, None),
            ("l2sp", 0.0, None),
            ("wise_alpha", 0.0, 1.0),
            ("validation_fraction", 0.0, 0.9),
            ("head_dropout", 0.0, 1.0),
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or v < lo or (hi is not None and v > hi):
                rng = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
                raise ValueError(f"{name} must be a number {rng}, got {v!r}.")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}.")
        if self.layer_decay is not None and not (0 < self.layer_decay <= 1):
            raise ValueError(f"layer_decay must be None or in (0, 1], got {self.layer_decay!r}.")
        if self.grad_clip is not None and not (self.grad_clip > 0):
            raise ValueError(f"grad_clip must be None or > 0, got {self.grad_clip!r}.")
        if self.early_stopping is not None:
            check_in_range_int(self.early_stopping, "early_stopping", 1)
            if not self.validation_fraction:
                raise ValueError("early_stopping needs validation data: set validation_fraction, e.g. 0.2.")

    # --------------------------------------------------------------- inputs
    def _encode_X(self, X, bb, fitting):
        """Validate and preprocess X into arrays skorch can batch."""
        if bb.modality == "image":
            items = check_images(X)
            size = bb.preprocess_config(self.image_size)["input_size"]
            crops = np.empty((len(items), 3, size, size), dtype=np.uint8)
            for start in range(0, len(items), 256):
                chunk = [to_rgb(items[i], i) for i in range(start, min(start + 256, len(items)))]
                crops[start : start + len(chunk)] = bb.collate(chunk, image_size=self.image_size).numpy()
            return {"X": crops}
        texts = check_texts(X)
        limit = int(self.max_length or bb.max_length)
        enc = bb.tokenizer(texts, padding="max_length", truncation=True, max_length=limit, return_tensors="np")
        if fitting:
            lengths = bb.tokenizer(texts, truncation=False, return_length=True)["length"]
            n_long = int(np.sum(np.asarray(lengths) > limit))
            if n_long:
                warnings.warn(
                    f"{n_long} of {len(texts)} texts are longer than the model's limit of {limit} tokens "
                    "and were truncated (set max_length to change the limit).",
                    UserWarning,
                    stacklevel=3,
                )
        out = {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64)}
        return out

    # ------------------------------------------------------------------ fit
    def _n_outputs(self, y):
        raise NotImplementedError

    def _criterion(self, y_enc):
        raise NotImplementedError

    def _check_lengths(self, X, y):
        rows = as_rows(X)
        n_x = len(rows)
        if n_x != len(y):
            raise ValueError(f"X and y have different lengths: {n_x} inputs but {len(y)} targets.")

    def _fit(self, X, y_enc, n_out, y_for_split):
        from skorch.callbacks import Checkpoint, EarlyStopping, GradientNormClipping, LoadInitState, PrintLog, ProgressBar
        from skorch.dataset import ValidSplit

        seed = check_random_state_int(self.random_state)
        if seed is not None:
            torch.manual_seed(seed)
            np.random.seed(seed % (2**32 - 1))
        self.device_ = resolve_device(self.device)
        shared = load_backbone(self.backbone, device="cpu", pooling=self.pooling)
        self.modality_ = shared.modality
        groups = shared.block_groups()
        if self.strategy == "partial" and self.unfreeze_last > len(groups):
            raise ValueError(
                f"unfreeze_last={self.unfreeze_last} is larger than the {len(groups)} block groups of "
                f"{self.backbone!r}; use at most {len(groups)} (or strategy='full')."
            )
        Xd = self._encode_X(X, shared, fitting=True)
        body = copy.deepcopy(shared.body)
        for p in body.parameters():
            p.requires_grad_(True)
        head = make_head(shared.embedding_dim, n_out, self.head, self.head_hidden, self.head_dropout)
        normalize = copy.deepcopy(shared.normalize) if shared.modality == "image" else None
        module = TransferModule(body, head, shared.modality, normalize, bool(self.augment), groups)
        reference = {f"body.{k}": v.detach().clone() for k, v in body.state_dict().items() if f"body.{k}" in dict(module.named_parameters())}

        n_train = len(y_enc) if not self.validation_fraction else int(round(len(y_enc) * (1 - self.validation_fraction)))
        steps_per_epoch = max(1, int(np.ceil(n_train / self.batch_size)))
        cbs = [
            ("freeze", FreezeSchedule(self.strategy, self.unfreeze_last, self.unfreeze_every)),
            ("schedule", WarmupCosine(steps_per_epoch * self.max_epochs, self.warmup)),
        ]
        if self.grad_clip:
            cbs.append(("clip", GradientNormClipping(self.grad_clip)))
        if self.l2sp:
            cbs.append(("l2sp", L2SP(self.l2sp, reference)))
        if self.early_stopping:
            cbs.append(("early_stopping", EarlyStopping(patience=self.early_stopping, load_best=True)))
        checkpoint = None
        if self.checkpoint_dir:
            checkpoint = Checkpoint(dirname=str(self.checkpoint_dir), monitor=None, f_pickle=None, f_criterion=None)
            cbs.append(("checkpoint", checkpoint))
        if self.wise_alpha < 1.0:
            cbs.append(("wise_ft", WiSEFT(self.wise_alpha, reference)))
        if self.verbose and self.verbose > 1:
            cbs.append(("progress", ProgressBar()))
        for i, cb in enumerate(self.callbacks or []):
            cbs.append(cb if isinstance(cb, tuple) else (f"user_{i}", cb))
        split = False
        if self.validation_fraction:
            split = ValidSplit(self.validation_fraction, stratified=y_for_split is not None, random_state=seed)
        Net = _TransferNet
        net = Net(
            module=module,
            criterion=self._criterion(y_enc),
            optimizer=torch.optim.AdamW,
            lr=self.lr,
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            iterator_train__shuffle=True,
            train_split=split,
            callbacks=cbs,
            device=self.device_,
            verbose=int(bool(self.verbose)),
            predict_nonlinearity=None,
            backbone_lr_ratio=self.backbone_lr_ratio,
            layer_decay=self.layer_decay,
            weight_decay=self.weight_decay,
            l2sp=self.l2sp,
            bf16=bool(self.bf16),
        )
        net.initialize()
        epochs = self.max_epochs
        if checkpoint is not None and os.path.exists(os.path.join(checkpoint.dirname, "history.json")):
            net.load_params(checkpoint=checkpoint)
            epochs = self.max_epochs - len(net.history)
            if self.verbose:
                print(f"Resuming from {checkpoint.dirname}: {len(net.history)} epochs done, {max(epochs, 0)} to go.")
        if epochs > 0:
            y_t = torch.as_tensor(y_enc)
            net.partial_fit(Xd, y_t, epochs=epochs)
        self.net_ = net
        self._backbone_info = {"embedding_dim": shared.embedding_dim}
        self.n_epochs_ = len(net.history)
        self.history_ = net.history
        return self

    # ------------------------------------------------------------- inference
    def _forward(self, X, features=False):
        check_is_fitted(self, "net_")
        bb = load_backbone(self.backbone, device="cpu", pooling=self.pooling)
        if bb.modality != self.modality_:
            raise ValueError(f"backbone {self.backbone!r} reads {bb.modality}, but this model was fitted on {self.modality_}.")
        Xd = self._encode_X(X, bb, fitting=False)
        module = self.net_.module_
        module.eval()
        outs = []
        n = len(next(iter(Xd.values())))
        device = self.net_.device
        bs = max(self.batch_size, 32)
        with torch.inference_mode():
            for s in range(0, n, bs):
                batch = {k: torch.as_tensor(v[s : s + bs]).to(device) for k, v in Xd.items()}
                out = module.features(**batch) if features else module(**batch)
                outs.append(out.float().cpu())
        return torch.cat(outs).numpy()

    def transform(self, X):
        """Embeddings from the fine-tuned backbone (the head's input).

        Parameters
        ----------
        X : list, array, Series or one-column DataFrame

        Returns
        -------
        X_new : ndarray of shape (n_samples, embedding_dim)
        """
        return self._forward(X, features=True).astype(np.float32)

    def fit_transform(self, X, y=None, **fit_params):
        return self.fit(X, y, **fit_params).transform(X)

    # ----------------------------------------------------------- persistence
    def _config(self):
        params = self.get_params()
        params.pop("callbacks", None)
        params["checkpoint_dir"] = None
        if not isinstance(params["backbone"], str):
            raise ValueError("save() needs a backbone given by name or path (not an nn.Module) to rebuild it.")
        return params

    def save(self, path):
        """Save weights as safetensors plus a JSON config in directory ``path``.

        Loading (:meth:`load`) rebuilds the backbone from its name and reads
        tensors only: no pickle, no arbitrary code.
        """
        from safetensors.torch import save_file

        check_is_fitted(self, "net_")
        os.makedirs(path, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.net_.module_.state_dict().items()}
        save_file(state, os.path.join(path, "model.safetensors"))
        meta = {"class": type(self).__name__, "params": self._config(), "fitted": self._fitted_json()}
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(meta, f, indent=2)
        return path

    @classmethod
    def load(cls, path):
        """Rebuild a fitted estimator saved with :meth:`save`."""
        from safetensors.torch import load_file

        with open(os.path.join(path, "config.json")) as f:
            meta = json.load(f)
        if meta.get("class") != cls.__name__:
            raise ValueError(f"{path!r} holds a {meta.get('class')}, not a {cls.__name__}.")
        est = cls(**meta["params"])
        est._restore_fitted(meta["fitted"])
        shared = load_backbone(est.backbone, device="cpu", pooling=est.pooling)
        body = copy.deepcopy(shared.body)
        head = make_head(shared.embedding_dim, est._n_out_fitted(), est.head, est.head_hidden, est.head_dropout)
        normalize = copy.deepcopy(shared.normalize) if shared.modality == "image" else None
        module = TransferModule(body, head, shared.modality, normalize, bool(est.augment), shared.block_groups())
        module.load_state_dict(load_file(os.path.join(path, "model.safetensors")), strict=True)
        Net = _TransferNet
        est.device_ = resolve_device(est.device)
        net = Net(
            module=module,
            criterion=torch.nn.MSELoss,
            lr=est.lr,
            device=est.device_,
            predict_nonlinearity=None,
            backbone_lr_ratio=est.backbone_lr_ratio,
            layer_decay=est.layer_decay,
            weight_decay=est.weight_decay,
            l2sp=est.l2sp,
            bf16=bool(est.bf16),
            batch_size=est.batch_size,
        )
        net.initialize()
        net.module_.load_state_dict(module.state_dict())
        est.net_ = net
        est.modality_ = shared.modality
        return est


class FineTunedClassifier(ClassifierMixin, _FineTunedBase):
    """Fine-tune a pretrained backbone with a new classification head.

    The source head is cut off and a new one sized from ``y`` is attached.
    Training runs on skorch (callbacks, history, early stopping,
    checkpointing) and every choice of the transfer recipe is a constructor
    parameter, so ``GridSearchCV`` can search the strategy itself.

    Parameters
    ----------
    backbone : str, default="sentence-transformers/all-MiniLM-L6-v2"
        Any name :func:`sktransfer.load_backbone` accepts (``"timm/<arch>"``,
        ``"torchvision/<arch>"``, ``"sentence-transformers/<name>"``,
        ``"hf/<org>/<name>"``, a local directory).
    strategy : {"linear_probe", "partial", "full", "progressive"}, default="full"
        ``"linear_probe"``: backbone frozen, only the head trains.
        ``"partial"``: the top ``unfreeze_last`` block groups train.
        ``"full"``: every weight trains.
        ``"progressive"``: the head first, then one more block group from
        the top every ``unfreeze_every`` epochs (gradual unfreezing). Block
        groups come from the model (timm's ``group_matcher``, a
        transformer's encoder layers).
    unfreeze_last : int, default=2
    unfreeze_every : int, default=1
    head : {"linear", "mlp"}, default="linear"
    head_hidden : int, default=256
        Width of the MLP head.
    head_dropout : float, default=0.1
    lr : float, default=1e-3
        Learning rate of the head.
    backbone_lr_ratio : float, default=0.1
        Backbone learning rate as a fraction of ``lr`` (small by default:
        pretrained weights need small steps).
    layer_decay : float or None, default=None
        Discriminative learning rates: each block group below the top gets
        ``layer_decay`` times the rate of the group above it.
    warmup : float, default=0.1
        Fraction of the training steps with a linear warm-up; cosine decay
        follows.
    weight_decay : float, default=0.01
        AdamW weight decay (off for the backbone when ``l2sp > 0``).
    grad_clip : float or None, default=1.0
        Gradient-norm clipping (skorch's ``GradientNormClipping``).
    l2sp : float, default=0.0
        L2-SP strength: pulls backbone weights toward their pretrained values
        to limit catastrophic forgetting.
    wise_alpha : float, default=1.0
        WiSE-FT: after training, backbone weights become
        ``(1 - wise_alpha) * pretrained + wise_alpha * fine_tuned``.
    max_epochs : int, default=5
    batch_size : int, default=16
    validation_fraction : float, default=0.0
        Stratified hold-out for validation loss (needed by early stopping).
    early_stopping : int or None, default=None
        Patience in epochs on validation loss; the best weights are restored.
    checkpoint_dir : str or None, default=None
        Save weights, optimizer and history every epoch; a later ``fit``
        with the same directory resumes where an interrupted one stopped.
    augment : bool, default=True
        Random resized crops and flips for images, in training only.
    image_size : int or None, default=None
        Input size for images (None: the model's pretrained size).
    max_length : int or None, default=None
        Token limit for text (None: the model's). Longer texts are
        truncated, with one warning per fit.
    pooling : {"mean", "cls"}, default="mean"
        Token pooling for ``hf/`` encoders.
    bf16 : bool, default=True
        bfloat16 autocast on CUDA (ignored on CPU).
    device : str, default="auto"
    random_state : int, RandomState or None, default=None
        Seeds torch and numpy: CPU runs are repeatable.
    verbose : int, default=0
        1 prints skorch's epoch table, 2 adds a batch progress bar.
    callbacks : list of skorch callbacks or None, default=None
        Extra callbacks, appended to the ones the strategy needs.
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the loss.

    Attributes
    ----------
    classes_ : ndarray
        Class labels, in the order of ``predict_proba``'s columns.
    net_ : skorch.NeuralNet
        The trained net (``net_.history`` holds the training log).
    history_ : skorch.History
    n_epochs_ : int
    modality_ : {"text", "image"}

    See Also
    --------
    sktransfer.PretrainedFeatureExtractor : frozen features for any head.

    Examples
    --------
    >>> from sktransfer import FineTunedClassifier
    >>> texts = ["the match ended in a draw", "shares fell sharply",
    ...          "the striker scored twice", "the bank raised rates"] * 4
    >>> y = ["sport", "business", "sport", "business"] * 4
    >>> clf = FineTunedClassifier("sentence-transformers/all-MiniLM-L6-v2",
    ...                           strategy="linear_probe", lr=1e-2,
    ...                           max_epochs=3, random_state=0).fit(texts, y)
    >>> clf.predict(["a late goal won the cup"])[0]
    'sport'
    """

    def __init__(
        self,
        backbone="sentence-transformers/all-MiniLM-L6-v2",
        *,
        strategy="full",
        unfreeze_last=2,
        unfreeze_every=1,
        head="linear",
        head_hidden=256,
        head_dropout=0.1,
        lr=1e-3,
        backbone_lr_ratio=0.1,
        layer_decay=None,
        warmup=0.1,
        weight_decay=0.01,
        grad_clip=1.0,
        l2sp=0.0,
        wise_alpha=1.0,
        max_epochs=5,
        batch_size=16,
        validation_fraction=0.0,
        early_stopping=None,
        checkpoint_dir=None,
        augment=True,
        image_size=None,
        max_length=None,
        pooling="mean",
        bf16=True,
        device="auto",
        random_state=None,
        verbose=0,
        callbacks=None,
        class_weight=None,
    ):
        super().__init__(
            backbone,
            strategy=strategy,
            unfreeze_last=unfreeze_last,
            unfreeze_every=unfreeze_every,
            head=head,
            head_hidden=head_hidden,
            head_dropout=head_dropout,
            lr=lr,
            backbone_lr_ratio=backbone_lr_ratio,
            layer_decay=layer_decay,
            warmup=warmup,
            weight_decay=weight_decay,
            grad_clip=grad_clip,
            l2sp=l2sp,
            wise_alpha=wise_alpha,
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
            random_state=random_state,
            verbose=verbose,
            callbacks=callbacks,
        )
        self.class_weight = class_weight

    def fit(self, X, y):
        """Fine-tune on ``X`` (texts or images) and labels ``y``.

        Returns
        -------
        self : FineTunedClassifier
        """
        self._validate_params()
        y = self._check_y(y)
        self._check_lengths(X, y)
        classes, y_enc = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"y has a single class ({classes[0]!r}); a classifier needs at least two.")
        self.classes_ = classes
        return self._fit(X, y_enc.astype(np.int64), len(classes), y_enc)

    @staticmethod
    def _check_y(y):
        y = np.asarray(y)
        if y.ndim != 1:
            if y.ndim == 2 and y.shape[1] == 1:
                y = y.ravel()
            else:
                raise ValueError(f"y must be 1-D (one label per input), got shape {y.shape}.")
        for i, v in enumerate(y):
            if v is None or (isinstance(v, float) and np.isnan(v)):
                raise ValueError(f"Row {i} of y is missing (None/NaN); every input needs a label.")
        if y.dtype.kind == "f" and type_of_target(y) == "continuous":
            raise ValueError("y is continuous; use FineTunedRegressor for regression targets.")
        return y

    def _criterion(self, y_enc):
        if self.class_weight is None:
            return torch.nn.CrossEntropyLoss
        if isinstance(self.class_weight, str):
            if self.class_weight != "balanced":
                raise ValueError(f"class_weight must be None, 'balanced' or a dict, got {self.class_weight!r}.")
            weights = compute_class_weight("balanced", classes=np.arange(len(self.classes_)), y=y_enc)
        elif isinstance(self.class_weight, dict):
            unknown = set(self.class_weight) - set(self.classes_.tolist())
            if unknown:
                raise ValueError(f"class_weight names classes not in y: {sorted(unknown, key=str)}.")
            weights = np.array([self.class_weight.get(c, 1.0) for c in self.classes_.tolist()], dtype=float)
        else:
            raise ValueError(f"class_weight must be None, 'balanced' or a dict, got {self.class_weight!r}.")
        return _WeightedCrossEntropy(torch.as_tensor(weights, dtype=torch.float32))

    def _fitted_json(self):
        return {"classes": [c.item() if hasattr(c, "item") else c for c in self.classes_]}

    def _restore_fitted(self, fitted):
        self.classes_ = np.asarray(fitted["classes"])

    def _n_out_fitted(self):
        return len(self.classes_)

    def decision_function(self, X):
        """Logits of the head, shape (n_samples, n_classes)."""
        return self._forward(X)

    def predict_proba(self, X):
        """Class probabilities (softmax of the logits)."""
        logits = torch.as_tensor(self._forward(X))
        return torch.softmax(logits, dim=1).numpy()

    def predict(self, X):
        """Predicted class labels."""
        return self.classes_[np.argmax(self._forward(X), axis=1)]

    def score(self, X, y, sample_weight=None):
        """Accuracy. Labels never seen in ``fit`` raise an error."""
        check_is_fitted(self, "classes_")
        y = np.asarray(y)
        unseen = sorted(set(y.tolist()) - set(self.classes_.tolist()), key=str)
        if unseen:
            raise ValueError(
                f"y contains labels never seen during fit: {unseen[:10]}. Known classes: {self.classes_.tolist()}."
            )
        return super().score(X, y, sample_weight=sample_weight)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.non_deterministic = self.random_state is None
        tags.transformer_tags = None
        return tags


class FineTunedRegressor(RegressorMixin, _FineTunedBase):
    """Fine-tune a pretrained backbone with a new regression head.

    Same parameters and strategies as :class:`FineTunedClassifier`;
    targets are standardised internally and predictions are returned in
    the original units.

    Attributes
    ----------
    n_outputs_ : int
    net_ : skorch.NeuralNet

    Examples
    --------
    >>> from sktransfer import FineTunedRegressor
    >>> texts = ["tiny", "a short sentence", "a much longer sentence than the others"] * 4
    >>> y = [len(t) for t in texts]
    >>> reg = FineTunedRegressor("sentence-transformers/all-MiniLM-L6-v2", strategy="linear_probe",
    ...                          lr=1e-2, max_epochs=2, random_state=0).fit(texts, y)
    >>> reg.predict(["tiny"]).shape
    (1,)
    """

    def fit(self, X, y):
        """Fine-tune on ``X`` and continuous targets ``y``."""
        self._validate_params()
        y = np.asarray(y, dtype=np.float64)
        if y.ndim == 1:
            y2 = y[:, None]
        elif y.ndim == 2:
            y2 = y
        else:
            raise ValueError(f"y must be 1-D or 2-D, got shape {y.shape}.")
        bad = np.flatnonzero(~np.isfinite(y2).all(axis=1))
        if bad.size:
            raise ValueError(f"Row {bad[0]} of y is NaN or infinite; every input needs a finite target.")
        self._check_lengths(X, y2)
        self.n_outputs_ = y2.shape[1]
        self._y_1d = y.ndim == 1
        self.y_mean_ = y2.mean(axis=0)
        self.y_scale_ = np.where(y2.std(axis=0) > 0, y2.std(axis=0), 1.0)
        y_enc = ((y2 - self.y_mean_) / self.y_scale_).astype(np.float32)
        return self._fit(X, y_enc, self.n_outputs_, None)

    def _criterion(self, y_enc):
        return torch.nn.MSELoss

    def _fitted_json(self):
        return {
            "n_outputs": int(self.n_outputs_),
            "y_1d": bool(self._y_1d),
            "y_mean": self.y_mean_.tolist(),
            "y_scale": self.y_scale_.tolist(),
        }

    def _restore_fitted(self, fitted):
        self.n_outputs_ = fitted["n_outputs"]
        self._y_1d = fitted["y_1d"]
        self.y_mean_ = np.asarray(fitted["y_mean"])
        self.y_scale_ = np.asarray(fitted["y_scale"])

    def _n_out_fitted(self):
        return self.n_outputs_

    def predict(self, X):
        """Predicted targets, in the units of ``y``."""
        pred = self._forward(X) * self.y_scale_ + self.y_mean_
        return pred[:, 0] if self._y_1d else pred

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.non_deterministic = self.random_state is None
        tags.transformer_tags = None
        return tags

"""`FineTunedClassifier` and `FineTunedRegressor`: skorch underneath, sklearn on top."""

import math
import os
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from . import _persistence
from ._training import INFERENCE_CONSTRAINTS, _CLASS_WEIGHT, _Exportable, _ClassifierOutputs, _RegressorOutputs, _SkorchTransferBase
from ._training import resolve_backbone, start_estimator
from .callbacks import L2SP, FreezeSchedule, apply_wise_ft, recompute_bn_statistics

STRATEGIES = ("linear_probe", "partial", "full", "progressive")

# The fine-tuned backbone tensors a save keeps for set_wise_alpha (only when the model holds them).
WISE_FILE = "wise_finetuned.safetensors"


def _changed_tensors(module, reference):
    """CPU copies of ``module``'s floating tensors that differ from ``reference`` (``body.``-prefixed names).

    What WiSE-FT after fit keeps of the fine-tuned model: the tensors that
    trained (and the BatchNorm statistics that moved), nothing else.
    """
    out = {}
    for name, v in module.state_dict().items():
        ref = reference.get(name)
        if ref is not None and v.is_floating_point() and not torch.equal(ref.to(v.device, v.dtype), v):
            out[name] = v.detach().to("cpu", copy=True)
    return out


def _digest(module, names):
    """SHA-256 of ``module``'s tensors ``names``: whether the weights are still those set_wise_alpha wrote."""
    import hashlib

    h = hashlib.sha256()
    state = module.state_dict()
    for name in sorted(names):
        h.update(name.encode())
        h.update(state[name].detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def _check_wise_alpha(alpha):
    if isinstance(alpha, (bool, np.bool_)) or not isinstance(alpha, Real) or not math.isfinite(float(alpha)):
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}.")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(
            f"alpha={alpha!r} is outside [0, 1]: WiSE-FT mixes (1 - alpha) * pretrained + alpha * fine-tuned "
            "(0: the pretrained backbone with the trained head, 1: the fine-tuned model)."
        )
    return float(alpha)


class _FineTunedBase(_SkorchTransferBase):
    """Parameters and hooks of full / partial / progressive fine-tuning."""

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
        head_init="random",
        lr=1e-3,
        backbone_lr_ratio=0.1,
        layer_decay=None,
        warmup=0.1,
        weight_decay=0.01,
        grad_clip=1.0,
        l2sp=0.0,
        wise_alpha=1.0,
        freeze_bn_stats=True,
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
        num_workers=0,
        random_state=None,
        verbose=0,
        callbacks=None,
        inference_backend="torch",
        inference_quantize=None,
        accelerator=None,
    ):
        self.backbone = backbone
        self.strategy = strategy
        self.unfreeze_last = unfreeze_last
        self.unfreeze_every = unfreeze_every
        self.head = head
        self.head_hidden = head_hidden
        self.head_dropout = head_dropout
        self.head_init = head_init
        self.lr = lr
        self.backbone_lr_ratio = backbone_lr_ratio
        self.layer_decay = layer_decay
        self.warmup = warmup
        self.weight_decay = weight_decay
        self.grad_clip = grad_clip
        self.l2sp = l2sp
        self.wise_alpha = wise_alpha
        self.freeze_bn_stats = freeze_bn_stats
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
        self.num_workers = num_workers
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks
        self.inference_backend = inference_backend
        self.inference_quantize = inference_quantize
        self.accelerator = accelerator

    _parameter_constraints: dict = {
        **_SkorchTransferBase._parameter_constraints,
        # A fitted FineTuned* (or its save directory, a str) as the start: sequential tasks.
        "backbone": [str, torch.nn.Module, BaseEstimator],
        "strategy": [StrOptions(set(STRATEGIES))],
        "unfreeze_last": [Interval(Integral, 1, None, closed="left")],
        "unfreeze_every": [Interval(Integral, 1, None, closed="left")],
        "backbone_lr_ratio": [Interval(Real, 0, None, closed="left")],
        "layer_decay": [Interval(Real, 0, 1, closed="right"), None],
        "l2sp": [Interval(Real, 0, None, closed="left")],
        "wise_alpha": [Interval(Real, 0, 1, closed="both")],
        "freeze_bn_stats": ["boolean"],
        "checkpoint_dir": [str, os.PathLike, None],
    }

    def _check_params(self):
        super()._check_params()
        start_estimator(self.backbone)  # a fitted FineTuned* (or its save) or a backbone; else named errors

    def __sklearn_clone__(self):
        """``clone`` keeps a fitted start (``backbone=clf_a``) as it is: a clone of it would be unfitted."""
        start = self.backbone
        if not isinstance(start, BaseEstimator):
            return super().__sklearn_clone__()
        import copy

        from sklearn.base import clone

        # As sklearn's clone (parameters cloned, the metadata requests and
        # output configuration copied), except the start; self is not touched
        # (another thread may read it meanwhile).
        params = {k: (v if k == "backbone" else clone(v, safe=False)) for k, v in self.get_params(deep=False).items()}
        twin = type(self)(**params)
        for attr in ("_metadata_request", "_sklearn_output_config"):
            if attr in self.__dict__:
                setattr(twin, attr, copy.deepcopy(self.__dict__[attr]))
        return twin

    def get_params(self, deep=True):
        """As sklearn's, without the ``backbone__*`` parameters of a fitted start.

        A start (``backbone=clf_a``) is a fitted model this one trains on
        from, not a sub-estimator to tune: ``set_params(backbone__lr=...)``
        would change ``clf_a`` itself.
        """
        params = super().get_params(deep=deep)
        if deep and isinstance(self.backbone, BaseEstimator):
            params = {k: v for k, v in params.items() if not k.startswith("backbone__")}
        return params

    def set_params(self, **params):
        """As sklearn's; ``backbone__*`` is refused while the backbone is a fitted start (see :meth:`get_params`)."""
        start = params.get("backbone", self.backbone)
        nested = sorted(k for k in params if k.startswith("backbone__"))
        if nested and isinstance(start, BaseEstimator):
            raise ValueError(
                f"Invalid parameter {nested[0]!r} for {type(self).__name__}: the backbone is a fitted start "
                f"({type(start).__name__}), which this model trains on from; it is not tuned through this one. "
                "Set the start's parameters on it before fitting it."
            )
        return super().set_params(**params)

    def _augments(self):
        # "auto": no augmentation, whatever the strategy (docs/fine_tuning.md:
        # chosen leave one task out on the suite's image tasks).
        if isinstance(self.augment, str) and self.augment == "auto":
            return False
        return bool(self.augment)

    def _freezes_bn_stats(self):
        return bool(self.freeze_bn_stats)

    def _init_head(self, module, data, y_enc, stratify, seed):
        from ._head_init import init_head_for

        init_head_for(self, module, data, y_enc, stratify, seed)

    def _method_callbacks(self, module, shared):
        # The weights set_wise_alpha mixes with are reloaded by name and checked by this.
        self._wise_fingerprint = shared.fingerprint()
        groups = module.block_groups
        if self.strategy == "partial" and self.unfreeze_last > len(groups):
            raise ValueError(
                f"unfreeze_last={self.unfreeze_last} is larger than the {len(groups)} block groups of "
                f"{self.backbone!r}; use at most {len(groups)} (or strategy='full')."
            )
        names = {n for n, _ in module.named_parameters()}
        reference = {f"body.{k}": v.detach().clone() for k, v in module.body.state_dict().items() if f"body.{k}" in names}
        cbs = [("freeze", FreezeSchedule(self.strategy, self.unfreeze_last, self.unfreeze_every))]
        if self.l2sp:
            cbs.append(("l2sp", L2SP(self.l2sp, reference)))
        return cbs

    def _after_training_steps(self, module):
        self.wise_alpha_ = float(self.wise_alpha)
        for name in ("_wise_finetuned", "_wise_digest"):  # a refit forgets the previous fit's weights
            self.__dict__.pop(name, None)
        if self.wise_alpha >= 1.0:
            return []
        # WiSE-FT on the final weights (after EarlyStopping restored the best
        # ones). BatchNorm statistics that moved in training are recomputed
        # for the interpolated weights: interpolated statistics collapse the
        # model (docs/fine_tuning.md, "Catastrophic forgetting").
        state = {f"body.{k}": v.detach().clone() for k, v in module.body.state_dict().items() if v.is_floating_point()}
        alpha, batch_size = self.wise_alpha, max(self.batch_size, 32)

        def wise_ft(net, X, y):
            # The fine-tuned tensors, kept so that set_wise_alpha can mix again (1.0 included).
            self._wise_finetuned = _changed_tensors(net.module_, state)
            apply_wise_ft(net, state, alpha, X, y, recalibrate_bn=True, batch_size=batch_size)
            self._wise_digest = _digest(net.module_, self._wise_finetuned)

        return [wise_ft]

    # ---------------------------------------------------- WiSE-FT after fit
    def set_wise_alpha(self, alpha, X_bn=None):
        """Mix the fine-tuned backbone with the pretrained one again, without retraining (WiSE-FT).

        The backbone's weights become ``(1 - alpha) * pretrained + alpha *
        fine_tuned`` (Wortsman et al., 2022); the trained head is kept as it
        is. ``alpha=1`` is the fine-tuned model, ``alpha=0`` the pretrained
        backbone with the trained head. The paper chooses ``alpha`` on
        validation data after training: call this for each candidate and
        score, then keep the best (see ``docs/merging.md``, "WiSE-FT after
        fit"). Any number of calls, in any order: each mixes from the kept
        fine-tuned weights, so going back to ``alpha=1`` restores them
        exactly.

        What is kept: the fine-tuned tensors that differ from the
        pretrained ones (a copy on the CPU, held from the first call on, or
        from ``fit`` when ``wise_alpha < 1``): the whole backbone for
        ``strategy="full"`` (about 4 bytes per parameter, e.g. 90 MB for
        all-MiniLM-L6-v2), the trained block groups for ``"partial"``,
        nothing for ``"linear_probe"``. The pretrained weights are not
        copied: they are read from the backbone loaded by name, whose
        weights fingerprint must be the one the model was fine-tuned from.
        ``save`` writes the kept tensors too (``wise_finetuned.safetensors``),
        so a loaded model can change ``alpha`` again.

        Relation to the ``wise_alpha`` parameter: ``wise_alpha`` is the mix
        ``fit`` applies, and stays what it was (``clone`` and a refit apply
        it again, as scikit-learn wants of parameters); the mix the model
        holds now is the fitted attribute ``wise_alpha_`` (``wise_alpha``
        after ``fit``, ``alpha`` after this call), which ``save``/``load``
        and pickling keep.

        Parameters
        ----------
        alpha : float in [0, 1]
            Share of the fine-tuned weights.
        X_bn : rows of X or None, default=None
            Inputs to recompute the running statistics of the BatchNorm
            layers that updated them in training (``freeze_bn_stats=False``),
            as WiSE-FT at ``fit`` does on the training rows: needed for
            ``0 < alpha < 1`` in that case only (pass the training inputs).
            At 0 and 1 the pretrained and fine-tuned statistics are exact.

        Returns
        -------
        self
            With ``wise_alpha_ = alpha``.

        Examples
        --------
        >>> from sktransfer import FineTunedClassifier
        >>> texts = ["the match ended in a draw", "shares fell sharply",
        ...          "the striker scored twice", "the bank raised rates"] * 4
        >>> y = ["sport", "business", "sport", "business"] * 4
        >>> clf = FineTunedClassifier(strategy="full", lr=1e-2, max_epochs=2, random_state=0).fit(texts, y)
        >>> scores = {a: clf.set_wise_alpha(a).score(texts, y) for a in (0.0, 0.5, 1.0)}
        >>> clf.set_wise_alpha(max(scores, key=scores.get)).wise_alpha_ in scores
        True
        """
        check_is_fitted(self, "net_")
        alpha = _check_wise_alpha(alpha)
        module = self._core_module()
        tuned, current = self._wise_kept()
        pretrained = None
        if tuned is None:
            if current < 1.0:
                raise ValueError(
                    f"This model was mixed at fit (wise_alpha={current}) and keeps no fine-tuned weights (it was "
                    "saved or pickled by an sktransfer without set_wise_alpha): fit it again to change alpha."
                )
            pretrained = self._wise_pretrained()
            self._wise_finetuned = tuned = _changed_tensors(module, pretrained)
        state = module.state_dict(keep_vars=True)
        bad = [k for k, v in tuned.items() if k not in state or tuple(state[k].shape) != tuple(v.shape)]
        if bad:
            raise ValueError(f"The kept fine-tuned weights do not fit this model (e.g. {bad[:3]}): fit it again.")
        bn = [m for name, m in module.named_modules()
              if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and f"{name}.running_mean" in tuned]
        recalibrate = bool(bn) and 0.0 < alpha < 1.0
        if recalibrate and X_bn is None:
            raise ValueError(
                f"set_wise_alpha({alpha}) needs X_bn: {len(bn)} BatchNorm layers updated their running statistics "
                "in training (freeze_bn_stats=False), and the mixed weights need statistics of their own. Pass "
                "X_bn=<the training inputs> (no labels needed); alpha=0 and alpha=1 need none."
            )
        rows = None
        if recalibrate:  # checked before any weight changes: bad rows leave the model as it was
            from ._data import RowDataset
            from ._seeding import isolated_torch_rng

            with isolated_torch_rng():
                bb = resolve_backbone(self.backbone, self.pooling)
            rows = RowDataset(bb, bb.check_inputs(X_bn), None, max_length=self.max_length, image_size=self.image_size)
        if alpha < 1.0 and pretrained is None:
            pretrained = self._wise_pretrained()
        with torch.no_grad():
            for name, w1 in tuned.items():
                p = state[name]
                if alpha == 1.0:
                    p.copy_(w1)  # exactly the fine-tuned tensor, whatever was mixed before
                elif alpha == 0.0:
                    p.copy_(pretrained[name])
                else:
                    p.copy_(torch.lerp(pretrained[name].to(torch.float32), w1.to(torch.float32), alpha))
        if recalibrate:
            recompute_bn_statistics(module, bn, rows, max(self.batch_size, 32), self.net_.device)
        self.wise_alpha_ = alpha
        self._wise_digest = _digest(module, tuned)
        self._forget_compiled(refs=True)  # a compiled model holds the weights it was built from
        return self

    def _wise_kept(self):
        """(kept fine-tuned tensors or None, the mix the weights hold), forgotten if the weights changed since.

        Weights written by anything but fit and set_wise_alpha (a soup or a
        task vector built from a copy of this model, training on) are a new
        model: the kept tensors are not its fine-tuned weights any more, so
        they are dropped and the weights count as fine-tuned (alpha 1).
        """
        tuned = self.__dict__.get("_wise_finetuned")
        current = float(getattr(self, "wise_alpha_", self.wise_alpha))
        recorded = self.__dict__.get("_wise_digest")
        if tuned is not None and recorded is not None and recorded != _digest(self._core_module(), tuned):
            for name in ("_wise_finetuned", "_wise_digest"):
                self.__dict__.pop(name, None)
            self.wise_alpha_ = current = 1.0
            tuned = None
        return tuned, current

    def _wise_pretrained(self):
        """The pretrained backbone's tensors (``body.``-prefixed; the loaded backbone's own, not a copy)."""
        from ._seeding import isolated_torch_rng

        if isinstance(self.backbone, torch.nn.Module):
            raise ValueError("set_wise_alpha needs a backbone given by name or path (not an nn.Module) to reload it.")
        with isolated_torch_rng():  # a fitted start (backbone=clf_a): its trained body is the one mixed with
            shared = resolve_backbone(self.backbone, self.pooling)
        expected = self.__dict__.get("_wise_fingerprint")
        if expected is not None and shared.fingerprint() != expected:
            raise ValueError(
                f"set_wise_alpha mixes with the weights this model was fine-tuned from (fingerprint {expected}), "
                f"but {self.backbone!r} now has fingerprint {shared.fingerprint()}: point backbone at the original "
                "weights (e.g. load(path, backbone=<local copy>))."
            )
        return {f"body.{k}": v for k, v in shared.body.state_dict().items()}

    def _write_config(self, path, extra=None):
        tuned, alpha = self._wise_kept()
        wise = {"alpha": alpha, "finetuned": tuned is not None}
        if self.__dict__.get("_wise_fingerprint"):
            wise["base_fingerprint"] = self._wise_fingerprint
        target = os.path.join(str(path), WISE_FILE)
        if tuned is not None:
            _persistence.write_tensors(path, WISE_FILE, {k: v.contiguous() for k, v in tuned.items()})
        elif os.path.exists(target):
            os.remove(target)  # a previous save's, into the same directory
        super()._write_config(path, {**(extra or {}), "wise": wise})

    def _extra_saved_files(self):
        return (WISE_FILE,) if self.__dict__.get("_wise_finetuned") is not None else ()

    @classmethod
    def _read_config(cls, path):
        est, meta = super()._read_config(path)
        config = os.path.join(str(path), "config.json")
        wise = meta.get("wise") or {}  # saves from before set_wise_alpha: the mix is the parameter's
        try:
            est.wise_alpha_ = _check_wise_alpha(wise.get("alpha", est.wise_alpha))
        except ValueError as exc:
            raise _persistence.SaveIntegrityError(f"{config!r}: 'wise' holds an invalid alpha ({exc})") from exc
        if isinstance(wise.get("base_fingerprint"), str):
            est._wise_fingerprint = wise["base_fingerprint"]
        if wise.get("finetuned"):
            manifest = _persistence.read_json(str(path), _persistence.MANIFEST)  # verified by the read above
            if WISE_FILE not in manifest.get("files", {}):
                raise _persistence.SaveIntegrityError(
                    f"{config!r} says the save keeps the fine-tuned weights, but {_persistence.MANIFEST!r} does "
                    f"not list {WISE_FILE!r}: the save is incomplete or was edited."
                )
            est._wise_finetuned = _persistence.load_tensors(path, WISE_FILE)
        return est, meta

    def _net_kwargs(self):
        return {"backbone_lr_ratio": self.backbone_lr_ratio, "layer_decay": self.layer_decay, "l2sp": self.l2sp}


class FineTunedClassifier(_ClassifierOutputs, ClassifierMixin, _Exportable, _FineTunedBase):
    """Fine-tune a pretrained backbone with a new classification head.

    The source head is cut off and a new one sized from ``y`` is attached.
    Training runs on skorch (callbacks, history, early stopping,
    checkpointing) and every choice of the transfer recipe is a constructor
    parameter, so ``GridSearchCV`` can search the strategy itself.

    Parameters
    ----------
    backbone : str, nn.Module or fitted FineTunedClassifier, default="sentence-transformers/all-MiniLM-L6-v2"
        Any name :func:`sktransfer.load_backbone` accepts (``"timm/<arch>"``,
        ``"torchvision/<arch>"``, ``"sentence-transformers/<name>"``,
        ``"hf/<org>/<name>"``, a local directory).

        Or a fitted :class:`FineTunedClassifier` / :class:`FineTunedRegressor`
        (or the directory its ``save`` wrote): sequential tasks. Training
        starts from that model's trained body with a new head sized from
        ``y`` (its classes may be new); the start itself is left as it
        is. What measures from "the pretrained weights" measures from the
        start's: ``l2sp`` pulls towards them, ``wise_alpha`` and
        :meth:`set_wise_alpha` mix with them, and
        :func:`sktransfer.merging.task_vector` is the change since them
        (``task_vector(clf_b).apply(clf_a)`` is task A's head on the new
        body: how much of task A survived). ``clone`` keeps the start
        itself (a clone of it would be unfitted). A start held in memory is
        not saved with the model (``save`` refuses: save the start and pass
        its directory); LoRA models start a fit once merged
        (``backbone=lora.merge()``). See ``docs/merging.md``, "Sequential
        tasks".
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
    head_init : {"auto", "random", "probe"}, default="auto"
        ``"auto"`` is ``"probe"`` for a linear head and ``"random"`` for an
        MLP head. The default was chosen on the evaluation suite, leave one
        task out: LP-FT was the better recipe on every held-out task at 8
        labeled rows per class, for each strategy (``benchmarks/RESULTS.md``,
        "Evaluation suite"). ``"probe"`` starts training from the linear probe (LP-FT): a
        ``LogisticRegression`` (``Ridge`` for regression) fitted on the
        frozen features of the training rows sets the linear head before
        fine-tuning, so training starts where the frozen probe ends (LP-FT,
        Kumar et al. 2022). Costs one forward pass over the training rows.
        Needs ``head="linear"``.
    lr : float or "auto", default=1e-3
        Learning rate of the head (the peak of the warm-up + cosine
        schedule). ``"auto"`` chooses it with a learning-rate range test
        (fastai's ``lr_find``) on the training rows before training: up to
        100 steps with the rate growing from 1e-7 to 10, the loss smoothed,
        stopped when it diverges; the rate taken is a tenth of the rate
        of the lowest loss (sktransfer/_lr_finder.py says why). The
        model, optimizer and random state are then put back, so the fit
        equals one with ``lr=lr_``. ``lr_`` holds the rate, ``lr_finder_``
        the sweep (see :func:`sktransfer.plot_lr_find`).
        ``backbone_lr_ratio`` and ``layer_decay`` apply to the found rate as
        to a given one.
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
        ``(1 - wise_alpha) * pretrained + wise_alpha * fine_tuned``. The
        running statistics of BatchNorm layers that updated them in
        training are then recomputed on the training inputs (one extra
        forward pass, no augmentation): the interpolated network needs
        statistics of its own. This is the mix ``fit`` applies; to choose
        it after training (on validation data, as the paper does) use
        :meth:`set_wise_alpha`, which leaves this parameter as it is and
        sets ``wise_alpha_``.
    freeze_bn_stats : bool, default=True
        Keep every BatchNorm layer in inference mode while training: the
        pretrained running statistics are used and kept, while the layers'
        scale and shift train with their block. Keras' advice for
        fine-tuning; in the forgetting benchmark it raised the target
        accuracy of ``full`` fine-tuning of EfficientNet-Lite0
        (``benchmarks/RESULTS.md``, "Forgetting control: L2-SP, WiSE-FT, frozen BatchNorm statistics"). ``False`` lets trained BatchNorm layers
        normalise with batch statistics and update their running ones, as
        torch and timm do by default. No effect on models without
        BatchNorm (transformers use LayerNorm).
    max_epochs : int, default=5
    batch_size : int, default=16
    validation_fraction : float, default=0.0
        Stratified hold-out for validation loss (needed by early stopping).
    early_stopping : int or None, default=None
        Patience in epochs on validation loss; the best weights are restored.
    checkpoint_dir : str or None, default=None
        Directory of checkpoints. Each fit writes to its own subdirectory,
        named by a fingerprint of its data, classes, parameters and seed
        (``checkpoint_path_``), every epoch, random state included: a fit
        interrupted and run again with the same data and parameters resumes
        and ends bit-identical to an uninterrupted one (on CPU, with the
        same torch version and number of threads); a finished run (all
        epochs, or stopped after an epoch by any callback) is reused; any
        other fit (another fold or candidate of a search) trains its own.
        With ``random_state=None`` the fingerprint holds no seed: the same
        data and parameters resume or reuse the run with the seed it drew
        first, they do not draw a new one. ``callbacks`` are not in the
        fingerprint either: don't share a directory between fits whose
        callbacks change training. The files survive a killed process, not
        a power cut (nothing calls ``fsync``).
    augment : bool or "auto", default="auto"
        Random resized crops and flips for images, in training only.
        ``"auto"``: none, whatever the strategy. With few labeled images,
        a model that starts from the probe drifts away from it when it
        trains on flipped and cropped views (flips also change some labels,
        e.g. digits): on the suite's image tasks, chosen leave one task out
        at 8 and 32 rows per class, no augmentation was the better recipe
        for the linear probe, partial and full fine-tuning
        (``benchmarks/RESULTS.md``, "Evaluation suite"). ``True`` augments;
        try it with many labeled images per class.
    image_size : int or None, default=None
        Input size for images (None: the model's pretrained size).
    max_length : int or None, default=None
        Token limit for text (None: the model's). Longer texts are
        truncated, with one warning per fit.
    pooling : {"mean", "cls"}, default="mean"
        Token pooling for ``hf/`` encoders.
    bf16 : bool, default=True
        bfloat16 autocast on CUDA (ignored on CPU, and with an
        ``accelerator``: its ``mixed_precision`` is the one in force).
    device : str, default="auto"
        Where the model trains and predicts (``"auto"``: CUDA, else MPS,
        else CPU). With an ``accelerator``, the accelerator's device.
    num_workers : int, default=0
        Worker processes (torch ``DataLoader``) that prepare the training
        batches: images decoded, resized and cropped, texts tokenized and
        padded to their batch's longest. Batches are always prepared as
        they are read, never all at once, so memory does not grow with the
        number of rows; ``0`` prepares them in the training process,
        ``num_workers > 0`` while the model trains on the batch before
        (worth it for images read from files, with cores to spare). The
        model is the same for every value: the workers draw no random
        numbers of the fit. Not part of the checkpoint's fingerprint (as
        ``device``).
    random_state : int, RandomState or None, default=None
        Seeds torch and numpy: CPU runs are repeatable.
    verbose : int, default=0
        1 prints skorch's epoch table, 2 adds a batch progress bar.
    callbacks : list of skorch callbacks or None, default=None
        Extra callbacks, appended to the ones the strategy needs.
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the loss.
    inference_backend : {"torch", "onnx", "openvino"}, default="torch"
        What ``predict``, ``predict_proba``, ``decision_function`` and
        ``transform`` run: the torch model, or the trained model (body +
        head) compiled for ONNX Runtime or OpenVINO on the CPU
        (``pip install 'sktransfer[onnx]'`` / ``'sktransfer[openvino]'``),
        as :meth:`export` writes it. It changes inference only, never
        training (as ``n_jobs`` does in scikit-learn): a parameter, so
        that ``clone``, ``save`` and ``set_params`` on a fitted model carry
        it. The compiled model is built at ``fit`` (or at the first
        ``predict`` after ``set_params``) and cached on disk by the trained
        weights, backend and quantization; an unpickled or loaded model
        reads it back. fp32 gives the torch labels (see
        ``docs/fast_inference.md`` for the measured agreement).
    inference_quantize : {None, "int8"}, default=None
        int8 with a compiled ``inference_backend``: dynamic weights-only
        for transformers on ONNX Runtime; static, calibrated by NNCF on
        (at most 256 of) the rows given to ``fit``, for CNNs and on
        OpenVINO. Check the labels it gives on your data before keeping it.
    accelerator : accelerate.Accelerator or None, default=None
        Train through Hugging Face accelerate (skorch's
        ``AccelerateMixin``): mixed precision (the accelerator's
        ``mixed_precision``, which replaces ``bf16``: training runs in it,
        and prediction in bf16 autocast on CUDA when it is ``"bf16"``) and
        several GPUs of one machine (run the script with ``accelerate
        launch``; each process trains on its share of every batch).
        ``device`` is then left to the accelerator: the model trains and
        predicts on ``accelerator.device`` (another ``device`` is
        refused). None trains as without it; ``Accelerator(cpu=True)``
        trains the same model on the CPU. Bound to the process that
        trains: neither pickled nor saved (an unpickled or loaded model has
        None; ``clone`` keeps it, so use ``n_jobs=1`` in a search), and the
        fitted model keeps nothing of accelerate's. Verified on the CPU
        only: unverified on GPUs in this project's CI. See
        ``docs/scaling.md``.

    Attributes
    ----------
    classes_ : ndarray
        Class labels, in the order of ``predict_proba``'s columns.
    net_ : skorch.NeuralNet
        The trained net (``net_.history`` holds the training log).
    history_ : skorch.History
    n_epochs_ : int
    modality_ : {"text", "image"}
    lr_ : float
        The learning rate trained at: ``lr``, or the one ``lr="auto"`` chose.
    lr_finder_ : LRFinderResult or None
        With ``lr="auto"``, the range test: ``lrs``, smoothed ``losses``,
        the choice, and ``plot(ax=None)``. None with a numeric ``lr``.
    checkpoint_path_ : str or None
        The subdirectory of ``checkpoint_dir`` this fit wrote its
        checkpoints to (None without ``checkpoint_dir``).
    wise_alpha_ : float
        The WiSE-FT mix the model holds now: ``wise_alpha`` after ``fit``,
        the last ``alpha`` given to :meth:`set_wise_alpha` after it.

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
    >>> str(clf.predict(["a late goal won the cup"])[0])
    'sport'
    """

    _parameter_constraints: dict = {
        **_FineTunedBase._parameter_constraints, **INFERENCE_CONSTRAINTS, "class_weight": _CLASS_WEIGHT,
    }

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
        head_init="auto",
        lr=1e-3,
        backbone_lr_ratio=0.1,
        layer_decay=None,
        warmup=0.1,
        weight_decay=0.01,
        grad_clip=1.0,
        l2sp=0.0,
        wise_alpha=1.0,
        freeze_bn_stats=True,
        max_epochs=5,
        batch_size=16,
        validation_fraction=0.0,
        early_stopping=None,
        checkpoint_dir=None,
        augment="auto",
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
        inference_backend="torch",
        inference_quantize=None,
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
            inference_backend=inference_backend,
            inference_quantize=inference_quantize,
            accelerator=accelerator,
        )
        self.class_weight = class_weight


class FineTunedRegressor(_RegressorOutputs, RegressorMixin, _Exportable, _FineTunedBase):
    """Fine-tune a pretrained backbone with a new regression head.

    Same parameters and strategies as :class:`FineTunedClassifier`, except
    that ``head_init`` defaults to ``"random"``: the evaluation suite that
    chose the classifier's ``"auto"`` has no regression task, so the
    regressor's default stays as it was until one is measured
    (``head_init="probe"`` fits a ``Ridge`` probe first). Targets are
    standardised internally and predictions are returned in
    the original units.

    Attributes
    ----------
    n_outputs_ : int
    net_ : skorch.NeuralNet
    lr_ : float
        The learning rate trained at (``lr``, or the one ``lr="auto"`` chose).
    lr_finder_ : LRFinderResult or None
        The range test of ``lr="auto"`` (None with a numeric ``lr``).
    checkpoint_path_ : str or None
        The subdirectory of ``checkpoint_dir`` this fit wrote its
        checkpoints to (None without ``checkpoint_dir``).
    wise_alpha_ : float
        The WiSE-FT mix the model holds now (see
        :meth:`FineTunedClassifier.set_wise_alpha`).

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

    _parameter_constraints: dict = {**_FineTunedBase._parameter_constraints, **INFERENCE_CONSTRAINTS}


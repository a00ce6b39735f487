"""The trainer every estimator that trains a backbone uses.

One skorch net class (:class:`TransferNet`: discriminative learning rates,
bf16 on CUDA) and one factory (:func:`make_net`) that sets the options
every fit shares: AdamW, a DataLoader generator of the fit's own (the
user's global generators are left alone), the training split, and the
verbosity. The schedules (:class:`~sktransfer.callbacks.WarmupCosine`,
DANN's gradient-reversal ramp) count their steps from this net's loader at
``on_train_begin``; steps after training (WiSE-FT) are explicit, run by the
estimator on the trained net.

With an ``accelerate.Accelerator`` (the estimators' ``accelerator=``), the
net is an :class:`AcceleratedTransferNet` (skorch's ``AccelerateMixin``):
accelerate places the model, shards the batches over processes and runs
mixed precision. After training it is turned back into a plain
:class:`TransferNet` on the accelerator's device (:func:`release_data`), so
that what follows (WiSE-FT, inference, saving, pickling) never depends on
accelerate. Unverified on GPUs in this project's CI: see docs/scaling.md.
"""

import contextlib

import torch
from skorch import NeuralNet
from skorch.hf import AccelerateMixin


class TransferNet(NeuralNet):
    """A skorch net with discriminative learning rates and bf16 on CUDA.

    ``adapter_only=True`` (PEFT) trains every trainable parameter at
    ``lr``, except the head's, which train at ``head_lr`` when it is given.
    Otherwise the head trains at ``lr``
    and each backbone block group at ``lr * backbone_lr_ratio``, times
    ``layer_decay`` per group below the top.
    """

    def __init__(
        self,
        *args,
        backbone_lr_ratio=0.1,
        layer_decay=None,
        weight_decay=0.0,
        l2sp=0.0,
        bf16=True,
        adapter_only=False,
        head_lr=None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.head_lr = head_lr
        self.backbone_lr_ratio = backbone_lr_ratio
        self.layer_decay = layer_decay
        self.weight_decay = weight_decay
        self.l2sp = l2sp
        self.bf16 = bf16
        self.adapter_only = adapter_only

    def initialize_optimizer(self, triggered_directly=None):
        head_lr, decay = self.lr, self.weight_decay
        if self.adapter_only:
            named = [(n, p) for n, p in self.module_.named_parameters() if p.requires_grad]
            head = [p for n, p in named if "task_head." in n]
            rest = [p for n, p in named if "task_head." not in n]
            # ``lr_scale``: the group's share of ``lr`` (timm's name), which the
            # LR range test (lr="auto") sweeps; a head with its own head_lr has none.
            groups = [{"params": rest, "lr": self.lr, "lr_scale": 1.0, "weight_decay": decay}]
            head_group = {"params": head, "lr": self.head_lr or self.lr, "weight_decay": decay}
            groups.append(head_group if self.head_lr else {**head_group, "lr_scale": 1.0})
            self.optimizer_ = self.optimizer([g for g in groups if g["params"]], lr=self.lr)
            return self
        module = self.module_
        backbone_lr = head_lr * self.backbone_lr_ratio
        groups = module.block_groups
        params = dict(module.body.named_parameters())
        # Anything outside the body (the head, and any module a subclass or a
        # user adds next to it) trains at the head's rate: a parameter left
        # out of every group would silently never train.
        body_ids = {id(p) for p in module.body.parameters()}
        others = [p for p in module.parameters() if id(p) not in body_ids]
        param_groups = [{"params": others, "lr": head_lr, "lr_scale": 1.0, "weight_decay": decay}]
        assigned = set()
        for depth, names in enumerate(reversed(groups)):  # depth 0 = top
            factor = self.layer_decay**depth if self.layer_decay else 1.0
            ps = [params[nm] for nm in names if nm in params]
            assigned.update(names)
            if ps:
                # With L2-SP the backbone is pulled to w0, not to 0.
                param_groups.append({
                    "params": ps, "lr": backbone_lr * factor, "lr_scale": self.backbone_lr_ratio * factor,
                    "weight_decay": 0.0 if self.l2sp else decay,
                })
        rest = [p for nm, p in params.items() if nm not in assigned]
        if rest:
            factor = self.layer_decay ** len(groups) if self.layer_decay else 1.0
            param_groups.append({
                "params": rest, "lr": backbone_lr * factor, "lr_scale": self.backbone_lr_ratio * factor,
                "weight_decay": 0.0 if self.l2sp else decay,
            })
        self.optimizer_ = self.optimizer(param_groups, lr=head_lr)
        return self

    def precision(self):
        """The autocast context training and prediction run in: bf16 on CUDA with ``bf16=True``, else none.

        Unverified on this project's CPU-only CI: see docs/fine_tuning.md.
        """
        if getattr(self, "bf16", False) and str(self.device).startswith("cuda"):
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def infer(self, x, **fit_params):
        with self.precision():
            return super().infer(x, **fit_params).float()


_DDP_PREFIX = "module."


class AcceleratedTransferNet(AccelerateMixin, TransferNet):
    """A :class:`TransferNet` trained through a Hugging Face ``accelerate.Accelerator``.

    skorch's ``AccelerateMixin``: the accelerator prepares the module, the
    optimizer and every loader (device placement, data sharding over
    processes, gradient synchronisation) and runs the training step under
    its mixed precision. Differences from the mixin as skorch ships it:

    - ``device`` is the accelerator's device (not None): the callbacks and
      steps that read ``net.device`` (checkpoint RNG states, WiSE-FT's
      BatchNorm pass) see where the model is. Refused when it is another.
    - :meth:`precision` is none: accelerate alone autocasts (the training
      step; the prepared module's forward), never doubled with ``bf16``.
    - Where accelerate drops a loader's generator (dispatched batches), it
      is given back: the fit draws the same random numbers as without.
    - An optimizer built again (``lr="auto"`` sets its rate, then rebuilds
      the groups) is built on the model itself and prepared again.
    - Parameter names (callbacks) and EarlyStopping's best weights are the
      model's own, without the "module." of a DDP wrapper.
    - At the end of training the accelerator's references to what it
      prepared here (the model, the optimizer, the loaders, which hold the
      training rows) are dropped: a fitted estimator doesn't pin them.

    Unverified on GPUs in this project's CI: see docs/scaling.md.
    """

    def _validate_params(self):
        TransferNet._validate_params(self)
        acc = self.accelerator
        if acc.device_placement and self.device is not None and not same_device(self.device, acc.device):
            raise ValueError(
                f"device={self.device!r} but the accelerator places the model on {acc.device}: "
                "leave device to the accelerator."
            )

    def precision(self):
        """None of its own: accelerate's mixed precision (its ``autocast``) is the one in force."""
        return contextlib.nullcontext()

    def _prepared(self, obj):
        self.__dict__.setdefault("_accelerate_prepared", set()).add(id(obj))
        return obj

    def _initialize_accelerator(self):
        if not self._wrapped_with_accelerator:
            super()._initialize_accelerator()
            for name in self._modules + self._criteria + self._optimizers:
                self._prepared(getattr(self, name + "_", None))
        return self

    def initialize_optimizer(self, triggered_directly=None):
        if not getattr(self, "_wrapped_with_accelerator", False):
            return super().initialize_optimizer(triggered_directly)
        # Built again on a prepared model (lr="auto"): the groups read the
        # model's own attributes (block_groups, body), which a DDP wrapper hides.
        wrapped = self.module_
        self.module_ = self.accelerator.unwrap_model(wrapped, keep_fp32_wrapper=True)
        try:
            super().initialize_optimizer(triggered_directly)
        finally:
            self.module_ = wrapped
        self.optimizer_ = self._prepared(self.accelerator.prepare(self.optimizer_))
        return self

    def get_all_learnable_params(self):
        # Under DistributedDataParallel (several processes) the names gain
        # DDP's "module." prefix; callbacks look parameters up by the
        # model's own names (L2-SP's reference weights would silently miss).
        ddp = isinstance(self.module_, torch.nn.parallel.DistributedDataParallel)
        for name, p in super().get_all_learnable_params():
            yield (name[len(_DDP_PREFIX):] if ddp and name.startswith(_DDP_PREFIX) else name), p

    def get_iterator(self, *args, **kwargs):
        # The mixin's, plus: accelerate leaves out the loader's generator
        # where it dispatches batches (an IterableDataset: FewShot's pairs),
        # so the loader would draw its base seed from torch's global
        # generator, shifting the fit's random numbers (dropout) away from
        # the same fit without an accelerator. It gets the fit's back.
        loader = TransferNet.get_iterator(self, *args, **kwargs)
        prepared = self.accelerator.prepare(loader)
        base = getattr(prepared, "base_dataloader", prepared)
        generator = getattr(loader, "generator", None)
        if generator is not None and getattr(base, "generator", None) is None:
            base.generator = generator
        return self._prepared(prepared)

    def on_train_end(self, net, X=None, y=None, **kwargs):
        super().on_train_end(net, X=X, y=y, **kwargs)  # unwraps the module
        # The callbacks' on_train_end runs next, on the unwrapped module:
        # weights an EarlyStopping kept of a DDP-wrapped one lose the prefix.
        names = set(self.module_.state_dict())
        for _, cb in self.callbacks_:
            best = getattr(cb, "best_model_weights_", None)
            if isinstance(best, dict) and best and not set(best) <= names:
                plain = {k[len(_DDP_PREFIX):] if k.startswith(_DDP_PREFIX) else k: v for k, v in best.items()}
                if set(plain) <= names:
                    cb.best_model_weights_ = plain
        self.forget_prepared()
        return self

    def forget_prepared(self):
        """Drop the accelerator's references to what it prepared for this net (``free_memory``, for ours only)."""
        ours = self.__dict__.pop("_accelerate_prepared", set())
        acc = self.accelerator
        for attr in ("_models", "_optimizers", "_dataloaders", "_schedulers"):
            kept = getattr(acc, attr, None)
            if isinstance(kept, list):
                kept[:] = [o for o in kept if id(o) not in ours]
        # accelerate's record of the loaders being read: one left when a pass
        # stopped early (the LR range test) would stay there for good.
        state = getattr(acc, "gradient_state", None)
        refs = getattr(state, "dataloader_references", None)
        if isinstance(refs, list) and refs:
            state.dataloader_references = refs[:1] + [d for d in refs[1:] if d is not None and id(d) not in ours]


def same_device(device, other):
    """Whether ``device`` names ``other`` (``"cuda"`` names ``cuda:0``'s type, any index)."""
    a, b = torch.device(device), torch.device(other)
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def check_accelerator_device(device, accelerator):
    """``device`` and ``accelerator`` together, checked at ``fit`` before any model loads.

    With an accelerator, ``device`` is left to it: ``"auto"`` and None
    are, and so is a name of the accelerator's own device; another device
    is refused, naming both.
    """
    if accelerator is None or device is None or (isinstance(device, str) and device == "auto"):
        return
    where = getattr(accelerator, "device", None)
    try:
        agree = where is None or same_device(device, where)
    except (RuntimeError, TypeError, ValueError):
        agree = True  # not a device name at all: check_backbone_and_device says so
    if not agree:
        raise ValueError(
            f"device={device!r} but accelerator places the model on {str(where)!r}: with an accelerator, "
            "the accelerator chooses the device (Accelerator(cpu=True) for the CPU). Leave device='auto'."
        )


def fit_device(device, accelerator=None):
    """The device name a fit trains on: the accelerator's (this process's), else ``device`` resolved."""
    if accelerator is not None and getattr(accelerator, "device", None) is not None:
        return str(accelerator.device)
    from ._utils import resolve_device

    return resolve_device(device)


def accelerator_fingerprint(accelerator):
    """What of ``accelerator`` changes the trained model, for a checkpoint's name (not its identity)."""
    if accelerator is None:
        return None
    keys = ("mixed_precision", "num_processes", "gradient_accumulation_steps", "split_batches")
    return {k: str(getattr(accelerator, k, None)) for k in keys}


def make_net(module, criterion, *, lr, max_epochs, batch_size, generator, callbacks, device, verbose=0,
             weight_decay=0.0, train_split=None, shuffle=True, drop_last=False, collate_fn=None, num_workers=0,
             accelerator=None, **net_kwargs):
    """A :class:`TransferNet` with the options every fit here shares.

    Parameters
    ----------
    module : torch.nn.Module
    criterion : loss class or factory
    generator : torch.Generator
        Shuffles (or seeds the workers of) the training loader.
    train_split : callable or None
        skorch's ``train_split`` (a seeded ``ValidSplit``, or None).
    shuffle, drop_last
        The training loader's options (an ``IterableDataset`` randomises
        itself: ``shuffle=False``).
    collate_fn : callable or None
        Makes one batch of the samples of the training and the validation
        loaders (a :class:`~sktransfer._data.RowDataset`'s ``collate``: the
        inputs prepared batch by batch). It holds the data: call
        :func:`release_data` on the trained net.
    num_workers : int, default=0
        Worker processes of both loaders (0: batches are prepared in the
        training process). The workers draw no random numbers of the fit:
        the training loader shuffles with ``generator`` whatever their count.
    accelerator : accelerate.Accelerator or None, default=None
        Train through it (an :class:`AcceleratedTransferNet` on its device;
        ``device`` must be that device): multi-GPU, mixed precision.
        ``bf16`` is then ignored in training: the accelerator's
        ``mixed_precision`` rules.
    **net_kwargs
        :class:`TransferNet`'s own options (``backbone_lr_ratio``,
        ``layer_decay``, ``l2sp``, ``bf16``, ``adapter_only``, ``head_lr``).
    """
    loader = {"iterator_train__shuffle": shuffle, "iterator_train__generator": generator}
    if drop_last:
        loader["iterator_train__drop_last"] = True
    if collate_fn is not None:
        loader["iterator_train__collate_fn"] = loader["iterator_valid__collate_fn"] = collate_fn
    if num_workers:
        loader["iterator_train__num_workers"] = loader["iterator_valid__num_workers"] = int(num_workers)
    cls, extra = TransferNet, {}
    if accelerator is not None:
        # skorch's "auto" sink (accelerator.print) would print the epoch table whatever
        # ``verbose`` says: print itself with verbose=0 (PrintLog then stays quiet).
        sink = getattr(accelerator, "print", print) if verbose else print
        extra = {"accelerator": accelerator, "unwrap_after_train": True, "callbacks__print_log__sink": sink}
        cls = AcceleratedTransferNet
    return cls(
        module=module,
        criterion=criterion,
        optimizer=torch.optim.AdamW,
        lr=lr,
        max_epochs=max_epochs,
        batch_size=batch_size,
        train_split=train_split,
        callbacks=callbacks,
        device=device,
        verbose=int(bool(verbose)),
        predict_nonlinearity=None,
        weight_decay=weight_decay,
        **loader,
        **extra,
        **net_kwargs,
    )


_DATA_PARAMS = ("iterator_train__collate_fn", "iterator_valid__collate_fn")


def release_data(net):
    """Drop the loaders' collate function from a trained net (it holds the training rows and the backbone).

    Without this, pickling the fitted estimator would pickle its training
    data with it. The net predicts without it (inference prepares its own
    batches); a later ``partial_fit`` would need ``make_net``'s options again.
    An :class:`AcceleratedTransferNet` becomes a plain :class:`TransferNet`
    (:func:`release_accelerator`).
    """
    for key in _DATA_PARAMS:
        net.__dict__.pop(key, None)
        getattr(net, "_params_to_validate", set()).discard(key)
    return release_accelerator(net)


def release_accelerator(net):
    """A trained :class:`AcceleratedTransferNet` made a plain :class:`TransferNet`, in place.

    The module and criterion unwrapped (as skorch's ``unwrap_after_train``
    does), the optimizer unwrapped, the print sink back to ``print``, the
    accelerator's references to this net's objects dropped, and the
    accelerator itself dropped: what is left pickles (an ``Accelerator``
    holds process-wide state) and predicts on the accelerator's device, in
    bf16 autocast (on CUDA) when the accelerator trained in bf16. Any other
    net is returned as it is.
    """
    if not isinstance(net, AcceleratedTransferNet):
        return net
    from skorch.callbacks import PrintLog

    acc = net.accelerator
    net._unwrap_accelerator()
    net.forget_prepared()
    for name in net._optimizers:
        opt = getattr(net, name + "_", None)
        inner = getattr(opt, "optimizer", None)
        if isinstance(inner, torch.optim.Optimizer):  # accelerate's AcceleratedOptimizer
            setattr(net, name + "_", inner)
    for _, cb in getattr(net, "callbacks_", []):
        if isinstance(cb, PrintLog) and getattr(cb.sink, "__self__", None) is acc:
            cb.sink = print
    if "callbacks__print_log__sink" in net.__dict__:
        net.callbacks__print_log__sink = print
    net.bf16 = getattr(acc, "mixed_precision", "no") == "bf16"
    for key in ("accelerator", "unwrap_after_train", "_wrapped_with_accelerator"):
        net.__dict__.pop(key, None)
    net.__class__ = TransferNet
    return net

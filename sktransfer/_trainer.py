"""The trainer every estimator that trains a backbone uses.

One skorch net class (:class:`TransferNet`: discriminative learning rates,
bf16 on CUDA) and one factory (:func:`make_net`) that sets the options
every fit shares: AdamW, a DataLoader generator of the fit's own (the
user's global generators are left alone), the training split, and the
verbosity. The schedules (:class:`~sktransfer.callbacks.WarmupCosine`,
DANN's gradient-reversal ramp) count their steps from this net's loader at
``on_train_begin``; steps after training (WiSE-FT) are explicit, run by the
estimator on the trained net.
"""

import torch
from skorch import NeuralNet


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
        import contextlib

        if getattr(self, "bf16", False) and str(self.device).startswith("cuda"):
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def infer(self, x, **fit_params):
        with self.precision():
            return super().infer(x, **fit_params).float()


def make_net(module, criterion, *, lr, max_epochs, batch_size, generator, callbacks, device, verbose=0,
             weight_decay=0.0, train_split=None, shuffle=True, drop_last=False, collate_fn=None, num_workers=0,
             **net_kwargs):
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
    return TransferNet(
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
        **net_kwargs,
    )


_DATA_PARAMS = ("iterator_train__collate_fn", "iterator_valid__collate_fn")


def release_data(net):
    """Drop the loaders' collate function from a trained net (it holds the training rows and the backbone).

    Without this, pickling the fitted estimator would pickle its training
    data with it. The net predicts without it (inference prepares its own
    batches); a later ``partial_fit`` would need ``make_net``'s options again.
    """
    for key in _DATA_PARAMS:
        net.__dict__.pop(key, None)
        getattr(net, "_params_to_validate", set()).discard(key)
    return net

"""skorch callbacks for transfer learning.

Each one does one job, as skorch's own callbacks do, and is stateless with
respect to the epoch counter: it reads the position in training from the
net's history, so a fit resumed from a checkpoint continues the schedule
where it stopped. They are used by :class:`~sktransfer.FineTunedClassifier`
and can be passed to any skorch net whose module exposes ``block_groups``
(lists of parameter names from the stem to the top) and ``head``.
"""

import math

import numpy as np
import torch
from skorch.callbacks import Callback


def _n_train_batches_done(net):
    done = 0
    for epoch in net.history:
        done += sum(1 for b in epoch.get("batches", []) if "train_loss" in b)
    return done


class FreezeSchedule(Callback):
    """Choose which backbone block groups train, epoch by epoch.

    The head always trains. ``n_unfrozen(epoch)`` top groups of the backbone
    train too; the rest keep ``requires_grad=False`` (and frozen BatchNorm
    layers keep their running statistics, see ``_TransferModule.train``).

    Parameters
    ----------
    strategy : {"linear_probe", "partial", "full", "progressive"}
    unfreeze_last : int, default=2
        Top groups trained by ``"partial"``.
    unfreeze_every : int, default=1
        ``"progressive"`` unfreezes one more group every this many epochs,
        starting with the head alone (ULMFiT's gradual unfreezing).
    """

    def __init__(self, strategy, unfreeze_last=2, unfreeze_every=1):
        self.strategy = strategy
        self.unfreeze_last = unfreeze_last
        self.unfreeze_every = unfreeze_every

    def n_unfrozen(self, epoch, n_groups):
        if self.strategy == "linear_probe":
            return 0
        if self.strategy == "partial":
            return min(self.unfreeze_last, n_groups)
        if self.strategy == "full":
            return n_groups
        return min(n_groups, epoch // max(1, self.unfreeze_every))

    def on_epoch_begin(self, net, **kwargs):
        module = net.module_
        groups = module.block_groups
        k = self.n_unfrozen(len(net.history) - 1, len(groups))
        trainable = set()
        for names in groups[len(groups) - k :]:
            trainable.update(names)
        for name, p in module.body.named_parameters():
            p.requires_grad_(name in trainable)
        net.history.record("unfrozen_groups", k)


class WarmupCosine(Callback):
    """Linear warm-up over a fraction of the steps, then cosine decay to 0.

    Sets each optimizer group's learning rate to its base rate (stored as
    ``initial_lr``) times the schedule factor, before every training batch.

    Parameters
    ----------
    total_steps : int
        Training batches in the whole fit.
    warmup : float, default=0.1
        Fraction of ``total_steps`` spent warming up.
    """

    def __init__(self, total_steps, warmup=0.1):
        self.total_steps = total_steps
        self.warmup = warmup

    def factor(self, step):
        total = max(1, int(self.total_steps))
        warm = int(round(self.warmup * total))
        if warm > 0 and step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    def on_train_begin(self, net, **kwargs):
        self.step_ = _n_train_batches_done(net)
        for group in net.optimizer_.param_groups:
            group.setdefault("initial_lr", group["lr"])

    def on_batch_begin(self, net, training=False, **kwargs):
        if not training:
            return
        f = self.factor(self.step_)
        for group in net.optimizer_.param_groups:
            group["lr"] = group["initial_lr"] * f
        self.step_ += 1


class L2SP(Callback):
    """L2-SP: pull the backbone towards its pretrained weights.

    Adds ``alpha * (w - w0)`` to each backbone gradient, the gradient of
    ``alpha / 2 * ||w - w0||²`` (Li et al., 2018, "Explicit inductive bias
    for transfer learning"). Weight decay toward zero should then be off
    for the backbone, which :class:`~sktransfer.FineTunedClassifier` does.

    Parameters
    ----------
    alpha : float
        Strength of the pull.
    reference : dict of str to Tensor
        Pretrained backbone weights (``body.`` prefixed names).
    """

    def __init__(self, alpha, reference):
        self.alpha = alpha
        self.reference = reference

    def on_train_begin(self, net, **kwargs):
        device = next(net.module_.parameters()).device
        self.ref_ = {k: v.to(device) for k, v in self.reference.items()}

    def on_grad_computed(self, net, named_parameters, **kwargs):
        if self.alpha <= 0:
            return
        with torch.no_grad():
            for name, p in named_parameters:
                if p.grad is not None and name in self.ref_:
                    p.grad.add_(p - self.ref_[name], alpha=self.alpha)


class WiSEFT(Callback):
    """WiSE-FT: interpolate the fine-tuned backbone with the pretrained one.

    After training, each backbone weight becomes
    ``(1 - alpha) * w0 + alpha * w`` (Wortsman et al., 2022, "Robust
    fine-tuning of zero-shot models"). ``alpha=1`` keeps the fine-tuned
    weights; smaller values keep more of what the backbone knew.

    BatchNorm layers need one more step. Their running statistics describe
    the activations of the network they were measured in; neither the
    pretrained nor the fine-tuned statistics (nor a mix of the two) describe
    the interpolated network, which collapses with them (measured with
    interpolated statistics on EfficientNet-Lite0: Fashion-MNIST accuracy
    fell from 72 % to 20 %).
    With ``recalibrate_bn=True`` the statistics of every BatchNorm layer that
    updated them during training are recomputed on the training inputs
    (no augmentation, one pass, plain average) for the interpolated weights.
    Layers that stayed in inference mode keep their pretrained statistics.

    Parameters
    ----------
    alpha : float in [0, 1]
    reference : dict of str to Tensor
        Pretrained backbone state (``body.`` prefixed names): weights and
        floating buffers such as BatchNorm running statistics.
    recalibrate_bn : bool, default=True
        Recompute the running statistics of the BatchNorm layers that changed
        during training, on the ``X`` given to ``fit``. Without it, those
        statistics are interpolated like the weights.
    batch_size : int, default=32
        Batch size of the recalibration pass.
    """

    # Must see the final weights: runs after every other callback's
    # on_train_end (EarlyStopping(load_best=True) restores weights there).
    after_training = True

    def __init__(self, alpha, reference, recalibrate_bn=True, batch_size=32):
        self.alpha = alpha
        self.reference = reference
        self.recalibrate_bn = recalibrate_bn
        self.batch_size = batch_size

    def on_train_end(self, net, X=None, y=None, **kwargs):
        if self.alpha >= 1.0:
            return
        module = net.module_
        changed = _bn_layers_changed(module, self.reference) if self.recalibrate_bn and X is not None else []
        if changed:
            X = _training_rows(net, X, y)
        with torch.no_grad():
            for name, p in module.state_dict(keep_vars=True).items():
                ref = self.reference.get(name)
                if ref is not None and p.is_floating_point():
                    p.copy_(torch.lerp(ref.to(p.device, p.dtype), p, self.alpha))
        if changed:
            recompute_bn_statistics(module, [m for _, m in changed], X, self.batch_size, net.device)
            net.history.record("wise_bn_recalibrated", len(changed))


def _training_rows(net, X, y):
    """The rows of ``X`` that ``fit`` trained on (without the validation split)."""
    if not net.train_split or y is None:
        return X
    dataset_train, _ = net.get_split_datasets(X, y)
    idx = getattr(dataset_train, "indices", None)
    if idx is None:
        return X
    idx = np.asarray(idx)
    return {k: np.asarray(v)[idx] for k, v in X.items()}


def _bn_layers_changed(module, reference):
    """(name, layer) of the BatchNorm layers whose running mean moved from ``reference``."""
    out = []
    for name, m in module.named_modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            ref = reference.get(f"{name}.running_mean")
            if ref is not None and not torch.equal(ref.to(m.running_mean.device), m.running_mean):
                out.append((name, m))
    return out


def recompute_bn_statistics(module, layers, X, batch_size=32, device="cpu"):
    """Recompute the running statistics of ``layers`` on inputs ``X``.

    The idea of ``torch.optim.swa_utils.update_bn`` (reset, momentum None
    for a plain average, one pass), written out because ``update_bn`` resets
    *every* BatchNorm of the model, including those that kept their
    pretrained statistics because they never trained, puts the whole model
    in training mode (dropout, augmentation) and feeds it one positional
    tensor, while a ``TransferModule`` takes keyword batches.

    Parameters
    ----------
    module : torch.nn.Module
        Called as ``module(**batch)``.
    layers : list of BatchNorm modules inside ``module``
    X : dict of str to array
        Keyword inputs of ``module`` (as skorch receives them), rows first.
    """
    if not layers:
        return
    momenta = {m: m.momentum for m in layers}
    was_training = module.training
    module.eval()  # no augmentation, no dropout
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    n = len(next(iter(X.values())))
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()  # a one-row batch has no batch statistics: fold it into the one before
    ends = starts[1:] + [n]
    try:
        with torch.no_grad():
            for start, end in zip(starts, ends):
                module(**{k: torch.as_tensor(v[start:end]).to(device) for k, v in X.items()})
    finally:
        for m, momentum in momenta.items():
            m.momentum = momentum
        module.train(was_training)

"""Start fine-tuning from the linear probe's head (LP-FT).

A new head starts random. With few labels and a few epochs the optimiser
spends its steps learning the head while the random head's gradients pull
the pretrained features around: fine-tuning then ends *below* the frozen
probe (Kumar et al., "Fine-Tuning can Distort Pretrained Features and
Underperform Out-of-Distribution", ICLR 2022). LP-FT fits the linear probe
first and fine-tunes from it. Here the probe is fitted by scikit-learn on the
frozen features of the training rows (one forward pass, no augmentation):
``LogisticRegression`` for classes, ``Ridge`` for standardised targets; its
weights are copied into the head's last ``nn.Linear``.

scikit-learn's solvers rather than some epochs of SGD on the head: they reach
the probe's optimum in seconds and are the same probe a user would fit in a
Pipeline, which is the reference this head must not fall below.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def _features(module, Xd, batch_size, device):
    """Frozen features of every training row, in eval mode (no augmentation, no dropout)."""
    was_training = module.training
    module.eval()
    n = len(next(iter(Xd.values())))
    out = []
    try:
        with torch.no_grad():
            for start in range(0, n, batch_size):
                batch = {k: torch.as_tensor(np.asarray(v[start : start + batch_size])).to(device) for k, v in Xd.items()}
                out.append(module.features(**batch).float().cpu().numpy())
    finally:
        module.train(was_training)
    return np.concatenate(out).astype(np.float64)


def _last_linear(head):
    layers = [m for m in head.modules() if isinstance(m, nn.Linear)]
    return layers[-1] if layers else None


def init_head_from_probe(module, Xd, y_enc, *, classification, class_weight=None, batch_size=32, device="cpu"):
    """Set the head's last linear layer to a probe fitted on frozen features.

    Only a one-layer head (``head="linear"``) is a probe; an MLP head is left
    as it is (returns False).

    Returns
    -------
    bool
        Whether the head was initialised.
    """
    head = module.task_head
    linear = _last_linear(head)
    if linear is None or sum(isinstance(m, nn.Linear) for m in head.modules()) != 1:
        return False
    Z = _features(module, Xd, batch_size, device)
    if classification:
        from sklearn.linear_model import LogisticRegression

        probe = LogisticRegression(C=1.0, max_iter=2000, class_weight=class_weight).fit(Z, y_enc)
        coef, intercept = probe.coef_, probe.intercept_
        if coef.shape[0] == 1:  # binary: sigmoid(w.x + b) is softmax([-(w.x + b)/2, (w.x + b)/2])
            coef = np.vstack([-coef / 2, coef / 2])
            intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    else:
        from sklearn.linear_model import Ridge

        y2 = np.asarray(y_enc, dtype=np.float64)
        probe = Ridge(alpha=1.0).fit(Z, y2)
        coef = np.atleast_2d(probe.coef_)
        intercept = np.atleast_1d(probe.intercept_)
    if coef.shape != tuple(linear.weight.shape):
        return False
    with torch.no_grad():
        linear.weight.copy_(torch.as_tensor(coef, dtype=linear.weight.dtype))
        linear.bias.copy_(torch.as_tensor(intercept, dtype=linear.bias.dtype))
    return True

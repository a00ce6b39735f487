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

from ._utils import user_stacklevel


def _features(module, data, batch_size, device, num_workers=0):
    """Frozen features of every row of ``data`` (a RowDataset), in eval mode (no augmentation, no dropout).

    The rows are read batch by batch, in order (prepared in ``num_workers``
    loader processes when > 0): only the features are kept.
    """
    was_training = module.training
    module.eval()
    out = []
    try:
        with torch.no_grad():
            for batch in data.batches(batch_size, num_workers=num_workers):
                out.append(module.features(**{k: v.to(device) for k, v in batch.items()}).float().cpu().numpy())
    finally:
        module.train(was_training)
    return np.concatenate(out).astype(np.float64)


def _only_linear(head):
    """The head's one ``nn.Linear``, or None if it has none or several (an MLP)."""
    layers = [m for m in head.modules() if isinstance(m, nn.Linear)]
    return layers[0] if len(layers) == 1 else None


def init_head_from_probe(module, data, y_enc, *, classification, class_weight=None, batch_size=32, device="cpu",
                         heads=None, num_workers=0):
    """Set the head's last linear layer to a probe fitted on frozen features.

    Only a one-layer head (``head="linear"``) is a probe; an MLP head is left
    as it is (returns False).

    Parameters
    ----------
    module : TransferModule
        Its ``features`` give the probe's inputs (the model as it starts
        training: adapters included, at their initial state).
    data : RowDataset
        The rows the probe is fitted on (``y_enc`` holds their targets).
    heads : list of nn.Module or None
        The head modules to set, each holding one ``nn.Linear`` (None:
        ``[module.task_head]``). Several when a wrapper keeps copies of the
        head that must agree (PEFT's ``modules_to_save``).

    Returns
    -------
    bool
        Whether the head was initialised.
    """
    heads = [module.task_head] if heads is None else list(heads)
    linears = [_only_linear(h) for h in heads]
    if not linears or any(lin is None for lin in linears):
        return False
    linear = linears[0]
    if any(tuple(lin.weight.shape) != tuple(linear.weight.shape) or lin.bias is None for lin in linears):
        return False
    Z = _features(module, data, batch_size, device, num_workers)
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
        for lin in linears:
            lin.weight.copy_(torch.as_tensor(coef, dtype=lin.weight.dtype))
            lin.bias.copy_(torch.as_tensor(intercept, dtype=lin.bias.dtype))
    return True


def init_head_for(estimator, module, data, y_enc, stratify, seed, *, heads=None):
    """What every estimator's ``_init_head`` does for ``head_init="probe"``.

    The probe sees the rows training sees: the split skorch draws in
    ``_train`` (same ``validation_fraction``, stratification and seed) is
    drawn here too and its validation rows left out, as are unlabelled rows
    (class code ``< 0``: DANN's target rows). ``class_weight`` given per
    label is mapped to the class codes. If the head can't be set (an MLP
    head, or a class missing from the training rows) a warning says so and
    training starts from the random head.

    Parameters
    ----------
    estimator : fitted-in-progress estimator
        Reads ``head_init``, ``validation_fraction``, ``batch_size``,
        ``num_workers``, ``device_``, ``class_weight`` and ``classes_`` (a classifier).
    module : TransferModule
        The model as it starts training (for PEFT, the base model under the
        wrapper, adapters in place).
    data : RowDataset
        The fit's rows (all of them: the split is drawn here).
    heads : list of nn.Module or None
        See :func:`init_head_from_probe`.
    """
    if resolve_head_init(estimator) != "probe":
        return False
    classification = hasattr(estimator, "classes_")
    y_enc = np.asarray(y_enc)
    rows = np.arange(len(y_enc))
    if estimator.validation_fraction:
        from skorch.dataset import ValidSplit

        train, _ = ValidSplit(estimator.validation_fraction, stratified=stratify, random_state=seed)(rows, y_enc)
        rows = np.asarray(train.indices)
    if classification:
        rows = rows[y_enc[rows] >= 0]
    cw = getattr(estimator, "class_weight", None)
    if isinstance(cw, dict):
        cw = {code: cw.get(label, 1.0) for code, label in enumerate(estimator.classes_)}
    applied = init_head_from_probe(
        module,
        data.subset(rows),
        y_enc[rows],
        classification=classification,
        class_weight=cw,
        batch_size=max(estimator.batch_size, 32),
        device=estimator.device_,
        heads=heads,
        num_workers=int(getattr(estimator, "num_workers", 0) or 0),
    )
    if not applied:
        import warnings

        warnings.warn(
            "head_init='probe' could not set the head (a class is missing from the training rows, "
            "e.g. after the validation split): training starts from a random head.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    return applied


def resolve_head_init(estimator):
    """``"probe"`` or ``"random"``: what ``head_init`` means for this estimator's head.

    ``"auto"`` is LP-FT wherever it applies (a linear head) and a random
    head otherwise (an MLP head, which no linear probe can set).
    """
    head_init = getattr(estimator, "head_init", "random")
    if head_init == "auto":
        return "probe" if getattr(estimator, "head", "linear") == "linear" else "random"
    return head_init


def check_head_init(estimator):
    """That ``head_init="probe"`` has a linear head to set (its values are in the estimator's constraint table)."""
    if getattr(estimator, "head_init", "random") == "probe" and estimator.head != "linear":
        raise ValueError(
            f"head_init='probe' sets a linear head from a linear probe; head={estimator.head!r} is not linear. "
            "Use head='linear', or head_init='auto' or 'random'."
        )

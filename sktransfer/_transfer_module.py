"""The torch module fine-tuning trains: backbone body + new head.

Images arrive as uint8 crops (``N×3×S×S``) so that augmentation runs on the
batch, in training mode only, before the model's own normalisation. Text
arrives as token ids with an attention mask; padding beyond the longest
text of the batch is trimmed.
"""

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .backbones._base import ExportSpec


def make_head(in_features, out_features, head="linear", hidden=256, dropout=0.1):
    if head == "linear":
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, out_features))
    return nn.Sequential(
        nn.Linear(in_features, hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, out_features),
    )


def _augment(x):
    """Training-only augmentation on uint8 crops: flip and random resized crop.

    The same recipe as timm's training transform (RandomResizedCrop with
    scale (0.08, 1) is too strong for small data; we use (0.5, 1)), applied
    per sample on tensors with torchvision's v2 transforms.
    """
    from torchvision.transforms import v2

    size = x.shape[-1]
    t = v2.Compose([v2.RandomResizedCrop(size, scale=(0.5, 1.0), antialias=True), v2.RandomHorizontalFlip()])
    return torch.stack([t(img) for img in x])


class TransferModule(nn.Module):
    """Backbone body (head removed) followed by a new head."""

    def __init__(self, body, head, modality, normalize=None, augment=False, block_groups=(), freeze_bn_stats=False):
        super().__init__()
        self.body = body
        self.task_head = head
        self.modality = modality
        self.normalize = normalize
        self.augment = augment
        # Parameter names of ``body`` grouped from stem to top (plain lists:
        # not state, so not saved with the weights).
        self.block_groups = [list(g) for g in block_groups]
        # Keep every BatchNorm in inference mode while training (pretrained
        # running statistics; scale and shift still train with their block).
        self.freeze_bn_stats = bool(freeze_bn_stats)

    def features(self, X=None, input_ids=None, attention_mask=None, token_type_ids=None):
        # The inputs are what the backbone's ``encode`` / ``module_inputs`` gave:
        # uint8 crops under ``X``, or token ids with their attention mask.
        if X is not None:
            x = X
            if self.training and self.augment:
                x = _augment(x)
            if self.normalize is not None:
                x = self.normalize(x)
            return self.body(x)
        length = int(attention_mask.sum(1).max())
        input_ids, attention_mask = input_ids[:, :length], attention_mask[:, :length]
        if token_type_ids is not None:
            token_type_ids = token_type_ids[:, :length]
        return self.body(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)

    def forward(self, X=None, input_ids=None, attention_mask=None, token_type_ids=None):
        return self.task_head(self.features(X, input_ids, attention_mask, token_type_ids))

    def train(self, mode=True):
        super().train(mode)
        if mode:
            # A frozen BatchNorm keeps its pretrained running statistics; with
            # freeze_bn_stats, every BatchNorm does.
            freeze_all = getattr(self, "freeze_bn_stats", False)
            for m in self.body.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    params = list(m.parameters(recurse=False))
                    if freeze_all or (params and not any(p.requires_grad for p in params)):
                        m.eval()
        return self


def run_in_batches(fn, backbone, items, *, batch_size, device, max_length=None, image_size=None, precision=None):
    """``fn(**inputs)`` over validated ``items``, batch by batch; float32 array ``(n, d)``.

    The one inference loop over rows: each batch is prepared by the
    backbone's ``module_inputs`` (texts padded to the batch's longest,
    images decoded batch by batch, never all at once), in the backbone's
    ``batch_order`` (longest texts first), and run under ``inference_mode``
    and ``precision`` (e.g. a net's bf16 autocast; None: as is). ``fn`` is
    a module's ``features`` (embeddings) or the module itself (outputs).
    """
    order = backbone.batch_order(items)
    out = None
    with torch.inference_mode(), (precision or contextlib.nullcontext)():
        for s in range(0, len(items), batch_size):
            rows = order[s : s + batch_size]
            batch = backbone.module_inputs(items, rows, max_length, image_size)
            res = fn(**{k: v.to(device) for k, v in batch.items()}).float().cpu().numpy()
            if out is None:
                out = np.empty((len(items), res.shape[1]), dtype=np.float32)
            out[rows] = res
    return np.empty((0, 0), dtype=np.float32) if out is None else out


# ------------------------------------------------------------------ export
@dataclass
class TrainedExportSpec(ExportSpec):
    """A backbone's :class:`ExportSpec` with the trained graph's ``output_names``, in order."""

    output_names: tuple = ("embedding",)


class _ExportedModule(nn.Module):
    """A trained :class:`TransferModule` for ``torch.onnx.export``: positional inputs, named outputs.

    Inputs come in the backbone's ``export_spec`` order (uint8 crops ``X``,
    or token ids and masks already padded to their batch's longest, so no
    trimming: a data-dependent slice would be traced as a constant). Outputs:
    the head's (``"logits"``; a regressor's ``"predictions"``, put back in
    the units of ``y`` by ``scale`` and ``mean``), then the body's
    ``"embedding"``; with ``head=False`` only the embedding (FewShot).
    """

    def __init__(self, module, names, head=True, mean=None, scale=None):
        super().__init__()
        self.module = module
        self.names = tuple(names)
        self.head = bool(head)
        self.rescale = mean is not None
        if self.rescale:
            self.register_buffer("mean", torch.as_tensor(np.asarray(mean, dtype=np.float32)).view(1, -1))
            self.register_buffer("scale", torch.as_tensor(np.asarray(scale, dtype=np.float32)).view(1, -1))

    def forward(self, *tensors):
        kwargs = dict(zip(self.names, tensors))
        m = self.module
        if "X" in kwargs:
            x = kwargs["X"]
            emb = m.body(m.normalize(x) if m.normalize is not None else x)
        else:
            emb = m.body(**kwargs)
        emb = emb if emb.dtype == torch.float32 else emb.float()
        if not self.head:
            return emb
        out = m.task_head(emb)
        out = out if out.dtype == torch.float32 else out.float()
        if self.rescale:
            out = out * self.scale + self.mean
        return out, emb


def export_spec(module, backbone, *, output="logits", mean=None, scale=None, max_length=None, image_size=None):
    """An :class:`~sktransfer.backbones.ExportSpec` (plus ``output_names``) of a trained module.

    The inputs (names, order, example, dynamic axes, int8 scheme) are the
    backbone's own, as its body's export describes them; the module is the
    trained body (with its normalisation) and head.

    Parameters
    ----------
    module : TransferModule
        Plain (a PEFT model is merged first), in eval mode, on the CPU.
    backbone : Backbone
        The backbone the module was built from (its inputs).
    output : {"logits", "predictions", None}
        The head's output name; None: the body alone (``"embedding"``).
    mean, scale : array-like or None
        A regressor's target standardisation, undone inside the graph.
    """
    from dataclasses import fields

    try:
        base = backbone.export_spec(layer=None, max_length=max_length, image_size=image_size)
    except NotImplementedError as exc:
        raise ValueError(
            f"The trained model cannot be exported: {exc}. Use inference_backend='torch'."
        ) from exc
    outputs = ("embedding",) if output is None else (output, "embedding")
    wrapper = _ExportedModule(module, base.input_names, head=output is not None, mean=mean, scale=scale).eval()
    axes = {k: v for k, v in base.dynamic_axes.items() if k in base.input_names}
    axes.update({name: {0: "batch"} for name in outputs})
    kwargs = {f.name: getattr(base, f.name) for f in fields(ExportSpec)}
    kwargs.update(module=wrapper, dynamic_axes=axes)
    return TrainedExportSpec(**kwargs, output_names=outputs)

"""The torch module fine-tuning trains: backbone body + new head.

Images arrive as uint8 crops (``N×3×S×S``) so that augmentation runs on the
batch, in training mode only, before the model's own normalisation. Text
arrives as token ids with an attention mask; padding beyond the longest
text of the batch is trimmed.
"""

import torch
from torch import nn


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
        if self.modality == "image":
            x = X
            if self.training and self.augment:
                x = _augment(x)
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

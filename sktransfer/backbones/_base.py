"""The one small interface every backbone family implements.

Estimators talk to a :class:`Backbone` and never ask which library a model
comes from. A family adapter (timm, torchvision, sentence-transformers,
transformers) builds the torch module and describes its preprocessing from
the model's own pretrained configuration.
"""

import hashlib
from dataclasses import dataclass, field

import torch
from torch import nn


class Backbone:
    """A pretrained model behind a uniform interface.

    Attributes
    ----------
    family : str
        ``"timm"``, ``"torchvision"``, ``"sentence-transformers"``,
        ``"transformers"`` or ``"module"``.
    name : str
        The spec the user gave (``"timm/tf_efficientnet_lite0"``).
    modality : {"text", "image"}
        What the model reads.
    source : str
        Where the weights came from: ``"hub"`` (the Hugging Face hub or its
        local cache), ``"package:<pip name>"`` (an installed weight package,
        used when the hub can't serve the model), ``"path"`` (a local file
        or directory) or ``"module"`` (an ``nn.Module`` given by the user).
    weights_path : str or None
        The file or directory the weights were read from, when known.
    body : torch.nn.Module
        Maps a preprocessed batch to pooled features ``(n, d)``; its head is
        removed. Fine-tuning trains this module.
    embedding_dim : int
        Width of the pooled features.
    logit_scale : float or None
        The model's learned inverse temperature between inputs and label
        prompts (CLIP); None for models without one.
    """

    family = "base"
    modality = None
    logit_scale = None

    def __init__(self, name, body, embedding_dim, source, weights_path=None):
        self.name = name
        self.weights_path = weights_path
        self.body = body
        self.embedding_dim = int(embedding_dim)
        self.source = source
        self._fingerprint = None

    # -- identity ---------------------------------------------------------
    def fingerprint(self):
        """Hash of the weights: two backbones with equal weights share it."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            for key, tensor in sorted(self.body.state_dict().items()):
                h.update(key.encode())
                t = tensor.detach().cpu().contiguous()
                if t.dtype == torch.bfloat16:
                    t = t.float()
                h.update(t.numpy().tobytes())
            self._fingerprint = h.hexdigest()[:32]
        return self._fingerprint

    def preprocess_config(self):
        """JSON-able description of the preprocessing (part of the cache key)."""
        raise NotImplementedError

    # -- layers -----------------------------------------------------------
    def n_layers(self):
        """Number of intermediate layers ``layer=`` may index."""
        raise NotImplementedError

    def layer_dim(self, layer):
        """Width of the pooled features taken at ``layer`` (None: final)."""
        raise NotImplementedError

    def check_layer(self, layer):
        if layer is None:
            return None
        n = self.n_layers()
        if not isinstance(layer, (int,)) or isinstance(layer, bool):
            raise ValueError(
                f"layer must be None or an int index into the {n} layers of {self.name!r}, "
                f"got {layer!r}."
            )
        if not -n <= layer < n:
            raise ValueError(
                f"layer={layer} is out of range: {self.name!r} has {n} layers "
                f"(valid: {-n}..{n - 1}, or None for the final embedding)."
            )
        return layer % n

    # -- inputs -----------------------------------------------------------
    def check_inputs(self, X):
        """``X`` as a list of the rows this model reads, validated (errors name the row)."""
        raise NotImplementedError

    def encode(self, items, max_length=None, image_size=None, warn_truncation=False):
        """Validated rows → dict of fixed-size numpy arrays: the keyword inputs of a
        ``TransferModule``, which skorch batches (trainers encode once, up front)."""
        raise NotImplementedError

    def module_inputs(self, items, rows, max_length=None, image_size=None):
        """Rows ``rows`` of validated ``items`` → keyword inputs of a ``TransferModule``, one batch
        (padded to its longest text; images decoded here, batch by batch)."""
        raise NotImplementedError

    def chunk(self, items, max_length=None, overlap=0.125):
        """Split texts into overlapping token windows (text backbones); returns ``(windows, owner)``.

        Only a model that reads tokens has windows: the default raises a
        ValueError naming this backbone.
        """
        raise ValueError(
            f"long_texts='chunk_mean' or 'chunk_max' splits long texts into token windows, but {self.name!r} "
            f"({self.family}) reads {self.modality or 'non-text input'}s, not texts. Use long_texts='truncate' "
            "(the default) with this backbone."
        )

    def window_inputs(self, windows, rows):
        """Rows of :meth:`chunk`'s windows → keyword inputs of the body (text backbones)."""
        raise NotImplementedError(f"{self.name!r} has no token windows")

    def batch_order(self, items):
        """The order in which to batch ``items`` for inference (default: as given)."""
        import numpy as np

        return np.arange(len(items))

    def warn_truncation(self, items, max_length=None):
        """Warn when some ``items`` will be truncated; returns how many (default: none are)."""
        return 0

    def example_inputs(self):
        """One valid input row, standing in for absent inputs when an estimator is fitted without ``X``."""
        raise NotImplementedError

    # -- label prompts ----------------------------------------------------
    def prompts_as_inputs(self, texts, purpose):
        """Label prompts as input rows of this model (text models), else a ValueError naming ``purpose``."""
        raise ValueError(
            f"{purpose} needs a text backbone: the label names are added as text examples, "
            f"but {self.name!r} reads images."
        )

    def embed_prompts(self, texts, max_length=None):
        """Label prompts → float32 tensor ``(n, d)`` in the space of the inputs' embeddings (not normalised)."""
        raise ValueError(
            f"Backbone {self.name!r} reads images but has no text tower to embed the label prompts. "
            "Zero-shot image classification needs a CLIP model, e.g. 'open_clip/ViT-B-32'."
        )

    # -- forward ----------------------------------------------------------
    def collate(self, items, max_length=None, image_size=None):
        """Turn a list of validated inputs into a batch for :meth:`embed`."""
        raise NotImplementedError

    def embed(self, batch, layer=None):
        """Pooled features of a collated batch, under ``inference_mode``."""
        raise NotImplementedError

    def to(self, device):
        self.body.to(device)
        self.device = device
        return self

    def source_classifier(self):
        """The pretrained model with its own (source) classifier, for LEEP/NCE."""
        raise ValueError(
            f"{self.name!r} ({self.family}) has no source classifier to read: LEEP and NCE need a "
            "timm or torchvision image classifier. Use logme_score or h_score."
        )

    # -- export (fast CPU backends) ---------------------------------------
    def export_spec(self, layer=None, max_length=None, image_size=None):
        """What an ONNX export of the body needs: an :class:`ExportSpec`.

        Raises ``NotImplementedError`` with the reason when this backbone
        cannot be exported (``sktransfer._runtime`` turns it into an error
        naming the backbone and the backend).
        """
        raise NotImplementedError(f"the {self.family!r} family has no exportable body")

    # -- fine-tuning ------------------------------------------------------
    def input_normalization(self):
        """A fresh copy of the normalisation a trainable module applies to its inputs, or None.

        Image models normalise uint8 crops inside the module (after
        augmentation); text models need none.
        """
        return None

    def block_groups(self):
        """Parameter names grouped from the stem (first) to the top (last).

        Used for partial and progressive unfreezing and layer-wise learning
        rate decay. Groups come from the model itself (timm's
        ``group_matcher``, the encoder layers of a transformer), never from
        hand-written lists per model.
        """
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r}, dim={self.embedding_dim}, source={self.source!r})"


def mean_pool(hidden, attention_mask):
    """Mean of token states over the non-padding positions."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


class ImageNormalize(nn.Module):
    """uint8 ``N×3×H×W`` → normalised float, from the model's own mean/std."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1) * 255.0)

    def forward(self, x):
        return (x.float() - self.mean) / self.std


def trainable_copy(body):
    """A deep copy of a shared body, safe to train and to pickle.

    transformers installs output-capturing forward hooks (local closures,
    which cannot be pickled) the first time a model is asked for hidden
    states. The shared frozen copy may carry them from feature extraction;
    the copy drops them and lets transformers reinstall them if needed.
    """
    import copy

    body = copy.deepcopy(body)
    for module in body.modules():
        hooks = getattr(module, "_forward_hooks", None)
        if hooks:
            for key in [k for k, fn in hooks.items() if "output_capturing_hook" in getattr(fn, "__qualname__", "")]:
                del hooks[key]
        if getattr(module, "_output_capturing_hooks_installed", False):
            module._output_capturing_hooks_installed = False
    return body


@dataclass
class ExportSpec:
    """How to export a backbone's body to ONNX (``Backbone.export_spec``).

    Attributes
    ----------
    module : torch.nn.Module
        Takes the inputs positionally, in ``input_names`` order, and returns
        the pooled features ``(n, d)`` (the final embedding).
    input_names : tuple of str
        The keyword inputs of :meth:`Backbone.module_inputs`, in the order
        ``module`` takes them (they become the ONNX graph's input names).
    example : tuple of torch.Tensor
        Example inputs for tracing, in ``input_names`` order (batch of 2).
    dynamic_axes : dict
        ``torch.onnx.export``'s dynamic axes (batch; sequence for text).
    graph_key : dict
        The preprocessing that shapes the exported graph (part of its cache
        key: image size; nothing for text, whose length is dynamic).
    int8 : {"dynamic", "static"}
        ONNX int8 scheme that keeps this model accurate: dynamic (ONNX
        Runtime, weights only, per channel, on MatMuls: transformers) or
        static with calibration (NNCF's QDQ, per channel: CNNs).
    nncf_model_type : str or None
        NNCF's ``ModelType`` name for OpenVINO int8 (``"TRANSFORMER"``) or None.
    """

    module: nn.Module
    input_names: tuple
    example: tuple
    dynamic_axes: dict
    graph_key: dict = field(default_factory=dict)
    int8: str = "static"
    nncf_model_type: str = None


class PositionalBody(nn.Module):
    """A body taking keyword inputs, called with them positionally in ``names`` order.

    ``torch.onnx.export`` binds inputs by position: wrapping fixes the order
    to ``names`` whatever the body's signature (``attention_mask`` can never
    receive the token types).
    """

    def __init__(self, body, names, normalize=None):
        super().__init__()
        self.body = body
        self.names = tuple(names)
        self.normalize = normalize

    def forward(self, *tensors):
        kwargs = dict(zip(self.names, tensors))
        if self.normalize is not None:  # image bodies: uint8 crops under "X"
            out = self.body(self.normalize(kwargs["X"]))
        else:
            out = self.body(**kwargs)
        # No Cast node when already float32 (NNCF's ONNX passes fail on a no-op Cast at the output).
        return out if out.dtype == torch.float32 else out.float()

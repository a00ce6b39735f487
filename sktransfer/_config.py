"""Global settings: offline mode and the default embedding-cache location.

Kept deliberately small, in the spirit of :func:`sklearn.set_config`.
"""

import os
import threading
from contextlib import contextmanager
from pathlib import Path

_TRUE = {"1", "true", "yes", "on"}
_lock = threading.Lock()
_config = {"offline": None, "cache_dir": None, "hub_probe_timeout": 2.0}


def _env_flag(name):
    return os.environ.get(name, "").strip().lower() in _TRUE


def get_config():
    """Return the current sktransfer settings as a dict.

    Returns
    -------
    config : dict
        ``offline`` (bool): resolve known model names to locally installed
        weights without touching the network. True when set with
        :func:`set_config`, or when ``HF_HUB_OFFLINE``, ``TRANSFORMERS_OFFLINE``
        or ``SKTRANSFER_OFFLINE`` is set to a true value.
        ``cache_dir`` (str): where ``cache=True`` stores embeddings
        (``SKTRANSFER_CACHE_DIR``, else ``~/.cache/sktransfer``).
        ``hub_probe_timeout`` (float): seconds allowed to check that the
        Hugging Face hub answers before a download is attempted.

    Examples
    --------
    >>> from sktransfer import get_config
    >>> sorted(get_config())
    ['cache_dir', 'hub_probe_timeout', 'offline']
    """
    offline = _config["offline"]
    if offline is None:
        offline = any(
            _env_flag(v) for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "SKTRANSFER_OFFLINE")
        )
    cache_dir = _config["cache_dir"] or os.environ.get("SKTRANSFER_CACHE_DIR") or "~/.cache/sktransfer"
    return {
        "offline": bool(offline),
        "cache_dir": str(Path(cache_dir).expanduser()),
        "hub_probe_timeout": float(_config["hub_probe_timeout"]),
    }


def set_config(offline=None, cache_dir=None, hub_probe_timeout=None):
    """Change sktransfer settings for this process.

    Parameters
    ----------
    offline : bool, default=None
        Force offline resolution of model names (True) or allow the hub
        (False). None leaves the setting unchanged.
    cache_dir : str or path-like, default=None
        Directory used when an estimator is given ``cache=True``.
    hub_probe_timeout : float, default=None
        Seconds to wait for the Hugging Face hub before treating it as
        unreachable.

    Examples
    --------
    >>> from sktransfer import set_config, get_config
    >>> set_config(offline=True)
    >>> get_config()["offline"]
    True
    >>> set_config(offline=False)
    """
    with _lock:
        if offline is not None:
            _config["offline"] = bool(offline)
        if cache_dir is not None:
            _config["cache_dir"] = str(cache_dir)
        if hub_probe_timeout is not None:
            _config["hub_probe_timeout"] = float(hub_probe_timeout)


@contextmanager
def config_context(**kwargs):
    """Temporarily change settings, as :func:`sklearn.config_context` does.

    Examples
    --------
    >>> from sktransfer import config_context, get_config
    >>> with config_context(offline=True):
    ...     get_config()["offline"]
    True
    """
    old = dict(_config)
    set_config(**kwargs)
    try:
        yield
    finally:
        with _lock:
            _config.update(old)

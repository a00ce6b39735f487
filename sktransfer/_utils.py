"""Small private helpers shared by the estimators."""

import hashlib
import os
import secrets

import numpy as np


def resolve_device(device):
    """Turn ``"auto"`` into the best available torch device name."""
    import torch

    if device is None or device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    if not isinstance(device, str):
        device = str(device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was requested but CUDA is not available on this machine. "
            "Use device='auto' or device='cpu'."
        )
    return device


def progress_bar(iterable, *, total, enabled, desc):
    """Wrap ``iterable`` in a tqdm bar when ``enabled``."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="batch", leave=False)


def want_progress(progress, n_items, threshold=512):
    """Decide whether to show a bar: ``"auto"`` shows one for long inputs."""
    if progress == "auto":
        return n_items >= threshold
    return bool(progress)


def sha256_file(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` so that readers never see a partial file.

    The bytes go to a temporary file in the same directory, which then
    replaces ``path`` in one ``os.replace`` (atomic on POSIX and Windows): a
    reader sees the old file or the new one, a killed writer leaves at most a
    stray ``.tmp-*`` file. The new file's permissions follow the umask, as
    with ``open(path, "wb")``.
    """
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    # Not tempfile.mkstemp: it creates 0600 files, so a cache shared by a
    # team would be unreadable to everyone but its writer. O_EXCL with a
    # random name gives the same safety with the umask's permissions.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(directory, f".tmp-{secrets.token_hex(8)}")
        try:
            fd = os.open(tmp, flags, 0o666)
            break
        except FileExistsError:  # pragma: no cover - 64 random bits collided
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def check_random_state_int(random_state):
    """Return an int seed derived from ``random_state`` (for torch)."""
    from sklearn.utils import check_random_state

    if random_state is None:
        return None
    if isinstance(random_state, (int, np.integer)):
        return int(random_state)
    return int(check_random_state(random_state).randint(0, 2**31 - 1))


def trained_model_tags(tags, random_state):
    """Honest sklearn tags of an estimator that loads a model: text or images in; repeatable only with a seed."""
    tags.input_tags.two_d_array = False
    tags.input_tags.string = True
    tags.non_deterministic = random_state is None
    tags.transformer_tags = None
    return tags


def user_stacklevel():
    """``stacklevel`` for ``warnings.warn`` that points at the first frame outside sktransfer (the user's call).

    Counted from the function that calls ``warnings.warn``, whatever the
    depth of the package's own calls in between.
    """
    import sys

    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


_GLIBC = []  # [glibc through ctypes, or None]: looked up once per process


def glibc():
    """glibc loaded through ctypes (for ``mallopt`` / ``malloc_trim``), or None.

    None outside Linux or with another C library (musl): callers then leave
    the allocator as it is.
    """
    if not _GLIBC:
        lib = None
        import sys

        if sys.platform.startswith("linux"):
            import ctypes
            import ctypes.util

            try:
                lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                lib.malloc_trim.argtypes, lib.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
                lib.mallopt  # noqa: B018 (glibc has both; musl has neither)
            except (OSError, AttributeError):
                lib = None
        _GLIBC.append(lib)
    return _GLIBC[0]

"""Content-addressed, process-safe embedding cache.

Why not ``joblib.Memory``: it memoises whole function calls, so a fold that
holds a different subset of rows misses. Here each *input* has its own entry,
keyed by the backbone's identity (name and a hash of its weights), the
preprocessing, the layer and the input's content (image bytes, not path).
Entries are written atomically (temporary file + ``os.replace``), so
concurrent joblib workers never see half a file; each entry carries a
checksum keyed by the entry's own key, so a damaged entry, or a whole entry
copied to another key, is recomputed rather than served. A cache that cannot
be written is still read: the rest is computed, with one warning.
"""

import hashlib
import json
import os
import struct
import threading
import warnings

import numpy as np

from ._utils import atomic_write_bytes

# Format 2: the checksum is keyed by the entry key. The version is part of
# every key (namespace_key), so entries of format 1 sit at other paths and
# are simply misses.
_MAGIC = b"SKT2"
_FORMAT_VERSION = 2
_HEADER = struct.Struct("<4sI")  # magic, dim
_DIGEST = 16

_stats_lock = threading.Lock()
_stats = {"computed": 0, "cache_hits": 0, "cache_writes": 0, "damaged": 0}


def embedding_stats():
    """Counters of this process: inputs embedded by a backbone and cache traffic.

    Returns
    -------
    stats : dict
        ``computed`` (inputs run through a backbone), ``cache_hits``,
        ``cache_writes`` and ``damaged`` (entries found corrupt and
        recomputed).

    Examples
    --------
    >>> from sktransfer import embedding_stats, reset_embedding_stats
    >>> reset_embedding_stats()
    >>> embedding_stats()["computed"]
    0
    """
    with _stats_lock:
        return dict(_stats)


def reset_embedding_stats():
    """Set every counter of :func:`embedding_stats` back to zero."""
    with _stats_lock:
        for k in _stats:
            _stats[k] = 0


def count(name, n=1):
    with _stats_lock:
        _stats[name] += n


def namespace_key(**parts):
    """Hash of everything except the input that decides an embedding."""
    blob = json.dumps({"format": _FORMAT_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def entry_key(namespace, input_digest):
    return hashlib.sha256((namespace + input_digest).encode()).hexdigest()


# A small in-process layer in front of the files: GridSearchCV clones the
# extractor for every fit, so the same rows are read many times per process.
_memory = {}
_memory_bytes = 0
_MEMORY_LIMIT = 512 * 2**20
_memory_lock = threading.Lock()


def _remember(path, vec):
    global _memory_bytes
    with _memory_lock:
        if _memory_bytes + vec.nbytes > _MEMORY_LIMIT:
            _memory.clear()
            _memory_bytes = 0
        if path not in _memory:
            _memory[path] = vec
            _memory_bytes += vec.nbytes


_warned_lock = threading.Lock()
_warned_unwritable = set()


def _warn_unwritable(directory, exc):
    """One warning per directory and process: the cache is read, not written."""
    with _warned_lock:
        if directory in _warned_unwritable:
            return
        _warned_unwritable.add(directory)
    warnings.warn(
        f"cannot write to the embedding cache {directory!r} ({exc}). Entries already there are "
        "still read; the other inputs are embedded but not stored. Make the directory writable, "
        "or set `cache` to a directory you can write.",
        UserWarning,
        stacklevel=5,
    )


def check_cache_directory(directory, value):
    """Raise a clear error at fit when ``cache`` can never be a directory.

    A path that is a file, or lies under a file, would fail on every write
    with a raw ``NotADirectoryError``. A directory that exists but is
    read-only is fine: it is read, and a warning says nothing is stored.
    """
    path = os.path.abspath(os.path.expanduser(os.fsdecode(directory)))
    probe = path
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            return
        probe = parent
    if not os.path.isdir(probe):
        where = "is" if probe == path else f"lies under {probe!r}, which is"
        raise ValueError(
            f"cache={value!r} is not a directory: {path!r} {where} a file. Set `cache` to a "
            "directory (it is created if missing), or to None to run without a cache."
        )


def clear_memory_layer():
    """Drop the in-process copies (the files on disk stay)."""
    global _memory_bytes
    with _memory_lock:
        _memory.clear()
        _memory_bytes = 0


class EmbeddingCache:
    """A directory of embeddings, one checksummed file per input.

    Parameters
    ----------
    directory : str or path-like
        Where entries live (``~`` is expanded). Created on first write.
    """

    def __init__(self, directory):
        self.directory = os.path.abspath(os.path.expanduser(os.fsdecode(directory)))
        self._writable = True

    def _path(self, key):
        return os.path.join(self.directory, key[:2], key[2:] + ".emb")

    def get(self, key, dim):
        """The stored vector, or None if absent or damaged (then it is removed)."""
        path = self._path(key)
        vec = _memory.get(path)
        if vec is not None and vec.shape[0] == dim:
            return vec
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        except OSError:
            return None
        vec = self._decode(data, dim, key)
        if vec is None:
            count("damaged")
            try:
                os.unlink(path)
            except OSError:
                pass
            return None
        _remember(path, vec)
        return vec

    @staticmethod
    def _checksum(key, body):
        # Over the entry key too: a valid entry moved to another key fails.
        h = hashlib.blake2b(digest_size=_DIGEST)
        h.update(key.encode() + b"\0")
        h.update(body)
        return h.digest()

    @classmethod
    def _decode(cls, data, dim, key):
        n = _HEADER.size + 4 * dim + _DIGEST
        if len(data) != n:
            return None
        magic, stored_dim = _HEADER.unpack_from(data)
        if magic != _MAGIC or stored_dim != dim:
            return None
        if cls._checksum(key, data[:-_DIGEST]) != data[-_DIGEST:]:
            return None
        return np.frombuffer(data[_HEADER.size : -_DIGEST], dtype="<f4").copy()

    def put(self, key, vec):
        """Store ``vec``; return whether it reached the disk.

        A cache that can't be written (read-only, full, a file in the way)
        warns once and is then only read for the rest of this object's life.
        """
        vec = np.ascontiguousarray(vec, dtype="<f4").ravel()
        path = self._path(key)
        _remember(path, vec)
        if not self._writable:
            return False
        body = _HEADER.pack(_MAGIC, vec.shape[0]) + vec.tobytes()
        try:
            atomic_write_bytes(path, body + self._checksum(key, body))
        except OSError as exc:
            self._writable = False
            _warn_unwritable(self.directory, exc)
            return False
        return True

    def __repr__(self):
        return f"EmbeddingCache({self.directory!r})"

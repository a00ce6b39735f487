"""Content-addressed, process-safe embedding cache.

Why not ``joblib.Memory``: it memoises whole function calls, so a fold that
holds a different subset of rows misses. Here each *input* has its own entry,
keyed by the backbone's identity (name and a hash of its weights), the
preprocessing, the layer and the input's content (image bytes, not path).
Entries are written atomically (temporary file + ``os.replace``), so
concurrent joblib workers never see half a file; each entry carries a
checksum, and a damaged entry is recomputed rather than crashing.
"""

import hashlib
import json
import os
import struct
import threading

import numpy as np

from ._utils import atomic_write_bytes

_MAGIC = b"SKT1"
_FORMAT_VERSION = 1
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
        self.directory = os.path.abspath(os.path.expanduser(str(directory)))

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
        vec = self._decode(data, dim)
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
    def _decode(data, dim):
        n = _HEADER.size + 4 * dim + _DIGEST
        if len(data) != n:
            return None
        magic, stored_dim = _HEADER.unpack_from(data)
        if magic != _MAGIC or stored_dim != dim:
            return None
        payload = data[_HEADER.size : _HEADER.size + 4 * dim]
        if hashlib.blake2b(payload, digest_size=_DIGEST).digest() != data[-_DIGEST:]:
            return None
        return np.frombuffer(payload, dtype="<f4").copy()

    def put(self, key, vec):
        vec = np.ascontiguousarray(vec, dtype="<f4").ravel()
        payload = vec.tobytes()
        data = _HEADER.pack(_MAGIC, vec.shape[0]) + payload + hashlib.blake2b(payload, digest_size=_DIGEST).digest()
        path = self._path(key)
        atomic_write_bytes(path, data)
        _remember(path, vec)

    def __repr__(self):
        return f"EmbeddingCache({self.directory!r})"

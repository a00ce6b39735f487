"""Content-addressed, process-safe embedding cache that holds millions of rows.

Why not ``joblib.Memory``: it memoises whole function calls, so a fold that
holds a different subset of rows misses. Here each *input* has its own entry,
keyed by the backbone's identity (name and a hash of its weights), the
preprocessing, the layer and the input's content (image bytes, not path).

Layout of a cache directory::

    <directory>/
        store/<writer>.seg      embeddings, appended by one writer process only
        store/<writer>.idx      64-byte index records of that segment (key, offset, ...)
        namespaces/<id>.json    what each namespace is (backbone, layer, ...) for ``cache info``
        ab/cdef....emb          entries of the previous format (one file each): still read
        compiled/               compiled models of ``_runtime``: pruned with ``compiled=True``

Why our own append-only segments rather than a library store. Measured by
``benchmarks/bench_cache.py`` (``benchmarks/sections/cache.md``):

- LMDB (``lmdb``): its lock file and memory map are documented as unsafe on
  network filesystems (NFS, Lustre, SMB), and the issue asks for one cache
  shared by Dask workers on a shared filesystem. It also stored 1.8x the raw
  bytes, and reading a batch key by key from Python was about 3x slower.
- SQLite through ``diskcache``: the same network-filesystem caveat (SQLite's
  locking), one writer at a time, 1.4x the raw bytes, about 9x slower writes
  and 13x slower batch reads.
- Zarr / Parquet shards are immutable files: each flush makes a new file, so
  a million rows written in batches of 32 make tens of thousands of files
  until something compacts them.

A segment is written by exactly one process (its name holds host, pid and a
random token), always by appending, so no two processes ever write the same
file and no lock is needed, locally or on NFS. That gives the guarantees:

- **Process-safe**: writers never share a file; readers only read.
- **Crash-safe**: a record is appended, then its index record; ``kill -9``
  leaves at most a torn tail, which fails its checksum or is not indexed, so
  at most the rows in flight are lost (recomputed next time).
- **Checksummed by key**: each record holds its entry key and ends with a
  64-bit checksum of header and payload; a read checks both against the
  key looked up, so a damaged record, or a record found where another
  key's should be, is counted ``damaged`` and recomputed, never served. A
  recomputed entry is appended and shadows the damaged one (the newest
  record of a key wins). The checksum is computed by numpy for a whole
  block of rows (see ``_checksums`` for why not BLAKE2b, as the previous
  format, or CRC-32).
- **Read-only caches are read**: readers open files read-only; a cache that
  cannot be written warns once and is still read.
- **Compact**: one record is a 40-byte header, the float32 payload and an
  8-byte checksum, plus 64 index bytes: 1.07x the raw bytes for 384 floats,
  and two files per writer process (segments roll over at 1 GiB).
- **Fast reads**: a batch of keys is looked up in a sorted in-memory index
  (numpy), sorted by place on disk, and adjacent records are read with one
  call (scattered ones gathered from a read-only memory map); checks and
  decoding are vectorised: no Python call per row.

Entries of the previous format (format 2: one file per entry under 256
folders) have the same keys; they are read when the segments miss, copied
into the segments as they are read, and removed by ``sktransfer cache prune
--legacy`` or ``clear``. ``sktransfer cache info | prune | clear``
(:mod:`sktransfer.cli`) shows the size per backbone and removes old entries.
"""

import datetime as _dt
import hashlib
import json
import logging
import mmap
import os
import re
import secrets
import socket
import struct
import threading
import time
import warnings

import numpy as np

from ._utils import atomic_write_bytes

logger = logging.getLogger(__name__)

# The version inside every namespace key. It stays 2: the segment store keeps
# the keys of format 2, so a per-file cache of format 2 is still read. Format 1
# entries sit at other keys and are simply misses.
_FORMAT_VERSION = 2

# Format 2, one file per entry (read, migrated; written only by tests and benchmarks).
_MAGIC = b"SKT2"
_HEADER = struct.Struct("<4sI")  # magic, dim
_DIGEST = 16

# Format 3, the segment store.
STORE = "store"
NAMESPACES = "namespaces"
COMPILED = "compiled"  # the compiled models of ``_runtime`` (``<backend>-<quantize>-<key>.sktrt``)
_COMPILED_SUFFIX = ".sktrt"
_TMP_PREFIX = ".tmp-"  # what ``atomic_write_bytes`` leaves when its writer is killed
_REC_MAGIC = b"SKR3"
_REC_HEAD = struct.Struct("<4sI32s")  # magic, dim, raw entry key; then the payload, then its checksum (8 bytes)
_SUM = 8
_IDX_MAGIC = b"SKI3"
_IDX = struct.Struct("<32s8sQQI4s")  # key, namespace id, offset, unix time in microseconds, dim, magic
_IDX_DTYPE = np.dtype([("key", "<u8", (4,)), ("ns", "V8"), ("off", "<u8"), ("time", "<u8"), ("dim", "<u4"),
                       ("magic", "V4")])
assert _IDX.size == _IDX_DTYPE.itemsize == 64
_SEGMENT_LIMIT = 1 << 30  # a writer starts a new segment past 1 GiB
_MAX_DIM = 1 << 20
_READ_RUN = 8 << 20  # adjacent records are read in one call, up to 8 MiB
_NO_NAMESPACE = bytes(8)

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


_namespace_parts = {}  # namespace key -> its parts: the label written for `cache info`


def namespace_key(**parts):
    """Hash of everything except the input that decides an embedding."""
    blob = json.dumps({"format": _FORMAT_VERSION, **parts}, sort_keys=True, default=str)
    ns = hashlib.sha256(blob.encode()).hexdigest()
    _namespace_parts[ns] = json.loads(blob)
    return ns


def entry_key(namespace, input_digest):
    return hashlib.sha256((namespace + input_digest).encode()).hexdigest()


def _namespace_id(namespace):
    """The 8 bytes of a namespace kept in every index record (zeros: unknown)."""
    return bytes.fromhex(namespace[:16]) if namespace else _NO_NAMESPACE


# A small in-process layer for the rows this process computed: they are
# served again even where the cache cannot be written (GridSearchCV clones the
# extractor for every fit). Rows read from the segments are not kept: reading
# them again is about as fast.
_memory = {}  # directory -> {entry key: vector}
_memory_bytes = 0
_MEMORY_LIMIT = 512 * 2**20
_memory_lock = threading.Lock()


def _remember(directory, keys, vecs):
    global _memory_bytes
    vecs = np.array(vecs, dtype=np.float32)  # one copy of the block; the rows are views of it
    with _memory_lock:
        if _memory_bytes + vecs.nbytes > _MEMORY_LIMIT:
            _memory.clear()
            _memory_bytes = 0
        mem = _memory.setdefault(directory, {})
        for key, vec in zip(keys, vecs):
            mem[key] = vec
        _memory_bytes += vecs.nbytes


def forget_rows(directory):
    """Drop this process's in-memory copies of the rows of cache ``directory`` (the files on disk stay).

    For a long job whose rows are never read again by this process (the
    ``embed`` command, chunk after chunk): what it computed is on disk.
    ``directory`` as the cache keys it (absolute, user expanded).
    """
    global _memory_bytes
    with _memory_lock:
        rows = _memory.pop(directory, None)
        if rows:
            _memory_bytes = max(0, _memory_bytes - sum(v.nbytes for v in rows.values()))


def clear_memory_layer():
    """Forget what this process holds, as after a restart (the files on disk stay).

    Drops the in-process copies of rows, the segment indexes and the
    segments this process appends to (the next write starts a new one).
    """
    global _memory_bytes
    with _memory_lock:
        _memory.clear()
        _memory_bytes = 0
    close_writers()
    _labelled.clear()
    with _indexes_lock:
        for ix in _indexes.values():
            with ix.lock:
                ix.close_files()
        _indexes.clear()


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


def _preadinto(fd, view, offset):
    """Read into ``view`` from ``offset`` (no copy where ``os.preadv`` exists); return the bytes read."""
    if hasattr(os, "preadv"):
        done = 0
        while done < len(view):
            n = os.preadv(fd, [view[done:]], offset + done)
            if n == 0:
                break
            done += n
        return done
    os.lseek(fd, offset, os.SEEK_SET)  # pragma: no cover - Windows
    data = os.read(fd, len(view))  # pragma: no cover
    view[: len(data)] = data  # pragma: no cover
    return len(data)  # pragma: no cover


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _record_size(dim):
    return _REC_HEAD.size + 4 * int(dim) + _SUM


_WEIGHTS = {}


def _weights(n_words):
    """``n_words`` fixed odd 64-bit weights (SplitMix64 of 1, 2, ...: the same on every machine)."""
    w = _WEIGHTS.get(n_words)
    if w is None:
        z = np.arange(1, n_words + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        w = _WEIGHTS[n_words] = (z ^ (z >> np.uint64(31))) | np.uint64(1)
    return w


def _checksums(rec, body):
    """The checksum of each row of ``rec[:, :body]``: a weighted sum of its 32-bit words, modulo 2**64.

    Our own rather than ``zlib.crc32`` or BLAKE2b: those take one Python call
    per row, and that call was a third to a half of a warm batch read
    (``benchmarks/bench_cache.py``); this is one numpy expression per block of
    rows. With odd weights any change of one word changes the sum, and other
    accidental damage (a torn or zeroed tail, bytes of another record) passes
    with a chance of about 2**-64. Like any unkeyed checksum it detects
    accidents, not someone who can write to the cache.
    """
    words = rec[:, :body].view("<u4")
    w = _weights(words.shape[1])
    out = np.empty(len(rec), np.uint64)
    for c in range(0, len(rec), 2048):
        out[c : c + 2048] = (words[c : c + 2048].astype(np.uint64) * w).sum(axis=1)  # wraps modulo 2**64
    return out


def _records(raw, vecs):
    """The records of many rows as one ``(n, record size)`` uint8 array.

    ``raw``: the entry keys, concatenated (32 bytes each).
    """
    n, dim = vecs.shape
    size = _record_size(dim)
    body = size - _SUM
    rec = np.empty((n, size), np.uint8)
    rec[:, :4] = np.frombuffer(_REC_MAGIC, np.uint8)
    rec[:, 4:8] = np.frombuffer(struct.pack("<I", dim), np.uint8)
    rec[:, 8:40] = np.frombuffer(raw, np.uint8).reshape(n, 32)
    rec[:, 40:body] = np.ascontiguousarray(vecs, "<f4").view(np.uint8).reshape(n, 4 * dim)
    rec[:, body:] = _checksums(rec, body).astype("<u8").view(np.uint8).reshape(n, _SUM)
    return rec


def _verify(rec, raw, dim):
    """Which rows of ``rec`` (an ``(n, record size)`` uint8 array) are intact records of the keys ``raw``.

    Intact: the magic, the length, the key in the header equal to the key
    looked up (a record moved to another key fails here), and the checksum
    of header and payload.
    """
    n, size = rec.shape
    body = size - _SUM
    if size != _record_size(dim):
        return np.zeros(n, bool)
    ok = np.all(rec[:, :4] == np.frombuffer(_REC_MAGIC, np.uint8), axis=1)
    ok &= np.all(rec[:, 4:8] == np.frombuffer(struct.pack("<I", dim), np.uint8), axis=1)
    ok &= np.all(rec[:, 8:40] == np.frombuffer(raw, np.uint8).reshape(n, 32), axis=1)
    ok &= rec[:, body:].copy().view("<u8")[:, 0] == _checksums(rec, body)
    return ok


def _stored_bytes(dims):
    """Bytes on disk of records of these dims, their index records included."""
    dims = np.asarray(dims, np.int64)
    return int(len(dims) * (_REC_HEAD.size + _SUM + _IDX.size) + 4 * dims.sum())


# ---------------------------------------------------------------- writers
class _Writer:
    """The segment this process appends to in one cache (never shared with another process)."""

    def __init__(self, root):
        os.makedirs(root, exist_ok=True)
        host = re.sub(r"[^A-Za-z0-9]+", "-", socket.gethostname())[:32] or "host"
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        self.name = f"{stamp}-{host}-{os.getpid()}-{secrets.token_hex(4)}"
        self.pid = os.getpid()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_BINARY", 0)
        self.seg_path = os.path.join(root, self.name + ".seg")
        self.idx_path = os.path.join(root, self.name + ".idx")
        self.seg = os.open(self.seg_path, flags, 0o666)  # the umask decides: a team can share it
        try:
            self.idx = os.open(self.idx_path, flags, 0o666)
        except OSError:
            os.close(self.seg)
            raise
        self.size = 0
        self.broken = False

    def still_there(self):
        """False when ``prune``/``clear`` removed this segment: a new one is started."""
        try:
            return os.path.samestat(os.fstat(self.seg), os.stat(self.seg_path))
        except OSError:
            return False

    def append(self, data, raw, ns, dims):
        """Append records (``data``, of the keys ``raw``, 32 bytes each), then their index records."""
        dims = np.asarray(dims, np.int64)
        sizes = _REC_HEAD.size + _SUM + 4 * dims
        idx = np.zeros(len(dims), _IDX_DTYPE)
        idx["key"] = np.frombuffer(raw, "<u8").reshape(-1, 4)
        idx["ns"] = np.frombuffer(ns, "V8")  # one id for all rows, or one per row
        idx["off"] = self.size + np.cumsum(sizes) - sizes
        idx["dim"] = dims
        idx["time"] = int(time.time() * 1e6)  # orders the records of one key: the newest wins
        idx["magic"] = np.frombuffer(_IDX_MAGIC, "V4")[0]
        self.broken = True  # until both writes completed: offsets would be off after a partial write
        _write_all(self.seg, data)
        self.size += int(sizes.sum())
        _write_all(self.idx, idx.tobytes())
        self.broken = False

    def close(self):
        for fd in (self.seg, self.idx):
            try:
                os.close(fd)
            except OSError:
                pass


_writers = {}  # store root -> _Writer of this process
_writers_lock = threading.Lock()


def _append(root, data, raw, ns, dims):
    """Append records to this process's segment of ``root`` (one call at a time: offsets are tracked here)."""
    with _writers_lock:
        w = _writers.get(root)
        if w is not None and (w.pid != os.getpid() or w.broken or w.size >= _SEGMENT_LIMIT or not w.still_there()):
            if w.pid == os.getpid():
                w.close()
            w = None
        if w is None:
            w = _writers[root] = _Writer(root)
        w.append(data, raw, ns, dims)


def close_writers():
    """Close the segments this process appends to; the next write starts new ones.

    Segments in use by this process are never rewritten by ``prune_cache``:
    close them first in a long-running process that prunes its own cache.
    """
    with _writers_lock:
        for w in _writers.values():
            if w.pid == os.getpid():
                w.close()
        _writers.clear()


# ---------------------------------------------------------------- readers
class _Index:
    """Every index record of one store, sorted by key, shared by the cache objects of a process.

    ``refresh`` reads only what was appended since the last call (one
    ``listdir`` and one ``stat`` per segment), so the entries of other
    processes are seen at the next batch.
    """

    def __init__(self, root):
        self.root = root
        self.lock = threading.RLock()
        self._reset()

    def _reset(self):
        self.consumed = {}  # segment name -> index bytes read
        self.seg_ids = {}  # segment name -> id
        self.seg_names = []
        self.keys = np.empty((0, 4), "<u8")
        self.seg = np.empty(0, "<i4")
        self.off = np.empty(0, "<u8")
        self.dim = np.empty(0, "<u4")
        self.time = np.empty(0, "<u8")
        self.fds = {}
        self.maps = {}
        self.bad = set()  # (segment id, offset) of records found damaged
        self.last_refresh = 0.0

    def close_files(self):
        self.maps = {}  # unmapped when the last array over them goes (numpy views may remain)
        for fd in self.fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = {}

    def refresh(self):
        with self.lock:
            try:
                names = {n[:-4] for n in os.listdir(self.root) if n.endswith(".idx")}
            except OSError:  # no store yet (or unreadable): nothing indexed
                names = set()
            if set(self.consumed) - names:  # segments removed by prune/clear: read again from scratch
                self.close_files()
                self._reset()
            new = []
            for name in sorted(names):
                path = os.path.join(self.root, name + ".idx")
                try:
                    size = os.stat(path).st_size
                except OSError:
                    continue
                start = self.consumed.get(name, 0)
                end = start + (size - start) // _IDX.size * _IDX.size  # a torn last record waits
                if end <= start:
                    continue
                try:
                    with open(path, "rb") as f:
                        f.seek(start)
                        data = f.read(end - start)
                except OSError:
                    continue
                end = start + len(data) // _IDX.size * _IDX.size
                recs = np.frombuffer(data[: end - start], _IDX_DTYPE)
                # Zeros or garbage (a torn write after a power cut) are never looked up.
                recs = recs[(recs["magic"] == np.void(_IDX_MAGIC)) & (recs["dim"] > 0) & (recs["dim"] <= _MAX_DIM)]
                self.consumed[name] = end
                if name not in self.seg_ids:
                    self.seg_ids[name] = len(self.seg_names)
                    self.seg_names.append(name)
                new.append((self.seg_ids[name], recs))
            if not new:
                return
            seg = np.concatenate([np.full(len(r), i, "<i4") for i, r in new])
            keys = np.concatenate([r["key"] for _, r in new]).reshape(-1, 4)
            off = np.concatenate([r["off"] for _, r in new])
            dim = np.concatenate([r["dim"] for _, r in new])
            when = np.concatenate([r["time"] for _, r in new])
            # Sorted by key; among records of one key the newest last (it is the one served).
            order = np.lexsort((when, keys[:, 0]))
            seg, keys, off, dim, when = seg[order], keys[order], off[order], dim[order], when[order]
            # The new records (a batch's worth) merged into the sorted arrays in one pass, not the
            # whole index sorted again at each batch (quadratic in the rows: 15 s of a transform
            # of 300,000 rows went to it). A key already indexed (written again, e.g. by two
            # processes) takes the full sort, which orders its records by time.
            at = np.searchsorted(self.keys[:, 0], keys[:, 0], side="left")
            inside = at < len(self.keys)
            if inside.any() and np.any(self.keys[at[inside], 0] == keys[inside, 0]):
                seg, keys = np.concatenate([self.seg, seg]), np.concatenate([self.keys, keys])
                off, dim, when = np.concatenate([self.off, off]), np.concatenate([self.dim, dim]), np.concatenate([self.time, when])
                order = np.lexsort((when, keys[:, 0]))
                self.keys, self.seg, self.off, self.dim, self.time = keys[order], seg[order], off[order], dim[order], when[order]
            else:
                self.keys = np.insert(self.keys, at, keys, axis=0)
                self.seg, self.off = np.insert(self.seg, at, seg), np.insert(self.off, at, off)
                self.dim, self.time = np.insert(self.dim, at, dim), np.insert(self.time, at, when)
            self.last_refresh = time.monotonic()

    def lookup(self, raw):
        """Positions (into the sorted arrays) of the newest record of each key (``raw``: 32 bytes each), -1 if absent."""
        q = np.frombuffer(raw, "<u8").reshape(-1, 4)
        if not len(self.keys) or not len(q):
            return np.full(len(q), -1, np.int64)
        pos = np.searchsorted(self.keys[:, 0], q[:, 0], side="right") - 1
        safe = np.maximum(pos, 0)
        same_prefix = (pos >= 0) & (self.keys[safe, 0] == q[:, 0])
        hit = same_prefix & np.all(self.keys[safe] == q, axis=1)
        out = np.where(hit, pos, -1)
        # Two keys sharing their first 8 bytes (about 1 in 10^7 at 10^6 rows): the slow path.
        for i in np.flatnonzero(same_prefix & ~hit):
            found = self.candidates(q[i])
            out[i] = found[0] if found else -1
        return out

    def candidates(self, qkey):
        """Positions of every record of one key (as 4 uint64), newest first."""
        lo = np.searchsorted(self.keys[:, 0], qkey[0], side="left")
        hi = np.searchsorted(self.keys[:, 0], qkey[0], side="right")
        return [p for p in range(hi - 1, lo - 1, -1) if np.array_equal(self.keys[p], qkey)]

    def rows(self, seg_id, size, end):
        """The segment as an ``(n, size)`` uint8 array over a read-only memory map, or None.

        None where the file is shorter than ``end`` (a torn tail: read it
        with ``pread``) or cannot be mapped. Segments only grow, so a map
        stays valid; it is made again when a later record lies past it, or
        if the file ever shrank (a map over a truncated file would fault).
        """
        m = self.maps.get(seg_id)
        length = os.fstat(self.fd(seg_id)).st_size
        if m is None or len(m) < end or length < len(m):
            if length < end or not hasattr(mmap, "ACCESS_READ"):
                return None
            m = self.maps[seg_id] = mmap.mmap(self.fd(seg_id), length, access=mmap.ACCESS_READ)
        return np.frombuffer(m, np.uint8, count=len(m) // size * size).reshape(-1, size)

    def fd(self, seg_id):
        fd = self.fds.get(seg_id)
        if fd is None:
            if len(self.fds) >= 128:
                self.close_files()
            fd = os.open(os.path.join(self.root, self.seg_names[seg_id] + ".seg"), os.O_RDONLY | getattr(os, "O_BINARY", 0))
            self.fds[seg_id] = fd
        return fd


_indexes = {}
_indexes_lock = threading.Lock()


def _index(root):
    with _indexes_lock:
        ix = _indexes.get(root)
        if ix is None:
            ix = _indexes[root] = _Index(root)
        return ix


def _after_fork():  # pragma: no cover - exercised by forked workers
    # A forked child must neither append to its parent's segment nor share its file offsets.
    global _writers_lock, _indexes_lock
    _writers_lock, _indexes_lock = threading.Lock(), threading.Lock()
    _writers.clear()
    for ix in _indexes.values():
        ix.lock = threading.RLock()
        ix.fds, ix.maps = {}, {}


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


# ---------------------------------------------------------- the previous format
class _LegacyFiles:
    """Format 2: one checksummed file per entry, ``<directory>/<2 hex>/<62 hex>.emb``."""

    def __init__(self, directory):
        self.directory = directory

    def path(self, key):
        return os.path.join(self.directory, key[:2], key[2:] + ".emb")

    def present(self):
        try:
            return any(len(n) == 2 and all(c in "0123456789abcdef" for c in n) for n in os.listdir(self.directory))
        except OSError:
            return False

    def files(self):
        for top in sorted(os.listdir(self.directory)) if os.path.isdir(self.directory) else ():
            if len(top) != 2 or not all(c in "0123456789abcdef" for c in top):
                continue
            folder = os.path.join(self.directory, top)
            if os.path.isdir(folder):
                for name in os.listdir(folder):
                    if name.endswith(".emb"):
                        yield os.path.join(folder, name)

    @staticmethod
    def checksum(key, body):
        h = hashlib.blake2b(digest_size=_DIGEST)
        h.update(key.encode() + b"\0")
        h.update(body)
        return h.digest()

    @classmethod
    def decode(cls, data, dim, key):
        if len(data) != _HEADER.size + 4 * dim + _DIGEST:
            return None
        magic, stored_dim = _HEADER.unpack_from(data)
        if magic != _MAGIC or stored_dim != dim or cls.checksum(key, data[:-_DIGEST]) != data[-_DIGEST:]:
            return None
        return np.frombuffer(data[_HEADER.size : -_DIGEST], dtype="<f4").copy()

    def get(self, key, dim):
        """``(vector or None, damaged)``; a damaged file is removed (where it can be)."""
        path = self.path(key)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            return None, False
        vec = self.decode(data, dim, key)
        if vec is None:
            try:
                os.unlink(path)
            except OSError:
                pass
            return None, True
        return vec, False

    def put(self, key, vec):
        body = _HEADER.pack(_MAGIC, vec.shape[0]) + vec.tobytes()
        atomic_write_bytes(self.path(key), body + self.checksum(key, body))


_legacy_logged = set()
_labelled = set()  # (directory, namespace) whose label file exists


# --------------------------------------------------------------- the cache
class EmbeddingCache:
    """A directory of embeddings that holds millions of rows, shared by processes.

    Each writer process appends to its own segment file; readers index every
    segment. Entries are checksummed with their own key: a damaged entry is
    recomputed, never served. A directory that cannot be written is still
    read (one warning). Entries of the previous one-file-per-entry format
    are read too, and copied into the segments as they are used.

    Parameters
    ----------
    directory : str or path-like
        Where entries live (``~`` is expanded). Created on first write. Any
        filesystem that several machines mount (NFS, Lustre, ...) can be
        shared: no two processes write the same file.
    namespace : str, default=None
        The namespace key (backbone, preprocessing, layer) of the entries
        this object writes; it lets ``sktransfer cache info`` count entries
        per backbone and ``prune --backbone`` remove them. Reading does not
        need it: entry keys already include it.

    See Also
    --------
    sktransfer.cli : ``sktransfer cache info | prune | clear``.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from sktransfer import EmbeddingCache
    >>> store = EmbeddingCache(tempfile.mkdtemp())
    >>> store.put_many(["a" * 64, "b" * 64], np.ones((2, 3), np.float32))
    2
    >>> vecs, found = store.get_many(["a" * 64, "c" * 64], 3)
    >>> found.tolist(), vecs[0].tolist()
    ([True, False], [1.0, 1.0, 1.0])
    """

    def __init__(self, directory, namespace=None):
        self.directory = os.path.abspath(os.path.expanduser(os.fsdecode(directory)))
        self.namespace = namespace
        self._root = os.path.join(self.directory, STORE)
        self._writable = True
        self._legacy = _LegacyFiles(self.directory)
        self._legacy_present = None

    # -------------------------------------------------------------- reading
    def get(self, key, dim):
        """The stored vector of ``key``, or None if absent or damaged."""
        # One key at a time: other processes' new segments are looked for at most once a second.
        vecs, found = self._get_many([key], dim, refresh=time.monotonic() - _index(self._root).last_refresh > 1.0)
        return vecs[0] if found[0] else None

    def get_many(self, keys, dim):
        """Stored vectors of ``keys``, read in a few large reads.

        Parameters
        ----------
        keys : list of str
            Entry keys (64 hex characters, see ``entry_key``).
        dim : int
            Length of the vectors.

        Returns
        -------
        vectors : ndarray of shape (len(keys), dim), float32
            The rows found; the others are undefined.
        found : ndarray of shape (len(keys),), bool
            Which rows were found intact. Damaged entries are counted in
            ``embedding_stats()["damaged"]`` and reported as not found.
        """
        return self._get_many(keys, dim, refresh=True)

    def _get_many(self, keys, dim, refresh):
        keys = list(keys)
        out = np.empty((len(keys), dim), np.float32)
        found = np.zeros(len(keys), bool)
        mem = _memory.get(self.directory)
        if mem:
            todo = []
            for i, key in enumerate(keys):
                vec = mem.get(key)
                if vec is not None and vec.shape[0] == dim:
                    out[i] = vec
                    found[i] = True
                else:
                    todo.append(i)
        else:
            todo = list(range(len(keys)))
        if not todo:
            return out, found
        self._read_segments(keys, np.asarray(todo, np.intp), dim, out, found, refresh)
        missing = [i for i in todo if not found[i]]
        if missing and self._has_legacy():
            self._read_legacy(keys, missing, dim, out, found)
        return out, found

    def _read_segments(self, keys, todo, dim, out, found, refresh):
        """Fill ``out[todo]`` from the segments: sorted by place on disk, adjacent records read together."""
        ix = _index(self._root)
        with ix.lock:
            if refresh:
                ix.refresh()
                ix.last_refresh = time.monotonic()
            if not len(ix.keys):
                return
            hexes = "".join(keys) if len(todo) == len(keys) else "".join([keys[i] for i in todo])
            raw = np.frombuffer(bytes.fromhex(hexes), np.uint8).reshape(-1, 32)
            pos = ix.lookup(raw.tobytes())
            have = np.flatnonzero(pos >= 0)
            if not len(have):
                return
            size = _record_size(dim)
            p = pos[have]
            segs, offs = ix.seg[p], ix.off[p].astype(np.int64)
            order = np.lexsort((offs, segs))
            have, segs, offs = have[order], segs[order], offs[order]
            step = max(1, _READ_RUN // size)  # rows per chunk: bounded memory for any number of keys
            for c in range(0, len(have), step):
                self._read_chunk(ix, raw, todo, dim, out, found, have[c : c + step], segs[c : c + step],
                                 offs[c : c + step])

    def _read_chunk(self, ix, raw, todo, dim, out, found, have, segs, offs):
        size = _record_size(dim)
        rec = None
        if segs[0] == segs[-1] and offs[-1] - offs[0] == (len(offs) - 1) * size and offs[0] % size == 0:
            try:  # one run of one segment (rows read in the order written): checked and copied from the map
                rows = ix.rows(int(segs[0]), size, int(offs[-1]) + size)
                rec = None if rows is None else rows[offs[0] // size : offs[-1] // size + 1]
            except (OSError, ValueError):
                rec = None
        if rec is not None:
            return self._decode(ix, rec, raw, todo, dim, out, found, have, segs, offs)
        rec = np.empty((len(have), size), np.uint8)
        flat = memoryview(rec.reshape(-1))
        bounds = np.flatnonzero(segs[1:] != segs[:-1]) + 1
        for s0, s1 in zip([0] + bounds.tolist(), bounds.tolist() + [len(have)]):  # one segment at a time
            o = offs[s0:s1]
            try:
                rows = ix.rows(int(segs[s0]), size, int(o[-1]) + size) if np.all(o % size == 0) else None
            except (OSError, ValueError):  # removed by prune/clear, or cannot be mapped: read below
                rows = None
            if rows is not None:  # records scattered over a mapped segment: one numpy gather, no call per row
                rec[s0:s1] = rows[o // size]
                continue
            # Runs: each record right after the previous one: one read each, straight into `rec`.
            breaks = np.flatnonzero(o[1:] != o[:-1] + size) + 1 + s0
            for a, b in zip([s0] + breaks.tolist(), breaks.tolist() + [s1]):
                try:
                    n = _preadinto(ix.fd(int(segs[a])), flat[a * size : b * size], int(offs[a]))
                except OSError:  # the segment was removed by prune/clear: misses
                    n = 0
                if n < (b - a) * size:  # a short read (torn tail): those rows fail the check
                    rec[a + n // size : b] = 0
        self._decode(ix, rec, raw, todo, dim, out, found, have, segs, offs)

    def _decode(self, ix, rec, raw, todo, dim, out, found, have, segs, offs):
        """Check the records ``rec`` read for ``raw[have]``; fill ``out`` with the intact ones."""
        size = _record_size(dim)
        sub = raw[have]
        ok = _verify(rec, sub.tobytes(), dim)
        rows = todo[have[ok]]
        out[rows] = (rec if ok.all() else rec[ok])[:, _REC_HEAD.size : size - _SUM].view("<f4")
        found[rows] = True
        for t in np.flatnonzero(~ok).tolist():  # the newest record is damaged: an older intact one may exist
            count("damaged")
            ix.bad.add((int(segs[t]), int(offs[t])))
            key = sub[t].tobytes()
            for q in ix.candidates(np.frombuffer(key, "<u8")):
                seg_id, off = int(ix.seg[q]), int(ix.off[q])
                if (seg_id, off) in ix.bad or int(ix.dim[q]) != dim:
                    continue
                one = np.zeros((1, size), np.uint8)
                try:
                    _preadinto(ix.fd(seg_id), memoryview(one.reshape(-1)), off)
                except OSError:
                    continue
                if _verify(one, key, dim)[0]:
                    out[todo[have[t]]] = one[0, _REC_HEAD.size : size - _SUM].view("<f4")
                    found[todo[have[t]]] = True
                    break
                ix.bad.add((seg_id, off))

    def _has_legacy(self):
        if self._legacy_present is None:
            self._legacy_present = self._legacy.present()
            if self._legacy_present and self.directory not in _legacy_logged:
                _legacy_logged.add(self.directory)
                logger.info(
                    "embedding cache %s holds entries of the previous one-file-per-entry format: they are "
                    "read and copied into %s/ as they are used; `sktransfer cache prune --legacy` removes "
                    "the old files.", self.directory, STORE,
                )
        return self._legacy_present

    def _read_legacy(self, keys, missing, dim, out, found):
        moved_keys, moved = [], []
        for i in missing:
            vec, damaged = self._legacy.get(keys[i], dim)
            if damaged:
                count("damaged")
            if vec is not None:
                out[i] = vec
                found[i] = True
                moved_keys.append(keys[i])
                moved.append(vec)
        if moved:  # migrate: the next read is a segment read
            self.put_many(moved_keys, np.stack(moved))

    # -------------------------------------------------------------- writing
    def put(self, key, vec):
        """Store ``vec``; return whether it reached the disk.

        A cache that can't be written (read-only, full, a file in the way)
        warns once and is then only read for the rest of this object's life.
        """
        return bool(self.put_many([key], np.asarray(vec)[None]))

    def put_many(self, keys, vecs):
        """Append the rows of ``vecs`` under ``keys`` in one write.

        Parameters
        ----------
        keys : list of str
            Entry keys (64 hex characters).
        vecs : array-like of shape (len(keys), dim)
            The vectors, stored as float32.

        Returns
        -------
        n_written : int
            Rows that reached the disk (0 for a cache that cannot be written).
        """
        keys = list(keys)
        vecs = np.ascontiguousarray(vecs, dtype="<f4").reshape(len(keys), -1)
        if not keys:
            return 0
        _remember(self.directory, keys, vecs)
        if not self._writable:
            return 0
        raw = bytes.fromhex("".join(keys))
        data = _records(raw, vecs).tobytes()
        try:
            self._label_namespace()
            _append(self._root, data, raw, _namespace_id(self.namespace), np.full(len(keys), vecs.shape[1]))
        except OSError as exc:
            self._writable = False
            _warn_unwritable(self.directory, exc)
            return 0
        return len(keys)

    def _label_namespace(self):
        """Write ``namespaces/<id>.json`` once: what the namespace is, for ``cache info``."""
        if not self.namespace or self.namespace not in _namespace_parts or (self.directory, self.namespace) in _labelled:
            return
        path = os.path.join(self.directory, NAMESPACES, self.namespace[:16] + ".json")
        if not os.path.exists(path):
            label = {"namespace": self.namespace, **_namespace_parts[self.namespace]}
            atomic_write_bytes(path, json.dumps(label, indent=1, sort_keys=True, default=str).encode())
        _labelled.add((self.directory, self.namespace))

    def __len__(self):
        """Distinct keys in the segments (not counting entries of the previous format)."""
        ix = _index(self._root)
        with ix.lock:
            ix.refresh()
            return _distinct([ix.keys])

    def locate(self, key):
        """``(segment path, offset, length)`` of the record served for ``key``, or None (for tests and repairs)."""
        ix = _index(self._root)
        with ix.lock:
            ix.refresh()
            (p,) = ix.lookup(bytes.fromhex(key))
            if p < 0:
                return None
            return (os.path.join(self._root, ix.seg_names[ix.seg[p]] + ".seg"), int(ix.off[p]), _record_size(ix.dim[p]))

    def __repr__(self):
        return f"EmbeddingCache({self.directory!r})"


# ------------------------------------------------------ info / prune / clear
def _segments(root):
    try:
        names = sorted({n[:-4] for n in os.listdir(root) if n.endswith((".seg", ".idx"))})
    except OSError:
        return []
    return names


def _read_index(root, name):
    try:
        with open(os.path.join(root, name + ".idx"), "rb") as f:
            data = f.read()
    except OSError:
        return np.empty(0, _IDX_DTYPE)
    recs = np.frombuffer(data[: len(data) // _IDX.size * _IDX.size], _IDX_DTYPE)
    return recs[(recs["magic"] == np.void(_IDX_MAGIC)) & (recs["dim"] > 0) & (recs["dim"] <= _MAX_DIM)]


def _labels(directory):
    out = {}
    folder = os.path.join(directory, NAMESPACES)
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
        try:
            with open(os.path.join(folder, name)) as f:
                label = json.load(f)
            out[bytes.fromhex(label["namespace"][:16])] = label
        except (OSError, ValueError, KeyError):
            continue
    return out


def _size(path):
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _tree_bytes(path):
    return sum(_size(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def _describe(label):
    if label is None:
        return "(unknown backbone: no label)"
    parts = [str(label.get("backbone"))]
    if label.get("layer") is not None:
        parts.append(f"layer {label['layer']}")
    if label.get("compiled"):
        parts.append("compiled")
    if label.get("long_texts"):
        parts.append(str(label["long_texts"]))
    return ", ".join(parts)


def cache_info(directory):
    """What a cache directory holds, per namespace (backbone, layer, ...).

    Parameters
    ----------
    directory : str or path-like
        The cache directory.

    Returns
    -------
    info : dict
        ``directory``, ``entries`` (distinct keys), ``records`` (with
        duplicates), ``bytes``, ``files``, ``segments``,
        ``namespaces`` (a list of dicts: ``namespace``, ``backbone``,
        ``description``, ``entries``, ``bytes``, ``oldest``, ``newest``),
        ``legacy_entries`` / ``legacy_bytes`` (the previous format),
        ``compiled_models`` / ``compiled_bytes`` (exported ONNX / OpenVINO
        models under ``compiled/``, stray temporary files included in the
        bytes; ``prune_cache(compiled=True)`` removes them).
    """
    directory = os.path.abspath(os.path.expanduser(os.fsdecode(directory)))
    root = os.path.join(directory, STORE)
    names = _segments(root)
    labels = _labels(directory)
    per_ns, records, seg_bytes = {}, 0, 0
    all_keys = []
    for name in names:
        recs = _read_index(root, name)
        seg_bytes += _size(os.path.join(root, name + ".seg")) + _size(os.path.join(root, name + ".idx"))
        records += len(recs)
        all_keys.append(recs["key"])
        for ns in np.unique(recs["ns"]):
            sel = recs[recs["ns"] == ns]
            d = per_ns.setdefault(bytes(ns), {"records": 0, "bytes": 0, "oldest": None, "newest": None, "keys": []})
            d["records"] += len(sel)
            d["bytes"] += _stored_bytes(sel["dim"])
            d["keys"].append(sel["key"])
            lo, hi = int(sel["time"].min()) // 10**6, int(sel["time"].max()) // 10**6
            d["oldest"] = lo if d["oldest"] is None else min(d["oldest"], lo)
            d["newest"] = hi if d["newest"] is None else max(d["newest"], hi)
    namespaces = []
    for ns, d in sorted(per_ns.items(), key=lambda kv: -kv[1]["bytes"]):
        label = labels.get(ns) if ns != _NO_NAMESPACE else None
        namespaces.append({
            "namespace": label["namespace"] if label else ns.hex(),
            "backbone": label.get("backbone") if label else None,
            "description": _describe(label),
            "entries": _distinct(d["keys"]),
            "records": d["records"],
            "bytes": d["bytes"],
            "oldest": _iso(d["oldest"]),
            "newest": _iso(d["newest"]),
        })
    legacy = list(_LegacyFiles(directory).files())
    return {
        "directory": directory,
        "entries": _distinct(all_keys),
        "records": records,
        "bytes": seg_bytes,
        "files": sum(os.path.exists(os.path.join(root, n + e)) for n in names for e in (".seg", ".idx")),
        "segments": len(names),
        "namespaces": namespaces,
        "legacy_entries": len(legacy),
        "legacy_bytes": sum(_size(p) for p in legacy),
        "compiled_models": sum(is_model for _, _, _, is_model in _compiled_files(directory)),
        "compiled_bytes": _tree_bytes(os.path.join(directory, COMPILED)),
    }


def _distinct(key_arrays):
    keys = np.concatenate(key_arrays) if key_arrays else np.empty((0, 4), "<u8")
    return int(len(np.unique(keys, axis=0))) if len(keys) else 0


def _iso(t):
    return None if t is None else _dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _compiled_files(directory):
    """``(path, mtime, size, is_model)`` of the files under ``compiled/``: the models and the stray
    temporary files of killed writers (anything else there is not ours and is left alone)."""
    folder = os.path.join(directory, COMPILED)
    out = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
        is_model = name.endswith(_COMPILED_SUFFIX)
        if not (is_model or name.startswith(_TMP_PREFIX)):
            continue
        path = os.path.join(folder, name)
        try:
            st = os.stat(path)
        except OSError:
            continue
        if os.path.isfile(path):
            out.append((path, st.st_mtime, st.st_size, is_model))
    return out


def _prune_compiled(directory, older_than, max_bytes, grace, now, dry_run):
    """Remove compiled models: not used for ``older_than`` seconds, then the least recently used until
    ``compiled/`` holds at most ``max_bytes``; all of them when both are None. Files used (loaded or
    written) in the last ``grace`` seconds are kept; stray temporary files older than that are removed."""
    files = _compiled_files(directory)
    every = older_than is None and max_bytes is None
    rep = {"compiled_removed": 0, "compiled_freed_bytes": 0, "compiled_skipped_active": 0, "compiled_stray_removed": 0}
    doomed, keep = [], []
    for f in files:
        path, mtime, size, is_model = f
        if now - mtime < grace:
            rep["compiled_skipped_active"] += is_model
            keep.append(f)
        elif not is_model or every or (older_than is not None and mtime < now - older_than):
            doomed.append(f)
        else:
            keep.append(f)
    if max_bytes is not None:
        total = sum(f[2] for f in keep)
        for f in sorted((f for f in keep if now - f[1] >= grace), key=lambda f: f[1]):  # least recently used first
            if total <= max_bytes:
                break
            doomed.append(f)
            total -= f[2]
    for path, _, size, is_model in doomed:
        if not dry_run:
            try:
                os.unlink(path)
            except FileNotFoundError:  # removed meanwhile (another prune)
                continue
        rep["compiled_removed" if is_model else "compiled_stray_removed"] += 1
        rep["compiled_freed_bytes"] += size
    return rep


def prune_cache(directory, older_than=None, backbone=None, max_bytes=None, legacy=False, grace=600.0,
                dry_run=False, compiled=False):
    """Remove old entries and compact the segments that held them.

    Segments are never edited: those with entries to remove are rewritten
    (their kept entries appended to a new segment, one copy per key), then
    deleted. Segments written to in the last ``grace`` seconds may belong to
    a running writer and are left alone.

    Parameters
    ----------
    directory : str or path-like
        The cache directory.
    older_than : float, default=None
        Remove entries written more than this many seconds ago.
    backbone : str, default=None
        Remove the entries of this backbone (its name as given to the
        extractor, or a namespace key prefix).
    max_bytes : int, default=None
        Then remove the oldest entries until the store is at most this size.
    legacy : bool, default=False
        Also remove the entries of the previous one-file-per-entry format.
    grace : float, default=600
        Seconds: segments modified more recently are skipped, and so are
        compiled models used more recently.
    dry_run : bool, default=False
        Only report what would be removed.
    compiled : bool, default=False
        Also prune the compiled models (exported ONNX / OpenVINO files under
        ``compiled/``, see :mod:`sktransfer._runtime`): with ``older_than``,
        those not used (loaded or built) for that many seconds; with
        ``max_bytes``, then the least recently used until ``compiled/`` holds
        at most ``max_bytes`` (a budget of its own, apart from the
        embeddings'); with neither, all of them. ``backbone`` does not select
        compiled models (their files are named by a hash). A removed model is
        built again when next needed, but an estimator fitted with a
        *calibrated* int8 model must then be fitted again.

    Returns
    -------
    report : dict
        ``removed`` (records), ``kept``, ``freed_bytes``, ``rewritten`` and
        ``deleted`` (segments), ``skipped_active`` (segments), ``legacy_removed``;
        with ``compiled``: ``compiled_removed`` (models),
        ``compiled_freed_bytes``, ``compiled_skipped_active`` (models) and
        ``compiled_stray_removed`` (temporary files of killed writers).
    """
    if max_bytes is not None and max_bytes < 0:
        raise ValueError(f"max_bytes={max_bytes!r}: the size to prune down to must be >= 0 bytes.")
    if compiled and backbone is not None and older_than is None and max_bytes is None:
        raise ValueError(
            f"backbone={backbone!r} with compiled=True: compiled models are named by a hash of their weights, "
            "not by backbone; prune them by age (older_than), by size (max_bytes), or all (compiled alone)."
        )
    directory = os.path.abspath(os.path.expanduser(os.fsdecode(directory)))
    root = os.path.join(directory, STORE)
    now = time.time()
    labels = _labels(directory)
    doomed_ns = set()
    if backbone is not None:
        for ns, label in labels.items():
            if backbone in (label.get("backbone"), label.get("namespace")) or label["namespace"].startswith(backbone):
                doomed_ns.add(ns)
        if not doomed_ns and re.fullmatch(r"[0-9a-f]{16,64}", backbone):
            doomed_ns.add(bytes.fromhex(backbone[:16]))
    with _writers_lock:
        own = {w.name for w in _writers.values() if w.pid == os.getpid()}
    active, segs = [], {}
    for name in _segments(root):
        mtime = max((os.stat(p).st_mtime for p in (os.path.join(root, name + e) for e in (".seg", ".idx"))
                     if os.path.exists(p)), default=0.0)
        if name in own or now - mtime < grace:
            active.append(name)  # this process's own segment, or one a writer may still append to
        else:
            segs[name] = _read_index(root, name)
    drop = {}
    for name, recs in segs.items():
        d = np.zeros(len(recs), bool)
        if older_than is not None:
            d |= recs["time"] < (now - older_than) * 1e6
        if doomed_ns:
            d |= np.isin(np.frombuffer(recs["ns"].tobytes(), "<u8"), np.frombuffer(b"".join(doomed_ns), "<u8"))
        drop[name] = d
    if max_bytes is not None:
        total = sum(_size(os.path.join(root, n + ".seg")) + _size(os.path.join(root, n + ".idx"))
                    for n in _segments(root))
        sizes = {n: (_REC_HEAD.size + _SUM + _IDX.size + 4 * r["dim"].astype(np.int64)) for n, r in segs.items()}
        total -= sum(int(sizes[n][drop[n]].sum()) for n in segs)
        if total > max_bytes:
            cand = [(int(r["time"][i]), n, i) for n, r in segs.items() for i in np.flatnonzero(~drop[n])]
            for _, n, i in sorted(cand):
                if total <= max_bytes:
                    break
                drop[n][i] = True
                total -= int(sizes[n][i])
    report = {"removed": 0, "kept": 0, "freed_bytes": 0, "rewritten": 0, "deleted": 0,
              "skipped_active": len(active), "legacy_removed": 0}
    for name, recs in segs.items():
        d = drop[name]
        if not d.any():
            continue
        before = _size(os.path.join(root, name + ".seg")) + _size(os.path.join(root, name + ".idx"))
        keep = recs[~d]
        report["removed"] += int(d.sum())
        if dry_run:
            report["freed_bytes"] += _stored_bytes(recs[d]["dim"])
            continue
        if len(keep):
            _copy_records(root, name, keep)
            report["rewritten"] += 1
        else:
            report["deleted"] += 1
        report["kept"] += len(keep)
        for ext in (".idx", ".seg"):  # the index first: a reader never indexes a missing segment's records
            try:
                os.unlink(os.path.join(root, name + ext))
            except FileNotFoundError:
                pass
        report["freed_bytes"] += before - _stored_bytes(keep["dim"])
    if legacy:
        for path in list(_LegacyFiles(directory).files()):
            report["legacy_removed"] += 1
            report["freed_bytes"] += _size(path)
            if not dry_run:
                os.unlink(path)
        if not dry_run:
            for top in os.listdir(directory) if os.path.isdir(directory) else ():
                p = os.path.join(directory, top)
                if len(top) == 2 and os.path.isdir(p):
                    try:
                        os.rmdir(p)
                    except OSError:
                        pass
    if compiled:
        report.update(_prune_compiled(directory, older_than, max_bytes, grace, now, dry_run))
    return report


def _copy_records(root, name, keep):
    """Append the intact records ``keep`` of segment ``name`` to this process's segment (one per key)."""
    _, last = np.unique(keep["key"][::-1], axis=0, return_index=True)  # the newest record of each key
    keep = keep[::-1][np.sort(last)]
    batch = []
    with open(os.path.join(root, name + ".seg"), "rb") as f:
        for r in keep:
            dim = int(r["dim"])
            f.seek(int(r["off"]))
            rec = np.frombuffer(f.read(_record_size(dim)), np.uint8)
            raw = r["key"].tobytes()
            if len(rec) == _record_size(dim) and _verify(rec[None], raw, dim)[0]:
                batch.append((rec.tobytes(), raw, r["ns"].tobytes(), dim))
            if len(batch) == 4096:
                _append(root, *(b"".join(col) for col in list(zip(*batch))[:3]), [b[3] for b in batch])
                batch = []
    if batch:
        _append(root, *(b"".join(col) for col in list(zip(*batch))[:3]), [b[3] for b in batch])


def clear_cache(directory, dry_run=False, compiled=False):
    """Remove every embedding of a cache directory (segments, labels, previous format).

    Compiled models (``<directory>/compiled``) are kept unless ``compiled``.

    Parameters
    ----------
    directory : str or path-like
        The cache directory.
    dry_run : bool, default=False
        Only report what would be removed.
    compiled : bool, default=False
        Also remove the compiled models (and stray temporary files) under
        ``compiled/``.

    Returns
    -------
    report : dict
        ``files`` removed and ``freed_bytes`` (compiled models included).
    """
    directory = os.path.abspath(os.path.expanduser(os.fsdecode(directory)))
    report = {"files": 0, "freed_bytes": 0}
    paths = [os.path.join(directory, STORE, n + e) for n in _segments(os.path.join(directory, STORE))
             for e in (".idx", ".seg")]
    paths = [p for p in paths if os.path.exists(p)]
    paths += list(_LegacyFiles(directory).files())
    folder = os.path.join(directory, NAMESPACES)
    paths += [os.path.join(folder, n) for n in (sorted(os.listdir(folder)) if os.path.isdir(folder) else ())]
    if compiled:
        paths += [path for path, _, _, _ in _compiled_files(directory)]
    for p in paths:
        report["files"] += 1
        report["freed_bytes"] += _size(p)
        if not dry_run:
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
    if not dry_run:
        for top in os.listdir(directory) if os.path.isdir(directory) else ():
            p = os.path.join(directory, top)
            if os.path.isdir(p) and (len(top) == 2 or top in (NAMESPACES,)):
                try:
                    os.rmdir(p)
                except OSError:
                    pass
    clear_memory_layer()
    return report

"""Dask collections through :class:`PretrainedFeatureExtractor`, and connecting to a cluster.

``transform`` on a ``dask.dataframe.Series`` (or one-column DataFrame), a
``dask.array`` (a stack of images, N×H×W or N×H×W×C, or a 1-D array of
paths / texts) or a ``dask.bag`` (of paths / texts) returns a lazy
``dask.array`` of the embeddings, with known chunks: one block per input
partition, ``n_features_out`` columns, the dtype of ``precision``. Each
block is embedded by :func:`_embed_block`, which receives the fitted
extractor as one key of the task graph (its pickle holds no weights, see
``PretrainedFeatureExtractor.__getstate__``): a worker deserialises it once
and loads the backbone through ``load_backbone``'s per-process memo, so a
worker process loads each backbone once, however many blocks and
``transform`` calls it runs, and the weights never travel through the
scheduler. Retries of a lost block (a worker that died) are Dask's own.

Nothing here imports dask at module level: ``import sktransfer`` does not
import it, and :func:`is_dask_collection` answers False without importing
it (a dask collection exists only once dask is imported).
"""

import importlib
import re
import sys
import threading
import warnings

import numpy as np

# Rows of a dask input that fit validates and learns the width from (also the
# calibration rows of backend int8 quantization, which uses up to 256).
_FIT_SAMPLE = 256

_INSTALL = 'pip install "sktransfer[dask]"'

_OUT_DTYPES = {
    "float32": np.float32, "float16": np.float16, "int8": np.int8, "uint8": np.uint8,
    "binary": np.int8, "ubinary": np.uint8,
}

# One lock per worker process: the threads of a worker load a backbone once.
_load_lock = threading.Lock()


def _require(module):
    """Import ``module`` (dask.array, distributed, ...), or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"Dask support needs {module.split('.')[0]!r} ({exc}). Install it with: {_INSTALL}"
        ) from exc


def is_dask_collection(X):
    """Whether ``X`` is a dask collection (False without importing dask when it isn't loaded)."""
    if "dask" not in sys.modules:
        return False
    from dask import is_dask_collection as _is

    return _is(X)


# ----------------------------------------------------------------- clients
def connect(address, timeout=10):
    """Connect to the Dask scheduler at ``address``, or raise a clear error quickly.

    Parameters
    ----------
    address : str
        The scheduler's address, e.g. ``"tcp://10.0.0.5:8786"`` (what
        ``dask scheduler`` prints).
    timeout : float, default=10
        Seconds to keep trying before giving up.

    Returns
    -------
    client : distributed.Client
        Also the default client: dask collections computed afterwards run
        on that cluster.

    Raises
    ------
    ConnectionError
        No scheduler answered at ``address`` within ``timeout`` seconds.

    Examples
    --------
    >>> from sktransfer._dask import connect
    >>> client = connect("tcp://scheduler:8786")  # doctest: +SKIP
    """
    distributed = _require("distributed")
    try:
        return distributed.Client(address, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise ConnectionError(
            f"No Dask scheduler reachable at {address!r} within {timeout} s ({type(exc).__name__}: {exc}). "
            "Check the address and port (the one `dask scheduler` prints, e.g. 'tcp://10.0.0.5:8786') and "
            "that the scheduler runs and accepts connections from this machine, or run without a scheduler "
            "address to compute in this process."
        ) from None


def local_cluster(n_workers, threads_per_worker=1):
    """A ``LocalCluster`` of ``n_workers`` single-thread worker processes, and a ``Client`` of it.

    What ``sktransfer embed --workers N`` runs on: worker processes (not
    threads: the model is loaded once per process, and PyTorch's threads
    scale worse than processes on CPUs), no dashboard, quiet logs.

    Parameters
    ----------
    n_workers : int
    threads_per_worker : int, default=1

    Returns
    -------
    cluster : distributed.LocalCluster
    client : distributed.Client
        Not made the default client: compute with ``client.compute``.
    """
    import logging

    distributed = _require("distributed")
    cluster = distributed.LocalCluster(
        n_workers=n_workers, threads_per_worker=threads_per_worker, processes=True,
        dashboard_address=":0", silence_logs=logging.ERROR,
    )
    return cluster, distributed.Client(cluster, set_as_default=False)


def warm_workers(client, extractor):
    """Load ``extractor``'s backbone on every current worker of ``client`` (before timing, say).

    Workers load it on their first block anyway (once per process); this
    does it up front, in parallel. A worker that joins later loads it on
    its first block.

    Parameters
    ----------
    client : distributed.Client
    extractor : PretrainedFeatureExtractor
        Fitted.

    Returns
    -------
    loaded : dict
        Worker address → the backbone's weights fingerprint there.
    """
    return client.run(_warm, extractor)


def _warm(ext):
    return _loaded(ext)._get_backbone().fingerprint()


# ------------------------------------------------------------ fit / transform
def fit(ext, X):
    """``ext.fit`` on a dask collection: validates its first rows and learns the width there.

    Only the first partition is computed (up to 256 rows), except with
    ``precision="int8"`` / ``"uint8"``, whose ranges are learned from the
    embeddings of the whole collection (computed on the cluster).
    """
    _check_kind(X)
    ext._fit(_head(X, _FIT_SAMPLE))
    if ext.precision in ("int8", "uint8"):
        da = _require("dask.array")
        Z = transform(ext, X, finished=True)
        lo, hi = _require("dask").compute(da.min(Z, axis=0), da.max(Z, axis=0))
        ext.quantization_ranges_ = np.stack([lo, hi]).astype(np.float32)
    return ext


def fit_transform(ext, X):
    """``fit`` (first rows), then a lazy ``transform`` of the whole collection."""
    return transform(fit(ext, X), X)


def transform(ext, X, finished=False):
    """A lazy ``dask.array`` of ``ext.transform`` over the collection ``X``, with known chunks.

    ``finished=True``: the float32 rows before ``precision`` (the ranges of int8 at fit).
    """
    rows = _row_array(X, ext.modality_)
    width = ext.embedding_dim_ if finished else ext._n_features_out
    dtype = np.float32 if finished else _OUT_DTYPES[ext.precision]
    kw = {"new_axis": 1} if rows.ndim == 1 else {"drop_axis": list(range(2, rows.ndim))}
    return rows.map_blocks(
        _embed_block,
        _extractor_arg(ext),
        finished=finished,
        chunks=(rows.chunks[0], (width,)),
        dtype=dtype,
        meta=np.empty((0, 0), dtype=dtype),
        token="sktransfer-embed",
        **kw,
    )


def _check_kind(X):
    """What ``PretrainedFeatureExtractor`` reads: a dask array, Series, one-column DataFrame or bag."""
    dd = sys.modules.get("dask.dataframe")
    db = sys.modules.get("dask.bag")
    da = sys.modules.get("dask.array")
    if da is not None and isinstance(X, da.Array):
        return "array"
    if db is not None and isinstance(X, db.Bag):
        return "bag"
    if dd is not None and isinstance(X, dd.Series):
        return "series"
    if dd is not None and isinstance(X, dd.DataFrame):
        if len(X.columns) != 1:
            raise ValueError(
                f"X is a dask DataFrame with {len(X.columns)} columns {list(X.columns)[:5]}; pass the one "
                "column to embed, e.g. ddf['description']."
            )
        return "frame"
    raise ValueError(
        f"X is a dask {type(X).__name__}; PretrainedFeatureExtractor reads a dask.array (a stack of images, "
        "or a 1-D array of texts / paths), a dask.dataframe Series or one-column DataFrame, or a dask.bag. "
        "Convert it first (e.g. dask.array.from_delayed, dask.bag.from_delayed)."
    )


def _head(X, n):
    """The first (up to) ``n`` rows of ``X``, computed: the first partition only when it has any."""
    kind = _check_kind(X)
    if kind == "array":
        if not np.isnan(X.shape[0]):
            return X[:n].compute()  # only the blocks that hold these rows
        first = X.blocks[0].compute()  # unknown chunk sizes: the first block
        return first[:n] if len(first) else X.compute()[:n]
    with warnings.catch_warnings():  # "Insufficient elements for head/take": fewer rows is fine
        warnings.simplefilter("ignore", UserWarning)
        if kind == "bag":
            first = list(X.take(n, npartitions=1, warn=False))
            return first or list(X.take(n, npartitions=-1, warn=False))
        first = X.head(n, npartitions=1, compute=True)
        return first if len(first) else X.head(n, npartitions=-1, compute=True)


def _row_array(X, modality):
    """``X`` as a dask array of rows with known chunks along axis 0 (one chunk on every other axis):
    1-D object rows (texts, paths, single images), or a N×H×W[×C] image stack."""
    da = _require("dask.array")
    kind = _check_kind(X)
    if kind == "array":
        rows = X
        if rows.dtype.kind in "OUS":
            if rows.ndim == 2 and rows.shape[1] == 1:
                rows = rows[:, 0]
            elif rows.ndim != 1:
                raise ValueError(f"X is a {rows.ndim}-D dask array of {rows.dtype}; expected one column of rows.")
        elif modality == "text":
            raise ValueError(
                f"Expected text, got a numeric dask array of shape {rows.shape}. This backbone embeds text: "
                "pass a dask Series, bag or 1-D array of strings."
            )
        elif rows.ndim not in (3, 4):
            raise ValueError(
                f"A stacked image array must be N×H×W or N×H×W×C, got a dask array of shape {rows.shape} "
                f"({rows.ndim}-D)."
            )
        if any(np.isnan(c) for c in rows.chunks[0]):
            rows = rows.compute_chunk_sizes()  # known chunks in, known chunks out
        return rows.rechunk({a: -1 for a in range(1, rows.ndim)})
    # Series, one-column DataFrame, bag: partitions → 1-D object arrays, lengths computed (a read, no embedding).
    dask = _require("dask")
    parts = X.to_delayed()
    lengths = dask.compute(*[dask.delayed(_count, pure=True)(p) for p in parts])
    if sum(lengths) == 0:
        raise ValueError("X is empty: at least one row is needed.")
    blocks = [
        da.from_delayed(dask.delayed(_objects, pure=True)(p), shape=(n,), dtype=object, meta=np.empty(0, object))
        for p, n in zip(parts, lengths)
    ]
    return da.concatenate(blocks)


def _count(part):
    return len(part) if hasattr(part, "__len__") else sum(1 for _ in part)


def _objects(part):
    """A partition (pandas Series / one-column DataFrame / bag partition) as a 1-D object array."""
    if hasattr(part, "iloc"):
        if part.ndim == 2:
            part = part.iloc[:, 0]
        return part.to_numpy(dtype=object)
    part = list(part)
    out = np.empty(len(part), dtype=object)
    for i, v in enumerate(part):  # element-wise: a list of equal-shape arrays must not become one stack
        out[i] = v
    return out


def _extractor_arg(ext):
    """The fitted extractor as one key of the graph (a few KB: its pickle holds no weights).

    An extractor built on an ``nn.Module`` pickles the module's weights: with a
    distributed client it is scattered straight to the workers instead (one copy,
    shared worker to worker), so that neither the graph nor the scheduler carries them.
    """
    dask = _require("dask")
    if not isinstance(ext.backbone, str):
        client = _default_client()
        if client is not None:
            return client.scatter(ext, direct=True, hash=False)
    return dask.delayed(ext, pure=True, traverse=False)


def _default_client():
    """The distributed client dask computes on by default, or None (no distributed, no client)."""
    if "distributed" not in sys.modules:
        return None
    from distributed import default_client

    try:
        return default_client()
    except ValueError:
        return None


# ------------------------------------------------------------ on a worker
# glibc's values once its adaptive mmap threshold has settled for large blocks
# (mmap threshold up to 32 MiB, trim threshold twice that).
_MMAP_THRESHOLD = 32 * 2**20
_TRIM_THRESHOLD = 64 * 2**20
_malloc_tuned = False


def _tune_malloc():
    """Give a Dask worker process glibc's adaptive malloc thresholds back (once per process).

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536`` (its
    ``distributed.nanny.pre-spawn-environ``), so that freed memory goes back
    to the OS at once. Setting that variable also switches off glibc's
    adaptive mmap threshold: every block of 128 KiB or more (every
    activation tensor of a forward pass) is then a fresh ``mmap`` whose
    pages fault in one by one, and goes back to the OS when freed. Measured
    on EfficientNet-Lite0 at 224 px: about 16,000 page faults per image
    instead of a few, and twice the CPU time of the same transform in a
    plain process (benchmarks/bench_dask.py; docs/scaling.md). Here the
    thresholds go back to where glibc's own adaptation takes them for large
    blocks: such blocks are reused from the heap, and up to 64 MiB of freed
    memory stays in the process. Nothing is done when the variable is not
    set (glibc adapts by itself), or outside glibc.
    """
    global _malloc_tuned
    if _malloc_tuned:
        return
    _malloc_tuned = True
    import os

    if "MALLOC_TRIM_THRESHOLD_" not in os.environ or not sys.platform.startswith("linux") or not _in_worker():
        return  # (in the client, the variable may be the nanny's copy, which its malloc never read)
    from ._utils import glibc

    libc = glibc()
    if libc is None:  # not glibc (musl): nothing to do
        return
    mallopt = libc.mallopt
    mallopt(-3, _MMAP_THRESHOLD)  # M_MMAP_THRESHOLD
    mallopt(-1, _TRIM_THRESHOLD)  # M_TRIM_THRESHOLD


def _in_worker():
    """Whether this process runs a Dask worker (also inside ``client.run``, where there is no task)."""
    worker = sys.modules.get("distributed.worker")
    return worker is not None and bool(getattr(worker.Worker, "_instances", ()))


def _loaded(ext):
    """A copy of ``ext`` for one block, its backbone loaded once per process (the memo of
    ``load_backbone``, shared by the copies of every block and ``transform`` call)."""
    with _load_lock:
        _tune_malloc()
        if getattr(ext, "_backbone_obj", None) is None:
            if ext.device in (None, "auto") and str(ext.device_).startswith("cuda"):
                import torch

                if not torch.cuda.is_available():  # fitted on a GPU client, run on a CPU worker
                    from ._utils import resolve_device

                    ext.device_ = resolve_device("auto")
            bb = ext._get_backbone()
            if ext.backend != "torch":
                ext._get_runner(bb)
    local = object.__new__(type(ext))  # not copy.copy: __getstate__ would drop the loaded model
    local.__dict__.update(ext.__dict__)
    # No bars from workers. `verbose` replaced `progress` (kept as a deprecated
    # alias): set the new name and unset the old, or both set would be an error.
    if "verbose" in local.__dict__:
        local.verbose = False
        local.progress = "deprecated"
    else:  # an extractor pickled before the rename
        local.progress = False
    return local


_ROW = re.compile(r"\bRow (\d+) of X\b")


def _embed_block(block, ext, finished=False, block_info=None):
    """Embed one block of rows (runs on a worker). Errors name the row in the whole collection."""
    dtype = np.float32 if finished else _OUT_DTYPES[ext.precision]
    width = ext.embedding_dim_ if finished else ext._n_features_out
    if len(block) == 0:
        return np.empty((0, width), dtype=dtype)
    start = block_info[0]["array-location"][0][0] if block_info else 0
    local = _loaded(ext)
    try:
        if finished:
            return local._finish(local._embed(local._check_inputs(block)))
        return np.asarray(local.transform(block))
    except (ValueError, OSError) as exc:
        message = _ROW.sub(lambda m: f"Row {start + int(m.group(1))} of X", str(exc))
        if message == str(exc):
            raise
        try:
            new = type(exc)(message)
        except Exception:  # noqa: BLE001 - an exception type with other arguments: keep it
            raise exc from None
        raise new from None

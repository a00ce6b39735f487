#!/usr/bin/env python
"""Benchmark of the embedding cache's stores (issue 14, part 2).

Arms (``ARMS``), each storing the same checksummed 384-float records:

- ``files``: the previous store, one file per entry under 256 folders
  (``sktransfer._cache._LegacyFiles``, format 2), read one key at a time as
  the extractor did;
- ``segments``: the new ``EmbeddingCache`` (append-only segment per writer
  process, batched ``put_many`` / ``get_many``);
- ``lmdb`` and ``diskcache`` (SQLite): the library stores it was chosen
  against, same records, one transaction per batch.

Per arm and size N: write N rows in batches of 32 (as the extractor does),
count files and bytes on disk, then read ``read_n`` random keys with a warm
page cache (no in-process copies), ``reps`` times. Separately: three writer
processes at once on one directory (overlapping keys), then every key is
read back and compared; and the time a fresh process needs to index the
largest segment store.

Usage::

    .venv/bin/python benchmarks/bench_cache.py               # full run (~5 min on an idle 2-core CPU)
    .venv/bin/python benchmarks/bench_cache.py --quick       # smoke run, writes nothing
    .venv/bin/python benchmarks/bench_cache.py --report-only # rebuild the section from the record

Record: ``benchmarks/results/cache/results.json``; prose: ``sections/cache_notes.md``.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

import _harness as H  # noqa: E402

RECORD = H.RESULTS / "cache" / "results.json"
DIM = 384
BATCH = 32
NS = hashlib.sha256(b"bench-cache").hexdigest()
CONFIGS = {
    "full": dict(sizes={"segments": [100_000, 1_000_000], "files": [100_000], "lmdb": [100_000],
                        "diskcache": [100_000]},
                 read_n=100_000, reps=5, writers=3,
                 writer_rows={"segments": 100_000, "files": 20_000}, writer_overlap=0.5),
    "quick": dict(sizes={"segments": [2_000], "files": [2_000], "lmdb": [2_000], "diskcache": [2_000]},
                  read_n=1_000, reps=1, writers=3, writer_rows={"segments": 2_000, "files": 1_000}, writer_overlap=0.5),
}
TARGETS = dict(n=1_000_000, max_files=1_000, max_overhead=1.3, read_speedup=10.0)
log = H.log


# --------------------------------------------------------------------- data
def keys_for(start, stop):
    from sktransfer._cache import entry_key

    return [entry_key(NS, str(i)) for i in range(start, stop)]


def rows_for(start, stop):
    """Rows ``start..stop`` of a deterministic data set (chunks of 1,000 seeded by their index)."""
    out = np.empty((stop - start, DIM), np.float32)
    for c in range(start // 1000, (stop - 1) // 1000 + 1):
        chunk = np.random.RandomState(c).standard_normal((1000, DIM)).astype(np.float32)
        lo, hi = max(start, c * 1000), min(stop, (c + 1) * 1000)
        out[lo - start : hi - start] = chunk[lo - c * 1000 : hi - c * 1000]
    return out


# --------------------------------------------------------------------- arms
class Files:
    """The previous store: one file per entry, read one key at a time."""

    def __init__(self, d):
        from sktransfer._cache import _LegacyFiles

        self.s = _LegacyFiles(d)

    def write(self, keys, vecs):
        for k, v in zip(keys, vecs):
            self.s.put(k, v)

    def read(self, keys, dim):
        return sum(self.s.get(k, dim)[0] is not None for k in keys)


class Segments:
    """The new store, batched reads and writes."""

    def __init__(self, d):
        from sktransfer._cache import EmbeddingCache

        self.s = EmbeddingCache(d, namespace=NS)

    def write(self, keys, vecs):
        self.s.put_many(keys, vecs)

    def read(self, keys, dim):
        return int(self.s.get_many(keys, dim)[1].sum())


def records(keys, vecs):
    """The new store's checksummed records, built the same (vectorised) way for the library stores."""
    from sktransfer._cache import _records

    raw = bytes.fromhex("".join(keys))
    return raw, _records(raw, np.asarray(vecs))


def record_size(dim):
    from sktransfer._cache import _record_size

    return _record_size(dim)


def verified(rec, raw, dim):
    """Rows of ``rec`` that pass the store's checks, decoded as the new store does."""
    from sktransfer._cache import _SUM, _REC_HEAD, _verify

    ok = _verify(rec, raw, dim)
    out = np.empty((len(rec), dim), np.float32)
    out[ok] = rec[ok, _REC_HEAD.size : rec.shape[1] - _SUM].view("<f4")
    return int(ok.sum())


class Lmdb:
    """LMDB, the same checksummed records, one write transaction per batch."""

    def __init__(self, d):
        import lmdb

        self.env = lmdb.open(d, map_size=1 << 38, subdir=True, readahead=False)

    def write(self, keys, vecs):
        raw, rec = records(keys, vecs)
        with self.env.begin(write=True) as txn:
            for i, r in enumerate(rec):
                txn.put(raw[32 * i : 32 * i + 32], r.tobytes())

    def read(self, keys, dim):
        raw = bytes.fromhex("".join(keys))
        rec = np.zeros((len(keys), record_size(dim)), np.uint8)
        with self.env.begin(buffers=True) as txn:
            for i in range(len(keys)):
                buf = txn.get(raw[32 * i : 32 * i + 32])
                if buf is not None and len(buf) == rec.shape[1]:
                    rec[i] = np.frombuffer(buf, np.uint8)
        return verified(rec, raw, dim)


class Diskcache:
    """SQLite through diskcache, the same records, one transaction per batch."""

    def __init__(self, d):
        import diskcache

        self.c = diskcache.Cache(d, size_limit=1 << 40, eviction_policy="none")

    def write(self, keys, vecs):
        raw, rec = records(keys, vecs)
        with self.c.transact():
            for i, r in enumerate(rec):
                self.c.set(raw[32 * i : 32 * i + 32], r.tobytes())

    def read(self, keys, dim):
        raw = bytes.fromhex("".join(keys))
        rec = np.zeros((len(keys), record_size(dim)), np.uint8)
        for i in range(len(keys)):
            buf = self.c.get(raw[32 * i : 32 * i + 32])
            if buf is not None and len(buf) == rec.shape[1]:
                rec[i] = np.frombuffer(buf, np.uint8)
        return verified(rec, raw, dim)


ARMS = {"files": Files, "segments": Segments, "lmdb": Lmdb, "diskcache": Diskcache}
LABELS = {
    "files": "previous: one file per entry (`get` per key)",
    "segments": "new: `EmbeddingCache` segments (`get_many`)",
    "lmdb": "LMDB (reference)",
    "diskcache": "diskcache / SQLite (reference)",
}


# ---------------------------------------------------------------- measuring
def disk_usage(d):
    """``(files, apparent bytes, allocated bytes)`` under ``d``."""
    n = size = alloc = 0
    for root, _, files in os.walk(d):
        for f in files:
            st = os.stat(os.path.join(root, f))
            n, size, alloc = n + 1, size + st.st_size, alloc + st.st_blocks * 512
    return n, size, alloc


def drop_copies():
    """Forget the in-process copies of rows (``clear_memory_layer`` would drop the segment index too)."""
    from sktransfer import _cache

    with _cache._memory_lock:
        _cache._memory.clear()
        _cache._memory_bytes = 0


def build_arm(arm, n, cfg, root):
    """Write ``n`` rows into a new store of ``arm``; its sizes, and what the timed reads need."""
    from sktransfer import _cache

    d = os.path.join(root, f"{arm}-{n}")
    os.makedirs(d)
    store = ARMS[arm](d)
    t = time.perf_counter()
    for s in range(0, n, 10_000):
        keys, vecs = keys_for(s, min(n, s + 10_000)), rows_for(s, min(n, s + 10_000))
        for b in range(0, len(keys), BATCH):
            store.write(keys[b : b + BATCH], vecs[b : b + BATCH])
    write_s = time.perf_counter() - t
    _cache.close_writers()
    files, size, alloc = disk_usage(d)
    read_n = min(cfg["read_n"], n)
    idx = np.random.RandomState(1).choice(n, read_n, replace=False)  # random keys, in random order
    keys = [_cache.entry_key(NS, str(i)) for i in idx]
    index_s = None
    if arm == "segments":  # a fresh process: the index of every segment is read first
        _cache.clear_memory_layer()
        t = time.perf_counter()
        store.read(keys[:1], DIM)
        index_s = time.perf_counter() - t
    drop_copies()
    assert store.read(keys, DIM) == read_n, f"{arm}: rows missing after the write"  # warms the page cache
    raw = n * DIM * 4
    r = {"arm": arm, "n": n, "write_s": write_s, "write_rows_s": n / write_s, "files": files, "bytes": size,
         "allocated": alloc, "raw": raw, "overhead": size / raw, "alloc_overhead": alloc / raw, "read_n": read_n,
         "index_s": index_s}
    log(f"  {arm:10s} N={n:>9,}: write {n / write_s:>9,.0f} rows/s, {files:>7,} files, {size / 2**20:,.0f} MiB "
        f"({size / raw:.2f}x raw, {alloc / raw:.2f}x allocated)" + (f", index load {index_s:.2f} s" if index_s is not None else ""))
    return r, store, keys


def timed_reads(built, cfg):
    """Warm reads of every store, interleaved (``_harness.alternate``): bursts of load hit all arms alike."""
    def reader(store, keys):
        def read():
            drop_copies()
            assert store.read(keys, DIM) == len(keys)
        return read

    arms = {f"{r['arm']}-{r['n']}": reader(store, keys) for r, store, keys in built}
    times = H.alternate(arms, cfg["reps"], log=log)
    for r, _, _ in built:
        r["read_s"] = times[f"{r['arm']}-{r['n']}"]
        r["read_rows_s"] = r["read_n"] / float(np.median(r["read_s"]))
        log(f"  {r['arm']:10s} N={r['n']:>9,}: read {r['read_n']:,} warm: {np.median(r['read_s']):.2f} s "
            f"({r['read_rows_s']:,.0f} rows/s)")


def child_writer(spec):
    """One of the concurrent writers: says it is ready, waits for the common start, then writes its range."""
    store = ARMS[spec["arm"]](spec["dir"])
    keys, vecs = keys_for(spec["start"], spec["stop"]), rows_for(spec["start"], spec["stop"])
    Path(spec["go"] + f".ready-{spec['start']}").touch()
    while not os.path.exists(spec["go"]):
        time.sleep(0.005)
    t0 = time.time()
    for b in range(0, len(keys), BATCH):
        store.write(keys[b : b + BATCH], vecs[b : b + BATCH])
    return {"t0": t0, "t1": time.time()}


def measure_writers(arm, cfg, root):
    from sktransfer import _cache

    d = os.path.join(root, f"writers-{arm}")
    os.makedirs(d)
    rows = cfg["writer_rows"][arm]
    step = int(rows * (1 - cfg["writer_overlap"]))  # each writer shares half its keys with the next
    ranges = [(w * step, w * step + rows) for w in range(cfg["writers"])]
    go = os.path.join(root, f"go-{arm}")  # created once every child has imported and holds its rows

    def starter():
        while len(glob.glob(go + ".ready-*")) < len(ranges):
            time.sleep(0.005)
        Path(go).touch()

    specs = [{"kind": "writer", "label": f"{arm} writer {w}", "arm": arm, "dir": d, "start": a, "stop": b,
              "go": go, "threads": 1} for w, (a, b) in enumerate(ranges)]
    threading.Thread(target=starter, daemon=True).start()
    res = H.run_children(Path(__file__), specs, jobs=len(specs))
    start_at = min(r["t0"] for r in res)
    n = ranges[-1][1]
    store = ARMS[arm](d)
    drop_copies()
    found, lost, wrong = 0, 0, 0
    for s in range(0, n, 10_000):
        keys, ref = keys_for(s, min(n, s + 10_000)), rows_for(s, min(n, s + 10_000))
        if arm == "segments":
            vecs, ok = store.s.get_many(keys, DIM)
        else:
            got = [store.s.get(k, DIM)[0] for k in keys]
            ok = np.array([g is not None for g in got])
            vecs = np.stack([g if g is not None else np.zeros(DIM, np.float32) for g in got])
        found += int(ok.sum())
        lost += int((~ok).sum())
        wrong += int((np.abs(vecs[ok] - ref[ok]).max(axis=1) > 0).sum()) if ok.any() else 0
    overlap_s = min(r["t1"] for r in res) - max(r["t0"] for r in res)
    files = disk_usage(d)[0]
    _cache.close_writers()
    shutil.rmtree(d, ignore_errors=True)
    r = {"arm": arm, "writers": len(specs), "rows_each": rows, "distinct": n, "found": found, "lost": lost,
         "wrong": wrong, "overlap_s": overlap_s, "spans": [(x["t0"] - start_at, x["t1"] - start_at) for x in res],
         "files": files}
    log(f"  {arm}: {len(specs)} writers x {rows:,} rows ({n:,} distinct): found {found:,}, lost {lost}, "
        f"wrong {wrong}; all three writing at once for {overlap_s:.1f} s")
    return r


def measure(cfg, args):
    root = tempfile.mkdtemp(prefix="sktransfer-bench-cache-", dir=args.tmp)
    res = {"sizes": [], "writers": []}
    try:
        built = [build_arm(arm, n, cfg, root) for arm, sizes in cfg["sizes"].items()
                 if arm not in args.skip.split(",") for n in sizes]
        timed_reads(built, cfg)
        res["sizes"] = [r for r, _, _ in built]
        del built
        for arm in ("segments", "files"):
            res["writers"].append(measure_writers(arm, cfg, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return res


# ------------------------------------------------------------------ report
def report(res, run, cfg, out=None):
    rows = []
    for r in res["sizes"]:
        rows.append([LABELS[r["arm"]], f"{r['n']:,}", f"{r['write_rows_s']:,.0f}", f"{r['files']:,}",
                     f"{r['bytes'] / 2**20:,.0f}", f"{r['overhead']:.2f}x", f"{r['alloc_overhead']:.2f}x",
                     f"{r['read_n']:,}", f"{np.median(r['read_s']):.2f}", f"{r['read_rows_s']:,.0f}"])
    size_table = H.md_table(["store", "rows", "write rows/s", "files", "MiB", "bytes / raw", "allocated / raw",
                             "rows read", "read s (median)", "read rows/s"], rows, "lrrrrrrrrr")
    by = {(r["arm"], r["n"]): r for r in res["sizes"]}
    seg = max((r for r in res["sizes"] if r["arm"] == "segments"), key=lambda r: r["n"])
    files = max((r for r in res["sizes"] if r["arm"] == "files"), key=lambda r: r["n"])
    same_n = by.get(("segments", files["n"]))
    # Paired: the r-th reads of both arms ran back to back (same load); the median of the per-rep ratios.
    ratios = (np.array(files["read_s"]) / np.array(same_n["read_s"])).tolist() if same_n else []
    speedup = float(np.median(ratios)) if same_n else None
    # Extrapolations to the target size, stated as such.
    per_row_files = files["bytes"] / files["n"]
    per_row_alloc = files["allocated"] / files["n"]
    n_t = TARGETS["n"]
    measured_t = seg["n"] >= n_t
    seg_files = seg["files"]
    seg_over = seg["overhead"]
    wr = {w["arm"]: w for w in res["writers"]}
    summary = H.md_table(["target (issue 14)", "measured", "met?"], [
        [f"{n_t:,} rows of {DIM} floats in at most {TARGETS['max_files']:,} files",
         f"{seg_files} files at {seg['n']:,} rows" + ("" if measured_t else " (measured below the target size)"),
         "met" if seg_files <= TARGETS["max_files"] and measured_t else "**not measured at 10^6**"],
        [f"at most {TARGETS['max_overhead']}x the raw bytes", f"{seg_over:.3f}x ({seg['bytes'] / 2**20:,.0f} MiB for "
         f"{seg['raw'] / 2**20:,.0f} MiB raw; allocated {seg['alloc_overhead']:.3f}x)",
         "met" if seg_over <= TARGETS["max_overhead"] else "**missed**"],
        [f"reading {files['read_n']:,} warm entries >= {TARGETS['read_speedup']:.0f}x faster than the per-file cache",
         f"{speedup:.1f}x, median of {len(ratios)} paired repetitions ({min(ratios):.1f}x to {max(ratios):.1f}x); "
         f"median times {np.median(same_n['read_s']):.2f} s vs {np.median(files['read_s']):.2f} s, same N = {files['n']:,}"
         if speedup else "–", "met" if speedup and speedup >= TARGETS["read_speedup"] else "**missed**"],
        [f"{wr['segments']['writers']} writer processes at once lose nothing",
         f"{wr['segments']['found']:,} of {wr['segments']['distinct']:,} rows read back, {wr['segments']['lost']} lost, "
         f"{wr['segments']['wrong']} wrong", "met" if wr["segments"]["lost"] == 0 and wr["segments"]["wrong"] == 0 else "**missed**"],
    ], "llr")
    extrap = (f"The previous store at {n_t:,} rows, extrapolated from {files['n']:,} (per-row figures are constant in N "
              f"for one file per row): {n_t:,} files plus 256 folders, {per_row_files * n_t / 2**30:.1f} GiB apparent, "
              f"{per_row_alloc * n_t / 2**30:.1f} GiB allocated ({per_row_alloc / (DIM * 4):.2f}x the raw bytes), "
              f"and about {n_t / files['write_rows_s'] / 60:.0f} min to write at the measured rate.")
    wrows = [[w["arm"], w["writers"], f"{w['rows_each']:,}", f"{w['distinct']:,}", f"{w['found']:,}", w["lost"], w["wrong"],
              f"{w['overlap_s']:.1f}", f"{w['files']:,}"] for w in res["writers"]]
    writer_table = H.md_table(["store", "writers", "rows each", "distinct rows", "read back", "lost", "wrong",
                               "s all writing", "files"], wrows, "lrrrrrrrr")
    def versus(arm):
        r = by.get((arm, files["n"]))
        if r is None or same_n is None:
            return {f"{arm}_overhead": "–", f"{arm}_read": "–"}
        return {f"{arm}_overhead": f"{r['overhead']:.2f}x",
                f"{arm}_read": f"{np.median(np.array(r['read_s']) / np.array(same_n['read_s'])):.2f}x"}

    blocks = {**versus("lmdb"), **versus("diskcache"), "header": H.header(run), "summary": summary, "size_table": size_table, "extrapolation": extrap,
              "writer_table": writer_table, "index_s": f"{seg['index_s']:.2f}", "index_n": f"{seg['n']:,}",
              "batch": BATCH, "dim": DIM, "reps": cfg["reps"]}
    H.write_section("cache", blocks, out)


def main(argv=None):
    p = H.parser(__doc__)
    p.add_argument("--record", default=str(RECORD), help="JSON record to write (full run) or read (--report-only)")
    p.add_argument("--tmp", default=None, help="directory for the stores (default: the system's temporary directory)")
    p.add_argument("--skip", default="", help="comma-separated arms to leave out (e.g. diskcache,lmdb)")
    args = p.parse_args(argv)
    if args._child:
        return H.child_main(args._child, {"writer": child_writer})
    cfg, res, run = H.run_or_load(args, CONFIGS, measure, args.record, ["lmdb", "diskcache", "numpy"])
    if res is not None:
        report(res, run, cfg)


if __name__ == "__main__":
    sys.exit(main())

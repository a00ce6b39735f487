#!/usr/bin/env python
"""``sktransfer embed`` on a Parquet column: peak memory against N, and resume after ``kill -9`` (issue 14).

Input: one Parquet file per size N with a column ``text`` of N distinct short
texts, the Rotten Tomatoes critic snippets (``sktransfer.datasets.load_rotten_tomatoes``,
12,752 snippets, median 108 characters) cycled, each row with its row number
appended (``"<snippet> #<row>"``), so that no two rows share a cache entry;
row groups of ``row_group`` rows whatever N.

Each run is the command a user types, in a fresh process
(``python -m sktransfer.cli embed IN OUT --column text --cache-dir DIR
--quiet``, default backbone ``sentence-transformers/all-MiniLM-L6-v2``,
default ``--chunk-size`` and ``--batch-size``), ``OMP_NUM_THREADS`` and
torch's threads set to ``--threads``, one run at a time, a fresh cache
directory per size. Measured from this process:

- peak RSS of the CLI process: its VmHWM (the kernel's high-water mark since
  the ``exec``: nothing between two samples is missed), read every ``poll``
  seconds, and the largest VmRSS sampled. Not ``ru_maxrss`` from
  ``os.wait4`` (also recorded): Linux starts a child's ``ru_maxrss`` at the
  high-water mark of the address space it had before ``exec``, which with
  ``vfork`` is this (parent) process's, so a child forked after this process
  read a large output reports the parent's peak (seen: 1,365 MiB for two
  10,000-row runs whose sampled RSS stayed under 1,290 MiB);
- the RSS curve: VmRSS and the rows in the cache (the cache's index files,
  64 bytes per row) every ``poll`` seconds, from which the RSS growth per row
  *within* a run is fitted over its second half (steady state);
- wall time, rows per second, and the closing line's counts
  (``N computed, M from the cache``); the output is read back (rows, ids).

Resume test (``resume_n`` rows, fresh cache): the same command is started,
killed with SIGKILL once ``kill_at`` of the rows are in the cache, and
started again unchanged. Rows recomputed = rows the second run computed
minus the rows that were not in the cache when the first died (those in
flight are lost, and computed once). The output of the resumed run is
compared with the uninterrupted run of the same input (the size series'
run of the same N: ids equal, max abs difference of the embeddings).

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_cli.py                 # full run: N = 10k, 30k, 100k + resume at 100k
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_cli.py --sizes 2000 6000 20000 --resume-n 20000
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_cli.py --quick         # smoke run (~1 min), writes nothing
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_cli.py --report-only   # section from the record

Record: ``benchmarks/results/cli/results.json``; section: ``sections/cli.md``
from ``sections/cli_notes.md``.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

import _common as C  # noqa: E402
import _harness as H  # noqa: E402

NAME = "cli"
RECORD = H.RESULTS / NAME / "results.json"
DIM = 384  # MiniLM's embedding: 1,536 bytes of float32 per row
CONFIGS = {
    "full": dict(sizes=[10_000, 30_000, 100_000], resume_n=100_000, kill_at=0.5, row_group=10_000, poll=0.25),
    "quick": dict(sizes=[300, 900], resume_n=900, kill_at=0.5, row_group=200, poll=0.1),
}
# Flat in N: peak RSS grows per row by less than this share of one output row (DIM float32), fitted over N.
TARGET_SHARE = 0.10
log = H.log
_WROTE = re.compile(r"wrote ([\d,]+) rows to .*?: ([\d,]+) embedded \(([\d,]+) computed, ([\d,]+) from the cache\)")


# --------------------------------------------------------------------- data
def build_input(n, path, row_group):
    """``path``: a Parquet file of ``n`` distinct short texts (Rotten Tomatoes snippets, cycled, row number appended)."""
    import pandas as pd

    from sktransfer.datasets import load_rotten_tomatoes

    snippets, _ = load_rotten_tomatoes(return_X_y=True)
    texts = [f"{snippets[i % len(snippets)]} #{i}" for i in range(n)]
    pd.DataFrame({"text": texts}).to_parquet(path, row_group_size=row_group, index=False)
    return {"snippets": len(snippets), "median_chars": float(np.median([len(t) for t in texts])),
            "bytes": os.path.getsize(path)}


def cached_rows(cache):
    """Rows in the cache directory: its index records (64 bytes each), duplicates included."""
    return sum(os.path.getsize(p) // 64 for p in glob.glob(os.path.join(cache, "**", "*.idx"), recursive=True))


def vm_rss(pid):
    """``(VmRSS, VmHWM)`` of process ``pid`` in bytes (None, None once it is gone)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line[:5]] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return out.get("VmRSS"), out.get("VmHWM")


# ------------------------------------------------------------------ a run
def run_cli(src, out, cache, cfg, threads, kill_at_rows=None, label=""):
    """One ``sktransfer embed`` process: its peak RSS, wall time, RSS curve and closing counts."""
    cmd = [sys.executable, "-m", "sktransfer.cli", "embed", str(src), str(out), "--column", "text",
           "--cache-dir", str(cache), "--quiet"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    logs = Path(str(out) + f".{label or 'run'}.log")
    samples, killed, hwm = [], False, 0
    with open(logs, "w") as fh:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            (rss, high), rows = vm_rss(proc.pid), cached_rows(cache)
            if rss is not None:
                samples.append((time.perf_counter() - t0, rss, rows))
                hwm = max(hwm, high or 0)
            if kill_at_rows is not None and not killed and rows >= kill_at_rows:
                os.kill(proc.pid, signal.SIGKILL)
                killed = True
            time.sleep(cfg["poll"])
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = logs.read_text()
    m = _WROTE.search(text)
    counts = None if m is None else {k: int(v.replace(",", "")) for k, v in
                                     zip(("rows", "embedded", "computed", "from_cache"), m.groups())}
    if not killed and (proc.returncode != 0 or counts is None):
        raise RuntimeError(f"{label}: sktransfer embed failed (rc {proc.returncode}):\n{text[-3000:]}")
    peak = max([hwm] + [v for _, v, _ in samples])
    return {"wall_s": wall, "rc": proc.returncode, "killed": killed, "peak_rss": peak, "vm_hwm": hwm,
            "ru_maxrss": usage.ru_maxrss * 1024,
            "user_s": usage.ru_utime, "sys_s": usage.ru_stime, "samples": samples, "counts": counts,
            "log_tail": text[-600:]}


def steady_slope(samples, n):
    """Bytes of RSS per row in the cache, fitted over the samples past half the rows (steady state)."""
    pts = np.array([(rows, rss) for _, rss, rows in samples if rows >= n / 2], float)
    if len(pts) < 4 or np.ptp(pts[:, 0]) == 0:
        return None
    return float(np.polyfit(pts[:, 0], pts[:, 1], 1)[0])


def rss_at(samples, rows):
    """RSS of the first sample with at least ``rows`` rows in the cache (None if none)."""
    for _, rss, r in samples:
        if r >= rows:
            return rss
    return None


def read_output(path):
    import pandas as pd

    df = pd.read_parquet(path)
    return df["row"].to_numpy(), np.stack(df["embedding"].to_numpy())


# ------------------------------------------------------------------ measure
def measure(cfg, args):
    root = Path(tempfile.mkdtemp(prefix="sktransfer-bench-cli-", dir=args.tmp))
    res = {"sizes": [], "resume": None}
    outputs = {}
    try:
        for n in sorted(set(cfg["sizes"]) | ({cfg["resume_n"]} if cfg["resume_n"] else set())):
            src = root / f"in-{n}.parquet"
            info = build_input(n, src, cfg["row_group"])
            res.setdefault("inputs", {})[str(n)] = info
        for n in cfg["sizes"]:
            src, out, cache = root / f"in-{n}.parquet", root / f"out-{n}.parquet", root / f"cache-{n}"
            log(f"N = {n:,}: embedding ...")
            r = run_cli(src, out, cache, cfg, args.threads, label=f"n{n}")
            ids, Z = read_output(out)
            assert len(ids) == n and (ids == np.arange(n)).all() and Z.shape == (n, DIM), "output rows"
            assert r["counts"]["computed"] == n, r["counts"]
            r.update(n=n, rows_s=n / r["wall_s"], slope=steady_slope(r["samples"], n),
                     rss_first_rows=rss_at(r["samples"], 1), cache_files=len(os.listdir(cache)) if cache.exists() else 0)
            log(f"  {r['wall_s']:.0f} s ({r['rows_s']:.0f} rows/s), peak RSS {C.mib(r['peak_rss']):.0f} MiB, "
                f"RSS after the first rows {C.mib(r['rss_first_rows'] or 0):.0f} MiB, steady growth "
                f"{(r['slope'] or 0):+.0f} B/row; CPU {r['user_s'] + r['sys_s']:.0f} s")
            res["sizes"].append(r)
            outputs[n] = out
            if not args.quick:  # what is measured so far survives a run stopped before its end
                H.write_json(str(args.record) + ".partial", res)
            shutil.rmtree(cache, ignore_errors=True)
        if cfg["resume_n"]:
            res["resume"] = measure_resume(cfg, args, root, outputs)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return res


def measure_resume(cfg, args, root, outputs):
    from sktransfer import _cache

    n = cfg["resume_n"]
    src, out, cache = root / f"in-{n}.parquet", root / f"resume-{n}.parquet", root / f"resume-cache-{n}"
    if n not in outputs:  # the uninterrupted reference
        log(f"resume: reference run of N = {n:,} ...")
        run_cli(src, root / f"ref-{n}.parquet", root / f"ref-cache-{n}", cfg, args.threads, label="ref")
        shutil.rmtree(root / f"ref-cache-{n}", ignore_errors=True)
        outputs[n] = root / f"ref-{n}.parquet"
    kill_rows = int(cfg["kill_at"] * n)
    log(f"resume: N = {n:,}, kill -9 once {kill_rows:,} rows are in the cache ...")
    first = run_cli(src, out, cache, cfg, args.threads, kill_at_rows=kill_rows, label="killed")
    assert first["killed"] and first["rc"] == -signal.SIGKILL, f"the first run was not killed: rc {first['rc']}"
    in_cache = int(_cache.cache_info(str(cache))["entries"])
    index_rows = cached_rows(cache)
    left = sorted(os.path.basename(p) for p in glob.glob(str(out) + "*") if not p.endswith(".log"))
    log(f"  killed after {first['wall_s']:.0f} s: {in_cache:,} rows in the cache ({index_rows:,} index records); "
        f"left beside OUTPUT: {left or 'nothing'}")
    second = run_cli(src, out, cache, cfg, args.threads, label="resumed")
    c = second["counts"]
    recomputed = c["computed"] - (n - in_cache)
    ids, Z = read_output(out)
    ids_ref, Z_ref = read_output(outputs[n])
    diff = float(np.abs(Z - Z_ref).max())
    r = {"n": n, "kill_rows": kill_rows, "first": first, "second": second, "in_cache_at_kill": in_cache,
         "index_rows_at_kill": index_rows, "left_after_kill": left, "recomputed": recomputed,
         "ids_equal": bool(len(ids) == len(ids_ref) and (ids == ids_ref).all()), "max_abs_diff": diff,
         "left_after_resume": sorted(os.path.basename(p) for p in glob.glob(str(out) + "*")
                                     if not p.endswith(".log") and os.path.basename(p) != out.name)}
    log(f"  resumed in {second['wall_s']:.0f} s: {c['computed']:,} computed, {c['from_cache']:,} from the cache; "
        f"{n - in_cache:,} were not in the cache: {recomputed:,} recomputed; output vs uninterrupted run: ids "
        f"{'equal' if r['ids_equal'] else 'DIFFER'}, max abs diff {diff:.1e}; peak RSS {C.mib(second['peak_rss']):.0f} MiB")
    return r


# ------------------------------------------------------------------ report
def peak_of(r):
    """The run's peak RSS: VmHWM when recorded; in records from before it, ``ru_maxrss`` when the
    sampled RSS confirms it (within 16 MiB), else the largest sampled RSS (see the module's note)."""
    if r.get("vm_hwm"):
        return r["peak_rss"]
    sampled = max(v for _, v, _ in r["samples"])
    return r["peak_rss"] if r["peak_rss"] - sampled <= 16 * 2**20 else sampled


def report(res, run, cfg, write=True):
    runs = res["sizes"]
    for r in runs + ([res["resume"]["first"], res["resume"]["second"]] if res.get("resume") else []):
        r["peak_rss"] = peak_of(r)
    ns = np.array([r["n"] for r in runs], float)
    peaks = np.array([r["peak_rss"] for r in runs], float)
    slope = float(np.polyfit(ns, peaks, 1)[0]) if len(runs) > 1 else float("nan")
    row_bytes = DIM * 4
    flat = slope <= TARGET_SHARE * row_bytes
    rows = [[f"{r['n']:,}", f"{r['wall_s']:.0f}", f"{r['rows_s']:.0f}", f"{r['user_s'] + r['sys_s']:.0f}",
             f"{C.mib(r['peak_rss']):.0f}", f"{C.mib(r['rss_first_rows']):.0f}" if r["rss_first_rows"] else "–",
             f"{r['slope']:+.0f}" if r["slope"] is not None else "–", f"{r['counts']['computed']:,}"] for r in runs]
    table = H.md_table(["N rows", "wall (s)", "rows/s", "CPU (s)", "peak RSS (MiB)", "RSS after the first chunk (MiB)",
                        "RSS growth in the second half (bytes/row)", "computed"], rows, "rrrrrrrr")
    rz = res["resume"]
    sizes = ", ".join(f"{r['n']:,}" for r in runs)
    summary_rows = [[f"memory flat in N (N = {sizes})",
                     f"peak RSS {C.mib(peaks.min()):.0f} to {C.mib(peaks.max()):.0f} MiB; fitted slope {slope:+.1f} bytes/row",
                     f"<= {TARGET_SHARE:.0%} of an output row ({row_bytes:,} bytes)", "met" if flat else "**missed**"]]
    if rz:
        ok = rz["recomputed"] <= 0 and rz["ids_equal"] and rz["max_abs_diff"] <= 1e-5
        summary_rows.append([
            f"resumes after kill -9 without recomputing (N = {rz['n']:,})",
            f"{rz['in_cache_at_kill']:,} rows in the cache at the kill; the rerun computed "
            f"{rz['second']['counts']['computed']:,} (the {rz['n'] - rz['in_cache_at_kill']:,} missing: "
            f"{rz['recomputed']:,} recomputed) and read {rz['second']['counts']['from_cache']:,}; output "
            f"{'equal to' if rz['ids_equal'] else 'different from'} the uninterrupted run's (max abs diff {rz['max_abs_diff']:.1e})",
            "0 recomputed, same output", "met" if ok else "**missed**"])
    summary = H.md_table(["Target (issue 14)", "Measured", "Target value", "Result"], summary_rows, "llll")
    resume_table = "–"
    if rz:
        f, s = rz["first"], rz["second"]
        resume_table = H.md_table(
            ["Run", "wall (s)", "peak RSS (MiB)", "computed", "from the cache", "rows in the cache after it"], [
                ["1: killed (SIGKILL)", f"{f['wall_s']:.0f}", f"{C.mib(f['peak_rss']):.0f}", "–", "–",
                 f"{rz['in_cache_at_kill']:,}"],
                ["2: the same command again", f"{s['wall_s']:.0f}", f"{C.mib(s['peak_rss']):.0f}",
                 f"{s['counts']['computed']:,}", f"{s['counts']['from_cache']:,}", f"{rz['n']:,}"],
            ], "lrrrrr")
    big = max(runs, key=lambda r: r["n"])
    tenths = []
    for d in range(10):  # sampled RSS per tenth of the largest run: a trend, or a level reached early
        lo, hi = d * big["n"] / 10, (d + 1) * big["n"] / 10
        rss = [v for _, v, rows in big["samples"] if lo <= rows < hi and 0 < rows]
        tenths.append([f"{int(lo):,}-{int(hi):,}", len(rss), f"{C.mib(np.median(rss)):.0f}" if rss else "–",
                       f"{C.mib(max(rss)):.0f}" if rss else "–"])
    tenths_table = H.md_table([f"rows in the cache (N = {big['n']:,})", "samples", "median RSS (MiB)", "max RSS (MiB)"],
                              tenths, "lrrr")
    inp = next(iter(res["inputs"].values()))
    blocks = {
        "header": H.header(run), "summary": summary, "table": table, "resume_table": resume_table,
        "tenths_table": tenths_table, "big_n": f"{big['n']:,}",
        "sizes": ", ".join(f"{r['n']:,}" for r in runs), "row_group": f"{cfg['row_group']:,}",
        "median_chars": f"{inp['median_chars']:.0f}", "snippets": f"{inp['snippets']:,}",
        "slope": f"{slope:+.1f}", "threads": run["info"].get("threads_set"),
        "resume_n": f"{rz['n']:,}" if rz else "–", "kill_at": f"{cfg['kill_at']:.0%}",
        "left_after_kill": ", ".join(f"`{x}`" for x in rz["left_after_kill"]) if rz and rz["left_after_kill"] else "nothing",
        "left_after_resume": ", ".join(f"`{x}`" for x in rz["left_after_resume"]) if rz and rz["left_after_resume"] else "nothing",
        "rows_s": f"{np.median([r['rows_s'] for r in runs]):.0f}",
    }
    if write and (H.SECTIONS / f"{NAME}_notes.md").exists():
        H.write_section(NAME, blocks)
    else:
        log("\n" + summary + "\n\n" + table + "\n\n" + resume_table)


def main(argv=None):
    p = H.parser(__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="rows per run (default 10000 30000 100000)")
    p.add_argument("--resume-n", type=int, default=None, help="rows of the resume test (default 100000; 0: none)")
    p.add_argument("--tmp", default=None, help="directory for inputs, outputs and caches (default: the system's)")
    p.add_argument("--record", default=str(RECORD), help="JSON record to write (full run) or read (--report-only)")
    args = p.parse_args(argv)
    configs = {k: dict(v) for k, v in CONFIGS.items()}
    for cfg in configs.values():
        if args.sizes:
            cfg["sizes"] = sorted(args.sizes)
        if args.resume_n is not None:
            cfg["resume_n"] = args.resume_n
    if args.report_only:
        cfg, res, run = H.load_record(args.record)
    else:
        cfg = configs["quick" if args.quick else "full"]
        run = H.start_run(args.threads, limit=False)  # the CLI processes get the threads through the environment
        res = measure(cfg, args)
        run = H.finish_run(run)
        if not args.quick:
            for r in res["sizes"] + ([res["resume"]["first"], res["resume"]["second"]] if res["resume"] else []):
                r["samples"] = r["samples"][:: max(1, len(r["samples"]) // 400)]  # keep the record small
            H.write_json(args.record, {"cfg": cfg, "res": res, "run": run})
            log(f"wrote {args.record}")
    report(res, run, cfg, write=not args.quick)


if __name__ == "__main__":
    sys.exit(main())

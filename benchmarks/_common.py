"""Low-level helpers of the benchmarks (used through ``_harness.py``, and by
``suite/run.py``): machine and version info, timing, memory measurement,
markdown tables, the git commit.

Only the standard library, numpy, psutil and torch are used here, so that a
benchmark can import this module before deciding what else it needs.
"""

from __future__ import annotations

import datetime as _dt
import gc
import os
import platform
import statistics
import threading
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent


# ------------------------------------------------------------------ machine
def cpu_model():
    """CPU model name from /proc/cpuinfo (falls back to platform info)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags_summary():
    """The SIMD extensions relevant to torch CPU kernels (avx2, avx512*, amx*)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    keep = [fl for fl in flags if fl in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")]
                    return ", ".join(keep) or "no avx2"
    except OSError:
        pass
    return "unknown"


def machine_info():
    import psutil

    info = {
        "cpu": cpu_model(),
        "simd": cpu_flags_summary(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
    }
    try:
        info["loadavg_start"] = tuple(round(x, 2) for x in os.getloadavg())
    except OSError:
        pass
    info["cpu_pressure_start"] = cpu_pressure()
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.is_available()
    except ImportError:
        pass
    return info


def cpu_pressure():
    """Linux PSI: share of the last 60 s / 300 s in which runnable tasks waited for a CPU
    (``some avg60``/``avg300`` of /proc/pressure/cpu, in %), or None."""
    try:
        with open("/proc/pressure/cpu") as f:
            for line in f:
                if line.startswith("some"):
                    fields = dict(kv.split("=") for kv in line.split()[1:])
                    return float(fields["avg60"]), float(fields["avg300"])
    except (OSError, KeyError, ValueError):
        pass
    return None


def _dist_version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def versions(extra=()):
    """Versions of python and the libraries a benchmark depends on."""
    names = ["torch", "timm", "sentence-transformers", "transformers", "scikit-learn", "sktransfer", *extra]
    out = {"python": platform.python_version()}
    for name in names:
        out[name] = _dist_version(name)
    return out


def sgemm_gflops(n=1024, reps=5):
    """Best-of-``reps`` float32 matmul throughput: a calibration of how much
    CPU the run actually got (on a shared machine it is well under peak)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def machine_md(info, vers, command, started, elapsed_s=None, calib=None):
    """Markdown bullet list describing how a section's figures were produced."""
    lines = [
        f"- Command: `{command}`",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC"
        + (f", total run time {elapsed_s / 60:.1f} min" if elapsed_s is not None else ""),
        f"- Machine: {info['cpu']} ({info['simd']}), {info['logical_cores']} logical cores "
        f"({info['usable_cores']} usable), {info['memory_gib']} GiB RAM, {info['os']}, no GPU used"
        if not info.get("cuda")
        else f"- Machine: {info['cpu']}, {info['logical_cores']} cores, CUDA available",
    ]
    if info.get("threads_set"):
        threads = f"- torch threads: {info['threads_set']} (set with `torch.set_num_threads`)"
    else:
        threads = f"- torch threads: {info.get('torch_threads')} (torch's default, left as is)"
    if "loadavg_start" in info:
        threads += f"; load average at start {info['loadavg_start'][0]}"
        if info.get("loadavg_end"):
            threads += f", at end {info['loadavg_end'][0]}"
        if info["loadavg_start"][0] > 1.5 or (info.get("loadavg_end") or (0,))[0] > 2.5:
            threads += " (other jobs were sharing the machine)"
    lines.append(threads)
    if info.get("cpu_pressure_start"):
        psi = f"- CPU pressure (Linux PSI, share of time some task waited for a CPU): {info['cpu_pressure_start'][0]:.0f}% over the minute before the run"
        if info.get("cpu_pressure_end"):
            psi += f", {info['cpu_pressure_end'][1]:.0f}% over the last 5 min of it"
        lines.append(psi)
    if calib is not None:
        lines.append(f"- CPU calibration: float32 1024x1024 matmul at {calib:.0f} GFLOP/s (best of 5) at start")
    lines.append("- Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()))
    return "\n".join(lines)


def utc_now():
    return _dt.datetime.now(_dt.timezone.utc)


# ------------------------------------------------------------------- timing
def timed(fn, *args, **kwargs):
    """``(seconds, result)`` of one call, with ``time.perf_counter``."""
    gc.collect()
    t = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - t, result


def median(xs):
    return statistics.median(xs)


# ------------------------------------------------------------------- memory
def rss_bytes():
    import psutil

    return psutil.Process().memory_info().rss


def reset_peak_rss():
    """Reset the kernel's peak-RSS counter (VmHWM) of this process.

    Returns True when it worked (Linux, ``/proc/self/clear_refs`` writable).
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes():
    """VmHWM (peak RSS since start or since :func:`reset_peak_rss`), in bytes."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class RssSampler:
    """Polls RSS in a thread; ``peak`` is the largest value seen (a fallback
    and cross-check for VmHWM, which misses nothing but is Linux-only)."""

    def __init__(self, interval=0.005):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import psutil

        proc = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, proc.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self):
        self.peak = rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def mib(nbytes):
    return nbytes / 2**20


# --------------------------------------------------------------- markdown
def md_table(headers, rows, align=None):
    """A GitHub markdown table; ``align`` is a string of 'l'/'r' per column."""
    align = align or "l" + "r" * (len(headers) - 1)
    sep = ["---:" if a == "r" else ":---" for a in align]
    out = ["| " + " | ".join(headers) + " |", "| " + " | ".join(sep) + " |"]
    for row in rows:
        out.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(out)


def log(msg):
    print(msg, flush=True)


def git_commit():
    """Short commit of this checkout, with " (sktransfer/ modified)" when the package has uncommitted edits."""
    import subprocess

    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--", "../sktransfer"],
                               capture_output=True, text=True).stdout.strip()
        return out + (" (sktransfer/ modified)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def limit_threads(n):
    """torch and every BLAS to ``n`` threads (BLAS libraries loaded first, so that all are limited)."""
    import scipy.linalg  # noqa: F401
    import sklearn.linear_model  # noqa: F401
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    threadpool_limits(n)

#!/usr/bin/env python
"""Lazy training data: peak memory of a fine-tuning fit against the number of images (issue 14, part 3).

``FineTunedClassifier("timm/tf_efficientnet_lite0", strategy="linear_probe",
max_epochs=1)`` fitted on the first N Fashion-MNIST training images
(uint8 28×28 arrays, resized by the model's preprocessing to its 224 px),
one fresh process per arm (``ARMS``: N and ``num_workers``). The trainers
read their rows through ``sktransfer._data.RowDataset``: each batch is
decoded and cropped when the loader reads it, so the fit's memory should
not grow with N. Measured in each process:

- the fit's peak RSS increase: VmHWM (reset just before the fit) minus the
  RSS just before (``_harness.measure_fit``), after a warm-up fit on 32 rows
  in the same process (libraries, allocator pools, the first model copy);
- the array the previous trainers built before training: every image as
  uint8 crops ``N×3×224×224`` (``Backbone.encode``, still reachable as the
  estimator's ``_encode_X``), measured the same way in a process of its own
  (after a fit, freed pages still resident would hide it), with its size
  ``N×3×224×224`` bytes computed beside it; the old fit held it for the
  whole fit, on top of what the new path uses;
- with ``num_workers=2``: the largest RSS of a loader worker process
  (``RUSAGE_CHILDREN``; forked, so it shares the parent's pages).

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_lazy_training.py                 # full run: N = 1k, 2k, 5k (9,000 training images at 224 px: ~40 min at the 4 images/s of a loaded 2-core CPU)
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_lazy_training.py --sizes 200 400 800   # the recorded run (~12 min, loaded 2-core CPU)
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_lazy_training.py --sizes 5000 20000 50000   # the issue's sizes (hours on a CPU)
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_lazy_training.py --quick         # smoke run (< 1 min), writes nothing
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_lazy_training.py --report-only   # section from the record

Record: ``benchmarks/results/lazy_training/results.json``; section:
``sections/lazy_training.md`` from ``sections/lazy_training_notes.md``;
plot ``lazy_training.png``.
"""

from __future__ import annotations

import gc
import resource
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

import _common as C  # noqa: E402
import _harness as H  # noqa: E402

NAME = "lazy_training"
RECORD = H.RESULTS / NAME / "results.json"
PLOT = HERE / "lazy_training.png"
SIZE = 224  # the model's pretrained input size: crops of 3×224×224 uint8
CONFIGS = {
    "full": dict(sizes=[1000, 2000, 5000], workers_at=1000, workers=2, batch_size=32, warmup_rows=16, threads=2),
    "quick": dict(sizes=[48, 96], workers_at=48, workers=2, batch_size=16, warmup_rows=16, threads=2),
}
# Flat in N: the fit's peak grows per image by less than this share of the bytes per image of the
# previous trainers' up-front array (the slope over N, so run-to-run noise of the allocator counts too).
TARGET_SHARE = 0.10
log = H.log


def arms(cfg):
    """``(label, n, num_workers)`` of every child process, in the order they run."""
    out = [(f"N = {n:,}", n, 0) for n in cfg["sizes"]]
    if cfg.get("workers_at"):
        n = cfg["workers_at"]
        out.append((f"N = {n:,}, num_workers = {cfg['workers']}", n, cfg["workers"]))
    return out


def load_images(n):
    """The first ``n`` Fashion-MNIST training images (uint8 N×28×28) and their labels."""
    from sktransfer.datasets import load_fashion_mnist

    X, y = load_fashion_mnist(subset="train", return_X_y=True)
    if len(X) < n:
        raise SystemExit(f"--sizes: only {len(X)} Fashion-MNIST training images, {n} asked")
    return np.ascontiguousarray(X[:n]), np.asarray(y[:n])


# ------------------------------------------------------------------ child
def child_fit(spec):
    from sktransfer import FineTunedClassifier
    from sktransfer.backbones import load_backbone

    cfg, n, workers = spec["cfg"], spec["n"], spec["num_workers"]
    X, y = load_images(n)

    def make():
        return FineTunedClassifier(H.IMAGE, strategy="linear_probe", head_init="random", max_epochs=1,
                                   batch_size=cfg["batch_size"], num_workers=workers, random_state=0)

    t = time.perf_counter()
    make().fit(X[: cfg["warmup_rows"]], y[: cfg["warmup_rows"]])  # imports, allocator pools, one model copy
    warmup_s = time.perf_counter() - t
    gc.collect()
    clf = make()
    fit_s, fit_increase, fit_peak = H.measure_fit(lambda: clf.fit(X, y))
    workers_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 if workers else None
    return {
        "n": n, "num_workers": workers, "warmup_s": warmup_s, "fit_s": fit_s, "fit_increase": fit_increase,
        "fit_peak": fit_peak, "workers_maxrss": workers_rss, "n_epochs": int(clf.n_epochs_),
        "train_loss": float(clf.history_[-1, "train_loss"]),
    }


def child_encode(spec):
    """The previous trainers' first step alone: every image decoded into one uint8 ``N×3×224×224`` array."""
    from sktransfer import FineTunedClassifier
    from sktransfer.backbones import load_backbone

    X, _ = load_images(spec["n"])
    clf, bb = FineTunedClassifier(H.IMAGE), load_backbone(H.IMAGE)
    clf._encode_X(X[:16], bb, fitting=False)  # warm-up: imports, PIL
    gc.collect()
    encode_s, encode_increase, _ = H.measure_fit(lambda: clf._encode_X(X, bb, fitting=False))
    return {"encode_s": encode_s, "encode_increase": encode_increase, "encode_bytes": spec["n"] * 3 * SIZE * SIZE}


# ------------------------------------------------------------------ run
def measure(cfg, args):
    script = Path(__file__).resolve()
    res = {"runs": []}
    for label, n, workers in arms(cfg):
        log(f"{label} ...")
        spec = {"kind": "fit", "label": label, "cfg": cfg, "n": n, "num_workers": workers, "threads": cfg["threads"]}
        r = H.run_child(script, spec)
        enc = H.run_child(script, {**spec, "kind": "encode", "label": f"{label}: up-front array"})
        r.update({k: enc[k] for k in ("encode_s", "encode_increase", "encode_bytes")}, label=label)
        log(f"  fit {r['fit_s']:.0f} s, peak +{C.mib(r['fit_increase']):.0f} MiB; the old up-front array "
            f"+{C.mib(r['encode_increase']):.0f} MiB ({C.mib(r['encode_bytes']):.0f} MiB computed)")
        res["runs"].append(r)
    return res


# ------------------------------------------------------------------ report
def slope(runs, key):
    """Least-squares bytes per image of ``key`` over the runs (num_workers=0)."""
    ns = np.array([r["n"] for r in runs], float)
    vs = np.array([r[key] for r in runs], float)
    if len(ns) < 2 or np.ptp(ns) == 0:
        return float("nan")
    return float(np.polyfit(ns, vs, 1)[0])


def plot(res, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in res["runs"] if not r["num_workers"]]
    ns = [r["n"] for r in runs]
    new = [C.mib(r["fit_increase"]) for r in runs]
    old = [C.mib(r["fit_increase"] + r["encode_increase"]) for r in runs]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    ax.plot(ns, new, "o-", label="lazy rows (this version): measured")
    ax.plot(ns, old, "s--", label="+ the up-front N×3×224×224 array (previous trainers)")
    ax.set_xlabel("training images N")
    ax.set_ylabel("peak RSS increase during fit (MiB)")
    ax.set_title("FineTunedClassifier linear probe, 224 px, 1 epoch", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    log(f"wrote {path}")


def report(res, run, cfg, write=True):
    runs0 = [r for r in res["runs"] if not r["num_workers"]]
    rows = []
    for r in res["runs"]:
        rows.append([
            r["label"], f"{r['fit_s']:.0f}", f"{r['n'] / r['fit_s']:.1f}", f"{C.mib(r['fit_increase']):.0f}",
            f"{C.mib(r['fit_peak']):.0f}", f"{C.mib(r['encode_increase']):.0f}", f"{C.mib(r['encode_bytes']):.0f}",
            "–" if r["workers_maxrss"] is None else f"{C.mib(r['workers_maxrss']):.0f}",
        ])
    table = H.md_table(
        ["Arm", "fit (s)", "images/s", "fit: peak RSS increase (MiB)", "fit: peak RSS (MiB)",
         "previous trainers' up-front array, measured (MiB)", "N×3×224×224 bytes (MiB)",
         "largest loader worker RSS (MiB)"], rows, "lrrrrrrr")
    per_image_new = slope(runs0, "fit_increase")
    per_image_old = float(3 * SIZE * SIZE)
    flat = per_image_new <= TARGET_SHARE * per_image_old
    big = max(runs0, key=lambda r: r["n"])
    sizes = ", ".join(f"{r['n']:,}" for r in runs0)
    summary = H.md_table(["Target", "Measured", "Target value", "Result"], [
        [f"fit's peak memory flat in N (N = {sizes})",
         f"{per_image_new / 1024:+.2f} KiB per image (fitted slope)",
         f"<= {TARGET_SHARE:.0%} of the previous {per_image_old / 1024:.0f} KiB per image", "met" if flat else "**missed**"],
    ], "lrll")
    blocks = {
        "header": H.header(run), "summary": summary, "table": table,
        "sizes": ", ".join(f"{n:,}" for n in cfg["sizes"]), "batch_size": cfg["batch_size"],
        "warmup_rows": cfg["warmup_rows"], "threads": cfg["threads"], "workers": cfg["workers"],
        "slope_kib": f"{per_image_new / 1024:+.2f}", "old_kib": f"{per_image_old / 1024:.0f}",
        "big_n": f"{big['n']:,}", "big_new_mib": f"{C.mib(big['fit_increase']):.0f}",
        "big_old_mib": f"{C.mib(big['fit_increase'] + big['encode_increase']):.0f}",
        "at_50k_gib": f"{50_000 * per_image_old / 2**30:.1f}",
        "plot": f"![peak RSS increase against N]({PLOT.relative_to(HERE)})",
    }
    if write and (H.SECTIONS / f"{NAME}_notes.md").exists():
        H.write_section(NAME, blocks)
        plot(res, PLOT)
    else:
        log("\n" + summary + "\n\n" + table)


def main(argv=None):
    p = H.parser(__doc__, threads=2)
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="training images per arm (default 1000 2000 5000)")
    p.add_argument("--record", default=str(RECORD), help="JSON record to write (full run) or read (--report-only)")
    args = p.parse_args(argv)
    if args._child:
        return H.child_main(args._child, {"fit": child_fit, "encode": child_encode})
    configs = {k: dict(v) for k, v in CONFIGS.items()}
    for cfg in configs.values():
        cfg["threads"] = args.threads
        if args.sizes:
            cfg["sizes"], cfg["workers_at"] = sorted(args.sizes), min(args.sizes)
    if args.report_only:
        cfg, res, run = H.load_record(args.record)
    else:
        cfg = configs["quick" if args.quick else "full"]
        run = H.start_run(args.threads, ["timm"])
        res = measure(cfg, args)
        run = H.finish_run(run)
        if not args.quick:
            H.write_json(args.record, {"cfg": cfg, "res": res, "run": run})
            log(f"wrote {args.record}")
    report(res, run, cfg, write=not args.quick)


if __name__ == "__main__":
    sys.exit(main())

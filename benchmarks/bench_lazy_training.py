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
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_lazy_training.py --steps 4 --sizes 5000 20000 50000
                                         # the issue's sizes, each fit stopped after 4 optimizer steps (~5 min, loaded 2-core CPU)
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_lazy_training.py --quick         # smoke run (< 1 min), writes nothing
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_lazy_training.py --report-only   # section from the record

With ``--steps K`` (the issue's N = 5k, 20k, 50k, where whole epochs do not
fit on a CPU), each fit stops after K optimizer steps: a skorch callback
raises ``KeyboardInterrupt`` at the end of the K-th training batch, which
skorch's ``partial_fit`` catches and ends training as usual (``on_train_end``,
the trained net kept). Everything a fit does with all N rows before its
first step runs in full: the rows' validation (``check_inputs``), the
``RowDataset``, skorch's dataset and the shuffled loader (and the validation
split when ``validation_fraction`` is set; 0 here, the default). What is not
run is the rest of the epoch: more batches of the same size. Only the
``num_workers=0`` fits; no up-front-array process (its size is computed).
Record: ``results/lazy_training/steps.json``.

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
STEPS_RECORD = H.RESULTS / NAME / "steps.json"  # --steps: fits stopped after a fixed number of optimizer steps
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
def stop_after(steps):
    """A skorch callback that ends training after ``steps`` optimizer steps (``KeyboardInterrupt``,
    which skorch's ``partial_fit`` catches: ``on_train_end`` runs and the fit returns as usual); it
    also notes when the first training batch began (``t_first_``: the fit's set-up is over)."""
    from skorch.callbacks import Callback

    class StopAfterSteps(Callback):
        def __init__(self, steps):
            self.steps = steps

        def initialize(self):
            self.done_, self.t_first_ = 0, None
            return self

        def on_batch_begin(self, net, batch=None, training=None, **kwargs):
            if training and self.t_first_ is None:
                self.t_first_ = time.perf_counter()

        def on_batch_end(self, net, batch=None, training=None, **kwargs):
            if training:
                self.done_ += 1
                if self.done_ >= self.steps:
                    raise KeyboardInterrupt

    return StopAfterSteps(steps)


def child_fit(spec):
    from sktransfer import FineTunedClassifier

    cfg, n, workers, steps = spec["cfg"], spec["n"], spec["num_workers"], spec.get("steps")
    X, y = load_images(n)

    def make(callbacks=None):
        return FineTunedClassifier(H.IMAGE, strategy="linear_probe", head_init="random", max_epochs=1,
                                   batch_size=cfg["batch_size"], num_workers=workers, random_state=0,
                                   callbacks=callbacks)

    t = time.perf_counter()
    make().fit(X[: cfg["warmup_rows"]], y[: cfg["warmup_rows"]])  # imports, allocator pools, one model copy
    warmup_s = time.perf_counter() - t
    gc.collect()
    stop = stop_after(steps) if steps else None
    clf = make([("stop_after_steps", stop)] if stop else None)
    box = {}

    def fit():
        box["t0"] = time.perf_counter()
        clf.fit(X, y)

    fit_s, fit_increase, fit_peak = H.measure_fit(fit)
    workers_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 if workers else None
    out = {
        "n": n, "num_workers": workers, "warmup_s": warmup_s, "fit_s": fit_s, "fit_increase": fit_increase,
        "fit_peak": fit_peak, "workers_maxrss": workers_rss, "n_epochs": int(clf.n_epochs_),
        "train_loss": float(clf.history_[-1, "train_loss"]) if "train_loss" in clf.history_[-1] else None,
    }
    if stop:
        cb = dict(getattr(getattr(clf, "net_", None), "callbacks_", None) or []).get("stop_after_steps", stop)
        out.update(steps=steps, steps_done=int(cb.done_), setup_s=cb.t_first_ - box["t0"],
                   batch_losses=[float(b["train_loss"]) for b in clf.history_[-1, "batches"] if "train_loss" in b])
    return out


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


def measure_steps(cfg, args):
    """``--steps K``: one fresh process per N, each fit stopped after K optimizer steps (no up-front-array process)."""
    script = Path(__file__).resolve()
    res = {"runs": []}
    for n in cfg["sizes"]:
        label = f"N = {n:,}, {cfg['steps']} steps"
        log(f"{label} ...")
        spec = {"kind": "fit", "label": label, "cfg": cfg, "n": n, "num_workers": 0, "threads": cfg["threads"],
                "steps": cfg["steps"]}
        r = H.run_child(script, spec)
        r.update(label=label, encode_bytes=n * 3 * SIZE * SIZE)
        log(f"  {r['steps_done']} steps; set-up before the first step {r['setup_s']:.1f} s, fit {r['fit_s']:.0f} s, "
            f"peak +{C.mib(r['fit_increase']):.0f} MiB (absolute {C.mib(r['fit_peak']):.0f} MiB)")
        res["runs"].append(r)
    return res


def steps_blocks(steps):
    """The section's blocks of the ``--steps`` record (the issue's sizes), or placeholders saying it was not run."""
    if steps is None:
        return {"steps_summary": "", "steps_table": "_Not run: `--steps K --sizes 5000 20000 50000`._",
                "steps_header": "", "steps_k": "–", "steps_batch": "–", "steps_slope_kib": "–", "steps_sizes": "–"}
    cfg, res, run = steps
    runs = res["runs"]
    rows = [[f"{r['n']:,}", f"{r['steps_done']}", f"{r['setup_s']:.1f}", f"{r['fit_s']:.0f}",
             f"{C.mib(r['fit_increase']):.0f}", f"{C.mib(r['fit_peak']):.0f}", f"{C.mib(r['encode_bytes']):,.0f}"]
            for r in runs]
    table = H.md_table(["N images", "optimizer steps", "set-up before the first step (s)", "fit (s)",
                        "fit: peak RSS increase (MiB)", "fit: peak RSS (MiB)",
                        "previous trainers' N×3×224×224 array, computed (MiB)"], rows, "rrrrrrr")
    per_image = slope(runs, "fit_increase")
    per_image_old = float(3 * SIZE * SIZE)
    flat = per_image <= TARGET_SHARE * per_image_old
    sizes = ", ".join(f"{r['n']:,}" for r in runs)
    summary = (f"| fit's peak memory flat in N, the issue's sizes (N = {sizes}; each fit stopped after "
               f"{cfg['steps']} optimizer steps, see below) | {per_image / 1024:+.3f} KiB per image (fitted slope; "
               f"peak increase {C.mib(min(r['fit_increase'] for r in runs)):.0f} to "
               f"{C.mib(max(r['fit_increase'] for r in runs)):.0f} MiB) | <= {TARGET_SHARE:.0%} of the previous "
               f"{per_image_old / 1024:.0f} KiB per image | {'met' if flat else '**missed**'} |")
    return {"steps_summary": summary, "steps_table": table, "steps_header": H.header(run), "steps_k": cfg["steps"],
            "steps_batch": cfg["batch_size"], "steps_slope_kib": f"{per_image / 1024:+.3f}", "steps_sizes": sizes}


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


def report(res, run, cfg, write=True, steps=None):
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
        **steps_blocks(steps),
    }
    if write and (H.SECTIONS / f"{NAME}_notes.md").exists():
        H.write_section(NAME, blocks)
        plot(res, PLOT)
    else:
        log("\n" + summary + "\n\n" + table)
        if steps is not None:
            blocks = steps_blocks(steps)
            log("\n" + blocks["steps_summary"] + "\n\n" + blocks["steps_table"])


def main(argv=None):
    p = H.parser(__doc__, threads=2)
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="training images per arm (default 1000 2000 5000)")
    p.add_argument("--steps", type=int, default=None,
                   help="stop each fit after this many optimizer steps (the issue's sizes: --sizes 5000 20000 50000); "
                        "its own record, shown beside the full-epoch one")
    p.add_argument("--record", default=str(RECORD), help="JSON record to write (full run) or read (--report-only)")
    p.add_argument("--steps-record", default=str(STEPS_RECORD), help="JSON record of the --steps runs")
    args = p.parse_args(argv)
    if args._child:
        return H.child_main(args._child, {"fit": child_fit, "encode": child_encode})
    if args.steps and not args.report_only:
        cfg = {**CONFIGS["quick" if args.quick else "full"], "threads": args.threads, "steps": args.steps}
        cfg.pop("workers_at", None)
        if args.sizes:
            cfg["sizes"] = sorted(args.sizes)
        run = H.start_run(args.threads, ["timm"])
        res_steps = measure_steps(cfg, args)
        run = H.finish_run(run)
        if not args.quick:
            H.write_json(args.steps_record, {"cfg": cfg, "res": res_steps, "run": run})
            log(f"wrote {args.steps_record}")
        steps = (cfg, res_steps, run)
        if args.quick:
            log("\n" + steps_blocks(steps)["steps_table"])
            return 0
        cfg, res, run = H.load_record(args.record)  # the section shows both records
        report(res, run, cfg, steps=steps)
        return 0
    steps = H.load_record(args.steps_record) if Path(args.steps_record).exists() else None
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
    report(res, run, cfg, write=not args.quick, steps=steps)


if __name__ == "__main__":
    sys.exit(main())

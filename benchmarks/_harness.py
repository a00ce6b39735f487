"""The pieces every benchmark script shares.

A script declares its arms, its data and its tables; this module does the
rest: the command line, the run's metadata (machine, versions, dates), seeded
data draws, JSON records, fresh child processes, mean ± std, one bar-plot
helper, and the section of ``RESULTS.md`` (generated tables filled into a
hand-written template, ``sections/<name>_notes.md``).

Every script can rebuild its section from its stored records without training
anything (``--report-only``); a full run writes the records first.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import re
import shlex
import subprocess
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

import _common as C  # noqa: E402

HERE = Path(__file__).resolve().parent
SECTIONS = HERE / "sections"
RESULTS = HERE / "results"
IMAGE = "timm/tf_efficientnet_lite0"
TEXT = "sentence-transformers/all-MiniLM-L6-v2"
log = C.log
md_table = C.md_table
mib = C.mib


# ------------------------------------------------------------------ numbers
def mean_std(xs):
    """``(mean, sample std)`` of ``xs``; the std is 0 for a single value."""
    xs = np.asarray(xs, float)
    return float(xs.mean()), float(xs.std(ddof=1)) if len(xs) > 1 else 0.0


def pm(mean, std, scale=100, nd=1):
    """``"mean ± std"`` scaled (default: fractions to percent)."""
    return f"{scale * mean:.{nd}f} ± {scale * std:.{nd}f}"


def fmt(v, nd=2):
    """A number with ``nd`` decimals, or an en dash for None / NaN."""
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    return f"{v:.{nd}f}"


def summarize(runs):
    """Accuracy mean ± std over seeds, median time, max memory of a list of run records."""
    m, s = mean_std([r["acc"] for r in runs])
    return {
        "acc_mean": m, "acc_std": s, "n_seeds": len(runs), "accs": [r["acc"] for r in runs],
        "epoch_s": float(np.median([np.mean(r["epoch_s"]) for r in runs])),
        "fit_s": float(np.median([r["fit_s"] for r in runs])),
        "mem": float(max(r["mem"] for r in runs)),
        "peak": float(max(r["peak"] for r in runs)),
    }


def alternate(arms, reps, log=None):
    """Time each arm ``reps`` times, interleaved: ``{name: [seconds per rep]}``.

    ``arms`` maps a name to a zero-argument callable. Every repetition runs
    every arm once; the order rotates by one arm per repetition and is
    reversed on odd ones (ABBA for two arms), so that drift and bursts of
    load on a shared machine fall on all arms alike, and the ``r``-th times
    of two arms are a pair (same conditions) for paired ratios.
    """
    names = list(arms)
    times = {n: [] for n in names}
    for r in range(reps):
        order = names[r % len(names):] + names[: r % len(names)]
        for n in order if r % 2 == 0 else order[::-1]:
            t = time.perf_counter()
            arms[n]()
            times[n].append(time.perf_counter() - t)
        if log:
            log(f"    rep {r + 1}/{reps}: " + ", ".join(f"{n} {times[n][-1]:.2f} s" for n in names))
    return times


# --------------------------------------------------------------------- data
def per_class(y, n, rng, exclude=None):
    """``n`` indices per class of ``y``, drawn without replacement, shuffled.

    Parameters
    ----------
    y : array-like of labels
    n : int
        Rows per class.
    rng : int or numpy.random.RandomState
        The seed (or generator) of the draw.
    exclude : array-like of int, optional
        Indices never drawn (e.g. a fixed test set).
    """
    rng = np.random.RandomState(rng) if isinstance(rng, (int, np.integer)) else rng
    y = np.asarray(y)
    allowed = np.ones(len(y), bool)
    if exclude is not None:
        allowed[np.asarray(exclude)] = False
    idx = np.concatenate([rng.choice(np.flatnonzero((y == k) & allowed), n, replace=False) for k in np.unique(y)])
    return idx[rng.permutation(len(idx))]


def quiet():
    """Silence warnings and transformers' logging (in children and reports)."""
    warnings.filterwarnings("ignore")
    try:
        import transformers

        transformers.logging.set_verbosity_error()
    except Exception:  # noqa: BLE001
        pass


# ------------------------------------------------------------------ records
def write_json(path, obj):
    """Write ``obj`` as JSON atomically (a temp file, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)


def read_json(path):
    return json.loads(Path(path).read_text())


def slug(text):
    """A file-name-safe lower-case form of ``text`` (up to its first parenthesis)."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower().split("(")[0]).strip("_")


# -------------------------------------------------------------------- a run
def parser(doc, quick_help="tiny smoke run; writes nothing", threads=1):
    """The arguments every script takes: ``--quick``, ``--report-only``, ``--threads``."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--report-only", action="store_true", help="rebuild the section from the stored records; run nothing")
    p.add_argument("--threads", type=int, default=threads,
                   help="torch and BLAS threads (default %s; the machine is shared)" % (threads or "torch's own"))
    p.add_argument("--_child", default=None, help=argparse.SUPPRESS)  # the spec of a child process (internal)
    return p


def start_run(threads, extra_versions=(), calibrate=False, limit=True):
    """Metadata of a run that starts now: machine, versions, command, date.

    Returns a dict to pass to :func:`finish_run` and :func:`header`.
    """
    if limit and threads:
        C.limit_threads(threads)
    info = C.machine_info()
    info["threads_set"] = threads
    run = {"info": info, "vers": C.versions(extra=list(extra_versions)), "started": C.utc_now(),
           "command": "HF_HUB_OFFLINE=1 python " + os.path.relpath(sys.argv[0], HERE.parent)
           + (" " + shlex.join(sys.argv[1:]) if sys.argv[1:] else ""),
           "t0": time.perf_counter(), "calib": C.sgemm_gflops() if calibrate else None}
    log(f"{run['command']}: load {info.get('loadavg_start')}")
    return run


def finish_run(run, path=None, **extra):
    """Close ``run`` (elapsed time, end load) and save it as JSON at ``path`` (``last_run.json``)."""
    try:
        run["info"]["loadavg_end"] = tuple(round(x, 2) for x in os.getloadavg())
    except OSError:
        pass
    run["info"]["cpu_pressure_end"] = C.cpu_pressure()
    run["elapsed"] = time.perf_counter() - run.pop("t0")
    run.update(extra)
    if path is not None:
        write_json(path, run)
    return run


def load_run(path):
    """A run saved by :func:`finish_run`, with its start date parsed back."""
    path = Path(path)
    if not path.exists():
        raise SystemExit(f"--report-only: no run recorded in {path}; run the benchmark first.")
    run = read_json(path)
    run["started"] = dt.datetime.fromisoformat(str(run["started"]))
    return run


def header(run):
    """The section's bullet list: command, date, machine, threads, versions."""
    return C.machine_md(run["info"], run.get("vers") or run.get("versions"), run["command"], run["started"],
                        run.get("elapsed"), run.get("calib"))


# ------------------------------------------------------------------ section
def fill(template, blocks):
    """Replace each ``{{key}}`` of ``template`` by ``str(blocks[key])``; unknown keys raise."""
    def sub(m):
        if m.group(1) not in blocks:
            raise KeyError(f"template placeholder {{{{{m.group(1)}}}}} has no generated value")
        return str(blocks[m.group(1)])

    return re.sub(r"\{\{\s*([\w.]+)\s*\}\}", sub, template)


def write_section(name, blocks, out=None):
    """Write ``sections/<name>.md``: the hand-written ``sections/<name>_notes.md`` filled with ``blocks``.

    Parameters
    ----------
    name : str
        The section's name (its files under ``benchmarks/sections/``).
    blocks : dict
        Generated markdown (tables, short sentences, figures) by placeholder name.
    out : path, optional
        Where to write (default ``sections/<name>.md``).
    """
    text = fill((SECTIONS / f"{name}_notes.md").read_text(), blocks)
    text = re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
    out = Path(out) if out else SECTIONS / f"{name}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    log(f"wrote {out}")
    return out


def bar_panels(panels, path, title, ncols=None):
    """One figure of bar charts; each panel is a dict with ``title``, ``labels``, ``values``
    and optionally ``errors``, ``points`` (one list per bar), ``colors``, ``ylabel``, ``ylim``, ``log``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = ncols or min(len(panels), 3)
    nrows = int(np.ceil(len(panels) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.8 * nrows), squeeze=False)
    for ax, p in zip(axes.flat, panels):
        x = range(len(p["labels"]))
        ax.bar(x, p["values"], yerr=p.get("errors"), capsize=4, color=p.get("colors"))
        for i, pts in enumerate(p.get("points") or []):
            ax.scatter([i] * len(pts), pts, color="k", s=8, zorder=3)
        ax.set_xticks(list(x))
        ax.set_xticklabels(p["labels"], fontsize=8)
        if p.get("log"):
            ax.set_yscale("log")
        if p.get("ylim"):
            ax.set_ylim(*p["ylim"])
        ax.set_ylabel(p.get("ylabel", ""))
        ax.set_title(p["title"], fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    log(f"wrote {path}")


# ----------------------------------------------------------- child processes
def measure_fit(fit):
    """Run ``fit()``; return ``(seconds, peak RSS increase in bytes, absolute peak)``.

    The increase is VmHWM (reset just before) minus the RSS just before; where
    VmHWM cannot be reset, RSS is sampled every 5 ms instead.
    """
    gc.collect()
    base = C.rss_bytes()
    if C.reset_peak_rss():
        t = time.perf_counter()
        fit()
        dt_ = time.perf_counter() - t
        peak = C.peak_rss_bytes()
    else:  # pragma: no cover - non-Linux
        with C.RssSampler() as s:
            t = time.perf_counter()
            fit()
            dt_ = time.perf_counter() - t
        peak = s.peak
    return dt_, peak - base, peak


def child_main(spec_json, functions):
    """Entry point of a child process: run ``functions[spec["kind"]](spec)``, print its JSON result."""
    import resource

    import torch

    quiet()
    spec = json.loads(spec_json)
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    out = functions[spec["kind"]](spec)
    out["ru_maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print("CHILD_RESULT " + json.dumps(out), flush=True)


def run_child(script, spec, timeout=3600):
    """Run ``script --_child <spec>`` in a fresh Python process and return its result dict.

    The child's progress lines are printed as they come, prefixed with the
    spec's label (several children may run at once).
    """
    cmd = [sys.executable, str(script), "--_child", json.dumps(spec)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if not line.startswith("CHILD_RESULT "):
            print(f"  [{spec.get('label')}] {line.strip()}", flush=True)
    err = proc.stderr.read()
    proc.wait(timeout=timeout)
    res = [ln for ln in lines if ln.startswith("CHILD_RESULT ")]
    if proc.returncode != 0 or not res:
        raise RuntimeError(f"child {spec.get('label')} failed (rc {proc.returncode}):\n{''.join(lines)[-2000:]}\n{err[-4000:]}")
    out = json.loads(res[-1].split(" ", 1)[1])
    out["process_s"] = time.perf_counter() - t
    return out


def run_children(script, specs, jobs, cost=None):
    """Run ``specs`` in fresh processes, ``jobs`` at a time, the costliest first; results in spec order."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    t0 = time.perf_counter()
    order = sorted(range(len(specs)), key=lambda i: -(cost(specs[i]) if cost else 0))
    results = [None] * len(specs)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as ex:
        futs = {ex.submit(run_child, script, specs[i]): i for i in order}
        for n_done, f in enumerate(as_completed(futs), 1):
            i = futs[f]
            results[i] = f.result()
            log(f"[{n_done}/{len(specs)}] done: {specs[i]['label']} in {results[i]['process_s']:.0f} s "
                f"(elapsed {(time.perf_counter() - t0) / 60:.1f} min)")
    return results


# --------------------------------------------- benchmarks with one record file
def load_record(path):
    """``(cfg, res, run)`` of a record written by :func:`run_or_load` (``--report-only``)."""
    path = Path(path)
    if not path.exists():
        raise SystemExit(f"--report-only: no record at {path}; run the benchmark first.")
    rec = read_json(path)
    run = dict(rec["run"], started=dt.datetime.fromisoformat(str(rec["run"]["started"])))
    return rec["cfg"], rec["res"], run


def run_or_load(args, configs, measure, record, extra_versions=(), calibrate=False):
    """``(cfg, res, run)``: read from ``record`` (``--report-only``), or measured now by
    ``measure(cfg, args)`` and saved to ``record`` (a full run; ``--quick`` saves nothing
    and returns ``res=None``)."""
    if args.report_only:
        return load_record(record)
    cfg = dict(configs["quick" if args.quick else "full"])
    run = start_run(args.threads, extra_versions, calibrate)
    res = measure(cfg, args)
    run = finish_run(run)
    if args.quick:
        log(f"quick run done in {run['elapsed']:.0f} s (nothing written)")
        return cfg, None, run
    write_json(record, {"cfg": cfg, "res": res, "run": run})
    return cfg, res, run


# ----------------------------- shifted images (bench_adaptation, bench_da_selection, bench_dann_recipe)
ADAPT_CFG = {
    "full": dict(n_source=300, n_target=300, image_size=32, epochs=4, sa_components=64),
    "quick": dict(n_source=40, n_target=40, image_size=32, epochs=1, sa_components=16),
}
# DANNClassifier's recipe (fixed after one pilot run on the inverted Fashion-MNIST target).
DANN = dict(lr=3e-3, backbone_lr_ratio=0.3, batch_size=32, augment=False, random_state=0)


def _stratified(y, n, seed):
    rng = np.random.RandomState(seed)
    classes = np.unique(y)
    return np.concatenate([rng.choice(np.flatnonzero(y == c), n // len(classes), replace=False) for c in classes])


def load_shifted(cfg):
    """``{data set: (X_source, y_source, X_target, y_target, blur_sigma)}``: clean labelled source
    images and *other* images of the same data set as target (Fashion-MNIST: train / test split;
    digits: two halves), ``n_source`` / ``n_target`` of each, stratified."""
    from sklearn.datasets import load_digits

    from sktransfer.datasets import load_fashion_mnist

    Xtr, ytr = load_fashion_mnist(subset="train", return_X_y=True)
    Xte, yte = load_fashion_mnist(subset="test", return_X_y=True)
    s, t = _stratified(ytr, cfg["n_source"], 0), _stratified(yte, cfg["n_target"], 1)
    fashion = (Xtr[s], ytr[s], Xte[t], yte[t], 1.5)
    d = load_digits()
    img = (d.images * 16).clip(0, 255).astype(np.uint8)
    perm = np.random.RandomState(0).permutation(len(d.target))
    half_a, half_b = perm[: len(perm) // 2], perm[len(perm) // 2 :]
    s = half_a[_stratified(d.target[half_a], cfg["n_source"], 0)]
    t = half_b[_stratified(d.target[half_b], cfg["n_target"], 1)]
    digits = (img[s], d.target[s], img[t], d.target[t], 0.6)
    return {"Fashion-MNIST (28 px)": fashion, "digits (8 px)": digits}


def shifts(blur_sigma):
    """The target shifts, by name: none, darkened, blurred, low contrast, inverted (uint8 in, uint8 out)."""
    from scipy.ndimage import gaussian_filter

    def blur(X):
        return np.stack([gaussian_filter(x.astype(np.float64), blur_sigma) for x in X]).round().clip(0, 255).astype(np.uint8)

    return {
        "clean (no shift)": lambda X: X,
        "darkened (×0.35)": lambda X: (X.astype(np.float64) * 0.35).round().astype(np.uint8),
        f"blurred (σ={blur_sigma} px)": blur,
        "low contrast (×0.25 around 128)": lambda X: (128 + (X.astype(np.float64) - 128) * 0.25).round().astype(np.uint8),
        "inverted": lambda X: 255 - X,
    }


# ------------------------------------------- fine-tuning tasks (shared data and children)
# Used by bench_fine_tuning, bench_lora and bench_forgetting: the same draws, recipes and measurements.
BACKBONES = {"fmnist": IMAGE, "bbc": TEXT}
TASK_NAMES = {"fmnist": "Fashion-MNIST", "bbc": "BBC News"}
BASELINE = "frozen+logreg"
LOGREG_C = {"fmnist": 1.0, "bbc": 1.0}
# Hyper-parameters per modality and strategy (chosen with a short tuning run
# on seed 0 of the smallest N, see the section's text). ``lr`` is the head's
# rate; the backbone trains at ``lr * backbone_lr_ratio``.
FT_HP = {
    "fmnist": {
        "common": dict(batch_size=16, warmup=0.1, weight_decay=0.01, augment=True),
        "linear_probe": dict(lr=3e-2),
        "partial": dict(lr=3e-3, backbone_lr_ratio=0.3, unfreeze_last=2),
        "full": dict(lr=3e-3, backbone_lr_ratio=0.3),
        "progressive": dict(lr=3e-3, backbone_lr_ratio=0.3, unfreeze_every=1),
    },
    "bbc": {
        "common": dict(batch_size=8, warmup=0.1, weight_decay=0.01),
        "linear_probe": dict(lr=3e-2),
        "partial": dict(lr=3e-2, backbone_lr_ratio=0.003, unfreeze_last=2),
        "full": dict(lr=3e-2, backbone_lr_ratio=0.003),
        "progressive": dict(lr=3e-2, backbone_lr_ratio=0.003, unfreeze_every=1),
    },
}


def input_kwargs(task, cfg):
    return {"image_size": cfg["image_size"]} if task == "fmnist" else {"max_length": cfg["max_length"]}


def strategy_params(task, method, epochs, cfg, extra=None):
    """Constructor parameters of ``FineTunedClassifier`` for one run of ``method`` on ``task``."""
    strategy = method.split("+")[0]
    p = {**FT_HP[task]["common"], **FT_HP[task][strategy], "strategy": strategy, "max_epochs": epochs,
         **input_kwargs(task, cfg)}
    p.update(extra or {})
    return p


def load_task(task, shots, seeds, n_test):
    """``(X_test, y_test, {seed: (X_train, y_train)})``; the test set is the
    same for every seed and N, the training subset depends on the seed."""
    if task == "fmnist":
        from sktransfer.datasets import load_fashion_mnist

        Xtr, ytr = load_fashion_mnist(subset="train", return_X_y=True)
        Xte, yte = load_fashion_mnist(subset="test", return_X_y=True)
        te = per_class(yte, n_test // 10, np.random.RandomState(0))
        train = {}
        for s in seeds:
            i = per_class(ytr, shots, np.random.RandomState(1000 + s))
            train[s] = (Xtr[i].copy(), ytr[i].copy())
        return Xte[te].copy(), yte[te].copy(), train
    from sktransfer.datasets import load_bbc_news

    bbc = load_bbc_news()
    y = np.asarray(bbc.target)
    te = per_class(y, n_test // 5, np.random.RandomState(0))
    train = {}
    for s in seeds:
        i = per_class(y, shots, np.random.RandomState(1000 + s), exclude=te)
        train[s] = ([bbc.data[j] for j in i], y[i].copy())
    return [bbc.data[j] for j in te], y[te].copy(), train


def load_reference(n):
    """Reference task for forgetting: sklearn's 8x8 digits as uint8 images."""
    from sklearn.datasets import load_digits

    d = load_digits()
    idx = per_class(d.target, n // 10, np.random.RandomState(0))
    X = (d.images[idx] * 16).clip(0, 255).astype(np.uint8)
    return X, d.target[idx]


def weight_distances(clf, pretrained_body):
    """Relative L2 distance to the pretrained backbone: of the parameters, and of
    the BatchNorm running statistics (buffers, which no regulariser touches)."""
    body = clf._core_module().body
    sd, w0 = body.state_dict(), pretrained_body.state_dict()
    params = [n for n, _ in body.named_parameters()]
    stats = [k for k in sd if k.endswith(("running_mean", "running_var"))]

    def rel(keys):
        if not keys:
            return None
        num = sum(float((sd[k].float() - w0[k].float()).pow(2).sum()) for k in keys)
        den = sum(float(w0[k].float().pow(2).sum()) for k in keys)
        return float(np.sqrt(num / den))

    return {"params": rel(params), "bn_stats": rel(stats)}


def _file_bytes(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs if f.endswith(".safetensors"))


def child_finetune(spec):
    """A list of training jobs in one fresh process.

    Each job: one (task, N, method) with all its seeds, trained with
    ``FineTunedClassifier`` (or ``LoRAClassifier`` for ``bench_lora.py``).
    """
    import shutil
    import tempfile

    import sktransfer
    from sktransfer.backbones import load_backbone

    task = spec["task"]
    shared = load_backbone(BACKBONES[task])  # memoised: loaded before the memory baseline
    total_params = sum(p.numel() for p in shared.body.parameters())
    data = {}
    out = []
    for job in spec["jobs"]:
        shots = job["shots"]
        if shots not in data:
            data[shots] = load_task(task, shots, job["seeds"], spec["n_test"])
        Xte, yte, train = data[shots]
        est_cls = getattr(sktransfer, job.get("estimator", "FineTunedClassifier"))
        log(f"    {job['method']}, {shots}/class:")
        runs = []
        for seed in job["seeds"]:
            if seed not in train:
                train.update(load_task(task, shots, [seed], spec["n_test"])[2])
            X, y = train[seed]
            clf = est_cls(BACKBONES[task], random_state=seed, **job["params"])
            fit_s, mem, peak = measure_fit(lambda: clf.fit(X, y))
            t = time.perf_counter()
            acc = float(clf.score(Xte, yte))
            eval_s = time.perf_counter() - t
            module = clf.net_.module_
            n_all = sum(p.numel() for p in module.parameters())
            n_train_p = sum(p.numel() for p in module.parameters() if p.requires_grad)
            rec = {
                "seed": seed, "acc": acc, "fit_s": fit_s, "eval_s": eval_s, "mem": mem, "peak": peak,
                "epoch_s": [float(d) for d in clf.history_[:, "dur"]],
                "n_train": len(y), "n_test": len(yte),
                "trainable_end": int(n_train_p), "params_all": int(n_all), "backbone_params": int(total_params),
            }
            if hasattr(clf, "trainable_fraction_"):
                rec["trainable_fraction"] = float(clf.trainable_fraction_)
                rec["adapter_nbytes"] = int(clf.adapter_nbytes_)
            if job.get("save_size") and seed == job["seeds"][0]:
                tmp = tempfile.mkdtemp(prefix="skt-bench-save-")
                try:
                    clf.save(os.path.join(tmp, "m"))
                    rec["save_bytes"] = _file_bytes(tmp)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
            runs.append(rec)
            log(f"      seed {seed}: acc {acc:.3f}, fit {fit_s:.0f} s, {np.mean(rec['epoch_s']):.1f} s/epoch, "
                f"+{mib(mem):.0f} MiB, eval {eval_s:.0f} s")
            del clf, module
            gc.collect()
        out.append({"job": {k: v for k, v in job.items() if k != "params"}, "params": job["params"], "runs": runs})
    return {"jobs": out}


def child_baseline(spec):
    """Frozen embeddings + logistic regression, every (N, seed) of one task."""
    from sklearn.linear_model import LogisticRegression

    from sktransfer import PretrainedFeatureExtractor
    from sktransfer.backbones import load_backbone

    task, cfg = spec["task"], spec["cfg"]
    load_backbone(BACKBONES[task])
    ext = None
    out = []
    for job in spec["jobs"]:
        Xte, yte, train = load_task(task, job["shots"], job["seeds"], spec["n_test"])
        if ext is None:
            ext = PretrainedFeatureExtractor(BACKBONES[task], verbose=False, **input_kwargs(task, cfg))
            ext.fit(Xte[:2])
            t = time.perf_counter()
            Fte = ext.transform(Xte)
            test_embed_s = time.perf_counter() - t
        log(f"    {BASELINE}, {job['shots']}/class:")
        runs = []
        for seed in job["seeds"]:
            X, y = train[seed]
            lr = LogisticRegression(C=LOGREG_C[task], max_iter=5000)
            box = {}

            def fit():
                t0 = time.perf_counter()
                box["F"] = ext.transform(X)
                box["embed_s"] = time.perf_counter() - t0
                lr.fit(box["F"], y)

            fit_s, mem, peak = measure_fit(fit)
            acc = float(lr.score(Fte, yte))
            runs.append({
                "seed": seed, "acc": acc, "fit_s": fit_s, "mem": mem, "peak": peak, "epoch_s": [box["embed_s"]],
                "n_train": len(y), "n_test": len(yte), "test_embed_s": test_embed_s,
            })
            log(f"      seed {seed}: acc {acc:.3f}, fit {fit_s:.1f} s (embedding pass {box['embed_s']:.1f} s), +{mib(mem):.0f} MiB")
        out.append({"job": dict(job), "runs": runs})
    return {"jobs": out}

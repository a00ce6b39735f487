#!/usr/bin/env python
"""Benchmark of forgetting control in ``FineTunedClassifier`` (fine-tuning issue).

Does L2-SP (``l2sp``) or WiSE-FT (``wise_alpha``) keep more of what the
pretrained backbone knew than plain ``full`` fine-tuning, at a similar
accuracy on the target task? Two settings, each with a *target* task the
model is fine-tuned on and a *reference* task it is never trained on:

1. Images: ``timm/tf_efficientnet_lite0`` at 32 px fine-tuned on
   Fashion-MNIST (100 images per class); reference: 600 of sklearn's 8x8
   digits, upscaled alike. Arms with ``freeze_bn_stats=True`` (the
   library's default: pretrained BatchNorm statistics) and with ``False``
   (the statistics update in training, as in torch and timm).
2. Text: ``sentence-transformers/all-MiniLM-L6-v2`` fine-tuned on two BBC
   News topics (business vs politics, 32 articles each); reference: the
   three other topics (300 articles, never seen in training).

For each arm and seed: target accuracy on held-out data, and
``sktransfer.metrics.forgetting_report`` on the reference data: a
cross-validated logistic regression on the pretrained features and on the
fine-tuned features (*retained* = their accuracy ratio), and the linear CKA
between the two feature sets. One fresh subprocess per (setting, arm), all
seeds inside it, two at a time.

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_forgetting.py               # ~12 min on 2 cores
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_forgetting.py --quick       # smoke run, writes nothing
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_forgetting.py --report-only # rebuild from the records

Records: ``benchmarks/results/forgetting/results.json``; prose: ``sections/forgetting_notes.md``.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

import _harness as H  # noqa: E402

RECORD = H.RESULTS / "forgetting" / "results.json"
PLOT = HERE / "forgetting.png"
TASK_NAMES = {"fmnist": "Fashion-MNIST → digits", "bbc": "BBC News (2 topics) → the 3 other topics"}
BACKBONES = {"fmnist": H.IMAGE, "bbc": H.TEXT}
TEXT_TARGET = ["business", "politics"]
TEXT_REFERENCE = ["entertainment", "sports", "tech"]

# Arms: constructor parameters on top of the setting's `full` recipe.
ARMS = {
    "fmnist": {
        "full": {"freeze_bn_stats": False},
        "full+l2sp": {"freeze_bn_stats": False, "l2sp": 0.1},
        "full+wise": {"freeze_bn_stats": False, "wise_alpha": 0.5},
        "fbn": {"freeze_bn_stats": True},
        "fbn+l2sp": {"freeze_bn_stats": True, "l2sp": 0.1},
        "fbn+wise": {"freeze_bn_stats": True, "wise_alpha": 0.5},
    },
    "bbc": {
        "gentle": {"backbone_lr_ratio": 0.003},
        "full": {},
        "full+l2sp": {"l2sp": 1.0},
        "full+wise": {"wise_alpha": 0.5},
    },
}
# Which plain arm each controlled arm is compared with.
PAIRS = {
    "fmnist": [("full+l2sp", "full"), ("full+wise", "full"), ("fbn+l2sp", "fbn"), ("fbn+wise", "fbn")],
    "bbc": [("full+l2sp", "full"), ("full+wise", "full")],
}
LABELS = {
    "full": "`full`{bn}",
    "full+l2sp": "`full`{bn}, `l2sp={l2sp:g}`",
    "full+wise": "`full`{bn}, `wise_alpha={wise_alpha:g}`",
    "fbn": "`full`, `freeze_bn_stats=True`",
    "fbn+l2sp": "`full`, `freeze_bn_stats=True`, `l2sp={l2sp:g}`",
    "fbn+wise": "`full`, `freeze_bn_stats=True`, `wise_alpha={wise_alpha:g}`",
    "gentle": "`full`, `backbone_lr_ratio=0.003` (the strategy benchmark's recipe)",
}
SIMILAR_POINTS = 2.0  # "similar target accuracy": within this many points

CONFIGS = {
    "full": dict(image_size=32, max_length=64, fmnist_shots=100, fmnist_test=1000, fmnist_epochs=6, ref_n=600,
                 bbc_shots=32, bbc_test=100, bbc_ref=100, bbc_epochs=4, seeds=[0, 1, 2]),
    "quick": dict(image_size=32, max_length=32, fmnist_shots=4, fmnist_test=40, fmnist_epochs=1, ref_n=60,
                  bbc_shots=4, bbc_test=8, bbc_ref=10, bbc_epochs=1, seeds=[0]),
}

log = H.log


# --------------------------------------------------------------------- data
def base_params(task, cfg):
    """The setting's plain `full` recipe (before an arm's parameters)."""
    if task == "fmnist":
        return H.strategy_params("fmnist", "full", cfg["fmnist_epochs"], cfg)
    # Text: the strategy benchmark's hyper-parameters with a 10x larger backbone
    # rate, at which plain fine-tuning forgets measurably (see the section).
    return {**H.FT_HP["bbc"]["common"], **H.FT_HP["bbc"]["full"], "backbone_lr_ratio": 0.03, "strategy": "full",
            "max_epochs": cfg["bbc_epochs"], "max_length": cfg["max_length"]}


def load_setting(task, cfg, seeds):
    """``(X_test, y_test, {seed: (X_train, y_train)}, X_ref, y_ref)``."""
    if task == "fmnist":
        Xte, yte, train = H.load_task("fmnist", cfg["fmnist_shots"], seeds, cfg["fmnist_test"])
        Xr, yr = H.load_reference(cfg["ref_n"])
        return Xte, yte, train, Xr, yr
    from sktransfer.datasets import load_bbc_news

    bbc = load_bbc_news()
    names = np.asarray(bbc.target_names)[np.asarray(bbc.target)]
    target = np.flatnonzero(np.isin(names, TEXT_TARGET))
    te = target[H.per_class(names[target], cfg["bbc_test"], np.random.RandomState(0))]
    ref_pool = np.flatnonzero(np.isin(names, TEXT_REFERENCE))
    ref = ref_pool[H.per_class(names[ref_pool], cfg["bbc_ref"], np.random.RandomState(1))]
    train = {}
    for s in seeds:
        pool = np.setdiff1d(target, te)
        i = pool[H.per_class(names[pool], cfg["bbc_shots"], np.random.RandomState(1000 + s))]
        train[s] = ([bbc.data[j] for j in i], names[i])
    return [bbc.data[j] for j in te], names[te], train, [bbc.data[j] for j in ref], names[ref]


# ---------------------------------------------------------------- child side
def child_forgetting(spec):
    """Every seed of one (setting, arm): fit, score, forgetting report."""
    from sktransfer import FineTunedClassifier
    from sktransfer.backbones import load_backbone
    from sktransfer.metrics import forgetting_report

    task, cfg = spec["task"], spec["cfg"]
    shared = load_backbone(BACKBONES[task])
    out = []
    for job in spec["jobs"]:
        Xte, yte, train, Xr, yr = load_setting(task, cfg, job["seeds"])
        log(f"    {job['method']}:")
        runs = []
        for seed in job["seeds"]:
            X, y = train[seed]
            clf = FineTunedClassifier(BACKBONES[task], random_state=seed, **job["params"])
            t = time.perf_counter()
            clf.fit(X, y)
            fit_s = time.perf_counter() - t
            acc = float(clf.score(Xte, yte))
            rep = forgetting_report(clf, Xr, yr, cv=3)
            rec = {"seed": seed, "acc": acc, "fit_s": fit_s, "forgetting": rep, "dist": H.weight_distances(clf, shared.body),
                   "epoch_s": [float(d) for d in clf.history_[:, "dur"]], "n_train": len(y), "n_test": len(yte), "n_ref": len(yr)}
            runs.append(rec)
            log(f"      seed {seed}: target {acc:.3f}, reference {rep['ref_accuracy_pretrained']:.3f} -> "
                f"{rep['ref_accuracy_finetuned']:.3f} (retained {rep['retained']:.3f}), CKA {rep['cka']:.3f}, fit {fit_s:.0f} s")
            del clf
            gc.collect()
        out.append({"job": {k: v for k, v in job.items() if k != "params"}, "params": job["params"], "runs": runs})
    return {"jobs": out}


def build_specs(cfg, tasks, threads):
    specs = []
    for task in tasks:
        base = base_params(task, cfg)
        for arm, extra in ARMS[task].items():
            job = dict(method=arm, shots=cfg[f"{task}_shots"], seeds=cfg["seeds"], params={**base, **extra})
            specs.append(dict(task=task, kind="forgetting", threads=threads, label=f"{task} {arm}", cfg=cfg, jobs=[job]))
    return specs


# --------------------------------------------------------------- aggregation
def summarize(runs):
    def arr(key):
        return np.array([key(r) for r in runs], dtype=float)

    def ms(a):
        return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0

    acc, ret = arr(lambda r: r["acc"]), arr(lambda r: r["forgetting"]["retained"])
    return {
        "acc": ms(acc), "retained": ms(ret), "accs": acc.tolist(), "retaineds": ret.tolist(),
        "ref_pre": float(arr(lambda r: r["forgetting"]["ref_accuracy_pretrained"]).mean()),
        "ref_ft": float(arr(lambda r: r["forgetting"]["ref_accuracy_finetuned"]).mean()),
        "cka": ms(arr(lambda r: r["forgetting"]["cka"])),
        "dist_params": float(arr(lambda r: r["dist"]["params"]).mean()),
        "dist_bn": (float(arr(lambda r: r["dist"]["bn_stats"]).mean()) if runs[0]["dist"]["bn_stats"] is not None else None),
        "fit_s": float(np.median(arr(lambda r: r["fit_s"]))),
        "seeds": [r["seed"] for r in runs],
    }


def paired(res, task, arm, plain):
    """Per-seed differences (controlled minus plain) in target points and retained."""
    a, b = res[task][arm]["summary"], res[task][plain]["summary"]
    d_acc = 100 * (np.array(a["accs"]) - np.array(b["accs"]))
    d_ret = np.array(a["retaineds"]) - np.array(b["retaineds"])
    return d_acc, d_ret


def claim(d_acc, d_ret):
    """Met when retained is higher on every seed and the target is within SIMILAR_POINTS on average."""
    similar = d_acc.mean() >= -SIMILAR_POINTS
    more = bool((d_ret > 0).all())
    if more and similar:
        return "**yes**"
    if more:
        return "retains more, but target accuracy is lower"
    return "no"


# ---------------------------------------------------------------- reporting
def label(arm, params, task="fmnist"):
    bn = ", `freeze_bn_stats=False`" if params.get("freeze_bn_stats") is False else ""
    if task == "bbc" and arm != "gentle":
        bn = f", `backbone_lr_ratio={params['backbone_lr_ratio']:g}`"
    return LABELS[arm].format(l2sp=params.get("l2sp", 0), wise_alpha=params.get("wise_alpha", 1), bn=bn)


def pm(m_s, scale=100, nd=1):
    return H.pm(*m_s, scale=scale, nd=nd)


def report(res, run, cfg, out=None):
    lines = []
    for task in ("fmnist", "bbc"):
        if task not in res:
            continue
        r = res[task]
        lines += [f"**{TASK_NAMES[task]}**", ""]
        rows = []
        for arm in ARMS[task]:
            if arm not in r:
                continue
            s = r[arm]["summary"]
            rows.append([
                label(arm, r[arm]["params"], task), pm(s["acc"]), f"{100 * s['ref_pre']:.1f} → {100 * s['ref_ft']:.1f}",
                pm(s["retained"], 1, 3), f"{s['cka'][0]:.3f}", f"{s['dist_params']:.4f}",
                "–" if s["dist_bn"] is None else f"{s['dist_bn']:.3f}", f"{s['fit_s']:.0f}",
            ])
        lines.append(H.md_table(
            ["fine-tuning", "target accuracy %", "reference accuracy %, pretrained → fine-tuned", "retained", "CKA",
             "‖w − w0‖ / ‖w0‖", "same, BN running stats", "fit s (median)"], rows))
        lines.append("")
    lines += ["### Does L2-SP or WiSE-FT keep more reference accuracy at a similar target accuracy?", ""]
    rows = []
    for task in ("fmnist", "bbc"):
        if task not in res:
            continue
        for arm, plain in PAIRS[task]:
            if arm not in res[task] or plain not in res[task]:
                continue
            d_acc, d_ret = paired(res, task, arm, plain)
            rows.append([
                TASK_NAMES[task].split(" →")[0].split(" (")[0], f"{label(arm, res[task][arm]['params'], task)} vs {label(plain, res[task][plain]['params'], task)}",
                f"{d_acc.mean():+.1f} ({', '.join(f'{x:+.1f}' for x in d_acc)})",
                f"{d_ret.mean():+.3f} ({', '.join(f'{x:+.3f}' for x in d_ret)})",
                claim(d_acc, d_ret),
            ])
    lines.append(H.md_table(["setting", "controlled vs plain", "Δ target, points (per seed)", "Δ retained (per seed)", "keeps more at similar target accuracy?"],
                            rows, "lllll"))
    blocks = {"header": H.header(run), "image": H.IMAGE, "text": H.TEXT, "image_size": cfg["image_size"],
              "fmnist_shots": cfg["fmnist_shots"], "fmnist_test": cfg["fmnist_test"], "ref_n": cfg["ref_n"],
              "fmnist_epochs": cfg["fmnist_epochs"], "max_length": cfg["max_length"], "text_target": " vs ".join(TEXT_TARGET),
              "bbc_shots": cfg["bbc_shots"], "bbc_test": 2 * cfg["bbc_test"], "bbc_ref": 3 * cfg["bbc_ref"],
              "text_reference": ", ".join(TEXT_REFERENCE), "bbc_epochs": cfg["bbc_epochs"], "seeds": cfg["seeds"],
              "similar": f"{SIMILAR_POINTS:g}", "tables": "\n".join(lines), "notes": run.get("notes", "")}
    H.write_section("forgetting", blocks, out)


def plot(res, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t in ("fmnist", "bbc") if t in res]
    fig, axes = plt.subplots(1, len(tasks), figsize=(6.2 * len(tasks), 4.6), squeeze=False)
    colors = {"full": "#4c72b0", "full+l2sp": "#dd8452", "full+wise": "#55a868", "fbn": "#8172b3", "fbn+l2sp": "#c44e52",
              "fbn+wise": "#937860", "gentle": "#64b5cd"}
    for ax, task in zip(axes[0], tasks):
        r = res[task]
        for arm in ARMS[task]:
            if arm not in r:
                continue
            s = r[arm]["summary"]
            ax.errorbar(100 * s["acc"][0], s["retained"][0], xerr=100 * s["acc"][1], yerr=s["retained"][1], fmt="o",
                        color=colors[arm], capsize=3, label=label(arm, r[arm]["params"], task).replace("`", ""))
        for arm, plain in PAIRS[task]:
            if arm in r and plain in r:
                a, b = r[arm]["summary"], r[plain]["summary"]
                ax.annotate("", xy=(100 * a["acc"][0], a["retained"][0]), xytext=(100 * b["acc"][0], b["retained"][0]),
                            arrowprops=dict(arrowstyle="->", color="0.6", lw=1))
        ax.set_xlabel("target accuracy (%)")
        ax.set_ylabel("reference accuracy retained (fine-tuned / pretrained)")
        ax.set_title(TASK_NAMES[task], fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    fig.suptitle("Forgetting control: up is less forgetting, right is better on the target (arrows: plain → controlled)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------- main
def main(argv=None):
    p = H.parser(__doc__)
    p.add_argument("--tasks", default="fmnist,bbc", help="comma-separated subset of fmnist,bbc")
    p.add_argument("--jobs", type=int, default=2, help="children at a time (default 2, one per core)")
    p.add_argument("--record", default=str(RECORD), help="JSON record to write (full run) or read (--report-only)")
    args = p.parse_args(argv)
    if args._child:
        return H.child_main(args._child, {"forgetting": child_forgetting})
    if args.report_only:
        rec = H.read_json(args.record)
        cfg, res, run = rec["cfg"], rec["res"], {**rec["run"], "started": H.dt.datetime.fromisoformat(rec["run"]["started"])}
    else:
        cfg = dict(CONFIGS["quick" if args.quick else "full"])
        tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
        if set(tasks) - set(ARMS):
            raise SystemExit(f"unknown tasks: {tasks}; choose from {sorted(ARMS)}")
        run = H.start_run(args.threads, ["skorch", "numpy"], calibrate=True, limit=False)
        specs = build_specs(cfg, tasks, args.threads)
        res = {}
        for spec, out in zip(specs, H.run_children(Path(__file__).resolve(), specs, args.jobs)):
            for j in out["jobs"]:
                res.setdefault(spec["task"], {})[j["job"]["method"]] = {"runs": j["runs"], "params": j["params"],
                                                                      "summary": summarize(j["runs"])}
        run = H.finish_run(run, notes=f"Budget: {args.jobs} child processes at a time, {args.threads} torch thread(s) each.")
        if args.quick:
            return log(str({t: {m: v["summary"]["acc"] for m, v in r.items()} for t, r in res.items()}))
        H.write_json(args.record, {"cfg": cfg, "res": res, "run": run})
    report(res, run, cfg)
    plot(res, PLOT)


if __name__ == "__main__":
    sys.exit(main())

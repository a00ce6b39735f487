#!/usr/bin/env python
"""Benchmark of ``FewShotClassifier`` and ``ZeroShotClassifier`` (issue #5).

BBC News (5 topics), ``sentence-transformers/all-MiniLM-L6-v2``, N labeled
articles per topic (N = 1, 2, 8, 64), accuracy on one fixed held-out test
set. Articles are truncated to their first 512 characters (title and first
paragraph, about 110 tokens) and embedded with a 128-token limit, which keeps
the contrastive training feasible on a CPU.

Methods, all on the same splits (a split = the N articles per topic drawn
from a fixed pool of 100 per topic, seeded by the split number):

- TF-IDF + LogisticRegression (no pretrained model);
- frozen embeddings + LogisticRegression (``PretrainedFeatureExtractor``
  with the persistent embedding cache: every article is embedded once);
- ``ZeroShotClassifier`` (no labeled articles; the same for every split);
- ``FewShotClassifier`` (SetFit recipe, its defaults: 256 pairs, 1 epoch,
  LogisticRegression head);
- ``FewShotClassifier(init_from_labels=True)`` with the zero-shot templates.

Cheap methods run on every split. The two FewShot methods re-embed the test
set with their tuned body for every fit, which is what costs time on a CPU,
so they run on the first ``--fs-splits`` splits only (fewer at N=64);
their rows also give the paired difference with the frozen probe on those
same splits.

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_few_shot.py          # full run (~16 min on 2 shared cores)
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_few_shot.py --quick  # smoke run, writes nothing

The full run writes ``benchmarks/sections/few_shot.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

import _common as C  # noqa: E402

TEXT = "sentence-transformers/all-MiniLM-L6-v2"
TEMPLATES = ["This article is about {}.", "A news story about {}.", "{} news"]
SECTION = "Few-shot and zero-shot text classification (issue #5)"
OUT = HERE / "sections" / "few_shot.md"
METHODS = ["TF-IDF + LogReg", "Frozen MiniLM + LogReg", "ZeroShotClassifier", "FewShotClassifier", "FewShot + init_from_labels"]

CONFIGS = {
    "full": dict(shots=[1, 2, 8, 64], splits=10, fs_splits=10, fs_splits_64=10, init_shots=[1, 2],
                 n_test_per_class=50, pool_per_class=100, chars=512, max_length=128),
    "quick": dict(shots=[1, 8], splits=2, fs_splits=1, fs_splits_64=1, init_shots=[1],
                  n_test_per_class=10, pool_per_class=16, chars=256, max_length=64),
}

log = C.log


def load_data(cfg):
    from sktransfer.datasets import load_bbc_news

    bbc = load_bbc_news()
    texts = [t[: cfg["chars"]] for t in bbc.data]
    names = np.asarray(bbc.target_names)
    rng = np.random.RandomState(0)
    test, pool = [], []
    for k in range(len(names)):
        idx = rng.permutation(np.flatnonzero(bbc.target == k))
        test.append(idx[: cfg["n_test_per_class"]])
        pool.append(idx[cfg["n_test_per_class"] : cfg["n_test_per_class"] + cfg["pool_per_class"]])
    return texts, names[bbc.target], names, np.concatenate(test), pool


def draw(pool, n, split):
    """N pool articles per topic for one split (pool positions, then indices)."""
    rng = np.random.RandomState(1000 + split)
    return np.concatenate([rng.choice(p, n, replace=False) for p in pool])


def fmt(xs):
    if not xs:
        return "n/a"
    if len(xs) == 1:
        return f"{xs[0]:.3f} (1 split)"
    return f"{np.mean(xs):.3f} ± {np.std(xs):.3f} ({len(xs)})"


def run(cfg, cache_dir):
    import torch
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from sktransfer import PretrainedFeatureExtractor, embedding_stats, reset_embedding_stats
    from sktransfer._few_shot import FewShotClassifier
    from sktransfer._zero_shot import ZeroShotClassifier

    torch.set_num_threads(2)
    texts, y_all, names, test, pool = load_data(cfg)
    X_test, y_test = [texts[i] for i in test], y_all[test]
    pool_idx = np.concatenate(pool)
    ml = cfg["max_length"]

    reset_embedding_stats()
    t = time.perf_counter()
    ext = PretrainedFeatureExtractor(TEXT, max_length=ml, cache=cache_dir).fit(X_test)
    Z_test = ext.transform(X_test)
    Z_pool = dict(zip(pool_idx.tolist(), ext.transform([texts[i] for i in pool_idx])))
    embed_s = time.perf_counter() - t
    stats = dict(embedding_stats())
    log(f"frozen embeddings of {len(test)} test + {len(pool_idx)} pool articles: {embed_s:.1f} s {stats}")

    acc = {m: {n: [] for n in cfg["shots"]} for m in METHODS}
    secs = {m: {n: [] for n in cfg["shots"]} for m in METHODS}
    paired = {m: {n: [] for n in cfg["shots"]} for m in ("FewShotClassifier", "FewShot + init_from_labels")}

    t = time.perf_counter()
    zs = ZeroShotClassifier(TEXT, template=TEMPLATES, max_length=ml, cache=cache_dir).fit(None, names)
    zs_fit = time.perf_counter() - t
    zs_acc = float(zs.score(X_test, y_test))
    log(f"zero-shot: {zs_acc:.3f} (fit {zs_fit:.1f} s)")

    for n in cfg["shots"]:
        n_fs = cfg["fs_splits_64"] if n >= 64 else cfg["fs_splits"]
        for s in range(cfg["splits"]):
            idx = draw(pool, n, s)
            X_tr, y_tr = [texts[i] for i in idx], y_all[idx]

            t = time.perf_counter()
            tfidf = make_pipeline(TfidfVectorizer(sublinear_tf=True), LogisticRegression(max_iter=1000)).fit(X_tr, y_tr)
            secs["TF-IDF + LogReg"][n].append(time.perf_counter() - t)
            acc["TF-IDF + LogReg"][n].append(float(tfidf.score(X_test, y_test)))

            t = time.perf_counter()
            probe = LogisticRegression(max_iter=1000).fit(np.stack([Z_pool[i] for i in idx]), y_tr)
            secs["Frozen MiniLM + LogReg"][n].append(time.perf_counter() - t)
            frozen = float(probe.score(Z_test, y_test))
            acc["Frozen MiniLM + LogReg"][n].append(frozen)

            acc["ZeroShotClassifier"][n].append(zs_acc)
            secs["ZeroShotClassifier"][n].append(zs_fit)

            if s >= n_fs:
                continue
            variants = []
            if n >= 2:
                variants.append(("FewShotClassifier", {}))
            if n in cfg["init_shots"]:
                variants.append(("FewShot + init_from_labels", {"init_from_labels": True, "template": TEMPLATES}))
            for name, extra in variants:
                clf = FewShotClassifier(TEXT, max_length=ml, random_state=s, **extra)
                t = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # truncation notice
                    clf.fit(X_tr, y_tr)
                fit_s = time.perf_counter() - t
                a = float(clf.score(X_test, y_test))
                acc[name][n].append(a)
                secs[name][n].append(fit_s)
                paired[name][n].append(a - frozen)
                log(f"  N={n} split {s} {name}: {a:.3f} (frozen {frozen:.3f}), fit {fit_s:.1f} s, "
                    f"test embedding {time.perf_counter() - t - fit_s:.1f} s")
        log(f"N={n}: " + "; ".join(f"{m} {fmt(acc[m][n])}" for m in METHODS))
    return dict(acc=acc, secs=secs, paired=paired, embed_s=embed_s, stats=stats, zs_acc=zs_acc, zs_fit=zs_fit,
                n_test=len(test), n_pool=len(pool_idx))


def render(cfg, res, info, vers, command, started, elapsed, calib):
    shots = cfg["shots"]
    acc, secs, paired = res["acc"], res["secs"], res["paired"]
    rows = []
    for m in METHODS:
        rows.append([m] + [fmt(acc[m][n]) for n in shots])
    acc_table = C.md_table(["Method"] + [f"N={n}" for n in shots], rows)
    trows = []
    for m in METHODS:
        trows.append([m] + [f"{np.median(secs[m][n]):.1f}" if secs[m][n] else "n/a" for n in shots])
    time_table = C.md_table(["Training seconds (median)"] + [f"N={n}" for n in shots], trows)
    prow = []
    for m, d in paired.items():
        prow.append([m] + [
            (f"{np.mean(d[n]):+.3f} ({len(d[n])})" if d[n] else "n/a") for n in shots
        ])
    paired_table = C.md_table(["Paired Δ vs frozen probe, same splits"] + [f"N={n}" for n in shots], prow)

    fs8 = acc["FewShotClassifier"].get(8, [])
    d8 = paired["FewShotClassifier"].get(8, [])
    t8 = secs["FewShotClassifier"].get(8, [])
    # Met when the paired gain is positive on average and larger than its standard error.
    sem8 = float(np.std(d8, ddof=1) / np.sqrt(len(d8))) if len(d8) > 1 else float("inf")
    goal_acc = "met" if d8 and np.mean(d8) > 0 and np.mean(d8) > sem8 else "not met"
    wins8 = int(np.sum(np.asarray(d8) > 0))
    goal_time = "met" if t8 and max(t8) < 60 else "not met"
    init = paired["FewShot + init_from_labels"]
    zs = res["zs_acc"]
    lines = []
    for n in cfg["init_shots"]:
        if acc["FewShot + init_from_labels"][n]:
            a = np.mean(acc["FewShot + init_from_labels"][n])
            f = np.mean(acc["Frozen MiniLM + LogReg"][n][: len(acc["FewShot + init_from_labels"][n])])
            lines.append(
                f"N={n}: {a:.3f} vs zero-shot {zs:.3f} and frozen probe {f:.3f} on the same splits "
                f"({'better than both' if a > max(zs, f) else 'not better than both'})"
            )
    n_fs = cfg["fs_splits"]
    from sktransfer import FewShotClassifier

    fs_defaults = FewShotClassifier().get_params()
    body = f"""\
{C.machine_md(info, vers, command, started, elapsed, calib)}
- Data: BBC News, articles truncated to their first {cfg['chars']} characters, {cfg['max_length']}-token limit;
  a fixed test set of {res['n_test']} articles ({cfg['n_test_per_class']} per topic); training articles drawn per
  split from a fixed pool of {cfg['pool_per_class']} per topic (disjoint from the test set).
- Splits: {cfg['splits']} per N for TF-IDF, the frozen probe and zero-shot (which has no training data:
  the same figure for every split); the FewShot rows on the first {n_fs} of them ({cfg['fs_splits_64']} at N=64),
  the same draws; `init_from_labels` only at N in {cfg['init_shots']}, where it is meant to help.
  Accuracy: mean ± std (number of splits).
- FewShotClassifier: its defaults ({fs_defaults['n_pairs']} pairs = {fs_defaults['n_pairs'] // fs_defaults['batch_size']} steps of {fs_defaults['batch_size']}, {fs_defaults['max_epochs']} epoch, lr {fs_defaults['lr']:g}, LogisticRegression head),
  random_state = split number. Zero-shot templates (also used by `init_from_labels`): {TEMPLATES}.
- Frozen embeddings of the {res['n_test']} test + {res['n_pool']} pool articles: {res['embed_s']:.0f} s once
  (embedding cache: {res['stats'].get('computed', 0)} computed, {res['stats'].get('cache_hits', 0)} read back),
  not counted in the frozen probe's training seconds.

**Accuracy** (5 topics, chance 0.2)

{acc_table}

**FewShot minus the frozen probe on the same splits** (mean; number of splits)

{paired_table}

**Training seconds** (`fit`, median over splits; FewShot includes embedding its training set for the head;
zero-shot is embedding the label prompts)

{time_table}

**Goals.** FewShot beats the frozen probe at N=8: **{goal_acc}** (paired Δ {f'{np.mean(d8):+.3f}' if d8 else 'n/a'}{f' ± {sem8:.3f} (standard error)' if len(d8) > 1 else ''},
higher on {wins8} of {len(d8)} splits; accuracy {fmt(fs8)}). FewShot trains in under a minute at N=8: **{goal_time}**
(fit times {', '.join(f'{x:.0f} s' for x in t8) or 'n/a'} on a shared 2-core CPU).
Zero-shot initialisation: {'; '.join(lines) or 'not measured'}.

Plot: `benchmarks/few_shot.png` (accuracy against N).
"""
    return f"## {SECTION}\n\n{body.strip()}\n"


def plot(cfg, res, path):
    """Accuracy against labelled examples per class, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.4))
    for m in METHODS:
        if m == "ZeroShotClassifier":
            ax.axhline(res["zs_acc"], color="0.4", ls="--", lw=1, label=f"{m} (no labels)")
            continue
        ns = [n for n in cfg["shots"] if res["acc"][m][n]]
        if not ns:
            continue
        means = [np.mean(res["acc"][m][n]) for n in ns]
        stds = [np.std(res["acc"][m][n]) for n in ns]
        ax.errorbar(ns, means, yerr=stds, marker="o", capsize=3, label=f"{m} ({', '.join(str(len(res['acc'][m][n])) for n in ns)} splits)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(cfg["shots"])
    ax.set_xticklabels([str(n) for n in cfg["shots"]])
    ax.set_xlabel("labelled articles per topic (N)")
    ax.set_ylabel("test accuracy (5 topics)")
    ax.set_title("BBC News, all-MiniLM-L6-v2: few-shot and zero-shot (mean ± std over splits)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny smoke run; writes nothing unless --out is given")
    p.add_argument("--splits", type=int, help="splits per N for the cheap methods")
    p.add_argument("--fs-splits", type=int, help="splits per N for the FewShot methods (N < 64)")
    p.add_argument("--fs-splits-64", type=int, help="splits for the FewShot methods at N=64")
    p.add_argument("--cache", default=None, help="embedding cache directory (default: sktransfer's, ~/.cache/sktransfer)")
    p.add_argument("--out", default=None, help=f"markdown file to write (default for a full run: {OUT})")
    args = p.parse_args(argv)
    cfg = dict(CONFIGS["quick" if args.quick else "full"])
    for key in ("splits", "fs_splits", "fs_splits_64"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    out = Path(args.out) if args.out else (None if args.quick else OUT)

    import torch

    torch.set_num_threads(2)
    info = C.machine_info()
    info["threads_set"] = 2
    vers = C.versions(extra=("skorch", "xgboost"))
    started = C.utc_now()
    calib = C.sgemm_gflops()
    t0 = time.perf_counter()
    from sktransfer import get_config

    res = run(cfg, args.cache or get_config()["cache_dir"])
    elapsed = time.perf_counter() - t0
    try:
        info["loadavg_end"] = tuple(round(x, 2) for x in os.getloadavg())
    except OSError:
        pass
    md = render(cfg, res, info, vers, C.command_line(), started, elapsed, calib)
    print(md)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(md)
        png = HERE / "few_shot.png" if out == OUT else out.with_suffix(".png")
        plot(cfg, res, png)
        log(f"wrote {out} and {png}")


if __name__ == "__main__":
    main()

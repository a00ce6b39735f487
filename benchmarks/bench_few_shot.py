#!/usr/bin/env python
"""Benchmark of ``FewShotClassifier`` and ``ZeroShotClassifier`` (issue #5).

BBC News (5 topics), ``sentence-transformers/all-MiniLM-L6-v2``, N labelled
articles per topic (N = 1, 2, 8, 64), accuracy on one fixed held-out test
set. Articles are cut to their first 512 characters and embedded with a
128-token limit, which keeps the contrastive training feasible on a CPU.
The methods (``METHODS``) all see the same splits (N articles per topic drawn
from a fixed pool of 100 per topic, seeded by the split number). Cheap methods
run on every split; the two FewShot methods re-embed the test set with their
tuned body for every fit, so they run on the first ``fs_splits`` splits.

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_few_shot.py               # full run (~16 min on 2 shared cores)
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_few_shot.py --quick       # smoke run, writes nothing
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_few_shot.py --report-only # rebuild from the record

Record: ``benchmarks/results/few_shot/results.json``; prose: ``sections/few_shot_notes.md``; plot ``few_shot.png``.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

import _harness as H  # noqa: E402

RECORD = H.RESULTS / "few_shot" / "results.json"
PLOT = HERE / "few_shot.png"
TEMPLATES = ["This article is about {}.", "A news story about {}.", "{} news"]
FEW_SHOT = {"FewShotClassifier": {}, "FewShot + init_from_labels": {"init_from_labels": True, "template": TEMPLATES}}
METHODS = ["TF-IDF + LogReg", "Frozen MiniLM + LogReg", "ZeroShotClassifier", *FEW_SHOT]
CONFIGS = {
    "full": dict(shots=[1, 2, 8, 64], splits=10, fs_splits=10, fs_splits_64=10, init_shots=[1, 2],
                 n_test_per_class=50, pool_per_class=100, chars=512, max_length=128),
    "quick": dict(shots=[1, 8], splits=2, fs_splits=1, fs_splits_64=1, init_shots=[1],
                  n_test_per_class=10, pool_per_class=16, chars=256, max_length=64),
}
log = H.log


def load_data(cfg):
    from sktransfer.datasets import load_bbc_news

    bbc = load_bbc_news()
    names = np.asarray(bbc.target_names)
    rng, test, pool = np.random.RandomState(0), [], []
    for k in range(len(names)):
        idx = rng.permutation(np.flatnonzero(bbc.target == k))
        test.append(idx[: cfg["n_test_per_class"]])
        pool.append(idx[cfg["n_test_per_class"] : cfg["n_test_per_class"] + cfg["pool_per_class"]])
    return [t[: cfg["chars"]] for t in bbc.data], names[bbc.target], names, np.concatenate(test), pool


def fmt(xs):
    if not xs:
        return "n/a"
    return f"{xs[0]:.3f} (1 split)" if len(xs) == 1 else f"{np.mean(xs):.3f} ± {np.std(xs):.3f} ({len(xs)})"


def measure(cfg, args):
    """``acc`` / ``secs`` / ``paired`` (FewShot minus the frozen probe): ``{method: {str(N): [per split]}}``."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from sktransfer import FewShotClassifier, PretrainedFeatureExtractor, ZeroShotClassifier, embedding_stats, get_config
    from sktransfer import reset_embedding_stats

    cache, ml = args.cache or get_config()["cache_dir"], cfg["max_length"]
    texts, y_all, names, test, pool = load_data(cfg)
    X_test, y_test, pool_idx = [texts[i] for i in test], y_all[test], np.concatenate(pool)
    reset_embedding_stats()
    t = time.perf_counter()
    ext = PretrainedFeatureExtractor(H.TEXT, max_length=ml, cache=cache).fit(X_test)
    Z_test = ext.transform(X_test)
    Z_pool = dict(zip(pool_idx.tolist(), ext.transform([texts[i] for i in pool_idx])))
    res = {"embed_s": time.perf_counter() - t, "stats": dict(embedding_stats()), "n_test": len(test), "n_pool": len(pool_idx),
           "fs_defaults": {k: v for k, v in FewShotClassifier().get_params().items() if k in ("n_pairs", "batch_size", "max_epochs", "lr")}}
    t = time.perf_counter()
    zs = ZeroShotClassifier(H.TEXT, template=TEMPLATES, max_length=ml, cache=cache).fit(None, names)
    res["zs_fit"], res["zs_acc"] = time.perf_counter() - t, float(zs.score(X_test, y_test))
    acc, secs = ({m: {str(n): [] for n in cfg["shots"]} for m in METHODS} for _ in range(2))
    paired = {m: {str(n): [] for n in cfg["shots"]} for m in FEW_SHOT}

    def record(m, n, a, s):
        acc[m][str(n)].append(a)
        secs[m][str(n)].append(s)

    for n in cfg["shots"]:
        for s in range(cfg["splits"]):
            rng = np.random.RandomState(1000 + s)
            idx = np.concatenate([rng.choice(p, n, replace=False) for p in pool])
            X_tr, y_tr = [texts[i] for i in idx], y_all[idx]
            t = time.perf_counter()
            tfidf = make_pipeline(TfidfVectorizer(sublinear_tf=True), LogisticRegression(max_iter=1000)).fit(X_tr, y_tr)
            record("TF-IDF + LogReg", n, float(tfidf.score(X_test, y_test)), time.perf_counter() - t)
            t = time.perf_counter()
            probe = LogisticRegression(max_iter=1000).fit(np.stack([Z_pool[i] for i in idx]), y_tr)
            t = time.perf_counter() - t
            frozen = float(probe.score(Z_test, y_test))
            record("Frozen MiniLM + LogReg", n, frozen, t)
            record("ZeroShotClassifier", n, res["zs_acc"], res["zs_fit"])
            if s >= (cfg["fs_splits_64"] if n >= 64 else cfg["fs_splits"]):
                continue
            for name, extra in FEW_SHOT.items():
                if (name == "FewShotClassifier" and n < 2) or (extra and n not in cfg["init_shots"]):
                    continue
                clf = FewShotClassifier(H.TEXT, max_length=ml, random_state=s, **extra)
                t = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # truncation notice
                    clf.fit(X_tr, y_tr)
                fit_s = time.perf_counter() - t
                a = float(clf.score(X_test, y_test))
                record(name, n, a, fit_s)
                paired[name][str(n)].append(a - frozen)
                log(f"  N={n} split {s} {name}: {a:.3f} (frozen {frozen:.3f}), fit {fit_s:.1f} s")
        log(f"N={n}: " + "; ".join(f"{m} {fmt(acc[m][str(n)])}" for m in METHODS))
    return dict(res, acc=acc, secs=secs, paired=paired)


def report(res, run, cfg, out=None):
    ns = [str(n) for n in cfg["shots"]]
    acc, secs, paired, zs = res["acc"], res["secs"], res["paired"], res["zs_acc"]
    cols = [f"N={n}" for n in ns]
    d8, t8 = paired["FewShotClassifier"].get("8", []), secs["FewShotClassifier"].get("8", [])
    # Met when the paired gain is positive on average and larger than its standard error.
    sem8 = float(np.std(d8, ddof=1) / np.sqrt(len(d8))) if len(d8) > 1 else float("inf")
    goals = [["FewShot beats the frozen probe at N=8",
              (f"paired Δ {np.mean(d8):+.3f}" if d8 else "paired Δ n/a") + (f" ± {sem8:.3f} (standard error)" if len(d8) > 1 else "")
              + f", higher on {int(np.sum(np.asarray(d8) > 0))} of {len(d8)} splits; accuracy {fmt(acc['FewShotClassifier'].get('8', []))}",
              "**met**" if d8 and np.mean(d8) > 0 and np.mean(d8) > sem8 else "**not met**"],
             ["FewShot trains in under a minute at N=8", "fit times " + (", ".join(f"{x:.0f} s" for x in t8) or "n/a"),
              "**met**" if t8 and max(t8) < 60 else "**not met**"]]
    for n in map(str, cfg["init_shots"]):
        a = acc["FewShot + init_from_labels"][n]
        if a:
            f = np.mean(acc["Frozen MiniLM + LogReg"][n][: len(a)])
            goals.append([f"Zero-shot initialisation beats zero-shot and the frozen probe at N={n}",
                          f"{np.mean(a):.3f} vs zero-shot {zs:.3f} and frozen probe {f:.3f} on the same splits",
                          "better than both" if np.mean(a) > max(zs, f) else "not better than both"])
    fsd = res["fs_defaults"]
    blocks = {
        "header": H.header(run), **cfg, "computed": res["stats"].get("computed", 0),
        "cache_hits": res["stats"].get("cache_hits", 0), "n_test": res["n_test"], "n_pool": res["n_pool"],
        "embed_s": f"{res['embed_s']:.0f}", "templates": TEMPLATES, "n_steps": fsd["n_pairs"] // fsd["batch_size"],
        **{f"fs_{k}": f"{v:g}" if k == "lr" else v for k, v in fsd.items()},
        "acc_table": H.md_table(["Method"] + cols, [[m] + [fmt(acc[m][n]) for n in ns] for m in METHODS]),
        "paired_table": H.md_table(["Paired Δ vs frozen probe, same splits"] + cols,
                                   [[m] + [f"{np.mean(d[n]):+.3f} ({len(d[n])})" if d[n] else "n/a" for n in ns] for m, d in paired.items()]),
        "time_table": H.md_table(["Training seconds (median)"] + cols,
                                 [[m] + [f"{np.median(secs[m][n]):.1f}" if secs[m][n] else "n/a" for n in ns] for m in METHODS]),
        "goals": H.md_table(["goal", "measured", "result"], goals, "lll"),
    }
    H.write_section("few_shot", blocks, out)


def plot(res, cfg, path):
    """Accuracy against labelled examples per class, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.4))
    for m in METHODS:
        if m == "ZeroShotClassifier":
            ax.axhline(res["zs_acc"], color="0.4", ls="--", lw=1, label=f"{m} (no labels)")
            continue
        a = {n: res["acc"][m][str(n)] for n in cfg["shots"] if res["acc"][m][str(n)]}
        if a:
            ax.errorbar(list(a), [np.mean(v) for v in a.values()], yerr=[np.std(v) for v in a.values()], marker="o", capsize=3,
                        label=f"{m} ({', '.join(str(len(v)) for v in a.values())} splits)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(cfg["shots"])
    ax.set_xticklabels([str(n) for n in cfg["shots"]])
    ax.set(xlabel="labelled articles per topic (N)", ylabel="test accuracy (5 topics)")
    ax.set_title("BBC News, all-MiniLM-L6-v2: few-shot and zero-shot (mean ± std over splits)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = H.parser(__doc__, threads=2)
    for key, what in (("splits", "the cheap methods"), ("fs-splits", "the FewShot methods (N < 64)"), ("fs-splits-64", "the FewShot methods at N=64")):
        p.add_argument(f"--{key}", type=int, help=f"splits per N for {what}")
    p.add_argument("--cache", default=None, help="embedding cache directory (default: sktransfer's, ~/.cache/sktransfer)")
    p.add_argument("--record", default=str(RECORD), help="JSON record to write (full run) or read (--report-only)")
    args = p.parse_args(argv)
    over = {k: getattr(args, k) for k in ("splits", "fs_splits", "fs_splits_64") if getattr(args, k) is not None}
    configs = {k: {**v, **over} for k, v in CONFIGS.items()}
    cfg, res, run = H.run_or_load(args, configs, measure, args.record, ["skorch", "xgboost"], calibrate=True)
    if res is not None:
        report(res, run, cfg)
        plot(res, cfg, PLOT)


if __name__ == "__main__":
    main()

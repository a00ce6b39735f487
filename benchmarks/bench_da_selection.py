#!/usr/bin/env python
"""Choosing the domain adaptation without target labels (issue 11, section 4).

For each shifted source -> target task, a ``GridSearchCV`` over
``EmbeddingDAClassifier`` candidates (adapter x head regularisation) is run
once per fold with all five of skada's unsupervised scorers
(``sktransfer.adaptation.unsupervised_scorer``), on source labels and
unlabelled target rows only (target labels are masked to -1 before the
search sees them), with skada's ``SourceTargetShuffleSplit``. Each scorer's
pick is then compared with the oracle: the candidate with the best target
accuracy (every candidate refitted on all source rows and all unlabelled
target rows, scored on the target labels: the transductive protocol of
``bench_adaptation.py``).

Tasks:

- Sentiment Labelled Sentences (``sktransfer.datasets.load_sentiment_sentences``):
  amazon, imdb, yelp -> 6 source -> target pairs, frozen all-MiniLM-L6-v2
  embeddings (max_length=128, cached in ~/.cache/sktransfer-suite).
- The 8 shifted image targets of ``bench_adaptation.py`` (Fashion-MNIST and
  digits; darkened, blurred, low contrast, inverted), frozen
  tf_efficientnet_lite0 embeddings at 32 px.

DANNClassifier is not measured here (one fine-tuning per candidate and fold
is beyond this CPU's budget); it accepts the same scorers.

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_da_selection.py          # full run, writes sections/da_selection.md
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_da_selection.py --quick  # smoke run, writes nothing
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
IMAGE = "timm/tf_efficientnet_lite0"
CACHE = "~/.cache/sktransfer-suite"
OUT = HERE / "sections" / "da_selection.md"
SCORERS = ["importance_weighted", "prediction_entropy", "dev", "snd", "circular"]

CONFIGS = {
    "full": dict(n_source=400, n_target=400, n_images=300, n_splits=3, test_size=0.3, images=True, pairs=None),
    "quick": dict(n_source=80, n_target=80, n_images=40, n_splits=2, test_size=0.3, images=False, pairs=1),
}

log = C.log


def candidates():
    """The grid: adapters (with a couple of settings) x the head's C."""
    adapters = [
        {"adapter": [None]},
        {"adapter": ["coral"]},
        {"adapter": ["subspace"], "adapter_params": [{"n_components": 16}, {"n_components": 64}]},
        {"adapter": ["tca"], "adapter_params": [{"n_components": 32}]},
        {"adapter": ["linear_ot"]},
        {"adapter": ["density_reweight"]},
        {"adapter": ["discriminator_reweight"]},
    ]
    return [dict(a, estimator__C=[0.1, 1.0]) for a in adapters]


def describe(params):
    a = params["adapter"] or "none"
    extra = params.get("adapter_params")
    if extra:
        a += "(" + ",".join(f"{k}={v}" for k, v in extra.items()) + ")"
    return f"{a}, C={params['estimator__C']:g}"


# ------------------------------------------------------------------ data
def sentiment_tasks(cfg):
    from sktransfer import PretrainedFeatureExtractor
    from sktransfer.datasets import load_sentiment_sentences

    d = load_sentiment_sentences()
    ext = PretrainedFeatureExtractor(TEXT, max_length=128, cache=CACHE, progress=False)
    t = time.perf_counter()
    Z = np.asarray(ext.fit_transform(d.data), dtype=np.float64)
    log(f"embedded {len(Z)} sentences in {time.perf_counter() - t:.0f} s")
    y, dom = np.asarray(d.target), np.asarray(d.domain)
    rng = np.random.RandomState(0)
    take = {k: rng.permutation(np.flatnonzero(dom == k)) for k in ("amazon", "imdb", "yelp")}
    tasks = {}
    for s in take:
        for t_ in take:
            if s != t_:
                si, ti = take[s][: cfg["n_source"]], take[t_][-cfg["n_target"] :]
                tasks[f"sentiment {s} → {t_}"] = (Z[si], y[si], Z[ti], y[ti])
    if cfg["pairs"]:
        tasks = dict(list(tasks.items())[: cfg["pairs"]])
    return tasks


def image_tasks(cfg):
    import shutil
    import tempfile

    import bench_adaptation as BA
    from sktransfer import PretrainedFeatureExtractor

    tasks = {}
    tmp = tempfile.mkdtemp(prefix="sktransfer-bench-da-selection-")
    try:
        bcfg = dict(n_source=cfg["n_images"], n_target=cfg["n_images"])
        for ds, (Xs, ys, Xt0, yt, sigma) in BA.load(bcfg).items():
            ext = PretrainedFeatureExtractor(IMAGE, image_size=32, batch_size=64, cache=tmp, progress=False).fit(Xs)
            Zs = np.asarray(ext.transform(Xs), dtype=np.float64)
            for shift, fn in BA.shifts(sigma).items():
                if shift.startswith("clean"):
                    continue
                tasks[f"{ds}, {shift}"] = (Zs, ys, np.asarray(ext.transform(fn(Xt0)), dtype=np.float64), yt)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return tasks


# ------------------------------------------------------------- selection
def run_task(Zs, ys, Zt, yt, cfg):
    import sklearn
    from sklearn.base import clone
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, ParameterGrid
    from skada.model_selection import SourceTargetShuffleSplit

    from sktransfer.adaptation import EmbeddingDAClassifier, unsupervised_scorer

    X = np.vstack([Zs, Zt])
    sd = np.r_[np.ones(len(Zs), dtype=np.int64), np.full(len(Zt), -2, dtype=np.int64)]
    y_masked = np.r_[ys, np.full(len(Zt), -1)]  # the search never sees a target label
    base = EmbeddingDAClassifier(estimator=LogisticRegression(max_iter=500))
    grid = candidates()
    scoring = {name: unsupervised_scorer(name, **({"random_state": 0} if name == "dev" else {})) for name in SCORERS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        t = time.perf_counter()
        with sklearn.config_context(enable_metadata_routing=True):
            search = GridSearchCV(
                base, grid, scoring=scoring, refit=False, error_score=np.nan,
                cv=SourceTargetShuffleSplit(n_splits=cfg["n_splits"], test_size=cfg["test_size"], random_state=0),
            ).fit(X, y_masked, sample_domain=sd)
        t_search = time.perf_counter() - t
        params = search.cv_results_["params"]
        t = time.perf_counter()
        acc = []
        for p in params:
            try:
                acc.append(clone(base).set_params(**p).fit(Zs, ys, X_target=Zt).score(Zt, yt))
            except Exception as exc:  # noqa: BLE001 - a failing candidate is reported, not fatal
                log(f"    {describe(p)} failed: {exc}")
                acc.append(np.nan)
        t_oracle = time.perf_counter() - t
    acc = np.asarray(acc)
    assert len(list(ParameterGrid(grid))) == len(params)
    res = {"candidates": [describe(p) for p in params], "acc": acc, "picks": {}, "scores": {}}
    none_idx = next(i for i, p in enumerate(params) if p["adapter"] is None and p["estimator__C"] == 1.0)
    res["no_adaptation"] = acc[none_idx]
    res["oracle"] = np.nanmax(acc)
    res["oracle_pick"] = res["candidates"][int(np.nanargmax(acc))]
    for name in SCORERS:
        s = np.asarray(search.cv_results_[f"mean_test_{name}"], dtype=float)
        res["scores"][name] = s
        if np.all(np.isnan(s)):
            res["picks"][name] = None
            continue
        i = int(np.nanargmax(s))
        res["picks"][name] = (res["candidates"][i], acc[i])
    res["seconds"] = (t_search, t_oracle)
    return res


# ---------------------------------------------------------------- report
def summary_rows(results):
    rows = []
    for name in SCORERS + ["no adaptation"]:
        gaps = []
        for r in results.values():
            if name == "no adaptation":
                gaps.append(r["oracle"] - r["no_adaptation"])
            elif r["picks"][name] is not None:
                gaps.append(r["oracle"] - r["picks"][name][1])
        gaps = np.asarray(gaps)
        beats = sum(
            1 for r in results.values()
            if name != "no adaptation" and r["picks"][name] is not None and r["picks"][name][1] > r["no_adaptation"] + 1e-9
        )
        rows.append([
            name, f"{int((gaps <= 0.02 + 1e-9).sum())}/{len(gaps)}", f"{gaps.mean():.3f}", f"{gaps.max():.3f}",
            "—" if name == "no adaptation" else f"{beats}/{len(gaps)}",
        ])
    return rows


def write_report(results, cfg, info, vers, command, started, elapsed):
    lines = [
        "## Choosing the domain adaptation without target labels (issue 11 §4)",
        "",
        C.machine_md(info, vers, command, started, elapsed),
        "- Protocol: per task, `GridSearchCV(EmbeddingDAClassifier(estimator=LogisticRegression(max_iter=500)), grid, "
        f"scoring={{all five unsupervised_scorer(...)}}, cv=SourceTargetShuffleSplit(n_splits={cfg['n_splits']}, "
        f"test_size={cfg['test_size']}), refit=False).fit(X, y_masked, sample_domain=sd)` under metadata routing; "
        "target labels are replaced by -1 before the search. Oracle: every candidate refitted on all source rows "
        "and all (unlabelled) target rows and scored on the target labels; its best accuracy. Gap = oracle "
        "accuracy minus the accuracy of the scorer's pick. One seed.",
        f"- Grid ({len(next(iter(results.values()))['candidates'])} candidates): adapter ∈ {{none, coral, subspace "
        "(16 or 64 components), tca (32), linear_ot, density_reweight, discriminator_reweight}} × "
        "LogisticRegression C ∈ {0.1, 1}. skada's scorers at their defaults (importance weights: kernel density, "
        "bandwidth 1, on the scorer's input, i.e. the standardised-by-nobody embeddings; DEV: logistic domain "
        "classifier, random_state=0; SND: T=0.05).",
        f"- Sentiment: Sentiment Labelled Sentences, {cfg['n_source']} source and {cfg['n_target']} target sentences "
        "per pair (random, disjoint), all-MiniLM-L6-v2 mean-pooled embeddings, max_length=128.",
    ]
    if cfg["images"]:
        lines.append(
            f"- Images: the 8 shifted targets of `bench_adaptation.py` ({cfg['n_images']} source and "
            f"{cfg['n_images']} target images each), tf_efficientnet_lite0 embeddings at 32 px."
        )
    lines += [
        "- DANNClassifier: not measured (a fine-tuning per candidate and fold is beyond this CPU's budget).",
        "",
        "### Summary: how often each scorer's pick is within 2 points of the oracle",
        "",
        C.md_table(
            ["scorer", "within 0.02 of oracle", "mean gap", "worst gap", "pick beats no adaptation"],
            summary_rows(results),
        ),
        "",
        "### Per task",
        "",
    ]
    headers = ["task", "no adaptation", "oracle (pick)"] + SCORERS
    rows = []
    for task, r in results.items():
        cells = []
        for name in SCORERS:
            p = r["picks"][name]
            if p is None:
                cells.append("failed")
            else:
                mark = "" if r["oracle"] - p[1] <= 0.02 + 1e-9 else " ✗"
                cells.append(f"{p[1]:.3f}{mark} ({p[0]})")
        rows.append([task, f"{r['no_adaptation']:.3f}", f"{r['oracle']:.3f} ({r['oracle_pick']})"] + cells)
    lines += [
        C.md_table(headers, rows),
        "",
        "Cells: target accuracy of the candidate the scorer picked (the candidate in brackets); ✗ = more than "
        "0.02 below the oracle.",
        "",
        "### Time per task (mean seconds)",
        "",
        C.md_table(
            ["search (all folds, candidates, scorers)", "oracle refits"],
            [[f"{np.mean([r['seconds'][0] for r in results.values()]):.1f}",
              f"{np.mean([r['seconds'][1] for r in results.values()]):.1f}"]],
            "rr",
        ),
        "",
    ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines).rstrip() + "\n")
    return OUT


# ------------------------------------------------------------------ main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny smoke run; writes nothing")
    p.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (default 1: the machine is shared)")
    args = p.parse_args(argv)
    cfg = CONFIGS["quick" if args.quick else "full"]

    C.limit_threads(args.threads)
    started = C.utc_now()
    t0 = time.perf_counter()
    info = C.machine_info()
    info["threads_set"] = args.threads
    vers = C.versions(extra=["skada", "POT"])
    log(f"bench_da_selection ({'quick' if args.quick else 'full'}): load {info.get('loadavg_start')}")
    tasks = sentiment_tasks(cfg)
    if cfg["images"]:
        tasks.update(image_tasks(cfg))
    results = {}
    for name, (Zs, ys, Zt, yt) in tasks.items():
        r = run_task(Zs, ys, Zt, yt, cfg)
        results[name] = r
        log(f"{name:48s} none={r['no_adaptation']:.3f} oracle={r['oracle']:.3f} "
            + " ".join(f"{k}={v[1]:.3f}" if v else f"{k}=failed" for k, v in r["picks"].items())
            + f"  ({sum(r['seconds']):.0f} s)")
    elapsed = time.perf_counter() - t0
    try:
        info["loadavg_end"] = tuple(round(x, 2) for x in os.getloadavg())
    except OSError:
        pass
    for row in summary_rows(results):
        log("  " + " | ".join(row))
    if args.quick:
        log(f"quick run done in {elapsed:.0f} s (nothing written)")
        return
    out = write_report(results, cfg, info, vers, C.command_line(), started, elapsed)
    log(f"wrote {out} in {elapsed / 60:.1f} min")


if __name__ == "__main__":
    main()

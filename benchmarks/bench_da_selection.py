#!/usr/bin/env python
"""Choosing the domain adaptation without target labels (issue 11, section 4).

For each shifted source -> target task, a ``GridSearchCV`` over
``EmbeddingDAClassifier`` candidates (``GRID``: adapter x head C) runs once
with all five of skada's unsupervised scorers (``SCORERS``), on source labels
and unlabelled target rows only (target labels masked to -1), with skada's
``SourceTargetShuffleSplit``. Each scorer's pick is compared with the oracle:
the candidate with the best target accuracy (every candidate refitted on all
source rows and unlabelled target rows, scored on the target labels).

Tasks: Sentiment Labelled Sentences (amazon, imdb, yelp: 6 source -> target
pairs, frozen all-MiniLM-L6-v2 embeddings) and the 8 shifted image targets of
``bench_adaptation.py`` (``_harness.load_shifted``, tf_efficientnet_lite0 at
32 px). DANNClassifier is not measured (one fine-tuning per candidate and fold
is beyond this CPU's budget).

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_da_selection.py               # full run: record + section
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_da_selection.py --quick       # smoke run, writes nothing
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_da_selection.py --report-only # rebuild from the record

Record: ``benchmarks/results/da_selection/results.json``; prose: ``sections/da_selection_notes.md``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

import _harness as H  # noqa: E402

RECORD = H.RESULTS / "da_selection" / "results.json"
CACHE = "~/.cache/sktransfer-suite"
SCORERS = ["importance_weighted", "prediction_entropy", "dev", "snd", "circular"]
GRID = [dict(a, estimator__C=[0.1, 1.0]) for a in [
    {"adapter": [None]},
    {"adapter": ["coral"]},
    {"adapter": ["subspace"], "adapter_params": [{"n_components": 16}, {"n_components": 64}]},
    {"adapter": ["tca"], "adapter_params": [{"n_components": 32}]},
    {"adapter": ["linear_ot"]},
    {"adapter": ["density_reweight"]},
    {"adapter": ["discriminator_reweight"]},
]]
CONFIGS = {
    "full": dict(n_source=400, n_target=400, n_images=300, n_splits=3, test_size=0.3, images=True, pairs=None),
    "quick": dict(n_source=80, n_target=80, n_images=40, n_splits=2, test_size=0.3, images=False, pairs=1),
}
TOL = 0.02 + 1e-9  # "within 2 points of the oracle"
log = H.log


def describe(params):
    a, extra = params["adapter"] or "none", params.get("adapter_params")
    if extra:
        a += "(" + ",".join(f"{k}={v}" for k, v in extra.items()) + ")"
    return f"{a}, C={params['estimator__C']:g}"


def sentiment_tasks(cfg):
    from sktransfer import PretrainedFeatureExtractor
    from sktransfer.datasets import load_sentiment_sentences

    d = load_sentiment_sentences()
    Z = np.asarray(PretrainedFeatureExtractor(H.TEXT, max_length=128, cache=CACHE, verbose=False).fit_transform(d.data),
                   dtype=np.float64)
    y, dom = np.asarray(d.target), np.asarray(d.domain)
    rng = np.random.RandomState(0)
    take = {k: rng.permutation(np.flatnonzero(dom == k)) for k in ("amazon", "imdb", "yelp")}
    tasks = {}
    for s in take:
        for t in take:
            if s != t:
                si, ti = take[s][: cfg["n_source"]], take[t][-cfg["n_target"] :]
                tasks[f"sentiment {s} → {t}"] = (Z[si], y[si], Z[ti], y[ti])
    return dict(list(tasks.items())[: cfg["pairs"]]) if cfg["pairs"] else tasks


def image_tasks(cfg):
    from sktransfer import PretrainedFeatureExtractor

    tasks, tmp = {}, tempfile.mkdtemp(prefix="sktransfer-bench-da-selection-")
    try:
        for ds, (Xs, ys, Xt0, yt, sigma) in H.load_shifted(dict(n_source=cfg["n_images"], n_target=cfg["n_images"])).items():
            ext = PretrainedFeatureExtractor(H.IMAGE, image_size=32, batch_size=64, cache=tmp, verbose=False).fit(Xs)
            Zs = np.asarray(ext.transform(Xs), dtype=np.float64)
            for shift, fn in H.shifts(sigma).items():
                if not shift.startswith("clean"):
                    tasks[f"{ds}, {shift}"] = (Zs, ys, np.asarray(ext.transform(fn(Xt0)), dtype=np.float64), yt)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return tasks


def run_task(Zs, ys, Zt, yt, cfg):
    """Candidates, their target accuracy, each scorer's mean CV score, and the two timings."""
    import sklearn
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from skada.model_selection import SourceTargetShuffleSplit

    from sktransfer.adaptation import EmbeddingDAClassifier, unsupervised_scorer

    X = np.vstack([Zs, Zt])
    sd = np.r_[np.ones(len(Zs), dtype=np.int64), np.full(len(Zt), -2, dtype=np.int64)]
    y_masked = np.r_[ys, np.full(len(Zt), -1)]  # the search never sees a target label
    base = EmbeddingDAClassifier(estimator=LogisticRegression(max_iter=500))
    scoring = {name: unsupervised_scorer(name, **({"random_state": 0} if name == "dev" else {})) for name in SCORERS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        with sklearn.config_context(enable_metadata_routing=True):
            search = GridSearchCV(
                base, GRID, scoring=scoring, refit=False, error_score=np.nan,
                cv=SourceTargetShuffleSplit(n_splits=cfg["n_splits"], test_size=cfg["test_size"], random_state=0),
            ).fit(X, y_masked, sample_domain=sd)
        t_search, t = time.perf_counter() - t, time.perf_counter()
        params, acc = search.cv_results_["params"], []
        for p in params:
            try:
                acc.append(float(clone(base).set_params(**p).fit(Zs, ys, X_target=Zt).score(Zt, yt)))
            except Exception as exc:  # noqa: BLE001 - a failing candidate is reported, not fatal
                log(f"    {describe(p)} failed: {exc}")
                acc.append(None)
    return {"candidates": [describe(p) for p in params], "acc": acc, "seconds": [t_search, time.perf_counter() - t],
            "scores": {n: [float(v) for v in search.cv_results_[f"mean_test_{n}"]] for n in SCORERS}}


def picks(r):
    """``(no adaptation, oracle, oracle's pick, {scorer: (pick, its accuracy) or None})`` of one task."""
    acc = np.array([np.nan if a is None else a for a in r["acc"]])
    out = {}
    for name in SCORERS:
        s = np.array(r["scores"][name], dtype=float)
        i = None if np.all(np.isnan(s)) else int(np.nanargmax(s))
        out[name] = None if i is None else (r["candidates"][i], acc[i])
    return acc[r["candidates"].index("none, C=1")], np.nanmax(acc), r["candidates"][int(np.nanargmax(acc))], out


def report(res, run, cfg, out=None):
    P = {task: picks(r) for task, r in res.items()}
    summary = []
    for name in SCORERS + ["no adaptation"]:
        if name == "no adaptation":
            gaps = np.array([o - none for none, o, _, _ in P.values()])
        else:
            gaps = np.array([o - p[name][1] for _, o, _, p in P.values() if p[name] is not None])
        beats = sum(1 for none, _, _, p in P.values() if name in p and p[name] is not None and p[name][1] > none + 1e-9)
        summary.append([name, f"{int((gaps <= TOL).sum())}/{len(gaps)}", f"{gaps.mean():.3f}", f"{gaps.max():.3f}",
                        "—" if name == "no adaptation" else f"{beats}/{len(gaps)}"])
    rows = [[task, f"{none:.3f}", f"{o:.3f} ({opick})"]
            + ["failed" if p[n] is None else f"{p[n][1]:.3f}{'' if o - p[n][1] <= TOL else ' ✗'} ({p[n][0]})" for n in SCORERS]
            for task, (none, o, opick, p) in P.items()]
    sec = np.mean([r["seconds"] for r in res.values()], axis=0)
    images = (f"- Images: the 8 shifted targets of `bench_adaptation.py` ({cfg['n_images']} source and {cfg['n_images']} "
              "target images each), tf_efficientnet_lite0 embeddings at 32 px.") if cfg["images"] else ""
    blocks = {
        "header": H.header(run), **cfg, "n_candidates": len(next(iter(res.values()))["candidates"]), "images": images,
        "summary": H.md_table(["scorer", "within 0.02 of oracle", "mean gap", "worst gap", "pick beats no adaptation"], summary),
        "per_task": H.md_table(["task", "no adaptation", "oracle (pick)"] + SCORERS, rows),
        "time_table": H.md_table(["search (all folds, candidates, scorers)", "oracle refits"], [[f"{sec[0]:.1f}", f"{sec[1]:.1f}"]], "rr"),
    }
    H.write_section("da_selection", blocks, out)


def measure(cfg, args):
    tasks = sentiment_tasks(cfg)
    if cfg["images"]:
        tasks.update(image_tasks(cfg))
    res = {}
    for name, task in tasks.items():
        res[name] = run_task(*task, cfg)
        none, o, _, p = picks(res[name])
        log(f"{name:48s} none={none:.3f} oracle={o:.3f} "
            + " ".join(f"{k}={v[1]:.3f}" if v else f"{k}=failed" for k, v in p.items()))
    return res


def main(argv=None):
    p = H.parser(__doc__)
    p.add_argument("--record", default=str(RECORD), help="JSON record to write (full run) or read (--report-only)")
    args = p.parse_args(argv)
    cfg, res, run = H.run_or_load(args, CONFIGS, measure, args.record, ["skada", "POT"])
    if res is not None:
        report(res, run, cfg)


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Benchmark of transferability scores and ``BackboneSelector`` (issue #6).

For each data set, candidate feature extractors (``image_candidates`` /
``text_candidates``: pretrained backbones, their intermediate layers, and
randomly initialised twins) are ranked by each transferability score and by
the cross-validated accuracy of a linear probe on the same frozen embeddings.
Agreement: Kendall's tau and the weighted tau (which weighs the top of the
ranking more); cost: a score vs the probe on the same embeddings. Data
(subsampled, stratified; the machine is a shared 2-core CPU): Fashion-MNIST
and sklearn digits (``n_img`` images at ``image_size`` px), BBC News
(``n_text`` articles, first ``text_chars`` characters).

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_selection.py               # full run: record + section
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_selection.py --quick       # smoke run, writes nothing
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_selection.py --report-only # rebuild from the record

Record: ``benchmarks/results/selection/results.json``; prose: ``sections/selection_notes.md``.
"""

from __future__ import annotations

import copy
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

RECORD = H.RESULTS / "selection" / "results.json"
TV = "torchvision/mobilenet_v2"
CONFIGS = {
    "full": dict(n_img=500, image_size=64, n_text=250, text_chars=1000, max_length=64, cv=5),
    "quick": dict(n_img=60, image_size=32, n_text=25, text_chars=200, max_length=32, cv=3),
}
FEATURE_SCORES = ("logme", "hscore", "regularized_hscore")
SCORE_NAMES = {"logme": "LogME", "hscore": "H-score", "regularized_hscore": "reg. H-score", "leep": "LEEP", "nce": "NCE"}
log = H.log


def fmt(v, nd=3):
    return H.fmt(v, nd)


def load_data(cfg):
    from sklearn.datasets import load_digits

    from sktransfer.datasets import load_bbc_news, load_fashion_mnist

    def strat(y, n, seed):
        rng = np.random.RandomState(seed)
        return np.concatenate([rng.choice(np.flatnonzero(y == c), n // len(np.unique(y)), replace=False) for c in np.unique(y)])

    X, y = load_fashion_mnist(subset="train", return_X_y=True)
    d, bbc = load_digits(), load_bbc_news()
    i, j, k = strat(y, cfg["n_img"], 0), strat(d.target, cfg["n_img"], 1), strat(bbc.target, cfg["n_text"], 2)
    return {"Fashion-MNIST": (X[i], y[i]), "digits (8x8, upscaled)": ((d.images[j] * 16).clip(0, 255).astype(np.uint8), d.target[j]),
            "BBC News": ([bbc.data[m][: cfg["text_chars"]] for m in k], bbc.target[k])}


def image_candidates():
    """(name, extractor params, source model for LEEP/NCE or None)."""
    import timm
    import torch
    import torchvision

    torch.manual_seed(0)
    eff_random = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()  # head kept: LEEP works
    mnv_random_head = torchvision.models.mobilenet_v2(weights=None).eval()
    mnv_random = copy.deepcopy(mnv_random_head)
    mnv_random.classifier = torch.nn.Identity()  # its output is the 1280-d embedding
    return [
        ("efficientnet_lite0", {"backbone": H.IMAGE}, H.IMAGE),
        ("efficientnet_lite0 layer 4 (80-d)", {"backbone": H.IMAGE, "layer": 4}, None),
        ("efficientnet_lite0 layer 6 (192-d)", {"backbone": H.IMAGE, "layer": 6}, None),
        ("efficientnet_lite0 random init", {"backbone": eff_random}, eff_random),
        ("mobilenet_v2", {"backbone": TV}, TV),
        ("mobilenet_v2 layer 13 (96-d)", {"backbone": TV, "layer": 13}, None),
        ("mobilenet_v2 layer 16 (160-d)", {"backbone": TV, "layer": 16}, None),
        ("mobilenet_v2 random init", {"backbone": mnv_random}, mnv_random_head),
    ]


def text_candidates():
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    from sktransfer.backbones._offline import known_local_path

    st = SentenceTransformer(str(known_local_path(H.TEXT)), device="cpu")
    torch.manual_seed(0)
    st[0].model = AutoModel.from_config(st[0].model.config)  # same architecture, random weights
    st.eval()
    return [("MiniLM-L6 final (mean pool + normalize)", {"backbone": H.TEXT}, None)] + [
        (f"MiniLM-L6 layer {k}", {"backbone": H.TEXT, "layer": k}, None) for k in (1, 3, 5)] + [
        ("MiniLM-L6 random init, final", {"backbone": st}, None), ("MiniLM-L6 random init, layer 3", {"backbone": st, "layer": 3}, None)]


def probe_head():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=300, tol=1e-3))  # 300 iterations: within 0.005 of 1000


def timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def run_dataset(X, y, candidates, cfg, cache_dir):
    """One row per candidate: its dimension, every score, the probe's CV accuracy, and their seconds."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    from sktransfer import PretrainedFeatureExtractor
    from sktransfer.selection import BackboneSelector, SourceProbabilityExtractor, leep_score, nce_score
    from sktransfer.selection._scores import SCORES

    common = {"max_length": cfg["max_length"], "batch_size": 32} if isinstance(X, list) else {"image_size": cfg["image_size"], "batch_size": 64}
    rows = []
    for cname, params, source in candidates:
        Z, embed_s = timed(PretrainedFeatureExtractor(**params, **common, cache=cache_dir, verbose=False).fit_transform, X)
        row = {"candidate": cname, "embed_s": embed_s, "dim": int(Z.shape[1])}
        for s in FEATURE_SCORES:
            row[s], row[f"{s}_s"] = timed(lambda: float(SCORES[s](Z, y)))
        if source is not None:
            P, row["proba_s"] = timed(SourceProbabilityExtractor(source, image_size=cfg["image_size"], batch_size=64).fit_transform, X)
            row["leep"], row["leep_s"] = timed(lambda: float(leep_score(P, y)))
            row["nce"] = float(nce_score(P, y))
        cv = StratifiedKFold(cfg["cv"], shuffle=True, random_state=0)
        row["probe"], row["probe_s"] = timed(lambda: float(cross_val_score(probe_head(), Z, y, cv=cv).mean()))
        log(f"  {cname:42s} d={row['dim']:5d} embed {embed_s:6.1f} s  LogME {row['logme']:+.4f}  probe {row['probe']:.3f}")
        rows.append(row)
    # BackboneSelector on the same candidates (embeddings from the warm cache), plus one that fails to load.
    cands = [{**params, "name": cname} for cname, params, _ in candidates]
    cands.append({"backbone": "timm/this_model_does_not_exist", "name": "a candidate that fails to load"})
    sel, sel_s = timed(BackboneSelector(cands, metric="logme", estimator=probe_head(), confirm_top_k=2, cv=cfg["cv"], cache=cache_dir,
                                        extractor_params=common).fit, X, y)
    failed = sel.ranking_[sel.ranking_["error"].notna()]
    return {"rows": rows, "selector": {"best": sel.best_candidate_, "seconds": sel_s, "errors": [str(e) for e in failed["error"]]}}


def measure(cfg, args):
    res, cache_dir = {}, tempfile.mkdtemp(prefix="sktransfer-bench-selection-")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning of the probe (max_iter=300)
            for ds, (X, y) in load_data(cfg).items():
                log(f"{ds}: n={len(y)}")
                res[ds] = run_dataset(X, y, text_candidates() if isinstance(X, list) else image_candidates(), cfg, cache_dir)
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    return res


def agreement(rows, score):
    from scipy.stats import kendalltau, weightedtau

    have = [r for r in rows if score in r]
    if len(have) < 3:
        return None
    s, p = np.array([r[score] for r in have]), np.array([r["probe"] for r in have])
    top, best = have[int(np.argmax(s))], max(r["probe"] for r in have)
    return {"n": len(have), "tau": float(kendalltau(s, p).statistic), "wtau": float(weightedtau(s, p).statistic),
            "picked": top["candidate"], "picked_acc": top["probe"], "best_acc": best, "regret": best - top["probe"]}


def dataset_table(rows):
    leep = any("leep" in r for r in rows)
    headers = ["candidate", "dim", "LogME", "H-score", "reg. H-score"] + (["LEEP", "NCE"] if leep else []) + [
        "probe acc", "embed s", "LogME ms", "probe s"]
    out = [[r["candidate"], r["dim"], fmt(r["logme"], 4), fmt(r["hscore"]), fmt(r["regularized_hscore"])]
           + ([fmt(r.get("leep")), fmt(r.get("nce"))] if leep else [])
           + [fmt(r["probe"]), fmt(r["embed_s"], 1), fmt(r["logme_s"] * 1000, 1), fmt(r["probe_s"], 2)]
           for r in sorted(rows, key=lambda r: -r["probe"])]
    return H.md_table(headers, out, "l" + "r" * (len(headers) - 1))


def notes(ds, rows):
    """Generated remarks on one data set: where LogME ranks badly, random twins, the H-score ceiling."""
    out, a = [], agreement(rows, "logme")
    if a and a["regret"] > 0:
        best = max(rows, key=lambda r: r["probe"])
        out.append(f"- Ranks badly: on {ds} LogME put *{a['picked']}* first (probe {a['picked_acc']:.3f}) but "
                   f"*{best['candidate']}* probes best ({best['probe']:.3f}).")
    rand, pre = [r for r in rows if "random" in r["candidate"]], [r for r in rows if "random" not in r["candidate"]]
    if rand and pre:
        above = [r["candidate"] for r in rand if r["logme"] > min(r["logme"] for r in pre)]
        out.append(f"- On {ds}, LogME scores random-init twin(s) {', '.join(above)} above at least one pretrained candidate."
                   if above else f"- On {ds}, every random-init twin scores below every pretrained candidate (LogME).")
    k = {"BBC News": 5}.get(ds, 10)
    top = [r for r in rows if r["hscore"] > (k - 1) - 1e-6]
    if top:
        out.append(f"- On {ds} the plain H-score equals its ceiling ({k - 1}) for {len(top)} of {len(rows)} candidates (those with "
                   "d >= n - 1, where the features separate any labelling in-sample): it cannot rank them. The shrinkage H-score "
                   f"of the same candidates stays below the ceiling ({min(r['regularized_hscore'] for r in top):.2f}-"
                   f"{max(r['regularized_hscore'] for r in top):.2f}).")
    return out


def report(res, run, cfg, out=None):
    rows_of = {ds: r["rows"] for ds, r in res.items()}
    summary, cost, per_score = [], [], []
    for ds, rows in rows_of.items():
        for score in SCORE_NAMES:
            a = agreement(rows, score)
            if a:
                summary.append([ds, SCORE_NAMES[score], a["n"], fmt(a["tau"], 2), fmt(a["wtau"], 2), a["picked"],
                                fmt(a["picked_acc"]), fmt(a["best_acc"]), fmt(a["regret"])])
        med = {k: np.median([r[k] for r in rows]) for k in ("logme_s", "regularized_hscore_s", "probe_s", "embed_s")}
        ratio = sum(r["probe_s"] for r in rows) / sum(r["logme_s"] for r in rows)
        cost.append([ds, fmt(med["logme_s"] * 1000, 1), fmt(med["regularized_hscore_s"] * 1000, 1), fmt(med["probe_s"], 2),
                     f"{ratio:,.0f}×", fmt(med["embed_s"], 1), float(f"{ratio:.0f}"), med["probe_s"], med["embed_s"]])
    for s in FEATURE_SCORES:
        v = [a for a in (agreement(rows, s) for rows in rows_of.values()) if a]
        per_score.append([SCORE_NAMES[s], ", ".join(f"{a['tau']:.2f}" for a in v), f"{np.mean([a['tau'] for a in v]):.2f}",
                          f"{np.mean([a['wtau'] for a in v]):.2f}", f"{sum(a['regret'] == 0 for a in v)} of {len(v)}",
                          f"{np.mean([a['regret'] for a in v]):.3f}"])
    sel_rows = []
    for ds, r in res.items():
        sel = r["selector"]
        sel_acc = next(x["probe"] for x in r["rows"] if x["candidate"] == sel["best"])
        sel_rows.append([ds, sel["best"], fmt(sel_acc), fmt(max(x["probe"] for x in r["rows"])), fmt(sel["seconds"], 1),
                         f"{len(sel['errors'])} reported: `{sel['errors'][0][:70]}…`" if sel["errors"] else "none"])
    lo_hi = lambda i, f: f"{format(min(c[i] for c in cost), f)}-{format(max(c[i] for c in cost), f)}"  # noqa: E731
    blocks = {
        "header": H.header(run), **cfg, "n_max": max(cfg["n_img"], cfg["n_text"]),
        "agreement": H.md_table(["data set", "score", "candidates", "Kendall τ", "weighted τ", "top by score", "its probe acc",
                                 "best probe acc", "regret"], summary, "llrrrlrrr"),
        "cost": H.md_table(["data set", "LogME ms (median)", "reg. H-score ms", f"{cfg['cv']}-fold probe s (median)",
                            "probe / LogME (total)", "embedding s (median)"], [c[:6] for c in cost], "lrrrrr"),
        "probe_range": lo_hi(7, ".2f"), "ratio_range": lo_hi(6, ".0f"), "embed_range": lo_hi(8, ".1f"),
        "datasets": "\n\n".join(f"### {ds}\n\n{dataset_table(rows)}" for ds, rows in rows_of.items()),
        "selector": H.md_table(["data set", "chosen (LogME, top 2 confirmed by probe)", "its probe acc", "best probe acc",
                                "fit s (warm cache)", "failed candidates"], sel_rows, "lllrrl"),
        "per_score": H.md_table(["score", "Kendall τ per data set", "mean τ", "mean weighted τ", "top-scored = probe's best",
                                 "mean regret"], per_score, "llrrrr"),
        "notes": "\n".join(n for ds, rows in rows_of.items() for n in notes(ds, rows)),
        "logme_wtau": f"{np.mean([a['wtau'] for a in (agreement(rows, 'logme') for rows in rows_of.values()) if a]):.2f}",
    }
    H.write_section("selection", blocks, out)


def main(argv=None):
    p = H.parser(__doc__)
    p.add_argument("--record", default=str(RECORD), help="JSON record to write (full run) or read (--report-only)")
    args = p.parse_args(argv)
    cfg, res, run = H.run_or_load(args, CONFIGS, measure, args.record, ["scipy", "skada"])
    if res is not None:
        report(res, run, cfg)


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Benchmark of unsupervised domain adaptation under synthetic image shifts.

Source: labelled clean images (Fashion-MNIST training images; sklearn
digits). Target: *other* images of the same data set, shifted four ways
(darkened, blurred, low contrast, inverted) and given without labels; the
data and shifts are ``_harness.load_shifted`` / ``_harness.shifts``.
Reported: accuracy on the shifted target images (transductive protocol).
The arms are declared in ``ARMS``, all on ``tf_efficientnet_lite0``.

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_adaptation.py               # full run: record + section
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_adaptation.py --quick       # smoke run, writes nothing
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_adaptation.py --report-only # rebuild from the record

Record: ``benchmarks/results/adaptation/results.json``; prose: ``sections/adaptation_notes.md``.
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

RECORD = H.RESULTS / "adaptation" / "results.json"
# Each arm: (kind, parameters). "frozen": extractor + StandardScaler + LogisticRegression;
# "embedding_da": EmbeddingDAClassifier(adapter); "dann": DANNClassifier(domain_weight).
ARMS = {
    "no adaptation": ("frozen", {}),
    "CORAL": ("embedding_da", {"adapter": "coral"}),
    "subspace alignment": ("embedding_da", {"adapter": "subspace", "n_components": "sa_components"}),
    "fine-tune, domain_weight=0": ("dann", {"domain_weight": 0.0}),
    "DANN": ("dann", {"domain_weight": 1.0}),
}
METHODS = list(ARMS)
log = H.log


def fit_arm(kind, params, Xs, ys, Xt, cfg, cache_dir):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sktransfer import PretrainedFeatureExtractor
    from sktransfer.adaptation import DANNClassifier, EmbeddingDAClassifier

    ext = PretrainedFeatureExtractor(H.IMAGE, image_size=cfg["image_size"], batch_size=64, cache=cache_dir, verbose=False)
    head = LogisticRegression(max_iter=300, tol=1e-3)
    if kind == "frozen":
        return make_pipeline(ext, StandardScaler(), head).fit(Xs, ys)
    if kind == "embedding_da":
        extra = {"n_components": cfg[params["n_components"]]} if "n_components" in params else None
        return EmbeddingDAClassifier(ext, params["adapter"], head, adapter_params=extra).fit(Xs, ys, X_target=Xt)
    clf = DANNClassifier(H.IMAGE, image_size=cfg["image_size"], max_epochs=cfg["epochs"], domain_weight=params["domain_weight"],
                         **H.DANN)
    return clf.fit(Xs, ys, X_target=Xt)


def measure(cfg, args):
    """``{data set: {target: {arm: accuracy, ..., "seconds": {arm: s}, "domain_acc": DANN's last epoch}}}``."""
    from sklearn.exceptions import ConvergenceWarning

    res = {}
    cache_dir = tempfile.mkdtemp(prefix="sktransfer-bench-adaptation-")
    try:
        for ds, (Xs, ys, Xt0, yt, sigma) in H.load_shifted(cfg).items():
            for shift, fn in H.shifts(sigma).items():
                Xt, r = fn(Xt0), {"seconds": {}}
                for arm, (kind, params) in ARMS.items():
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", ConvergenceWarning)
                        t = time.perf_counter()
                        clf = fit_arm(kind, params, Xs, ys, Xt, cfg, cache_dir)
                        r[arm] = float(clf.score(Xt, yt))
                    r["seconds"][arm] = time.perf_counter() - t
                    if arm == "DANN":
                        r["domain_acc"] = float(np.mean([b["domain_acc"] for b in clf.history_[-1]["batches"]]))
                res.setdefault(ds, {})[shift] = r
                log(f"{ds:22s} {shift:34s} " + "  ".join(f"{m}={r[m]:.3f}" for m in METHODS))
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    return res


def report(res, run, cfg, out=None):
    tables = []
    for ds, per_shift in res.items():
        rows = []
        for shift, r in per_shift.items():
            best = max(r[m] for m in METHODS)
            rows.append([shift] + [f"**{r[m]:.3f}**" if r[m] == best else f"{r[m]:.3f}" for m in METHODS]
                        + [f"{r['domain_acc']:.2f}"])
        tables += [f"### {ds}", "", H.md_table(["target"] + METHODS + ["DANN domain acc"], rows), ""]
    tmean = [np.mean([r["seconds"][m] for per in res.values() for r in per.values()]) for m in METHODS]
    shifted = [(ds, s, r) for ds, per in res.items() for s, r in per.items() if not s.startswith("clean")]
    gains = []
    for m, ref in [(m, "no adaptation") for m in METHODS[1:]] + [("DANN", "fine-tune, domain_weight=0")]:
        g = np.array([r[m] - r[ref] for _, _, r in shifted])
        gains.append([f"{m} − {ref}", f"{g.mean():+.3f}", int((g > 0.01).sum()), int((g < -0.01).sum()),
                      f"{g.min():+.3f} to {g.max():+.3f}"])
    notes = [f"- {ds}, {s}: nothing beat the unadapted frozen baseline ({r['no adaptation']:.3f})."
             for ds, s, r in shifted if max(r[m] for m in METHODS) - r["no adaptation"] < 0.01]
    for ds, per in res.items():
        r = next(r for s, r in per.items() if s.startswith("clean"))
        hurt = [m for m in METHODS[1:3] if r[m] < r["no adaptation"] - 0.01]
        if hurt:
            notes.append(f"- {ds} without shift: {', '.join(hurt)} cost accuracy ({', '.join(f'{r[m]:.3f}' for m in hurt)} "
                         f"vs {r['no adaptation']:.3f}): adapting when there is no shift is not free.")
    blocks = {
        "header": H.header(run), **cfg, **H.DANN, "tables": "\n".join(tables),
        "time_table": H.md_table(METHODS, [[f"{t:.1f}" for t in tmean]], "r" * len(METHODS)),
        "n_shifted": len(shifted), "notes": "\n".join(notes),
        "gain_table": H.md_table(["difference", "mean", "better (> +0.01)", "worse (< −0.01)", "range"], gains, "lrrrl"),
    }
    H.write_section("adaptation", blocks, out)


def main(argv=None):
    p = H.parser(__doc__)
    p.add_argument("--record", default=str(RECORD), help="JSON record to write (full run) or read (--report-only)")
    args = p.parse_args(argv)
    cfg, res, run = H.run_or_load(args, H.ADAPT_CFG, measure, args.record, ["skada", "skorch", "POT"])
    if res is not None:
        report(res, run, cfg)


if __name__ == "__main__":
    main()

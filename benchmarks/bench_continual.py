#!/usr/bin/env python
"""Benchmark of sequential tasks and forgetting (continual transfer; issue 15, part 5).

Fine-tune on task A, then on task B from A's weights
(``FineTunedClassifier(backbone=clf_a)``: A's trained body, a new head for
B's classes). How much of task A survives, measured with A's own head on the
body after B, and what B costs, for four arms:

* **sequential**: plain full fine-tuning on B from A;
* **L2-SP at A**: the same with ``l2sp`` (its anchor is the start: A's weights);
* **WiSE-FT A↔A→B**: ``set_wise_alpha(alpha)`` on the sequential model mixes
  A's body and A→B's (A's head on it: ``(alpha * task_vector(clf_ab)).apply(clf_a)``),
  alpha chosen on A + B validation rows (mean of the two accuracies);
* **merging**: A and B each fine-tuned from the pretrained backbone, then
  ``pretrained + lam * (tau_A + tau_B)`` (``sktransfer.merging.task_vector``),
  each task with its own head, lam chosen on the same validation rows.

Two pairs: BBC News topics → sentiment sentences
(``all-MiniLM-L6-v2``) and digits → Fashion-MNIST (``tf_efficientnet_lite0``
at 32 px). Data, recipes and test splits are ``bench_merging.py``'s (the
suite's fixed test splits, per-seed training and validation draws), 3 seeds,
paired differences against the sequential arm. Also, per arm,
``forgetting_report(model, X_A, y_A)``: a probe refitted on the body's
features (A's head aside), for the arms that are models fitted from A.

Usage::

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_continual.py               # full run
    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_continual.py --quick       # smoke run, writes nothing
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_continual.py --report-only                   # rebuild from the record

Record: ``benchmarks/results/continual/results.json``; prose:
``sections/continual_notes.md``; plot: ``benchmarks/continual.png``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
for _p in (HERE, HERE / "suite"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import _harness as H  # noqa: E402
import bench_merging as BM  # noqa: E402  (data, recipes and helpers of the merging benchmark)
import numpy as np  # noqa: E402

RECORD = H.RESULTS / "continual" / "results.json"
PLOT = HERE / "continual.png"
log = H.log

# (task A, task B, recipe variant). "tuned": bench_merging's recipes. Variants, run apart with --extra and
# added to the record: "x10", the text recipe with a 10x larger backbone rate (backbone_lr_ratio 0.03,
# bench_forgetting's, at which plain fine-tuning forgets measurably); "lr1e-3", the image recipe at lr 1e-3
# (bench_merging's own grid: its 3e-3 is at the edge of divergence, 5e-3 collapses to chance).
PAIRS = [("bbc_news", "sentiment_sentences", "tuned"), ("digits", "fashion_mnist", "tuned")]
EXTRA_PAIRS = [("bbc_news", "sentiment_sentences", "x10"), ("digits", "fashion_mnist", "lr1e-3")]
VARIANTS = {"tuned": {}, "x10": {"text": {"backbone_lr_ratio": 0.03}}, "lr1e-3": {"image": {"lr": 1e-3}}}
VARIANT_NAMES = {"tuned": "", "x10": " (backbone rate ×10)", "lr1e-3": " (lr 1e-3)"}
ARMS = ("sequential", "l2sp", "wise", "merge")
ARM_NAMES = {"sequential": "sequential A→B", "l2sp": "L2-SP at A", "wise": "WiSE-FT A↔A→B",
             "merge": "merging τA + τB", "b_alone": "B alone (from pretrained)"}
# L2-SP strength per modality: bench_forgetting's (not tuned here).
L2SP = {"text": 1.0, "image": 0.1}

CONFIGS = {
    "full": dict(
        seeds=[0, 1, 2], rows=BM.CONFIGS["full"]["rows"], epochs=BM.CONFIGS["full"]["epochs"],
        max_length=BM.CONFIGS["full"]["max_length"], image_size=32, test_cap=None,
        wise_alphas=[0.0, 0.25, 0.5, 0.75, 1.0], lams=[0.5, 0.75, 1.0], ref_n=150,
    ),
    "quick": dict(
        seeds=[0], rows={"bbc_news": (3, 2), "sentiment_sentences": (4, 3), "digits": (3, 2), "fashion_mnist": (3, 2)},
        epochs={"text": 1, "image": 1}, max_length={"bbc_news": 16, "sentiment_sentences": 16}, image_size=32,
        test_cap=40, wise_alphas=[0.0, 0.5, 1.0], lams=[0.5, 1.0], ref_n=40,
    ),
}


def estimate_minutes(cfg, pairs):
    """A rough cost model on an idle 2-core CPU, 1 torch thread (bench_merging's rates); ×2 under load."""
    per_row = {"bbc_news": 1 / 15, "sentiment_sentences": 1 / 35, "digits": 1 / 250, "fashion_mnist": 1 / 250}
    infer = {"bbc_news": 1 / 60, "sentiment_sentences": 1 / 200, "digits": 1 / 800, "fashion_mnist": 1 / 800}
    n_cls = {"bbc_news": 5, "sentiment_sentences": 2, "digits": 10, "fashion_mnist": 10}
    n_test = {"bbc_news": 300, "sentiment_sentences": 300, "digits": 600, "fashion_mnist": 600}
    s = 0.0
    for a, b, _ in pairs:
        ep = cfg["epochs"][BM.modality(a)]
        tr = {t: cfg["rows"][t][0] * n_cls[t] for t in (a, b)}
        va = {t: cfg["rows"][t][1] * n_cls[t] for t in (a, b)}
        nt = {t: min(n_test[t], cfg["test_cap"] or n_test[t]) for t in (a, b)}
        fits = ep * (tr[a] * per_row[a] + 3 * tr[b] * per_row[b])  # A; B alone, A→B, A→B with L2-SP
        grid = (len(cfg["wise_alphas"]) + len(cfg["lams"])) * sum(va[t] * infer[t] + 3 for t in (a, b))
        tests = 6 * sum(nt[t] * infer[t] for t in (a, b)) + 12 * 3
        probes = 8 * min(cfg["ref_n"], nt[a]) * infer[a]
        s += len(cfg["seeds"]) * (fits + grid + tests + probes + 10)
    return (s + 60) / 60


# ------------------------------------------------------------------ one pair
def recipe(task, variant):
    mod = BM.modality(task)
    return {**BM.RECIPE[mod], "lr": BM.LR[mod], **VARIANTS[variant].get(mod, {})}


def fit_from(start, task, cfg, X, y, seed, variant, **extra):
    """bench_merging's recipe for ``task`` (with the variant's changes), trained from ``start``: the pretrained
    backbone (None) or a fitted model (its trained body, a new head)."""
    from sktransfer import FineTunedClassifier

    mod = BM.modality(task)
    return FineTunedClassifier(BM.backbone(task) if start is None else start, **recipe(task, variant),
                               max_epochs=cfg["epochs"][mod], random_state=seed, device="cpu",
                               **BM.input_kw(task, cfg), **extra).fit(X, y)


def probe(model, X, y):
    """``forgetting_report`` on task A's rows: a probe on the start's (A's) features and on ``model``'s."""
    from sktransfer.metrics import forgetting_report

    cv = int(min(3, np.bincount(np.unique(y, return_inverse=True)[1]).min()))
    if cv < 2:
        return None
    r = forgetting_report(model, X, y, cv=cv)
    return {k: float(v) for k, v in r.items()}


def run_pair(a, b, variant, cfg, seed, data):
    from sktransfer.merging import task_vector

    da, db = data[a], data[b]
    Xa, ya, Xa_va, ya_va = BM.draw(da["sp"], a, *cfg["rows"][a], seed)
    Xb, yb, Xb_va, yb_va = BM.draw(db["sp"], b, *cfg["rows"][b], seed)
    ref_n = min(cfg["ref_n"], len(da["y_te"]))
    keep = np.linspace(0, len(da["y_te"]) - 1, ref_n).round().astype(int)
    Xr = [da["X_te"][i] for i in keep] if BM.modality(a) == "text" else da["X_te"][keep]
    yr = da["y_te"][keep]

    def acc(est, task, split):
        d = {"va": (Xa_va, ya_va) if task == a else (Xb_va, yb_va),
             "te": (da["X_te"], da["y_te"]) if task == a else (db["X_te"], db["y_te"])}[split]
        return float(est.score(*d))

    fit_s = {}

    def timed(name, fn):
        t = time.perf_counter()
        out = fn()
        fit_s[name] = time.perf_counter() - t
        return out

    clf_a = timed("A", lambda: fit_from(None, a, cfg, Xa, ya, seed, variant))
    clf_b = timed("B", lambda: fit_from(None, b, cfg, Xb, yb, seed, variant))
    seq = timed("A→B", lambda: fit_from(clf_a, b, cfg, Xb, yb, seed, variant))
    l2 = timed("A→B l2sp", lambda: fit_from(clf_a, b, cfg, Xb, yb, seed, variant, l2sp=L2SP[BM.modality(b)]))
    rec = {"pair": [a, b], "variant": variant, "recipe": {t: recipe(t, variant) for t in (a, b)}, "seed": seed, "n_train": [len(ya), len(yb)], "n_val": [len(ya_va), len(yb_va)],
           "n_test": [len(da["y_te"]), len(db["y_te"])], "n_ref": int(ref_n), "l2sp": L2SP[BM.modality(b)],
           "fit_s": fit_s, "a_before": {s: acc(clf_a, a, s) for s in ("va", "te")},
           "b_alone": {s: acc(clf_b, b, s) for s in ("va", "te")}, "arms": {}}

    def a_head_on(model):
        """A's head on ``model``'s body (a model fitted from A): A + (model − A)."""
        return task_vector(model).apply(clf_a)

    for arm, model in (("sequential", seq), ("l2sp", l2)):
        on_a = a_head_on(model)
        rec["arms"][arm] = {"a_te": acc(on_a, a, "te"), "a_va": acc(on_a, a, "va"),
                            "b_te": acc(model, b, "te"), "b_va": acc(model, b, "va"), "probe": probe(model, Xr, yr),
                            "drift": task_vector(model).norm()}
        del on_a

    # WiSE-FT between A and A→B: one body for both heads, alpha on the A + B validation rows.
    tv = task_vector(seq)
    grid = []
    for alpha in cfg["wise_alphas"]:
        on_a = (alpha * tv).apply(clf_a)
        seq.set_wise_alpha(alpha)
        grid.append({"alpha": alpha, "a_va": acc(on_a, a, "va"), "b_va": acc(seq, b, "va")})
        del on_a
    pick = max(grid, key=lambda r: (r["a_va"] + r["b_va"], r["alpha"]))  # ties: the larger alpha (more of B)
    alpha = pick["alpha"]
    on_a = (alpha * tv).apply(clf_a)
    seq.set_wise_alpha(alpha)
    rec["arms"]["wise"] = {"alpha": alpha, "grid": grid, "a_te": acc(on_a, a, "te"), "a_va": pick["a_va"],
                           "b_te": acc(seq, b, "te"), "b_va": pick["b_va"], "probe": probe(seq, Xr, yr),
                           "drift": alpha * tv.norm()}
    seq.set_wise_alpha(1.0)
    del on_a, tv

    # Merging: A and B each from the pretrained backbone, pretrained + lam * (tau_A + tau_B).
    both = task_vector(clf_a, name="A") + task_vector(clf_b, name="B")
    grid = []
    for lam in cfg["lams"]:
        v = lam * both
        grid.append({"lam": lam, "a_va": acc(v.apply(head_from=clf_a), a, "va"),
                     "b_va": acc(v.apply(head_from=clf_b), b, "va")})
    pick = max(grid, key=lambda r: (r["a_va"] + r["b_va"], r["lam"]))
    v = pick["lam"] * both
    m_a, m_b = v.apply(head_from=clf_a), v.apply(head_from=clf_b)
    rec["arms"]["merge"] = {"lam": pick["lam"], "grid": grid, "a_te": acc(m_a, a, "te"), "a_va": pick["a_va"],
                            "b_te": acc(m_b, b, "te"), "b_va": pick["b_va"], "probe": None, "drift": None}
    del m_a, m_b, v, both
    arms = ", ".join(f"{k} A {r['a_te']:.3f} B {r['b_te']:.3f}" for k, r in rec["arms"].items())
    log(f"  {a}→{b} ({variant}) seed {seed}: A before {rec['a_before']['te']:.3f}, B alone {rec['b_alone']['te']:.3f}; {arms}; "
        f"wise alpha {alpha:g}, merge lam {pick['lam']:g}; fits " + ", ".join(f"{k} {v:.0f} s" for k, v in fit_s.items()))
    del clf_a, clf_b, seq, l2
    BM.release_memory()
    return rec


def measure(cfg, pairs):
    out = []
    for a, b, variant in pairs:
        t = time.perf_counter()
        data = {}
        for task in (a, b):
            sp, X_te, y_te = BM.split_of(task, cfg)
            data[task] = {"sp": sp, "X_te": X_te, "y_te": y_te}
        for seed in cfg["seeds"]:
            out.append(run_pair(a, b, variant, cfg, seed, data))
        log(f"{a}→{b}: {(time.perf_counter() - t) / 60:.1f} min")
    return out


# ------------------------------------------------------------------ report
def groups(res):
    """``(a, b, variant, records)`` per pair measured, in PAIRS + EXTRA_PAIRS order (a record without a variant: "tuned")."""
    for a, b, variant in PAIRS + EXTRA_PAIRS:
        rs = [r for r in res if r["pair"] == [a, b] and r.get("variant", "tuned") == variant]
        if rs:
            yield a, b, variant, rs


def variants_sentence(res, extra_runs):
    """The recipe variants measured (rows marked so) and the runs that added them, as a sentence ('' if none)."""
    parts = ["*" + VARIANT_NAMES[v].strip(" ()") + "*: " + "; ".join(
        f"{m} recipe with " + ", ".join(f"{k}={x:g}" for k, x in ch.items()) for m, ch in VARIANTS[v].items())
        for v in dict.fromkeys(r.get("variant", "tuned") for r in res) if VARIANTS[v]]
    if not parts:
        return ""
    runs = "; ".join(f"`{x['command']}` (started {str(x['started'])[:16]} UTC, {x['elapsed'] / 60:.0f} min, load "
                     f"average at start {x['info'].get('loadavg_start')})" for x in extra_runs)
    return ("Recipe variant (rows marked so): " + "; ".join(parts) + ", A and B alike"
            + (f"; measured by {runs}, and added to the record." if runs else "."))


def pct(x):
    return "–" if x is None else f"{100 * x:.1f}"


def report(res, run, cfg, out=None, extra_runs=()):
    rows, diff_rows, probe_rows, choice_rows, lose = [], [], [], [], []
    for a, b, variant, rs in groups(res):
        pair = f"{BM.NAMES[a]} → {BM.NAMES[b]}{VARIANT_NAMES[variant]}"
        before = [r["a_before"]["te"] for r in rs]
        alone = [r["b_alone"]["te"] for r in rs]
        rows.append([pair, "A alone (before B)", H.pm(*H.mean_std(before)), "–", "–", "–"])
        rows.append([pair, ARM_NAMES["b_alone"], "–", "–", H.pm(*H.mean_std(alone)), "–"])
        for arm in ARMS:
            at = [r["arms"][arm]["a_te"] for r in rs]
            bt = [r["arms"][arm]["b_te"] for r in rs]
            drop = [r["a_before"]["te"] - r["arms"][arm]["a_te"] for r in rs]
            price = [r["b_alone"]["te"] - r["arms"][arm]["b_te"] for r in rs]
            rows.append([pair, ARM_NAMES[arm], H.pm(*H.mean_std(at)), H.pm(*H.mean_std(drop)), H.pm(*H.mean_std(bt)),
                         H.pm(*H.mean_std(price))])
            if arm != "sequential":
                da = [r["arms"][arm]["a_te"] - r["arms"]["sequential"]["a_te"] for r in rs]
                db = [r["arms"][arm]["b_te"] - r["arms"]["sequential"]["b_te"] for r in rs]
                diff_rows.append([pair, ARM_NAMES[arm], H.pm(*H.mean_std(da)), f"{sum(d > 0 for d in da)}/{len(da)}",
                                  H.pm(*H.mean_std(db)), f"{sum(d >= 0 for d in db)}/{len(db)}"])
            ps = [r["arms"][arm]["probe"] for r in rs if r["arms"][arm]["probe"]]
            if ps:
                probe_rows.append([pair, ARM_NAMES[arm], H.pm(*H.mean_std([p["ref_accuracy_pretrained"] for p in ps])),
                                   H.pm(*H.mean_std([p["ref_accuracy_finetuned"] for p in ps])),
                                   f"{np.mean([p['retained'] for p in ps]):.3f}", f"{np.mean([p['cka'] for p in ps]):.3f}"])
        choice_rows.append([pair, ", ".join(f"{r['arms']['wise']['alpha']:g}" for r in rs),
                            ", ".join(f"{r['arms']['merge']['lam']:g}" for r in rs),
                            ", ".join(f"{r['arms']['sequential']['drift']:.3g}" for r in rs),
                            ", ".join(f"{r['arms']['l2sp']['drift']:.3g}" for r in rs)])
        # What loses: per arm, the mean of A kept and B's accuracy, against the sequential arm.
        for arm in ARMS[1:]:
            da = float(np.mean([r["arms"][arm]["a_te"] - r["arms"]["sequential"]["a_te"] for r in rs]))
            db = float(np.mean([r["arms"][arm]["b_te"] - r["arms"]["sequential"]["b_te"] for r in rs]))
            lose.append(f"{pair}, {ARM_NAMES[arm]}: A {100 * da:+.1f}, B {100 * db:+.1f} points against sequential")
    fit_rows = []
    for a, b, variant, rs in groups(res):
        if rs:
            fit_rows.append([f"{BM.NAMES[a]} → {BM.NAMES[b]}{VARIANT_NAMES[variant]}"] + [f"{np.median([r['fit_s'][k] for r in rs]):.0f}"
                                                                  for k in ("A", "B", "A→B", "A→B l2sp")])
    first = res[0]
    blocks = {
        "header": H.header(run),
        "text": H.TEXT, "image": H.IMAGE,
        "recipe_text": ", ".join(f"{k}={v}" for k, v in BM.RECIPE["text"].items()) + f", lr={BM.LR['text']:g}",
        "variants": variants_sentence(res, extra_runs),
        "recipe_image": ", ".join(f"{k}={v}" for k, v in BM.RECIPE["image"].items()) + f", lr={BM.LR['image']:g}",
        "rows": "; ".join(f"{BM.NAMES[t]} {tr} training + {va} validation rows per class"
                          for t, (tr, va) in cfg["rows"].items()),
        "epochs": f"{cfg['epochs']['text']} epochs for text (max_length "
                  + ", ".join(f"{v} for {BM.NAMES[k]}" for k, v in cfg["max_length"].items())
                  + f"), {cfg['epochs']['image']} for images (image_size {cfg['image_size']})",
        "l2sp": ", ".join(f"{v:g} for {k}" for k, v in L2SP.items()),
        "alphas": ", ".join(f"{x:g}" for x in cfg["wise_alphas"]), "lams": ", ".join(f"{x:g}" for x in cfg["lams"]),
        "seeds": ", ".join(map(str, cfg["seeds"])), "n_ref": str(first["n_ref"]),
        "n_test": "; ".join(f"{BM.NAMES[r['pair'][i]]} {r['n_test'][i]}" for r in
                            {tuple(r["pair"]): r for r in res}.values() for i in (0, 1)),
        "table": H.md_table(["pair (A → B)", "arm", "A test % (A's head)", "A's drop (points)", "B test %",
                             "B's price vs B alone (points)"], rows, "llrrrr"),
        "diff_table": H.md_table(["pair", "arm", "A: arm − sequential (points)", "seeds A better",
                                  "B: arm − sequential (points)", "seeds B ≥"], diff_rows, "llrrrr"),
        "probe_table": H.md_table(["pair", "arm", "probe on A's body %", "probe on the arm's body %", "retained",
                                   "CKA to A"], probe_rows, "llrrrr"),
        "choice_table": H.md_table(["pair", "WiSE alpha per seed", "merging λ per seed",
                                    "‖A→B − A‖ sequential", "‖A→B − A‖ L2-SP"], choice_rows, "lllll"),
        "fit_table": H.md_table(["pair", "A s", "B alone s", "A→B s", "A→B L2-SP s"], fit_rows, "lrrrr"),
        "lose": "\n".join(f"- {x}" for x in lose),
    }
    return H.write_section("continual", blocks, out)


def plot(res, path):
    panels = []
    for a, b, variant, rs in groups(res):
        for task, key in ((a, "a_te"), (b, "b_te")):
            labels, vals, errs, pts = [], [], [], []
            base = [r["a_before"]["te"] for r in rs] if task == a else [r["b_alone"]["te"] for r in rs]
            series = [("before B" if task == a else "B alone", base)]
            series += [(ARM_NAMES[arm].replace(" ", "\n", 1), [r["arms"][arm][key] for r in rs]) for arm in ARMS]
            for lab, xs in series:
                m, s = H.mean_std(xs)
                labels.append(lab)
                vals.append(100 * m)
                errs.append(100 * s)
                pts.append([100 * x for x in xs])
            lo = max(0.0, min(min(p) for p in pts) - 10)
            panels.append({"title": f"{'A' if task == a else 'B'}: {BM.NAMES[task]}\n({BM.NAMES[a]} → {BM.NAMES[b]}"
                                    f"{VARIANT_NAMES[variant]})",
                           "labels": labels, "values": vals, "errors": errs, "points": pts,
                           "colors": ["#999999", "#4c72b0", "#dd8452", "#55a868", "#8172b3"],
                           "ylabel": "test accuracy (%)", "ylim": (lo, 100)})
    H.bar_panels(panels, path, "Sequential tasks: A's test accuracy (A's head) after B, and B's\n"
                               "(mean ± sd over seeds; dots: seeds)", ncols=2)


def main(argv=None):
    p = H.parser(__doc__)
    p.add_argument("--record", default=str(RECORD), help="JSON record to write (full run) or read (--report-only)")
    p.add_argument("--quick-record", default=None, help="with --quick: write the smoke run's record to this path")
    p.add_argument("--section-out", default=None, help="where to write the section (default sections/continual.md)")
    p.add_argument("--plot", default=str(PLOT), help="where to write the plot (default benchmarks/continual.png)")
    p.add_argument("--extra", nargs="?", const="all", default=None, choices=["all"] + sorted(VARIANTS),
                   help="run the recipe variants of EXTRA_PAIRS (all, or the one named) and add them to the record")
    args = p.parse_args(argv)
    pairs = PAIRS if not args.extra else [x for x in EXTRA_PAIRS if args.extra in ("all", x[2])]
    extra_runs = []
    if args.report_only:
        rec = H.read_json(args.record)
        cfg, res, extra_runs = rec["cfg"], rec["res"], rec.get("extra_runs", [])
        run = {**rec["run"], "started": H.dt.datetime.fromisoformat(str(rec["run"]["started"]))}
    else:
        import torch

        H.quiet()
        cfg = dict(CONFIGS["quick" if args.quick else "full"])
        log(f"estimated run time: ~{estimate_minutes(cfg, pairs):.0f} min on an idle 2-core CPU with 1 torch thread, "
            f"about twice that under load ({'quick' if args.quick else 'full'} run)")
        run = H.start_run(args.threads, ["skorch", "numpy"])
        if args.threads:
            torch.set_num_threads(args.threads)
        res = measure(cfg, pairs)
        run = H.finish_run(run, notes="One process; per pair and seed: A, B alone, A→B, A→B with L2-SP, then the "
                                      "WiSE and merging grids.")
        if args.quick:
            log(f"quick run done in {run['elapsed']:.0f} s")
            if not args.quick_record:
                return None
            H.write_json(args.quick_record, {"cfg": cfg, "res": res, "run": run})
            return None
        if args.extra:  # added to the main run's record (same cfg), its own run metadata kept beside it
            rec = H.read_json(args.record)
            extra_runs = [x for x in rec.get("extra_runs", []) if x["command"] != run["command"]] + [run]
            res = [r for r in rec["res"] if (r["pair"][0], r["pair"][1], r.get("variant", "tuned")) not in pairs] + res
            cfg = rec["cfg"]
            run = {**rec["run"], "started": H.dt.datetime.fromisoformat(str(rec["run"]["started"]))}
            H.write_json(args.record, {**rec, "res": res, "extra_runs": extra_runs})
        else:
            H.write_json(args.record, {"cfg": cfg, "res": res, "run": run})
    report(res, run, cfg, args.section_out, extra_runs)
    plot(res, args.plot)
    return None


if __name__ == "__main__":
    main()

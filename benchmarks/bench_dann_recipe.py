#!/usr/bin/env python
"""Which DANNClassifier recipe, if any, beats no adaptation on shifted images (issue 11).

Same data, shifts, sizes and backbone as ``bench_adaptation.py`` (both take
them from ``_harness.py``: 2 data sets x clean + 4 shifts, labelled source and unlabelled target
images, tf_efficientnet_lite0 at 32 px). The arms are declared in ``ARMS``
(each one's changes to bench_adaptation's DANN) next to the reference
``no adaptation`` (frozen embeddings + StandardScaler + LogisticRegression).

One JSON record per (arm, data set, target, seed) under
``benchmarks/results/dann_recipe/``; existing records are skipped, so an
interrupted run resumes. The section (``sections/dann_recipe.md``: prose in
``sections/dann_recipe_notes.md``) is rebuilt from the records.

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_dann_recipe.py               # full run (resumes)
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_dann_recipe.py --quick       # smoke run, in a temp dir
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_dann_recipe.py --report-only # rebuild the report
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

import _common as C  # noqa: E402
import _harness as H  # noqa: E402

RESULTS = H.RESULTS / "dann_recipe"
ADAPTATION_MD = H.SECTIONS / "adaptation.md"
SEED = 0
NOISE = 0.03  # one seed, 300 target rows: differences within this are noise

REFERENCE = "no adaptation"
# Each DANN arm: the parameters it changes from the DANN recipe of bench_adaptation (H.DANN, domain_weight=1).
ARMS = {
    "DANN current": dict(head_init="random"),
    "DANN probe": dict(head_init="probe"),
    "DANN probe, BN frozen": dict(head_init="probe", freeze_bn_stats=True),
    "fine-tune probe, domain_weight=0": dict(head_init="probe", domain_weight=0.0),
    "DANN probe, low lr": dict(head_init="probe", lr=1e-3, backbone_lr_ratio=0.1),
    # Added after the first run, where "DANN probe, BN frozen" won: its own ablation without the adversary.
    "fine-tune probe, BN frozen, domain_weight=0": dict(head_init="probe", freeze_bn_stats=True, domain_weight=0.0),
}
ALL_ARMS = [REFERENCE, *ARMS]
# Candidates of the leave-one-target-out choice: the adversarial recipes (domain_weight > 0).
DANN_ARMS = [a for a, p in ARMS.items() if p.get("domain_weight", 1.0) > 0]
# Ablations: (arm, minus arm, what the difference measures).
ABLATIONS = [
    ("DANN probe", "DANN current", "starting the class head from the probe (LP-FT)"),
    ("DANN probe, BN frozen", "DANN probe", "freezing BatchNorm statistics"),
    ("DANN probe", "fine-tune probe, domain_weight=0", "the adversarial part"),
    ("DANN probe, low lr", "DANN probe", "the lower learning rates"),
    ("DANN probe, BN frozen", "fine-tune probe, BN frozen, domain_weight=0", "the adversarial part, BN frozen"),
    ("fine-tune probe, BN frozen, domain_weight=0", "fine-tune probe, domain_weight=0",
     "freezing BatchNorm statistics without the adversary"),
]
log = H.log
slug = H.slug


def fd(x):
    return f"{x:+.3f}"


def record_path(root, arm, ds, target, seed=SEED):
    return root / slug(arm) / (f"{slug(ds)}__{slug(target)}" + ("" if seed == SEED else f"__s{seed}") + ".json")


# ------------------------------------------------------------------- arms
def dann_params(arm, cfg, seed=SEED):
    params = dict(H.DANN, max_epochs=cfg["epochs"], image_size=cfg["image_size"], domain_weight=1.0)
    params.update(ARMS[arm])
    params["random_state"] = seed
    return params


def run_arm(arm, Xs, ys, Xt, yt, cfg, seed=SEED):
    """Fit one arm on (source, unlabelled target) and score it on the target labels."""
    from sklearn.exceptions import ConvergenceWarning

    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if arm == REFERENCE:
            from sklearn.linear_model import LogisticRegression
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler

            from sktransfer import PretrainedFeatureExtractor

            params = dict(image_size=cfg["image_size"], batch_size=64, head="LogisticRegression(max_iter=300, tol=1e-3)",
                          scaler="StandardScaler")
            clf = make_pipeline(
                PretrainedFeatureExtractor(H.IMAGE, image_size=cfg["image_size"], batch_size=64, verbose=False),
                StandardScaler(),
                LogisticRegression(max_iter=300, tol=1e-3),
            )
            fit_s, _ = C.timed(clf.fit, Xs, ys)
        else:
            from sktransfer.adaptation import DANNClassifier

            params = dann_params(arm, cfg, seed)
            clf = DANNClassifier(H.IMAGE, **params)
            fit_s, _ = C.timed(clf.fit, Xs, ys, X_target=Xt)
            last = clf.history_[-1]["batches"]
            out["domain_acc_last_epoch"] = float(np.mean([b["domain_acc"] for b in last]))
            out["lr_"] = float(clf.lr_)
        score_s, acc = C.timed(clf.score, Xt, yt)
    out.update(accuracy=float(acc), fit_s=round(fit_s, 2), score_s=round(score_s, 2), params=params)
    return out


def run_all(root, cfg, info, vers, quick, arms=ALL_ARMS, seed=SEED):
    data = H.load_shifted(cfg)
    commit = C.git_commit()
    n_done = n_run = 0
    for ds, (Xs, ys, Xt0, yt, sigma) in data.items():
        for target, shift in H.shifts(sigma).items():
            Xt = shift(Xt0)
            for arm in arms:  # arms interleaved per target: an interruption leaves whole targets
                path = record_path(root, arm, ds, target, seed)
                if path.exists():
                    n_done += 1
                    continue
                t = time.perf_counter()
                try:
                    res = run_arm(arm, Xs, ys, Xt, yt, cfg, seed)
                except Exception as exc:  # keep going; the record says what failed and is retried next run
                    log(f"{ds:22s} {target:34s} {arm:34s} FAILED: {exc!r}")
                    continue
                rec = {
                    "arm": arm,
                    "dataset": ds,
                    "target": target,
                    "shifted": not target.startswith("clean"),
                    "backbone": H.IMAGE,
                    "n_source": len(ys),
                    "n_target": len(yt),
                    "image_size": cfg["image_size"],
                    "seed": seed,
                    **res,
                    "date": C.utc_now().isoformat(timespec="seconds"),
                    "git_commit": commit,
                    "versions": vers,
                    "torch_threads": info.get("threads_set"),
                    "machine": {k: info.get(k) for k in ("cpu", "logical_cores", "usable_cores")},
                    "loadavg": round(os.getloadavg()[0], 2),
                    "quick": quick,
                }
                H.write_json(path, rec)
                n_run += 1
                extra = f" domain acc {res['domain_acc_last_epoch']:.2f}" if "domain_acc_last_epoch" in res else ""
                log(f"{ds:22s} {target:34s} {arm:34s} acc {res['accuracy']:.3f}  fit {res['fit_s']:.1f} s{extra}"
                    f"  ({time.perf_counter() - t:.0f} s)")
    return n_run, n_done


# ---------------------------------------------------------------- records
def load_records(root):
    """Records keyed by (arm, data set, target), in bench_adaptation's order of data sets and targets."""
    recs = [H.read_json(p) for p in root.glob("*/*.json")]
    ds_order = ["fashion_mnist", "digits"]
    t_order = [slug(t) for t in H.shifts(1.0)]

    def rank(r):
        d, t = slug(r["dataset"]), slug(r["target"])
        return (ds_order.index(d) if d in ds_order else len(ds_order), d,
                t_order.index(t) if t in t_order else len(t_order), t, ALL_ARMS.index(r["arm"]))

    recs = sorted(recs, key=rank)
    main = {(r["arm"], r["dataset"], r["target"]): r for r in recs if r["seed"] == SEED}
    extra = {(r["arm"], r["dataset"], r["target"], r["seed"]): r for r in recs if r["seed"] != SEED}
    return main, extra


def adaptation_md_reference():
    """CORAL and subspace alignment accuracies per (data set, target), read from sections/adaptation.md."""
    if not ADAPTATION_MD.exists():
        return {}, None
    text = ADAPTATION_MD.read_text()
    date = re.search(r"^- Date: (.*?)(,|$)", text, re.M)
    out, ds, headers = {}, None, None
    for line in text.splitlines():
        if line.startswith("### "):
            ds, headers = line[4:].strip(), None
        elif line.startswith("| ") and ds:
            cells = [c.strip().strip("*") for c in line.strip().strip("|").split("|")]
            if headers is None:
                headers = cells
            elif not set(cells[0]) <= set(":- "):
                for h, c in zip(headers[1:], cells[1:]):
                    try:
                        out[(ds, cells[0], h)] = float(c)
                    except ValueError:
                        pass
    return out, (date.group(1) if date else None)


# ----------------------------------------------------------------- report
def diff_summary(d):
    d = np.asarray(d)
    return (f"{d.mean():+.3f}", f"{int((d > 0).sum())}/{int((d < 0).sum())}",
            f"{int((d > NOISE).sum())}/{int((d < -NOISE).sum())}", f"{d.min():+.3f} to {d.max():+.3f}")


def loto(shifted, acc, candidates):
    """For each held-out shifted target, the candidate with the best mean difference to no adaptation
    on the other shifted targets, and its difference on the held-out one."""
    rows = []
    for held in shifted:
        others = [k for k in shifted if k != held]
        mean_other = {a: np.mean([acc[(a, *k)] - acc[(REFERENCE, *k)] for k in others]) for a in candidates}
        pick = max(candidates, key=lambda a: (mean_other[a], -candidates.index(a)))
        rows.append((held, pick, mean_other[pick], acc[(pick, *held)] - acc[(REFERENCE, *held)]))
    return rows


def reproduce_commands(extra):
    """The commands that produce every record: the main run, then one seed check per set of seeds."""
    by_seeds = {}
    for arm in ARMS:
        seeds = tuple(sorted({k[3] for k in extra if k[0] == arm}))
        if seeds:
            by_seeds.setdefault(seeds, []).append(arm)
    base = "HF_HUB_OFFLINE=1 python benchmarks/bench_dann_recipe.py"
    return [base] + [f"{base} --seed-check {' '.join(map(str, seeds))} --arms " + " ".join(f'"{a}"' for a in arms)
                     for seeds, arms in by_seeds.items()]


def seed_checks(extra, acc, complete, shifted):
    """One table per arm re-run with other seeds (``--seed-check``), next to seed 0, and a generated summary."""
    out = []
    for arm in ARMS:
        seeds = sorted({k[3] for k in extra if k[0] == arm})
        if not seeds:
            continue
        all_seeds = [SEED, *seeds]

        def a(k, s):
            return acc[(arm, *k)] if s == SEED else extra[(arm, *k, s)]["accuracy"]

        keys = [k for k in complete if all((arm, *k, s) in extra for s in seeds)]
        rows = [[f"{k[0]}, {k[1]}", f"{acc[(REFERENCE, *k)]:.3f}", *[f"{a(k, s):.3f}" for s in all_seeds],
                 f"{np.mean([a(k, s) for s in all_seeds]):.3f}",
                 fd(np.mean([a(k, s) for s in all_seeds]) - acc[(REFERENCE, *k)])] for k in keys]
        out += [f"### Seed check: {arm}", "",
                f"Seeds {', '.join(map(str, seeds))}: `bench_dann_recipe.py --seed-check {' '.join(map(str, seeds))} "
                f"--arms \"{arm}\"`.", "",
                H.md_table(["target", REFERENCE, *[f"seed {s}" for s in all_seeds], "mean over seeds",
                            "mean − no adapt."], rows), ""]
        sh = [k for k in keys if k in shifted]
        if sh:
            per_seed = []
            for s in all_seeds:
                d = np.array([a(k, s) - acc[(REFERENCE, *k)] for k in sh])
                per_seed.append(f"seed {s}: mean {d.mean():+.3f}, wins {int((d > 0).sum())} of {len(sh)}")
            d_all = np.array([a(k, s) - acc[(REFERENCE, *k)] for k in sh for s in all_seeds])
            out += [f"On the {len(sh)} shifted targets, {'; '.join(per_seed)}. Over all {len(d_all)} "
                    f"(target, seed) fits it beats no adaptation in {int((d_all > 0).sum())}, by more than "
                    f"{NOISE:.2f} in {int((d_all > NOISE).sum())}; smallest difference {d_all.min():+.3f}.", ""]
    return "\n".join(out)


def report(root, out, cfg, run):
    recs, extra = load_records(root)
    every = [*recs.values(), *extra.values()]
    data_sets = list(dict.fromkeys(ds for (_, ds, _) in recs))
    targets = {ds: list(dict.fromkeys(t for (_, d, t) in recs if d == ds)) for ds in data_sets}
    keys = [(ds, t) for ds in data_sets for t in targets[ds]]
    acc = {k: r["accuracy"] for k, r in recs.items()}
    complete = [k for k in keys if all((a, *k) in acc for a in ALL_ARMS)]
    missing = [(a, *k) for k in keys for a in ALL_ARMS if (a, *k) not in acc]
    shifted = [k for k in complete if not k[1].startswith("clean")]
    n = len(shifted)
    dates = sorted(r["date"] for r in every)
    states = sorted({r.get("git_commit", "?") for r in every})
    now = C.git_commit()
    base = dann_params("DANN current", cfg)
    status = []
    if len(states) > 1 or states[0] != now or "modified" in states[0]:
        status.append(f"**Code state**: the records were made with sktransfer at {', '.join(states)}; the tree is now at "
                      f"{now}. Records made while sktransfer/ had uncommitted changes may not reproduce fit by fit: "
                      "delete `benchmarks/results/dann_recipe/` and re-run the commands above on a clean tree before "
                      "quoting these figures.")
    if missing:
        status.append(f"**Incomplete**: {len(missing)} records missing (e.g. {missing[0]}); the figures below use only "
                      f"the {len(complete)} targets with every arm. Resume with the command above.")
    acc_tables = []
    for ds in data_sets:
        rows = []
        for t in targets[ds]:
            vals = {a: acc.get((a, ds, t)) for a in ALL_ARMS}
            best = max(v for v in vals.values() if v is not None)
            rows.append([t] + ["—" if v is None else (f"**{v:.3f}**" if v == best else f"{v:.3f}") for v in vals.values()])
        acc_tables += [f"### {ds}: accuracy on the target", "", H.md_table(["target", *ALL_ARMS], rows), ""]

    ref, ref_date = adaptation_md_reference()
    arms = list(ARMS)
    diff_rows = [[f"{ds}, {t}"] + [fd(acc[(a, ds, t)] - acc[(REFERENCE, ds, t)]) for a in arms] for ds, t in shifted]
    summary = [[a, *diff_summary([acc[(a, *k)] - acc[(REFERENCE, *k)] for k in shifted])] for a in arms]
    for m in ("CORAL", "subspace alignment"):
        d = [ref.get((ds, t, m), np.nan) - ref.get((ds, t, REFERENCE), np.nan) for ds, t in shifted]
        if not np.isnan(d).any():
            summary.append([f"{m} (from sections/adaptation.md, not re-run)", *diff_summary(d)])
    repro = [abs(ref[(ds, t, REFERENCE)] - acc[(REFERENCE, ds, t)]) for ds, t in complete if (ds, t, REFERENCE) in ref]
    rows_loto = loto(shifted, acc, DANN_ARMS)
    d_loto = [d for *_, d in rows_loto]
    all_rows = loto(shifted, acc, [a for a in ARMS if all((a, *k) in acc for k in shifted)])
    abl = []
    for a, b, what in ABLATIONS:
        if all((x, *k) in acc for x in (a, b) for k in shifted):
            d = np.array([acc[(a, *k)] - acc[(b, *k)] for k in shifted])
            abl.append([what, f"{a} − {b}", fd(d.mean()), f"{int((d > 0).sum())} of {n}", f"{d.min():+.3f} to {d.max():+.3f}"])
    spread = [max(x) - min(x) for arm in ARMS for k in complete
              for x in [[acc[(arm, *k)]] + [r["accuracy"] for kk, r in extra.items() if kk[:3] == (arm, *k)]] if len(x) > 1]
    blocks = {
        "header": H.header(run),
        "records": (f"{len(every)} in `benchmarks/results/dann_recipe/` (one JSON per arm, data set, target and seed; "
                    f"{run['n_run']} written by the latest run), dated {dates[0][:16]} to {dates[-1][:16]} UTC, "
                    f"sktransfer at {', '.join(states)}"),
        "commands": ", then ".join(f"`{c}`" for c in reproduce_commands(extra)),
        "n_source": cfg["n_source"], "n_target": cfg["n_target"], "image_size": cfg["image_size"], "seed": SEED,
        "noise": f"{NOISE:.2f}", "n_shifted": n, "dann_arms": ", ".join(DANN_ARMS),
        "base": ", ".join(f"{k}={v!r}" for k, v in base.items() if k != "head_init"),
        "arms": "; ".join(f"**{a}**: " + ", ".join(f"{k}={v!r}" for k, v in p.items()) for a, p in ARMS.items()),
        "status": "\n\n".join(status),
        "accuracy_tables": "\n".join(acc_tables),
        "diff_table": H.md_table(["target", *arms], diff_rows),
        "summary_table": H.md_table(["arm", "mean", "wins/losses", "beyond noise (wins/losses)", "range"], summary),
        "reference_check": (f"The no-adaptation accuracies here differ from those of sections/adaptation.md (run of "
                            f"{ref_date}) by at most {max(repro):.3f} over {len(repro)} targets." if repro else ""),
        "loto_table": H.md_table(["held-out target", "chosen arm", "its mean diff. on the others", "diff. on held-out"],
                                 [[f"{ds}, {t}", a, fd(mo), fd(d)] for (ds, t), a, mo, d in rows_loto], "llrr"),
        "loto": (f"The leave-one-target-out recipe beats no adaptation on {sum(d > 0 for d in d_loto)} of {n} shifted "
                 f"targets ({sum(d > NOISE for d in d_loto)} by more than {NOISE:.2f}; it loses by more than {NOISE:.2f} "
                 f"on {sum(d < -NOISE for d in d_loto)}); mean held-out difference {np.mean(d_loto):+.3f}. With the "
                 f"domain_weight=0 arms also candidates, the choice is {', '.join(sorted({a for _, a, _, _ in all_rows}))}, "
                 f"and it beats no adaptation on {sum(d > 0 for *_, d in all_rows)} of {n} (mean held-out difference "
                 f"{np.mean([d for *_, d in all_rows]):+.3f})."),
        "seed_checks": seed_checks(extra, acc, complete, shifted),
        "ablation_table": H.md_table(["what", "difference", "mean", "better on", "range"], abl, "llrrl"),
        "fit_table": H.md_table(["arm", "mean fit s per target"],
                                [[a, f"{np.mean([recs[(a, *k)]['fit_s'] for k in complete]):.1f}"] for a in ALL_ARMS]),
        "spread": (f"Over the seed checks, the spread (max − min over seeds) of one arm on one target is "
                   f"{np.mean(spread):.3f} on average, up to {max(spread):.3f}." if spread else ""),
    }
    return H.write_section("dann_recipe", blocks, out)


# ------------------------------------------------------------------- main
def main(argv=None):
    p = H.parser(__doc__, quick_help="tiny smoke run: records and report in a temp dir")
    p.add_argument("--seed-check", type=int, nargs="*", metavar="SEED", default=[],
                   help="also run the DANN arms of --arms with these seeds (seed 0 is the main run)")
    p.add_argument("--arms", nargs="*", default=list(ARMS), help="DANN arms for --seed-check (default: all)")
    args = p.parse_args(argv)
    cfg = H.ADAPT_CFG["quick" if args.quick else "full"]
    root, out = RESULTS, None
    if args.quick:
        tmp = Path(tempfile.mkdtemp(prefix="sktransfer-dann-recipe-"))
        root, out = tmp / "records", tmp / "dann_recipe.md"
    if args.report_only:
        run = H.load_run(root / "last_run.json")
    else:
        unknown = [a for a in args.arms if a not in ARMS]
        if unknown:
            raise SystemExit(f"--arms: unknown arm(s) {unknown}; choose among {list(ARMS)}.")
        run = H.start_run(args.threads, extra_versions=["skorch"])
        n_run, n_done = run_all(root, cfg, run["info"], run["vers"], args.quick)
        for seed in args.seed_check:
            r, d = run_all(root, cfg, run["info"], run["vers"], args.quick, arms=args.arms, seed=seed)
            n_run, n_done = n_run + r, n_done + d
        log(f"{n_run} records written, {n_done} existed")
        run = H.finish_run(run, root / "last_run.json", n_run=n_run)
    report(root, out, cfg, run)


if __name__ == "__main__":
    main()

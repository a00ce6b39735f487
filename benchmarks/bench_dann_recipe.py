#!/usr/bin/env python
"""Which DANNClassifier recipe, if any, beats no adaptation on shifted images (issue 11).

Same data, shifts, sizes and backbone as ``bench_adaptation.py`` (imported
from it: 2 data sets x clean + 4 shifts, 300 labelled source and 300
unlabelled target images, tf_efficientnet_lite0 at 32 px, seed 0). Arms:

- ``no adaptation``: frozen embeddings + StandardScaler + LogisticRegression
  on the source rows, exactly as bench_adaptation (the reference);
- ``DANN current``: bench_adaptation's DANN (random class head);
- ``DANN probe``: the same with ``head_init="probe"`` (LP-FT);
- ``DANN probe, BN frozen``: the same with ``freeze_bn_stats=True``;
- ``fine-tune probe, domain_weight=0``: ``DANN probe`` without the
  adversarial gradient (same batches), which separates the adversarial part;
- ``DANN probe, low lr``: ``DANN probe`` at DANNClassifier's own default
  learning rates (``lr=1e-3, backbone_lr_ratio=0.1``): LP-FT fine-tunes from
  the probe gently so the pretrained features move little;
- ``fine-tune probe, BN frozen, domain_weight=0``: ``DANN probe, BN frozen``
  without the adversarial gradient (its ablation, as above).

One JSON record per (arm, data set, target) goes to
``benchmarks/results/dann_recipe/<arm>/<data set>__<target>.json``; records
that exist are skipped, so an interrupted run resumes where it stopped. The
report (``sections/dann_recipe.md``) is rebuilt from the records: accuracies,
paired differences to no adaptation on the 8 shifted targets, and a
leave-one-target-out choice of recipe (no target label is used to pick the
recipe for the held-out target).

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_dann_recipe.py               # full run (resumes)
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_dann_recipe.py --quick       # smoke run, in a temp dir
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_dann_recipe.py --report-only # rebuild the report
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
import tempfile
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
import bench_adaptation as BA  # noqa: E402

RESULTS = HERE / "results" / "dann_recipe"
OUT = HERE / "sections" / "dann_recipe.md"
ADAPTATION_MD = HERE / "sections" / "adaptation.md"
SEED = 0
NOISE = 0.03  # one seed, 300 target rows: differences within this are noise

REFERENCE = "no adaptation"
# Each DANN arm: the parameters it changes from bench_adaptation's DANN (BA.DANN, domain_weight=1).
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

log = C.log


def slug(text):
    return re.sub(r"[^a-z0-9]+", "_", text.lower().split("(")[0]).strip("_")


def record_path(root, arm, ds, target, seed=SEED):
    return root / slug(arm) / (f"{slug(ds)}__{slug(target)}" + ("" if seed == SEED else f"__s{seed}") + ".json")




# ------------------------------------------------------------------- arms
def dann_params(arm, cfg, seed=SEED):
    params = dict(BA.DANN, max_epochs=cfg["epochs"], image_size=cfg["image_size"], domain_weight=1.0)
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
                PretrainedFeatureExtractor(BA.IMAGE, image_size=cfg["image_size"], batch_size=64, progress=False),
                StandardScaler(),
                LogisticRegression(max_iter=300, tol=1e-3),
            )
            fit_s, _ = C.timed(clf.fit, Xs, ys)
        else:
            from sktransfer.adaptation import DANNClassifier

            params = dann_params(arm, cfg, seed)
            clf = DANNClassifier(BA.IMAGE, **params)
            fit_s, _ = C.timed(clf.fit, Xs, ys, X_target=Xt)
            last = clf.history_[-1]["batches"]
            out["domain_acc_last_epoch"] = float(np.mean([b["domain_acc"] for b in last]))
            out["lr_"] = float(clf.lr_)
        score_s, acc = C.timed(clf.score, Xt, yt)
    out.update(accuracy=float(acc), fit_s=round(fit_s, 2), score_s=round(score_s, 2), params=params)
    return out


def run_all(root, cfg, info, vers, quick, arms=ALL_ARMS, seed=SEED):
    data = BA.load(cfg)
    commit = C.git_commit()
    n_done = n_run = 0
    for ds, (Xs, ys, Xt0, yt, sigma) in data.items():
        for target, shift in BA.shifts(sigma).items():
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
                    "backbone": BA.IMAGE,
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
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".json.tmp")
                tmp.write_text(json.dumps(rec, indent=1, default=str))
                os.replace(tmp, path)
                n_run += 1
                extra = f" domain acc {res['domain_acc_last_epoch']:.2f}" if "domain_acc_last_epoch" in res else ""
                log(f"{ds:22s} {target:34s} {arm:34s} acc {res['accuracy']:.3f}  fit {res['fit_s']:.1f} s{extra}"
                    f"  ({time.perf_counter() - t:.0f} s)")
    return n_run, n_done


# ---------------------------------------------------------------- records
def load_records(root):
    """Records keyed by (arm, data set, target), in bench_adaptation's order of data sets and targets."""
    recs = [json.loads(p.read_text()) for p in root.glob("*/*.json")]
    ds_order = ["fashion_mnist", "digits"]
    t_order = [slug(t) for t in BA.shifts(1.0)]

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
def fmt_diff(x):
    return f"{x:+.3f}"


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


def write_report(root, out, cfg, info, vers, command, started, elapsed, n_run):
    recs, extra = load_records(root)
    data_sets = list(dict.fromkeys(ds for (_, ds, _) in recs))
    targets = {ds: list(dict.fromkeys(t for (_, d, t) in recs if d == ds)) for ds in data_sets}
    keys = [(ds, t) for ds in data_sets for t in targets[ds]]
    acc = {k: r["accuracy"] for k, r in recs.items()}
    complete = [k for k in keys if all((a, *k) in acc for a in ALL_ARMS)]
    missing = [(a, *k) for k in keys for a in ALL_ARMS if (a, *k) not in acc]
    shifted = [k for k in complete if not k[1].startswith("clean")]
    dates = sorted(r["date"] for r in [*recs.values(), *extra.values()])
    base = dann_params("DANN current", cfg)
    base_txt = ", ".join(f"{k}={v!r}" for k, v in base.items() if k not in ("head_init",))

    lines = [
        "## Choosing a DANN recipe on shifted images (issue 11)",
        "",
        C.machine_md(info, vers, command, started, elapsed),
        f"- Records: {len(recs) + len(extra)} in `benchmarks/results/dann_recipe/` (one JSON per arm, data set, target and seed; "
        f"{n_run} written by this run, the others kept from earlier runs), dated {dates[0][:16]} to {dates[-1][:16]} UTC, "
        f"sktransfer at {', '.join(sorted({r.get('git_commit', '?') for r in [*recs.values(), *extra.values()]}))}."
        if recs else "- Records: none.",
        "- All records are reproduced (resumable, existing records skipped) by "
        + ", then ".join(f"`{c}`" for c in reproduce_commands(extra)) + ".",
        f"- Data, shifts and sizes: those of `bench_adaptation.py` (imported from it): source = {cfg['n_source']} "
        f"labelled clean images, target = {cfg['n_target']} other images of the same data set, shifted, given "
        "without labels; accuracy on the shifted target images (transductive). tf_efficientnet_lite0 at "
        f"{cfg['image_size']} px, seed {SEED}.",
        f"- `no adaptation`: frozen embeddings + StandardScaler + LogisticRegression(max_iter=300, tol=1e-3) on the "
        "source rows, as in bench_adaptation.",
        f"- DANN arms: `DANNClassifier({base_txt})` (bench_adaptation's DANN: strategy='full', Ganin's λ ramp to "
        "`domain_weight`), changed as follows: "
        + "; ".join(f"**{a}**: " + (", ".join(f"{k}={v!r}" for k, v in p.items())) for a, p in ARMS.items()) + ".",
        "- `DANN probe, low lr` is the one extra candidate: LP-FT fine-tunes from the probe with a small learning "
        "rate so that the pretrained features move little, and these were DANNClassifier's default learning rates before this benchmark chose new ones. "
        "`fine-tune probe, BN frozen, domain_weight=0` is not a candidate but the ablation of `DANN probe, BN frozen` "
        "(added after the first run, where that arm won): it tells how much of its gain is the adversary and how "
        "much is fine-tuning with frozen BatchNorm statistics.",
        f"- Seed {SEED} for every arm (seeds 1 and 2 as well for the arms of the seed checks below); "
        f"{cfg['n_target']} target images: differences within about ±{NOISE:.2f} are noise from the sample alone. "
        "No target label was used to choose any setting; the recipe choice below is leave-one-target-out.",
        "",
    ]
    states = sorted({r.get("git_commit", "?") for r in [*recs.values(), *extra.values()]})
    now = C.git_commit()
    if len(states) > 1 or states[0] != now or "modified" in states[0]:
        lines += [f"**Code state**: the records were made with sktransfer at {', '.join(states)}; the tree is now at "
                  f"{now}. Records made while sktransfer/ had uncommitted changes may not reproduce fit by fit: "
                  "delete `benchmarks/results/dann_recipe/` and re-run the commands above on a clean tree before "
                  "quoting these figures.", ""]
    if missing:
        lines += [f"**Incomplete**: {len(missing)} records missing (e.g. {missing[0]}); the figures below use only "
                  f"the {len(complete)} targets with every arm. Resume with the command above.", ""]

    for ds in data_sets:
        rows = []
        for t in targets[ds]:
            vals = {a: acc.get((a, ds, t)) for a in ALL_ARMS}
            best = max(v for v in vals.values() if v is not None)
            rows.append([t] + ["—" if v is None else (f"**{v:.3f}**" if v == best else f"{v:.3f}") for v in vals.values()])
        lines += [f"### {ds}: accuracy on the target", "", C.md_table(["target", *ALL_ARMS], rows), ""]

    if shifted:
        n = len(shifted)
        ref, ref_date = adaptation_md_reference()
        lines += [
            f"### Paired difference to no adaptation on the {n} shifted targets",
            "",
            "Per target: arm accuracy minus no-adaptation accuracy. Wins/losses count every sign; "
            f"'beyond noise' counts differences larger than ±{NOISE:.2f}.",
            "",
        ]
        arms = list(ARMS)
        rows = [[f"{ds}, {t}"] + [fmt_diff(acc[(a, ds, t)] - acc[(REFERENCE, ds, t)]) for a in arms]
                for ds, t in shifted]
        lines += [C.md_table(["target", *arms], rows), ""]
        summary = []
        for a in arms:
            d = [acc[(a, *k)] - acc[(REFERENCE, *k)] for k in shifted]
            summary.append([a, *diff_summary(d)])
        ref_rows = []
        for m in ("CORAL", "subspace alignment"):
            d = [ref.get((ds, t, m), np.nan) - ref.get((ds, t, REFERENCE), np.nan) for ds, t in shifted]
            if not np.isnan(d).any():
                ref_rows.append([f"{m} (from sections/adaptation.md, not re-run)", *diff_summary(d)])
        lines += [C.md_table(["arm", "mean", "wins/losses", "beyond noise (wins/losses)", "range"], summary + ref_rows),
                  ""]
        repro = [abs(ref[(ds, t, REFERENCE)] - acc[(REFERENCE, ds, t)]) for ds, t in complete
                 if (ds, t, REFERENCE) in ref]
        if repro:
            lines += [f"The no-adaptation accuracies here differ from those of sections/adaptation.md (run of "
                      f"{ref_date}) by at most {max(repro):.3f} over {len(repro)} targets"
                      + (" (the same reference)." if max(repro) < 0.005 else ".")
                      + " DANN (`DANN current`) was re-run here, with the code of this commit; its figures in "
                      "sections/adaptation.md are from an older commit.", ""]

        rows_loto = loto(shifted, acc, DANN_ARMS)
        wins = sum(d > 0 for *_, d in rows_loto)
        wins_noise = sum(d > NOISE for *_, d in rows_loto)
        losses_noise = sum(d < -NOISE for *_, d in rows_loto)
        lines += [
            "### Leave-one-target-out choice of recipe",
            "",
            f"For each shifted target, the DANN arm ({', '.join(DANN_ARMS)}) with the best mean difference to no "
            f"adaptation on the other {n - 1} shifted targets, and that arm's difference on the held-out target.",
            "",
            C.md_table(["held-out target", "chosen arm", "its mean diff. on the others", "diff. on held-out"],
                       [[f"{ds}, {t}", a, fmt_diff(mo), fmt_diff(d)] for (ds, t), a, mo, d in rows_loto], "llrr"),
            "",
            f"The leave-one-target-out recipe beats no adaptation on {wins} of {n} shifted targets "
            f"({wins_noise} by more than {NOISE:.2f}; it loses by more than {NOISE:.2f} on {losses_noise}); "
            f"mean held-out difference {np.mean([d for *_, d in rows_loto]):+.3f}.",
            "",
        ]
        all_rows = loto(shifted, acc, [a for a in ARMS if all((a, *k) in acc for k in shifted)])
        picks_all = sorted({a for _, a, _, _ in all_rows})
        lines += [
            f"With the domain_weight=0 arms also candidates, the choice is {', '.join(picks_all)}, and it beats "
            f"no adaptation on {sum(d > 0 for *_, d in all_rows)} of {n} "
            f"(mean held-out difference {np.mean([d for *_, d in all_rows]):+.3f}).",
            "",
        ]
        lines += seed_check(extra, acc, complete, shifted)
        lines += ["### Conclusions", ""] + conclusions(shifted, complete, acc, recs, rows_loto, ref, cfg, extra)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines).rstrip() + "\n")
    return out


def seed_check(extra, acc, complete, shifted):
    """Accuracy of the arms that were re-run with other seeds (``--seed-check``), next to seed 0."""
    lines = []
    for arm in ARMS:
        seeds = sorted({k[3] for k in extra if k[0] == arm})
        if not seeds:
            continue
        keys = [k for k in complete if all((arm, *k, s) in extra for s in seeds)]
        sh = [k for k in keys if k in shifted]
        all_seeds = [SEED, *seeds]

        def a(k, s):
            return acc[(arm, *k)] if s == SEED else extra[(arm, *k, s)]["accuracy"]

        rows = []
        for k in keys:
            mean = np.mean([a(k, s) for s in all_seeds])
            rows.append([f"{k[0]}, {k[1]}", f"{acc[(REFERENCE, *k)]:.3f}", *[f"{a(k, s):.3f}" for s in all_seeds],
                         f"{mean:.3f}", fmt_diff(mean - acc[(REFERENCE, *k)])])
        lines += [
            f"### Seed check: {arm}",
            "",
            f"The same arm re-run with seeds {', '.join(map(str, seeds))} (`bench_dann_recipe.py --seed-check "
            f"{' '.join(map(str, seeds))} --arms \"{arm}\"`; the seed is the DANN fit's "
            "random_state: batches, dropout and the domain classifier's start; the no-adaptation reference has "
            "no randomness). The leave-one-target-out choice above uses seed 0 only.",
            "",
            C.md_table(["target", REFERENCE, *[f"seed {s}" for s in all_seeds], "mean over seeds", "mean − no adapt."],
                       rows),
            "",
        ]
        if sh:
            per_seed = []
            for s in all_seeds:
                d = np.array([a(k, s) - acc[(REFERENCE, *k)] for k in sh])
                per_seed.append(f"seed {s}: mean {d.mean():+.3f}, wins {int((d > 0).sum())} of {len(sh)}")
            d_all = np.array([a(k, s) - acc[(REFERENCE, *k)] for k in sh for s in all_seeds])
            lines += [f"On the {len(sh)} shifted targets, {'; '.join(per_seed)}. Over all {len(d_all)} "
                      f"(target, seed) fits it beats no adaptation in {int((d_all > 0).sum())}, by more than "
                      f"{NOISE:.2f} in {int((d_all > NOISE).sum())}; smallest difference {d_all.min():+.3f}.", ""]
    return lines


def conclusions(shifted, complete, acc, recs, rows_loto, ref, cfg, extra):
    n = len(shifted)
    out = []
    diffs = {a: np.array([acc[(a, *k)] - acc[(REFERENCE, *k)] for k in shifted]) for a in ARMS}
    best = max(DANN_ARMS, key=lambda a: diffs[a].mean())
    wins = sum(d > 0 for *_, d in rows_loto)
    mean_loto = np.mean([d for *_, d in rows_loto])
    if wins > n / 2 and mean_loto > 0:
        out.append(f"- A DANN recipe chosen without the held-out target's labels beats no adaptation on {wins} of "
                   f"{n} shifted targets (mean {mean_loto:+.3f}); the best arm over all {n} is **{best}** "
                   f"(mean {diffs[best].mean():+.3f}).")
    else:
        out.append(f"- **No DANN recipe measured here beats no adaptation on most shifted targets**: the "
                   f"leave-one-target-out choice wins on {wins} of {n} (mean {mean_loto:+.3f}); the best arm over "
                   f"all {n} in hindsight, **{best}**, has mean {diffs[best].mean():+.3f} and wins on "
                   f"{int((diffs[best] > 0).sum())}.")
    fit = {a: np.mean([recs[(a, *k)]["fit_s"] for k in complete]) for a in ALL_ARMS}
    coral = [ref.get((ds, t, "CORAL"), np.nan) - ref.get((ds, t, REFERENCE), np.nan) for ds, t in shifted]
    if not np.isnan(coral).any():
        coral = np.array(coral)
        beats = [a for a in DANN_ARMS if diffs[a].mean() > coral.mean()]
        out.append(f"- CORAL on frozen embeddings (sections/adaptation.md, same targets and reference) gains "
                   f"{coral.mean():+.3f} on average and wins on {int((coral > 0).sum())} of {n}; "
                   + (f"{', '.join(beats)} beat{'s' if len(beats) == 1 else ''} it on average."
                      if beats else f"every DANN arm is below it on average, and a DANN fit takes "
                      f"{fit[best] / fit[REFERENCE]:.0f}x the time of the frozen probe here."))
    for a, b, what in [
        ("DANN probe", "DANN current", "Starting the class head from the probe (LP-FT)"),
        ("DANN probe, BN frozen", "DANN probe", "Freezing BatchNorm statistics (DANN probe, BN frozen minus DANN probe)"),
        ("DANN probe", "fine-tune probe, domain_weight=0", "The adversarial part (DANN probe minus the same with domain_weight=0)"),
        ("DANN probe, low lr", "DANN probe", "The lower learning rates (DANN probe, low lr minus DANN probe)"),
        ("DANN probe, BN frozen", "fine-tune probe, BN frozen, domain_weight=0",
         "The adversarial part with BN frozen (DANN probe, BN frozen minus the same with domain_weight=0)"),
        ("fine-tune probe, BN frozen, domain_weight=0", "fine-tune probe, domain_weight=0",
         "Freezing BatchNorm statistics without the adversary (fine-tuning from the probe)"),
    ]:
        if not all((x, *k) in acc for x in (a, b) for k in shifted):
            continue
        d = np.array([acc[(a, *k)] - acc[(b, *k)] for k in shifted])
        out.append(f"- {what}: mean {d.mean():+.3f} on the shifted targets, better on {int((d > 0).sum())} of {n}, "
                   f"range {d.min():+.3f} to {d.max():+.3f}.")
    adv, abl = "DANN probe, BN frozen", "fine-tune probe, BN frozen, domain_weight=0"
    seeds = sorted({k[3] for k in extra if k[0] == adv} & {k[3] for k in extra if k[0] == abl})
    if seeds:
        def a(arm, k, s):
            return acc[(arm, *k)] if s == SEED else extra[(arm, *k, s)]["accuracy"]

        pairs = [(k, s) for k in shifted for s in [SEED, *seeds]
                 if all(s == SEED or (x, *k, s) in extra for x in (adv, abl))]
        d = np.array([a(adv, k, s) - a(abl, k, s) for k, s in pairs])
        g = np.array([a(abl, k, s) - acc[(REFERENCE, *k)] for k, s in pairs])
        out.append(f"- Over seeds {', '.join(map(str, [SEED, *seeds]))} ({len(pairs)} shifted (target, seed) fits): "
                   f"fine-tuning from the probe with BatchNorm statistics frozen and no adversary gains {g.mean():+.3f} "
                   f"over no adaptation (better in {int((g > 0).sum())}); the adversary adds {d.mean():+.3f} on top "
                   f"(better in {int((d > 0).sum())} of {len(d)}, range {d.min():+.3f} to {d.max():+.3f}). "
                   + ("Most of the gain is fine-tuning with frozen BatchNorm statistics, not the adversary."
                      if abs(d.mean()) < NOISE else ""))
    clean = [k for k in complete if k[1].startswith("clean")]
    for ds, t in clean:
        cells = ", ".join(f"{a} {acc[(a, ds, t)] - acc[(REFERENCE, ds, t)]:+.3f}" for a in DANN_ARMS)
        out.append(f"- {ds} without shift (no adaptation {acc[(REFERENCE, ds, t)]:.3f}): {cells}.")
    out.append("- Mean fit time per target (s, 1 torch thread, embedding of the source included): "
               + ", ".join(f"{a} {fit[a]:.1f}" for a in ALL_ARMS)
               + ". The arms ran at different times on a shared machine (the load average of each fit is in its "
               "record): fit times of the DANN arms differ by load, not by recipe (same steps, same network).")
    spread = [max(x) - min(x) for arm in ARMS for k in complete
              for x in [[acc[(arm, *k)]] + [r["accuracy"] for kk, r in extra.items() if kk[:3] == (arm, *k)]]
              if len(x) > 1]
    out.append(f"- {cfg['n_target']} target images, {cfg['epochs']} epochs at {cfg['image_size']} px: differences "
               f"within about ±{NOISE:.2f} are noise from the sample alone"
               + (f"; a fine-tuning fit also moves with its seed: over the seed checks, the spread (max − min over "
                  f"3 seeds) of one arm on one target is {np.mean(spread):.3f} on average, up to {max(spread):.3f}. "
                  "Compare arms by their mean over targets (and seeds), not target by target." if spread else "."))
    return out


# ------------------------------------------------------------------- main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny smoke run: records and report in a temp dir")
    p.add_argument("--report-only", action="store_true", help="rebuild the report from the records; run nothing")
    p.add_argument("--seed-check", type=int, nargs="*", metavar="SEED", default=[],
                   help="also run the DANN arms of --arms with these seeds (seed 0 is the main run)")
    p.add_argument("--arms", nargs="*", default=list(ARMS), help="DANN arms for --seed-check (default: all)")
    p.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (default 1: the machine is shared)")
    args = p.parse_args(argv)
    cfg = BA.CONFIGS["quick" if args.quick else "full"]

    C.limit_threads(args.threads)
    started = C.utc_now()
    t0 = time.perf_counter()
    info = C.machine_info()
    info["threads_set"] = args.threads
    vers = C.versions(extra=["skorch"])
    if args.quick:
        tmp = Path(tempfile.mkdtemp(prefix="sktransfer-dann-recipe-"))
        root, out = tmp / "records", tmp / "dann_recipe.md"
    else:
        root, out = RESULTS, OUT
    log(f"bench_dann_recipe ({'quick' if args.quick else 'full'}): records in {root}, load {info.get('loadavg_start')}")
    run_file = root / "last_run.json"  # how the latest run went: the report's header describes it
    if args.report_only:
        if not run_file.exists():
            raise SystemExit(f"--report-only: no run recorded in {run_file}; run the benchmark first.")
        run = json.loads(run_file.read_text())
        run["started"] = C._dt.datetime.fromisoformat(run["started"])
    else:
        unknown = [a for a in args.arms if a not in ARMS]
        if unknown:
            raise SystemExit(f"--arms: unknown arm(s) {unknown}; choose among {list(ARMS)}.")
        n_run, n_done = run_all(root, cfg, info, vers, args.quick)
        for seed in args.seed_check:
            r, d = run_all(root, cfg, info, vers, args.quick, arms=args.arms, seed=seed)
            n_run, n_done = n_run + r, n_done + d
        log(f"{n_run} records written, {n_done} existed")
        try:
            info["loadavg_end"] = tuple(round(x, 2) for x in os.getloadavg())
        except OSError:
            pass
        info["cpu_pressure_end"] = C.cpu_pressure()
        command = "HF_HUB_OFFLINE=1 python benchmarks/bench_dann_recipe.py " + shlex.join(sys.argv[1:] if argv is None
                                                                                       else argv)
        run = dict(info=info, vers=vers, command=command.strip(), started=started,
                   elapsed=time.perf_counter() - t0, n_run=n_run)
        root.mkdir(parents=True, exist_ok=True)
        run_file.write_text(json.dumps(run, indent=1, default=str))
    path = write_report(root, out, cfg, run["info"], run["vers"], run["command"], run["started"], run["elapsed"],
                        run["n_run"])
    log(f"wrote {path} in {(time.perf_counter() - t0) / 60:.1f} min")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""NNCF int8 recipes for the CNN ``timm/tf_efficientnet_lite0`` on OpenVINO (issue 13, follow-up).

OpenVINO int8 with NNCF's defaults (performance preset, fast bias
correction) moved EfficientNet-Lite0's embeddings to mean cosine 0.966 to
torch fp32 and cost -0.7 ± 0.4 probe points on Fashion-MNIST (section "Fast
CPU inference"). This script compares the recipes of
``sktransfer._runtime.CNN_INT8_RECIPES`` (NNCF's own options: preset, full
bias correction, first / last layers kept in float, min-max activation
ranges) against torch fp32, per recipe and task:

- mean / min cosine of the embeddings to torch fp32 (every embedded row);
- frozen-probe accuracy (StandardScaler + LogisticRegression), paired
  difference to torch fp32 for each seed (N rows per class drawn from the
  task's pool by ``suite/tasks.py``, the fixed test split);
- speed: images/s of every arm on the same rows in the same process, arms
  alternated (``_harness.alternate``), ratio to torch fp32 (median of the
  paired ratios); OpenVINO fp32 is timed too as the no-quantization reference.

Protocol: the recipe is *chosen* on the selection tasks (``SELECTION``: image
tasks other than digits and Fashion-MNIST) by a rule fixed in ``choose``,
then *reported* on the held-out tasks (``HELD_OUT``: digits, Fashion-MNIST).
Each extractor is fitted (= calibrated, for int8) on the first seed's
training rows, as a user's ``fit(X_train)`` would. One child process per
task, one thread each.

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_int8_recipes.py --stage selection
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_int8_recipes.py --stage held_out --recipes nncf_default,<chosen>
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_int8_recipes.py --report-only
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_int8_recipes.py --quick     # smoke run, writes nothing

Records: ``benchmarks/results/int8_recipes/<stage>/<recipe>__<task>__seed<k>.json``
(one per recipe, task and seed; the torch fp32 and OpenVINO fp32 reference
arms are recorded as recipes ``torch_fp32`` / ``openvino_fp32``) and
``run_<stage>.json`` (machine, load, versions, command). Section:
``sections/int8_recipes.md`` from ``sections/int8_recipes_notes.md``.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
for _p in (HERE, HERE / "suite"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import numpy as np  # noqa: E402

import _common as C  # noqa: E402
import _harness as H  # noqa: E402

NAME = "int8_recipes"
RESULTS = H.RESULTS / NAME
SELECTION = ["openclipart", "emoji", "lfw_faces"]
HELD_OUT = ["digits", "fashion_mnist"]
REF, FP32 = "torch_fp32", "openvino_fp32"
TARGET_POINTS = 0.5  # issue 13: probe accuracy within 0.5 points of torch fp32
TARGET_SPEEDUP = 2.5  # the brief: a recipe must keep >= 2.5x torch fp32
CONFIGS = {
    "full": dict(n=32, seeds=[0, 1, 2], test_cap=300, speed_n=64, speed_bs=16, speed_reps=3, threads=1, jobs=2),
    "quick": dict(n=2, seeds=[0], test_cap=8, speed_n=8, speed_bs=4, speed_reps=1, threads=1, jobs=1),
}
log = H.log


def recipes_all():
    from sktransfer._runtime import CNN_INT8_RECIPES

    return list(CNN_INT8_RECIPES)


def draw_idx(split, n, seed):
    """Indices of ``tasks.draw(split, n, seed)`` (same generator, same calls: the same rows)."""
    rng = np.random.RandomState(10_000 + seed)
    idx = np.concatenate([rng.choice(p, min(n, len(p)), replace=False) for p in split.pool])
    return rng.permutation(idx)


def probe():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))


# ------------------------------------------------------------------ child
def child_task(spec):
    """One task: torch fp32, OpenVINO fp32 and every recipe's OpenVINO int8; cosines, probes, speed."""
    import warnings

    import tasks as T

    import sktransfer
    from sktransfer import PretrainedFeatureExtractor
    from sktransfer import _runtime as R

    warnings.filterwarnings("ignore")
    sktransfer.set_config(cache_dir=spec["cache_dir"])
    cfg, task = spec["cfg"], spec["task"]
    load0 = os.getloadavg()
    split = T.load_split(task)
    draws = {s: draw_idx(split, cfg["n"], s) for s in cfg["seeds"]}
    assert all(np.array_equal(split.y_all[draws[s]], T.draw(split, cfg["n"], s)[1]) for s in cfg["seeds"])
    rows = np.unique(np.concatenate(list(draws.values())))
    pos = {int(i): j for j, i in enumerate(rows)}
    te = np.arange(len(split.y_test))
    if cfg["test_cap"] and len(te) > cfg["test_cap"]:
        te = np.linspace(0, len(te) - 1, cfg["test_cap"]).round().astype(int)
    X_rows, X_test, y_test = [split.X_all[i] for i in rows], [split.X_test[i] for i in te], split.y_test[te]
    X_fit = [split.X_all[i] for i in draws[cfg["seeds"][0]]]
    X_speed = X_test[: cfg["speed_n"]]
    out = {"task": task, "n_rows": len(rows), "n_test": len(te), "n_fit": len(X_fit),
           "n_train": {str(s): len(d) for s, d in draws.items()}, "arms": {}}
    exts, ref = {}, None
    arms = [REF, FP32] + list(spec["recipes"])
    for arm in arms:
        backend, quantize = {"torch_fp32": ("torch", None), "openvino_fp32": ("openvino", None)}.get(arm, ("openvino", "int8"))
        if quantize:
            R.CNN_INT8_RECIPE = arm
        t = time.perf_counter()
        ext = PretrainedFeatureExtractor(H.IMAGE, backend=backend, quantize=quantize, batch_size=cfg["speed_bs"],
                                         cache=None, verbose=False).fit(X_fit)
        fit_s = time.perf_counter() - t
        E = np.vstack([ext.transform(X_rows), ext.transform(X_test)])
        embed_s = time.perf_counter() - t - fit_s
        if ref is None:
            ref = E
        cos = np.sum(E * ref, 1) / (np.linalg.norm(E, axis=1) * np.linalg.norm(ref, axis=1) + 1e-12)
        accs = {}
        for s, d in draws.items():
            Z = E[[pos[int(i)] for i in d]]
            accs[str(s)] = float(probe().fit(Z, split.y_all[d]).score(E[len(rows):], y_test))
        out["arms"][arm] = {"acc": accs, "cos_mean": float(cos.mean()), "cos_min": float(cos.min()),
                            "fit_s": fit_s, "embed_s": embed_s, "n_embedded": len(E),
                            "recipe": R.CNN_INT8_RECIPES.get(arm) if quantize else None,
                            "key": getattr(ext, "compiled_key_", None)}
        exts[arm] = ext
        log(f"    {task} {arm}: cos {cos.mean():.4f} (min {cos.min():.4f}), acc "
            + ", ".join(f"{a:.3f}" for a in accs.values()) + f", fit {fit_s:.1f} s, embed {embed_s:.1f} s")
    for e in exts.values():
        e.transform(X_speed[: cfg["speed_bs"]])  # warm-up
    times = H.alternate({a: (lambda e=e: e.transform(X_speed)) for a, e in exts.items()}, cfg["speed_reps"])
    for a, ts in times.items():
        out["arms"][a]["speed"] = {"per_s": len(X_speed) / C.median(ts),
                                   "ratio": C.median([tr / ta for tr, ta in zip(times[REF], ts)]), "times": ts}
    log(f"    {task} speed (x torch fp32): " + ", ".join(f"{a} {out['arms'][a]['speed']['ratio']:.2f}" for a in arms))
    out["loadavg"] = [round(x, 2) for x in load0] + [round(x, 2) for x in os.getloadavg()]
    return out


# ------------------------------------------------------------------ records
def write_records(stage, res, run, skip=()):
    meta = {"command": run["command"], "started": str(run["started"]), "loadavg_start": run["info"].get("loadavg_start"),
            "cpu": run["info"].get("cpu"), "versions": run["vers"]}
    for task, r in res.items():
        role = "selection" if task in SELECTION else "held_out"
        ref = r["arms"][REF]
        for arm, a in r["arms"].items():
            if arm in skip:
                continue
            for s, acc in a["acc"].items():
                H.write_json(RESULTS / stage / f"{arm}__{task}__seed{s}.json", {
                    "recipe": arm, "recipe_params": a["recipe"], "task": task, "role": role, "seed": int(s),
                    "n_per_class": r["cfg_n"], "n_train": r["n_train"][s], "n_test": r["n_test"], "n_fit": r["n_fit"],
                    "acc": acc, "acc_torch_fp32": ref["acc"][s], "delta_points": 100 * (acc - ref["acc"][s]),
                    "cos_mean": a["cos_mean"], "cos_min": a["cos_min"], "n_embedded": a["n_embedded"],
                    "speed_ratio": a["speed"]["ratio"], "img_per_s": a["speed"]["per_s"], "fit_s": a["fit_s"],
                    "loadavg_child": r["loadavg"], "run": meta,
                })


def records_from_log(log_path, stage, run):
    """Records of a run stopped before its speed step, from the children's log lines
    (``[task] task arm: cos .. (min ..), acc a, b, c, fit .. s, embed .. s``): no speed."""
    import re

    pat = re.compile(r"\[(\w+)\] \1 (\w+): cos ([\d.]+) \(min ([\d.]+)\), acc ([\d., ]+), fit ([\d.]+) s")
    res = {}
    for line in Path(log_path).read_text().splitlines():
        m = pat.search(line)
        if m:
            task, arm = m.group(1), m.group(2)
            accs = [float(a) for a in m.group(5).split(",")]
            r = res.setdefault(task, {"arms": {}, "n_train": {}, "n_test": None, "n_fit": None, "loadavg": None,
                                      "cfg_n": CONFIGS["full"]["n"]})
            r["arms"][arm] = {"acc": {str(s): a for s, a in zip(CONFIGS["full"]["seeds"], accs)},
                              "cos_mean": float(m.group(3)), "cos_min": float(m.group(4)), "fit_s": float(m.group(6)),
                              "n_embedded": None, "speed": {"ratio": None, "per_s": None},
                              "recipe": None if arm in (REF, FP32) else recipes_params().get(arm)}
    import tasks as T

    for task, r in res.items():
        split, cap = T.load_split(task), CONFIGS["full"]["test_cap"]
        r["n_test"] = min(len(split.y_test), cap) if cap else len(split.y_test)
        r["n_train"] = {s: int(sum(min(CONFIGS["full"]["n"], len(q)) for q in split.pool)) for s in r["arms"][REF]["acc"]}
    write_records(stage, res, run, skip=(REF, FP32))  # the reference arms' records come from a complete run
    return res


def recipes_params():
    from sktransfer._runtime import CNN_INT8_RECIPES

    return CNN_INT8_RECIPES


def load_records():
    recs = [H.read_json(p) for p in sorted(RESULTS.glob("*/*__*__seed*.json"))]
    if not recs:
        raise SystemExit(f"--report-only: no records under {RESULTS}; run the benchmark first.")
    return recs


def by_arm_task(recs):
    out = {}
    for r in recs:
        out.setdefault((r["recipe"], r["task"]), []).append(r)
    return out


def choose(recs):
    """The rule, fixed before the held-out run: among int8 recipes with a paired speed ratio >= TARGET_SPEEDUP
    on every selection task, the highest mean cosine averaged over the selection tasks."""
    g = by_arm_task([r for r in recs if r["role"] == "selection"])
    arms = sorted({a for a, _ in g} - {REF, FP32})
    tasks = sorted({t for _, t in g})
    score = {}
    for a in arms:
        rs = [g[(a, t)][0] for t in tasks if (a, t) in g]
        if len(rs) == len(tasks) and all(r["speed_ratio"] >= TARGET_SPEEDUP for r in rs):
            score[a] = float(np.mean([r["cos_mean"] for r in rs]))
    return (max(score, key=score.get) if score else None), score


# ------------------------------------------------------------------ report
def table(recs, role):
    g = by_arm_task([r for r in recs if r["role"] == role])
    tasks = [t for t in (SELECTION if role == "selection" else HELD_OUT) if any(k[1] == t for k in g)]
    order = [REF, FP32] + [a for a in recipes_all()]
    rows = []
    for t in tasks:
        for a in order:
            if (a, t) not in g:
                continue
            rs = sorted(g[(a, t)], key=lambda r: r["seed"])
            acc_m, acc_s = H.mean_std([r["acc"] for r in rs])
            d_m, d_s = H.mean_std([r["delta_points"] for r in rs])
            r0 = rs[0]
            sp = r0["speed_ratio"]
            ok = "" if a in (REF, FP32) else ("yes" if abs(d_m) <= TARGET_POINTS and (sp is None or sp >= TARGET_SPEEDUP) else "no")
            rows.append([t, a, str(len(rs)), f"{r0['cos_mean']:.4f}", f"{r0['cos_min']:.4f}", H.pm(acc_m, acc_s),
                         "–" if a == REF else f"{d_m:+.2f} ± {d_s:.2f}", "not timed" if sp is None else f"{sp:.2f}x",
                         f"{r0['fit_s']:.0f}", ok])
    return H.md_table(["Task", "Arm", "seeds", "mean cos", "min cos", "probe acc (%)", "Δ vs torch (pts, paired)",
                       "speed / torch fp32", "fit (s)", f"Δ within ±{TARGET_POINTS} pts and >= {TARGET_SPEEDUP}x"], rows,
                      "llrrrrrrrl")


def summary(recs, chosen):
    g = by_arm_task(recs)
    lines = []
    for role, tasks in (("selection", SELECTION), ("held-out", HELD_OUT)):
        for a in [a for a in recipes_all() if any((a, t) in g for t in tasks)]:
            parts = []
            for t in tasks:
                if (a, t) in g:
                    rs = g[(a, t)]
                    d_m, d_s = H.mean_std([r["delta_points"] for r in rs])
                    sp = rs[0]["speed_ratio"]
                    parts.append(f"{t} cos {rs[0]['cos_mean']:.3f}, Δ {d_m:+.1f} ± {d_s:.1f}"
                                 + ("" if sp is None else f", {sp:.1f}x"))
            lines.append(f"{role}, **{a}**{' (chosen)' if a == chosen else ''}: " + "; ".join(parts))
    return "\n".join(f"- {s}" for s in lines)


def recipes_md():
    from sktransfer._runtime import CNN_INT8_RECIPES

    return H.md_table(["Recipe", "NNCF options"], [[k, f"`{v}`" if v else "NNCF's defaults"] for k, v in CNN_INT8_RECIPES.items()], "ll")


def report(recs, out=None):
    runs = sorted(RESULTS.glob("run_*.json"))
    run = H.read_json(runs[-1])
    run["started"] = dt.datetime.fromisoformat(str(run["started"]))
    chosen, score = choose(recs)
    n_test = {r["task"]: r["n_test"] for r in recs}
    blocks = {
        "header": "\n\n".join(H.header(dict(H.read_json(p), started=dt.datetime.fromisoformat(str(H.read_json(p)["started"]))))
                             for p in runs),
        "recipes": recipes_md(),
        "chosen": f"**{chosen}**" if chosen else "none (no recipe kept the speed-up on every selection task)",
        "scores": ", ".join(f"{a} {s:.4f}" for a, s in sorted(score.items(), key=lambda kv: -kv[1])),
        "summary": summary(recs, chosen),
        "selection_table": table(recs, "selection"),
        "held_out_table": table(recs, "held_out"),
        "tasks": "; ".join(f"{t} ({n} test rows)" for t, n in n_test.items()),
        "n": recs[0]["n_per_class"], "seeds": len({r["seed"] for r in recs}),
        "target_points": TARGET_POINTS, "target_speedup": TARGET_SPEEDUP,
    }
    del run
    H.write_section(NAME, blocks, out)


# ------------------------------------------------------------------ main
def main(argv=None):
    p = H.parser(__doc__, threads=1)
    p.add_argument("--stage", choices=["selection", "held_out", "held_out_stopped"], default="selection",
                   help="which tasks: the selection tasks (choose) or the held-out ones (report)")
    p.add_argument("--recipes", default=None, help="comma-separated recipe names (default: all of CNN_INT8_RECIPES)")
    p.add_argument("--tasks", default=None, help="comma-separated tasks (default: the stage's)")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default: the config's)")
    p.add_argument("--from-log", default=None,
                   help="write the --stage records from the log of a run stopped before its speed step (no speed)")
    args = p.parse_args(argv)
    if args._child:
        H.quiet()
        return H.child_main(args._child, {"task": child_task})
    if args.from_log:
        path = RESULTS / f"run_{args.stage}.json"
        if path.exists():
            run = H.read_json(path)
        else:  # the stopped run wrote none: this process's machine and versions, the stopped run's command
            run = H.finish_run(H.start_run(args.threads, ["openvino", "nncf", "onnx", "numpy"]))
            run["command"] = (f"HF_HUB_OFFLINE=1 python benchmarks/bench_int8_recipes.py --stage {args.stage}, stopped "
                              f"before its speed step; records from its log by --from-log")
            H.write_json(path, run)
        records_from_log(args.from_log, args.stage, run)
        return report(load_records())
    if args.report_only:
        return report(load_records())
    cfg = dict(CONFIGS["quick" if args.quick else "full"])
    if args.seeds:
        cfg["seeds"] = [int(x) for x in args.seeds.split(",")]
    recipes = args.recipes.split(",") if args.recipes else recipes_all()
    unknown = sorted(set(recipes) - set(recipes_all()))
    if unknown:
        raise SystemExit(f"--recipes: unknown {unknown}; known: {recipes_all()}")
    tasks = args.tasks.split(",") if args.tasks else (SELECTION if args.stage == "selection" else HELD_OUT)
    if args.quick:
        tasks, recipes = tasks[:1], recipes[:1]
    run = H.start_run(args.threads, ["openvino", "nncf", "onnx", "numpy"])
    cache_dir = tempfile.mkdtemp(prefix="skt-bench-int8-")
    try:
        specs = [{"kind": "task", "label": t, "task": t, "cfg": cfg, "recipes": recipes, "cache_dir": cache_dir,
                  "threads": cfg["threads"]} for t in tasks]
        res = {}
        for spec, r in zip(specs, H.run_children(Path(__file__).resolve(), specs, cfg["jobs"])):
            r["cfg_n"] = cfg["n"]
            res[spec["task"]] = r
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    run = H.finish_run(run)
    if args.quick:
        log(f"quick run done in {run['elapsed']:.0f} s: " + ", ".join(
            f"{t} {a} cos {r['arms'][a]['cos_mean']:.4f} speed {r['arms'][a]['speed']['ratio']:.2f}x"
            for t, r in res.items() for a in r["arms"]))
        return None
    write_records(args.stage, res, run)
    H.write_json(RESULTS / f"run_{args.stage}.json", run)
    report(load_records())
    return None


if __name__ == "__main__":
    sys.exit(main())

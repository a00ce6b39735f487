#!/usr/bin/env python
"""Benchmark of ``FineTunedClassifier``'s strategies (fine-tuning issue).

Two tasks with few labelled examples per class, each strategy of
``FineTunedClassifier`` (``linear_probe``, ``partial``, ``full``,
``progressive``) next to frozen embeddings + ``LogisticRegression``:
Fashion-MNIST with ``timm/tf_efficientnet_lite0`` at a small input size, and
BBC News with ``all-MiniLM-L6-v2`` on truncated articles (data draws,
recipes and child processes: ``_harness.py``, shared with bench_lora and
bench_forgetting). For every (task, N, method) one fresh subprocess trains all
seeds: accuracy (mean ± std over seeds), seconds per epoch and peak training
memory above the pre-fit RSS.

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_fine_tuning.py               # full run, records + section + plot
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_fine_tuning.py --quick       # smoke run, writes nothing
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_fine_tuning.py --report-only # rebuild from the records

Records: ``benchmarks/results/fine_tuning/results.json``; prose:
``sections/fine_tuning_notes.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _harness as H  # noqa: E402

RECORD = H.RESULTS / "fine_tuning" / "results.json"
PLOT = HERE / "fine_tuning.png"
STRATEGIES = ["linear_probe", "partial", "full", "progressive"]
CONFIGS = {
    "full": dict(
        image_size=32, max_length=64,
        fmnist_test=1000, bbc_test=200,
        fmnist_shots=[10, 100], bbc_shots=[8, 32],
        seeds={("fmnist", 10): [0, 1, 2], ("fmnist", 100): [0, 1, 2], ("bbc", 8): [0, 1, 2], ("bbc", 32): [0, 1, 2]},
        epochs={("fmnist", 10): 10, ("fmnist", 100): 6, ("bbc", 8): 6, ("bbc", 32): 3},
    ),
    "quick": dict(
        image_size=32, max_length=32,
        fmnist_test=40, bbc_test=20,
        fmnist_shots=[2], bbc_shots=[2],
        seeds={("fmnist", 2): [0, 1], ("bbc", 2): [0, 1]},
        epochs={("fmnist", 2): 1, ("bbc", 2): 1},
    ),
}

log = H.log
_COST = {"linear_probe": 1.0, "partial": 1.5, "progressive": 1.6, "full": 3.0, H.BASELINE: 0.3}


def spec_cost(spec):
    """Rough relative cost, to start the longest children first."""
    return sum(len(j["seeds"]) * j["shots"] * j.get("params", {}).get("max_epochs", 1) * (10.0 if spec["task"] == "bbc" else 1.0)
               * _COST.get(j["method"].split("+")[0], 3.0) for j in spec["jobs"])


def build_specs(cfg, sections, threads):
    """One fresh child process per (task, N, method), all seeds inside it."""
    specs = []
    for task in [t for t in ("fmnist", "bbc") if t in sections]:
        base = dict(task=task, n_test=cfg[f"{task}_test"], threads=threads, cfg=tuple_keys(cfg))
        for n in cfg[f"{task}_shots"]:
            seeds = cfg["seeds"][(task, n)]
            specs.append({**base, "kind": "baseline", "label": f"{task}-{n} {H.BASELINE}",
                          "jobs": [dict(method=H.BASELINE, shots=n, seeds=seeds)]})
            for m in STRATEGIES:
                job = dict(method=m, shots=n, seeds=seeds, params=H.strategy_params(task, m, cfg["epochs"][(task, n)], cfg))
                specs.append({**base, "kind": "finetune", "label": f"{task}-{n} {m}", "jobs": [job]})
    return specs


def tuple_keys(cfg):
    """JSON turns tuple keys into strings: ``(task, n)`` -> ``"task:n"``."""
    return {**cfg, **{k: {f"{t}:{n}": v for (t, n), v in cfg[k].items()} for k in ("seeds", "epochs")}}


def untuple(d):
    return {(k.split(":")[0], int(k.split(":")[1])) if ":" in k else k: v for k, v in d.items()}


def results_tables(res, cfg):
    lines = []
    for task in ("fmnist", "bbc"):
        for shots in cfg[f"{task}_shots"]:
            key = (task, shots)
            if key not in res:
                continue
            rows_in = res[key]
            full = rows_in.get("full")
            n_train = rows_in[H.BASELINE]["runs"][0]["n_train"] if H.BASELINE in rows_in else None
            n_test = rows_in[H.BASELINE]["runs"][0]["n_test"] if H.BASELINE in rows_in else None
            seeds = cfg["seeds"][key]
            what = (f"{H.TASK_NAMES[task]}, {shots} labelled {'images' if task == 'fmnist' else 'articles'} per class "
                    f"({n_train} in all), {n_test} test {'images' if task == 'fmnist' else 'articles'}, "
                    f"{len(seeds)} seeds, {cfg['epochs'][key]} epochs")
            lines.append(f"**{what}**\n")
            rows = []
            for m in [H.BASELINE, *STRATEGIES]:
                if m not in rows_in:
                    continue
                s = rows_in[m]["summary"]
                ep = s["epoch_s"]
                ep_txt = f"{ep:.1f} (one embedding pass)" if m == H.BASELINE else f"{ep:.1f}"
                ratio_t = f"{ep / full['summary']['epoch_s']:.2f}" if full and m != H.BASELINE else "–"
                ratio_m = f"{s['mem'] / full['summary']['mem']:.2f}" if full and full["summary"]["mem"] > 0 else "–"
                rows.append([
                    f"`{m}`" if m != H.BASELINE else "frozen embeddings + LogisticRegression",
                    H.pm(s["acc_mean"], s["acc_std"]),
                    " / ".join(f"{100 * a:.1f}" for a in s["accs"]),
                    ep_txt, ratio_t, f"{s['fit_s']:.0f}", f"{H.mib(s['mem']):.0f}", ratio_m,
                ])
            lines.append(H.md_table(
                ["method", "accuracy % (mean ± std)", "per seed", "s / epoch", "× full", "fit s (median)",
                 "peak train memory, MiB above pre-fit RSS", "× full"],
                rows, "lrrrrrrr"))
            lines.append("")
    return "\n".join(lines)


def best_lines(res, cfg):
    """One generated line per setting: the best method and the frozen baseline."""
    out = []
    for key in [(t, n) for t in ("fmnist", "bbc") for n in cfg[f"{t}_shots"] if (t, n) in res]:
        r = {m: v["summary"] for m, v in res[key].items()}
        best = max(r, key=lambda m: r[m]["acc_mean"])
        line = f"- {H.TASK_NAMES[key[0]]}, {key[1]}/class: best `{best}` ({100 * r[best]['acc_mean']:.1f} %)"
        if H.BASELINE in r:
            line += f"; frozen embeddings + LogisticRegression {100 * r[H.BASELINE]['acc_mean']:.1f} %"
        out.append(line + ".")
    return "\n".join(out)


def report(res, run, cfg, out=None):
    hp_rows = [[H.TASK_NAMES[t], f"`{m}`", ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                                    for k, v in {**H.FT_HP[t]["common"], **H.FT_HP[t][m]}.items())]
               for t in ("fmnist", "bbc") for m in STRATEGIES]
    blocks = {"header": H.header(run), "image": H.IMAGE, "text": H.TEXT, "image_size": cfg["image_size"],
              "max_length": cfg["max_length"], "fmnist_test": cfg["fmnist_test"], "fmnist_test_per_class": cfg["fmnist_test"] // 10,
              "bbc_test": cfg["bbc_test"], "bbc_test_per_class": cfg["bbc_test"] // 5, "C": f"{H.LOGREG_C['fmnist']:g}",
              "hp_table": H.md_table(["task", "strategy", "parameters"], hp_rows, "lll"),
              "tables": results_tables(res, cfg), "best": best_lines(res, cfg), "notes": run.get("notes", "")}
    H.write_section("fine_tuning", blocks, out)


def plot(res, cfg, path):
    keys = [(t, s) for t in ("fmnist", "bbc") for s in cfg[f"{t}_shots"] if (t, s) in res]
    colors = dict(zip([H.BASELINE, *STRATEGIES], ["#888888", "#4c72b0", "#55a868", "#c44e52", "#8172b2"]))
    panels = []
    for key in keys:
        ms = [m for m in colors if m in res[key]]
        s = [res[key][m]["summary"] for m in ms]
        means, stds = [100 * x["acc_mean"] for x in s], [100 * x["acc_std"] for x in s]
        panels.append(dict(title=f"{H.TASK_NAMES[key[0]]}, {key[1]}/class ({len(cfg['seeds'][key])} seeds)",
                           labels=["frozen\n+LR" if m == H.BASELINE else m.replace("_", "\n") for m in ms],
                           values=means, errors=stds, points=[[100 * a for a in x["accs"]] for x in s],
                           colors=[colors[m] for m in ms], ylabel="test accuracy (%)",
                           ylim=(max(0, min(m - d for m, d in zip(means, stds)) - 10), 100)))
    if panels:
        H.bar_panels(panels, path, "FineTunedClassifier strategies (error bars: std over seeds; dots: seeds)",
                     ncols=min(len(panels), 2) if len(panels) <= 4 else 3)


def main(argv=None):
    p = H.parser(__doc__)
    p.add_argument("--sections", default="fmnist,bbc", help="comma-separated subset of fmnist,bbc")
    p.add_argument("--jobs", type=int, default=2, help="children run at a time (default 2, one per core, 1 torch thread each)")
    p.add_argument("--record", default=str(RECORD), help="JSON record to write (full run) or read (--report-only)")
    args = p.parse_args(argv)
    if args._child:
        return H.child_main(args._child, {"finetune": H.child_finetune, "baseline": H.child_baseline})
    if args.report_only:
        rec = H.read_json(args.record)
        run = {**rec["run"], "started": H.dt.datetime.fromisoformat(rec["run"]["started"])}
        cfg = {**rec["cfg"], "seeds": untuple(rec["cfg"]["seeds"]), "epochs": untuple(rec["cfg"]["epochs"])}
        res = untuple(rec["res"])
    else:
        cfg = dict(CONFIGS["quick" if args.quick else "full"])
        sections = [s.strip() for s in args.sections.split(",") if s.strip()]
        if set(sections) - {"fmnist", "bbc"}:
            raise SystemExit(f"unknown sections: {sorted(set(sections) - {'fmnist', 'bbc'})}")
        run = H.start_run(args.threads, ["skorch", "numpy", "psutil"], calibrate=True, limit=False)
        specs = build_specs(cfg, sections, args.threads)
        res = {}
        for spec, out in zip(specs, H.run_children(Path(__file__).resolve(), specs, args.jobs, spec_cost)):
            for j in out["jobs"]:
                key = (spec["task"], j["job"]["shots"])
                res.setdefault(key, {})[j["job"]["method"]] = {"runs": j["runs"], "summary": H.summarize(j["runs"]),
                                                               "params": j.get("params"), "process_s": out["process_s"]}
        run = H.finish_run(run, notes=f"Budget: {args.jobs} child processes at a time, each with {args.threads} torch "
                                      "thread(s) (on this shared 2-core machine, 2 OpenMP threads per process were "
                                      "measured 15x slower than 1).")
        if args.quick:
            return log(str({k: {m: v["summary"]["acc_mean"] for m, v in r.items()} for k, r in res.items()}))
        H.write_json(args.record, {"cfg": tuple_keys(cfg), "res": {f"{k[0]}:{k[1]}": v for k, v in res.items()}, "run": run})
    report(res, run, cfg)
    plot(res, cfg, PLOT)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Benchmark of ``LoRAClassifier`` (LoRA issue) against full fine-tuning and a linear probe.

On BBC News (``all-MiniLM-L6-v2``) and Fashion-MNIST
(``tf_efficientnet_lite0``), with the data, test sets and full / linear-probe
recipes of ``bench_fine_tuning.py`` (all in ``_harness.py``): accuracy over
seeds, trainable fraction, size of what ``save`` writes, seconds per epoch and
peak training memory (one fresh subprocess per (task, method)); the issue's
targets reported as met / not met.

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_lora.py               # full run, records + section + plot
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_lora.py --quick       # smoke run, writes nothing
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_lora.py --report-only # rebuild from the records

Records: ``benchmarks/results/lora/results.json``; prose: ``sections/lora_notes.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _harness as H  # noqa: E402

RECORD = H.RESULTS / "lora" / "results.json"
PLOT = HERE / "lora.png"
METHODS = ["lora", "full", "linear_probe"]
LABELS = {"lora": "LoRA r=8 (`LoRAClassifier`)", "full": "full fine-tuning", "linear_probe": "linear probe"}

# LoRA: one learning rate for adapters and head (head_lr=None; a larger head
# rate was worse in the tuning run). r=8, alpha=16, dropout 0.05, PEFT targets
# chosen by the library ("auto": query/key/value for MiniLM, the 1x1
# convolutions wide enough for rank 8 for EfficientNet).
LORA_HP = {
    "fmnist": dict(r=8, lora_alpha=16, lora_dropout=0.05, lr=3e-3, batch_size=16, warmup=0.1, weight_decay=0.01),
    "bbc": dict(r=8, lora_alpha=16, lora_dropout=0.05, lr=1e-2, batch_size=8, warmup=0.1, weight_decay=0.01),
}

CONFIGS = {
    "full": dict(
        image_size=32, max_length=64, ref_n=0,
        fmnist_test=1000, bbc_test=200,
        shots={"bbc": 32, "fmnist": 100}, seeds={"bbc": [0, 1, 2], "fmnist": [0, 1, 2]}, epochs={"bbc": 3, "fmnist": 6},
    ),
    "quick": dict(
        image_size=32, max_length=32, ref_n=0,
        fmnist_test=40, bbc_test=20,
        shots={"bbc": 2, "fmnist": 2}, seeds={"bbc": [0], "fmnist": [0]}, epochs={"bbc": 1, "fmnist": 1},
    ),
}

log = H.log


def lora_params(task, cfg):
    return {**LORA_HP[task], "max_epochs": cfg["epochs"][task], **H.input_kwargs(task, cfg)}


def build_specs(cfg, tasks, threads):
    specs = []
    for task in tasks:
        n, seeds, ep = cfg["shots"][task], cfg["seeds"][task], cfg["epochs"][task]
        for m in METHODS:
            job = dict(method=m, shots=n, seeds=seeds, save_size=True,
                       params=lora_params(task, cfg) if m == "lora" else H.strategy_params(task, m, ep, cfg))
            if m == "lora":
                job["estimator"] = "LoRAClassifier"
            specs.append(dict(task=task, n_test=cfg[f"{task}_test"], threads=threads, kind="finetune", cfg=cfg,
                              label=f"{task} {m}", jobs=[job]))
    return specs


def summarize(runs):
    s, r0 = H.summarize(runs), runs[0]
    return {**s, "save_bytes": r0.get("save_bytes"), "trainable": r0["trainable_end"], "params_all": r0["params_all"],
            "trainable_fraction": r0.get("trainable_fraction", r0["trainable_end"] / r0["params_all"])}


def verdict(ok):
    return "met" if ok else "**not met**"


def report(res, run, cfg, out=None):
    tables = []
    target_rows = []
    for task in ("bbc", "fmnist"):
        if task not in res:
            continue
        r = {m: res[task][m]["summary"] for m in METHODS if m in res[task]}
        full = r.get("full")
        rows = []
        for m in METHODS:
            if m not in r:
                continue
            s = r[m]
            size = s["save_bytes"]
            rows.append([
                LABELS[m],
                H.pm(s["acc_mean"], s["acc_std"]),
                " / ".join(f"{100 * a:.1f}" for a in s["accs"]),
                f"{s['trainable']:,} ({100 * s['trainable_fraction']:.2f} %)",
                f"{size / 1e6:.2f} MB" + (f" ({100 * size / full['save_bytes']:.1f} %)" if full and size else ""),
                f"{s['epoch_s']:.1f}" + (f" ({s['epoch_s'] / full['epoch_s']:.2f}x)" if full else ""),
                f"{H.mib(s['mem']):.0f}" + (f" ({s['mem'] / full['mem']:.2f}x)" if full and full["mem"] > 0 else ""),
            ])
        tables += [
            f"**{H.TASK_NAMES[task]}** (`{H.BACKBONES[task]}`)",
            "",
            H.md_table(
                ["method", "accuracy % (mean ± std)", "per seed", "trainable params (fraction)", "saved file (% of full)",
                 "s / epoch (x full)", "peak train memory, MiB (x full)"],
                rows, "lrrrrrr"),
            "",
        ]
        if "lora" in r and full:
            lo = r["lora"]
            d = 100 * (lo["acc_mean"] - full["acc_mean"])
            if task == "bbc":
                target_rows.append(["trainable fraction <= 2 % at r=8 on MiniLM", f"{100 * lo['trainable_fraction']:.2f} %",
                                    verdict(lo["trainable_fraction"] <= 0.02)])
            frac = lo["save_bytes"] / full["save_bytes"]
            target_rows += [
                [f"{H.TASK_NAMES[task]}: adapter file <= 5 % of the full weights",
                 f"{lo['save_bytes'] / 1e6:.2f} MB vs {full['save_bytes'] / 1e6:.1f} MB = {100 * frac:.1f} %", verdict(frac <= 0.05)],
                [f"{H.TASK_NAMES[task]}: peak training memory below full fine-tuning",
                 f"{H.mib(lo['mem']):.0f} vs {H.mib(full['mem']):.0f} MiB ({lo['mem'] / full['mem']:.2f}x)", verdict(lo["mem"] < full["mem"])],
                [f"{H.TASK_NAMES[task]}: accuracy within 2 points of full fine-tuning",
                 f"{100 * lo['acc_mean']:.1f} vs {100 * full['acc_mean']:.1f} % ({d:+.1f} points; std {100 * lo['acc_std']:.1f} / {100 * full['acc_std']:.1f})",
                 verdict(d >= -2.0)],
            ]
            if task != "bbc":
                target_rows.append([f"{H.TASK_NAMES[task]}: trainable fraction (target stated for MiniLM only)",
                                    f"{100 * lo['trainable_fraction']:.2f} %", "–"])
    hp = "; ".join(f"{H.TASK_NAMES[t]}: " + ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                                    for k, v in LORA_HP[t].items()) for t in ("bbc", "fmnist"))
    blocks = {"header": H.header(run), "text": H.TEXT, "image": H.IMAGE, "max_length": cfg["max_length"],
              "image_size": cfg["image_size"], "bbc_shots": cfg["shots"]["bbc"], "bbc_test": cfg["bbc_test"],
              "bbc_seeds": cfg["seeds"]["bbc"], "bbc_epochs": cfg["epochs"]["bbc"], "fmnist_shots": cfg["shots"]["fmnist"],
              "fmnist_test": cfg["fmnist_test"], "fmnist_seeds": cfg["seeds"]["fmnist"],
              "fmnist_epochs": cfg["epochs"]["fmnist"], "lora_hp": hp, "tables": "\n".join(tables),
              "targets": H.md_table(["target", "measured", "verdict"], target_rows, "lll") if target_rows else "",
              "notes": run.get("notes", "")}
    H.write_section("lora", blocks, out)


def plot(res, path):
    colors = {"lora": "#c44e52", "full": "#4c72b0", "linear_probe": "#55a868"}
    panels = []
    for task in [t for t in ("bbc", "fmnist") if t in res]:
        ms = [m for m in METHODS if m in res[task]]
        s = {m: res[task][m]["summary"] for m in ms}
        common = dict(labels=ms, colors=[colors[m] for m in ms])
        panels += [
            dict(common, title=f"{H.TASK_NAMES[task]}: accuracy", values=[100 * s[m]["acc_mean"] for m in ms],
                 errors=[100 * s[m]["acc_std"] for m in ms], ylabel="test accuracy (%)",
                 ylim=(max(0, min(100 * (s[m]["acc_mean"] - s[m]["acc_std"]) for m in ms) - 10), 100)),
            dict(common, title=f"{H.TASK_NAMES[task]}: training memory", values=[H.mib(s[m]["mem"]) for m in ms],
                 ylabel="peak train memory above pre-fit RSS (MiB)"),
            dict(common, title=f"{H.TASK_NAMES[task]}: file on disk", values=[s[m]["save_bytes"] / 1e6 for m in ms],
                 ylabel="saved .safetensors (MB, log)", log=True),
        ]
    H.bar_panels(panels, path, "LoRAClassifier (r=8) vs full fine-tuning vs linear probe", ncols=3)


def main(argv=None):
    p = H.parser(__doc__)
    p.add_argument("--tasks", default="bbc,fmnist", help="comma-separated subset of bbc,fmnist")
    p.add_argument("--jobs", type=int, default=2, help="children run at a time (default 2, 1 torch thread each)")
    p.add_argument("--record", default=str(RECORD), help="JSON record to write (full run) or read (--report-only)")
    args = p.parse_args(argv)
    if args._child:
        return H.child_main(args._child, {"finetune": H.child_finetune})
    if args.report_only:
        rec = H.read_json(args.record)
        cfg, res, run = rec["cfg"], rec["res"], {**rec["run"], "started": H.dt.datetime.fromisoformat(rec["run"]["started"])}
    else:
        cfg = dict(CONFIGS["quick" if args.quick else "full"])
        tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
        if set(tasks) - {"bbc", "fmnist"}:
            raise SystemExit(f"unknown tasks: {tasks}")
        run = H.start_run(args.threads, ["peft", "skorch", "safetensors", "numpy"], calibrate=True, limit=False)
        specs = build_specs(cfg, tasks, args.threads)
        res = {}
        for spec, out in zip(specs, H.run_children(Path(__file__).resolve(), specs, args.jobs)):
            for j in out["jobs"]:
                res.setdefault(spec["task"], {})[j["job"]["method"]] = {"runs": j["runs"], "summary": summarize(j["runs"]),
                                                                      "params": j["params"]}
        run = H.finish_run(run, notes=f"Budget: {args.jobs} child processes at a time, {args.threads} torch thread(s) each.")
        if args.quick:
            return log(str({t: {m: v["summary"]["acc_mean"] for m, v in r.items()} for t, r in res.items()}))
        H.write_json(args.record, {"cfg": cfg, "res": res, "run": run})
    report(res, run, cfg)
    plot(res, PLOT)


if __name__ == "__main__":
    sys.exit(main())

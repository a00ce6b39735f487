#!/usr/bin/env python
"""Turn the suite's JSON records into tables, a leave-one-task-out choice of
recipes, and a plot; write ``benchmarks/sections/suite.md``.

Protocol (what makes the figures honest):

- The reference is the frozen probe at its defaults (``probe/default``). For
  every record, the *paired difference* is its accuracy minus the probe's on
  the same ``(task, N, seed)``: the same training rows, the same test rows.
- **Leave-one-task-out (LOTO)**: for each method, the recipe reported on task
  *t* is the one with the best mean paired difference over the *other* tasks
  of the same modality (at the same N). No figure in the LOTO column was
  chosen on its own task. Every recipe is compared on the same other tasks
  (those the default has records on). The ``default`` column is the estimator's current
  default, for comparison; the ``oracle`` column (best recipe on the task
  itself) is an upper bound, never a claim.
- Differences are paired on the seeds both have (the suite fills seeds in
  over time: a cell with fewer seeds is noisier); a failed run counts as
  accuracy -1 (a loss), and failures are listed below the tables.

Usage::

    .venv/bin/python benchmarks/suite/report.py            # write sections/suite.md + suite.png
    .venv/bin/python benchmarks/suite/report.py --print    # print only
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SECTION = HERE.parent / "sections" / "suite.md"
PLOT = HERE.parent / "suite.png"
REFERENCE = ("probe", "default")


def load_records(root=RESULTS):
    return [json.loads(p.read_text()) for p in sorted(root.rglob("*.json"))]


def index(records):
    """{(method, recipe): {(task, n): {seed: accuracy or None (error)}}}"""
    acc = defaultdict(lambda: defaultdict(dict))
    for r in records:
        acc[(r["method"], r["recipe"])][(r["task"], r["n_per_class"])][r["seed"]] = r.get("accuracy")
    return acc


def paired(acc, key, task, n):
    """Paired differences to the reference on (task, n), one per seed; None if incomplete."""
    ref = acc[REFERENCE].get((task, n), {})
    # zero-shot has one record (n=0, seed 0) that pairs with every probe seed
    mine = acc[key].get((task, n)) or acc[key].get((task, 0), {})
    if not ref:
        return None
    if set(mine) == {0} and key[0] == "zeroshot":
        mine = {s: mine[0] for s in ref}
    common = sorted(set(ref) & set(mine))
    if not common:
        return None
    return [(-1.0 if mine[s] is None else mine[s]) - ref[s] for s in common]


def loto(acc, method, tasks_by_mod, ns):
    """{(task, n): (recipe chosen without the task, its paired diffs)}"""
    recipes = sorted({rec for (m, rec) in acc if m == method})
    out = {}
    for mod, tasks in tasks_by_mod.items():
        for n in ns:
            for t in tasks:
                best, best_score = None, -np.inf
                # Every recipe is scored on the same other tasks: those the
                # default has records on; a recipe not run on all of them
                # is not a candidate yet (a mean over easier tasks would flatter it).
                base = "default" if "default" in recipes else recipes[0]
                others = [u for u in tasks if u != t and paired(acc, (method, base), u, n) is not None]
                for rec in recipes:
                    diffs = [paired(acc, (method, rec), u, n) for u in others]
                    if not others or any(d is None for d in diffs):
                        continue
                    score = np.mean([np.mean(d) for d in diffs])
                    if score > best_score:
                        best, best_score = rec, score
                if best is None:  # no other task: fall back to the default (never to the task's own best)
                    best = "default" if "default" in recipes else None
                d = paired(acc, (method, best), t, n) if best else None
                if d is not None:
                    out[(t, n)] = (best, d)
    return out


def fmt_acc(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "—"
    return f"{np.mean(xs):.3f} ± {np.std(xs):.3f}" if len(xs) > 1 else f"{xs[0]:.3f}"


def fmt_diff(d):
    return "—" if d is None else f"{100 * np.mean(d):+.1f}"


def build_report(records):
    acc = index(records)
    tasks = sorted({r["task"] for r in records})
    modality = {r["task"]: r["modality"] for r in records}
    tasks_by_mod = defaultdict(list)
    for t in tasks:
        tasks_by_mod[modality[t]].append(t)
    ns = sorted({r["n_per_class"] for r in records if r["n_per_class"]})
    methods = [m for m in ["baseline", "probe", "zeroshot", "fewshot", "finetune_linear_probe", "finetune_partial",
                           "finetune_full", "lora", "auto"] if any(k[0] == m for k in acc)]
    lines = []
    # 1. accuracy at defaults
    lines.append("### Accuracy at each method's defaults (mean ± std over seeds)\n")
    for n in ns:
        lines.append(f"**N = {n} labeled per class**\n")
        lines.append("| task | " + " | ".join(methods) + " |")
        lines.append("|---" * (len(methods) + 1) + "|")
        for t in tasks:
            row = []
            for m in methods:
                cell = acc[(m, "default")].get((t, n)) or (acc[(m, "default")].get((t, 0)) if m == "zeroshot" else None)
                if cell and m != "zeroshot" and len(cell) < len(acc[REFERENCE].get((t, n), {})):
                    # fewer seeds than the probe: not paired, say so
                    row.append(fmt_acc(list(cell.values())) + f" ({len(cell)} seed{'s' if len(cell) > 1 else ''})")
                else:
                    row.append(fmt_acc(list(cell.values())) if cell else "—")
            short = any(r["task"] == t and r["n_per_class"] == n and r["n_train"] < n * r["n_classes"] for r in records)
            lines.append(f"| {t}{' *' if short else ''} | " + " | ".join(row) + " |")
        lines.append("")
    lines.append("\\* some classes have fewer than N rows in the pool: all of them are used (fewer rows than N per "
                 "class, and where every class is that small, the seeds draw the same rows).\n")
    # 2. paired difference to the probe: default / LOTO / oracle
    lines.append("### Paired difference to the frozen probe, in points (default · LOTO · oracle)\n")
    lines.append("LOTO: the recipe chosen on the other tasks of the same modality; oracle: the best recipe on the task itself (an upper bound). Recipe names in brackets.\n")
    summary = {}
    for n in ns:
        lines.append(f"**N = {n}**\n")
        trained = [m for m in methods if m not in ("probe",)]
        lines.append("| task | " + " | ".join(trained) + " |")
        lines.append("|---" * (len(trained) + 1) + "|")
        chosen = {m: loto(acc, m, tasks_by_mod, [n]) for m in trained}
        for t in tasks:
            row = []
            for m in trained:
                d_def = paired(acc, (m, "default"), t, n)
                recs = sorted({rec for (mm, rec) in acc if mm == m})
                ora = [(rec, paired(acc, (m, rec), t, n)) for rec in recs]
                ora = [(rec, d) for rec, d in ora if d is not None]
                o = max(ora, key=lambda x: np.mean(x[1])) if ora else None
                lc = chosen[m].get((t, n))
                if d_def is None and lc is None:
                    row.append("—")
                    continue
                cell = fmt_diff(d_def)
                if len(recs) > 1:
                    cell += f" · {fmt_diff(lc[1]) if lc else '—'} [{lc[0] if lc else ''}] · {fmt_diff(o[1]) if o else '—'}"
                row.append(cell)
                if lc:
                    summary.setdefault((m, n), []).append(np.mean(lc[1]))
            lines.append(f"| {t} | " + " | ".join(row) + " |")
        lines.append("")
    lines.append("### Mean LOTO paired difference over tasks, and the worst task (points)\n")
    lines.append("| method | N | tasks | mean | worst |")
    lines.append("|---|---|---|---|---|")
    for (m, n), ds in sorted(summary.items()):
        lines.append(f"| {m} | {n} | {len(ds)} | {100 * np.mean(ds):+.1f} | {100 * min(ds):+.1f} |")
    lines.append("")
    errors = [r for r in records if "error" in r]
    if errors:
        lines.append("### Runs that failed\n")
        seen = set()
        for r in errors:
            key = (r["method"], r["recipe"], r["task"], r["error"][:120])
            if key in seen:
                continue
            seen.add(key)
            lines.append(f"- {r['task']} {r['method']}/{r['recipe']} (N={r['n_per_class']}): `{r['error'][:200]}`")
        lines.append("")
    times = defaultdict(list)
    for r in records:
        if "fit_s" in r:
            times[(r["method"], r["modality"], r["n_per_class"])].append(r["fit_s"])
    lines.append("### Median fit time (s, this machine)\n")
    lines.append("The probe and zero-shot rows read the suite's shared embedding cache (warm after the first "
                 "seed), so their times are not a user's first fit; trained methods start cold.\n")
    lines.append("| method | modality | N | median fit s | runs |")
    lines.append("|---|---|---|---|---|")
    for (m, mod, n), ts in sorted(times.items()):
        lines.append(f"| {m} | {mod} | {n} | {np.median(ts):.1f} | {len(ts)} |")
    return "\n".join(lines) + "\n", acc, tasks, ns, methods


def plot(acc, tasks, ns, methods, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(4, len(tasks))
    rows = int(np.ceil(len(tasks) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    # one colour per method in every panel, one legend for all
    colors = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    seen = {}
    for ax, t in zip(axes.ravel(), tasks):
        for m in methods:
            xs, ys, es = [], [], []
            for n in ns:
                cell = acc[(m, "default")].get((t, n))
                if m == "zeroshot":
                    cell = acc[(m, "default")].get((t, 0))
                vals = [v for v in (cell or {}).values() if v is not None]
                if vals:
                    xs.append(n)
                    ys.append(np.mean(vals))
                    es.append(np.std(vals))
            if xs:
                style = "--" if m in ("baseline", "zeroshot") else "-"
                seen[m] = ax.errorbar(xs, ys, yerr=es, label=m, marker="o", ms=3, ls=style, capsize=2, color=colors[m])
        ax.set_xscale("log")
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.set_title(t, fontsize=10)
        ax.set_xlabel("labeled per class")
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(tasks):]:
        ax.axis("off")
    labels = [m for m in methods if m in seen]
    fig.legend([seen[m] for m in labels], labels, loc="lower center", ncol=min(5, len(labels)), fontsize=8)
    fig.suptitle("Accuracy at each method's defaults: mean ± std over the seeds run so far "
                 "(trained methods may have fewer seeds than the probe: see the paired table)", fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--print", action="store_true")
    args = ap.parse_args(argv)
    records = load_records()
    if not records:
        print("no records under", RESULTS)
        return 1
    text, acc, tasks, ns, methods = build_report(records)
    if args.print:
        print(text)
        return 0
    plot(acc, tasks, ns, methods, PLOT)
    n_err = sum("error" in r for r in records)
    head = (
        "## Evaluation suite (issue 11)\n\n"
        "Every method on every task of `benchmarks/suite/tasks.py`, N labeled rows per class drawn from a "
        "pool, seeds 0-2, one fixed stratified test split per task; one JSON record per run under "
        "`benchmarks/suite/results/` (command, versions and timings in each). Protocol: see "
        "`benchmarks/suite/report.py` (paired differences to the frozen probe; recipes chosen leave-one-task-out).\n\n"
        f"- Command: `HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/suite/run.py && .venv/bin/python benchmarks/suite/report.py`\n"
        f"- Records: {len(records)} runs ({n_err} failed), tasks: {', '.join(tasks)}\n"
        f"- Versions: {', '.join(f'{k} {v}' for k, v in records[-1]['versions'].items())}\n"
        "- Machine: 2 shared CPU cores, no GPU; the suite is incomplete where a cell shows —.\n\n"
        "![accuracy against labels per class](suite.png)\n\n"
    )
    SECTION.parent.mkdir(exist_ok=True)
    SECTION.write_text(head + text)
    print(f"wrote {SECTION} and {PLOT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

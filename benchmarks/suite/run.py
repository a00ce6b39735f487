#!/usr/bin/env python
"""Run the evaluation suite: every (task, method, recipe, N, seed), one JSON record each.

Records go to ``benchmarks/suite/results/<task>/<method>/<recipe>/n<N>_s<seed>.json``
and a run that already has its record is skipped, so the suite resumes where
it stopped and can be run in pieces (``--tasks``, ``--methods``, ``--n``).
A run that fails is recorded with its error (and not retried unless
``--retry-errors``): a method that crashes on a task is a finding, not noise.

Order: cheap methods first on every task, then the trained ones from the
smallest N up, so an interrupted suite still covers every task.

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/suite/run.py                 # everything (hours on 2 cores)
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/suite/run.py --list          # tasks here, and those missing
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/suite/run.py --methods probe baseline --n 8 32
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/suite/run.py --max-minutes 50

Then ``report.py`` turns the records into tables, the leave-one-task-out
selection of defaults and a plot.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import numpy as np  # noqa: E402

import _common as C  # noqa: E402
import methods as M  # noqa: E402
import tasks as T  # noqa: E402

RESULTS = HERE / "results"
NS = (8, 32, 200)
SEEDS = (0, 1, 2)


def record_path(task, method, recipe, n, seed):
    return RESULTS / task / method / recipe / f"n{n}_s{seed}.json"


def plan(task_names, method_names, ns, seeds, recipes=None):
    """The runs to do, in order: (method, recipe, task, n, seed)."""
    out = []
    for method in [m for m in M.ORDER if m in method_names]:
        _, recs, modalities, uses_rows = M.METHODS[method]
        for n in (ns if uses_rows else (0,)):
            for recipe in recs:
                if recipes and recipe not in recipes:
                    continue
                for task in task_names:
                    if T.TASKS[task].modality not in modalities:
                        continue
                    if M.RECIPE_MODALITY.get(recipe, T.TASKS[task].modality) != T.TASKS[task].modality:
                        continue
                    for seed in (seeds if uses_rows else (0,)):
                        out.append((method, recipe, task, n, seed))
    return out


def run_one(method, recipe, task_name, n, seed, info):
    import torch
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    task = T.TASKS[task_name]
    split = T.load_split(task_name)
    if n:
        X_tr, y_tr = T.draw(split, n, seed)
    else:
        X_tr, y_tr = [], np.asarray([])
    rec = {
        "task": task_name, "modality": task.modality, "method": method, "recipe": recipe,
        "n_per_class": n, "seed": seed, "n_train": len(y_tr), "n_test": len(split.y_test),
        "n_classes": len(np.unique(split.y_all)), "backbone": task.backbone,
        "params": M.recipe_params(method, recipe, len(y_tr)),
        "date": C.utc_now().isoformat(timespec="seconds"), "versions": info["versions"], "git_commit": info["git_commit"],
        "torch_threads": torch.get_num_threads(),
    }
    try:
        est = M.build(method, recipe, task, len(y_tr), seed, split)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t = time.perf_counter()
            est.fit(X_tr, y_tr)
            rec["fit_s"] = round(time.perf_counter() - t, 2)
            t = time.perf_counter()
            pred = est.predict(split.X_test)
            rec["predict_s"] = round(time.perf_counter() - t, 2)
        rec["accuracy"] = float(accuracy_score(split.y_test, pred))
        rec["balanced_accuracy"] = float(balanced_accuracy_score(split.y_test, pred))
        rec["warnings"] = sorted({f"{w.category.__name__}: {str(w.message)[:200]}" for w in caught})
        for attr in ("n_iter_", "lr_", "best_epoch_", "best_strategy_"):
            inner = est[-1] if hasattr(est, "steps") else est
            if hasattr(inner, attr):
                v = getattr(inner, attr)
                rec[attr] = v.item() if hasattr(v, "item") else (v if isinstance(v, (int, float, str)) else repr(v))
        if hasattr(est, "leaderboard_"):  # what the search tried, and what the budget skipped
            cols = ["strategy", "params", "iter", "n_resources", "mean_score", "total_seconds", "status"]
            rec["leaderboard"] = json.loads(est.leaderboard_[cols].to_json(orient="records"))
    except Exception as exc:  # noqa: BLE001 - recorded, reported
        rec["error"] = f"{type(exc).__name__}: {exc}"
        rec["traceback"] = traceback.format_exc()[-3000:]
    return rec


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", nargs="*")
    ap.add_argument("--methods", nargs="*", default=M.ORDER)
    ap.add_argument("--recipes", nargs="*")
    ap.add_argument("--n", nargs="*", type=int, default=list(NS))
    ap.add_argument("--seeds", nargs="*", type=int, default=list(SEEDS))
    ap.add_argument("--max-minutes", type=float, default=None, help="stop starting new runs after this long")
    ap.add_argument("--retry-errors", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--list", action="store_true", help="list the tasks available here and exit")
    args = ap.parse_args(argv)

    import torch
    from tqdm.auto import tqdm

    torch.set_num_threads(args.threads)
    ok, missing = T.available()
    if args.list:
        for name in ok:
            t, s = T.TASKS[name], T.load_split(name)
            print(f"{name:18s} {t.modality:5s} {len(s.target_names):3d} classes  pool {sum(map(len, s.pool)):6d}  test {len(s.y_test):4d}  {t.kind}")
        for name, why in missing.items():
            print(f"{name:18s} MISSING: {why}")
        return 0
    tasks = [t for t in (args.tasks or ok) if t in ok]
    for t in args.tasks or []:
        if t not in ok:
            print(f"task {t!r} not available: {missing.get(t, 'unknown task')}", file=sys.stderr)
    todo = []
    for run in plan(tasks, args.methods, args.n, args.seeds, args.recipes):
        path = record_path(run[2], run[0], run[1], run[3], run[4])
        if path.exists():
            if not args.retry_errors or "error" not in json.loads(path.read_text()):
                continue
        todo.append(run)
    info = {"versions": C.versions(extra=("peft", "skorch")), "git_commit": C.git_commit()}
    start = time.perf_counter()
    bar = tqdm(todo, desc="suite", unit="run")
    for method, recipe, task, n, seed in bar:
        if args.max_minutes and time.perf_counter() - start > 60 * args.max_minutes:
            bar.write(f"time budget of {args.max_minutes} min reached; {len(todo) - bar.n} runs left")
            break
        bar.set_postfix_str(f"{task} {method}/{recipe} n={n} s={seed}")
        rec = run_one(method, recipe, task, n, seed, info)
        path = record_path(task, method, recipe, n, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rec, indent=1, default=str))
        msg = f"{task} {method}/{recipe} n={n} s={seed}: " + (
            f"acc {rec['accuracy']:.3f} fit {rec['fit_s']:.0f}s" if "accuracy" in rec else f"ERROR {rec['error'][:150]}"
        )
        bar.write(msg)
    return 0


if __name__ == "__main__":
    sys.exit(main())

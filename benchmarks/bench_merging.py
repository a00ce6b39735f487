#!/usr/bin/env python
"""Benchmark of model merging and multi-task transfer (issue 15).

Four arms, accuracy (not speed) on a 2-core CPU, one record per full run:

1. **Soups** (``sktransfer.merging.soup``): on bbc_news, sentiment_sentences
   (``all-MiniLM-L6-v2``), digits and fashion_mnist (``tf_efficientnet_lite0``),
   the candidates of a grid over learning rates and seeds of
   ``FineTunedClassifier(strategy="full")``, each trained on the training
   rows and saved; greedy and uniform soups of the save directories against
   the best single candidate chosen on validation, all scored on the task's
   fixed test split; 2 seeds, paired differences; peak memory of the greedy
   soup against one model's size.
2. **Task arithmetic** (``task_vector``): one full fine-tune per task; the
   sum of the vectors of bbc_news + sentiment_sentences (text) and digits +
   fashion_mnist (images), scaled by a coefficient chosen on validation,
   against each task's fine-tuned accuracy; negation of each task's vector
   from the other's fine-tune.
3. **MultiTaskClassifier**: the sentiment sentences with two label columns
   (sentiment, source site), one model for both against one
   ``FineTunedClassifier`` per column: accuracy per task (2 seeds), fit time,
   saved size.
4. **WiSE-FT alpha after fit**: ``set_wise_alpha`` on one fitted model
   (bbc_news, fashion_mnist) at alpha 0 .. 1: target accuracy and the
   reference task's probe accuracy (``forgetting_report``).

Usage::

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_merging.py               # full run
    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_merging.py --quick       # smoke run, writes nothing
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_merging.py --report-only                   # rebuild from the record

Validation-size study of the soups (arm 1 only; record ``results/merging/soup_val.json``, section
``sections/merging_soup_val.md``): the candidates of each seed are trained once and souped twice, with the
default run's validation rows and with ``--val-rows`` rows per class (the default run's rows plus more from
the pool, never used for training or test)::

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_merging.py --val-rows 150 \
        --tasks sentiment_sentences,rotten_tomatoes --seeds 0,1,2
    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_merging.py --val-rows 60 \
        --tasks bbc_news --seeds 0,1 --record benchmarks/results/merging/soup_val_bbc.json --section-out /tmp/bbc.md
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_merging.py --val-rows 150 --report-only \
        --also-record benchmarks/results/merging/soup_val_bbc.json                # the section from both records

Task arithmetic alone (arm 2 only; record ``results/merging/task_arithmetic.json``, section
``sections/merging_task_arithmetic.md``, which repeats the full run's rows): the pairs and recipe of
:data:`TA_CONFIGS` (text as above; images at lr 1e-3), seeds 0 and 1, with each fine-tune's straight path
from the pretrained weights on validation rows; ``--pairs``, ``--seeds``, ``--image-lr`` change them::

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_merging.py --arms task_arithmetic
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_merging.py --arms task_arithmetic --report-only
    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_merging.py --arms task_arithmetic \
        --pairs digits+fashion_mnist --seeds 2 --image-lr 3e-3 --record /tmp/ta.json --section-out /tmp/ta.md

Record: ``benchmarks/results/merging/results.json``; prose:
``sections/merging_notes.md``; plot: ``benchmarks/merging.png``.
"""

from __future__ import annotations

import ctypes
import gc
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

import _harness as H  # noqa: E402
import numpy as np  # noqa: E402

RECORD = H.RESULTS / "merging" / "results.json"
RECORD_VAL = H.RESULTS / "merging" / "soup_val.json"
RECORD_TA = H.RESULTS / "merging" / "task_arithmetic.json"
PLOT = HERE / "merging.png"
log = H.log

TEXT_TASKS = ("bbc_news", "sentiment_sentences")
IMAGE_TASKS = ("digits", "fashion_mnist")
NAMES = {"bbc_news": "BBC News", "sentiment_sentences": "Sentiment sentences", "digits": "digits (8 px)",
         "fashion_mnist": "Fashion-MNIST", "rotten_tomatoes": "Rotten Tomatoes", "fortunes": "Fortunes",
         "emoji": "Emoji", "openclipart": "Openclipart"}
# Tasks outside the default run (soups' ``--tasks``: text ones; task arithmetic's ``--pairs``: all): training
# and validation rows per class, max_length (text) or image=True.
EXTRA_TASKS = {"rotten_tomatoes": dict(rows=(32, 30), max_length=48),
               "fortunes": dict(rows=(16, 12), max_length=48),
               "emoji": dict(rows=(16, 10), image=True),
               "openclipart": dict(rows=(16, 10), image=True)}

# The fine-tuning recipe per modality (strategy="full"; bench_fine_tuning's,
# without augmentation). ``lr`` is the head's rate; the backbone trains at
# lr * backbone_lr_ratio. Soups vary ``lr`` around the middle value.
RECIPE = {
    "text": dict(strategy="full", backbone_lr_ratio=0.003, batch_size=8, warmup=0.1, weight_decay=0.01),
    "image": dict(strategy="full", backbone_lr_ratio=0.3, batch_size=16, warmup=0.1, weight_decay=0.01, augment=False),
}
LR = {"text": 3e-2, "image": 3e-3}  # the recipe's rate (task arithmetic, multi-task, WiSE)

CONFIGS = {
    "full": dict(
        seeds=[0, 1], soup_tasks=list(TEXT_TASKS + IMAGE_TASKS),
        # per task: training and validation rows per class (drawn from the suite's pool), epochs
        rows={"bbc_news": (16, 12), "sentiment_sentences": (32, 30), "digits": (16, 10), "fashion_mnist": (16, 10)},
        epochs={"text": 3, "image": 5}, max_length={"bbc_news": 64, "sentiment_sentences": 32}, image_size=32,
        grid={"text": dict(lr=[1e-2, 3e-2, 1e-1], n_seeds=2), "image": dict(lr=[1e-3, 2e-3, 3e-3, 5e-3, 1e-2], n_seeds=2)},
        test_cap=None,
        ta_pairs=[list(TEXT_TASKS), list(IMAGE_TASKS)], ta_add=[0.4, 0.6, 0.8, 1.0], ta_neg=[0.5, 1.0, 1.5, 2.0],
        mt=dict(train_per_cell=24, test_per_cell=50, epochs=4, max_length=32),
        wise_tasks=["bbc_news", "fashion_mnist"], wise_alphas=[0.0, 0.25, 0.5, 0.75, 1.0], ref_n=200,
    ),
    "quick": dict(
        seeds=[0], soup_tasks=["sentiment_sentences", "digits"],
        rows={"bbc_news": (2, 2), "sentiment_sentences": (4, 3), "digits": (3, 2), "fashion_mnist": (3, 2)},
        epochs={"text": 1, "image": 1}, max_length={"bbc_news": 16, "sentiment_sentences": 16}, image_size=32,
        grid={"text": dict(lr=[1e-2, 3e-2], n_seeds=1), "image": dict(lr=[1e-3, 3e-3], n_seeds=2)},
        test_cap=20,
        ta_pairs=[list(TEXT_TASKS), list(IMAGE_TASKS)], ta_add=[0.5, 1.0], ta_neg=[1.0],
        mt=dict(train_per_cell=3, test_per_cell=3, epochs=1, max_length=16),
        wise_tasks=["sentiment_sentences", "digits"], wise_alphas=[0.0, 0.5, 1.0], ref_n=24,
    ),
}


# The task-arithmetic-only run (``--arms task_arithmetic``): its pairs and recipe, fixed before any of its
# results were seen (sections/merging_task_arithmetic_notes.md gives the rule and why).
TA_PAIRS = [["bbc_news", "sentiment_sentences"], ["rotten_tomatoes", "fortunes"],
            ["digits", "fashion_mnist"], ["emoji", "openclipart"]]
TA_LR = {"text": 3e-2, "image": 1e-3}
TA_CONFIGS = {
    "full": dict(
        seeds=[0, 1], ta_pairs=TA_PAIRS, lr=TA_LR,
        rows={"bbc_news": (16, 12), "sentiment_sentences": (32, 30), "digits": (16, 10), "fashion_mnist": (16, 10),
              **{t: e["rows"] for t, e in EXTRA_TASKS.items()}},
        epochs={"text": 3, "image": 5}, image_size=32, test_cap=None,
        max_length={"bbc_news": 64, "sentiment_sentences": 32,
                    **{t: e["max_length"] for t, e in EXTRA_TASKS.items() if "max_length" in e}},
        ta_add=[0.4, 0.6, 0.8, 1.0], ta_neg=[0.5, 1.0, 1.5, 2.0], ta_path=[0.0, 0.25, 0.5, 0.75, 1.0],
    ),
    "quick": dict(
        seeds=[0], ta_pairs=TA_PAIRS, lr=TA_LR,
        rows={t: (2, 2) for t in list(TEXT_TASKS + IMAGE_TASKS) + list(EXTRA_TASKS)},
        epochs={"text": 1, "image": 1}, image_size=32, test_cap=20,
        max_length={t: 16 for t in list(TEXT_TASKS) + [t for t, e in EXTRA_TASKS.items() if "max_length" in e]},
        ta_add=[0.5, 1.0], ta_neg=[1.0], ta_path=[0.0, 1.0],
    ),
}


def modality(task):
    return "image" if task in IMAGE_TASKS or EXTRA_TASKS.get(task, {}).get("image") else "text"


def backbone(task):
    return H.TEXT if modality(task) == "text" else H.IMAGE


def input_kw(task, cfg):
    return {"max_length": cfg["max_length"][task]} if modality(task) == "text" else {"image_size": cfg["image_size"]}


def estimate_minutes(cfg):
    """A rough cost model of a run on an idle 2-core CPU, 1 torch thread (seconds per row and epoch of a
    full fine-tune, from bench_fine_tuning: MiniLM at 64 tokens ~15 rows/s, EfficientNet-Lite0 at 32 px ~250)."""
    per_row = {"bbc_news": 1 / 15, "sentiment_sentences": 1 / 35, "digits": 1 / 250, "fashion_mnist": 1 / 250}
    infer = {"bbc_news": 1 / 60, "sentiment_sentences": 1 / 200, "digits": 1 / 800, "fashion_mnist": 1 / 800}
    n_cls = {"bbc_news": 5, "sentiment_sentences": 2, "digits": 10, "fashion_mnist": 10}
    n_test = {"bbc_news": 300, "sentiment_sentences": 300, "digits": 600, "fashion_mnist": 600}
    s = 0.0
    for t in cfg["soup_tasks"]:
        g = cfg["grid"][modality(t)]
        n_cand = len(g["lr"]) * g["n_seeds"]
        tr, va = (r * n_cls[t] for r in cfg["rows"][t])
        nt = min(n_test[t], cfg["test_cap"] or n_test[t])
        per_seed = (n_cand * (tr * cfg["epochs"][modality(t)] * per_row[t] + 3)  # fits + save I/O
                    + (3 * n_cand) * va * infer[t] + (n_cand + 2) * nt * infer[t])
        s += len(cfg["seeds"]) * per_seed
    for pair in cfg["ta_pairs"]:
        for t in pair:
            tr, va = (r * n_cls[t] for r in cfg["rows"][t])
            nt = min(n_test[t], cfg["test_cap"] or n_test[t])
            s += tr * cfg["epochs"][modality(t)] * per_row[t] + (len(cfg["ta_add"]) + 2 * len(cfg["ta_neg"])) * (va * infer[t] + 2) + 6 * nt * infer[t]
    m = cfg["mt"]
    s += len(cfg["seeds"]) * 2 * (6 * m["train_per_cell"] * m["epochs"] * per_row["sentiment_sentences"] * 0.6 + 10)
    for t in cfg["wise_tasks"]:
        s += len(cfg["wise_alphas"]) * (n_test[t] * infer[t] + 4 * cfg["ref_n"] * infer[t] + 2)
    return (s + 60) / 60  # + process start, data and model loads


# --------------------------------------------------------------------- data
def split_of(task, cfg):
    """The suite's fixed test split of ``task`` (``suite/tasks.py``), capped in quick runs."""
    import tasks as T

    sp = T.load_split(task)
    X_test, y_test = sp.X_test, sp.y_test
    if cfg["test_cap"]:
        keep = np.linspace(0, len(y_test) - 1, cfg["test_cap"]).round().astype(int)
        X_test, y_test = [X_test[i] for i in keep], y_test[keep]
    return sp, _as_input(task, X_test), np.asarray(y_test)


def _as_input(task, X):
    return np.stack(X) if modality(task) == "image" else list(X)


def draw_idx(sp, n_train, n_val, seed):
    """Indices of disjoint training and validation rows, ``n_train`` and ``n_val`` per class, from the pool."""
    rng = np.random.RandomState(20_000 + seed)
    tr, va = [], []
    for pool in sp.pool:
        idx = rng.choice(pool, n_train + n_val, replace=False)
        tr.append(idx[:n_train])
        va.append(idx[n_train:])
    return rng.permutation(np.concatenate(tr)), rng.permutation(np.concatenate(va))


def take(sp, task, idx):
    return _as_input(task, [sp.X_all[i] for i in idx]), sp.y_all[idx]


def draw(sp, task, n_train, n_val, seed):
    """Disjoint training and validation rows, ``n_train`` and ``n_val`` per class, from the suite's pool."""
    tr, va = draw_idx(sp, n_train, n_val, seed)
    return take(sp, task, tr) + take(sp, task, va)


def draw_more_val(sp, n_train, n_val, n_val_large, seed):
    """:func:`draw_idx`'s rows (the same training and validation rows) and a larger validation set: its
    ``n_val`` rows per class plus ``n_val_large - n_val`` more per class from the rest of the pool (a seeded
    draw of its own), never training or test rows. Returns (train, small val, large val) indices; the small
    validation set is the first ``len(small)`` rows of the large one."""
    tr, va = draw_idx(sp, n_train, n_val, seed)
    used = set(tr.tolist()) | set(va.tolist())
    rng = np.random.RandomState(40_000 + seed)
    extra = []
    for pool in sp.pool:
        rest = np.asarray([i for i in pool if i not in used])
        if len(rest) < n_val_large - n_val:
            raise ValueError(f"--val-rows={n_val_large}: the pool of a class has only {len(rest) + n_val} rows "
                             f"left for validation")
        extra.append(rng.choice(rest, n_val_large - n_val, replace=False))
    return tr, va, np.concatenate([va, rng.permutation(np.concatenate(extra))])


def concat(task, a, b):
    return np.concatenate([a, b]) if modality(task) == "image" else list(a) + list(b)


# ------------------------------------------------------------------ helpers
def train_candidates(task, cfg, grid, X_tr, y_tr, tmp, score):
    """Each candidate of ``grid`` trained once on the training rows, handed to ``score``, saved to ``tmp``
    and dropped (soups read them back one at a time); returns (save dirs, parameters, fit seconds)."""
    from sklearn.model_selection import ParameterGrid

    from sktransfer import FineTunedClassifier

    dirs, params, fit_s = [], [], []
    for i, cand in enumerate(ParameterGrid(grid)):
        t = time.perf_counter()
        clf = FineTunedClassifier(backbone(task), **RECIPE[modality(task)], max_epochs=cfg["epochs"][modality(task)],
                                  device="cpu", **input_kw(task, cfg), **cand).fit(X_tr, y_tr)
        fit_s.append(time.perf_counter() - t)
        params.append(dict(cand))
        score(clf)
        dirs.append(clf.save(os.path.join(tmp, f"c{i}")))
        del clf
    release_memory()
    return dirs, params, fit_s


def release_memory():
    """Collect garbage and hand freed heap pages back to the OS (so a peak-RSS delta is not hidden by reuse)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # pragma: no cover - not glibc
        pass


def model_bytes(est):
    return int(sum(v.numel() * v.element_size() for v in est.net_.module_.state_dict().values()))


def dir_bytes(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def saved_bytes(est):
    tmp = tempfile.mkdtemp(prefix="skt-bench-merging-")
    try:
        est.save(os.path.join(tmp, "m"))
        return dir_bytes(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------- 1. soups
def arm_soups(cfg):
    from sktransfer.merging import soup

    out = []
    for task in cfg["soup_tasks"]:
        mod = modality(task)
        sp, X_te, y_te = split_of(task, cfg)
        g = cfg["grid"][mod]
        for seed in cfg["seeds"]:
            X_tr, y_tr, X_va, y_va = draw(sp, task, *cfg["rows"][task], seed)
            grid = {"lr": list(g["lr"]), "random_state": [100 * seed + j for j in range(g["n_seeds"])]}
            tmp = tempfile.mkdtemp(prefix="skt-bench-soup-")
            try:
                # The grid's candidates, each trained once on the training rows, scored, saved and dropped:
                # soup() then reads them back one at a time from their save directories.
                val_scores, test_scores = [], []

                def score(clf):
                    val_scores.append(float(clf.score(X_va, y_va)))
                    test_scores.append(float(clf.score(X_te, y_te)))

                dirs, params, fit_s = train_candidates(task, cfg, grid, X_tr, y_tr, tmp, score)
                box = {}
                soup_s, mem, peak = H.measure_fit(lambda: box.update(greedy=soup(dirs, X_va, y_va, method="greedy", X_bn=X_tr)))
                greedy = box.pop("greedy")
                one = model_bytes(greedy)
                greedy_test = float(greedy.score(X_te, y_te))
                kept, greedy_val = list(greedy.soup_ingredients_), float(greedy.soup_score_)
                soup_val_scores = greedy.soup_scores_.tolist()
                del greedy
                release_memory()
                uniform = soup(dirs, X_va, y_va, method="uniform", X_bn=X_tr)
                uniform_val, uniform_test = float(uniform.soup_score_), float(uniform.score(X_te, y_te))
                del uniform
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            best = int(np.argmax(val_scores))  # the first of equals, as the greedy soup ranks them
            rec = {
                "task": task, "seed": seed, "n_train": len(y_tr), "n_val": len(y_va), "n_test": len(y_te),
                "n_candidates": len(dirs), "grid": grid, "params": params, "fit_s": fit_s,
                "val_scores": val_scores, "soup_val_scores": soup_val_scores, "test_scores": test_scores, "best": best,
                "best_val": val_scores[best], "best_test": test_scores[best], "oracle_test": max(test_scores),
                "greedy_kept": kept, "greedy_val": greedy_val, "greedy_test": greedy_test,
                "uniform_val": uniform_val, "uniform_test": uniform_test,
                "soup_s": soup_s, "soup_mem": int(mem), "soup_peak": int(peak), "model_bytes": one,
            }
            out.append(rec)
            log(f"  soups {task} seed {seed}: {len(dirs)} candidates (val {np.round(val_scores, 3)}, "
                f"test {np.round(test_scores, 3)}); best on val {rec['best_test']:.3f}, greedy {greedy_test:.3f} "
                f"(kept {kept}), uniform {uniform_test:.3f}; greedy soup +{H.mib(mem):.0f} MiB peak "
                f"= {mem / one:.2f} models of {H.mib(one):.0f} MiB, {soup_s:.0f} s; fits {sum(fit_s):.0f} s")
            if not np.allclose(soup_val_scores, val_scores):
                log(f"  WARNING: soup()'s scores of the saved candidates {np.round(soup_val_scores, 4)} differ from "
                    f"the fitted ones {np.round(val_scores, 4)}")
            release_memory()
    return out


# ------------------------------------- 1b. soups: validation-size study
def greedy_path(order, single, subset_count, strict):
    """The greedy soup's rule replayed on correct-row counts: ``order`` ranks the candidates (best validation
    score first), ``single[i]`` is candidate i's count, ``subset_count(kept)`` the uniform soup's of ``kept``.
    ``strict=False`` accepts an addition that ties (``s >= best``, the library's rule), ``True`` only one that
    improves. Returns the kept candidates, their count and the steps."""
    kept, best, steps = [int(order[0])], int(single[order[0]]), []
    for i in order[1:]:
        c = int(subset_count(kept + [int(i)]))
        ok = c > best if strict else c >= best
        steps.append({"kept": list(kept), "add": int(i), "count": c, "best": best, "accepted": bool(ok),
                      "tie": c == best})
        if ok:
            kept.append(int(i))
            best = c
    return kept, best, steps


def arm_soup_val(cfg, val_rows):
    """Per task and seed: the grid's candidates trained once (the default run's training rows), souped twice:
    on the default run's validation rows and on ``val_rows`` rows per class (those plus more from the pool).
    The library's greedy and uniform soups, and the greedy rule replayed with ties accepted (the library's,
    a check) and refused, from uniform soups of the subsets it visits (each scored on both validation sets
    and the test rows once)."""
    from sktransfer.merging import soup

    out = []
    for task in cfg["soup_tasks"]:
        mod = modality(task)
        sp, X_te, y_te = split_of(task, cfg)
        g = cfg["grid"][mod]
        n_tr, n_va = cfg["rows"][task]
        for seed in cfg["seeds"]:
            t0 = time.perf_counter()
            i_tr, i_va, i_vl = draw_more_val(sp, n_tr, n_va, val_rows, seed)
            (X_tr, y_tr), (X_vl, y_vl) = take(sp, task, i_tr), take(sp, task, i_vl)
            n_small = len(i_va)
            sets = {"small": slice(0, n_small), "large": slice(0, len(i_vl))}
            X_v = {"small": X_vl[:n_small], "large": X_vl}
            y_v = {"small": y_vl[:n_small], "large": y_vl}
            grid = {"lr": list(g["lr"]), "random_state": [100 * seed + j for j in range(g["n_seeds"])]}
            tmp = tempfile.mkdtemp(prefix="skt-bench-soupval-")
            try:
                val_ok, test_scores = [], []

                def score(clf):
                    val_ok.append(np.asarray(clf.predict(X_vl)) == y_vl)
                    test_scores.append(float(np.mean(np.asarray(clf.predict(X_te)) == y_te)))

                dirs, params, fit_s = train_candidates(task, cfg, grid, X_tr, y_tr, tmp, score)
                cache = {}

                def evaluate(subset):
                    """(correct rows on the large validation set, test accuracy) of the uniform soup of ``subset``."""
                    key = tuple(sorted(int(j) for j in subset))
                    if len(key) == 1:
                        return val_ok[key[0]], test_scores[key[0]]
                    if key not in cache:
                        est = soup([dirs[j] for j in key], X_v["small"], y_v["small"], method="uniform", X_bn=X_tr)
                        cache[key] = (np.asarray(est.predict(X_vl)) == y_vl,
                                      float(np.mean(np.asarray(est.predict(X_te)) == y_te)))
                        del est
                    return cache[key]

                all_c = tuple(range(len(dirs)))
                recs = {}
                for vs, sl in sets.items():
                    single = [int(v[sl].sum()) for v in val_ok]
                    n_val = len(y_v[vs])
                    order = np.argsort(-np.asarray(single), kind="stable")
                    est = soup(dirs, X_v[vs], y_v[vs], method="greedy", X_bn=X_tr)
                    lib_kept, lib_val = list(map(int, est.soup_ingredients_)), float(est.soup_score_)
                    lib_test = float(np.mean(np.asarray(est.predict(X_te)) == y_te))
                    del est
                    release_memory()
                    count = lambda sub, sl=sl: int(evaluate(sub)[0][sl].sum())  # noqa: E731
                    ge_kept, ge_best, ge_steps = greedy_path(order, single, count, strict=False)
                    st_kept, st_best, st_steps = greedy_path(order, single, count, strict=True)
                    for st in ge_steps + st_steps:  # each visited soup's test accuracy, for the step tables
                        st["test"] = evaluate(st["kept"] + [st["add"]])[1]
                    best = int(np.argmax(single))
                    uni_ok, uni_test = evaluate(all_c)
                    recs[vs] = {
                        "n_val": n_val, "val_scores": [c / n_val for c in single], "best": best,
                        "best_val": single[best] / n_val, "best_test": test_scores[best],
                        "oracle": int(np.argmax(test_scores)), "oracle_test": max(test_scores),
                        "greedy_kept": lib_kept, "greedy_val": lib_val, "greedy_test": lib_test,
                        "replay_kept": ge_kept, "replay_agrees": ge_kept == lib_kept, "replay_steps": ge_steps,
                        "strict_kept": st_kept, "strict_val": st_best / n_val, "strict_test": evaluate(st_kept)[1],
                        "strict_steps": st_steps,
                        "uniform_val": float(uni_ok[sl].mean()), "uniform_test": uni_test,
                    }
                    if not recs[vs]["replay_agrees"]:
                        log(f"  WARNING: {task} seed {seed} {vs}: the replayed greedy rule kept {ge_kept}, "
                            f"soup() kept {lib_kept}")
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            rec = {"task": task, "seed": seed, "n_train": len(y_tr), "n_test": len(y_te), "n_candidates": len(dirs),
                   "grid": grid, "params": params, "fit_s": fit_s, "test_scores": test_scores,
                   "val_large_ok": [v.astype(int).tolist() for v in val_ok], "n_val_small": n_small,
                   "subsets": {",".join(map(str, k)): {"val_small": float(v[:n_small].mean()), "val_large": float(v.mean()),
                                                        "test": t} for k, (v, t) in cache.items()},
                   "sets": recs, "seconds": time.perf_counter() - t0}
            out.append(rec)
            for vs, r in recs.items():
                log(f"  soup-val {task} seed {seed} val={vs} ({r['n_val']} rows): val {np.round(r['val_scores'], 3)}, "
                    f"test {np.round(test_scores, 3)}; best-on-val {r['best_test']:.3f}, oracle {r['oracle_test']:.3f}, "
                    f"greedy {r['greedy_test']:.3f} {r['greedy_kept']}, strict {r['strict_test']:.3f} {r['strict_kept']}, "
                    f"uniform {r['uniform_test']:.3f}")
            log(f"  soup-val {task} seed {seed}: {rec['seconds']:.0f} s (fits {sum(fit_s):.0f} s)")
            release_memory()
    return out


# --------------------------------------------------- 2. task arithmetic
def fine_tune(task, cfg, X, y, seed=0, lr=None):
    """The recipe's fine-tune of ``task`` (``lr``: the modality's rate, default :data:`LR`)."""
    from sktransfer import FineTunedClassifier

    mod = modality(task)
    return FineTunedClassifier(backbone(task), **RECIPE[mod], lr=(lr or LR)[mod], max_epochs=cfg["epochs"][mod],
                               random_state=seed, device="cpu", **input_kw(task, cfg)).fit(X, y)


def arm_task_arithmetic(cfg, seed=0, lr=None, keep_models=True, on_pair=None):
    """Returns the record and the fitted models by task (reused by the WiSE arm).

    ``seed``: the rows' draw and the fine-tunes' seed; ``lr``: the rate per modality (default :data:`LR`);
    ``keep_models=False`` drops each pair's models after it (the task-arithmetic-only run); ``on_pair``
    is called with each pair's record as it is done. With ``cfg["ta_path"]`` (the task-arithmetic-only run),
    each fine-tune's straight path from the pretrained weights, ``pretrained + α·τ`` with its own head, is
    scored on the validation rows (linear connectivity), with the vectors' norm and cosine per part."""
    from sktransfer.merging import task_vector

    lr = dict(lr or LR)
    data, models, out = {}, {}, []
    for pair in cfg["ta_pairs"]:
        t_pair = time.perf_counter()
        fit_s = {}
        for task in pair:
            sp, X_te, y_te = split_of(task, cfg)
            X_tr, y_tr, X_va, y_va = draw(sp, task, *cfg["rows"][task], seed)
            data[task] = dict(X_va=X_va, y_va=y_va, X_te=X_te, y_te=y_te, n_train=len(y_tr))
            t = time.perf_counter()
            models[task] = fine_tune(task, cfg, X_tr, y_tr, seed=seed, lr=lr)
            fit_s[task] = time.perf_counter() - t
            log(f"  task arithmetic: fine-tuned {task} (seed {seed}, lr {lr[modality(task)]:g}) in {fit_s[task]:.0f} s")

        def acc(est, task, split):
            d = data[task]
            return float(est.score(d["X_" + split], d["y_" + split]))

        def on(vector, head, task, split):
            est = vector.apply(head_from=head)
            a = acc(est, task, split)
            del est
            return a

        a, b = pair
        tv = {t: task_vector(models[t], name=t) for t in pair}
        ft = {t: {s: acc(models[t], t, s) for s in ("va", "te")} for t in pair}
        rec = {"pair": pair, "fine_tuned": ft, "norms": {t: tv[t].norm() for t in pair},
               "cos": float(sum(float((tv[a].deltas[k] * tv[b].deltas[k]).sum()) for k in tv[a].deltas)
                            / (tv[a].norm() * tv[b].norm() + 1e-30))}
        if cfg.get("ta_path"):
            rec.update(seed=seed, lr={t: lr[modality(t)] for t in pair}, fit_s=fit_s,
                       n={t: {"train": data[t]["n_train"], "val": len(data[t]["y_va"]), "test": len(data[t]["y_te"])}
                          for t in pair},
                       vector_parts={t: vector_parts(tv[t]) for t in pair},
                       cos_parts=cos_parts(tv[a], tv[b]))
            # Linear connectivity of each single fine-tune: pretrained + alpha * tau_t, its own head, on validation.
            rec["path"] = {t: [{"alpha": al, "val": on(al * tv[t], t, t, "va")} for al in cfg["ta_path"]] for t in pair}
            log("    path (val): " + "; ".join(f"{t} " + ", ".join(f"{p['alpha']:g}:{p['val']:.3f}" for p in rec["path"][t])
                                               for t in pair))
        # Addition: pretrained + lam * (tau_a + tau_b), each task with its own head; lam chosen on validation
        # by the mean normalised accuracy (accuracy / the task's fine-tuned accuracy), as the paper does.
        both = tv[a] + tv[b]
        add = []
        for lam in cfg["ta_add"]:
            v = lam * both
            val = {t: on(v, t, t, "va") for t in pair}
            add.append({"lam": lam, "val": val, "norm_val": float(np.mean([val[t] / max(ft[t]["va"], 1e-9) for t in pair]))})
            log(f"    {a}+{b} lam={lam}: val " + ", ".join(f"{t} {val[t]:.3f}" for t in pair))
        pick = max(add, key=lambda r: (r["norm_val"], -r["lam"]))
        v = pick["lam"] * both
        test = {t: on(v, t, t, "te") for t in pair}
        rec["add"] = {"grid": add, "lam": pick["lam"], "test": test,
                      "normalized": {t: test[t] / max(ft[t]["te"], 1e-9) for t in pair}}
        # Pretrained body with each task's own head (lam = 0): what the vectors add.
        rec["pretrained_head"] = {t: on(0.0 * tv[t], t, t, "te") for t in pair}
        # Negation: keep one task's fine-tune, subtract lam * the other's vector. lam: the largest on the grid
        # that keeps the kept task's validation accuracy >= 95 % of its fine-tuned one (the paper's rule,
        # with the fine-tuned model as the control).
        rec["negate"] = []
        for keep, forget in ((a, b), (b, a)):
            grid = []
            for lam in cfg["ta_neg"]:
                v = tv[keep] - lam * tv[forget]
                grid.append({"lam": lam, "keep_val": on(v, keep, keep, "va"), "forget_val": on(v, forget, forget, "va")})
            ok = [r for r in grid if r["keep_val"] >= 0.95 * ft[keep]["va"]]
            lam = max(ok, key=lambda r: r["lam"])["lam"] if ok else min(r["lam"] for r in grid)
            v = tv[keep] - lam * tv[forget]
            before = tv[keep].apply(head_from=models[forget])  # the kept fine-tune's body, the forgotten task's head
            r = {"keep": keep, "forget": forget, "grid": grid, "lam": lam, "rule_met": bool(ok),
                 "keep_test": on(v, keep, keep, "te"), "forget_test": on(v, forget, forget, "te"),
                 "forget_before_test": acc(before, forget, "te")}
            del before
            rec["negate"].append(r)
            log(f"    {keep} - lam*{forget}, lam={lam}: {keep} {ft[keep]['te']:.3f} -> {r['keep_test']:.3f}; "
                f"{forget} (its head) {r['forget_before_test']:.3f} -> {r['forget_test']:.3f} "
                f"(fine-tuned {ft[forget]['te']:.3f})")
        out.append(rec)
        log(f"  {a}+{b}: lam={pick['lam']}: " + ", ".join(
            f"{t} {test[t]:.3f} ({100 * rec['add']['normalized'][t]:.0f} % of {ft[t]['te']:.3f})" for t in pair))
        del tv, both, v
        if cfg.get("ta_path"):
            rec["seconds"] = time.perf_counter() - t_pair
        if not keep_models:
            for t in pair:
                del models[t], data[t]
        release_memory()
        if on_pair is not None:
            on_pair(rec)
    return out, models, data


def _part(key):
    """The part of the backbone a task vector's tensor belongs to: BatchNorm affine weights, BatchNorm
    running statistics, norm layers of transformers (LayerNorm), biases, other weights (convolutions,
    linear layers, embeddings)."""
    if key.endswith((".running_mean", ".running_var")):
        return "bn_stats"
    if ".bn" in key or "bn1." in key or "bn2." in key or "bn3." in key:
        return "bn_affine"
    if "LayerNorm" in key or ".norm" in key:
        return "layer_norm"
    if key.endswith(".bias"):
        return "bias"
    return "weight"


def vector_parts(tv):
    """Squared-norm share of each :func:`_part` of a task vector, and its norm."""
    sq = {}
    for k, d in tv.deltas.items():
        sq[_part(k)] = sq.get(_part(k), 0.0) + float((d.double() ** 2).sum())
    total = sum(sq.values()) or 1.0
    return {p: {"norm": v ** 0.5, "share": v / total} for p, v in sorted(sq.items())}


def cos_parts(u, v):
    """Cosine of two task vectors per :func:`_part`."""
    dot, nu, nv = {}, {}, {}
    for k in u.deltas:
        p = _part(k)
        a, b = u.deltas[k].double(), v.deltas[k].double()
        dot[p] = dot.get(p, 0.0) + float((a * b).sum())
        nu[p] = nu.get(p, 0.0) + float((a * a).sum())
        nv[p] = nv.get(p, 0.0) + float((b * b).sum())
    return {p: dot[p] / ((nu[p] * nv[p]) ** 0.5 + 1e-30) for p in sorted(dot)}


# --------------------------------------------------------- 3. multi-task
def load_sentiment_two_columns(cfg, seed):
    """Sentiment sentences with two label columns, sentiment and the site (amazon, imdb, yelp): a fixed
    test set and a seeded training draw, ``*_per_cell`` rows per (site, sentiment) cell, duplicates dropped."""
    from sktransfer.datasets import load_sentiment_sentences

    b = load_sentiment_sentences(shuffle=False)
    texts, y, site = list(b.data), np.asarray(b.target_names, dtype=object)[b.target], np.asarray(b.domain, dtype=object)
    seen, keep = {}, []
    for i, t in enumerate(texts):
        k = " ".join(t.lower().split())
        if k not in seen:
            seen[k] = i
            keep.append(i)
    keep = np.asarray(keep)
    m = cfg["mt"]
    rng_test, rng = np.random.RandomState(0), np.random.RandomState(30_000 + seed)
    te, tr = [], []
    for s in np.unique(site):
        for c in np.unique(y):
            cell = keep[(site[keep] == s) & (y[keep] == c)]
            cell = rng_test.permutation(cell)
            te.append(cell[: m["test_per_cell"]])
            tr.append(rng.choice(cell[m["test_per_cell"]:], m["train_per_cell"], replace=False))
    te, tr = np.concatenate(te), rng.permutation(np.concatenate(tr))
    Y = np.column_stack([y, site])
    return [texts[i] for i in tr], Y[tr], [texts[i] for i in te], Y[te]


def arm_multi_task(cfg):
    from sktransfer import FineTunedClassifier, MultiTaskClassifier

    m = cfg["mt"]
    params = dict(**{k: v for k, v in RECIPE["text"].items()}, lr=LR["text"], max_epochs=m["epochs"],
                  max_length=m["max_length"], device="cpu")
    tasks = ["sentiment", "site"]
    out = []
    for seed in cfg["seeds"]:
        X, Y, X_te, Y_te = load_sentiment_two_columns(cfg, seed)
        t = time.perf_counter()
        mt = MultiTaskClassifier(H.TEXT, random_state=seed, **params).fit(X, Y)
        mt_s = time.perf_counter() - t
        P = mt.predict(X_te)
        rec = {"seed": seed, "n_train": len(X), "n_test": len(X_te), "tasks": tasks, "mt_fit_s": mt_s,
               "mt_acc": [float(np.mean(P[:, j] == Y_te[:, j])) for j in range(len(tasks))],
               "mt_bytes": saved_bytes(mt), "sep_acc": [], "sep_fit_s": [], "sep_bytes": []}
        del mt
        release_memory()
        for j in range(len(tasks)):
            t = time.perf_counter()
            clf = FineTunedClassifier(H.TEXT, random_state=seed, **params).fit(X, Y[:, j])
            rec["sep_fit_s"].append(time.perf_counter() - t)
            rec["sep_acc"].append(float(np.mean(clf.predict(X_te) == Y_te[:, j])))
            rec["sep_bytes"].append(saved_bytes(clf))
            del clf
            release_memory()
        out.append(rec)
        log(f"  multi-task seed {seed}: MT acc {np.round(rec['mt_acc'], 3)} in {mt_s:.0f} s, "
            f"{H.mib(rec['mt_bytes']):.0f} MiB; separate {np.round(rec['sep_acc'], 3)} in "
            f"{sum(rec['sep_fit_s']):.0f} s, {H.mib(sum(rec['sep_bytes'])):.0f} MiB")
    return out


# ------------------------------------------------------------ 4. WiSE
def reference(task, cfg):
    """The reference task of ``task`` for forgetting (another task of the same modality): rows and labels."""
    ref = {"bbc_news": "sentiment_sentences", "sentiment_sentences": "bbc_news",
           "fashion_mnist": "digits", "digits": "fashion_mnist"}[task]
    sp, X, y = split_of(ref, dict(cfg, test_cap=None))
    idx = np.linspace(0, len(y) - 1, cfg["ref_n"]).round().astype(int)
    return ref, _as_input(ref, [X[i] for i in idx]), y[idx]


def arm_wise(cfg, models, data):
    from sktransfer.metrics import forgetting_report

    out = []
    for task in cfg["wise_tasks"]:
        clf, d = models[task], data[task]
        ref, X_ref, y_ref = reference(task, cfg)
        rows = []
        for alpha in cfg["wise_alphas"]:
            t = time.perf_counter()
            clf.set_wise_alpha(alpha)
            mix_s = time.perf_counter() - t
            rep = forgetting_report(clf, X_ref, y_ref)
            rows.append({"alpha": alpha, "val": float(clf.score(d["X_va"], d["y_va"])),
                         "test": float(clf.score(d["X_te"], d["y_te"])), "set_s": mix_s, **rep})
            log(f"  WiSE {task} alpha={alpha}: val {rows[-1]['val']:.3f}, test {rows[-1]['test']:.3f}, "
                f"{ref} probe {rep['ref_accuracy_finetuned']:.3f} (pretrained {rep['ref_accuracy_pretrained']:.3f}), "
                f"CKA {rep['cka']:.3f}; set_wise_alpha {mix_s:.2f} s")
        clf.set_wise_alpha(1.0)
        pick = max(rows, key=lambda r: (r["val"], r["alpha"]))
        out.append({"task": task, "reference": ref, "n_ref": len(y_ref), "rows": rows, "chosen_alpha": pick["alpha"]})
    return out


def measure(cfg):
    res = {}
    t = time.perf_counter()
    res["soups"] = arm_soups(cfg)
    res["soups_s"] = time.perf_counter() - t
    t = time.perf_counter()
    res["task_arithmetic"], models, data = arm_task_arithmetic(cfg)
    res["task_arithmetic_s"] = time.perf_counter() - t
    t = time.perf_counter()
    missing = [k for k in cfg["wise_tasks"] if k not in models]
    for task in missing:  # a WiSE task outside the task-arithmetic pairs: fine-tune it here
        sp, X_te, y_te = split_of(task, cfg)
        X_tr, y_tr, X_va, y_va = draw(sp, task, *cfg["rows"][task], 0)
        models[task], data[task] = fine_tune(task, cfg, X_tr, y_tr), dict(X_va=X_va, y_va=y_va, X_te=X_te, y_te=y_te)
    res["wise"] = arm_wise(cfg, models, data)
    res["wise_s"] = time.perf_counter() - t
    del models, data
    release_memory()
    t = time.perf_counter()
    res["multi_task"] = arm_multi_task(cfg)
    res["multi_task_s"] = time.perf_counter() - t
    return res


# ------------------------------------------------------------------ report
def pct(x, nd=1):
    return f"{100 * x:.{nd}f}"


def verdict(ok):
    return "met" if ok else "**not met**"


def report(res, run, cfg, out=None):
    soups = res["soups"]
    rows = []
    for r in soups:
        kept = ", ".join(str(i) for i in r["greedy_kept"])
        rows.append([NAMES[r["task"]], str(r["seed"]), str(r["n_candidates"]),
                     f"{pct(min(r['test_scores']))}–{pct(max(r['test_scores']))}",
                     pct(r["best_test"]), f"{pct(r['greedy_test'])} ({len(r['greedy_kept'])}: {kept})",
                     pct(r["uniform_test"]), f"{100 * (r['greedy_test'] - r['best_test']):+.1f}",
                     f"{100 * (r['uniform_test'] - r['best_test']):+.1f}"])
    soup_table = H.md_table(["task", "seed", "candidates", "candidates' test % (min–max)", "best on val: test %",
                             "greedy soup test % (ingredients kept)", "uniform soup test %", "greedy − best",
                             "uniform − best"], rows, "llrlrlrrr")
    per_task, target_rows = [], []
    tasks = list(dict.fromkeys(r["task"] for r in soups))
    wins = {}
    for t in tasks:
        rs = [r for r in soups if r["task"] == t]
        dg = [r["greedy_test"] - r["best_test"] for r in rs]
        du = [r["uniform_test"] - r["best_test"] for r in rs]
        wins[t] = float(np.mean(dg)) >= 0
        fails = [r["seed"] for r in rs if r["uniform_test"] < r["best_test"]]
        per_task.append([NAMES[t], str(len(rs)), "%+.1f ± %.1f" % (100 * np.mean(dg), 100 * (np.std(dg, ddof=1) if len(dg) > 1 else 0)),
                         "%+.1f ± %.1f" % (100 * np.mean(du), 100 * (np.std(du, ddof=1) if len(du) > 1 else 0)),
                         f"{sum(d >= 0 for d in dg)}/{len(dg)}", ", ".join(map(str, fails)) or "none"])
    soup_summary = H.md_table(["task", "seeds", "greedy − best single (points, mean ± sd)", "uniform − best single",
                               "seeds greedy ≥ best", "seed ids where uniform < best"], per_task, "lrrrrl")
    n_img = sum(wins.get(t, False) for t in IMAGE_TASKS)
    n_txt = sum(wins.get(t, False) for t in TEXT_TASKS)
    target_rows.append(["greedy soup ≥ best single candidate on held-out data (mean over seeds), on ≥ 2 image and ≥ 2 text tasks",
                        f"{n_txt} text and {n_img} image tasks of {len(tasks)}", verdict(n_img >= 2 and n_txt >= 2)])
    uni_fail = [f"{NAMES[r['task']]} seed {r['seed']} ({100 * (r['uniform_test'] - r['best_test']):+.1f})"
                for r in soups if r["uniform_test"] < r["best_test"]]
    target_rows.append(["uniform soup reported (it can fail: say when)",
                        "below the best single in " + ("; ".join(uni_fail) if uni_fail else "no run"), "–"])
    mem_rows = [[NAMES[r["task"]], str(r["seed"]), str(r["n_candidates"]), f"{H.mib(r['model_bytes']):.1f}",
                 f"{H.mib(r['soup_mem']):.0f}", f"{r['soup_mem'] / r['model_bytes']:.2f}",
                 f"{H.mib(r['soup_mem'] - 3 * r['model_bytes']):+.0f}", f"{r['soup_s']:.0f}"]
                for r in soups]
    mem_table = H.md_table(["task", "seed", "candidates", "one model (MiB)", "greedy soup: peak RSS above baseline (MiB)",
                            "= models", "beyond 3 models (MiB)", "soup seconds"], mem_rows, "lrrrrrrr")
    worst = max(soups, key=lambda r: r["soup_mem"] / r["model_bytes"])
    most = max(r["n_candidates"] for r in soups)
    n_ok = sum(r["soup_mem"] <= 3 * r["model_bytes"] for r in soups)
    target_rows.append([f"memory: souping 10 candidates peaks at ≤ 3 models (measured with up to {most} candidates)",
                        f"{n_ok}/{len(soups)} soups within 3 models; worst {worst['soup_mem'] / worst['model_bytes']:.2f} "
                        f"models ({NAMES[worst['task']]}, {worst['n_candidates']} candidates, "
                        f"{H.mib(worst['model_bytes']):.0f} MiB a model)",
                        verdict(worst["soup_mem"] <= 3 * worst["model_bytes"]) + ("" if most >= 10 else " (fewer than 10 candidates)")])

    # Task arithmetic
    ta_rows, neg_rows, add_ok, neg_ok = [], [], [], []
    for r in res["task_arithmetic"]:
        pair = " + ".join(NAMES[t] for t in r["pair"])
        for t in r["pair"]:
            n = r["add"]["normalized"][t]
            add_ok.append(n >= 0.9)
            ta_rows.append([pair, NAMES[t], pct(r["fine_tuned"][t]["te"]), pct(r["pretrained_head"][t]),
                            pct(r["add"]["test"][t]), f"{r['add']['lam']:g}", f"{100 * n:.1f}"])
        for ng in r["negate"]:
            k, f = ng["keep"], ng["forget"]
            keep_n = ng["keep_test"] / max(r["fine_tuned"][k]["te"], 1e-9)
            lowered = ng["forget_test"] < ng["forget_before_test"]
            neg_ok.append(lowered and keep_n >= 0.9)
            neg_rows.append([f"{NAMES[k]} − λ·{NAMES[f]}", f"{ng['lam']:g}" + ("" if ng["rule_met"] else " (rule not met)"),
                             pct(r["fine_tuned"][k]["te"]), f"{pct(ng['keep_test'])} ({100 * keep_n:.0f} %)",
                             pct(r["fine_tuned"][f]["te"]), pct(ng["forget_before_test"]), pct(ng["forget_test"])])
    ta_table = H.md_table(["pair", "task", "fine-tuned %", "pretrained body + task's head %",
                           "pretrained + λ(τa + τb) %", "λ (on val)", "% of fine-tuned"], ta_rows, "llrrrrr")
    neg_table = H.md_table(["edit (body: pretrained + τ_kept − λ·τ_forgotten)", "λ (on val)", "kept task: fine-tuned %",
                            "kept task after %", "forgotten task: fine-tuned %",
                            "forgotten task on the kept fine-tune's body %", "forgotten task after %"], neg_rows, "llrrrrr")
    norm_min = min(r["add"]["normalized"][t] for r in res["task_arithmetic"] for t in r["pair"])
    target_rows.append([f"task arithmetic: τa + τb keeps ≥ 90 % of each task's fine-tuned accuracy ({len(res['task_arithmetic'])} pairs)",
                        f"lowest {100 * norm_min:.1f} % ({sum(add_ok)}/{len(add_ok)} tasks ≥ 90 %)", verdict(all(add_ok))])
    target_rows.append(["negating a task's vector lowers that task's accuracy and keeps the other's (≥ 90 % of fine-tuned)",
                        f"{sum(neg_ok)}/{len(neg_ok)} edits", verdict(all(neg_ok))])
    lam_rows = []
    for r in res["task_arithmetic"]:
        for g in r["add"]["grid"]:
            lam_rows.append([" + ".join(NAMES[t] for t in r["pair"]), f"{g['lam']:g}",
                             ", ".join(f"{NAMES[t]} {pct(g['val'][t])}" for t in r["pair"]), f"{100 * g['norm_val']:.1f}"])
    lam_table = H.md_table(["pair", "λ", "validation accuracy %", "mean normalised %"], lam_rows, "lrlr")
    vec = "; ".join(f"{' + '.join(NAMES[t] for t in r['pair'])}: norms " +
                    ", ".join(f"{NAMES[t]} {r['norms'][t]:.3g}" for t in r["pair"]) + f", cosine {r['cos']:.3f}"
                    for r in res["task_arithmetic"])

    # Multi-task
    mts = res["multi_task"]
    k = len(mts[0]["tasks"])
    mt_rows = []
    for j, name in enumerate(mts[0]["tasks"]):
        a_mt = [r["mt_acc"][j] for r in mts]
        a_sep = [r["sep_acc"][j] for r in mts]
        mt_rows.append([name, H.pm(*H.mean_std(a_mt)), " / ".join(pct(a) for a in a_mt),
                        H.pm(*H.mean_std(a_sep)), " / ".join(pct(a) for a in a_sep)])
    mt_mean = float(np.mean([np.mean(r["mt_acc"]) for r in mts]))
    sep_mean = float(np.mean([np.mean(r["sep_acc"]) for r in mts]))
    mt_rows.append(["mean over tasks", pct(mt_mean), "", pct(sep_mean), ""])
    mt_table = H.md_table(["task (label column)", "MultiTaskClassifier %", "per seed", "separate FineTunedClassifier %",
                           "per seed"], mt_rows, "lrrrr")
    t_ratio = float(np.median([r["mt_fit_s"] / sum(r["sep_fit_s"]) for r in mts]))
    b_ratio = float(np.median([r["mt_bytes"] / sum(r["sep_bytes"]) for r in mts]))
    cost_table = H.md_table(
        ["", "MultiTaskClassifier", f"{k} separate models", "ratio", f"target ≤ 1/{k} + 10 %"],
        [["fit seconds (median over seeds)", f"{np.median([r['mt_fit_s'] for r in mts]):.0f}",
          f"{np.median([sum(r['sep_fit_s']) for r in mts]):.0f}", f"{t_ratio:.2f}", f"{1 / k + 0.1:.2f}"],
         ["saved size (MiB)", f"{H.mib(mts[0]['mt_bytes']):.1f}", f"{H.mib(sum(mts[0]['sep_bytes'])):.1f}",
          f"{b_ratio:.2f}", f"{1 / k + 0.1:.2f}"]], "lrrrr")
    target_rows.append([f"MultiTaskClassifier (k={k}) ≥ separate models' mean accuracy − 1 point",
                        f"{pct(mt_mean)} vs {pct(sep_mean)} ({100 * (mt_mean - sep_mean):+.1f} points)",
                        verdict(mt_mean >= sep_mean - 0.01)])
    target_rows.append([f"… at ≤ 1/k + 10 % of their combined fit time and saved size",
                        f"time {t_ratio:.2f}, size {b_ratio:.2f} (limit {1 / k + 0.1:.2f})",
                        verdict(t_ratio <= 1 / k + 0.1 and b_ratio <= 1 / k + 0.1)])

    # WiSE
    wise_blocks = []
    for w in res["wise"]:
        rows_w = [[f"{r['alpha']:g}", pct(r["val"]), pct(r["test"]), pct(r["ref_accuracy_finetuned"]),
                   f"{r['retained']:.3f}", f"{r['cka']:.3f}", f"{r['set_s']:.2f}"] for r in w["rows"]]
        wise_blocks.append(
            f"**{NAMES[w['task']]}** (reference task: {NAMES[w['reference']]}, {w['n_ref']} rows, probe on the "
            f"pretrained features: {pct(w['rows'][0]['ref_accuracy_pretrained'])} %; alpha chosen on validation: "
            f"{w['chosen_alpha']:g})\n\n" + H.md_table(
                ["alpha", "target val %", "target test %", "reference probe %", "retained", "CKA to pretrained",
                 "set_wise_alpha s"], rows_w, "rrrrrrr"))

    first = soups[0]
    blocks = {
        "header": H.header(run),
        "text": H.TEXT, "image": H.IMAGE,
        "recipe_text": ", ".join(f"{k}={v}" for k, v in RECIPE["text"].items()),
        "recipe_image": ", ".join(f"{k}={v}" for k, v in RECIPE["image"].items()),
        "grid_text": f"lr ∈ {cfg['grid']['text']['lr']} × {cfg['grid']['text']['n_seeds']} seeds",
        "grid_image": f"lr ∈ {cfg['grid']['image']['lr']} × {cfg['grid']['image']['n_seeds']} seeds",
        "rows": "; ".join(f"{NAMES[t]} {a} training + {b} validation rows per class" for t, (a, b) in cfg["rows"].items()),
        "epochs": f"{cfg['epochs']['text']} epochs for text (max_length "
                  + ", ".join(f"{v} for {NAMES[k_]}" for k_, v in cfg["max_length"].items())
                  + f"), {cfg['epochs']['image']} for images (image_size {cfg['image_size']})",
        "lr": f"lr={LR['text']:g} for text, {LR['image']:g} for images",
        "seeds": ", ".join(map(str, cfg["seeds"])),
        "n_test": "; ".join(f"{NAMES[t]} {r['n_test']}" for t, r in {r["task"]: r for r in soups}.items()),
        "soup_table": soup_table, "soup_summary": soup_summary, "mem_table": mem_table,
        "model_mib": f"{H.mib(first['model_bytes']):.0f}",
        "ta_table": ta_table, "neg_table": neg_table, "lam_table": lam_table, "vectors": vec,
        "ta_add": ", ".join(f"{x:g}" for x in cfg["ta_add"]), "ta_neg": ", ".join(f"{x:g}" for x in cfg["ta_neg"]),
        "mt_cfg": ", ".join(f"{k_}={v}" for k_, v in cfg["mt"].items()),
        "mt_n": f"{mts[0]['n_train']} training and {mts[0]['n_test']} test sentences",
        "mt_table": mt_table, "cost_table": cost_table,
        "wise": "\n\n".join(wise_blocks),
        "targets": H.md_table(["target (issue 15)", "measured", "verdict"], target_rows, "lll"),
        "times": ", ".join(f"{a} {res[a + '_s'] / 60:.1f} min" for a in ("soups", "task_arithmetic", "wise", "multi_task")),
    }
    return H.write_section("merging", blocks, out)


def _ms(xs, scale=100, nd=1):
    """'mean (a / b)' of per-seed values, in percent."""
    xs = [scale * x for x in xs]
    m = f"{np.mean(xs):.{nd}f}"
    return m if len(xs) == 1 else m + " (" + " / ".join(f"{x:.{nd}f}" for x in xs) + ")"


def _ta_rows(recs, label):
    """Addition and negation table rows of task-arithmetic records (one seed each); ``label`` names the recipe."""
    add_rows, neg_rows = [], []
    for r in recs:
        pair = " + ".join(NAMES[t] for t in r["pair"])
        for t in r["pair"]:
            add_rows.append([pair, label(r, t), str(r.get("seed", 0)), NAMES[t], pct(r["fine_tuned"][t]["te"]),
                             pct(r["pretrained_head"][t]), f"{r['add']['lam']:g}", pct(r["add"]["test"][t]),
                             f"{100 * r['add']['normalized'][t]:.1f}"])
        for ng in r["negate"]:
            k, f = ng["keep"], ng["forget"]
            keep_n = ng["keep_test"] / max(r["fine_tuned"][k]["te"], 1e-9)
            neg_rows.append([f"{NAMES[k]} − λ·{NAMES[f]}", label(r, k), str(r.get("seed", 0)),
                             f"{ng['lam']:g}" + ("" if ng["rule_met"] else " (rule not met)"),
                             pct(r["fine_tuned"][k]["te"]), f"{pct(ng['keep_test'])} ({100 * keep_n:.0f} %)",
                             pct(r["pretrained_head"][f]), pct(ng["forget_before_test"]), pct(ng["forget_test"])])
    return add_rows, neg_rows


ADD_HEAD = ["pair", "recipe", "seed", "task", "fine-tuned %", "pretrained body + task's head %", "λ (on val)",
            "pretrained + λ(τa + τb) %", "% of fine-tuned"]
NEG_HEAD = ["edit (body: pretrained + τ_kept − λ·τ_forgotten)", "recipe", "seed", "λ (on val)", "kept task: fine-tuned %",
            "kept task after % (of fine-tuned)", "forgotten task: pretrained body + its head %",
            "forgotten task on the kept fine-tune's body %", "forgotten task after %"]


def _dip(path):
    """How far the inside of a straight path (0 < α < 1) falls below the lower of its two ends, in points."""
    ends = [x["val"] for x in path if x["alpha"] in (0.0, 1.0)]
    inside = [x["val"] for x in path if 0.0 < x["alpha"] < 1.0]
    if len(ends) < 2 or not inside:
        return "–"
    return f"{max(0.0, 100 * (min(ends) - min(inside))):.1f}"


def report_task_arithmetic(res, run, cfg, old=None, out=None):
    """``sections/merging_task_arithmetic.md`` from the task-arithmetic-only run's record (and the full run's
    record ``old``, whose rows are repeated as they are)."""
    lr_label = lambda r, t: f"lr {r['lr'][t]:g}"  # noqa: E731
    add_rows, neg_rows = _ta_rows(res, lr_label)
    pairs = [list(p) for p in dict.fromkeys(tuple(r["pair"]) for r in res)]
    by_pair = {tuple(p): [r for r in res if r["pair"] == p] for p in pairs}
    summ, neg_summ, verdicts, neg_verdicts = [], [], {}, {}
    for p in pairs:
        rs = by_pair[tuple(p)]
        kept = {t: [r["add"]["normalized"][t] for r in rs] for t in p}
        ok = all(np.mean(kept[t]) >= 0.9 for t in p)
        verdicts[tuple(p)] = ok
        summ.append([" + ".join(NAMES[t] for t in p), modality(p[0]), lr_label(rs[0], p[0]), str(len(rs)),
                     *[_ms(kept[t]) for t in p], ", ".join(f"{r['add']['lam']:g}" for r in rs),
                     f"{sum(all(r['add']['normalized'][t] >= 0.9 for t in p) for r in rs)}/{len(rs)}", verdict(ok)])
        for i, (k, f) in enumerate(((p[0], p[1]), (p[1], p[0]))):
            ngs = [r["negate"][i] for r in rs]
            assert all(ng["keep"] == k for ng in ngs)
            keep_n = [ng["keep_test"] / max(r["fine_tuned"][k]["te"], 1e-9) for ng, r in zip(ngs, rs)]
            before = [ng["forget_before_test"] for ng in ngs]
            after = [ng["forget_test"] for ng in ngs]
            lowered = float(np.mean(after)) < float(np.mean(before))
            ok_n = lowered and float(np.mean(keep_n)) >= 0.9
            neg_verdicts[(k, f)] = ok_n
            neg_summ.append([f"{NAMES[k]} − λ·{NAMES[f]}", lr_label(rs[0], k), str(len(rs)),
                             ", ".join(f"{ng['lam']:g}" for ng in ngs), _ms(keep_n),
                             _ms([r["pretrained_head"][f] for r in rs]), _ms(before), _ms(after),
                             "yes" if lowered else "no", verdict(ok_n)])
    sum_table = H.md_table(["pair", "modality", "recipe", "seeds", "first task: % of fine-tuned, mean (per seed)",
                            "second task: % of fine-tuned, mean (per seed)", "λ per seed", "seeds both ≥ 90 %",
                            "≥ 90 % of each (mean over seeds)"], summ, "lllrrrlrl")
    neg_sum_table = H.md_table(["edit", "recipe", "seeds", "λ per seed", "kept task: % of fine-tuned, mean (per seed)",
                                "forgotten task: pretrained body + its head %", "forgotten on the kept fine-tune's body %",
                                "forgotten after %", "lowered (means)", "lowered and kept ≥ 90 %"],
                               neg_summ, "llrlrrrrll")
    # Diagnostics: each fine-tune's straight path from the pretrained weights, on validation; vectors.
    path_rows, vec_rows = [], []
    for r in res:
        for t in r["pair"]:
            path_rows.append([" + ".join(NAMES[x] for x in r["pair"]), lr_label(r, t), str(r["seed"]), NAMES[t]]
                             + [pct(x["val"]) for x in r["path"][t]] + [_dip(r["path"][t])])
        parts = r["cos_parts"]
        vec_rows.append([" + ".join(NAMES[x] for x in r["pair"]), lr_label(r, r["pair"][0]), str(r["seed"]),
                         ", ".join(f"{r['norms'][t]:.3g}" for t in r["pair"]), f"{r['cos']:.3f}",
                         "; ".join(f"{k_} {v:.3f}" for k_, v in parts.items()),
                         "; ".join(f"{NAMES[t]}: " + ", ".join(f"{k_} {100 * v['share']:.0f} %"
                                                              for k_, v in r["vector_parts"][t].items() if v["share"] >= 0.005)
                                   for t in r["pair"])])
    alphas = [x["alpha"] for x in res[0]["path"][res[0]["pair"][0]]]
    path_table = H.md_table(["pair", "recipe", "seed", "task"] + [f"α={a:g} val %" for a in alphas]
                            + ["dip: lower end − lowest inside (points)"], path_rows, "llrl" + "r" * (len(alphas) + 1))
    vec_table = H.md_table(["pair", "recipe", "seed", "norms ‖τa‖, ‖τb‖", "cosine", "cosine per part",
                            "share of ‖τ‖² per part"], vec_rows, "llrrrll")
    # The full run's rows (images at lr 3e-3, seed 0), as recorded.
    old_block = "(the full run's record was not found: its rows are not repeated here)"
    old_ok = None
    if old is not None:
        olr = old["cfg"].get("lr") or LR
        o_add, o_neg = _ta_rows(old["res"]["task_arithmetic"], lambda r, t: f"lr {olr[modality(t)]:g}")
        old_block = (f"From the full run's record (`{Path(RECORD).relative_to(HERE.parent)}`, "
                     f"{str(old['run']['started'])[:16].replace('T', ' ')} UTC, seed 0), as recorded:\n\n"
                     + H.md_table(ADD_HEAD, o_add, "llrlrrrrr") + "\n\n" + H.md_table(NEG_HEAD, o_neg, "llrrrrrrr"))
        old_img = [r for r in old["res"]["task_arithmetic"] if modality(r["pair"][0]) == "image"]
        old_ok = [(NAMES[t], r["add"]["normalized"][t]) for r in old_img for t in r["pair"]]
    targets = []
    for mod in ("text", "image"):
        ps = [p for p in pairs if modality(p[0]) == mod]
        if not ps:
            continue
        lows = [min(np.mean([r["add"]["normalized"][t] for r in by_pair[tuple(p)]]) for t in p) for p in ps]
        n_ok = sum(verdicts[tuple(p)] for p in ps)
        targets.append([f"{mod}: τa + τb keeps ≥ 90 % of each task's fine-tuned accuracy "
                        f"({lr_label(by_pair[tuple(ps[0])][0], ps[0][0])}, mean over {len(cfg['seeds'])} seeds)",
                        f"{n_ok}/{len(ps)} pairs; lowest task " + ", ".join(
                            f"{' + '.join(NAMES[t] for t in p)} {100 * lo:.1f} %" for p, lo in zip(ps, lows)),
                        verdict(n_ok == len(ps) and len(ps) >= 2) + ("" if len(ps) >= 2 else " (fewer than 2 pairs)")])
        edits = [(p[0], p[1]) for p in ps] + [(p[1], p[0]) for p in ps]
        n_neg = sum(neg_verdicts[e] for e in edits)
        targets.append([f"{mod}: negating a task's vector lowers that task's accuracy and keeps the other's "
                        f"(≥ 90 % of fine-tuned)", f"{n_neg}/{len(edits)} edits", verdict(n_neg == len(edits))])
    if old_ok is not None:
        targets.append(["images at lr 3e-3 (full run, 1 pair, seed 0; recorded before this run)",
                        ", ".join(f"{n} {100 * v:.1f} %" for n, v in old_ok), verdict(all(v >= 0.9 for _, v in old_ok))])
    n_pairs_ok = sum(verdicts.values())
    targets.append(["the issue's wording: on 2 task pairs (any modality), addition keeps ≥ 90 % of each task",
                    f"{n_pairs_ok}/{len(pairs)} pairs of this run", verdict(n_pairs_ok >= 2)])
    blocks = {
        "header": H.header(run),
        "pairs": "; ".join(" + ".join(NAMES[t] for t in p) for p in pairs),
        "rows": "; ".join(f"{NAMES[t]} {cfg['rows'][t][0]} training + {cfg['rows'][t][1]} validation rows per class"
                          + (f" (max_length {cfg['max_length'][t]})" if modality(t) == "text" else "")
                          + f", {res[[i for i, r in enumerate(res) if t in r['pair']][0]]['n'][t]['test']} test rows"
                          for p in pairs for t in p),
        "recipe_text": ", ".join(f"{k}={v}" for k, v in RECIPE["text"].items()) + f", lr={cfg['lr']['text']:g}, "
                       f"{cfg['epochs']['text']} epochs",
        "recipe_image": ", ".join(f"{k}={v}" for k, v in RECIPE["image"].items()) + f", lr={cfg['lr']['image']:g}, "
                        f"{cfg['epochs']['image']} epochs, image_size {cfg['image_size']}",
        "seeds": ", ".join(map(str, cfg["seeds"])),
        "ta_add": ", ".join(f"{x:g}" for x in cfg["ta_add"]), "ta_neg": ", ".join(f"{x:g}" for x in cfg["ta_neg"]),
        "ta_path": ", ".join(f"{x:g}" for x in cfg["ta_path"]),
        "add_table": H.md_table(ADD_HEAD, add_rows, "llrlrrrrr"), "sum_table": sum_table,
        "neg_table": H.md_table(NEG_HEAD, neg_rows, "llrrrrrrr"), "neg_sum_table": neg_sum_table,
        "path_table": path_table, "vec_table": vec_table, "old": old_block,
        "targets": H.md_table(["target (issue 15)", "measured", "verdict"], targets, "lll"),
        "minutes": f"{sum(r['seconds'] for r in res) / 60:.1f}",
        "per_pair": "; ".join(f"{' + '.join(NAMES[t] for t in p)} "
                              f"{np.mean([r['seconds'] for r in by_pair[tuple(p)]]) / 60:.1f} min" for p in pairs),
    }
    return H.write_section("merging_task_arithmetic", blocks, out)


def report_soup_val(res, run, cfg, out=None):
    """``sections/merging_soup_val.md`` from the validation-size study's record."""
    vsets = ("small", "large")
    label = {}
    rows, steps_rows = [], []
    for r in res:
        for vs in vsets:
            x = r["sets"][vs]
            label[(r["task"], vs)] = x["n_val"]
            d = lambda k, ref: f"{100 * (x[k] - x[ref]):+.1f}"  # noqa: E731
            rows.append([NAMES[r["task"]], str(r["seed"]), str(x["n_val"]),
                         f"{pct(x['best_test'])} (#{x['best']})", f"{pct(x['oracle_test'])} (#{x['oracle']})",
                         f"{pct(x['greedy_test'])} ({', '.join(map(str, x['greedy_kept']))})",
                         d("greedy_test", "best_test"), d("greedy_test", "oracle_test"),
                         f"{pct(x['strict_test'])} ({', '.join(map(str, x['strict_kept']))})",
                         d("strict_test", "best_test"),
                         pct(x["uniform_test"]), d("uniform_test", "best_test"), d("uniform_test", "oracle_test")])
            for st in x["replay_steps"]:
                steps_rows.append([NAMES[r["task"]], str(r["seed"]), str(x["n_val"]),
                                   "{" + ", ".join(map(str, st["kept"])) + "} + " + str(st["add"]),
                                   f"{st['count']}/{x['n_val']} vs {st['best']}/{x['n_val']}",
                                   "tie" if st["tie"] else ("better" if st["count"] > st["best"] else "worse"),
                                   "kept" if st["accepted"] else "dropped", pct(st["test"])])
    table = H.md_table(["task", "seed", "val rows", "best on val: test % (#)", "oracle best on test % (#)",
                        "greedy soup test % (kept)", "greedy − best", "greedy − oracle",
                        "greedy, ties refused: test % (kept)", "ties refused − best",
                        "uniform soup test %", "uniform − best", "uniform − oracle"], rows, "llrrrlrrlrrrr")
    summ = []
    for task in dict.fromkeys(r["task"] for r in res):
        rs = [r for r in res if r["task"] == task]
        for vs in vsets:
            xs = [r["sets"][vs] for r in rs]

            def ms(a, b):
                v = [x[a] - x[b] for x in xs]
                return "%+.1f ± %.1f" % (100 * np.mean(v), 100 * (np.std(v, ddof=1) if len(v) > 1 else 0))

            summ.append([NAMES[task], str(xs[0]["n_val"]), str(len(xs)), ms("greedy_test", "best_test"),
                         f"{sum(x['greedy_test'] >= x['best_test'] for x in xs)}/{len(xs)}",
                         ms("greedy_test", "oracle_test"), ms("strict_test", "best_test"),
                         ms("uniform_test", "best_test"), ms("best_test", "oracle_test"),
                         "%.1f" % np.mean([len(x["greedy_kept"]) for x in xs]),
                         f"{sum(x['replay_agrees'] for x in xs)}/{len(xs)}"])
    summary = H.md_table(["task", "val rows", "seeds", "greedy − best on val (points, mean ± sd)", "seeds greedy ≥ best",
                          "greedy − oracle", "greedy, ties refused − best", "uniform − best", "best on val − oracle",
                          "ingredients kept (mean)", "replayed rule = soup()'s"], summ, "lrrrrrrrrrr")
    steps = H.md_table(["task", "seed", "val rows", "soup tried (candidates)", "val correct: soup vs kept so far",
                        "on validation", "greedy (s >= best)", "test % of the soup tried"], steps_rows, "llrlllll")
    # What each accepted addition did on test: ties (s == best, kept by the library's s >= best) against
    # strict improvements, from the test accuracy of the soup before and after the addition.
    def test_of(r, kept):
        return r["test_scores"][kept[0]] if len(kept) == 1 else r["subsets"][",".join(map(str, sorted(kept)))]["test"]

    acc_rows = []
    for task in dict.fromkeys(r["task"] for r in res):
        for vs in vsets:
            for kind in ("tie", "better"):
                d = [100 * (st["test"] - test_of(r, st["kept"])) for r in res if r["task"] == task
                     for st in r["sets"][vs]["replay_steps"] if st["accepted"] and (st["tie"] == (kind == "tie"))]
                acc_rows.append([NAMES[task], str(label[(task, vs)]), "tie (s = best)" if kind == "tie" else "better (s > best)",
                                 str(len(d)), "%+.2f" % np.mean(d) if d else "–",
                                 f"{sum(x < 0 for x in d)} / {sum(x == 0 for x in d)} / {sum(x > 0 for x in d)}",
                                 ", ".join("%+.1f" % x for x in d) or "–"])
    accepted = H.md_table(["task", "val rows", "addition accepted as", "additions", "test change (points, mean)",
                           "worse / same / better on test", "each"], acc_rows, "lrlrrll")
    first = res[0]
    blocks = {
        "header": H.header(run), "accepted": accepted,
        "tasks": ", ".join(NAMES[t] for t in dict.fromkeys(r["task"] for r in res)),
        "rows": "; ".join(f"{NAMES[t]} {cfg['rows'][t][0]} training rows per class, validation "
                          f"{next(r['sets']['small']['n_val'] for r in res if r['task'] == t)} or "
                          f"{next(r['sets']['large']['n_val'] for r in res if r['task'] == t)} rows, "
                          f"test {next(r['n_test'] for r in res if r['task'] == t)} rows"
                          for t in dict.fromkeys(r["task"] for r in res)),
        "runs": "\n".join(f"- {x}" for x in cfg.get("runs", [])),
        "max_length": ", ".join(f"{NAMES[t]} {cfg['max_length'][t]}" for t in dict.fromkeys(r["task"] for r in res)),
        "recipe_text": ", ".join(f"{k}={v}" for k, v in RECIPE["text"].items()),
        "epochs": str(cfg["epochs"]["text"]),
        "grid_text": f"lr ∈ {cfg['grid']['text']['lr']} × {cfg['grid']['text']['n_seeds']} seeds",
        "seeds": "; ".join(f"{NAMES[t]} " + ", ".join(str(r["seed"]) for r in res if r["task"] == t)
                           for t in dict.fromkeys(r["task"] for r in res)),
        "n_candidates": str(first["n_candidates"]),
        "table": table, "summary": summary, "steps": steps,
        "minutes": f"{sum(r['seconds'] for r in res) / 60:.1f}",
    }
    return H.write_section("merging_soup_val", blocks, out)


def plot(res, path):
    """One panel per soup task: every candidate's validation (x) and test (y) accuracy, the soups marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in res["soups"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.9), squeeze=False)
    colors = ["#4c72b0", "#dd8452", "#55a868", "#8172b3"]
    for ax, task in zip(axes[0], tasks):
        for j, r in enumerate(r for r in res["soups"] if r["task"] == task):
            c = colors[j % len(colors)]
            v, t = 100 * np.asarray(r["val_scores"]), 100 * np.asarray(r["test_scores"])
            ax.scatter(v, t, s=22, color=c, alpha=0.6, label=f"candidates, seed {r['seed']}")
            ax.scatter([v[r["best"]]], [t[r["best"]]], s=220, facecolors="none", edgecolors=c, linewidths=1.5,
                       zorder=5, label="best candidate on val" if j == 0 else None)
            ax.scatter([100 * r["greedy_val"]], [100 * r["greedy_test"]], marker="*", s=160, color=c, edgecolors="k",
                       linewidths=0.6, zorder=4, label="greedy soup" if j == 0 else None)
            ax.scatter([100 * r["uniform_val"]], [100 * r["uniform_test"]], marker="^", s=70, color=c, edgecolors="k",
                       linewidths=0.6, zorder=4, label="uniform soup" if j == 0 else None)
        ax.set_title(f"{NAMES[task]} ({r['n_candidates']} candidates per seed)", fontsize=9)
        ax.set_xlabel("validation accuracy (%)")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6.5, loc="best", framealpha=0.6)
    fig.suptitle("Soups of a grid's candidates (FineTunedClassifier, strategy='full'): greedy (star) and\n"
                 "uniform (triangle) soups against their ingredients (dots), one colour per seed", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    log(f"wrote {path}")


def main(argv=None):
    p = H.parser(__doc__)
    p.add_argument("--record", default=str(RECORD), help="JSON record to write (full run) or read (--report-only)")
    p.add_argument("--quick-record", default=None,
                   help="with --quick: write the smoke run's record to this path (to try --report-only on it)")
    p.add_argument("--section-out", default=None, help="where to write the section (default sections/merging.md)")
    p.add_argument("--plot", default=str(PLOT), help="where to write the plot (default benchmarks/merging.png)")
    p.add_argument("--val-rows", type=int, default=None,
                   help="run the soups' validation-size study instead (arm 1 only): validation rows per class of "
                        "the larger validation set (record results/merging/soup_val.json, section "
                        "sections/merging_soup_val.md)")
    p.add_argument("--tasks", default=None, help="with --val-rows: comma-separated soup tasks (text tasks only "
                   "outside the default four: " + ", ".join(EXTRA_TASKS) + ")")
    p.add_argument("--seeds", default=None, help="with --val-rows or --arms task_arithmetic: comma-separated seeds")
    p.add_argument("--arms", default="all", choices=["all", "task_arithmetic"],
                   help="task_arithmetic: run only the task-arithmetic arm, on --pairs (record "
                        "results/merging/task_arithmetic.json, section sections/merging_task_arithmetic.md)")
    p.add_argument("--pairs", default=None,
                   help="with --arms task_arithmetic: comma-separated task pairs a+b (default: "
                        + ", ".join("+".join(pr) for pr in TA_PAIRS) + ")")
    p.add_argument("--image-lr", type=float, default=None,
                   help=f"with --arms task_arithmetic: the image fine-tunes' lr (default {TA_LR['image']:g})")
    p.add_argument("--old-record", default=str(RECORD),
                   help="with --arms task_arithmetic: the full run's record, whose task-arithmetic rows "
                        "(images at lr 3e-3) the section repeats")
    p.add_argument("--also-record", action="append", default=[],
                   help="with --val-rows --report-only: another record of the study (other tasks) to add to the "
                        "section (repeatable)")
    args = p.parse_args(argv)
    if args.val_rows is not None:
        return main_soup_val(args)
    if args.arms == "task_arithmetic":
        return main_task_arithmetic(args)
    if args.report_only:
        rec = H.read_json(args.record)
        cfg, res = rec["cfg"], rec["res"]
        run = {**rec["run"], "started": H.dt.datetime.fromisoformat(str(rec["run"]["started"]))}
    else:
        import torch

        H.quiet()
        cfg = dict(CONFIGS["quick" if args.quick else "full"])
        log(f"estimated run time: ~{estimate_minutes(cfg):.0f} min on an idle 2-core CPU with 1 torch thread "
            f"({'quick' if args.quick else 'full'} run)")
        run = H.start_run(args.threads, ["skorch", "peft", "numpy", "psutil"])
        if args.threads:
            torch.set_num_threads(args.threads)
        res = measure(cfg)
        run = H.finish_run(run, notes="One process, arms in sequence (soups, task arithmetic, WiSE, multi-task).")
        if args.quick:
            log(f"quick run done in {run['elapsed']:.0f} s")
            if not args.quick_record:
                return None
            H.write_json(args.quick_record, {"cfg": cfg, "res": res, "run": run})
            return None
        H.write_json(args.record, {"cfg": cfg, "res": res, "run": run})
    report(res, run, cfg, args.section_out)
    plot(res, args.plot)
    return None


def _run_line(rec):
    """One line about a record's run: its command, start, length and load."""
    r, info = rec["run"], rec["run"]["info"]
    return (f"`{r['command']}`: {str(r['started'])[:16].replace('T', ' ')} UTC, {r.get('elapsed', 0) / 60:.1f} min, "
            f"load average {info.get('loadavg_start', ['?'])[0]} at start, {info.get('loadavg_end', ['?'])[0]} at end")


def parse_pairs(text):
    """``"a+b,c+d"`` -> [[a, b], [c, d]], each task known and the two of a pair of one modality."""
    pairs = []
    for item in text.split(","):
        pr = [t.strip() for t in item.split("+") if t.strip()]
        if len(pr) != 2 or pr[0] == pr[1]:
            raise ValueError(f"--pairs: {item!r} is not a pair of two tasks 'a+b'")
        for t in pr:
            if t not in NAMES:
                raise ValueError(f"--pairs: unknown task {t!r}; known: {sorted(NAMES)}")
        if modality(pr[0]) != modality(pr[1]):
            raise ValueError(f"--pairs: {item!r} mixes a text and an image task (one backbone per pair)")
        pairs.append(pr)
    return pairs


def main_task_arithmetic(args):
    """The task-arithmetic arm alone, on its pairs and recipe (:data:`TA_CONFIGS`), per seed."""
    record = RECORD_TA if args.record == str(RECORD) else Path(args.record)
    if args.report_only:
        rec = H.read_json(record)
        cfg, res = rec["cfg"], rec["res"]
        run = {**rec["run"], "started": H.dt.datetime.fromisoformat(str(rec["run"]["started"]))}
    else:
        import torch

        H.quiet()
        cfg = dict(TA_CONFIGS["quick" if args.quick else "full"])
        if args.pairs:
            cfg["ta_pairs"] = parse_pairs(args.pairs)
        if args.seeds:
            cfg["seeds"] = [int(x) for x in args.seeds.split(",")]
        if args.image_lr:
            cfg["lr"] = {**cfg["lr"], "image": float(args.image_lr)}
        run = H.start_run(args.threads, ["skorch", "peft", "numpy", "psutil"])
        if args.threads:
            torch.set_num_threads(args.threads)
        res = []

        def done(rec):  # a partial record after every pair, so a stopped run keeps what it measured
            res.append(rec)
            if not args.quick:
                H.write_json(record, {"cfg": cfg, "res": res, "run": {**run, "partial": True}})

        for seed in cfg["seeds"]:
            arm_task_arithmetic(cfg, seed=seed, lr=cfg["lr"], keep_models=False, on_pair=done)
        run = H.finish_run(run, notes="One process: the task-arithmetic arm alone, pairs in sequence per seed.")
        if args.quick:
            log(f"quick run done in {run['elapsed']:.0f} s")
            if args.quick_record:
                H.write_json(args.quick_record, {"cfg": cfg, "res": res, "run": run})
            return None
        H.write_json(record, {"cfg": cfg, "res": res, "run": run})
    old = H.read_json(args.old_record) if Path(args.old_record).exists() else None
    report_task_arithmetic(res, run, cfg, old, args.section_out)
    return None


def main_soup_val(args):
    record = RECORD_VAL if args.record == str(RECORD) else Path(args.record)
    if args.report_only:
        rec = H.read_json(record)
        cfg, res = rec["cfg"], rec["res"]
        run = {**rec["run"], "started": H.dt.datetime.fromisoformat(str(rec["run"]["started"]))}
        cfg["runs"] = [_run_line(rec)]
        for extra in args.also_record:  # other tasks' records: their rows, max_length, runs added
            more = H.read_json(extra)
            res = res + more["res"]
            cfg["rows"] = {**cfg["rows"], **more["cfg"]["rows"]}
            cfg["max_length"] = {**cfg["max_length"], **more["cfg"]["max_length"]}
            cfg["runs"].append(_run_line(more))
    else:
        import torch

        H.quiet()
        cfg = dict(CONFIGS["quick" if args.quick else "full"])
        cfg["rows"], cfg["max_length"] = dict(cfg["rows"]), dict(cfg["max_length"])
        if args.tasks:
            cfg["soup_tasks"] = [t.strip() for t in args.tasks.split(",") if t.strip()]
        for t in cfg["soup_tasks"]:
            if t not in NAMES:
                raise ValueError(f"--tasks: unknown task {t!r}; known: {sorted(NAMES)}")
            if modality(t) == "image" and t not in IMAGE_TASKS:
                raise ValueError(f"--tasks: {t!r} is an image task outside the default run; soups of extra "
                                 f"tasks are text only here")
            if t in EXTRA_TASKS and t not in cfg["rows"]:
                cfg["rows"][t] = cfg["rows"]["sentiment_sentences"] if args.quick else EXTRA_TASKS[t]["rows"]
                cfg["max_length"][t] = cfg["max_length"]["sentiment_sentences"] if args.quick else EXTRA_TASKS[t]["max_length"]
            if args.val_rows <= cfg["rows"][t][1]:
                raise ValueError(f"--val-rows={args.val_rows} must exceed {NAMES[t]}'s {cfg['rows'][t][1]} "
                                 f"validation rows per class of the default run")
        if args.seeds:
            cfg["seeds"] = [int(x) for x in args.seeds.split(",")]
        cfg["val_rows"] = args.val_rows
        run = H.start_run(args.threads, ["skorch", "peft", "numpy", "psutil"])
        if args.threads:
            torch.set_num_threads(args.threads)
        res = arm_soup_val(cfg, args.val_rows)
        run = H.finish_run(run, notes="One process: the soups' validation-size study (arm 1 only).")
        if args.quick:
            log(f"quick run done in {run['elapsed']:.0f} s")
            if args.quick_record:
                H.write_json(args.quick_record, {"cfg": cfg, "res": res, "run": run})
            return None
        H.write_json(record, {"cfg": cfg, "res": res, "run": run})
    report_soup_val(res, run, cfg, args.section_out)
    return None


if __name__ == "__main__":
    main()

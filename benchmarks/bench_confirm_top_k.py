#!/usr/bin/env python
"""How many LogME-ranked candidates should ``BackboneSelector`` confirm with a probe? (issue 11 §4)

``BackboneSelector(confirm_top_k=k)`` scores every candidate with LogME and
then cross-validates the probe (``head``) on the ``k`` best-scored ones,
picking the best by probe score (``k=0``: trust LogME). For each task of the
evaluation suite (``benchmarks/suite/tasks.py``: its loaders, its fixed test
split and its training pool), this script draws ``n`` labeled rows per class
from the pool, runs the selector with each ``k`` in ``{0, 1, 2, 3, all}`` on
those rows, and compares its pick with the oracle: the candidate whose probe
(StandardScaler + LogisticRegression, trained on the same rows) is the most
accurate on the task's fixed test split.

Candidates (those of ``bench_selection.py``, fewer layers):

- image tasks (at ``image_size`` px): tf_efficientnet_lite0 (final, layer 6),
  torchvision mobilenet_v2 (final, layer 16), and both with random weights;
- text tasks (``max_length`` tokens, the suite's): all-MiniLM-L6-v2 (final,
  layers 1 and 3) and its architecture with random weights.

Every candidate is embedded first (train rows and test rows, timed: the
embedding seconds are reported apart), into a persistent cache, so that each
selector fit reads its embeddings from the cache and pays only for LogME
and the probes. The selector's head is the ground truth's probe, its other
parameters are its defaults (``cv=5``), ``refit=False`` (the refit costs the
same for every ``k``).

One JSON record per (task, seed, k) and one per (task, seed) with the
candidates' test accuracies, under ``benchmarks/results/confirm_top_k/``;
records that exist are skipped (resumable).

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_confirm_top_k.py               # records + sections/confirm_top_k.md
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_confirm_top_k.py --quick       # smoke run in a temp dir
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_confirm_top_k.py --report-only # rebuild the section
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
for p in (HERE, HERE / "suite"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import numpy as np  # noqa: E402

import _common as C  # noqa: E402

RESULTS = HERE / "results" / "confirm_top_k"
OUT = HERE / "sections" / "confirm_top_k.md"
CACHE = os.environ.get("SKTRANSFER_CONFIRM_CACHE", os.path.expanduser("~/.cache/sktransfer-confirm-top-k"))
KS = (0, 1, 2, 3, "all")
# Text and image tasks alternate, so that a run cut by --max-minutes still covers both.
TASK_ORDER = ("rotten_tomatoes", "digits", "sentiment_sentences", "lfw_faces", "bbc_news", "emoji",
              "convention_speeches", "openclipart", "fortunes", "fashion_mnist")
CONFIGS = {
    "full": dict(n=32, image_size=64, max_length=128, cv=5, tasks=TASK_ORDER),
    "quick": dict(n=4, image_size=32, max_length=32, cv=2, tasks=("sentiment_sentences", "lfw_faces"), test_cap=20),
}
TOLERANCE = 0.5  # points of mean regret within which a smaller k counts as as good as the best k

IMAGE = "timm/tf_efficientnet_lite0"
TV = "torchvision/mobilenet_v2"
TEXT = "sentence-transformers/all-MiniLM-L6-v2"
log = C.log




# ------------------------------------------------------------ candidates
def image_candidates():
    """(name, PretrainedFeatureExtractor params); random twins seeded (torch seed 0), so their cache keys repeat."""
    import copy

    import timm
    import torch
    import torchvision

    torch.manual_seed(0)
    eff_random = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    mnv_random = copy.deepcopy(torchvision.models.mobilenet_v2(weights=None).eval())
    mnv_random.classifier = torch.nn.Identity()  # its output is the 1280-d embedding
    return [
        ("efficientnet_lite0", {"backbone": IMAGE}),
        ("efficientnet_lite0 layer 6", {"backbone": IMAGE, "layer": 6}),
        ("efficientnet_lite0 random init", {"backbone": eff_random}),
        ("mobilenet_v2", {"backbone": TV}),
        ("mobilenet_v2 layer 16", {"backbone": TV, "layer": 16}),
        ("mobilenet_v2 random init", {"backbone": mnv_random}),
    ]


def text_candidates():
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    from sktransfer.backbones._offline import known_local_path

    st = SentenceTransformer(str(known_local_path(TEXT)), device="cpu")
    torch.manual_seed(0)
    st[0].model = AutoModel.from_config(st[0].model.config)  # same architecture, random weights
    st.eval()
    return [
        ("MiniLM-L6 final", {"backbone": TEXT}),
        ("MiniLM-L6 layer 1", {"backbone": TEXT, "layer": 1}),
        ("MiniLM-L6 layer 3", {"backbone": TEXT, "layer": 3}),
        ("MiniLM-L6 random init", {"backbone": st}),
    ]


_CANDS = {}


def candidates(modality):
    if modality not in _CANDS:
        _CANDS[modality] = text_candidates() if modality == "text" else image_candidates()
    return _CANDS[modality]


def common_params(modality, cfg):
    if modality == "text":
        return {"max_length": cfg["max_length"], "batch_size": 32, "progress": False}
    return {"image_size": cfg["image_size"], "batch_size": 64, "progress": False}


def probe_head():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))


# --------------------------------------------------------------- records
def k_label(k):
    return str(k)


def record_path(root, task, seed, k):
    return root / task / f"s{seed}_k{k_label(k)}.json"


def candidates_path(root, task, seed):
    return root / task / f"s{seed}_candidates.json"


def write_json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)


def task_data(name, seed, cfg):
    import tasks as T

    split = T.load_split(name)
    X_train, y_train = T.draw(split, cfg["n"], seed)
    X_test, y_test = split.X_test, split.y_test
    if cfg.get("test_cap"):
        X_test, y_test = X_test[: cfg["test_cap"]], y_test[: cfg["test_cap"]]
    return T.TASKS[name], X_train, y_train, X_test, y_test


def embed_and_truth(task, X_train, y_train, X_test, y_test, cfg, cache):
    """Embed every candidate (timed) and the oracle: its probe's test accuracy."""
    from sklearn.exceptions import ConvergenceWarning

    from sktransfer import PretrainedFeatureExtractor

    common = common_params(task.modality, cfg)
    rows = []
    for name, params in candidates(task.modality):
        t = time.perf_counter()
        ext = PretrainedFeatureExtractor(**params, **common, cache=cache)
        Z_train = ext.fit_transform(X_train)
        t1 = time.perf_counter()
        Z_test = ext.transform(X_test)
        t2 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            acc = float(probe_head().fit(Z_train, y_train).score(Z_test, y_test))
        rows.append({"candidate": name, "dim": int(Z_train.shape[1]), "embed_train_s": t1 - t, "embed_test_s": t2 - t1,
                     "test_acc": acc})
        log(f"    {name:32s} d={Z_train.shape[1]:5d} embed {t1 - t:5.1f} s (train) {t2 - t1:5.1f} s (test)  "
            f"test acc {acc:.3f}")
    return rows


def run_selector(task, X_train, y_train, k, cfg, cache):
    from sklearn.exceptions import ConvergenceWarning

    from sktransfer.selection import BackboneSelector

    cands = [{**params, "name": name} for name, params in candidates(task.modality)]
    kk = len(cands) if k == "all" else k
    import inspect

    # The probe parameter is `estimator` (its old name `head` is deprecated); accept either tree.
    key = "estimator" if "estimator" in inspect.signature(BackboneSelector).parameters else "head"
    sel = BackboneSelector(cands, metric="logme", confirm_top_k=kk, cv=cfg["cv"], cache=cache,
                           extractor_params=common_params(task.modality, cfg), refit=False, **{key: probe_head()})
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sel.fit(X_train, y_train)
    return sel, time.perf_counter() - t


def run_all(root, cfg, cache, seeds, max_minutes, tasks_wanted):
    import tasks as T

    commit = C.git_commit()
    t_start = time.perf_counter()
    n_run = n_done = 0
    names = [t for t in cfg["tasks"] if t in T.TASKS and (not tasks_wanted or t in tasks_wanted)]
    for seed in seeds:
        for name in names:
            if max_minutes and (time.perf_counter() - t_start) / 60 > max_minutes:
                log(f"--max-minutes {max_minutes} reached: stopping before {name} seed {seed}")
                return n_run, n_done, True
            paths = [record_path(root, name, seed, k) for k in KS]
            cpath = candidates_path(root, name, seed)
            if cpath.exists() and all(p.exists() for p in paths):
                n_done += len(paths)
                continue
            try:
                task, X_train, y_train, X_test, y_test = task_data(name, seed, cfg)
            except (ImportError, FileNotFoundError, OSError) as exc:
                log(f"{name}: not installed here ({type(exc).__name__}: {exc}); skipped")
                break
            log(f"{name} (seed {seed}): {len(y_train)} train rows, {len(y_test)} test rows")
            if cpath.exists():
                truth = json.loads(cpath.read_text())
            else:
                rows = embed_and_truth(task, X_train, y_train, X_test, y_test, cfg, cache)
                truth = {"task": name, "modality": task.modality, "seed": seed, "n_per_class": cfg["n"],
                         "n_train": len(y_train), "n_test": len(y_test), "candidates": rows, "git_commit": commit,
                         "date": C.utc_now().isoformat(timespec="minutes")}
                write_json(cpath, truth)
            acc = {r["candidate"]: r["test_acc"] for r in truth["candidates"]}
            best = max(acc.values())
            # Rotate the order of k per seed: drift of a shared machine falls on different k.
            order = list(KS)[seed % len(KS):] + list(KS)[: seed % len(KS)]
            for k in order:
                path = record_path(root, name, seed, k)
                if path.exists():
                    n_done += 1
                    continue
                sel, secs = run_selector(task, X_train, y_train, k, cfg, cache)
                r = sel.ranking_
                pick = sel.best_candidate_
                rec = {
                    "task": name, "modality": task.modality, "seed": seed, "k": k_label(k),
                    "confirm_top_k": int(len(acc) if k == "all" else k), "n_candidates": len(acc),
                    "picked": pick, "picked_acc": acc[pick], "best_acc": best,
                    "best": sorted(c for c, a in acc.items() if a == best),
                    "regret": best - acc[pick], "fit_s": secs,
                    "score_s": float(r["score_seconds"].sum()), "probe_s": float(np.nansum(r["probe_seconds"])),
                    "embed_s_in_fit": float(r["embed_seconds"].sum()),
                    "ranking": [{"candidate": c, "score": float(s), "probe_score": None if np.isnan(p) else float(p)}
                                for c, s, p in zip(r["candidate"], r["score"], r["probe_score"])],
                    "git_commit": commit, "date": C.utc_now().isoformat(timespec="minutes"),
                }
                write_json(path, rec)
                n_run += 1
                log(f"    k={k_label(k):>3s}: pick {pick:32s} acc {acc[pick]:.3f} (best {best:.3f}) "
                    f"fit {secs:5.2f} s (probes {rec['probe_s']:.2f} s)")
    return n_run, n_done, False


# ---------------------------------------------------------------- report
def load_records(root):
    recs, truths = {}, {}
    for task_dir in sorted(p for p in root.glob("*") if p.is_dir()):
        for f in task_dir.glob("s*_candidates.json"):
            t = json.loads(f.read_text())
            truths[(t["task"], t["seed"])] = t
        for f in task_dir.glob("s*_k*.json"):
            r = json.loads(f.read_text())
            recs[(r["task"], r["seed"], r["k"])] = r
    # Only (task, seed) pairs with every k: the comparison between k is paired.
    complete = sorted({(t, s) for (t, s, _) in recs if all((t, s, k_label(k)) in recs for k in KS)
                       and (t, s) in truths}, key=lambda ts: (TASK_ORDER.index(ts[0]) if ts[0] in TASK_ORDER else 99,
                                                              ts[1]))
    return recs, truths, complete


def per_task(recs, complete):
    """task -> k -> {regret (points), fit_s, probe_s, hit rate}, averaged over the seeds run."""
    out = {}
    for task in dict.fromkeys(t for t, _ in complete):
        seeds = [s for t, s in complete if t == task]
        out[task] = {}
        for k in KS:
            rs = [recs[(task, s, k_label(k))] for s in seeds]
            out[task][k_label(k)] = {
                "regret": 100 * float(np.mean([r["regret"] for r in rs])),
                "fit_s": float(np.mean([r["fit_s"] for r in rs])),
                "probe_s": float(np.mean([r["probe_s"] for r in rs])),
                "hit": float(np.mean([r["regret"] <= 1e-12 for r in rs])),
                "picks": [r["picked"] for r in rs],
                "n_seeds": len(seeds),
            }
    return out


def choose_k(table, tasks):
    """Smallest k whose mean regret over ``tasks`` is within TOLERANCE points of the best k's."""
    means = {k_label(k): float(np.mean([table[t][k_label(k)]["regret"] for t in tasks])) for k in KS}
    best = min(means.values())
    for k in KS:  # KS is in increasing order of cost
        if means[k_label(k)] <= best + TOLERANCE + 1e-9:
            return k_label(k), means
    raise AssertionError("unreachable")


def fmt(v, nd=2):
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    return f"{v:.{nd}f}"


def write_report(root, out, cfg, run):
    recs, truths, complete = load_records(root)
    if not complete:
        raise SystemExit(f"No complete (task, seed) in {root}: run the benchmark first.")
    table = per_task(recs, complete)
    tasks = list(table)
    seeds = sorted({s for _, s in complete})
    modality = {t: truths[(t, s)]["modality"] for t, s in complete}
    text_tasks = [t for t in tasks if modality[t] == "text"]
    image_tasks = [t for t in tasks if t not in text_tasks]
    states = sorted({r.get("git_commit", "?") for r in recs.values()})
    dates = sorted(r["date"] for r in recs.values())
    n_img = len(candidates_from_truth(truths, image_tasks))
    n_txt = len(candidates_from_truth(truths, text_tasks))
    lines = [
        "## How many candidates should BackboneSelector confirm with a probe? (issue 11 §4)",
        "",
        C.machine_md(run["info"], run["vers"], run["command"], run["started"], run["elapsed"]),
        f"- Records: {len(recs)} selector runs and {len(truths)} candidate sets in `benchmarks/results/confirm_top_k/` "
        f"(one JSON per task, seed and k), dated {dates[0]} to {dates[-1]} UTC, sktransfer at {', '.join(states)}. "
        "Resumable: `HF_HUB_OFFLINE=1 python benchmarks/bench_confirm_top_k.py` skips existing records; "
        "`--report-only` rebuilds this section.",
        f"- Tasks: {len(tasks)} of the suite ({len(text_tasks)} text: {', '.join(text_tasks)}; {len(image_tasks)} image: "
        f"{', '.join(image_tasks)}), with the suite's loaders and fixed test splits "
        f"(`benchmarks/suite/tasks.py`). Training rows: `tasks.draw(split, {cfg['n']}, seed)` ({cfg['n']} per class "
        f"from the pool, all of a class when it has fewer), seeds {', '.join(map(str, seeds))}.",
        f"- Candidates, images ({n_img}, at {cfg['image_size']} px): tf_efficientnet_lite0 (final, layer 6), "
        "torchvision mobilenet_v2 (final, layer 16), each architecture with random weights (torch seed 0). "
        f"Text ({n_txt}, {cfg['max_length']} tokens): all-MiniLM-L6-v2 (final: mean pool + normalize; layers 1 "
        "and 3) and its architecture with random weights. `k = all` confirms every candidate.",
        "- Oracle (ground truth): accuracy on the task's fixed test split of StandardScaler + "
        "LogisticRegression(max_iter=1000) trained on the same rows' embeddings. Regret = oracle's best accuracy − "
        "the picked candidate's, in points (0: the pick is a best one; ties count as best).",
        f"- Selector: `BackboneSelector(candidates, metric='logme', estimator=<that probe>, confirm_top_k=k, cv={cfg['cv']}, "
        "refit=False)` on the training rows only. Its embeddings come from a warm cache (every candidate was "
        "embedded, timed, before the selector runs), so **fit s** is what each k pays beyond embedding: "
        "cache reads, LogME on every candidate, and k cross-validated probes (**probe s**, their part). "
        "Embedding the training rows, paid once whatever k, is reported apart.",
        "",
    ]
    # --- task x k
    head = ["task", "n train", "best test acc"] + [f"k={k_label(k)} regret" for k in KS] + [f"k={k_label(k)} s"
                                                                                            for k in KS]
    rows = []
    for t in tasks:
        ss = [s for tt, s in complete if tt == t]
        best_acc = np.mean([max(c["test_acc"] for c in truths[(t, s)]["candidates"]) for s in ss])
        rows.append([t, truths[(t, ss[0])]["n_train"], fmt(best_acc, 3)]
                    + [fmt(table[t][k_label(k)]["regret"], 1) for k in KS]
                    + [fmt(table[t][k_label(k)]["fit_s"], 2) for k in KS])
    lines += [
        "### Regret (points) and selector seconds, per task and k",
        "",
        f"Mean over the seeds run ({', '.join(map(str, seeds))}); seconds are the selector's fit with warm embeddings.",
        "",
        C.md_table(head, rows, "lrr" + "r" * (2 * len(KS))),
        "",
    ]
    # --- per k summary
    means = {}
    for k in KS:
        kl = k_label(k)
        runs = [recs[(t, s, kl)] for t, s in complete]
        means[kl] = {
            "hit": float(np.mean([r["regret"] <= 1e-12 for r in runs])),
            "regret": 100 * float(np.mean([r["regret"] for r in runs])),
            "worst": 100 * float(np.max([r["regret"] for r in runs])),
            "fit_s": float(np.mean([r["fit_s"] for r in runs])),
            "probe_s": float(np.mean([r["probe_s"] for r in runs])),
            "n": len(runs),
        }
    # Cold cache only in each task's first seed: later draws share pool rows (and the test split) with it.
    first = {t: min(s for tt, s in complete if tt == t) for t in tasks}
    embed = [sum(c["embed_train_s"] for c in truths[(t, first[t])]["candidates"]) for t in tasks]
    embed_test = [sum(c["embed_test_s"] for c in truths[(t, first[t])]["candidates"]) for t in tasks]
    summ = []
    for k in KS:
        m, m0 = means[k_label(k)], means["0"]
        extra = m["fit_s"] - m0["fit_s"]
        gain = m0["regret"] - m["regret"]
        per_s = gain / extra if k != 0 and extra > 1e-6 else None
        diff = [recs[(t, s_, "0")]["regret"] - recs[(t, s_, k_label(k))]["regret"] for t, s_ in complete]
        wl = "–" if k == 0 else f"{sum(d > 1e-12 for d in diff)}/{sum(d < -1e-12 for d in diff)}"
        summ.append([k_label(k), f"{m['hit'] * 100:.0f}% ({round(m['hit'] * m['n'])}/{m['n']})", wl, fmt(m["regret"], 2),
                     fmt(m["worst"], 1), fmt(m["fit_s"], 2), fmt(m["probe_s"], 2),
                     "–" if k == 0 else f"{gain:+.2f}", "–" if per_s is None else f"{per_s:+.2f}"])
    lines += [
        "### Per k, over all task × seed runs",
        "",
        C.md_table(["k", "pick is a best one", "runs better/worse than k=0", "mean regret (pts)",
                    "worst regret (pts)", "mean fit s", "mean probe s", "regret reduced vs k=0 (pts)",
                    "pts reduced per extra second"], summ, "lrrrrrrrr"),
        "",
        "**pts reduced per extra second** = (mean regret at k=0 − mean regret at k) / (mean fit s at k − mean fit s "
        "at k=0). `k = 1` never changes the pick, by construction: it cross-validates LogME's top candidate alone, "
        "so there is nothing to re-rank, and it only adds the probe's cost (its `probe_score` in `ranking_` is "
        "still informative).",
        "",
        f"For scale: embedding the training rows with every candidate (cold cache, each task's first seed) took "
        f"{np.mean(embed):.1f} s on average per task (median {np.median(embed):.1f} s, range {min(embed):.1f}-"
        f"{max(embed):.1f} s), paid once whatever k; so even `k = all` adds "
        f"{(means['all']['fit_s'] - means['0']['fit_s']) / np.mean(embed) * 100:.0f}% to the selection's total cost on "
        f"average. (Embedding the test splits for the oracle took {np.mean(embed_test):.1f} s per task more; "
        "the selector never sees them.)",
        "",
    ]
    # by modality
    mod_rows = []
    for label, ts in (("text", text_tasks), ("image", image_tasks)):
        if not ts:
            continue
        mod_rows.append([label, len(ts)] + [fmt(float(np.mean([table[t][k_label(k)]["regret"] for t in ts])), 2)
                                             for k in KS])
    lines += [
        "Mean regret (points) by modality:",
        "",
        C.md_table(["modality", "tasks"] + [f"k={k_label(k)}" for k in KS], mod_rows, "lr" + "r" * len(KS)),
        "",
    ]
    # --- where is the oracle best in LogME's ranking?
    ranks = []
    for t, s in complete:
        r = recs[(t, s, "all")]
        order = sorted(r["ranking"], key=lambda c: -c["score"])
        best_set = set(r["best"])
        ranks.append(next(i + 1 for i, c in enumerate(order) if c["candidate"] in best_set))
    cnt = {i: ranks.count(i) for i in sorted(set(ranks))}
    lines += [
        "LogME rank of the oracle's best candidate (1 = LogME's top pick), over the task × seed runs: "
        + ", ".join(f"rank {i}: {c}" for i, c in cnt.items())
        + ". Confirming k candidates can only find the best when it is within LogME's top k; the probe then has "
        "to recognise it from 5-fold cross-validation on the same few rows.",
        "",
    ]
    # --- leave-one-task-out
    loto = []
    chosen = []
    for t in tasks:
        others = [o for o in tasks if o != t]
        kc, m = choose_k(table, others)
        chosen.append(kc)
        loto.append([t, kc, " / ".join(fmt(m[k_label(k)], 2) for k in KS), fmt(table[t][kc]["regret"], 1),
                     fmt(table[t]["0"]["regret"], 1), fmt(table[t][kc]["fit_s"], 2)])
    k_all, m_all = choose_k(table, tasks)
    gain_t = [t for t in tasks if table[t][k_all]["regret"] < table[t]["0"]["regret"] - 1e-9]
    loss_t = [t for t in tasks if table[t][k_all]["regret"] > table[t]["0"]["regret"] + 1e-9]
    flip = [t for t, kc in zip(tasks, chosen) if kc != k_all]
    n_test = {t: truths[(t, s_)]["n_test"] for t, s_ in complete}
    n_rand_best = sum(any("random" in b for b in recs[(t, s_, "0")]["best"]) for t, s_ in complete)
    n_random = sum("random" in recs[(t, s_, "all")]["picked"] for t, s_ in complete)
    lo_regret = float(np.mean([table[t][kc]["regret"] for t, kc in zip(tasks, chosen)]))
    lines += [
        "### The default, chosen leave-one-task-out",
        "",
        f"Rule (fixed before looking at the figures; no trade-off weight to tune): on the other tasks, take the "
        f"mean regret of each k (tasks weighted equally, seeds averaged within a task); the chosen k is the "
        f"**smallest** k whose mean regret is within {TOLERANCE} points of the best k's. Since cost grows with k, "
        "that is the cheapest setting that picks as well as the best one.",
        "",
        C.md_table(["held-out task", "k chosen on the others", "others' mean regret k=" + "/".join(k_label(k) for k in KS),
                    "its regret at chosen k", "its regret at k=0", "its fit s"], loto, "lrlrrr"),
        "",
        f"Leave-one-task-out: k chosen {', '.join(f'{c}× k={k}' for k, c in sorted({k: chosen.count(k) for k in chosen}.items()))}; "
        f"mean regret of the held-out tasks at their chosen k: {lo_regret:.2f} points (k=0 everywhere: "
        f"{means['0']['regret']:.2f}; best fixed k in hindsight: {min(v['regret'] for v in means.values()):.2f}). "
        f"On all tasks the same rule gives **k={k_all}**.",
        "",
    ]
    # --- honesty
    lines += [
        "### Caveats",
        "",
        f"- The candidate sets are thin: two real image backbones (plus one intermediate layer of each and two "
        "random twins) and one real text backbone (plus two of its layers and one random twin); the random twins "
        f"are controls, and one is the oracle's best in {n_rand_best} of {len(complete)} runs. Most of the decision "
        "is between a final layer and an intermediate one, or between the two image backbones. Only these three pretrained backbones install offline here, so how the figures "
        "move with a pool of several real backbones of one modality is not measured.",
        f"- Where k={k_all} differs from k=0 (mean over seeds, points): better on "
        + (", ".join(f"{t} ({table[t]['0']['regret']:.1f} → {table[t][k_all]['regret']:.1f})" for t in gain_t) or "none")
        + "; worse on "
        + (", ".join(f"{t} ({table[t]['0']['regret']:.1f} → {table[t][k_all]['regret']:.1f})" for t in loss_t) or "none")
        + f"; equal on the other {len(tasks) - len(gain_t) - len(loss_t)}. "
        + (f"Held out, {', '.join(flip)} alone change{'s' if len(flip) == 1 else ''} the leave-one-task-out choice. "
           if flip else "")
        + f"A difference of {means['0']['regret'] - means[k_all]['regret']:.1f} points of mean regret over "
        f"{len(tasks)} tasks is small: the case for k={k_all} is that it is cheap and seldom worse, not that it is "
        "much better. Confirming more candidates does not keep helping: the probe, cross-validated on the same "
        f"{cfg['n']} rows per class, is itself a noisy judge, and each extra candidate is one more chance for it to "
        "prefer a worse one"
        + (f" (at k=all, a random-init twin is picked in {n_random} of {len(complete)} runs)." if n_random else "."),
        "- Test splits are small for some tasks ("
        + ", ".join(f"{t} {n_test[t]} rows" for t in tasks if n_test[t] < 100)
        + f"): one test row is {100 / min(n_test.values()):.1f} points of regret there. Candidates within a row or "
        "two of each other are a tie in all but name.",
        "- Seconds are measured on a shared, loaded 2-core machine with 1 torch/BLAS thread; they are "
        "comparable between k of one task (same process, same rows, the order of k rotated per seed), less so "
        "across tasks.",
        "",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines).rstrip() + "\n")
    return out, k_all, means, table


def candidates_from_truth(truths, tasks):
    names = set()
    for (t, _), tr in truths.items():
        if t in tasks:
            names |= {c["candidate"] for c in tr["candidates"]}
    return names


# ------------------------------------------------------------------ main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny smoke run: records and report in a temp dir")
    p.add_argument("--report-only", action="store_true", help="rebuild the section from the records; run nothing")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="draws of the training rows (default 0 1 2)")
    p.add_argument("--tasks", nargs="*", default=None, help="only these tasks (default: all installed)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="start no new (task, seed) after this many minutes; records written so far are kept")
    p.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (default 1: the machine is shared)")
    args = p.parse_args(argv)
    cfg = CONFIGS["quick" if args.quick else "full"]

    C.limit_threads(args.threads)
    started = C.utc_now()
    t0 = time.perf_counter()
    info = C.machine_info()
    info["threads_set"] = args.threads
    vers = C.versions()
    if args.quick:
        tmp = Path(tempfile.mkdtemp(prefix="sktransfer-confirm-top-k-"))
        root, out, cache = tmp / "records", tmp / "confirm_top_k.md", str(tmp / "cache")
    else:
        root, out, cache = RESULTS, OUT, CACHE
    run_file = root / "last_run.json"
    log(f"bench_confirm_top_k ({'quick' if args.quick else 'full'}): records in {root}, cache {cache}, "
        f"load {info.get('loadavg_start')}")
    if args.report_only:
        if not run_file.exists():
            raise SystemExit(f"--report-only: no run recorded in {run_file}; run the benchmark first.")
        run = json.loads(run_file.read_text())
        run["started"] = C._dt.datetime.fromisoformat(run["started"])
    else:
        seeds = [0] if args.quick else args.seeds
        n_run, n_done, cut = run_all(root, cfg, cache, seeds, args.max_minutes, args.tasks)
        log(f"{n_run} records written, {n_done} existed" + (" (cut by --max-minutes)" if cut else ""))
        try:
            info["loadavg_end"] = tuple(round(x, 2) for x in os.getloadavg())
        except OSError:
            pass
        info["cpu_pressure_end"] = C.cpu_pressure()
        command = "HF_HUB_OFFLINE=1 python benchmarks/bench_confirm_top_k.py " + shlex.join(
            sys.argv[1:] if argv is None else argv)
        run = dict(info=info, vers=vers, command=command.strip(), started=started,
                   elapsed=time.perf_counter() - t0)
        root.mkdir(parents=True, exist_ok=True)
        write_json(run_file, run)
    path, k_all, means, _ = write_report(root, out, cfg, run)
    log(f"k chosen on all tasks: {k_all}; " + ", ".join(f"k={k}: regret {m['regret']:.2f} pts, {m['fit_s']:.2f} s"
                                                        for k, m in means.items()))
    log(f"wrote {path} in {(time.perf_counter() - t0) / 60:.1f} min")


if __name__ == "__main__":
    main()

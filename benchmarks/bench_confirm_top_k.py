#!/usr/bin/env python
"""How many LogME-ranked candidates should ``BackboneSelector`` confirm with a probe? (issue 11 §4)

``BackboneSelector(confirm_top_k=k)`` scores every candidate with LogME, then
cross-validates the probe on the ``k`` best-scored ones. For each task of the
evaluation suite (``benchmarks/suite/tasks.py``), ``n`` labelled rows per class
are drawn from the pool, the selector runs with each ``k`` in
``{0, 1, 2, 3, all}``, and its pick is compared with the oracle (the candidate
whose probe is the most accurate on the task's fixed test split).

One JSON record per (task, seed, k) and one per (task, seed) with the
candidates' test accuracies, under ``benchmarks/results/confirm_top_k/``;
existing records are skipped (resumable). The prose of the section is in
``sections/confirm_top_k_notes.md``.

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_confirm_top_k.py               # records + section
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_confirm_top_k.py --quick       # smoke run in a temp dir
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_confirm_top_k.py --report-only # rebuild the section
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
for p in (HERE, HERE / "suite"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import numpy as np  # noqa: E402

import _common as C  # noqa: E402
import _harness as H  # noqa: E402

RESULTS = H.RESULTS / "confirm_top_k"
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

IMAGE, TEXT = H.IMAGE, H.TEXT
TV = "torchvision/mobilenet_v2"
log = H.log


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
                H.write_json(cpath, truth)
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
                H.write_json(path, rec)
                n_run += 1
                log(f"    k={k_label(k):>3s}: pick {pick:32s} acc {acc[pick]:.3f} (best {best:.3f}) "
                    f"fit {secs:5.2f} s (probes {rec['probe_s']:.2f} s)")
    return n_run, n_done, False


# ---------------------------------------------------------------- report
def load_records(root):
    recs, truths = {}, {}
    for f in root.glob("*/s*_candidates.json"):
        t = H.read_json(f)
        truths[(t["task"], t["seed"])] = t
    for f in root.glob("*/s*_k*.json"):
        r = H.read_json(f)
        recs[(r["task"], r["seed"], r["k"])] = r
    # Only (task, seed) pairs with every k: the comparison between k is paired.
    complete = sorted({(t, s) for (t, s, _) in recs if all((t, s, k_label(k)) in recs for k in KS) and (t, s) in truths},
                      key=lambda ts: (TASK_ORDER.index(ts[0]) if ts[0] in TASK_ORDER else 99, ts[1]))
    return recs, truths, complete


def per_task(recs, complete):
    """task -> k -> mean regret (points), fit s and probe s over the seeds run."""
    out = {}
    for task in dict.fromkeys(t for t, _ in complete):
        rs = {k_label(k): [recs[(task, s, k_label(k))] for t, s in complete if t == task] for k in KS}
        out[task] = {k: {"regret": 100 * float(np.mean([r["regret"] for r in v])),
                         "fit_s": float(np.mean([r["fit_s"] for r in v]))} for k, v in rs.items()}
    return out


def choose_k(table, tasks):
    """Smallest k whose mean regret over ``tasks`` is within TOLERANCE points of the best k's."""
    means = {k_label(k): float(np.mean([table[t][k_label(k)]["regret"] for t in tasks])) for k in KS}
    best = min(means.values())
    return next(k_label(k) for k in KS if means[k_label(k)] <= best + TOLERANCE + 1e-9), means


def report(root, out, cfg, run):
    recs, truths, complete = load_records(root)
    if not complete:
        raise SystemExit(f"No complete (task, seed) in {root}: run the benchmark first.")
    table = per_task(recs, complete)
    tasks = list(table)
    seeds = sorted({s for _, s in complete})
    modality = {t: truths[(t, s)]["modality"] for t, s in complete}
    text_tasks = [t for t in tasks if modality[t] == "text"]
    image_tasks = [t for t in tasks if t not in text_tasks]
    dates = sorted(r["date"] for r in recs.values())
    kl = [k_label(k) for k in KS]
    n_cands = {m: len({c["candidate"] for (t, _), tr in truths.items() if t in ts for c in tr["candidates"]})
               for m, ts in (("image", image_tasks), ("text", text_tasks))}

    rows = []
    for t in tasks:
        ss = [s for tt, s in complete if tt == t]
        best_acc = np.mean([max(c["test_acc"] for c in truths[(t, s)]["candidates"]) for s in ss])
        rows.append([t, truths[(t, ss[0])]["n_train"], H.fmt(best_acc, 3)] + [H.fmt(table[t][k]["regret"], 1) for k in kl]
                    + [H.fmt(table[t][k]["fit_s"], 2) for k in kl])
    per_task_md = H.md_table(["task", "n train", "best test acc"] + [f"k={k} regret" for k in kl] + [f"k={k} s" for k in kl],
                             rows, "lrr" + "r" * (2 * len(KS)))

    means = {}
    for k in kl:
        runs = [recs[(t, s, k)] for t, s in complete]
        means[k] = {"hit": float(np.mean([r["regret"] <= 1e-12 for r in runs])),
                    "regret": 100 * float(np.mean([r["regret"] for r in runs])),
                    "worst": 100 * float(np.max([r["regret"] for r in runs])),
                    "fit_s": float(np.mean([r["fit_s"] for r in runs])),
                    "probe_s": float(np.mean([r["probe_s"] for r in runs])), "n": len(runs)}
    summ = []
    for k in kl:
        m, m0 = means[k], means["0"]
        extra, gain = m["fit_s"] - m0["fit_s"], m0["regret"] - m["regret"]
        per_s = gain / extra if k != "0" and extra > 1e-6 else None
        diff = [recs[(t, s, "0")]["regret"] - recs[(t, s, k)]["regret"] for t, s in complete]
        wl = "–" if k == "0" else f"{sum(d > 1e-12 for d in diff)}/{sum(d < -1e-12 for d in diff)}"
        summ.append([k, f"{m['hit'] * 100:.0f}% ({round(m['hit'] * m['n'])}/{m['n']})", wl, H.fmt(m["regret"], 2),
                     H.fmt(m["worst"], 1), H.fmt(m["fit_s"], 2), H.fmt(m["probe_s"], 2),
                     "–" if k == "0" else f"{gain:+.2f}", "–" if per_s is None else f"{per_s:+.2f}"])
    per_k_md = H.md_table(["k", "pick is a best one", "runs better/worse than k=0", "mean regret (pts)",
                           "worst regret (pts)", "mean fit s", "mean probe s", "regret reduced vs k=0 (pts)",
                           "pts reduced per extra second"], summ, "lrrrrrrrr")
    # Cold cache only in each task's first seed: later draws share pool rows (and the test split) with it.
    first = {t: min(s for tt, s in complete if tt == t) for t in tasks}
    embed = [sum(c["embed_train_s"] for c in truths[(t, first[t])]["candidates"]) for t in tasks]
    embed_test = [sum(c["embed_test_s"] for c in truths[(t, first[t])]["candidates"]) for t in tasks]
    scale = (f"Embedding the training rows with every candidate (cold cache, each task's first seed): "
             f"{np.mean(embed):.1f} s per task on average (median {np.median(embed):.1f} s, range {min(embed):.1f}-"
             f"{max(embed):.1f} s), paid once whatever k; `k = all` adds "
             f"{(means['all']['fit_s'] - means['0']['fit_s']) / np.mean(embed) * 100:.0f}% to it on average. "
             f"Embedding the test splits for the oracle: {np.mean(embed_test):.1f} s per task more.")
    mod_rows = [[label, len(ts)] + [H.fmt(float(np.mean([table[t][k]["regret"] for t in ts])), 2) for k in kl]
                for label, ts in (("text", text_tasks), ("image", image_tasks)) if ts]
    ranks = []
    for t, s in complete:
        r = recs[(t, s, "all")]
        order = sorted(r["ranking"], key=lambda c: -c["score"])
        ranks.append(next(i + 1 for i, c in enumerate(order) if c["candidate"] in set(r["best"])))

    loto, chosen = [], []
    for t in tasks:
        kc, m = choose_k(table, [o for o in tasks if o != t])
        chosen.append(kc)
        loto.append([t, kc, " / ".join(H.fmt(m[k], 2) for k in kl), H.fmt(table[t][kc]["regret"], 1),
                     H.fmt(table[t]["0"]["regret"], 1), H.fmt(table[t][kc]["fit_s"], 2)])
    k_all, _ = choose_k(table, tasks)
    differs = [f"{t} ({table[t]['0']['regret']:.1f} → {table[t][k_all]['regret']:.1f})"
               for t in tasks if abs(table[t][k_all]["regret"] - table[t]["0"]["regret"]) > 1e-9]
    n_test = {t: truths[(t, s)]["n_test"] for t, s in complete}
    blocks = {
        "header": H.header(run),
        "n_recs": len(recs), "n_truths": len(truths), "date_first": dates[0], "date_last": dates[-1],
        "commits": ", ".join(sorted({r.get("git_commit", "?") for r in recs.values()})),
        "n_tasks": len(tasks), "text_tasks": f"{len(text_tasks)} text: {', '.join(text_tasks)}",
        "image_tasks": f"{len(image_tasks)} image: {', '.join(image_tasks)}", "n": cfg["n"],
        "seeds": ", ".join(map(str, seeds)), "n_image": n_cands["image"], "n_text": n_cands["text"],
        "image_size": cfg["image_size"], "max_length": cfg["max_length"], "cv": cfg["cv"], "tolerance": TOLERANCE,
        "per_task_table": per_task_md, "per_k_table": per_k_md, "scale": scale,
        "modality_table": H.md_table(["modality", "tasks"] + [f"k={k}" for k in kl], mod_rows, "lr" + "r" * len(KS)),
        "ranks": ", ".join(f"rank {i}: {ranks.count(i)}" for i in sorted(set(ranks))),
        "loto_table": H.md_table(["held-out task", "k chosen on the others", "others' mean regret k=" + "/".join(kl),
                                  "its regret at chosen k", "its regret at k=0", "its fit s"], loto, "lrlrrr"),
        "loto": (f"Leave-one-task-out: k chosen {', '.join(f'{c}× k={k}' for k, c in sorted({k: chosen.count(k) for k in chosen}.items()))}; "
                 f"mean regret of the held-out tasks at their chosen k: "
                 f"{np.mean([table[t][kc]['regret'] for t, kc in zip(tasks, chosen)]):.2f} points (k=0 everywhere: "
                 f"{means['0']['regret']:.2f}; best fixed k in hindsight: {min(v['regret'] for v in means.values()):.2f}). "
                 f"On all tasks the same rule gives **k={k_all}**."),
        "random_best": f"{sum(any('random' in b for b in recs[(t, s, '0')]['best']) for t, s in complete)} of {len(complete)}",
        "differs": f"Tasks where k={k_all} and k=0 differ (mean regret over seeds, points): {', '.join(differs) or 'none'}.",
        "small_tests": ", ".join(f"{t} {n_test[t]} rows" for t in tasks if n_test[t] < 100) or "none",
        "row_points": f"{100 / min(n_test.values()):.1f}",
    }
    H.write_section("confirm_top_k", blocks, out)
    return k_all, means


# ------------------------------------------------------------------ main
def main(argv=None):
    p = H.parser(__doc__, quick_help="tiny smoke run: records and report in a temp dir")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="draws of the training rows (default 0 1 2)")
    p.add_argument("--tasks", nargs="*", default=None, help="only these tasks (default: all installed)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="start no new (task, seed) after this many minutes; records written so far are kept")
    args = p.parse_args(argv)
    cfg = CONFIGS["quick" if args.quick else "full"]
    if args.quick:
        tmp = Path(tempfile.mkdtemp(prefix="sktransfer-confirm-top-k-"))
        root, out, cache = tmp / "records", tmp / "confirm_top_k.md", str(tmp / "cache")
    else:
        root, out, cache = RESULTS, None, CACHE
    if args.report_only:
        run = H.load_run(root / "last_run.json")
    else:
        run = H.start_run(args.threads)
        n_run, n_done, cut = run_all(root, cfg, cache, [0] if args.quick else args.seeds, args.max_minutes, args.tasks)
        log(f"{n_run} records written, {n_done} existed" + (" (cut by --max-minutes)" if cut else ""))
        run = H.finish_run(run, root / "last_run.json")
    k_all, means = report(root, out, cfg, run)
    log(f"k chosen on all tasks: {k_all}; " + ", ".join(f"k={k}: regret {m['regret']:.2f} pts, {m['fit_s']:.2f} s"
                                                        for k, m in means.items()))


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Fast CPU inference: ``PretrainedFeatureExtractor(backend=..., quantize=...)`` (issue 13, part 1).

Five arms on the real offline backbones (``all-MiniLM-L6-v2``,
``tf_efficientnet_lite0``): torch fp32, ONNX Runtime fp32 / int8, OpenVINO
fp32 / int8 (``ARMS``). Measured, each arm against torch fp32:

1. Throughput, in one process per thread count (``threads``: torch and the
   runtimes at the same count), the arms alternated (``_harness.alternate``):
   texts/s on BBC News snippets at 128 tokens, batch 32; img/s on
   Fashion-MNIST at the model's 224 px, batch 4 and 16. Ratio to torch fp32
   = median over repetitions of the paired time ratio. The first of these
   processes starts from an empty compiled-model cache: its ``fit`` times are
   the export / quantization times.
2. Cold load: one fresh process per compiled arm loads the model from the
   compiled-model cache (``compile_body``, first call in the process, runtime
   import included).
3. Quality: mean and min cosine to the torch fp32 embeddings, and the frozen
   probe (StandardScaler + LogisticRegression) on two text and two image tasks
   of the evaluation suite (``suite/tasks.py``: N per class drawn from the pool,
   the fixed test split, 3 seeds), as the paired difference to torch fp32.

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_fast_inference.py               # full run: ~12-15 min, idle 2-core CPU
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_fast_inference.py --quick       # smoke run (< 2 min), writes nothing in benchmarks/
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_fast_inference.py --report-only # section + plot from the latest record

Records: ``benchmarks/results/fast_inference/run_<date>.json`` (one per full
run; ``--report-only`` reads the latest, or ``--record``); prose:
``sections/fast_inference_notes.md``; plot ``fast_inference.png``.
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

RESULTS = H.RESULTS / "fast_inference"
PLOT = HERE / "fast_inference.png"
NAME = "fast_inference"
# name -> PretrainedFeatureExtractor parameters. The first is the reference of every ratio and difference.
ARMS = {
    "torch fp32": dict(backend="torch", quantize=None),
    "onnx fp32": dict(backend="onnx", quantize=None),
    "onnx int8": dict(backend="onnx", quantize="int8"),
    "openvino fp32": dict(backend="openvino", quantize=None),
    "openvino int8": dict(backend="openvino", quantize="int8"),
}
REF = "torch fp32"
MODELS = {"text": H.TEXT, "image": H.IMAGE}
SHORT = {"text": "MiniLM-L6", "image": "EfficientNet-Lite0"}
# The targets (RESULTS.md): int8 speed-up per modality, cosine, accuracy tolerance.
TARGET_SPEEDUP = {"text": 2.5, "image": 2.0}
TARGET_COSINE = 0.99
TARGET_POINTS = 0.5
CONFIGS = {
    "full": dict(
        threads=[2, 1], max_length=128, text_chars=1000, text_n=160, text_bs=32, text_reps=5,
        img_n=64, img_bs=[4, 16], img_reps=5, cold_arms=[a for a in ARMS if a != REF],
        arms=list(ARMS), tasks={"text": ["bbc_news", "sentiment_sentences"], "image": ["digits", "fashion_mnist"]},
        n=32, seeds=[0, 1, 2], test_cap=None, quality_threads=1, quality_jobs=2,
    ),
    "quick": dict(
        threads=[1], max_length=32, text_chars=200, text_n=8, text_bs=4, text_reps=1,
        img_n=4, img_bs=[4], img_reps=1, cold_arms=["onnx int8"],
        arms=["torch fp32", "onnx fp32", "onnx int8", "openvino fp32"],  # OpenVINO int8 (NNCF, slow to build): full run only
        tasks={"text": ["sentiment_sentences"], "image": ["digits"]},
        n=2, seeds=[0], test_cap=10, quality_threads=1, quality_jobs=2,
    ),
}
log = H.log


def int8(arms):
    return [a for a in arms if ARMS[a]["quantize"] == "int8"]


# ------------------------------------------------------------------ data
def throughput_data(modality, cfg):
    """The rows timed (and the calibration rows of the int8 arms): BBC News snippets spread over the
    five topics, or the first Fashion-MNIST test images (28 px grayscale, resized by the extractor)."""
    if modality == "text":
        from sktransfer.datasets import load_bbc_news

        data = load_bbc_news().data
        idx = np.linspace(0, len(data) - 1, cfg["text_n"]).round().astype(int)  # sorted by topic: all five stay
        return [data[i][: cfg["text_chars"]] for i in idx]
    from sktransfer.datasets import load_fashion_mnist

    return list(load_fashion_mnist(subset="test").data[: cfg["img_n"]])


def extractor(modality, arm, cfg, batch_size):
    from sktransfer import PretrainedFeatureExtractor

    kw = {"max_length": cfg["max_length"]} if modality == "text" else {}
    return PretrainedFeatureExtractor(MODELS[modality], batch_size=batch_size, cache=None, verbose=False, **ARMS[arm], **kw)


def use_cache_dir(spec):
    """Compiled models go to the run's own directory (``cache=None``: no embedding cache)."""
    import sktransfer

    sktransfer.set_config(cache_dir=spec["cache_dir"])


def draw_idx(split, n, seed):
    """Indices of ``tasks.draw(split, n, seed)`` (the same rows: same generator, same calls)."""
    rng = np.random.RandomState(10_000 + seed)
    idx = np.concatenate([rng.choice(p, min(n, len(p)), replace=False) for p in split.pool])
    return rng.permutation(idx)


# ------------------------------------------------------ 1. throughput (child)
def child_throughput(spec):
    """One thread count: fit every arm (timed: with an empty cache, the export / quantization), then time them."""
    import torch

    from sktransfer._runtime import runtime_stats

    use_cache_dir(spec)
    cfg, out = spec["cfg"], {"threads": spec["threads"], "torch_threads": torch.get_num_threads()}
    for modality in ("text", "image"):
        X = throughput_data(modality, cfg)
        bs0 = cfg["text_bs"] if modality == "text" else cfg["img_bs"][0]
        exts, fit = {}, {}
        for arm in cfg["arms"]:
            before = runtime_stats()
            t = time.perf_counter()
            exts[arm] = extractor(modality, arm, cfg, bs0).fit(X)
            after = runtime_stats()
            runner = exts[arm]._runner
            fit[arm] = {"fit_s": time.perf_counter() - t, **{k: after[k] - before[k] for k in after},
                        "runtime_threads": None if runner is None else runner.n_threads,
                        "file_bytes": None if runner is None or not runner.path else os.path.getsize(runner.path)}
            log(f"    {modality} {arm}: fit {fit[arm]['fit_s']:.1f} s {fit[arm]}")
        res = {"n": len(X), "fit": fit}
        if modality == "text":
            tok = exts[REF]._get_backbone()
            res["tokens_mean"] = float(np.mean([len(ids) for ids in tok_ids(tok, X, cfg["max_length"])]))
            settings = {str(cfg["text_bs"]): cfg["text_bs"]}
            reps = cfg["text_reps"]
        else:
            settings = {str(b): b for b in cfg["img_bs"]}
            reps = cfg["img_reps"]
        res["by_bs"] = {}
        for key, bs in settings.items():
            for e in exts.values():
                e.set_params(batch_size=bs)
                e.transform(X[:bs])  # warm-up: kernels are built per shape
            log(f"  {modality}, batch {bs}, {spec['threads']} thread(s):")
            times = H.alternate({a: (lambda e=e: e.transform(X)) for a, e in exts.items()}, reps, log)
            res["by_bs"][key] = {
                "times": times,
                "per_s": {a: len(X) / C.median(ts) for a, ts in times.items()},
                "ratio": {a: C.median([tr / ta for tr, ta in zip(times[REF], ts)]) for a, ts in times.items()},
            }
        out[modality] = res
    return out


def tok_ids(bb, texts, max_length):
    """Token ids per text after truncation at ``max_length`` (the backbone's own tokenizer)."""
    return bb.tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]


# ------------------------------------------------------- 2. cold load (child)
def child_cold(spec):
    """A fresh process: load the backbone, then the compiled model from the cache (the first
    ``compile_body`` of the process: runtime import, file read, session / compile)."""
    t0 = time.perf_counter()
    from sktransfer._runtime import compile_body, runtime_stats
    from sktransfer.backbones import load_backbone

    use_cache_dir(spec)
    cfg, modality, arm = spec["cfg"], spec["modality"], spec["arm"]
    X = throughput_data(modality, cfg)
    t1 = time.perf_counter()
    bb = load_backbone(MODELS[modality])
    bb.fingerprint()
    t2 = time.perf_counter()
    kw = {"max_length": cfg["max_length"]} if modality == "text" else {}
    runner = compile_body(bb, ARMS[arm]["backend"], ARMS[arm]["quantize"], calibration=X, **kw)
    t3 = time.perf_counter()
    return {"modality": modality, "arm": arm, "import_s": t1 - t0, "backbone_s": t2 - t1, "load_s": t3 - t2,
            "built": bool(runner.built), "stats": runtime_stats()}


# --------------------------------------------------------- 3. quality (child)
def probe():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))


def child_quality(spec):
    """Every arm on the tasks of one modality: cosine to torch fp32, probe accuracy per seed."""
    import warnings

    import tasks as T

    use_cache_dir(spec)
    warnings.filterwarnings("ignore")
    cfg, modality, out = spec["cfg"], spec["modality"], {}
    for task in cfg["tasks"][modality]:
        split = T.load_split(task)
        draws = {s: draw_idx(split, cfg["n"], s) for s in cfg["seeds"]}
        assert all(np.array_equal(split.y_all[draws[s]], T.draw(split, cfg["n"], s)[1]) for s in cfg["seeds"])
        rows = np.unique(np.concatenate(list(draws.values())))
        pos = {int(i): j for j, i in enumerate(rows)}
        te = np.arange(len(split.y_test))
        if cfg["test_cap"]:
            te = np.linspace(0, len(te) - 1, cfg["test_cap"]).round().astype(int)
        X_rows, X_test, y_test = [split.X_all[i] for i in rows], [split.X_test[i] for i in te], split.y_test[te]
        X_fit = [split.X_all[i] for i in draws[cfg["seeds"][0]]]  # calibration: the first seed's training rows
        bs = 32 if modality == "text" else 16
        emb, res = {}, {"n_rows": len(rows), "n_test": len(te), "n_train": {str(s): len(d) for s, d in draws.items()},
                        "arms": {}}
        for arm in cfg["arms"]:
            t = time.perf_counter()
            ext = extractor(modality, arm, cfg, bs).fit(X_fit)
            t1 = time.perf_counter()
            E = np.vstack([ext.transform(X_rows), ext.transform(X_test)])
            t2 = time.perf_counter()
            emb[arm] = E
            accs = {}
            for s, d in draws.items():
                Z = E[[pos[int(i)] for i in d]]
                accs[str(s)] = float(probe().fit(Z, split.y_all[d]).score(E[len(rows):], y_test))
            ref = emb[REF]
            cos = np.sum(E * ref, 1) / (np.linalg.norm(E, axis=1) * np.linalg.norm(ref, axis=1) + 1e-12)
            res["arms"][arm] = {"acc": accs, "cos_mean": float(cos.mean()), "cos_min": float(cos.min()),
                                "fit_s": t1 - t, "embed_s": t2 - t1, "n_embedded": len(E)}
            log(f"    {task} {arm}: cos {cos.mean():.4f} (min {cos.min():.4f}), acc "
                + ", ".join(f"{a:.3f}" for a in accs.values()) + f", fit {t1 - t:.1f} s, embed {t2 - t1:.1f} s")
        out[task] = res
    return {"tasks": out}


# ------------------------------------------------------------------ run
def child_result(r):
    """A child's measurements, its process figures (peak RSS, wall time) under ``process``."""
    r["process"] = {"ru_maxrss": r.pop("ru_maxrss"), "wall_s": r.pop("process_s")}
    return r


def measure(cfg, args):
    script = Path(__file__).resolve()
    cache_dir = tempfile.mkdtemp(prefix="skt-bench-fast-")  # an empty compiled-model cache
    base = {"cfg": cfg, "cache_dir": cache_dir}
    try:
        res = {"arms": cfg["arms"], "throughput": {}, "cold": [], "quality": {}, "quality_process": {}}
        for t in cfg["threads"]:  # the first one builds every compiled model
            log(f"throughput, {t} thread(s) ...")
            res["throughput"][str(t)] = child_result(H.run_child(script, {**base, "kind": "throughput", "label": f"{t} thr", "threads": t}))
        log("cold loads ...")
        for modality in MODELS:
            for arm in cfg["cold_arms"]:
                spec = {**base, "kind": "cold", "label": f"cold {modality} {arm}", "modality": modality, "arm": arm,
                        "threads": cfg["threads"][0]}
                res["cold"].append(child_result(H.run_child(script, spec)))
        log("quality ...")
        specs = [{**base, "kind": "quality", "label": f"quality {m}", "modality": m, "threads": cfg["quality_threads"]}
                 for m in MODELS]
        for spec, r in zip(specs, H.run_children(script, specs, cfg["quality_jobs"])):
            r = child_result(r)
            res["quality"][spec["modality"]], res["quality_process"][spec["modality"]] = r["tasks"], r["process"]
        res["cache_bytes"] = sum(f.stat().st_size for f in Path(cache_dir).rglob("*") if f.is_file())
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    return res


# ------------------------------------------------------------------ report
def verdict(ok):
    return "met" if ok else "**missed**"


def acc_diff(q, task, arm):
    """Paired differences arm - torch fp32 over seeds, in points."""
    a, r = q[task]["arms"][arm]["acc"], q[task]["arms"][REF]["acc"]
    return [100 * (a[s] - r[s]) for s in r]


def best_int8(res, modality):
    """The faster int8 arm at the most threads and the largest batch size."""
    th = res["throughput"][str(max(int(t) for t in res["throughput"]))][modality]["by_bs"]
    bs = max(th, key=int)
    return max(int8(res["arms"]), key=lambda a: th[bs]["ratio"][a])


def claims(res):
    out = []
    for m in MODELS:
        arm = best_int8(res, m)
        for t, thr in sorted(res["throughput"].items(), key=lambda kv: -int(kv[0])):
            for bs, r in thr[m]["by_bs"].items():
                v = max(r["ratio"][a] for a in int8(res["arms"]))
                names = " / ".join(int8(res["arms"]))
                out.append((f"{SHORT[m]} int8 (best of {names}) / torch fp32, batch {bs}, {t} thread(s)",
                            f"{v:.2f}x", f">= {TARGET_SPEEDUP[m]}x", v >= TARGET_SPEEDUP[m]))
        q = res["quality"][m]
        cos = min(q[task]["arms"][arm]["cos_mean"] for task in q)
        out.append((f"{SHORT[m]} {arm}: mean cosine to torch fp32 (lowest over {', '.join(q)})", f"{cos:.4f}",
                    f">= {TARGET_COSINE}", cos >= TARGET_COSINE))
        for task in q:
            d, s = H.mean_std(acc_diff(q, task, arm))
            out.append((f"{SHORT[m]} {arm}: probe accuracy - torch fp32, {task} ({len(q[task]['arms'][REF]['acc'])} seeds)",
                        f"{d:+.2f} ± {s:.2f} pts", f"within {TARGET_POINTS} pts", abs(d) <= TARGET_POINTS))
    return out


def throughput_rows(res, m):
    rows = []
    keys = [(t, bs) for t in sorted(res["throughput"], key=int) for bs in sorted(res["throughput"][t][m]["by_bs"], key=int)]
    for arm in res["arms"]:
        row = [arm]
        for t, bs in keys:
            r = res["throughput"][t][m]["by_bs"][bs]
            row.append(f"{r['per_s'][arm]:.1f} ({r['ratio'][arm]:.2f}x)")
        rows.append(row)
    heads = ["Arm"] + [f"{t} thread(s), batch {bs}" for t, bs in keys]
    return H.md_table(heads, rows, "l" + "r" * len(keys))


def build_rows(res, m, cfg):
    first = res["throughput"][str(cfg["threads"][0])][m]["fit"]  # the process that started from an empty cache
    cold = {c["arm"]: c for c in res["cold"] if c["modality"] == m}
    rows = []
    for arm in res["arms"]:
        f, c = first[arm], cold.get(arm)
        what = ("backbone load (reference)" if arm == REF else
                ", ".join(f"{v} {k}" for k, v in f.items() if k in ("exports", "builds", "loads") and v))
        rows.append([arm, f"{f['fit_s']:.1f}", what,
                     "–" if f["file_bytes"] is None else f"{f['file_bytes'] / 2**20:.1f}",
                     "–" if c is None else f"{c['load_s']:.2f}" + (" (**rebuilt**)" if c["built"] else ""),
                     "–" if c is None else f"{c['backbone_s']:.1f}",
                     "–" if f["runtime_threads"] is None else str(f["runtime_threads"])])
    return H.md_table(["Arm", "first fit (s), empty cache", "what the fit did", "compiled file (MiB)",
                       "cold load from cache (s)", "backbone load in that process (s)", "runtime threads"], rows, "lrlrrrr")


def quality_rows(res, m):
    q, rows = res["quality"][m], []
    for task in q:
        for arm in res["arms"]:
            a = q[task]["arms"][arm]
            acc_m, acc_s = H.mean_std(list(a["acc"].values()))
            d, s = H.mean_std(acc_diff(q, task, arm))
            rows.append([task, arm, f"{a['cos_mean']:.4f}", f"{a['cos_min']:.4f}", H.pm(acc_m, acc_s),
                         "–" if arm == REF else f"{d:+.2f} ± {s:.2f}",
                         "" if arm == REF else verdict(abs(d) <= TARGET_POINTS and a["cos_mean"] >= TARGET_COSINE),
                         f"{a['fit_s']:.1f}"])
    return H.md_table(["Task", "Arm", "mean cosine", "min cosine", "probe accuracy (%)", "Δ vs torch fp32 (pts, paired)",
                       f"cosine >= {TARGET_COSINE} and |Δ| <= {TARGET_POINTS}", "fit (s)"], rows, "llrrrrlr")


def findings(res):
    """Generated sentences: what each target came to, from the numbers."""
    out = []
    for m in MODELS:
        thr = res["throughput"][sorted(res["throughput"], key=int)[-1]][m]["by_bs"]
        bs = max(thr, key=int)
        best = max(res["arms"], key=lambda a: thr[bs]["ratio"][a])
        arm = best_int8(res, m)
        v = thr[bs]["ratio"][arm]
        q = res["quality"][m]
        ds = {task: H.mean_std(acc_diff(q, task, arm))[0] for task in q}
        out.append(f"{SHORT[m]}: the fastest arm is **{best}** ({thr[bs]['ratio'][best]:.2f}x torch fp32 at batch {bs}); "
                   f"the faster int8 arm, {arm}, reaches {v:.2f}x "
                   + ("(target met)" if v >= TARGET_SPEEDUP[m] else f"(target {TARGET_SPEEDUP[m]}x missed by {TARGET_SPEEDUP[m] - v:.2f}x)")
                   + ", with probe accuracy " + ", ".join(f"{d:+.2f} pts on {t}" for t, d in ds.items())
                   + " and mean cosine " + ", ".join(f"{q[t]['arms'][arm]['cos_mean']:.4f}" for t in q) + ".")
        fp = [a for a in res["arms"] if a != REF and a not in int8(res["arms"])]
        out.append(f"{SHORT[m]} fp32 runtimes: " + ", ".join(f"{a} {thr[bs]['ratio'][a]:.2f}x" for a in fp)
                   + "; lowest min cosine of an fp32 arm: "
                   + f"{min(q[t]['arms'][a]['cos_min'] for t in q for a in fp):.5f}.")
    ts = sorted(res["throughput"], key=int)
    same = [(t, thr["torch_threads"], sorted({f["runtime_threads"] for m in MODELS for f in thr[m]["fit"].values()
                                             if f["runtime_threads"] is not None})) for t, thr in res["throughput"].items()]
    out.append("Threads per throughput process (torch / compiled runtimes): "
               + "; ".join(f"{t} set: {tt} / {', '.join(map(str, rt))}" + ("" if rt == [tt] == [int(t)] else " (**differ**)")
                           for t, tt, rt in same) + ".")
    if len(ts) > 1:
        for m in MODELS:
            lo, hi = res["throughput"][ts[0]][m]["by_bs"], res["throughput"][ts[-1]][m]["by_bs"]
            bs = max(lo, key=int)
            out.append(f"{SHORT[m]}, batch {bs}, {ts[-1]} vs {ts[0]} thread(s): "
                       + ", ".join(f"{a} {hi[bs]['per_s'][a] / lo[bs]['per_s'][a]:.2f}x" for a in res["arms"]) + " (scaling).")
    return "\n".join(f"- {s}" for s in out)


def plot(res, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(res["arms"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), dpi=110)
    ax = axes[0]
    groups = [(m, t, bs) for m in MODELS for t in sorted(res["throughput"], key=int)
              for bs in sorted(res["throughput"][t][m]["by_bs"], key=int)]
    w = 0.8 / len(groups)
    for g, (m, t, bs) in enumerate(groups):
        r = res["throughput"][t][m]["by_bs"][bs]["ratio"]
        ax.bar(np.arange(len(arms)) + (g - (len(groups) - 1) / 2) * w, [r[a] for a in arms], w,
               label=f"{SHORT[m]}, batch {bs}, {t} thr")
    for m, ls in zip(MODELS, ("--", ":")):
        ax.axhline(TARGET_SPEEDUP[m], ls=ls, color="gray", lw=1)
        ax.text(len(arms) - 0.5, TARGET_SPEEDUP[m], f"{SHORT[m]} int8 target", fontsize=7, ha="right", va="bottom")
    ax.axhline(1, color="k", lw=0.8)
    ax.set_xticks(range(len(arms)))
    ax.set_xticklabels(arms, fontsize=8)
    ax.set_ylabel("throughput / torch fp32 (paired, median)")
    ax.set_title("Throughput ratio to torch fp32", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    ax = axes[1]
    tasks = [(m, t) for m in MODELS for t in res["quality"][m]]
    others = arms[1:]
    w = 0.8 / len(tasks)
    for g, (m, task) in enumerate(tasks):
        q = res["quality"][m]
        vals = [H.mean_std(acc_diff(q, task, a)) for a in others]
        xs = np.arange(len(others)) + (g - (len(tasks) - 1) / 2) * w
        ax.bar(xs, [v[0] for v in vals], w, yerr=[v[1] for v in vals], capsize=2, label=task)
        for x, a, v in zip(xs, others, vals):
            ax.text(x, v[0] + (v[1] if v[0] >= 0 else -v[1]), f"{q[task]['arms'][a]['cos_mean']:.3f}", fontsize=6,
                    rotation=90, ha="center", va="bottom" if v[0] >= 0 else "top")
    ax.axhspan(-TARGET_POINTS, TARGET_POINTS, color="green", alpha=0.08)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(range(len(others)))
    ax.set_xticklabels(others, fontsize=8)
    ax.set_ylabel("probe accuracy - torch fp32 (points, paired)")
    ax.set_title(f"Accuracy difference (band: ±{TARGET_POINTS} pts); labels: mean cosine", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    log(f"wrote {path}")


def report(res, run, cfg, out=None, plot_path=PLOT):
    q = res["quality"]
    n_test = {t: r["n_test"] for m in q for t, r in q[m].items()}
    blocks = {
        "header": H.header(run),
        "summary": H.md_table(["Target", "Measured", "Target value", "Result"],
                              [[c, v, t, verdict(ok)] for c, v, t, ok in claims(res)], "lrll"),
        "findings": findings(res),
        "text_table": throughput_rows(res, "text"),
        "image_table": throughput_rows(res, "image"),
        "text_build": build_rows(res, "text", cfg),
        "image_build": build_rows(res, "image", cfg),
        "text_quality": quality_rows(res, "text"),
        "image_quality": quality_rows(res, "image"),
        "text_n": res["throughput"][next(iter(res["throughput"]))]["text"]["n"],
        "tokens_mean": f"{res['throughput'][next(iter(res['throughput']))]['text']['tokens_mean']:.0f}",
        "img_n": res["throughput"][next(iter(res["throughput"]))]["image"]["n"],
        "max_length": cfg["max_length"], "text_chars": cfg["text_chars"], "text_bs": cfg["text_bs"],
        "img_bs": " and ".join(map(str, cfg["img_bs"])), "text_reps": cfg["text_reps"], "img_reps": cfg["img_reps"],
        "threads": " and ".join(map(str, sorted(cfg["threads"]))), "build_threads": cfg["threads"][0],
        "n": cfg["n"], "seeds": len(cfg["seeds"]),
        "tasks": "; ".join(f"{t} ({n_test[t]} test rows)" for t in n_test),
        "cache_mib": f"{res['cache_bytes'] / 2**20:.0f}",
        "plot": f"![throughput and accuracy per arm]({os.path.relpath(plot_path, HERE)})",
    }
    H.write_section(NAME, blocks, out)
    plot(res, plot_path)


# ------------------------------------------------------------------ main
def latest_record():
    recs = sorted(RESULTS.glob("run_*.json"))
    if not recs:
        raise SystemExit(f"--report-only: no record in {RESULTS}; run the benchmark first.")
    return recs[-1]


def main(argv=None):
    p = H.parser(__doc__, threads=None)
    p.add_argument("--record", default=None,
                   help="record to read (--report-only; default: the latest) or to write (default: results/fast_inference/run_<date>.json; "
                        "with --quick: write the quick record there)")
    p.add_argument("--out", default=None, help="section file to write (default sections/fast_inference.md; the plot goes next to it)")
    args = p.parse_args(argv)
    if args._child:
        H.quiet()
        return H.child_main(args._child, {"throughput": child_throughput, "cold": child_cold, "quality": child_quality})
    if args.report_only:
        rec = H.read_json(args.record or latest_record())
        run = dict(rec["run"], started=dt.datetime.fromisoformat(str(rec["run"]["started"])))
        cfg, res = rec["cfg"], rec["res"]
    else:
        cfg = dict(CONFIGS["quick" if args.quick else "full"])
        run = H.start_run(args.threads, ["onnx", "onnxruntime", "openvino", "nncf", "numpy"])
        res = measure(cfg, args)
        run = H.finish_run(run)
        record = args.record or (None if args.quick else RESULTS / f"run_{run['started']:%Y%m%d-%H%M}.json")
        if record:
            H.write_json(record, {"cfg": cfg, "res": res, "run": run})
            log(f"wrote {record}")
    out = args.out
    if args.quick and out is None:  # a quick run still renders, but outside benchmarks/
        out = os.path.join(tempfile.mkdtemp(prefix="skt-bench-fast-quick-"), f"{NAME}.md")
    plot_path = Path(out).with_suffix(".png") if out else PLOT
    report(res, run, cfg, out, plot_path)
    if args.quick:
        log(f"quick run done in {run['elapsed']:.0f} s (section and plot in {Path(out or '').parent})")


if __name__ == "__main__":
    sys.exit(main())

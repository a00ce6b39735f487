#!/usr/bin/env python
"""Fast inference, the rest of issue 13: long texts, compact embeddings, exported trained models.

``bench_fast_inference.py`` measures the extractor's backends (part 1 of the
issue). This script measures the other targets, in three parts (``--part``;
each part writes its own record and can be run alone):

``long`` (part 3 of the issue)
    ``PretrainedFeatureExtractor("sentence-transformers/all-MiniLM-L6-v2",
    long_texts=...)``: ``"truncate"`` / ``"chunk_mean"`` / ``"chunk_max"`` on
    the long-document tasks of the suite, with their **full** texts (the
    suite cuts texts at 1,000 characters; here the same rows, split and draws,
    uncut): BBC News articles and the convention speeches. Frozen probe
    (StandardScaler + LogisticRegression) per seed: accuracy, the paired
    difference to truncation, and the embedding time ratio to truncation (the
    rows are embedded in blocks, the arms alternated block by block with
    ``_harness.alternate``: every row is embedded once per arm, and the times
    of a block are a pair).
``compact`` (part 4)
    ``truncate_dim`` in (None, 256, 128, 64) x ``precision`` in ("float32",
    "float16", "int8", "binary") on two text and two image tasks: one temporary
    embedding cache per task, shared by every setting (the cache stores the
    full float32 rows, so only the first setting runs the backbone); for each
    seed and setting, the extractor is fitted on that seed's training rows
    (the int8 ranges are learned there), then the probe. Binary codes are
    unpacked to 0/1 features for the probe (packed bytes are not features).
    Reported: accuracy paired to full float32, and bytes per row.
``trained`` / ``trained_extra`` (part 2)
    ``FineTunedClassifier`` (text: MiniLM ``strategy="partial"``; image:
    EfficientNet-Lite0 ``strategy="linear_probe"``), then ``LoRAClassifier``
    and ``FewShotClassifier`` on a text task (``trained_extra``): fitted once
    with ``inference_backend="openvino", inference_quantize="int8"`` (the
    calibrated model is built at fit, on the training rows), then
    ``set_params`` (no refit) switches between torch, ONNX Runtime fp32 / int8
    (int8: text only, dynamic) and OpenVINO fp32 / int8; ``predict`` on the
    test rows, the arms alternated: label agreement with torch and the predict
    time ratio to torch.

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_inference_extras.py --part long      # then compact, trained, trained_extra
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_inference_extras.py --quick         # smoke run of every part, writes nothing
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_inference_extras.py --report-only   # section from the latest record of each part

Records: ``benchmarks/results/inference_extras/run_<date>_<part>.json``;
prose: ``sections/inference_extras_notes.md``; plot ``inference_extras.png``.
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

NAME = "inference_extras"
RESULTS = H.RESULTS / NAME
PLOT = HERE / f"{NAME}.png"
PARTS = ("long", "compact", "trained", "trained_extra")
log = H.log
TARGET_AGREE = 0.995
TARGET_SPEEDUP = 2.0
LONG_ARMS = ("truncate", "chunk_mean", "chunk_max")
DIMS = (None, 256, 128, 64)
PRECISIONS = ("float32", "float16", "int8", "binary")
SHORT_PREC = {"float32": "f32", "float16": "f16", "int8": "int8", "binary": "bin"}
# Fitted with the calibrated setting (built at fit on the training rows); the others by set_params.
FIT_SETTING = ("openvino", "int8")
TRAINED_ARMS = {
    "torch": ("torch", None), "onnx fp32": ("onnx", None), "onnx int8": ("onnx", "int8"),
    "openvino fp32": ("openvino", None), "openvino int8": ("openvino", "int8"),
}

# Sizes: the machine is a shared 2-core CPU; a full BBC pass with chunking costs
# about 2.2 forwards of 256 tokens per article and arm. Test splits are
# subsampled deterministically (``test_per_class``: the first rows of each class
# in the fixed test split's order; None: all of it).
CONFIGS = {
    "full": {
        "long": dict(tasks={"bbc_news": dict(n=8, test_per_class=10), "convention_speeches": dict(n=8, test_per_class=10)},
                     seeds=[0, 1, 2], blocks=6, batch_size=32),
        "compact": dict(tasks={"sentiment_sentences": dict(n=32, test_per_class=None, max_length=128),
                               "bbc_news": dict(n=16, test_per_class=20, max_length=128),
                               "digits": dict(n=16, test_per_class=20), "fashion_mnist": dict(n=16, test_per_class=20)},
                        seeds=[0, 1, 2]),
        "trained": dict(models={"text": dict(task="sentiment_sentences", n=32, test_per_class=None, estimator="FineTunedClassifier",
                                             params=dict(strategy="partial", unfreeze_last=2, lr=3e-2, backbone_lr_ratio=0.003,
                                                         batch_size=8, warmup=0.1, weight_decay=0.01, max_epochs=3, max_length=128)),
                                "image": dict(task="digits", n=32, test_per_class=20, estimator="FineTunedClassifier",
                                              params=dict(strategy="linear_probe", lr=3e-2, batch_size=16, warmup=0.1,
                                                          weight_decay=0.01, max_epochs=2, image_size=128, augment=False))},
                        reps=3, seed=0),
        "trained_extra": dict(models={"lora": dict(task="sentiment_sentences", n=32, test_per_class=None, estimator="LoRAClassifier",
                                                   params=dict(r=8, max_epochs=3, batch_size=8, max_length=128)),
                                      "fewshot": dict(task="sentiment_sentences", n=32, test_per_class=None, estimator="FewShotClassifier",
                                                      params=dict(n_pairs=128, max_epochs=1, batch_size=16, max_length=128))},
                              reps=3, seed=0),
    },
    "quick": {
        "long": dict(tasks={"bbc_news": dict(n=2, test_per_class=2)}, seeds=[0], blocks=2, batch_size=8),
        "compact": dict(tasks={"sentiment_sentences": dict(n=4, test_per_class=5, max_length=32),
                               "digits": dict(n=3, test_per_class=2)}, seeds=[0]),
        "trained": dict(models={"text": dict(task="sentiment_sentences", n=4, test_per_class=5, estimator="FineTunedClassifier",
                                             params=dict(strategy="linear_probe", max_epochs=1, batch_size=8, max_length=32))},
                        reps=1, seed=0),
        "trained_extra": dict(models={"fewshot": dict(task="sentiment_sentences", n=4, test_per_class=5, estimator="FewShotClassifier",
                                                      params=dict(n_pairs=8, max_epochs=1, batch_size=8, max_length=32))},
                              reps=1, seed=0),
    },
}


# ------------------------------------------------------------------ data
def draw_idx(split, n, seed):
    """Indices of ``tasks.draw(split, n, seed)`` (the same rows: same generator, same calls)."""
    rng = np.random.RandomState(10_000 + seed)
    idx = np.concatenate([rng.choice(p, min(n, len(p)), replace=False) for p in split.pool])
    return rng.permutation(idx)


def sub_test(y_test, per_class):
    """Positions in the test split: the first ``per_class`` of each class (None: all), in split order."""
    if per_class is None:
        return np.arange(len(y_test))
    return np.sort(np.concatenate([np.flatnonzero(y_test == k)[:per_class] for k in np.unique(y_test)]))


def full_texts(name):
    """The task's rows (``X_all`` of ``tasks.load_split``) with their full, uncut texts.

    The suite cuts texts at ``MAX_CHARS`` before de-duplicating and splitting;
    this repeats the de-duplication to find which raw row each kept row is, and
    checks that the cut full texts are the suite's rows."""
    import tasks as T

    split = T.load_split(name)
    X, y, _ = T.LOADERS[name]()
    y = np.asarray(y)
    cut = [str(t)[: T.MAX_CHARS] for t in X]
    first, labels = {}, {}
    for i, x in enumerate(cut):  # as tasks._drop_duplicates
        k = T._content_key(x)
        first.setdefault(k, i)
        labels.setdefault(k, set()).add(y[i].item() if hasattr(y[i], "item") else y[i])
    keep = sorted(i for k, i in first.items() if len(labels[k]) == 1)
    full = [str(X[i]) for i in keep]
    assert [t[: T.MAX_CHARS] for t in full] == list(split.X_all) and np.array_equal(y[keep], split.y_all), name
    return split, full


def probe():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))


def use_cache_dir(path):
    """Compiled models go to the run's own temporary directory."""
    import sktransfer

    sktransfer.set_config(cache_dir=path)


# ------------------------------------------------------- 1. long texts
def measure_long(cfg, quick):
    import tasks as T

    from sktransfer import PretrainedFeatureExtractor

    out = {}
    for task, tc in cfg["tasks"].items():
        split, full = full_texts(task)
        draws = {s: draw_idx(split, tc["n"], s) for s in cfg["seeds"]}
        assert all(np.array_equal(split.y_all[draws[s]], T.draw(split, tc["n"], s)[1]) for s in cfg["seeds"])
        all_test = _test_rows(split)  # positions in X_all of the fixed test split
        te = sub_test(split.y_test, tc["test_per_class"])
        test_pos = all_test[te]
        rows = np.unique(np.concatenate([*draws.values(), test_pos]))
        rows = rows[np.random.RandomState(0).permutation(len(rows))]  # blocks mix long and short texts
        pos = {int(i): j for j, i in enumerate(rows)}
        X = [full[i] for i in rows]
        exts = {a: PretrainedFeatureExtractor(H.TEXT, long_texts=a, batch_size=cfg["batch_size"], cache=None, verbose=False).fit(X[:2])
                for a in LONG_ARMS}
        bb = exts["truncate"]._get_backbone()
        n_tok = np.array([len(ids) for ids in bb.tokenizer(X, truncation=False)["input_ids"]])
        windows, owner = bb.chunk(X, None, exts["chunk_mean"].chunk_overlap)
        n_win = np.bincount(owner, minlength=len(X))
        limit = int(max(len(w["input_ids"]) for w in windows))
        blocks = np.array_split(np.arange(len(X)), cfg["blocks"])
        emb = {a: np.empty((len(X), 384), np.float32) for a in LONG_ARMS}
        nxt = {a: iter(blocks) for a in LONG_ARMS}

        def arm(a):
            def run():
                b = next(nxt[a])
                emb[a][b] = exts[a].transform([X[i] for i in b])
            return run

        log(f"  {task}: {len(X)} rows ({len(test_pos)} test), {n_tok.mean():.0f} tokens on average, "
            f"{n_win.sum()} windows of <= {limit} tokens; {cfg['blocks']} blocks, arms alternated")
        times = H.alternate({a: arm(a) for a in LONG_ARMS}, cfg["blocks"], log)
        y_test = split.y_all[test_pos]
        res = {"n_rows": len(X), "n_test": len(test_pos), "n_test_full": len(all_test), "n": tc["n"],
               "test_per_class": tc["test_per_class"], "n_train": {str(s): len(d) for s, d in draws.items()},
               "chars_mean": float(np.mean([len(t) for t in X])), "tokens_mean": float(n_tok.mean()),
               "tokens_median": float(np.median(n_tok)), "frac_over": float(np.mean(n_win > 1)),
               "windows_mean": float(n_win.mean()), "window_tokens": limit,
               "block_sizes": [len(b) for b in blocks], "times": times, "arms": {}}
        for a in LONG_ARMS:
            accs = {}
            for s, d in draws.items():
                Z = emb[a][[pos[int(i)] for i in d]]
                accs[str(s)] = float(probe().fit(Z, split.y_all[d]).score(emb[a][[pos[int(i)] for i in test_pos]], y_test))
            ref = times["truncate"]
            res["arms"][a] = {"acc": accs, "embed_s": float(np.sum(times[a])),
                              "time_ratio": float(np.sum(times[a]) / np.sum(ref)),
                              "time_ratio_median": C.median([t / r for t, r in zip(times[a], ref)])}
            log(f"    {a}: acc " + ", ".join(f"{v:.3f}" for v in accs.values())
                + f", embed {np.sum(times[a]):.0f} s ({res['arms'][a]['time_ratio']:.2f}x truncate)")
        out[task] = res
    return {"tasks": out}


def _test_rows(split):
    """Positions in ``X_all`` of the fixed test split's rows (in the split's order)."""
    import tasks as T

    where = {T._content_key(x): i for i, x in enumerate(split.X_all)}
    rows = np.array([where[T._content_key(x)] for x in split.X_test])
    assert np.array_equal(split.y_all[rows], split.y_test)
    return rows


# ------------------------------------------------ 2. compact embeddings
def unpack_binary(Z, dim):
    """Packed sign bits (``precision="binary"``: int8 = byte - 128) -> 0/1 features."""
    return np.unpackbits((Z.astype(np.int16) + 128).astype(np.uint8), axis=1)[:, :dim].astype(np.float32)


def measure_compact(cfg, quick):
    import tasks as T

    from sktransfer import PretrainedFeatureExtractor

    out = {}
    for task, tc in cfg["tasks"].items():
        split = T.load_split(task)
        modality = T.TASKS[task].modality
        draws = {s: draw_idx(split, tc["n"], s) for s in cfg["seeds"]}
        te = sub_test(split.y_test, tc["test_per_class"])
        X_test, y_test = [split.X_test[i] for i in te], split.y_test[te]
        kw = {"max_length": tc["max_length"]} if modality == "text" else {}
        cache = tempfile.mkdtemp(prefix="skt-bench-extras-cache-")
        res = {"n_test": len(te), "n_test_full": len(split.y_test), "n": tc["n"], "test_per_class": tc["test_per_class"],
               "n_train": {str(s): len(d) for s, d in draws.items()}, "settings": {}, **kw}
        try:
            t0 = time.perf_counter()
            for dim in DIMS:
                for prec in PRECISIONS:
                    key = f"{dim}/{prec}"
                    accs, nbytes, cols = {}, None, None
                    for s, d in draws.items():
                        X_tr, y_tr = [split.X_all[i] for i in d], split.y_all[d]
                        ext = PretrainedFeatureExtractor(T.TASKS[task].backbone, truncate_dim=dim, precision=prec,
                                                         cache=cache, verbose=False, **kw).fit(X_tr)
                        Z_tr, Z_te = ext.transform(X_tr), ext.transform(X_test)
                        nbytes, cols, full_dim = Z_te.nbytes / len(Z_te), Z_te.shape[1], ext.embedding_dim_
                        bad = [np.flatnonzero(~np.isfinite(Z.astype(np.float32)).all(1)).tolist() for Z in (Z_tr, Z_te)]
                        if bad[0] or bad[1]:  # a library fault, not a result: stop with what is needed to reproduce it
                            raise RuntimeError(f"{task} {key} seed {s}: non-finite embeddings in training rows {bad[0][:10]} "
                                               f"and test rows {bad[1][:10]} (cache {cache}; first training text "
                                               f"{X_tr[bad[0][0]] if bad[0] and modality == 'text' else None!r})")
                        if prec == "binary":
                            Z_tr, Z_te = unpack_binary(Z_tr, full_dim), unpack_binary(Z_te, full_dim)
                        # The probe reads float32 copies: StandardScaler on float16 input computes its
                        # variances in float16 and gives NaN (sklearn 1.9; see the section's text).
                        Z_tr, Z_te = Z_tr.astype(np.float32), Z_te.astype(np.float32)
                        accs[str(s)] = float(probe().fit(Z_tr, y_tr).score(Z_te, y_test))
                    res["settings"][key] = {"dim": dim, "precision": prec, "acc": accs, "bytes_per_row": float(nbytes),
                                            "columns": int(cols), "embedding_dim": int(full_dim), "dtype": str(Z_te.dtype)}
                    if key == "None/float32":
                        res["first_setting_s"] = time.perf_counter() - t0  # the backbone runs here only
                    log(f"  {task} {key}: {nbytes:.0f} B/row, acc " + ", ".join(f"{v:.3f}" for v in accs.values()))
            res["all_settings_s"] = time.perf_counter() - t0
        except Exception:
            log(f"  {task}: failed; the embedding cache is kept for a reproducer: {cache}")
            raise
        shutil.rmtree(cache, ignore_errors=True)
        out[task] = res
    return {"tasks": out}


# -------------------------------------------- 3. exported trained models
def measure_trained(cfg, quick):
    import tasks as T

    import sktransfer

    out = {}
    for name, mc in cfg["models"].items():
        split = T.load_split(mc["task"])
        modality = T.TASKS[mc["task"]].modality
        d = draw_idx(split, mc["n"], cfg["seed"])
        X_tr, y_tr = [split.X_all[i] for i in d], split.y_all[d]
        te = sub_test(split.y_test, mc["test_per_class"])
        X_te, y_te = [split.X_test[i] for i in te], split.y_test[te]
        if modality == "image":
            X_tr, X_te = np.stack(X_tr), np.stack(X_te)
        est = getattr(sktransfer, mc["estimator"])(T.TASKS[mc["task"]].backbone, random_state=cfg["seed"],
                                                   inference_backend=FIT_SETTING[0], inference_quantize=FIT_SETTING[1],
                                                   **mc["params"])
        t = time.perf_counter()
        est.fit(X_tr, y_tr)
        fit_s = time.perf_counter() - t
        log(f"  {name}: {mc['estimator']} fitted in {fit_s:.0f} s (with {FIT_SETTING})")
        arms = dict(TRAINED_ARMS)
        skipped = {}
        if modality == "image":  # ONNX Runtime int8 of a CNN is calibrated: only the fitted int8 setting has its rows
            skipped["onnx int8"] = "calibrated int8 (static) for a CNN on ONNX Runtime: built only at fit, for the fitted setting"
            arms.pop("onnx int8")
        preds, prep = {}, {}
        for a, (backend, quantize) in arms.items():  # first call per arm: compile / load (not timed with the arms)
            est.set_params(inference_backend=backend, inference_quantize=quantize)
            t = time.perf_counter()
            try:
                preds[a] = np.asarray(est.predict(X_te))
            except Exception as exc:  # noqa: BLE001 - recorded, not fatal
                skipped[a] = f"{type(exc).__name__}: {exc}"[:300]
                log(f"    {a}: **failed**: {skipped[a]}")
                continue
            prep[a] = time.perf_counter() - t
        arms = {a: v for a, v in arms.items() if a in preds}

        def arm(a):
            def run():
                est.set_params(inference_backend=arms[a][0], inference_quantize=arms[a][1])
                preds[a] = np.asarray(est.predict(X_te))
            return run

        times = H.alternate({a: arm(a) for a in arms}, cfg["reps"], log)
        res = {"estimator": mc["estimator"], "task": mc["task"], "n": mc["n"], "n_train": len(y_tr), "n_test": len(y_te),
               "n_test_full": len(split.y_test), "params": mc["params"], "fit_s": fit_s, "fit_setting": list(FIT_SETTING),
               "skipped": skipped, "times": times, "arms": {}}
        for a in arms:
            res["arms"][a] = {
                "agree": float(np.mean(preds[a] == preds["torch"])), "acc": float(np.mean(preds[a] == y_te)),
                "first_predict_s": prep[a], "predict_s": C.median(times[a]),
                "ratio": C.median([tr / ta for tr, ta in zip(times["torch"], times[a])]),
            }
            log(f"    {a}: agreement {res['arms'][a]['agree']:.4f}, acc {res['arms'][a]['acc']:.3f}, "
                f"{res['arms'][a]['ratio']:.2f}x torch")
        out[name] = res
        del est
    return {"models": out}


MEASURE = {"long": measure_long, "compact": measure_compact, "trained": measure_trained, "trained_extra": measure_trained}


# ------------------------------------------------------------------ report
def verdict(ok):
    return "met" if ok else "**missed**"


def diffs(arms, arm, ref):
    a, r = arms[arm]["acc"], arms[ref]["acc"]
    return [100 * (a[s] - r[s]) for s in r]


def long_blocks(rec):
    if rec is None:
        return {"long_header": "Not measured yet (`--part long`).", "long_table": "", "long_findings": ""}
    res, rows, find = rec["res"], [], []
    for task, r in res["tasks"].items():
        for a in LONG_ARMS:
            m, s = H.mean_std(list(r["arms"][a]["acc"].values()))
            dm, ds = H.mean_std(diffs(r["arms"], a, "truncate"))
            rows.append([task, a, H.pm(m, s), "–" if a == "truncate" else f"{dm:+.2f} ± {ds:.2f}",
                         f"{r['arms'][a]['embed_s']:.0f}", f"{r['arms'][a]['time_ratio']:.2f}x",
                         f"{r['arms'][a]['time_ratio_median']:.2f}x"])
        best = max(LONG_ARMS[1:], key=lambda a: H.mean_std(diffs(r["arms"], a, "truncate"))[0])
        dm, ds = H.mean_std(diffs(r["arms"], best, "truncate"))
        find.append(f"{task} ({r['chars_mean']:.0f} characters, {r['tokens_mean']:.0f} tokens on average; "
                    f"{100 * r['frac_over']:.0f} % of the texts exceed one {r['window_tokens']}-token window, "
                    f"{r['windows_mean']:.1f} windows per text): the better chunked arm, {best}, is {dm:+.2f} ± {ds:.2f} points "
                    f"from truncation ({'within one std of 0' if abs(dm) <= ds else ('ahead' if dm > 0 else 'behind')}) "
                    f"at {r['arms'][best]['time_ratio']:.2f}x its embedding time; {r['n_test']} test rows "
                    + (f"(of {r['n_test_full']}, {r['test_per_class']} per class)" if r['n_test'] < r['n_test_full'] else "(all)")
                    + f", {r['n']} training rows per class, {len(r['arms']['truncate']['acc'])} seeds.")
    table = H.md_table(["Task", "long_texts", "probe accuracy (%)", "Δ vs truncate (pts, paired)", "embedding (s)",
                        "time / truncate (total)", "time / truncate (median of blocks)"], rows, "llrrrrr")
    return {"long_header": H.header(_run(rec)), "long_table": table, "long_findings": "\n".join(f"- {s}" for s in find)}


def compact_blocks(rec):
    if rec is None:
        return {"compact_header": "Not measured yet (`--part compact`).", "compact_table": "", "compact_bytes": "",
                "compact_findings": ""}
    res, rows, find = rec["res"], [], []
    for task, r in res["tasks"].items():
        st = r["settings"]
        ref = "None/float32"
        m0, s0 = H.mean_std(list(st[ref]["acc"].values()))
        for dim in DIMS:
            row = [task, f"{st[f'{dim}/float32']['embedding_dim'] if dim is None else dim}"]
            for prec in PRECISIONS:
                k = f"{dim}/{prec}"
                if k == ref:
                    row.append(f"**{H.pm(m0, s0)}**")
                else:
                    dm, ds = H.mean_std(diffs(st, k, ref))
                    row.append(f"{dm:+.1f} ± {ds:.1f}")
            rows.append(row)
        full = {p: H.mean_std(diffs(st, f"None/{p}", ref))[0] for p in PRECISIONS[1:]}
        find.append(f"{task} ({r['n_test']} test rows, {r['n']} per class): at full dimension "
                    + ", ".join(f"{p} {d:+.1f}" for p, d in full.items())
                    + " pts; truncated to 64 dims (float32) "
                    + f"{H.mean_std(diffs(st, '64/float32', ref))[0]:+.1f} pts, 64 dims binary "
                    + f"{H.mean_std(diffs(st, '64/binary', ref))[0]:+.1f} pts.")
    head = ["Task", "dims"] + [p for p in PRECISIONS]
    table = H.md_table(head, rows, "lr" + "r" * len(PRECISIONS))
    brow = []
    for task, r in res["tasks"].items():
        st = r["settings"]
        for dim in DIMS:
            base = st["None/float32"]["bytes_per_row"]
            brow.append([task, f"{st[f'{dim}/float32']['embedding_dim'] if dim is None else dim}"]
                        + [f"{st[f'{dim}/{p}']['bytes_per_row']:.0f} ({base / st[f'{dim}/{p}']['bytes_per_row']:.0f}x)"
                           for p in PRECISIONS])
    bytes_table = H.md_table(["Task", "dims"] + list(PRECISIONS), brow, "lr" + "r" * len(PRECISIONS))
    return {"compact_header": H.header(_run(rec)), "compact_table": table, "compact_bytes": bytes_table,
            "compact_findings": "\n".join(f"- {s}" for s in find)}


def trained_blocks(recs):
    recs = [r for r in recs if r is not None]
    if not recs:
        return {"trained_header": "Not measured yet (`--part trained`).", "trained_summary": "", "trained_table": "",
                "trained_findings": ""}
    rows, summ, find = [], [], []
    for rec in recs:
        for name, r in rec["res"]["models"].items():
            label = f"{r['estimator']} ({r['params'].get('strategy', name)}), {r['task']}"
            for a, v in r["arms"].items():
                rows.append([label, a, f"{100 * v['agree']:.2f}", f"{100 * v['acc']:.1f}", f"{v['predict_s']:.2f}",
                             f"{v['ratio']:.2f}x", f"{v['first_predict_s']:.1f}"])
            for a, why in r["skipped"].items():
                rows.append([label, a, "–", "–", "–", "–", f"not run: {why[:160]}"])
            comp = [a for a in r["arms"] if a != "torch"]
            if comp:
                fp32 = [a for a in comp if TRAINED_ARMS[a][1] is None]
                q8 = [a for a in comp if TRAINED_ARMS[a][1] == "int8"]
                ok_agree = [a for a in comp if r["arms"][a]["agree"] >= TARGET_AGREE]
                fast = max(ok_agree, key=lambda a: r["arms"][a]["ratio"]) if ok_agree else None
                if fp32:
                    low = min(r["arms"][a]["agree"] for a in fp32)
                    summ.append([f"{label}: agreement with torch, fp32 exports ({', '.join(fp32)}; lowest)",
                                 f"{100 * low:.2f} %", f">= {100 * TARGET_AGREE:.1f} %", verdict(low >= TARGET_AGREE)])
                if fast:
                    v = r["arms"][fast]["ratio"]
                    summ.append([f"{label}: speed / torch of the fastest arm with >= {100 * TARGET_AGREE:.1f} % agreement ({fast})",
                                 f"{v:.2f}x", f">= {TARGET_SPEEDUP}x", verdict(v >= TARGET_SPEEDUP)])
                for a in q8:
                    ok = r["arms"][a]["agree"] >= TARGET_AGREE and r["arms"][a]["ratio"] >= TARGET_SPEEDUP
                    summ.append([f"{label}: {a} (agreement; speed / torch)",
                                 f"{100 * r['arms'][a]['agree']:.2f} %; {r['arms'][a]['ratio']:.2f}x",
                                 f">= {100 * TARGET_AGREE:.1f} % and >= {TARGET_SPEEDUP}x", verdict(ok)])
                find.append(f"{label}: fitted in {r['fit_s']:.0f} s on {r['n_train']} rows; predict on {r['n_test']} test rows: "
                            + ", ".join(f"{a} {r['arms'][a]['ratio']:.2f}x / {100 * r['arms'][a]['agree']:.1f} %" for a in comp)
                            + " (speed / agreement)"
                            + (f"; the fastest arm with >= {100 * TARGET_AGREE:.1f} % agreement is {fast} "
                               f"({r['arms'][fast]['ratio']:.2f}x)." if fast else "; no arm reaches the agreement target."))
    table = H.md_table(["Model, task", "Arm", "agreement with torch (%)", "accuracy (%)", "predict (s, median)",
                        "speed / torch (paired)", "first predict (s): compile or load"], rows, "llrrrrr")
    summary = H.md_table(["Target", "Measured", "Target value", "Result"], summ, "lrll")
    header = "\n\n".join(f"Part `{rec['part']}`:\n\n" + H.header(_run(rec)) for rec in recs)
    return {"trained_header": header, "trained_summary": summary, "trained_table": table,
            "trained_findings": "\n".join(f"- {s}" for s in find)}


def _run(rec):
    return dict(rec["run"], started=dt.datetime.fromisoformat(str(rec["run"]["started"])))


def plot(recs, path):
    panels = []
    if recs.get("long"):
        for task, r in recs["long"]["res"]["tasks"].items():
            vals = [H.mean_std(list(r["arms"][a]["acc"].values())) for a in LONG_ARMS]
            panels.append({"title": f"{task}: probe accuracy (full texts)", "labels": [f"{a}\n{r['arms'][a]['time_ratio']:.1f}x time" for a in LONG_ARMS],
                           "values": [100 * v[0] for v in vals], "errors": [100 * v[1] for v in vals],
                           "points": [[100 * x for x in r["arms"][a]["acc"].values()] for a in LONG_ARMS],
                           "ylabel": "accuracy (%)", "ylim": (max(0, 100 * min(v[0] for v in vals) - 15), 100)})
    if recs.get("compact"):
        for task, r in recs["compact"]["res"]["tasks"].items():
            st = r["settings"]
            labels, values, errors = [], [], []
            for dim in DIMS:
                for p in PRECISIONS:
                    if (dim, p) == (None, "float32"):
                        continue
                    if dim is not None and p not in ("float32", "binary"):
                        continue
                    m, s = H.mean_std(diffs(st, f"{dim}/{p}", "None/float32"))
                    labels.append(f"{'full' if dim is None else dim}\n{SHORT_PREC[p]}")
                    values.append(m)
                    errors.append(s)
            panels.append({"title": f"{task}: Δ accuracy vs full float32 (pts)", "labels": labels, "values": values,
                           "errors": errors, "ylabel": "points"})
    if panels:
        H.bar_panels(panels, path, "Long texts and compact embeddings (issue 13)", ncols=3)


def report(recs, out=None, plot_path=PLOT):
    blocks = {**long_blocks(recs.get("long")), **compact_blocks(recs.get("compact")),
              **trained_blocks([recs.get("trained"), recs.get("trained_extra")])}
    if recs.get("long") or recs.get("compact"):
        plot(recs, plot_path)
        blocks["plot"] = f"![long texts and compact embeddings]({os.path.relpath(plot_path, HERE)})"
    else:
        blocks["plot"] = ""
    H.write_section(NAME, blocks, out)


def latest(part):
    recs = sorted(RESULTS.glob(f"run_*_{part}.json"))
    return H.read_json(recs[-1]) if recs else None


# ------------------------------------------------------------------ main
def main(argv=None):
    p = H.parser(__doc__, threads=1)
    p.add_argument("--part", choices=PARTS + ("all",), default="all", help="what to measure (default: every part, one after the other)")
    p.add_argument("--out", default=None, help="section file to write (default sections/inference_extras.md)")
    args = p.parse_args(argv)
    H.quiet()
    parts = PARTS if args.part == "all" else (args.part,)
    recs = {}
    if not args.report_only:
        cache_dir = tempfile.mkdtemp(prefix="skt-bench-extras-")  # an empty compiled-model cache
        use_cache_dir(cache_dir)
        try:
            for part in parts:
                cfg = CONFIGS["quick" if args.quick else "full"][part]
                run = H.start_run(args.threads, ["onnxruntime", "openvino", "nncf", "peft", "numpy"])
                log(f"part {part} ...")
                res = MEASURE[part](cfg, args.quick)
                run = H.finish_run(run)
                recs[part] = {"part": part, "cfg": cfg, "res": res, "run": run}
                if not args.quick:
                    path = RESULTS / f"run_{run['started']:%Y%m%d-%H%M}_{part}.json"
                    H.write_json(path, recs[part])
                    log(f"wrote {path} ({run['elapsed']:.0f} s)")
        finally:
            shutil.rmtree(cache_dir, ignore_errors=True)
    if not args.quick:
        recs = {part: latest(part) for part in PARTS}
    out = args.out
    if args.quick and out is None:  # a quick run still renders, but outside benchmarks/
        out = os.path.join(tempfile.mkdtemp(prefix="skt-bench-extras-quick-"), f"{NAME}.md")
    report(recs, out, Path(out).with_suffix(".png") if out else PLOT)


if __name__ == "__main__":
    sys.exit(main())

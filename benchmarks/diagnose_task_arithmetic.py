#!/usr/bin/env python
"""Why task arithmetic fails on the image pairs: a validation-only diagnosis (issue 15).

The fine-tunes of ``bench_merging.py --arms task_arithmetic`` (same rows, seeds and recipe: images at
lr 1e-3; one text pair for contrast) are fitted again and examined on their **validation rows only**
(no test row is read):

- the sum ``pretrained + λ(τa + τb)`` at λ below the benchmark's grid (0 .. 0.4);
- interference: task t's accuracy (its head) on ``pretrained + τ_t + τ_other`` with the other task's
  vector restricted to one group of layers (EfficientNet-Lite0: stem and head convolutions, blocks 0-2,
  blocks 3-6, BatchNorm scale and shift), and on ``pretrained + τ_other`` alone;
- how far each tensor moved: ``‖Δ‖ / ‖θ_pretrained‖`` per tensor (median, 90th percentile, largest and
  the largest tensors' names), and each group's share of ``‖τ‖²``.

Usage::

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/diagnose_task_arithmetic.py

Record: ``results/merging/task_arithmetic_diagnosis.json`` (read by hand into
``sections/merging_task_arithmetic_notes.md``).
"""
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
for _p in (HERE, HERE / "suite"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import bench_merging as B  # noqa: E402
import numpy as np  # noqa: E402

RECORD = B.H.RESULTS / "merging" / "task_arithmetic_diagnosis.json"
# (pair, seed): the image pairs of the task-arithmetic run, and one text pair for contrast.
CASES = [(["digits", "fashion_mnist"], 0), (["digits", "fashion_mnist"], 1), (["emoji", "openclipart"], 0),
         (["emoji", "openclipart"], 1), (["bbc_news", "sentiment_sentences"], 0)]
STATS = ("running_mean", "running_var")


def group(key):
    """EfficientNet-Lite0's layer groups: BatchNorm scale and shift, blocks 0-2, blocks 3-6, stem and head."""
    if B._part(key) in ("bn_affine", "bn_stats"):
        return "bn_affine"
    if ".blocks." in key:
        return "blocks 0-2 (conv)" if int(key.split(".blocks.")[1].split(".")[0]) <= 2 else "blocks 3-6 (conv)"
    return "stem / head conv"


def restrict(tv, keep):
    """``tv`` with the tensors for which ``keep(name)`` is false set to zero."""
    from sktransfer.merging import TaskVector

    return TaskVector({k: (d if keep(k) else d * 0) for k, d in tv.deltas.items()}, tv.backbone, tv.fingerprint,
                      tv._heads)


def relative_changes(tv, pre):
    """(‖Δ‖ / ‖θ_pretrained‖, name, size) per trained tensor (BatchNorm statistics left out), largest first."""
    out = []
    for k, d in tv.deltas.items():
        ref = pre[k[len("body."):]].float().norm()
        if not k.endswith(STATS) and ref > 0:
            out.append((float(d.norm() / ref), k, int(d.numel())))
    return sorted(out, reverse=True)


def diagnose(pair, seed, cfg, pre):
    from sktransfer.merging import task_vector

    t0 = time.perf_counter()
    models, data = {}, {}
    for t in pair:
        sp, _, _ = B.split_of(t, cfg)
        X_tr, y_tr, X_va, y_va = B.draw(sp, t, *cfg["rows"][t], seed)
        data[t] = (X_va, y_va)
        models[t] = B.fine_tune(t, cfg, X_tr, y_tr, seed=seed, lr=cfg["lr"])
    tv = {t: task_vector(models[t], name=t) for t in pair}

    def val(vec, t):  # task t's validation accuracy on pretrained + vec, with t's head
        return float(vec.apply(head_from=t).score(*data[t]))

    a, b = pair
    rec = {"pair": pair, "seed": seed, "ft_val": {t: float(models[t].score(*data[t])) for t in pair},
           "norms": {t: tv[t].norm() for t in pair}}
    rel = {t: relative_changes(tv[t], pre) for t in pair}
    rec["layer_relative_change"] = {t: {"median": float(np.median([r for r, _, _ in v])),
                                        "p90": float(np.percentile([r for r, _, _ in v], 90)), "max": v[0][0]}
                                    for t, v in rel.items()}
    rec["largest_relative_change"] = {t: [{"tensor": k, "relative": r, "numel": n} for r, k, n in v[:5]]
                                      for t, v in rel.items()}
    # The sum at small lambda (the benchmark's grid starts at 0.4).
    rec["sum"] = [{"lam": lam, **{t: val(lam * (tv[a] + tv[b]), t) for t in pair}} for lam in (0.0, 0.1, 0.2, 0.3, 0.4)]
    # Interference: t's head on pretrained + tau_t + (the other's vector, whole or one group of layers).
    groups = sorted({group(k) for k in tv[a].deltas}) if B.modality(a) == "image" else []
    rec["interference"] = {}
    for t, o in ((a, b), (b, a)):
        r = {"own": val(tv[t], t), "own + other (all)": val(tv[t] + tv[o], t), "other only": val(tv[o] + 0.0 * tv[t], t)}
        for g in groups:
            r[f"own + other ({g})"] = val(tv[t] + restrict(tv[o], lambda k, g=g: group(k) == g), t)
        rec["interference"][t] = r
    rec["group_share"] = {t: {g: float(sum((d.double() ** 2).sum() for k, d in tv[t].deltas.items() if group(k) == g))
                                 / tv[t].norm() ** 2 for g in groups} for t in pair}
    rec["seconds"] = time.perf_counter() - t0
    return rec


def main():
    import torch

    from sktransfer import load_backbone

    B.H.quiet()
    torch.set_num_threads(1)
    run = B.H.start_run(1)
    cfg = dict(B.TA_CONFIGS["full"])
    pre, out = {}, {"pretrained_norm": {}, "cases": []}
    for name in (B.H.TEXT, B.H.IMAGE):
        pre[name] = load_backbone(name).body.state_dict()
        out["pretrained_norm"][name] = float(torch.sqrt(sum(
            (v.double() ** 2).sum() for k, v in pre[name].items() if v.is_floating_point() and not k.endswith(STATS))))
    for pair, seed in CASES:
        rec = diagnose(pair, seed, cfg, pre[B.backbone(pair[0])])
        out["cases"].append(rec)
        B.log(json.dumps(rec))
    out["run"] = B.H.finish_run(run, notes="Validation rows only; the task-arithmetic run's fine-tunes fitted again.")
    B.H.write_json(RECORD, out)
    B.log(f"wrote {RECORD}")


if __name__ == "__main__":
    main()

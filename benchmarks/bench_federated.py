#!/usr/bin/env python
"""Benchmark of ``FederatedTransferClassifier`` (issue 17, federated half) on BBC News and Fashion-MNIST.

BBC News (``all-MiniLM-L6-v2``, LoRA) split over 5 clients, IID and
strongly non-IID (Dirichlet(0.1) over classes): federated LoRA (Flower
FedAvg, simulation runtime) against centralised LoRA on all training rows
and against each client alone; bytes sent per client and round against the
full model; rounds until the global model reaches 95 % of the centralised
accuracy (Flower's centralised evaluation on the held-out rows after each
round). One seed, small sizes: the machine is a shared 2-core CPU.

Fashion-MNIST (``tf_efficientnet_lite0`` at 64 px, ``strategy="partial"``:
the top block groups + head train and travel) has the same arms, without
the differential-privacy ones.

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_federated.py               # both tasks: records + section + plot
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_federated.py --task fashion_mnist  # one task's record, then the section
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_federated.py --quick --task fashion_mnist  # smoke run, writes nothing
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_federated.py --report-only # rebuild from the records

Records: ``benchmarks/results/federated/results.json`` (BBC News) and
``benchmarks/results/federated/fashion_mnist.json``; the section shows the
image task only when its record exists. Prose: ``sections/federated_notes.md``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _harness as H  # noqa: E402
import numpy as np  # noqa: E402

RECORD = H.RESULTS / "federated" / "results.json"
IMAGE_RECORD = H.RESULTS / "federated" / "fashion_mnist.json"
TASKS = ("bbc_news", "fashion_mnist")
PLOT = HERE / "federated.png"
log = H.log

# The local training recipe of every arm: LoRA r=4 on MiniLM, one rate for
# adapters and head, texts cut to their first `chars` characters.
LORA = dict(r=4, lora_alpha=16, lr=5e-3, batch_size=8, weight_decay=0.01, grad_clip=1.0)

CONFIGS = {
    "full": dict(n_clients=5, per_class=16, n_test=500, chars=300, max_length=48, rounds=20, local_epochs=1,
                 alpha=0.1, seed=0, dp_noise=(0.0, 0.01, 0.1)),
    "quick": dict(n_clients=5, per_class=3, n_test=10, chars=120, max_length=16, rounds=1, local_epochs=1,
                  alpha=0.1, seed=0, dp_noise=(0.0,)),
}

# Fashion-MNIST: the image recipe of the fine-tuning benchmark for "partial"
# (``_harness.FT_HP["fmnist"]``: chosen there on other draws, not tuned on
# these test rows) at 64 px, without augmentation (the federated local
# estimator takes FineTunedClassifier's default, augment="auto": none), a
# random head as the federation starts from; the top ``unfreeze_last`` block
# groups + head train at every client and travel.
PARTIAL = dict(unfreeze_last=2, lr=3e-3, backbone_lr_ratio=0.3, batch_size=16, weight_decay=0.01, grad_clip=1.0)

IMAGE_CONFIGS = {
    "full": dict(n_clients=5, per_class=16, n_test=500, image_size=64, rounds=20, local_epochs=1, alpha=0.1, seed=0),
    "quick": dict(n_clients=5, per_class=3, n_test=20, image_size=64, rounds=1, local_epochs=1, alpha=0.1, seed=0),
}

# Seconds on a 2-core CPU with 1 torch thread, measured on this machine at
# load 1.7 (2026-12-03: one federation of 1 and of 4 rounds, centralised fits
# of 1 and 5 epochs, at the full sizes): one Flower simulation's start and
# stop (Ray, the client actor importing torch, the initial evaluation), one
# round's fixed cost (a module built per message, 5 clients + the server), a
# fit's fixed cost, one training image for one epoch and one scored test image, at 64 px.
IMAGE_COST = dict(fed_start=15.0, round_fixed=1.0, fit_fixed=2.2, train_row=0.004, test_row=0.002)


def estimate_image_minutes(cfg):
    """Minutes the image run should take on an idle 2-core CPU with 1 thread (``IMAGE_COST``)."""
    c, n = IMAGE_COST, 10 * cfg["per_class"]
    epochs = cfg["rounds"] * cfg["local_epochs"]
    central = c["fit_fixed"] + epochs * n * c["train_row"] + cfg["n_test"] * c["test_row"]
    # per partition: each client alone (its rows, as many epochs, scored on the test rows), then the federation
    alone = cfg["n_clients"] * (c["fit_fixed"] + cfg["n_test"] * c["test_row"]) + epochs * n * c["train_row"]
    fed = (c["fed_start"] + cfg["rounds"] * c["round_fixed"] + epochs * n * c["train_row"]
           + (cfg["rounds"] + 1) * cfg["n_test"] * c["test_row"])
    return (central + 2 * (alone + fed)) / 60


def load(cfg):
    """Training pool (per_class rows of each topic) and a disjoint test set, both seeded."""
    from sktransfer.datasets import load_bbc_news

    bbc = load_bbc_news()
    names = np.asarray(bbc.target_names)
    rng = np.random.RandomState(cfg["seed"])
    train = np.concatenate([rng.choice(np.flatnonzero(bbc.target == k), cfg["per_class"], replace=False)
                            for k in range(len(names))])
    rest = np.setdiff1d(np.arange(len(bbc.target)), train)
    test = rng.choice(rest, cfg["n_test"], replace=False)
    cut = lambda idx: [bbc.data[i][: cfg["chars"]] for i in idx]  # noqa: E731
    return cut(train), names[bbc.target[train]], cut(test), names[bbc.target[test]]


def load_images(cfg):
    """Fashion-MNIST: per_class training images of each class (official train split) and
    n_test test images (official test split, n_test / 10 per class), both seeded."""
    from sktransfer.datasets import load_fashion_mnist

    Xtr, ytr = load_fashion_mnist(subset="train", return_X_y=True)
    Xte, yte = load_fashion_mnist(subset="test", return_X_y=True)
    tr = H.per_class(ytr, cfg["per_class"], np.random.RandomState(cfg["seed"]))
    te = H.per_class(yte, cfg["n_test"] // 10, np.random.RandomState(cfg["seed"]))
    return Xtr[tr].copy(), ytr[tr].copy(), Xte[te].copy(), yte[te].copy()


def take(X, mask):
    """The rows of ``X`` (a list of texts or an array of images) where ``mask`` holds."""
    if isinstance(X, np.ndarray):
        return X[mask]
    return [x for x, m in zip(X, mask) if m]


def partition(y, n_clients, kind, alpha, seed):
    """Client of each row: ``"iid"`` (a shuffled even split) or ``"dirichlet"`` (per class, Dirichlet(alpha) shares)."""
    rng = np.random.RandomState(seed)
    groups = np.empty(len(y), dtype=int)
    if kind == "iid":
        order = rng.permutation(len(y))
        groups[order] = np.arange(len(y)) % n_clients
        return groups
    # The usual non-IID recipe (Hsu et al. 2019): each class's rows go to the
    # clients in Dirichlet(alpha) proportions; redrawn until every client has a row.
    while True:
        for k in np.unique(y):
            idx = rng.permutation(np.flatnonzero(y == k))
            shares = rng.dirichlet(alpha * np.ones(n_clients))
            cuts = (np.cumsum(shares) * len(idx)).astype(int)[:-1]
            for c, part in enumerate(np.split(idx, cuts)):
                groups[part] = c
        if len(np.unique(groups)) == n_clients:
            return groups


def lora(cfg, epochs, seed):
    from sktransfer import LoRAClassifier

    return LoRAClassifier(H.TEXT, **LORA, max_length=cfg["max_length"], max_epochs=epochs, head_init="random",
                          random_state=seed)


def partial(cfg, epochs, seed):
    from sktransfer import FineTunedClassifier

    return FineTunedClassifier(H.IMAGE, strategy="partial", **PARTIAL, image_size=cfg["image_size"], warmup=0.1,
                               augment=False, max_epochs=epochs, head_init="random", random_state=seed)


def local_model(task, cfg, epochs, seed):
    """The estimator of the centralised and client-alone arms: the federation's local recipe."""
    return lora(cfg, epochs, seed) if task == "bbc_news" else partial(cfg, epochs, seed)


def federate(cfg, X, y, groups, eval_set, task="bbc_news", **dp):
    """FederatedTransferClassifier (LoRA on text, partial on images; FedAvg) fitted on the partition
    ``groups``; the fit and its seconds."""
    import warnings

    from sktransfer.federated import FederatedOneClassWarning, FederatedTransferClassifier

    if task == "bbc_news":
        fed = FederatedTransferClassifier(
            H.TEXT, strategy="lora", rounds=cfg["rounds"], local_epochs=cfg["local_epochs"],
            max_length=cfg["max_length"], random_state=cfg["seed"], federated_evaluation=False, **LORA, **dp,
        )
    else:
        fed = FederatedTransferClassifier(
            H.IMAGE, strategy="partial", rounds=cfg["rounds"], local_epochs=cfg["local_epochs"],
            image_size=cfg["image_size"], random_state=cfg["seed"], federated_evaluation=False, **PARTIAL, **dp,
        )
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FederatedOneClassWarning)
        fed.fit(X, y, groups=groups, eval_set=eval_set)
    return fed, time.perf_counter() - t


def measure(cfg, task="bbc_news"):
    """The arms of one task (``"bbc_news"``: LoRA, with the DP arms; ``"fashion_mnist"``: partial)."""
    X, y, X_test, y_test = load(cfg) if task == "bbc_news" else load_images(cfg)
    y_test = np.asarray(y_test)
    method = "LoRA" if task == "bbc_news" else "partial"
    out = {"n_train": len(X), "n_test": len(X_test)}
    epochs = cfg["rounds"] * cfg["local_epochs"]  # centralised and client-alone train as many epochs as a client in the federation
    t = time.perf_counter()
    central = local_model(task, cfg, epochs, cfg["seed"]).fit(X, y)
    module = central.net_.module_
    out["central"] = {"acc": float(central.score(X_test, y_test)), "fit_s": time.perf_counter() - t,
                      "full_model_bytes": int(sum(p.numel() * p.element_size() for p in module.parameters()))}
    if task == "bbc_news":
        out["central"]["adapter_bytes"] = int(central.adapter_nbytes_)
    else:
        out["central"]["trainable_bytes"] = int(sum(p.numel() * p.element_size() for p in module.parameters()
                                                    if p.requires_grad))
    log(f"centralised {method}: {out['central']['acc']:.3f} ({out['central']['fit_s']:.0f} s)")
    for kind in ("iid", "dirichlet"):
        groups = partition(np.asarray(y), cfg["n_clients"], kind, cfg["alpha"], cfg["seed"])
        sizes = [int((groups == c).sum()) for c in range(cfg["n_clients"])]
        classes_per_client = [int(len(np.unique(np.asarray(y)[groups == c]))) for c in range(cfg["n_clients"])]
        alone = []
        t = time.perf_counter()
        for c in range(cfg["n_clients"]):
            rows = take(X, groups == c)
            yc = np.asarray(y)[groups == c]
            if len(np.unique(yc)) < 2:
                # A one-class client alone predicts that class for every row.
                alone.append(float(np.mean(y_test == yc[0])))
                continue
            # predict, not score: a client alone never saw the topics it lacks (score refuses unseen labels).
            alone.append(float(np.mean(local_model(task, cfg, epochs, cfg["seed"]).fit(rows, yc).predict(X_test) == y_test)))
        alone_s = time.perf_counter() - t
        log(f"{kind}: clients alone {np.round(alone, 3)} ({alone_s:.0f} s)")
        fed, fed_s = federate(cfg, X, y, groups, (X_test, y_test), task=task)
        accs = [h["eval_accuracy"] for h in fed.history_]
        target = 0.95 * out["central"]["acc"]
        reached = next((h["round"] for h in fed.history_ if h["eval_accuracy"] >= target), None)
        out[kind] = {
            "sizes": sizes, "classes_per_client": classes_per_client, "alone": alone, "alone_s": alone_s,
            "fed_acc": float(fed.score(X_test, y_test)), "fed_s": fed_s, "round_acc": accs,
            "initial_acc": fed.initial_eval_accuracy_, "rounds_to_95": reached,
            "bytes_per_client_round": int(fed.bytes_per_client_round_), "full_model_bytes": int(fed.full_model_nbytes_),
            "bytes_sent_per_round": [h["bytes_sent"] for h in fed.history_],
            "bytes_received_per_round": [h["bytes_received"] for h in fed.history_],
            "train_loss": [h["train_loss"] for h in fed.history_],
            "update_norm_median": [h["update_norm_median"] for h in fed.history_],
            "update_norm_max": [h["update_norm_max"] for h in fed.history_],
        }
        log(f"{kind}: federated {out[kind]['fed_acc']:.3f} per round {np.round(accs, 3)} ({fed_s:.0f} s)")
        if kind == "iid":
            iid_groups = groups
    if "dp_noise" not in cfg:  # no DP arms for the images
        return out
    # Differential privacy on the IID partition: Flower's client-side fixed
    # clipping at the median over rounds of the clients' median update norm
    # (measured on the run without DP: about half the updates are clipped),
    # with server noise of dp_noise * C / 5 per coordinate.
    clip = float(np.median(out["iid"]["update_norm_median"]))
    out["dp"] = []
    for z in cfg.get("dp_noise", ()):
        fed, fed_s = federate(cfg, X, y, iid_groups, (X_test, y_test), dp_clipping_norm=clip,
                              dp_noise_multiplier=z or None)
        accs = [h["eval_accuracy"] for h in fed.history_]
        out["dp"].append({"clipping_norm": clip, "noise_multiplier": z, "fed_acc": float(fed.score(X_test, y_test)),
                          "round_acc": accs, "fed_s": fed_s,
                          "update_norm_median": [h["update_norm_median"] for h in fed.history_]})
        log(f"DP C={clip:.3g} z={z}: federated {out['dp'][-1]['fed_acc']:.3f} per round {np.round(accs, 3)} ({fed_s:.0f} s)")
    return out


def _cfg_text(cfg):
    # A record's JSON turns tuples into lists: print them as the run did (as tuples).
    return ", ".join(f"{k}={tuple(v) if isinstance(v, list) else v}" for k, v in cfg.items())


def partition_rows(res, cfg, iid_target):
    """The results table's rows (one per partition) and the targets' rows, shared by both tasks.

    ``iid_target``: the wording of the IID target's row (the issue states the 2-point target for LoRA)."""
    c = res["central"]
    rows, target_rows = [], []
    for kind, label in (("iid", "IID"), ("dirichlet", f"Dirichlet({cfg['alpha']})")):
        r = res[kind]
        rows.append([
            label, " / ".join(map(str, r["sizes"])), " / ".join(map(str, r["classes_per_client"])),
            f"{100 * c['acc']:.1f}", f"{100 * r['fed_acc']:.1f}",
            f"{100 * np.mean(r['alone']):.1f} ({100 * min(r['alone']):.1f}–{100 * max(r['alone']):.1f})",
            str(r["rounds_to_95"]) if r["rounds_to_95"] is not None else f"not in {cfg['rounds']}",
        ])
        d = 100 * (r["fed_acc"] - c["acc"])
        if kind == "iid":
            target_rows.append([iid_target, f"{d:+.1f} points", "met" if d >= -2 else "**not met**"])
        else:
            target_rows.append(["non-IID: the gap, reported", f"{d:+.1f} points", "–"])
    r = res["iid"]
    frac = r["bytes_per_client_round"] / r["full_model_bytes"]
    target_rows.append(["bytes per client and round <= 5 % of the full model",
                        f"{r['bytes_per_client_round'] / 1e6:.3f} MB vs {r['full_model_bytes'] / 1e6:.1f} MB = {100 * frac:.2f} %",
                        "met" if frac <= 0.05 else "**not met**"])
    return rows, target_rows, frac


def run_tables(res, cfg, method):
    """The per-round accuracy table and the time table, shared by both tasks."""
    c = res["central"]
    per_round = H.md_table(
        ["round"] + [str(i + 1) for i in range(cfg["rounds"])],
        [[lab] + [f"{100 * a:.1f}" for a in res[k]["round_acc"]] for k, lab in (("iid", "IID"), ("dirichlet", "non-IID"))],
        "l" + "r" * cfg["rounds"])
    times = H.md_table(
        ["arm", "IID (s)", "non-IID (s)"],
        [[f"centralised {method} (once)", f"{c['fit_s']:.0f}", "–"],
         [f"{cfg['n_clients']} clients alone (sequential)", f"{res['iid']['alone_s']:.0f}", f"{res['dirichlet']['alone_s']:.0f}"],
         ["federated (Flower simulation, Ray, 1 client at a time)", f"{res['iid']['fed_s']:.0f}",
          f"{res['dirichlet']['fed_s']:.0f}"]], "lrr")
    return per_round, times


def bbc_blocks(res, run, cfg):
    """The BBC News part of the section (the template's placeholders without a prefix)."""
    rows, target_rows, frac = partition_rows(
        res, cfg, f"IID: federated LoRA within 2 points of centralised LoRA after <= 20 rounds (here {cfg['rounds']} rounds)")
    r = res["iid"]
    per_round, times = run_tables(res, cfg, "LoRA")
    n_trainable = r["bytes_per_client_round"] // 4  # float32 adapters + head: the noise's dimension
    dp_rows = [[f"{d['clipping_norm']:.3g}", f"{d['noise_multiplier']:g}",
                f"{d['noise_multiplier'] * d['clipping_norm'] / cfg['n_clients']:.2g}",
                f"{100 * d['fed_acc']:.1f}", f"{100 * (d['fed_acc'] - r['fed_acc']):+.1f}",
                " ".join(f"{100 * a:.0f}" for a in d["round_acc"][4::5]), f"{d['fed_s']:.0f}"]
               for d in res.get("dp", [])]
    target_rows.append(["DP (clipping + noise): the accuracy cost, measured",
                        "; ".join(f"z={d['noise_multiplier']:g}: {100 * (d['fed_acc'] - r['fed_acc']):+.1f} points"
                                  for d in res.get("dp", [])) or "not run", "–"])
    blocks = {
        "dp": H.md_table(["clipping norm C", "noise multiplier z", "noise std per coordinate", "federated %",
                          "vs no DP (points)", "accuracy at rounds 5, 10, 15, 20 (%)", "seconds"], dp_rows, "rrrrrlr")
              if dp_rows else "(not run)",
        "n_trainable": f"{n_trainable:,}",
        "row_points": f"{100 / res['n_test']:.1f}",
        "se": f"{100 * np.sqrt(0.9 * 0.1 / res['n_test']):.1f}",
        "header": H.header(run), "text": H.TEXT, "cfg": _cfg_text(cfg),
        "lora": ", ".join(f"{k}={v}" for k, v in LORA.items()), "n_train": res["n_train"], "n_test": res["n_test"],
        "table": H.md_table(["partition", "rows per client", "classes per client", "centralised %", "federated %",
                             "client alone % (mean, min–max)", "rounds to 95 % of centralised"], rows, "lllrrrr"),
        "per_round": per_round,
        "bytes": f"{r['bytes_per_client_round']:,} bytes per client and round (adapters + head, measured on the "
                 f"Flower messages) against {r['full_model_bytes']:,} bytes for the full model "
                 f"({100 * frac:.2f} %); the server sends each sampled client the same weights "
                 f"({r['bytes_received_per_round'][0]:,} bytes per round to the 5 clients; federated evaluation "
                 "was off, the test rows are scored on the server).",
        "times": times,
        "targets": H.md_table(["target", "measured", "verdict"], target_rows, "lll"),
        "initial": f"{100 * res['iid']['initial_acc']:.1f}" if res["iid"]["initial_acc"] is not None else "–",
    }
    return blocks


def image_blocks(res, run, cfg):
    """The Fashion-MNIST part of the section (placeholders ``img_*``)."""
    c = res["central"]
    rows, target_rows, frac = partition_rows(
        res, cfg, f"IID: federated partial within 2 points of centralised partial after <= 20 rounds "
                  f"(here {cfg['rounds']} rounds; the issue states it for LoRA)")
    r = res["iid"]
    per_round, times = run_tables(res, cfg, "partial")
    return {
        "img_header": H.header(run), "img_backbone": H.IMAGE, "img_n_train": res["n_train"], "img_n_test": res["n_test"],
        "img_n_clients": cfg["n_clients"], "img_per_class": cfg["per_class"], "img_image_size": cfg["image_size"],
        "img_cfg": _cfg_text(cfg),
        "img_recipe": ", ".join(f"{k}={v}" for k, v in PARTIAL.items()),
        "img_row_points": f"{100 / res['n_test']:.1f}",
        "img_table": H.md_table(["partition", "rows per client", "classes per client", "centralised %", "federated %",
                                 "client alone % (mean, min–max)", "rounds to 95 % of centralised"], rows, "lllrrrr"),
        "img_per_round": per_round,
        "img_initial": f"{100 * r['initial_acc']:.1f}" if r["initial_acc"] is not None else "–",
        "img_bytes": f"{r['bytes_per_client_round']:,} bytes per client and round (the top {PARTIAL['unfreeze_last']} block "
                     f"groups + head, measured on the Flower messages) against {r['full_model_bytes']:,} bytes for the "
                     f"full model ({100 * frac:.2f} %); the server sends each sampled client the same weights "
                     f"({r['bytes_received_per_round'][0]:,} bytes per round to the {cfg['n_clients']} clients).",
        "img_targets": H.md_table(["target", "measured", "verdict"], target_rows, "lll"),
        "img_times": times,
    }


def write_report(bbc, img=None, out=None):
    """Write ``sections/federated.md`` from the BBC News record and, when given, the Fashion-MNIST one.

    ``bbc`` and ``img`` are ``(res, run, cfg)``. The template's image part
    (between ``<!-- fashion_mnist -->`` and ``<!-- /fashion_mnist -->``) is
    kept only with ``img``; as ``H.write_section``, otherwise.
    """
    import re

    blocks = bbc_blocks(*bbc)
    blocks["fmnist_not_run"] = "" if img else "Fashion-MNIST, named in the issue, is not run; "
    template = (H.SECTIONS / "federated_notes.md").read_text()
    keep = r"\1" if img else ""
    template = re.sub(r"<!-- fashion_mnist -->\n?(.*?)<!-- /fashion_mnist -->\n?", keep, template, flags=re.S)
    if img:
        blocks.update(image_blocks(*img))
    text = re.sub(r"\n{3,}", "\n\n", H.fill(template, blocks)).strip() + "\n"
    out = Path(out) if out else H.SECTIONS / "federated.md"
    out.write_text(text)
    log(f"wrote {out}")
    return out


def plot(res, cfg, path, img=None):
    """Accuracy per round, IID and non-IID: BBC News (top row) and, with ``img = (res, cfg)``, Fashion-MNIST."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if img is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    else:
        fig, grid = plt.subplots(2, 2, figsize=(10, 7.6))
        axes = grid[0]
        _image_panels(grid[1], *img)
    rounds = np.arange(1, cfg["rounds"] + 1)
    for ax, (kind, title) in zip(axes, (("iid", "IID"), ("dirichlet", f"non-IID, Dirichlet({cfg['alpha']})"))):
        r = res[kind]
        ax.plot(rounds, 100 * np.asarray(r["round_acc"]), "o-", color="#c44e52", label="federated LoRA (global model)")
        ax.axhline(100 * res["central"]["acc"], color="#4c72b0", label="centralised LoRA")
        ax.axhline(95 * res["central"]["acc"], color="#4c72b0", ls=":", label="95 % of centralised")
        ax.axhline(100 * np.mean(r["alone"]), color="#55a868", ls="--", label="client alone (mean)")
        if kind == "iid":
            for d, shade in zip(res.get("dp", []), ("#dd8452", "#8172b3", "#937860")):
                ax.plot(rounds, 100 * np.asarray(d["round_acc"]), ".-", color=shade, lw=1,
                        label=f"DP: clip {d['clipping_norm']:.2g}, noise z={d['noise_multiplier']:g}")
        ax.set_title(f"BBC News, 5 clients, {title}", fontsize=9)
        ax.set_xlabel("round")
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(0, 100)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    log(f"wrote {path}")


def _image_panels(axes, res, cfg):
    rounds = np.arange(1, cfg["rounds"] + 1)
    for ax, (kind, title) in zip(axes, (("iid", "IID"), ("dirichlet", f"non-IID, Dirichlet({cfg['alpha']})"))):
        r = res[kind]
        ax.plot(rounds, 100 * np.asarray(r["round_acc"]), "o-", color="#c44e52", label="federated partial (global model)")
        ax.axhline(100 * res["central"]["acc"], color="#4c72b0", label="centralised partial")
        ax.axhline(95 * res["central"]["acc"], color="#4c72b0", ls=":", label="95 % of centralised")
        ax.axhline(100 * np.mean(r["alone"]), color="#55a868", ls="--", label="client alone (mean)")
        ax.set_title(f"Fashion-MNIST ({cfg['image_size']} px), {cfg['n_clients']} clients, {title}", fontsize=9)
        ax.set_xlabel("round")
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(0, 100)
        ax.legend(fontsize=7, loc="lower right")


def read_record(path):
    """``(res, run, cfg)`` of a record."""
    rec = H.read_json(path)
    return rec["res"], {**rec["run"], "started": H.dt.datetime.fromisoformat(rec["run"]["started"])}, rec["cfg"]


def main(argv=None):
    p = H.parser(__doc__)
    p.add_argument("--task", choices=(*TASKS, "all"), default="all",
                   help="which task to run (default: all); the section is rebuilt from both records either way")
    p.add_argument("--record", default=str(RECORD), help="BBC News JSON record to write (full run) or read")
    p.add_argument("--image-record", default=str(IMAGE_RECORD), help="Fashion-MNIST JSON record to write or read")
    args = p.parse_args(argv)
    records = {"bbc_news": args.record, "fashion_mnist": args.image_record}
    if not args.report_only:
        for task in TASKS if args.task == "all" else (args.task,):
            configs = CONFIGS if task == "bbc_news" else IMAGE_CONFIGS
            cfg = dict(configs["quick" if args.quick else "full"])
            run = H.start_run(args.threads, ["flwr", "ray", "peft", "skorch", "numpy"])
            if task == "fashion_mnist":
                log(f"fashion_mnist: about {estimate_image_minutes(cfg):.0f} min on an idle 2-core CPU with 1 thread "
                    "(more on a loaded machine)")
            res = measure(cfg, task)
            run = H.finish_run(run, notes="One process; Ray gets 1 CPU (one client actor at a time).")
            if args.quick:
                log(f"{task}: " + str({k: v.get("fed_acc", v.get("acc")) for k, v in res.items() if isinstance(v, dict)})
                    + f" in {run['elapsed']:.0f} s (nothing written)")
                continue
            H.write_json(records[task], {"cfg": cfg, "res": res, "run": run})
        if args.quick:
            return
    res, run, cfg = read_record(records["bbc_news"])
    img = read_record(records["fashion_mnist"]) if Path(records["fashion_mnist"]).exists() else None
    write_report((res, run, cfg), img)
    plot(res, cfg, PLOT, None if img is None else (img[0], img[2]))


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Benchmark of ``FederatedTransferClassifier`` (issue 17, federated half) on BBC News.

BBC News (``all-MiniLM-L6-v2``, LoRA) split over 5 clients, IID and
strongly non-IID (Dirichlet(0.1) over classes): federated LoRA (Flower
FedAvg, simulation runtime) against centralised LoRA on all training rows
and against each client alone; bytes sent per client and round against the
full model; rounds until the global model reaches 95 % of the centralised
accuracy (Flower's centralised evaluation on the held-out rows after each
round). One seed, small sizes: the machine is a shared 2-core CPU.

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_federated.py               # full run, record + section + plot
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_federated.py --quick       # smoke run, writes nothing
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_federated.py --report-only # rebuild from the record

Record: ``benchmarks/results/federated/results.json``; prose: ``sections/federated_notes.md``.
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


def federate(cfg, X, y, groups, eval_set, **dp):
    """FederatedTransferClassifier (LoRA, FedAvg) fitted on the partition ``groups``; the fit and its seconds."""
    import warnings

    from sktransfer.federated import FederatedOneClassWarning, FederatedTransferClassifier

    fed = FederatedTransferClassifier(
        H.TEXT, strategy="lora", rounds=cfg["rounds"], local_epochs=cfg["local_epochs"],
        max_length=cfg["max_length"], random_state=cfg["seed"], federated_evaluation=False, **LORA, **dp,
    )
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FederatedOneClassWarning)
        fed.fit(X, y, groups=groups, eval_set=eval_set)
    return fed, time.perf_counter() - t


def measure(cfg):

    X, y, X_test, y_test = load(cfg)
    y_test = np.asarray(y_test)
    out = {"n_train": len(X), "n_test": len(X_test)}
    epochs = cfg["rounds"] * cfg["local_epochs"]  # centralised and client-alone train as many epochs as a client in the federation
    t = time.perf_counter()
    central = lora(cfg, epochs, cfg["seed"]).fit(X, y)
    out["central"] = {"acc": float(central.score(X_test, y_test)), "fit_s": time.perf_counter() - t,
                      "full_model_bytes": int(sum(p.numel() * p.element_size() for p in central.net_.module_.parameters())),
                      "adapter_bytes": int(central.adapter_nbytes_)}
    log(f"centralised LoRA: {out['central']['acc']:.3f} ({out['central']['fit_s']:.0f} s)")
    for kind in ("iid", "dirichlet"):
        groups = partition(np.asarray(y), cfg["n_clients"], kind, cfg["alpha"], cfg["seed"])
        sizes = [int((groups == c).sum()) for c in range(cfg["n_clients"])]
        classes_per_client = [int(len(np.unique(np.asarray(y)[groups == c]))) for c in range(cfg["n_clients"])]
        alone = []
        t = time.perf_counter()
        for c in range(cfg["n_clients"]):
            rows = [x for x, g in zip(X, groups) if g == c]
            yc = np.asarray(y)[groups == c]
            if len(np.unique(yc)) < 2:
                # A one-class client alone predicts that class for every row.
                alone.append(float(np.mean(y_test == yc[0])))
                continue
            # predict, not score: a client alone never saw the topics it lacks (score refuses unseen labels).
            alone.append(float(np.mean(lora(cfg, epochs, cfg["seed"]).fit(rows, yc).predict(X_test) == y_test)))
        alone_s = time.perf_counter() - t
        log(f"{kind}: clients alone {np.round(alone, 3)} ({alone_s:.0f} s)")
        fed, fed_s = federate(cfg, X, y, groups, (X_test, y_test))
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


def report(res, run, cfg, out=None):
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
            target_rows.append([f"IID: federated LoRA within 2 points of centralised LoRA after <= 20 rounds "
                                f"(here {cfg['rounds']} rounds)", f"{d:+.1f} points", "met" if d >= -2 else "**not met**"])
        else:
            target_rows.append(["non-IID: the gap, reported", f"{d:+.1f} points", "–"])
    r = res["iid"]
    frac = r["bytes_per_client_round"] / r["full_model_bytes"]
    target_rows.append(["bytes per client and round <= 5 % of the full model",
                        f"{r['bytes_per_client_round'] / 1e6:.3f} MB vs {r['full_model_bytes'] / 1e6:.1f} MB = {100 * frac:.2f} %",
                        "met" if frac <= 0.05 else "**not met**"])
    per_round = H.md_table(
        ["round"] + [str(i + 1) for i in range(cfg["rounds"])],
        [[lab] + [f"{100 * a:.1f}" for a in res[k]["round_acc"]] for k, lab in (("iid", "IID"), ("dirichlet", "non-IID"))],
        "l" + "r" * cfg["rounds"])
    times = H.md_table(
        ["arm", "IID (s)", "non-IID (s)"],
        [["centralised LoRA (once)", f"{c['fit_s']:.0f}", "–"],
         ["5 clients alone (sequential)", f"{res['iid']['alone_s']:.0f}", f"{res['dirichlet']['alone_s']:.0f}"],
         ["federated (Flower simulation, Ray, 1 client at a time)", f"{res['iid']['fed_s']:.0f}",
          f"{res['dirichlet']['fed_s']:.0f}"]], "lrr")
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
        "header": H.header(run), "text": H.TEXT, "cfg": ", ".join(f"{k}={v}" for k, v in cfg.items()),
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
    H.write_section("federated", blocks, out)


def plot(res, cfg, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
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


def main(argv=None):
    p = H.parser(__doc__)
    p.add_argument("--record", default=str(RECORD), help="JSON record to write (full run) or read (--report-only)")
    args = p.parse_args(argv)
    if args.report_only:
        rec = H.read_json(args.record)
        cfg, res, run = rec["cfg"], rec["res"], {**rec["run"], "started": H.dt.datetime.fromisoformat(rec["run"]["started"])}
    else:
        cfg = dict(CONFIGS["quick" if args.quick else "full"])
        run = H.start_run(args.threads, ["flwr", "ray", "peft", "skorch", "numpy"])
        res = measure(cfg)
        run = H.finish_run(run, notes="One process; Ray gets 1 CPU (one client actor at a time).")
        if args.quick:
            return log(str({k: v.get("fed_acc", v.get("acc")) for k, v in res.items() if isinstance(v, dict)}))
        H.write_json(args.record, {"cfg": cfg, "res": res, "run": run})
    report(res, run, cfg)
    plot(res, cfg, PLOT)


if __name__ == "__main__":
    main()

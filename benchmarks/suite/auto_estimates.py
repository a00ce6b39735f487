#!/usr/bin/env python
"""AutoTransferClassifier's cost estimates against the fits' real times.

Runs ``AutoTransferClassifier`` on one suite task with a budget no
candidate reaches (``--budget``, default 1e6 s: the budget check measures
the backbone's rates and estimates, but skips nothing; ``--budget 0``:
``budget_s=None``, no rates measured) and, before each candidate's fit,
asks the search's ``_SearchLog`` what it expects the fit to cost (what a
budgeted search compares with the time left); after the fit, the measured
time, and the load average then (the machine may be shared). Writes
``benchmarks/suite/estimates/<task>_n<N>_s<seed>[_<tag>].json`` and prints
a line per fit (estimate, actual, ratio), and the refit.

Usage::

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/suite/auto_estimates.py \
        --task sentiment_sentences --n 200 --seed 0 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import _common as C  # noqa: E402
import methods as M  # noqa: E402
import tasks as T  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="sentiment_sentences")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--budget", type=float, default=1e6, help="budget_s (0: None)")
    ap.add_argument("--strategies", nargs="*", help="keep only these strategies of the default candidates")
    ap.add_argument("--tag", default="", help="suffix of the output file")
    args = ap.parse_args(argv)

    import torch

    from sktransfer import AutoTransferClassifier
    from sktransfer import _auto

    torch.set_num_threads(args.threads)
    split = T.load_split(args.task)
    X, y = T.draw(split, args.n, args.seed)
    rows = []
    pending = {}
    orig_check, orig_record = _auto._SearchLog.check, _auto._SearchLog.record

    def check(self, key, strategy, settings, resource, n):
        est = self.estimate(key, strategy, settings, n)
        pending[key] = {"key": key, "strategy": strategy, "n": int(n), "resource": int(resource),
                        "estimate_s": est, "t0": time.monotonic()}
        return orig_check(self, key, strategy, settings, resource, n)

    def record(self, key, strategy, settings, resource, n, seconds):
        row = dict(pending.pop(key, {"key": key, "strategy": strategy, "n": int(n), "estimate_s": None}))
        row.pop("t0", None)
        row["actual_s"] = float(seconds)
        row["loadavg_1min"] = os.getloadavg()[0]
        row["rates"] = self.rates_for(key) if hasattr(self, "rates_for") else None
        rows.append(row)
        e = row["estimate_s"]
        print(f"{strategy:12s} n={n:4d} estimate {'-' if e is None else f'{e:8.1f}'} s  actual {seconds:7.1f} s"
              + ("" if not e else f"  ratio {e / seconds:6.2f}") + f"  load {row['loadavg_1min']:.1f}", flush=True)
        out = orig_record(self, key, strategy, settings, resource, n, seconds)
        state["log"] = self
        return out

    state = {}
    orig_choice = _auto.AutoTransferClassifier._refit_choice

    def refit_choice(self, results, best, log, n):  # the search is over: what follows is the refit
        p = results["params"][best]
        state["refit_estimate_s"] = log.estimate(_auto._key(p["strategy"], p["settings"], p["backbone"]),
                                                 p["strategy"], p["settings"], n)
        state["search_end"] = time.monotonic()
        return orig_choice(self, results, best, log, n)

    _auto._SearchLog.check, _auto._SearchLog.record = check, record
    _auto.AutoTransferClassifier._refit_choice = refit_choice
    candidates = None
    if args.strategies:
        candidates = [c for c in _auto.default_candidates(T.TASKS[args.task].modality)
                      if c["strategy"] in args.strategies]
    auto = AutoTransferClassifier(T.TASKS[args.task].backbone, max_length=M.MAX_LENGTH, candidates=candidates,
                                  budget_s=args.budget or None, random_state=args.seed, verbose=1)
    t = time.monotonic()
    auto.fit(X, y)
    end = time.monotonic()
    best = auto.best_params_
    refit_est, refit_s = state.get("refit_estimate_s"), end - state["search_end"]
    search_s = sum(r["actual_s"] for r in rows)
    print(f"best {best}; refit on {len(y)}: estimate {refit_est} s, actual {refit_s:.1f} s; "
          f"fit_seconds_ {auto.fit_seconds_:.1f}; candidate fits {search_s:.1f} s", flush=True)
    acc = float((auto.predict(split.X_test) == split.y_test).mean())
    out = {"task": args.task, "n_per_class": args.n, "seed": args.seed, "n_train": len(y), "threads": args.threads,
           "budget_s": args.budget or None, "candidates": candidates,
           "fits": rows, "best": best, "refit_estimate_s": refit_est, "refit_s": refit_s, "fit_seconds": auto.fit_seconds_,
           "accuracy": acc, "leaderboard": json.loads(auto.leaderboard_.to_json(orient="records")),
           "loadavg": os.getloadavg(), "date": C.utc_now().isoformat(timespec="seconds"),
           "git_commit": C.git_commit(), "versions": C.versions(extra=("peft", "skorch"))}
    dest = HERE / "estimates" / f"{args.task}_n{args.n}_s{args.seed}{'_' + args.tag if args.tag else ''}.json"
    dest.parent.mkdir(exist_ok=True)
    dest.write_text(json.dumps(out, indent=1, default=str))
    print(f"accuracy {acc:.3f}; wrote {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

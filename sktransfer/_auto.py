"""`AutoTransferClassifier`: the transfer strategy as a learned choice.

The search is scikit-learn's successive halving
(:class:`~sklearn.model_selection.HalvingGridSearchCV`), run over one small
meta-estimator, :class:`_Candidate`, whose parameters name a strategy (the
no-transfer baseline, the frozen probe, few-shot, LoRA, fine-tuning) and its
settings. What this
module adds around the halving loop, and only around it:

* the candidate space and a prior cost model that puts the cheapest first;
* a time budget, enforced inside each candidate's ``fit`` from the times
  measured so far (sklearn's loop itself is untouched);
* one embedding cache for the whole search;
* the leaderboard and its plot.
"""

import math
import numbers
import os
import tempfile
import time
import uuid
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from ._inputs import as_rows
from ._utils import check_random_state_int, trained_model_tags as _trained_model_tags
from ._validation import check_labels

STRATEGIES = ("baseline", "probe", "few_shot", "lora", "linear_probe", "partial", "full")
_FINE_TUNING = ("linear_probe", "partial", "full")
# Fitted in seconds (no training of a network): always run, whatever the budget.
_CHEAP = ("baseline", "probe")
# Set by AutoTransferClassifier itself, so not allowed in a candidate's settings.
_RESERVED = ("backbone", "strategy", "max_length", "image_size", "device", "random_state", "cache")


# ------------------------------------------------------------ candidates
def default_candidates(modality):
    """The default search space, cheapest first.

    * ``baseline``: no pretrained model -- TF-IDF (texts) or raw pixels
      (images) and ``LogisticRegression``. What a user would do by hand;
      it wins on long, vocabulary-driven texts and tiny grayscale images
      (``benchmarks/RESULTS.md``, "Evaluation suite"), and the search then
      says so (``best_strategy_ == "baseline"``) instead of returning a
      worse transfer model.
    * ``probe`` × 3 (``C`` = 0.1, 1, 10): frozen embeddings and
      ``LogisticRegression``. Embedding is one forward pass per input,
      cached and shared by the three (and by every fold and iteration), so
      the three cost about one. The strongest baseline at 8-32 labels per
      class, and the fallback the budget always leaves room for.
    * ``few_shot``: :class:`~sktransfer.FewShotClassifier` at its
      defaults (SetFit; strongest with few labels per class).
    * ``linear_probe`` (images only): :class:`~sktransfer.FineTunedClassifier`
      with a frozen backbone, its head trained by SGD from the probe's
      (a different fit from the cached probe's); on text it is the probe
      again, at one forward pass per input and epoch, so it is left out.
    * ``lora``: :class:`~sktransfer.LoRAClassifier` at its defaults.
    * ``partial`` and ``full``: :class:`~sktransfer.FineTunedClassifier`
      at its defaults (more data: a few hundred labels and more).

    Trained candidates keep their estimator's own defaults, so that the
    defaults chosen for each estimator (leave-one-task-out on the
    evaluation suite) carry over here. One setting per trained strategy
    keeps the search practical on a CPU: 8 candidates for text, 9 for
    images, i.e. two rounds of halving with ``factor=3``.

    Parameters
    ----------
    modality : {"text", "image"}

    Returns
    -------
    candidates : list of dict
        Each ``{"strategy": ..., **settings}``.
    """
    out = [{"strategy": "baseline"}]
    out += [{"strategy": "probe", "C": c} for c in (0.1, 1.0, 10.0)]
    out.append({"strategy": "few_shot"})
    if modality == "image":
        out.append({"strategy": "linear_probe"})
    out += [{"strategy": "lora"}, {"strategy": "partial"}, {"strategy": "full"}]
    return out


def _estimator_class(strategy):
    if strategy in _CHEAP:
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression
    if strategy == "few_shot":
        from ._few_shot import FewShotClassifier

        return FewShotClassifier
    if strategy == "lora":
        from ._lora import LoRAClassifier

        return LoRAClassifier
    from ._fine_tuning import FineTunedClassifier

    return FineTunedClassifier


def _check_candidate(candidate, i):
    """Validate one candidate dict; return ``(strategy, settings)``."""
    where = f"candidates[{i}]"
    if not isinstance(candidate, dict):
        raise ValueError(
            f"{where} must be a dict such as {{'strategy': 'probe', 'C': 1.0}}, got {type(candidate).__name__}."
        )
    strategy = candidate.get("strategy")
    if strategy not in STRATEGIES:
        raise ValueError(f"{where} has strategy={strategy!r}; the strategy must be one of {STRATEGIES}.")
    settings = {k: v for k, v in candidate.items() if k != "strategy"}
    cls = _estimator_class(strategy)
    allowed = set(cls().get_params(deep=False)) - set(_RESERVED)
    if strategy in _CHEAP:
        allowed -= {"n_jobs", "verbose"}
    bad = sorted(set(settings) - allowed)
    if bad:
        reserved = sorted(set(bad) & set(_RESERVED))
        why = (
            f" ({reserved} are set by AutoTransferClassifier itself)"
            if reserved
            else ""
        )
        target = "LogisticRegression" if strategy in _CHEAP else cls.__name__
        raise ValueError(
            f"{where} (strategy={strategy!r}) sets {bad}, which are not {target} parameters it may set{why}. "
            f"Allowed: {sorted(allowed)}."
        )
    return strategy, settings


def build_estimator(strategy, settings, backbone, *, modality=None, max_length=None, image_size=None, cache=None,
                    device="auto", random_state=None):
    """The unfitted estimator of one candidate (``modality``: the baseline's inputs)."""
    settings = dict(settings or {})
    if strategy == "baseline":
        from ._baseline import baseline_estimator

        return baseline_estimator(modality, **settings)
    if strategy == "probe":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline

        from ._feature_extractor import PretrainedFeatureExtractor

        extractor = PretrainedFeatureExtractor(
            backbone, max_length=max_length, image_size=image_size, device=device, cache=cache, verbose=False
        )
        return Pipeline([("extractor", extractor), ("head", LogisticRegression(**{"max_iter": 2000, **settings}))])
    common = {"max_length": max_length, "image_size": image_size, "device": device, "random_state": random_state}
    cls = _estimator_class(strategy)
    if strategy in _FINE_TUNING:
        return cls(backbone, strategy=strategy, **common, **settings)
    return cls(backbone, **common, **settings)


# The cost model in forward passes of one input, before anything is measured
# (the search's order, cheapest first): a training step counts as three
# forwards (a backward about two), loading a model as nothing.
_UNIT_RATES = {"forward": 1.0, "train": 3.0, "train_all": None, "load": 0.0, "groups": None}


def _prior_seconds(strategy, settings, n, rates):
    """Expected seconds of one fit on ``n`` inputs, from a backbone's ``rates``.

    ``rates`` (see :func:`_measure_rates`): ``forward``, seconds per input of
    an inference forward pass; ``train``, seconds per input of a training
    step (forward, backward through the whole backbone, AdamW update) with
    the token-embedding tables frozen, ``train_all`` with every weight
    trained (None: as ``train``); ``load``, seconds to load a trainable copy
    of the backbone (each trained fit loads one); ``groups``, the backbone's
    number of block groups (None: unknown).
    The cost is counted in what each strategy runs, so it scales with the
    rows, the epochs or pairs, and, through the measured rates, with the
    inputs' length, the threads and the machine's load:

    * probe: one forward per input (the backbone is shared, not loaded);
    * fine-tuning and LoRA: the load, one forward per input (LP-FT's head
      from the probe), then ``max_epochs × n`` training inputs: a step with
      every weight trained for ``"full"``; for ``"partial"`` the forward
      and the backward's share of the ``unfreeze_last`` top block groups;
      for LoRA three quarters of the backward (input gradients through
      every layer, weight gradients of the adapters only); for
      ``"linear_probe"`` a forward;
    * few-shot: the load, ``max_epochs × ceil(n_pairs / batch_size)`` steps
      of at most ``2 × batch_size`` distinct inputs each (``n_pairs="auto"``:
      20 per input, at most 1,024), then one forward per input (the head's
      embeddings).
    """
    if strategy == "baseline":
        return 0.0
    fwd, train = float(rates["forward"]), max(float(rates["train"]), float(rates["forward"]))
    if strategy == "probe":
        return n * fwd
    params = _estimator_class(strategy)().get_params(deep=False)
    params.update(settings)
    epochs = float(params.get("max_epochs", 1))
    load = float(rates.get("load") or 0.0)
    if strategy == "few_shot":
        from ._few_shot import resolve_n_pairs

        steps = math.ceil(resolve_n_pairs(params["n_pairs"], n) / params["batch_size"]) * epochs
        return load + steps * min(2.0 * params["batch_size"], n) * train + n * fwd
    backward = train - fwd
    if strategy == "partial":
        groups = rates.get("groups")
        share = 0.5 if not groups else min(1.0, params["unfreeze_last"] / groups)
        per_input = fwd + backward * share
    else:
        per_input = {"linear_probe": fwd, "lora": fwd + 0.75 * backward,
                     "full": max(float(rates.get("train_all") or train), train)}[strategy]
    return load + n * fwd + epochs * n * per_input


def _prior_forwards(strategy, settings, n):
    """Prior cost of one fit on ``n`` inputs, in forward passes of one input.

    Orders the first round (cheapest first); scaled by the probe's seconds
    per input, the fallback estimate when a backbone's rates could not be
    measured (see :class:`_SearchLog`).
    """
    return _prior_seconds(strategy, settings, n, _UNIT_RATES)


def _measure_rates(backbone, X, *, max_length=None, image_size=None, device="auto", batch_size=8,
                   random_state=None, forward_only=False):
    """Time a few steps of ``backbone`` on rows of ``X``, here and now: the rates of :func:`_prior_seconds`.

    Loads a trainable copy (as each trained fit does: ``load``), then on
    ``batch_size`` rows drawn from ``X`` (so at their length: texts padded to
    the batch's longest, images at their input size) times one inference
    forward (after an untimed one) and training steps (forward, backward,
    AdamW update): with every weight trained (``train_all``), and with the
    token-embedding tables frozen (``train``; few-shot tuning, LoRA and
    partial fine-tuning leave them alone; the same step when the backbone has
    none). Measured in this process, so the threads torch uses and the
    machine's load are in the figures. About the time of one load and 64
    inputs' forward passes (2-5 s for MiniLM on texts on an idle 2-core
    CPU; 58 s at 16 rows of 128 tokens with 10 processes per core, hence 8
    rows: per input, a batch of 8 costs on a CPU what one of 16 does).
    ``forward_only``: only the forward, on
    the process's shared copy (no load; ``{"forward": ...}``), to follow a
    machine whose load changes.
    """
    import torch

    from ._utils import resolve_device
    from .backbones import load_backbone

    dev = resolve_device(device)
    t0 = time.perf_counter()
    bb = load_backbone(backbone, device=dev, shared=forward_only)
    load = time.perf_counter() - t0
    items = bb.check_inputs(X)
    rng = np.random.RandomState(random_state)
    rows = np.sort(rng.choice(len(items), size=min(int(batch_size), len(items)), replace=False))
    batch = bb.module_inputs(items, rows, max_length=max_length, image_size=image_size)
    inputs = {k: v.to(dev) for k, v in batch.items()}
    body, norm = bb.body, bb.input_normalization()
    if norm is not None:
        norm = norm.to(dev)
    # CUDA runs asynchronously: wait for the work before reading the clock.
    sync = torch.cuda.synchronize if str(dev).startswith("cuda") else (lambda: None)

    def forward():
        if "X" in inputs:  # uint8 crops, normalised inside the trained module
            x = inputs["X"]
            return body(norm(x) if norm is not None else x.float())
        return body(**inputs)

    def step():
        params = [p for p in body.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=0.0)  # lr 0: the update's cost, weights unchanged
        t = time.perf_counter()
        forward().float().pow(2).mean().backward()
        optimizer.step()
        sync()
        seconds = (time.perf_counter() - t) / len(rows)
        body.zero_grad(set_to_none=True)
        return seconds

    body.eval()
    with torch.inference_mode():
        forward()  # warm-up (allocations, lazy initialisation)
        sync()
        t = time.perf_counter()
        forward()
        sync()
        fwd = (time.perf_counter() - t) / len(rows)
    if forward_only:
        return {"forward": fwd}
    body.train()
    for p in body.parameters():
        p.requires_grad_(True)
    train_all = step()
    vocab = [m for m in body.modules() if isinstance(m, torch.nn.Embedding) and m.num_embeddings >= 1000]
    for m in vocab:
        m.weight.requires_grad_(False)
    train = step() if vocab else train_all
    try:
        groups = len(bb.block_groups())
    except NotImplementedError:
        groups = None
    return {"forward": fwd, "train": max(train, fwd), "train_all": max(train_all, train, fwd), "load": load,
            "groups": groups}


def _describe(settings):
    return ", ".join(f"{k}={v!r}" for k, v in sorted(settings.items())) or "defaults"


def _label(backbone):
    if backbone is None:  # the baseline's: no pretrained model
        return "none"
    return backbone if isinstance(backbone, str) else type(backbone).__name__


def _key(strategy, settings, backbone):
    return f"{strategy} | {_label(backbone)} | {_describe(settings)}"


# ------------------------------------------------------------ the budget
def _accuracy_or_nan(estimator, X, y):
    """Halving's scorer: accuracy, NaN for a candidate skipped (budget) or failed.

    NaN ranks last in halving's choice of the next round's candidates.
    """
    if getattr(estimator, "skipped_", None) is not None:
        return np.nan
    return float(np.mean(np.asarray(estimator.predict(X)) == np.asarray(y)))


def _stratified_subset(y, m, random_state):
    """Indices of ``m`` rows of ``y``, classes in proportion, at least 2 of each (where there are 2).

    Never more than ``m`` rows, unless the floors of 2 per class alone are
    more (``m < 2 × n_classes``): then the floors.

    Halving's own ``n_samples`` resource draws rows uniformly: at the first
    round's sizes a class often ends up with a single example, which
    contrastive few-shot tuning cannot use (one pair needs two).
    """
    from sklearn.utils import check_random_state

    rng = check_random_state(random_state)
    y = np.asarray(y)
    n = len(y)
    classes, codes, counts = np.unique(y, return_inverse=True, return_counts=True)
    floor = np.minimum(2, counts)
    quota = np.maximum(floor, np.floor(m * counts / n).astype(int))
    # The floors can push the total over m: take the excess back from the
    # largest classes, never below their floor. If the floors alone are over
    # m, the floors are used (more than m rows; the caller records the rows
    # really used, see _Candidate.n_rows_).
    excess = quota.sum() - m
    while excess > 0 and (quota > floor).any():
        k = int(np.argmax(np.where(quota > floor, quota, -1)))
        quota[k] -= 1
        excess -= 1
    spare = m - quota.sum()
    if spare > 0:  # the rounding remainder, to classes drawn in proportion to what they have left
        left = counts - quota
        extra = rng.choice(np.repeat(np.arange(len(classes)), left), size=min(spare, left.sum()), replace=False)
        quota += np.bincount(extra, minlength=len(classes))
    idx = [rng.choice(np.flatnonzero(codes == k), size=q, replace=False) for k, q in enumerate(quota)]
    return np.sort(np.concatenate(idx))


class _SearchLog:
    """Times of one search, shared by its candidates' fits (same process).

    Each fit of a candidate records ``(resource, n_inputs, seconds)``.
    Before a fit, its cost is estimated from the candidate's own earlier
    fits, extrapolated to the new number of inputs along its cost model
    (:func:`_prior_seconds`: linear in the rows for fine-tuning, nearly
    flat for few-shot, whose pairs do not grow with the rows), or, not yet
    timed, from the cost model with the backbone's rates measured at the
    first trained candidate's fit (:meth:`measure`, a few steps on the
    search's own inputs, the forward re-timed at each round so that the
    rates follow the machine's load), times the ratio of measured to
    expected seconds of the trained fits so far (:meth:`correction`). If
    the rates could not be measured, the probe's seconds per input stand
    for a forward pass.
    A trained candidate is not started when its remaining folds of this
    round plus the refit reserve are expected to end after the deadline.
    The reserve is one shared refit: the largest expected refit on all the
    data among the live candidates (those fitted in the latest round that
    has fits, and the candidate being checked), since only one of them is
    refit; so a later candidate cannot spend the time an earlier one's
    refit needs. The probe is never skipped: it is the cheapest candidate
    and the one that always leaves a fitted model.
    """

    def __init__(self, deadline, n_splits, n_total, verbose=0):
        self.deadline = deadline
        self.n_splits = int(n_splits)
        self.n_total = int(n_total)
        self.verbose = verbose
        self.fits = {}  # key -> [(resource, n, seconds)]
        self.status = {}  # (key, resource) -> "over budget" / "failed: ..."
        self.seconds_per_input = None  # the probe's (with its first load): the fallback forward pass
        self.rates = {}  # backbone label -> measured rates (_measure_rates), None where that failed
        self.first = {}  # backbone label -> (its first rates, the resources its forward was re-measured at)
        self.fit_rates = {}  # key -> the rates in force at each of its fits (aligned with fits[key])
        self.trained = []  # (key, strategy, settings, n, seconds, rates then) of trained candidates' fits
        self.meta = {}  # key -> (strategy, settings)
        self.rows_used = {}  # resource (max_samples) -> the most rows a fit really used

    def measure(self, backbone, X, resource=None, **kwargs):
        """Measure ``backbone``'s rates on rows of ``X`` (:func:`_measure_rates`).

        Once per search and backbone; then, at each new ``resource`` (round),
        its forward alone again (about a second), and every rate is scaled by
        how much slower or faster the forward has become since the first
        measure: the machine's load may change during a search.
        """
        label = _label(backbone)
        if label in self.rates:
            first = self.first.get(label)
            if first is None or resource in first[1]:
                return
            first[1].add(resource)
            try:
                now = _measure_rates(backbone, X, forward_only=True, **kwargs)["forward"]
            except Exception:  # noqa: BLE001 - keep the rates measured before
                return
            drift = now / max(first[0]["forward"], 1e-12)
            scaled = ("forward", "train", "train_all", "load")
            self.rates[label] = {**first[0], **{k: first[0][k] * drift for k in scaled if first[0].get(k) is not None}}
            if self.verbose:
                print(f"[AutoTransferClassifier] {label}: forward {1e3 * now:.1f} ms per input, "
                      f"{drift:.2f}x the first measure")
            return
        t0 = time.monotonic()
        try:
            self.rates[label] = _measure_rates(backbone, X, **kwargs)
            self.first[label] = (self.rates[label], {resource})
        except Exception as exc:  # noqa: BLE001 - the estimate falls back on the probe's rate
            self.rates[label] = None
            if self.verbose:
                print(f"[AutoTransferClassifier] {label}: rates not measured ({type(exc).__name__}: {exc}); "
                      "the probe's seconds per input stand in")
            return
        if self.verbose:
            r = self.rates[label]
            print(f"[AutoTransferClassifier] {label}: {1e3 * r['forward']:.1f} ms per input forward, "
                  f"{1e3 * r['train']:.1f} ms per input training step, load {r['load']:.1f} s "
                  f"(measured in {time.monotonic() - t0:.1f} s)")

    def rates_for(self, key):
        """The rates of ``key``'s backbone: measured, else the prior's in units of the probe's
        seconds per input, else None."""
        measured = self.rates.get(key.split(" | ")[1] if " | " in key else None)
        if measured:
            return measured
        if self.seconds_per_input is None:
            return None
        return {**_UNIT_RATES, "forward": self.seconds_per_input, "train": 3.0 * self.seconds_per_input}

    def correction(self):
        """Median ratio of measured to expected seconds over the trained fits so far (1.0 before any),
        each expected at the rates in force when it ran."""
        ratios = []
        for key, strategy, settings, m, s, rates in self.trained:
            expected = _prior_seconds(strategy, settings, m, rates or self.rates_for(key) or _UNIT_RATES)
            if expected > 0:
                ratios.append(s / expected)
        return float(np.median(ratios)) if ratios else 1.0

    def estimate(self, key, strategy, settings, n):
        """Expected seconds of one fit of ``key`` on ``n`` inputs (None: unknown)."""
        rates = self.rates_for(key)
        done = self.fits.get(key)
        if done:  # its own times, along its cost model's shape in n, and the rates' change since
            shape = rates or _UNIT_RATES
            expected = _prior_seconds(strategy, settings, n, shape)
            then = self.fit_rates.get(key, [None] * len(done))
            return max(s * expected / max(_prior_seconds(strategy, settings, m, r or shape), 1e-12)
                       for (_, m, s), r in zip(done, then))
        if rates is None:
            if not self.trained:
                return None
            rates = _UNIT_RATES  # in forward passes; correction() turns them into seconds
        return _prior_seconds(strategy, settings, n, rates) * self.correction()

    def refit_reserve(self, key=None, strategy=None, settings=None):
        """Expected seconds of the largest refit on all the data among the live candidates.

        Live: fitted in the latest round (largest resource) that has fits,
        plus ``key`` (the candidate about to start), whatever it has done.
        """
        if not self.fits:
            live = {}
        else:
            latest = max(r for done in self.fits.values() for r, _, _ in done)
            live = {k: self.meta[k] for k, done in self.fits.items() if any(r == latest for r, _, _ in done)}
        if key is not None:
            live[key] = (strategy, settings)
        costs = [self.estimate(k, s, st, self.n_total) for k, (s, st) in live.items()]
        return max([c for c in costs if c is not None], default=0.0)

    def check(self, key, strategy, settings, resource, n):
        """None to go ahead, else why the candidate is not started."""
        if self.deadline is None or strategy in _CHEAP:
            return None
        if (key, resource) in self.status:  # skipped (or failed) in an earlier fold of this round
            return self.status[(key, resource)]
        now = time.monotonic()
        fold = self.estimate(key, strategy, settings, n)
        started = sum(1 for r, _, _ in self.fits.get(key, []) if r == resource)
        remaining = max(1, self.n_splits - started)
        reserve = self.refit_reserve(key, strategy, settings)  # its own refit on all the data included
        needed = (0.0 if fold is None else fold * remaining) + reserve
        if now + needed > self.deadline:
            left = max(0.0, self.deadline - now)
            # What it expected, kept in leaderboard_["status"]: a budget that holds no trained candidate shows.
            msg = f"over budget: {needed:.0f} s expected, {left:.0f} s left"
            self.status[(key, resource)] = msg
            if self.verbose:
                print(f"[AutoTransferClassifier] {key}: not started, {needed:.1f} s expected, {left:.1f} s left")
            return msg
        return None

    def record(self, key, strategy, settings, resource, n, seconds):
        self.fits.setdefault(key, []).append((resource, int(n), float(seconds)))
        rates = self.rates_for(key)
        self.fit_rates.setdefault(key, []).append(rates)
        self.meta[key] = (strategy, dict(settings))
        if strategy not in _CHEAP:
            self.trained.append((key, strategy, dict(settings), int(n), float(seconds), rates))
        elif strategy == "probe":  # the baseline embeds nothing: its rate says nothing of a forward pass
            rate = seconds / max(n, 1)
            self.seconds_per_input = max(rate, self.seconds_per_input or 0.0)
        if self.verbose:
            print(f"[AutoTransferClassifier] {key}: fitted on {n} inputs in {seconds:.1f} s")

    def failed(self, key, resource, exc):
        msg = f"failed: {type(exc).__name__}: {exc}"[:300]
        self.status[(key, resource)] = msg
        if self.verbose:
            print(f"[AutoTransferClassifier] {key}: {msg}")
        return msg


_SEARCHES = {}  # token -> _SearchLog of a search running in this process


def _rows_used(n_resources, log):
    """Halving's resources (``max_samples``) as the rows the fits really used."""
    return np.asarray([log.rows_used.get(int(r), int(r)) for r in n_resources], dtype=int)


class _Candidate(ClassifierMixin, BaseEstimator):
    """One strategy with its settings: the estimator the halving search tunes.

    ``strategy``, ``settings`` and ``backbone`` are the searched
    parameters (``backbone`` is None for the baseline); ``max_samples`` is
    halving's resource (a stratified subset of the training fold, at least
    two examples per class); the rest are shared by every candidate of a
    search (``modality``: what the baseline reads). ``search`` names the running
    search's :class:`_SearchLog` (budget and timings); None fits without a
    budget, and a failure raises.
    """

    def __init__(self, strategy="probe", settings=None, backbone="sentence-transformers/all-MiniLM-L6-v2", *,
                 max_samples=None, modality=None, max_length=None, image_size=None, cache=None, device="auto",
                 random_state=None, search=None):
        self.strategy = strategy
        self.settings = settings
        self.backbone = backbone
        self.max_samples = max_samples
        self.modality = modality
        self.max_length = max_length
        self.image_size = image_size
        self.cache = cache
        self.device = device
        self.random_state = random_state
        self.search = search

    def fit(self, X, y):
        from sklearn.utils import _safe_indexing

        settings = dict(self.settings or {})
        log = _SEARCHES.get(self.search) if self.search is not None else None
        key = _key(self.strategy, settings, self.backbone)
        y = np.asarray(y)
        resource = len(y) if self.max_samples is None else int(self.max_samples)
        if resource < len(y):
            idx = _stratified_subset(y, resource, self.random_state)
            X, y = _safe_indexing(X, idx), y[idx]
        self.n_rows_ = len(y)  # can exceed max_samples: see _stratified_subset
        self.classes_ = np.unique(y)
        self.skipped_ = None
        if log is not None:
            log.rows_used[resource] = max(log.rows_used.get(resource, 0), len(y))
            if log.deadline is not None and self.strategy not in _CHEAP and time.monotonic() < log.deadline:
                # The first trained candidate of this backbone times a few steps on these rows.
                log.measure(self.backbone, X, resource=resource, max_length=self.max_length,
                            image_size=self.image_size, device=self.device, random_state=self.random_state)
            self.skipped_ = log.check(key, self.strategy, settings, resource, len(y))
            if self.skipped_ is not None:
                return self
        est = build_estimator(
            self.strategy, settings, self.backbone, modality=self.modality, max_length=self.max_length,
            image_size=self.image_size, cache=self.cache, device=self.device, random_state=self.random_state,
        )
        t0 = time.monotonic()
        if log is None:
            est.fit(X, y)
        else:
            # A runtime failure is recorded and scored NaN rather than
            # raised: when every candidate of a round fails, sklearn's
            # halving raises and the rounds before are lost. Failures are
            # reported after the search (a warning, ``leaderboard_["status"]``).
            # Only runtime failures: RuntimeError (torch's, incl. CUDA out of
            # memory), FloatingPointError, MemoryError. Settings were
            # validated before the search (AutoTransferClassifier._check_params);
            # a ValueError/TypeError now is a data or programming error and
            # raises, rather than turn into a "failed" candidate nobody reads.
            try:
                est.fit(X, y)
            except (RuntimeError, FloatingPointError, MemoryError) as exc:
                self.skipped_ = log.failed(key, resource, exc)
                return self
            log.record(key, self.strategy, settings, resource, len(y), time.monotonic() - t0)
        self.estimator_ = est
        self.classes_ = est.classes_
        return self

    def predict(self, X):
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict(X)

    def predict_proba(self, X):
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict_proba(X)

    def __sklearn_tags__(self):
        return _trained_model_tags(super().__sklearn_tags__(), self.random_state)


# -------------------------------------------------------------- estimator
def _best_has(attr):
    def check(self):
        if hasattr(self, "best_estimator_"):
            return hasattr(self.best_estimator_, attr)
        return True  # unfitted: the method exists and raises NotFittedError

    return check


class AutoTransferClassifier(ClassifierMixin, BaseEstimator):
    """Pick the transfer strategy (probe, few-shot, LoRA, fine-tuning, or none) by successive halving.

    Which way of using a pretrained backbone works best depends on the task
    and on how many labels there are: a frozen probe wins at a handful of
    labels per class on many tasks, contrastive few-shot tuning on others,
    fine-tuning once there are hundreds. This estimator treats the choice
    as a hyper-parameter: every candidate is cross-validated on
    scikit-learn's :class:`~sklearn.model_selection.HalvingGridSearchCV`
    (successive halving), the best is refit on all the data, and
    ``predict`` uses it.

    **Candidates** (``candidates=None``, see :func:`default_candidates`):
    the no-transfer baseline (TF-IDF or raw pixels and
    ``LogisticRegression``: when it wins, no pretrained model helps this
    task, and ``best_strategy_`` says so); the frozen probe with ``C`` in {0.1, 1, 10}; :class:`FewShotClassifier`;
    :class:`FineTunedClassifier` with ``strategy="linear_probe"`` (images
    only); :class:`LoRAClassifier`; :class:`FineTunedClassifier` with
    ``strategy="partial"`` and ``"full"`` -- each trained one at its own
    defaults, cheapest first by a prior cost model.

    **Resource: the number of samples.** Round one cross-validates every
    candidate on a random subset, each round keeps the best
    ``1 / factor`` of the candidates and gives them ``factor`` times more
    samples, and the last round uses (nearly) all of them. Samples rather
    than epochs because every strategy has them (the probe has no epochs),
    a fit's cost grows with them for every strategy, and the embedding
    cache makes the probe's later rounds nearly free. The first round has
    at least ``2 × n_splits × n_classes`` samples (sklearn's own
    ``"smallest"``); with few labels (e.g. 8 per class) there is a single
    round, i.e. an ordinary grid search over the candidates.

    **Budget.** ``budget_s`` is a soft limit in seconds on the whole fit
    (backbone ranking, search and refit). Halving's loop is not modified:
    each candidate's ``fit`` estimates its own cost before it starts, from
    its earlier fits, or, not yet timed, from a cost model (what the
    strategy runs: loads, forward passes, training steps, epochs, pairs)
    priced by a few steps of the backbone timed on the search's own inputs
    when the first trained candidate starts (so the estimate follows the
    inputs' length, the threads and the machine's load; a few seconds).
    A trained candidate is not started when its remaining folds of
    the round plus its refit on all the data would end after the deadline;
    it then scores NaN (``status`` "over budget: ... s expected, ... s left"
    in ``leaderboard_``; the expected seconds are its remaining folds of the
    round and the largest refit among the live candidates) and
    halving drops it. The baseline and the probe always run, so even a tiny
    budget leaves a fitted model (the probe's cost is one embedding pass
    over ``X``).

    **Cache.** Every probe candidate, fold and round, and the refit, embed
    through one embedding cache (``cache``; by default a temporary
    directory for the duration of ``fit``), so each input is embedded once
    per backbone; with a list of backbones the ranking's embeddings are
    reused too.

    Parameters
    ----------
    backbone : str, torch.nn.Module or list, default="sentence-transformers/all-MiniLM-L6-v2"
        A backbone name (any :func:`sktransfer.load_backbone` accepts) for
        text or images. A list is ranked first by
        :class:`~sktransfer.selection.BackboneSelector` (LogME on the
        frozen embeddings) and the ``n_backbones`` best enter the search.
    budget_s : float or None, default=None
        Time budget of ``fit`` in seconds (None: no limit). See above.
    cv : int or cross-validation generator, default=3
        Folds of each candidate's evaluation (an int: stratified folds); at
        least 2.
    candidates : list of dict or None, default=None
        The search space: each ``{"strategy": s, **settings}`` with ``s`` in
        ``"baseline"``, ``"probe"``, ``"few_shot"``, ``"lora"``, ``"linear_probe"``,
        ``"partial"``, ``"full"`` and settings the parameters of
        ``LogisticRegression`` (baseline, probe), :class:`FewShotClassifier`,
        :class:`LoRAClassifier` or :class:`FineTunedClassifier`, except
        ``backbone``, ``max_length``, ``image_size``, ``device`` and
        ``random_state``, which are set here. None: :func:`default_candidates`.
    factor : int, default=3
        Halving's factor: each round keeps ``1 / factor`` of the candidates.
    n_backbones : int, default=1
        With a list of backbones, how many of the best ranked are searched.
    max_length : int or None, default=None
        Token limit for text, passed to every candidate.
    image_size : int or None, default=None
        Image size, passed to every candidate (e.g. 64 for small images).
    cache : None, False, True or str, default=None
        Embedding cache of the search. None: a temporary directory, deleted
        at the end of ``fit``; False: none; True or a path: that cache
        (see :class:`PretrainedFeatureExtractor`), also used by a refit probe.
    device : str, default="auto"
    random_state : int, RandomState or None, default=None
        Seeds halving's subsamples and every trained candidate.
    verbose : int, default=0
        1 prints one line per candidate fit; 2 adds halving's own output.

    Attributes
    ----------
    best_estimator_ : estimator
        The best candidate refit on all of ``X``: a pipeline
        ``PretrainedFeatureExtractor → LogisticRegression`` for the probe,
        ``TfidfVectorizer → LogisticRegression`` (texts) or raw pixels →
        ``StandardScaler → LogisticRegression`` (images) for the baseline,
        else a :class:`FewShotClassifier`, :class:`LoRAClassifier` or
        :class:`FineTunedClassifier`.
    best_strategy_ : str
    best_params_ : dict
        The best candidate as ``{"strategy": ..., **settings}`` (the form
        ``candidates`` takes).
    best_backbone_ : str, torch.nn.Module or None
        None when the baseline won (no pretrained model).
    best_score_ : float
        Its mean cross-validated accuracy, in the last round. The best is
        halving's: the highest score of the last round (that has scores);
        a tie goes to the candidate with the shorter fit.
    best_index_ : int
        Its row in ``cv_results_``.
    cv_results_ : dict
        Halving's results (one row per candidate and round; parameters
        ``strategy``, ``settings``, ``backbone``; ``iter``,
        ``n_resources``...). Candidates skipped by the budget or failed
        have NaN scores.
    leaderboard_ : pandas.DataFrame
        One row per candidate, at the last round in which it got a score,
        best first (halving's order: later rounds first, then by score; rank
        1 is ``best_index_``): ``rank``, ``strategy``, ``backbone``, ``params``, ``iter``,
        ``n_resources``, ``mean_score``, ``std_score``, ``fit_seconds``
        (mean per fold in that round), ``total_seconds`` (all its folds and
        rounds) and ``status`` ("ok", "over budget: ... s expected, ... s left"
        or "failed: ...").
    n_resources_ : list of int
        Training rows per fold in each round (the most any fit used: the
        stratified subsets keep 2 per class, so with ``max_samples`` below
        ``2 × n_classes`` a fit uses the floors).
    n_candidates_ : list of int
        Candidates per round.
    backbones_ : list
        The backbones searched.
    backbone_ranking_ : pandas.DataFrame or None
        :class:`BackboneSelector`'s ranking when ``backbone`` is a list of
        several.
    classes_ : ndarray of shape (n_classes,)
    modality_ : {"text", "image"}
    fit_seconds_ : float
        Wall time of ``fit``.
    budget_exhausted_ : bool
        Whether the budget kept any candidate from running.
    refit_fallback_ : dict or None
        None, unless the search's best candidate was expected to pass
        ``budget_s`` in its refit on all the data: then the best ranked
        candidate whose refit fits (a probe always does) was refit instead,
        with a warning, and ``best_*`` describe that one; the dict has
        ``searched_best`` and ``refit`` (as in ``best_params_``), their rows
        ``searched_best_index`` and ``refit_index``, ``expected_s`` and
        ``left_s``.

    See Also
    --------
    sktransfer.selection.BackboneSelector : rank backbones without training.
    sklearn.model_selection.HalvingGridSearchCV : the search underneath.

    Examples
    --------
    >>> from sktransfer import AutoTransferClassifier
    >>> texts = ["the striker scored twice", "a late goal won the cup",
    ...          "the coach praised his team", "fans cheered the winners",
    ...          "shares fell sharply", "the bank raised interest rates",
    ...          "profits beat forecasts", "the market closed lower"]
    >>> y = ["sport"] * 4 + ["business"] * 4
    >>> auto = AutoTransferClassifier("sentence-transformers/all-MiniLM-L6-v2", cv=2,
    ...                               candidates=[{"strategy": "probe", "C": 0.1},
    ...                                           {"strategy": "probe", "C": 10.0}],
    ...                               random_state=0).fit(texts, y)
    >>> auto.best_strategy_
    'probe'
    >>> auto.predict(["the goalkeeper saved a penalty"]).tolist()
    ['sport']
    >>> list(auto.leaderboard_.columns[:4])
    ['rank', 'strategy', 'backbone', 'params']

    The default search space (probe, few-shot, LoRA, fine-tuning) trains
    several models, minutes on a CPU; ``budget_s`` bounds it:

    >>> auto = AutoTransferClassifier(budget_s=300, random_state=0).fit(X, y)  # doctest: +SKIP
    >>> auto.plot_leaderboard()  # doctest: +SKIP
    """

    def __init__(
        self,
        backbone="sentence-transformers/all-MiniLM-L6-v2",
        *,
        budget_s=None,
        cv=3,
        candidates=None,
        factor=3,
        n_backbones=1,
        max_length=None,
        image_size=None,
        cache=None,
        device="auto",
        random_state=None,
        verbose=0,
    ):
        self.backbone = backbone
        self.budget_s = budget_s
        self.cv = cv
        self.candidates = candidates
        self.factor = factor
        self.n_backbones = n_backbones
        self.max_length = max_length
        self.image_size = image_size
        self.cache = cache
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------ checks
    def _check_params(self):
        from torch import nn

        from ._inputs import check_in_range_int

        if isinstance(self.backbone, (list, tuple)):
            backbones = list(self.backbone)
            if not backbones:
                raise ValueError("backbone is an empty list: give a backbone name, or a list of at least one.")
        else:
            backbones = [self.backbone]
        for i, b in enumerate(backbones):
            if not isinstance(b, (str, nn.Module)):
                raise ValueError(
                    f"backbone[{i}] must be a backbone name or a torch.nn.Module, got {type(b).__name__}."
                    if isinstance(self.backbone, (list, tuple))
                    else f"backbone must be a backbone name, a torch.nn.Module or a list of them, got {type(b).__name__}."
                )
        labels = [_label(b) for b in backbones]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ValueError(f"backbone lists {dup} more than once; give each backbone once.")
        b = self.budget_s
        if b is not None and (
            isinstance(b, bool) or not isinstance(b, numbers.Real) or not math.isfinite(b) or b <= 0
        ):
            raise ValueError(f"budget_s must be a positive number of seconds or None, got {b!r}.")
        if isinstance(self.cv, numbers.Integral) and not isinstance(self.cv, bool):
            if self.cv < 2:
                raise ValueError(f"cv must be at least 2 (folds of each candidate's evaluation), got {self.cv}.")
        elif not (hasattr(self.cv, "split") and hasattr(self.cv, "get_n_splits")):
            raise ValueError(f"cv must be an int >= 2 or a cross-validation splitter, got {self.cv!r}.")
        check_in_range_int(self.factor, "factor", 2)
        check_in_range_int(self.n_backbones, "n_backbones", 1)
        if self.max_length is not None:
            check_in_range_int(self.max_length, "max_length", 2)
        if self.image_size is not None:
            check_in_range_int(self.image_size, "image_size", 8)
        if self.verbose not in (0, 1, 2, True, False):
            raise ValueError(f"verbose must be 0, 1 or 2, got {self.verbose!r}.")
        if self.cache not in (None, False, True) and not isinstance(self.cache, (str, bytes, os.PathLike)):
            raise ValueError(f"cache must be None, False, True or a directory path, got {self.cache!r}.")
        if self.candidates is not None:
            if isinstance(self.candidates, (dict, str)) or not hasattr(self.candidates, "__iter__"):
                raise ValueError(
                    "candidates must be None or a list of dicts such as [{'strategy': 'probe', 'C': 1.0}], "
                    f"got {type(self.candidates).__name__}."
                )
            checked = [_check_candidate(c, i) for i, c in enumerate(self.candidates)]
            if not checked:
                raise ValueError("candidates is an empty list: give at least one, or None for the defaults.")
            for i, (strategy, settings) in enumerate(checked):
                self._check_settings(i, strategy, settings, backbones[0])
            keys = [_key(s, st, "") for s, st in checked]
            dup = sorted({k for k in keys if keys.count(k) > 1})
            if dup:
                raise ValueError(f"candidates lists the same candidate more than once: {dup}.")
        return backbones

    def _check_settings(self, i, strategy, settings, backbone):
        """Each candidate's own parameter validation, before any model loads or trains."""
        try:
            est = build_estimator(strategy, settings, backbone, modality="text", max_length=self.max_length,
                                  image_size=self.image_size, device=self.device)
            if strategy in _CHEAP:
                est.named_steps["head"]._validate_params()  # sklearn's own checks of LogisticRegression
            else:
                est._check_params()
        except (ValueError, TypeError) as exc:
            raise ValueError(f"candidates[{i}] (strategy={strategy!r}) has an invalid setting: {exc}") from exc

    # ----------------------------------------------------------------- fit
    def fit(self, X, y):
        """Search the candidates by successive halving, then refit the best on all of ``X``.

        Parameters
        ----------
        X : list, array, Series or one-column DataFrame
            Texts, or images (paths, PIL images, arrays).
        y : array-like of shape (n_samples,)
            Class labels.

        Returns
        -------
        self : AutoTransferClassifier
        """
        t_start = time.monotonic()
        backbones = self._check_params()
        deadline = None if self.budget_s is None else t_start + float(self.budget_s)
        rows = as_rows(X)
        n = len(rows)
        y = check_labels(y, n_rows=n, task="AutoTransferClassifier")
        seed = check_random_state_int(self.random_state)

        if self.cache is None:
            with tempfile.TemporaryDirectory(prefix="sktransfer-auto-") as tmp:
                self._fit(rows, y, backbones, os.path.join(tmp, "embeddings"), seed, deadline)
        else:
            self._fit(rows, y, backbones, self.cache, seed, deadline)
        self.fit_seconds_ = time.monotonic() - t_start
        return self

    def _rank_backbones(self, X, y, backbones, cache):
        if len(backbones) == 1:
            return backbones, None
        from .selection import BackboneSelector

        extractor_params = {"max_length": self.max_length, "image_size": self.image_size,
                            "device": self.device, "verbose": False}
        selector = BackboneSelector(
            backbones, extractor_params=extractor_params, cache=cache if cache is not False else None, refit=False
        ).fit(X, y)
        ranking = selector.ranking_
        ok = ranking[ranking["error"].isna()]["candidate"].tolist()
        by_label = {_label(b): b for b in backbones}
        return [by_label[c] for c in ok[: int(self.n_backbones)]], ranking

    def _fit(self, X, y, backbones, cache, seed, deadline):
        from sklearn.experimental import enable_halving_search_cv  # noqa: F401
        from sklearn.model_selection import HalvingGridSearchCV, check_cv

        from .backbones import load_backbone

        searched, self.backbone_ranking_ = self._rank_backbones(X, y, backbones, cache)
        modalities = {load_backbone(b, device="cpu").modality for b in searched}
        if len(modalities) > 1:
            raise ValueError(
                f"The backbones searched read different inputs ({sorted(modalities)}): {[_label(b) for b in searched]}. "
                "Give backbones of one modality."
            )
        self.modality_ = modalities.pop()
        self.backbones_ = searched
        raw = self.candidates if self.candidates is not None else default_candidates(self.modality_)
        checked = [_check_candidate(c, i) for i, c in enumerate(raw)]

        n = len(y)
        classes = np.unique(y)
        cv = check_cv(self.cv, y, classifier=True)
        n_splits = cv.get_n_splits(X, y)
        # Cheapest first: halving's first round runs the candidates in this order.
        order = sorted(range(len(checked)), key=lambda i: (_prior_forwards(*checked[i], n), i))
        # The baseline reads the inputs without a backbone: one candidate, not one per backbone.
        grid = [
            {"strategy": [checked[i][0]], "settings": [checked[i][1]], "backbone": [b]}
            for b in searched
            for i in order
            if checked[i][0] != "baseline"
        ]
        grid[:0] = [
            {"strategy": ["baseline"], "settings": [checked[i][1]], "backbone": [None]}
            for i in order
            if checked[i][0] == "baseline"
        ]
        # Halving's resource: training rows per fold (see the class docstring).
        max_train = max(len(train) for train, _ in cv.split(X, y))
        min_resources = self._min_resources(max_train, len(classes), len(grid))

        log = _SearchLog(deadline, n_splits, n, verbose=self.verbose)
        token = uuid.uuid4().hex
        base = _Candidate(
            backbone=searched[0], modality=self.modality_, max_length=self.max_length, image_size=self.image_size, cache=cache,
            device=self.device, random_state=seed, search=token,
        )
        search = HalvingGridSearchCV(
            base, grid, factor=int(self.factor), resource="max_samples", max_resources=max_train,
            min_resources=min_resources, cv=cv, scoring=_accuracy_or_nan, refit=False, error_score=np.nan,
            return_train_score=False, random_state=seed, verbose=max(0, int(self.verbose) - 1),
        )
        _SEARCHES[token] = log
        try:
            with warnings.catch_warnings():
                # Skipped (over budget) and failed candidates score NaN by
                # design; failures are reported once, below.
                warnings.filterwarnings("ignore", message="One or more of the test scores are non-finite")
                search.fit(X, y)
        finally:
            _SEARCHES.pop(token, None)

        results = search.cv_results_
        status = self._statuses(results, log)  # keyed by halving's resource (max_samples)
        # n_resources: the rows the fits really used (max_samples, except
        # when the floors of 2 per class are over it).
        results["n_resources"] = _rows_used(results["n_resources"], log)
        self.cv_results_ = results
        self.n_resources_ = _rows_used(search.n_resources_, log).tolist()
        self.n_candidates_ = list(search.n_candidates_)
        self.n_iterations_ = int(search.n_iterations_)
        failures = sorted({s for s in status if s.startswith("failed")})
        best = self._best_index(results)
        if best is None:
            raise ValueError(f"Every candidate failed: {'; '.join(failures)[:2000]}")
        if failures:
            warnings.warn(
                f"{len(failures)} candidate fit(s) failed and were left out: {'; '.join(failures)[:1000]}",
                UserWarning,
                stacklevel=3,
            )
        self.budget_exhausted_ = any(s.startswith("over budget") for s in status)
        self.leaderboard_ = self._leaderboard(results, status, n_splits)

        best, self.refit_fallback_ = self._refit_choice(results, best, log, n)
        if self.refit_fallback_ is not None:
            fb = self.refit_fallback_
            warnings.warn(
                f"The search's best candidate {fb['searched_best']} is expected to need {fb['expected_s']:.1f} s "
                f"to refit on all the data, and {fb['left_s']:.1f} s of budget_s are left: refit {fb['refit']} "
                "instead (the best that fits; see refit_fallback_).",
                UserWarning,
                stacklevel=3,
            )
        params = results["params"][best]
        self.best_index_ = int(best)
        self.best_score_ = float(results["mean_test_score"][best])
        self.best_strategy_ = params["strategy"]
        self.best_params_ = {"strategy": params["strategy"], **params["settings"]}
        self.best_backbone_ = params["backbone"]
        est = build_estimator(
            params["strategy"], params["settings"], params["backbone"], modality=self.modality_,
            max_length=self.max_length, image_size=self.image_size, cache=cache, device=self.device, random_state=seed,
        )
        est.fit(X, y)
        if params["strategy"] == "probe" and self.cache is None:
            # The search's cache is a temporary directory: the refit probe
            # (embedded through it) keeps no link to it.
            est.set_params(extractor__cache=None)
        self.best_estimator_ = est
        self.classes_ = est.classes_

    @staticmethod
    def _ranked_rows(results):
        """Each candidate's row at its latest round with a score, in halving's order (``leaderboard_``)."""
        keys = [_key(p["strategy"], p["settings"], p["backbone"]) for p in results["params"]]
        scores = np.asarray(results["mean_test_score"], dtype=float)
        latest = {}
        for i, k in enumerate(keys):
            if np.isfinite(scores[i]):
                latest[k] = i
        rows = list(latest.values())
        fit = np.asarray(results["mean_fit_time"], dtype=float)
        return sorted(rows, key=lambda i: (-int(results["iter"][i]), -scores[i], fit[i], i))

    def _refit_choice(self, results, best, log, n):
        """The row to refit: ``best``, or, when its refit is expected to pass
        the deadline, the best ranked candidate whose refit fits (a probe
        always does: its embeddings are cached). Returns ``(row, fallback)``,
        ``fallback`` None or the dict kept as ``refit_fallback_``."""
        if log.deadline is None:
            return best, None

        def expected(i):
            p = results["params"][i]
            if p["strategy"] in _CHEAP:
                return 0.0
            return log.estimate(_key(p["strategy"], p["settings"], p["backbone"]), p["strategy"], p["settings"], n)

        def fits(i, cost):  # the probe and the baseline always fit (even past the deadline): they are the fallback
            return results["params"][i]["strategy"] in _CHEAP or (cost is not None and cost <= left)

        left = log.deadline - time.monotonic()
        need = expected(best)
        if need is None or fits(best, need):
            return best, None
        costs = {i: expected(i) for i in self._ranked_rows(results)}
        ok = [i for i, c in costs.items() if fits(i, c)]
        chosen = ok[0] if ok else min(costs, key=lambda i: math.inf if costs[i] is None else costs[i])

        def as_params(i):
            p = results["params"][i]
            return {"strategy": p["strategy"], **p["settings"]}

        return chosen, {
            "searched_best": as_params(best),
            "searched_best_index": int(best),
            "refit": as_params(chosen),
            "refit_index": int(chosen),
            "expected_s": float(need),
            "left_s": float(left),
        }

    def _min_resources(self, n, n_classes, n_candidates):
        """First round's training rows, such that the last round uses all ``n``.

        At least 4 per class in the first round (about sklearn's
        ``"smallest"``, ``2 × n_splits × n_classes`` rows with the test
        folds, at 3 folds). The number of rounds is the smaller of the
        needed (until fewer than ``factor`` candidates are left) and the
        possible, and the first round has ``n // factor ** (rounds - 1)``
        rows. (sklearn's ``"exhaust"`` does the same when the rounds are
        limited by the candidates, but when they are limited by the data its
        last round can use far fewer than ``n``: 30 of 80.)
        """
        f = int(self.factor)
        smallest = 4 * n_classes
        needed = 1 + int(math.floor(math.log(n_candidates, f) + 1e-9))
        possible = 1 + int(math.floor(math.log(n / smallest, f) + 1e-9)) if n >= smallest else 1
        rounds = max(1, min(needed, possible))
        return max(1, n // f ** (rounds - 1))

    @staticmethod
    def _statuses(results, log):
        out = []
        for p, n, score in zip(results["params"], results["n_resources"], results["mean_test_score"]):
            key = _key(p["strategy"], p["settings"], p["backbone"])
            out.append("ok" if np.isfinite(score) else log.status.get((key, int(n)), "failed: (no message)"))
        return out

    @staticmethod
    def _best_index(results):
        """Best of the last round with a finite score; a tie goes to the faster fit.

        Halving's own rule (the best of the last round), robust to a last
        round the budget emptied. Ties are common with accuracy on small
        validation folds; the cheaper candidate is then the better choice.
        """
        scores = np.asarray(results["mean_test_score"], dtype=float)
        iters = np.asarray(results["iter"])
        finite = np.isfinite(scores)
        if not finite.any():
            return None
        last = iters[finite].max()
        rows = np.flatnonzero(finite & (iters == last))
        rows = rows[scores[rows] == scores[rows].max()]
        return int(rows[np.argmin(np.asarray(results["mean_fit_time"], dtype=float)[rows])])

    def _leaderboard(self, results, status, n_splits):
        import pandas as pd

        keys = [_key(p["strategy"], p["settings"], p["backbone"]) for p in results["params"]]
        scores = np.asarray(results["mean_test_score"], dtype=float)
        total, shown, latest = {}, {}, {}
        for i, k in enumerate(keys):  # rows come round by round
            spent = (results["mean_fit_time"][i] + results["mean_score_time"][i]) * n_splits
            total[k] = total.get(k, 0.0) + (float(spent) if np.isfinite(spent) else 0.0)
            latest[k] = i
            if np.isfinite(scores[i]) or k not in shown or not np.isfinite(scores[shown[k]]):
                shown[k] = i  # its latest round with a score (else its latest)
        rows = []
        for k, i in shown.items():
            p = results["params"][i]
            rows.append({
                "strategy": p["strategy"],
                "backbone": _label(p["backbone"]),
                "params": _describe(p["settings"]),
                "iter": int(results["iter"][i]),
                "n_resources": int(results["n_resources"][i]),
                "mean_score": float(scores[i]),
                "std_score": float(results["std_test_score"][i]),
                "fit_seconds": float(results["mean_fit_time"][i]),
                "total_seconds": total[k],
                # A candidate stopped in a later round says so.
                "status": status[latest[k]] if latest[k] != i else status[i],
                "_row": i,
            })
        board = pd.DataFrame(rows)
        ok = np.isfinite(board["mean_score"].to_numpy())
        board["_ok"] = ok
        # The order of halving's choice (see _best_index): rank 1 is best_index_.
        board = board.sort_values(["_ok", "iter", "mean_score", "fit_seconds", "_row"],
                                  ascending=[False, False, False, True, True], kind="stable")
        board = board.drop(columns=["_ok", "_row"]).reset_index(drop=True)
        board.insert(0, "rank", np.arange(1, len(board) + 1))
        return board

    # --------------------------------------------------------- inference
    def predict(self, X):
        """Predictions of ``best_estimator_``."""
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.predict(X)

    @available_if(_best_has("predict_proba"))
    def predict_proba(self, X):
        """Class probabilities of ``best_estimator_``, columns in ``classes_`` order."""
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.predict_proba(X)

    @available_if(_best_has("decision_function"))
    def decision_function(self, X):
        """Decision function of ``best_estimator_``."""
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.decision_function(X)

    def score(self, X, y, sample_weight=None):
        """Accuracy of ``best_estimator_`` (its own ``score``)."""
        check_is_fitted(self, "best_estimator_")
        if sample_weight is None:
            return self.best_estimator_.score(X, y)
        return self.best_estimator_.score(X, y, sample_weight=sample_weight)

    # -------------------------------------------------------------- plot
    def plot_leaderboard(self, ax=None):
        """Bar chart of ``leaderboard_``: mean CV accuracy ± std per candidate.

        Bars are coloured by strategy and labelled with the samples of the
        round the score comes from and the seconds spent; candidates that
        did not run (budget) or failed are listed without a bar.

        Parameters
        ----------
        ax : matplotlib Axes or None, default=None
            None: a new figure.

        Returns
        -------
        ax : matplotlib Axes
        """
        check_is_fitted(self, "leaderboard_")
        import matplotlib.pyplot as plt

        board = self.leaderboard_
        if ax is None:
            _, ax = plt.subplots(figsize=(7, 0.4 * len(board) + 1.2))
        colours = {s: plt.get_cmap("tab10")(i) for i, s in enumerate(STRATEGIES)}
        ypos = np.arange(len(board))[::-1]
        scores = board["mean_score"].to_numpy()
        shown = np.nan_to_num(scores, nan=0.0)
        ax.barh(ypos, shown, xerr=np.nan_to_num(board["std_score"].to_numpy()),
                color=[colours[s] for s in board["strategy"]], alpha=0.85)
        labels = [f"{r.strategy} ({r.params})" for r in board.itertuples()]
        ax.set_yticks(ypos)
        ax.set_yticklabels(labels, fontsize=8)
        for yp, r in zip(ypos, board.itertuples()):
            note = (f"n={r.n_resources}, {r.total_seconds:.0f} s" if np.isfinite(r.mean_score)
                    else r.status[:40])
            ax.text(0.01, yp, note, va="center", fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_xlabel("mean CV accuracy (last round each candidate ran)")
        ax.set_title(f"AutoTransferClassifier: best = {self.best_strategy_}")
        return ax

    def __sklearn_tags__(self):
        return _trained_model_tags(super().__sklearn_tags__(), self.random_state)

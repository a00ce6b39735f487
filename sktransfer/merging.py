"""Model merging: soups of fine-tuned models, and task arithmetic.

Two ways of combining models fine-tuned from one pretrained start, by
averaging or adding their weights (no retraining, no ensemble at
inference):

* :func:`soup` (Wortsman et al. 2022, "Model soups"): the weights of
  several fine-tunes of the same backbone averaged, uniformly or greedily
  (an ingredient joins only if the soup's validation score does not drop).
  Ingredients are fitted estimators, directories written by their ``save``,
  or the finished fits a ``GridSearchCV`` left in its estimator's
  ``checkpoint_dir``; they are read one at a time.
* :func:`task_vector` (Ilharco et al. 2023, "Editing models with task
  arithmetic"): what fine-tuning changed in the backbone (fine-tuned minus
  pretrained weights), a :class:`TaskVector` that adds, negates and scales,
  and :meth:`TaskVector.apply` puts back on a backbone with a task's head.
  :func:`merge_task_vectors` combines vectors with TIES or DARE, through
  the same implementation (PEFT's ``merge_utils``) that
  :func:`~sktransfer.merge_adapters` uses for LoRA adapters.

LoRA adapters take part through their merged weights
(:meth:`~sktransfer.LoRAClassifier.merge`): the soup of adapters is the
average of their updates ``B @ A * scale`` (a rank up to ``k * r`` update,
which no rank-``r`` adapter holds), so a soup of LoRA models is a
:class:`~sktransfer.FineTunedClassifier` with the merged weights; a LoRA task
vector is its update per adapted layer.
"""

import copy
import gc
import json
import os
import warnings
from collections.abc import Mapping

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from . import _persistence
from ._seeding import isolated_torch_rng
from .callbacks import _bn_layers_changed, recompute_bn_statistics  # WiSE-FT's BatchNorm step

__all__ = ["TaskVector", "merge_task_vectors", "soup", "task_vector"]

_METHODS = ("greedy", "uniform")


# ------------------------------------------------------------------ helpers
def _estimator_classes():
    from ._fine_tuning import FineTunedClassifier, FineTunedRegressor
    from ._lora import LoRAClassifier

    return {c.__name__: c for c in (FineTunedClassifier, FineTunedRegressor, LoRAClassifier)}


def _describe(est):
    backbone = est.backbone if isinstance(est.backbone, str) else type(est.backbone).__name__
    return f"{type(est).__name__} on {backbone!r}"


def _check_fitted(est, label):
    classes = tuple(_estimator_classes().values())
    if not isinstance(est, classes):
        raise TypeError(
            f"{label} is a {type(est).__name__}: merging takes fitted FineTunedClassifier, "
            "FineTunedRegressor or LoRAClassifier estimators (or directories written by their save())."
        )
    try:
        check_is_fitted(est, "net_")
    except NotFittedError as exc:
        raise NotFittedError(f"{label} ({_describe(est)}) is not fitted: fit it before merging.") from exc


def _dense(est):
    """A LoRA estimator merged into plain weights (a FineTunedClassifier); other estimators as they are."""
    from ._lora import LoRAClassifier

    return est.merge() if isinstance(est, LoRAClassifier) else est


def _pretrained(est):
    """The shared (cached) backbone ``est`` starts from (a fitted start's: with its trained body)."""
    from ._training import resolve_backbone

    with isolated_torch_rng():  # a first load in a process draws random numbers
        return resolve_backbone(est.backbone, est.pooling)


def _starts_from(est, fingerprint):
    """Whether ``est`` was fine-tuned from the weights ``fingerprint``, or holds them in its body.

    The second is a model that started another fit (sequential tasks:
    ``FineTunedClassifier(backbone=clf_a)``): the task vector of the model
    fitted from it is measured from its weights, and adds to them.
    """
    if _fingerprint(est) == fingerprint:
        return True
    from ._fine_tuning import FineTunedClassifier, FineTunedRegressor
    from ._training import resolve_backbone

    dense = _dense(est)
    if not isinstance(dense, (FineTunedClassifier, FineTunedRegressor)):
        return False
    with isolated_torch_rng():
        return resolve_backbone(dense).fingerprint() == fingerprint


def _fingerprint(est):
    """The fingerprint of the weights ``est`` was trained from, as recorded at fit (else reloaded)."""
    fp = est.__dict__.get("base_fingerprint_")  # LoRA keeps the one it trained on
    if not isinstance(fp, str):
        # FineTuned* record theirs at fit: a start changed since (refitted, set_wise_alpha, its
        # directory rewritten) then no longer matches, and the vector is refused, not wrong.
        fp = est.__dict__.get("_wise_fingerprint")
    return fp if isinstance(fp, str) else _pretrained(est).fingerprint()


def _head_keys(state):
    """Weight and bias names of the last linear layer of the head (``task_head.<i>``)."""
    linear = [k for k in state if k.startswith("task_head.") and k.endswith(".weight") and len(_shape(state, k)) == 2]
    last = max(linear, key=lambda k: int(k.split(".")[1]))
    return last, last[: -len("weight")] + "bias"


def _shape(state, key):
    """Shape of ``state[key]``; from a file's header when ``state`` reads from disk (nothing loaded)."""
    return state.shape(key) if hasattr(state, "shape") else tuple(state[key].shape)


def _rescaled_head(state, mean, scale, to_mean, to_scale):
    """``state`` with a regressor's head re-expressed for targets standardised by (to_mean, to_scale).

    A regressor predicts ``head(h) * scale + mean``; its last linear layer is
    rewritten so that ``head'(h) * to_scale + to_mean`` is the same prediction.
    Exact, so ingredients standardised differently (fits on different rows)
    average in the same units.
    """
    if np.array_equal(mean, to_mean) and np.array_equal(scale, to_scale):
        return state
    wk, bk = _head_keys(state)
    w, b = state[wk], state[bk]
    s = torch.as_tensor(np.asarray(scale) / np.asarray(to_scale), dtype=w.dtype)
    shift = torch.as_tensor((np.asarray(mean) - np.asarray(to_mean)) / np.asarray(to_scale), dtype=b.dtype)
    new = {wk: w * s[:, None], bk: b * s + shift}
    return state.replace(new) if hasattr(state, "replace") else {**state, **new}


def _check_same_start(first, other, first_label, label):
    """Refuse two ingredients (or vectors) that did not start from the same pretrained model."""
    if type(first.est).__name__ != type(other.est).__name__:
        raise ValueError(
            f"{label} is a {type(other.est).__name__} and {first_label} a {type(first.est).__name__}: "
            "a soup averages models of one kind."
        )
    if first.fingerprint != other.fingerprint:
        raise ValueError(
            f"{label} ({_describe(other.est)}, weights fingerprint {other.fingerprint}) and {first_label} "
            f"({_describe(first.est)}, weights fingerprint {first.fingerprint}) were fine-tuned from different "
            "pretrained backbones: only models that share their pretrained start can be averaged."
        )
    if hasattr(first.est, "classes_") and not np.array_equal(first.est.classes_, other.est.classes_):
        raise ValueError(
            f"{label} has classes {other.est.classes_.tolist()} and {first_label} {first.est.classes_.tolist()}: "
            "the heads of a soup must answer the same classes, in the same order."
        )
    if hasattr(first.est, "n_outputs_") and first.est.n_outputs_ != other.est.n_outputs_:
        raise ValueError(f"{label} predicts {other.est.n_outputs_} targets and {first_label} {first.est.n_outputs_}.")


def _check_same_shapes(reference, state, first_label, label):
    """``reference``: name -> shape of the first ingredient's tensors."""
    if set(reference) != set(state):
        extra = sorted(set(state) - set(reference))[:3]
        missing = sorted(set(reference) - set(state))[:3]
        raise ValueError(
            f"{label} and {first_label} have different architectures (tensors only in {label}: {extra}; "
            f"only in {first_label}: {missing}): a soup averages models of one architecture "
            "(same backbone, head and head_hidden)."
        )
    for k, shape in reference.items():
        if shape != _shape(state, k):
            raise ValueError(
                f"{label} and {first_label} have different architectures: tensor {k!r} is "
                f"{_shape(state, k)} in {label} and {shape} in {first_label}."
            )


def _check_y(X_val, y_val):
    y = np.asarray(y_val)
    if y.ndim == 0 or len(y) == 0:
        raise ValueError("y_val must hold one target per row of X_val; it is empty.")
    n = len(X_val) if hasattr(X_val, "__len__") else None
    if n is not None and n != len(y):
        raise ValueError(f"X_val has {n} rows and y_val {len(y)}: one target per row is needed.")
    if y.dtype.kind == "f":
        bad = np.flatnonzero(np.isnan(y).reshape(len(y), -1).any(axis=1))
    else:
        import pandas as pd

        bad = np.flatnonzero(pd.isna(y).reshape(len(y), -1).any(axis=1))
    if len(bad):
        raise ValueError(
            f"y_val has a missing target (NaN/None) in row {int(bad[0])} ({len(bad)} rows in all): "
            "the validation score that chooses the soup needs every target."
        )
    return y


# -------------------------------------------------------------- ingredients
class _Overlay(Mapping):
    """Tensors of ``first``, and of ``then`` for the names ``first`` lacks (a checkpoint over the pretrained body)."""

    def __init__(self, first, then):
        self.first, self.then = first, then

    def __getitem__(self, key):
        return self.first[key] if key in self.first else self.then[key]

    def __iter__(self):
        yield from self.first
        yield from (k for k in self.then if k not in self.first)

    def __len__(self):
        return sum(1 for _ in self)

    def replace(self, overrides):
        return _Overlay(overrides, self)

    def chunks(self, key, max_bytes=4 << 20):
        """``(index, part)`` pairs covering ``state[key]``; a tensor of ``first`` (mapped from a checkpoint)
        by blocks of rows, the pages of each dropped once it is used."""
        t = self[key]
        if key not in self.first or t.ndim == 0 or not t.is_contiguous() or not len(t):
            yield ..., t
            return
        step = max(1, max_bytes // max(1, t[0].numel() * t.element_size()))
        for a in range(0, len(t), step):
            part = t[a : a + step]
            yield slice(a, a + step), part
            _drop_pages(part)


def _drop_pages(t):
    """Hand back the resident pages of ``t``, a tensor over a file mapped by ``torch.load(mmap=True)``.

    The pages of a mapped file count in the process's resident memory for as
    long as the mapping lives, and torch maps the whole checkpoint: read
    tensor by tensor, a checkpoint ends up resident whole, one model more at
    a soup's peak. torch and the standard library have no call for this on a
    mapping they did not create, hence ``madvise(MADV_DONTNEED)`` through
    ctypes. Safe on these pages: the mapping is private and never written,
    so dropped pages are read again from the file if touched (a page shared
    with a neighbouring tensor included). Linux with glibc only; elsewhere
    nothing is done.
    """
    import ctypes
    import mmap

    from ._utils import glibc

    lib = glibc()
    start, size = t.data_ptr(), t.numel() * t.element_size()  # t is contiguous
    if lib is None or not size or not hasattr(mmap, "MADV_DONTNEED"):
        return
    lo = start - start % mmap.PAGESIZE
    lib.madvise.argtypes, lib.madvise.restype = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int], ctypes.c_int
    lib.madvise(lo, start + size - lo, mmap.MADV_DONTNEED)


class _Ingredient:
    """One model of a soup: what it is (``est``, a fitted or config-only estimator) and how to read its weights."""

    def __init__(self, label, est, read, fingerprint, builds=False):
        self.label = label
        self.est = est  # classes_ / y_mean_ / params; its net_ may be absent (save dirs, checkpoints)
        self.read = read  # () -> state dict (name -> tensor), read when needed
        self.fingerprint = fingerprint
        # Whether read() builds a module (a LoRA model merged): modules hold reference cycles, so the
        # one built for the previous read is freed only by a garbage collection (soup() runs one).
        self.builds = builds


def _as_fine_tuned(est):
    """The plain estimator a LoRA model becomes when merged (parameters and classes, no weights); others: themselves.

    What :meth:`~sktransfer.LoRAClassifier.merge` returns, without building
    it: a soup keeps one description per ingredient and merges an adapter
    only while its weights are read.
    """
    from ._fine_tuning import FineTunedClassifier
    from ._lora import LoRAClassifier

    if not isinstance(est, LoRAClassifier):
        return est
    common = {k: v for k, v in est.get_params().items() if k in FineTunedClassifier().get_params()}
    ft = FineTunedClassifier(**{**common, "strategy": "full"})
    ft.classes_ = est.classes_
    ft.lr_ = est.__dict__.get("lr_", est.lr)
    return ft


def _merged_state(est):
    """``est``'s module weights; a LoRA model's merged into the base (a new set, read once)."""
    from ._lora import LoRAClassifier

    return est.merge().net_.module_.state_dict() if isinstance(est, LoRAClassifier) else est.net_.module_.state_dict()


def _from_estimator(i, est):
    from ._lora import LoRAClassifier

    label = f"models[{i}]"
    _check_fitted(est, label)
    return _Ingredient(f"{label} ({_describe(est)})", _as_fine_tuned(est), lambda: _merged_state(est), _fingerprint(est),
                       builds=isinstance(est, LoRAClassifier))


def _from_save_dir(path):
    meta = _persistence.read_json(path, "config.json") if os.path.isdir(str(path)) else None
    classes = _estimator_classes()
    if not isinstance(meta, dict) or meta.get("class") not in classes:
        raise ValueError(
            f"{str(path)!r} is not a directory written by save() of a FineTunedClassifier, FineTunedRegressor "
            f"or LoRAClassifier (its config.json names {None if not isinstance(meta, dict) else meta.get('class')!r})."
        )
    cls = classes[meta["class"]]
    label = repr(str(path))
    est, _ = cls._read_config(path)  # verified against the manifest; no weights read yet
    if meta["class"] == "LoRAClassifier":  # the adapter is read, put on the base and merged while read
        return _Ingredient(label, _as_fine_tuned(est), lambda: _merged_state(cls.load(path)), meta.get("base_fingerprint"),
                           builds=True)
    fingerprint = _pretrained(est).fingerprint()
    # Read a tensor at a time (the soup never holds a whole ingredient read from disk).
    return _Ingredient(label, est, lambda: _persistence.TensorFile(path, "model.safetensors"), fingerprint)


def _from_search(search):
    """The finished fits in the ``checkpoint_dir`` of a search's estimator that belong to this search.

    A fit belongs to the search when its checkpoint records an estimator of
    the search's estimator's class whose parameters are the estimator's with
    one of the search's candidates (``cv_results_["params"]``) set: the
    cross-validation fits of every candidate, and the refit when there is one.
    """
    from .callbacks import ResumableCheckpoint

    base = search.estimator
    check_is_fitted(search, "cv_results_")
    if type(base).__name__ not in _estimator_classes():
        raise TypeError(
            f"soup() of a search needs a FineTunedClassifier, FineTunedRegressor or LoRAClassifier estimator; "
            f"this {type(search).__name__} searches a {type(base).__name__}."
        )
    directory = base.get_params().get("checkpoint_dir")
    if not directory:
        raise ValueError(
            f"soup() of a {type(search).__name__} reads the fits it left in its estimator's checkpoint_dir, "
            f"and its {type(base).__name__} has checkpoint_dir=None. Set checkpoint_dir before fitting the search "
            "(each fit is then kept on disk), or pass a list of fitted models or save() directories."
        )
    ignore = ("verbose", "device", "num_workers", "callbacks", "checkpoint_dir")
    from sklearn.base import clone

    # Each candidate's parameters as save() writes them (so that they compare with the checkpoint's record).
    wanted = [_params_key(clone(base).set_params(**candidate)._config(), ignore) for candidate in search.cv_results_["params"]]
    runs, legacy = [], []
    for name in sorted(os.listdir(str(directory))) if os.path.isdir(str(directory)) else []:
        run = os.path.join(str(directory), name)
        state_path = os.path.join(run, ResumableCheckpoint.STATE)
        if not (name.startswith("run-") and os.path.isfile(state_path)):
            continue
        try:
            with open(state_path, encoding="utf-8") as f:
                state = json.load(f)
        except (OSError, ValueError):
            continue
        if not state.get("finished"):
            continue
        if "estimator" not in state.get("files", {}):
            legacy.append(run)
            continue
        checkpoint = ResumableCheckpoint(run, state.get("fingerprint"), 0, 0)
        checkpoint.state_ = checkpoint.read_state()
        with open(checkpoint._file(checkpoint.state_, "estimator"), encoding="utf-8") as f:
            meta = json.load(f)
        if meta.get("class") != type(base).__name__ or _params_key(meta.get("params", {}), ignore) not in wanted:
            continue
        runs.append((run, checkpoint, meta))
    if not runs:
        more = (
            f" {len(legacy)} finished fits there do not record their estimator (checkpoints written before "
            "sktransfer kept it: see docs/merging.md), so they cannot be rebuilt."
            if legacy else ""
        )
        raise ValueError(
            f"found no finished fit of this {type(search).__name__} in checkpoint_dir={str(directory)!r}.{more} "
            "Pass a list of fitted models or save() directories instead."
        )
    expected = len(search.cv_results_["params"]) * int(getattr(search, "n_splits_", 1)) + int(bool(search.refit))
    if len(runs) > expected:
        warnings.warn(
            f"checkpoint_dir={str(directory)!r} holds {len(runs)} finished fits with this search's parameters, "
            f"more than its {expected} fits (the same candidates fitted on other data?): all are soup "
            "ingredients. Give each search its own checkpoint_dir.",
            UserWarning,
            stacklevel=3,
        )
    return [_from_checkpoint(run, checkpoint, meta) for run, checkpoint, meta in runs]


def _params_key(params, ignore):
    params = {k: v for k, v in params.items() if k not in ignore}
    return json.dumps(json.loads(json.dumps(params, default=str)), sort_keys=True)  # a JSON round trip, as save() writes them


def _from_checkpoint(run, checkpoint, meta):
    cls = _estimator_classes()[meta["class"]]
    from ._training import _with_legacy_params

    # A checkpoint written before a parameter existed gets its old default, as load() does.
    est = _persistence.build_estimator(cls, {**meta["params"], "callbacks": None}, run, legacy=_with_legacy_params,
                                       file="final-estimator.json")
    est._restore_fitted(meta["fitted"])
    if "lr" in meta["fitted"]:
        est.lr_ = float(meta["fitted"]["lr"])
    fingerprint = _pretrained(est).fingerprint()

    def read():
        # A finished checkpoint keeps the tensors that trained and the
        # buffers; the others are the pretrained weights the module is built
        # with (the backbone's fingerprint is part of the run's name).
        if meta["class"] != "LoRAClassifier":
            # Mapped, not read: only the tensors looked up are paged in, and
            # no module is built (built modules hold reference cycles, so
            # they were freed only at the next garbage collection: a soup of
            # 8 checkpoints of MiniLM peaked at 10.8 models).
            trained = checkpoint._torch_load("final_params", "cpu", mmap=True)
            return _Overlay(trained, {f"body.{k}": v for k, v in _pretrained(est).body.state_dict().items()})
        with isolated_torch_rng():
            module = est._build_module(_pretrained(est), est._n_out_fitted())
        module.load_state_dict(checkpoint._torch_load("final_params", "cpu"), strict=False)
        if hasattr(module, "get_base_model"):  # LoRA: merged into the base
            if not hasattr(est, "base_fingerprint_"):
                est.base_fingerprint_ = fingerprint
            return est._attach_net(module).merge().net_.module_.state_dict()
        return module.state_dict()

    return _Ingredient(repr(run), _as_fine_tuned(est), read, fingerprint, builds=meta["class"] == "LoRAClassifier")


def _ingredients(models):
    from sklearn.model_selection._search import BaseSearchCV

    if isinstance(models, BaseSearchCV):
        return _from_search(models)
    if isinstance(models, (str, os.PathLike)):
        raise TypeError("models must be a list of fitted models or save() directories, not one path.")
    models = list(models)
    if not models:
        raise ValueError("soup() needs at least one model; got an empty list.")
    return [_from_save_dir(m) if isinstance(m, (str, os.PathLike)) else _from_estimator(i, m) for i, m in enumerate(models)]


def _evaluator(ingredient):
    """A fitted estimator to write the soup's candidates into: a copy (the ingredients stay as they are).

    The copy is of the estimator's description and fitted attributes, never
    of its trained net: a fitted net also holds its optimizer's state (two
    more sets of weights for Adam) and its callbacks' tensors, measured at
    12 models' worth for a deep copy of a full fine-tune of MiniLM. The
    module scored is built afresh from the shared pretrained backbone, as
    for a save directory; every ingredient's weights are written into it
    before it is scored.
    """
    est = copy.copy(ingredient.est)  # shallow: shares the ingredient's attributes until dropped or deep-copied
    fitted_net = est.__dict__.pop("net_", None) is not None
    est = copy.deepcopy(est)
    with isolated_torch_rng():
        shared = _pretrained(est)
        module = est._build_module(shared, est._n_out_fitted())
    if not fitted_net:  # a fitted ingredient keeps the source it was trained from
        est.backbone_source_ = shared.source
    return est._attach_net(module)


def _parts(state, key):
    """``(index, part)`` pairs that cover ``state[key]``: blocks of rows when ``state`` reads from disk."""
    if hasattr(state, "chunks"):
        yield from state.chunks(key)
    else:
        yield ..., state[key]


def _into(dest, state, key, add=False):
    """``dest`` (a tensor) set to, or increased by, ``state[key]``, read by blocks of rows where it is on disk."""
    for index, part in _parts(state, key):
        if add:
            dest[index].add_(part.to(dest.dtype))
        else:
            dest[index].copy_(part)


def _write(module, state):
    with torch.no_grad():
        for k, v in module.state_dict().items():
            _into(v, state, k)


# ---------------------------------------------------------------------- soup
def soup(models, X_val, y_val, method="greedy", *, scoring=None, recalibrate_bn=True, X_bn=None):
    """Average the weights of models fine-tuned from one pretrained start (a model soup).

    Model soups (Wortsman et al. 2022): fine-tunes of the same backbone (a
    grid search's candidates, several seeds) usually lie in one basin of
    the loss, so their averaged weights form one model that is often better
    than each of them, at the cost of one model at inference. ``"uniform"``
    averages every model; ``"greedy"`` scores each model on the validation
    data, then, from the best down, adds a model only if the soup's
    validation score does not drop: it is never worse than the best
    ingredient on ``X_val`` (the uniform soup can be).

    Models are read one at a time, whatever their number: two sets of
    weights are in memory beyond what the caller holds (the running sum and
    the soup being scored), plus the activations of the scoring forward
    passes and the pretrained backbone, which the library loads once per
    process (already loaded after a fit;
    :func:`~sktransfer.backbones.clear_backbone_memo` frees it). A fitted
    full fine-tune is read where it is; a save directory is read from disk
    a block of rows at a time; a search's checkpoint through a memory map,
    a block of rows at a time too (the pages of each block handed back once
    used); a LoRA model is merged into a third set while it is read. ``"greedy"`` reads
    each model twice (its own score, the soup with it) and a third time
    those it keeps (to add them).
    Measured peaks are in ``docs/merging.md``.

    BatchNorm: running statistics describe the network they were measured
    in, and averaged weights are another network (interpolated BatchNorm
    CNNs collapse without this step). The statistics of every BatchNorm
    layer that moved from the pretrained ones in some ingredient
    (``freeze_bn_stats=False``) are recomputed on ``X_bn`` for each soup that
    is scored, as WiSE-FT does (:func:`sktransfer.callbacks.recompute_bn_statistics`);
    layers every ingredient kept frozen keep the pretrained statistics.

    Parameters
    ----------
    models : list of fitted estimators or of directories, or a fitted GridSearchCV / RandomizedSearchCV
        The ingredients, all fine-tuned from the same pretrained backbone
        (same weights fingerprint), with the same architecture (``head``,
        ``head_hidden``) and classes (or number of targets):
        :class:`~sktransfer.FineTunedClassifier`,
        :class:`~sktransfer.FineTunedRegressor`,
        :class:`~sktransfer.LoRAClassifier` (through its merged weights), or
        directories written by their ``save``. A search whose estimator had
        ``checkpoint_dir`` set: its finished fits in that directory (the
        cross-validation fits of every candidate, and the refit), so that
        ``refit=False`` searches, which keep no model, can be souped; see
        ``docs/merging.md``. Regressors fitted on different rows
        (standardised differently) are averaged in the same units.
        One model is allowed (a copy of it is returned, with a warning).
    X_val : list, array, Series or one-column DataFrame
        Validation inputs (not used to train any ingredient).
    y_val : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Their targets; a missing one (NaN, None) is refused.
    method : {"greedy", "uniform"}, default="greedy"
    scoring : str, callable or None, default=None
        A scikit-learn scorer (None: the estimator's ``score``, accuracy or
        R²), higher is better.
    recalibrate_bn : bool, default=True
        Recompute the statistics of BatchNorm layers that moved in training
        (see above). False: they are averaged like the weights.
    X_bn : inputs or None, default=None
        Rows to recompute BatchNorm statistics on (e.g. training rows);
        None: ``X_val`` (only its inputs, not its targets).

    Returns
    -------
    soup : estimator
        A fitted estimator of the ingredients' class (a
        :class:`~sktransfer.FineTunedClassifier` for LoRA ingredients) with
        the parameters of the best ingredient and the averaged weights, and:

        ``soup_ingredients_`` : list of int
            Positions in ``models`` (for a search: in ``soup_sources_``) of
            the models in the soup, in the order they were added (best first).
        ``soup_scores_`` : ndarray of shape (n_models,)
            Validation score of each model, in the order of ``models``.
        ``soup_score_`` : float
            The soup's validation score.
        ``soup_sources_`` : list
            What each model was: its position's label, save directory or
            checkpoint run directory.

    Examples
    --------
    >>> from sktransfer import FineTunedClassifier
    >>> from sktransfer.merging import soup
    >>> texts = ["the match ended in a draw", "shares fell sharply",
    ...          "the striker scored twice", "the bank raised rates"] * 4
    >>> y = ["sport", "business", "sport", "business"] * 4
    >>> seeds = [FineTunedClassifier(max_epochs=1, random_state=s).fit(texts, y) for s in (0, 1)]
    >>> merged = soup(seeds, texts, y, method="uniform")
    >>> merged.soup_ingredients_
    [0, 1]
    """
    from sklearn.metrics import check_scoring

    if method not in _METHODS:
        raise ValueError(f"method={method!r} is not a soup; valid values: {', '.join(map(repr, _METHODS))}.")
    y_val = _check_y(X_val, y_val)
    ingredients = _ingredients(models)
    sources = [ing.label for ing in ingredients]
    first = ingredients[0]
    for ing in ingredients[1:]:
        _check_same_start(first, ing, first.label, ing.label)
    # Regressors: every head re-expressed in one standardisation (the mean of theirs).
    rescale = None
    if hasattr(first.est, "y_mean_"):
        to_mean = np.mean([ing.est.y_mean_ for ing in ingredients], axis=0)
        to_scale = np.mean([ing.est.y_scale_ for ing in ingredients], axis=0)
        rescale = (to_mean, to_scale)

    def read(ing):
        if ing.builds:  # frees the module built by the previous read (the loops drop their reference first)
            gc.collect()
        state = ing.read()
        if rescale is not None:
            state = _rescaled_head(state, ing.est.y_mean_, ing.est.y_scale_, *rescale)
        return state

    evaluator = _evaluator(first)
    if rescale is not None:
        evaluator.y_mean_, evaluator.y_scale_ = rescale
    evaluator.set_params(inference_backend="torch", inference_quantize=None)  # scored on the torch weights
    module = evaluator.net_.module_
    reference = {k: tuple(v.shape) for k, v in module.state_dict().items()}  # shapes only: no copy of the weights
    scorer = check_scoring(evaluator, scoring=scoring)
    pretrained = {f"body.{k}": v for k, v in _pretrained(evaluator).body.state_dict().items() if v.is_floating_point()}

    def score():
        evaluator._forget_compiled(refs=True)
        return float(scorer(evaluator, X_val, y_val))

    # Pass 1: each model's own score (and the shapes checked against the first).
    scores = np.empty(len(ingredients))
    moved = []  # per ingredient: its BatchNorm layers whose statistics left the pretrained ones
    for i, ing in enumerate(ingredients):
        state = read(ing)
        _check_same_shapes(reference, state, first.label, ing.label)
        moved.append({
            k[: -len(".running_mean")] for k in state
            if k.endswith(".running_mean") and k in pretrained and not torch.equal(state[k].cpu(), pretrained[k])
        })
        _write(module, state)
        del state  # before scoring: a checkpoint's mapped pages are not resident with the activations
        scores[i] = score()
    del reference

    if len(ingredients) == 1:
        warnings.warn(
            f"soup() of one model ({first.label}) returns a copy of it: a soup averages two models or more.",
            UserWarning,
            stacklevel=2,
        )
        _write(module, read(first))
        return _finish(evaluator, first.est, [0], scores, scores[0], sources, method)

    bn_rows = None

    def recalibrate(members):
        nonlocal bn_rows
        if not recalibrate_bn:
            return
        names = set().union(*(moved[i] for i in members))
        layers = [m for name, m in module.named_modules() if name in names]
        if not layers:
            return
        if bn_rows is None:
            from ._data import RowDataset

            bb = _pretrained(evaluator)
            rows = X_val if X_bn is None else X_bn
            bn_rows = RowDataset(bb, bb.check_inputs(rows), max_length=evaluator.max_length, image_size=evaluator.image_size)
        recompute_bn_statistics(module, layers, bn_rows, max(evaluator.batch_size, 32), evaluator.net_.device)

    def set_mean(total, n, extra=None):
        """Write ``(total + extra) / (n + [extra])`` into the module, in place (no new set of weights)."""
        with torch.no_grad():
            for k, v in module.state_dict().items():
                if not v.is_floating_point():
                    continue
                v.copy_(total[k])
                if extra is not None:
                    _into(v, extra, k, add=True)
                v.div_(n + (extra is not None))

    def add(total, state):
        with torch.no_grad():
            for k, v in total.items():
                if v.is_floating_point():
                    _into(v, state, k, add=True)

    def first_sum(state):
        """A copy of ``state`` to sum into (read block by block where it is on disk)."""
        out, dtypes = {}, {k: v.dtype for k, v in module.state_dict().items()}
        for k in state:
            if hasattr(state, "chunks"):
                out[k] = torch.empty(_shape(state, k), dtype=dtypes[k])
                _into(out[k], state, k)
            else:
                out[k] = state[k].detach().clone()
        return out

    order = list(range(len(ingredients))) if method == "uniform" else list(np.argsort(-scores, kind="stable"))
    total = first_sum(read(ingredients[order[0]]))
    kept = [int(order[0])]
    if method == "uniform":
        for i in order[1:]:
            add(total, read(ingredients[i]))
            kept.append(int(i))
        set_mean(total, len(kept))
        recalibrate(kept)
        best = score()
    else:
        best = scores[order[0]]
        for i in order[1:]:
            state = read(ingredients[i])
            set_mean(total, len(kept), state)
            if not ingredients[i].builds:  # read again if kept (cheap), so nothing read is held while scoring
                state = None
            recalibrate(kept + [int(i)])
            s = score()
            if s >= best:
                add(total, read(ingredients[i]) if state is None else state)
                kept.append(int(i))
                best = s
            del state
        set_mean(total, len(kept))
        if len(kept) > 1:
            recalibrate(kept)
        else:  # the best model alone: its own weights, statistics included
            _write(module, read(ingredients[kept[0]]))
    del total
    return _finish(evaluator, ingredients[kept[0]].est, kept, scores, best, sources, method)


def _finish(est, src, kept, scores, best, sources, method):
    """The soup as a fitted estimator with the parameters of ``src`` (its first, best-ranked, ingredient)."""
    # Same architecture (checked); inference settings included; the copy's own callbacks kept.
    est.set_params(**{k: v for k, v in src.get_params(deep=False).items() if k != "callbacks"})
    if "lr_" in src.__dict__:
        est.lr_ = src.lr_
    est._forget_compiled(refs=True)
    est.soup_ingredients_ = kept
    est.soup_scores_ = scores
    est.soup_score_ = float(best)
    est.soup_sources_ = list(sources)
    est.soup_method_ = method
    return est


# ------------------------------------------------------------ task vectors
class TaskVector:
    """What fine-tuning changed in a backbone: fine-tuned minus pretrained weights, with the tasks' heads.

    Made by :func:`task_vector`. Vectors of the same pretrained backbone
    add (``a + b``), subtract, negate (``-a``: unlearn a task) and scale by
    a number (``0.5 * a``); :meth:`apply` adds the result to the pretrained
    weights. Heads are not part of the arithmetic: each task keeps its own,
    and :meth:`apply` puts the chosen one (``head_from``) on the edited
    body.

    Attributes
    ----------
    deltas : dict of str to Tensor
        Per backbone tensor (``body.``-prefixed names, float32): the
        change. Floating buffers (BatchNorm running statistics) included.
    backbone : str
        The pretrained backbone's name.
    fingerprint : str
        Hash of its weights; vectors of different weights don't combine.
    tasks : list of str
        The tasks whose heads this vector carries, in order.
    """

    def __init__(self, deltas, backbone, fingerprint, heads):
        self.deltas = deltas
        self.backbone = backbone
        self.fingerprint = fingerprint
        self._heads = heads

    @property
    def tasks(self):
        return [h["name"] for h in self._heads]

    def __repr__(self):
        return f"TaskVector(backbone={self.backbone!r}, tasks={self.tasks}, norm={self.norm():.4g})"

    def norm(self):
        """The vector's L2 norm over every tensor."""
        return float(torch.sqrt(sum((d.double() ** 2).sum() for d in self.deltas.values())))

    def _check_other(self, other):
        if not isinstance(other, TaskVector):
            return NotImplemented
        if other.fingerprint != self.fingerprint or set(other.deltas) != set(self.deltas):
            raise ValueError(
                f"task vectors of different pretrained backbones cannot be combined: {self.tasks} on "
                f"{self.backbone!r} (fingerprint {self.fingerprint}) and {other.tasks} on {other.backbone!r} "
                f"(fingerprint {other.fingerprint})."
            )
        return None

    def __add__(self, other):
        bad = self._check_other(other)
        if bad is NotImplemented:
            return bad
        deltas = {k: v + other.deltas[k] for k, v in self.deltas.items()}
        return TaskVector(deltas, self.backbone, self.fingerprint, _union(self._heads, other._heads))

    def __neg__(self):
        return self * -1.0

    def __sub__(self, other):
        bad = self._check_other(other)
        if bad is NotImplemented:
            return bad
        return self + (-other)

    def __mul__(self, c):
        if isinstance(c, bool) or not isinstance(c, (int, float, np.number)):
            return NotImplemented
        return TaskVector({k: v * float(c) for k, v in self.deltas.items()}, self.backbone, self.fingerprint, list(self._heads))

    __rmul__ = __mul__

    def _head(self, head_from, base_est):
        """The head ``apply`` puts on the edited body (see ``head_from``)."""
        if head_from is None:
            return _head_of(base_est, "estimator") if base_est is not None else self._heads[0]
        if isinstance(head_from, (int, np.integer)) and not isinstance(head_from, bool):
            if not -len(self._heads) <= head_from < len(self._heads):
                raise IndexError(f"head_from={head_from}: this vector carries {len(self._heads)} heads ({self.tasks}).")
            return self._heads[head_from]
        if isinstance(head_from, str):
            matches = [h for h in self._heads if h["name"] == head_from]
            if not matches:
                raise ValueError(f"head_from={head_from!r} names no task of this vector; its tasks: {self.tasks}.")
            return matches[0]
        _check_fitted(head_from, "head_from")
        if not _starts_from(head_from, self.fingerprint):
            raise ValueError(
                f"head_from ({_describe(head_from)}) was fine-tuned from another backbone than this "
                f"vector's {self.backbone!r} (fingerprint {self.fingerprint})."
            )
        return _head_of(_dense(head_from), "head_from")

    def apply(self, backbone_or_estimator=None, head_from=None, *, X_bn=None):
        """The pretrained backbone plus this vector, with a task's head: a fitted estimator.

        Parameters
        ----------
        backbone_or_estimator : str, fitted estimator or None, default=None
            What the vector is added to: a backbone name (None: the
            vector's own), whose weights must be the ones the vector was
            measured on; or a fitted estimator of that backbone, whose
            fine-tuned body the vector edits (and whose head is kept unless
            ``head_from`` says otherwise).
        head_from : int, str, fitted estimator or None, default=None
            The head (with its classes, or targets' scaling, and the
            estimator's parameters): a position or name in :attr:`tasks`, or
            a fitted estimator of the same backbone. None: the estimator
            given as ``backbone_or_estimator``, else the vector's first task.
        X_bn : inputs or None, default=None
            Rows to recompute the BatchNorm statistics on for the edited
            weights (the layers whose statistics the vector changes). None:
            the statistics are the pretrained ones plus the vector's; a
            ValueError where that leaves a negative running variance (a
            negated or scaled vector of a fit with
            ``freeze_bn_stats=False``). Fits with frozen statistics (the
            default) change none: their vectors need no ``X_bn``.

        Returns
        -------
        estimator : FineTunedClassifier or FineTunedRegressor
            Fitted (a LoRA task's head comes back on a
            :class:`~sktransfer.FineTunedClassifier`).
        """
        from ._training import resolve_backbone

        base_est = None
        if backbone_or_estimator is not None and not isinstance(backbone_or_estimator, str):
            _check_fitted(backbone_or_estimator, "backbone_or_estimator")
            if not _starts_from(backbone_or_estimator, self.fingerprint):
                raise ValueError(
                    f"this task vector was measured on {self.backbone!r} (fingerprint {self.fingerprint}); "
                    f"the estimator ({_describe(backbone_or_estimator)}) was fine-tuned from fingerprint "
                    f"{_fingerprint(backbone_or_estimator)}."
                )
            base_est = _dense(backbone_or_estimator)
        head = self._head(head_from, base_est)
        if base_est is None:
            name = self.backbone if backbone_or_estimator is None else backbone_or_estimator
            with isolated_torch_rng():
                base = resolve_backbone(name, head["params"]["pooling"])
            if base.fingerprint() != self.fingerprint:
                raise ValueError(
                    f"this task vector was measured on {self.backbone!r} (fingerprint {self.fingerprint}); "
                    f"{name!r} has fingerprint {base.fingerprint()}: apply it to the backbone it came from."
                )
            body = {f"body.{k}": v for k, v in base.body.state_dict().items()}
        else:
            body = {k: v for k, v in base_est.net_.module_.state_dict().items() if k.startswith("body.")}
        params = {**head["params"], "callbacks": None}
        if base_est is None and backbone_or_estimator is not None:
            params["backbone"] = backbone_or_estimator  # e.g. a local copy of the same weights
        if isinstance(params.get("backbone"), BaseEstimator):  # a head fitted from a fitted start (not a saved config)
            est = head["class"](**params)
            est._check_params()
        else:
            est = _persistence.build_estimator(head["class"], params, "<task vector>")
        est._restore_fitted(head["fitted"])
        est.lr_ = head["lr"]
        with isolated_torch_rng():
            shared = resolve_backbone(est.backbone, est.pooling)
            module = est._build_module(shared, est._n_out_fitted())
        state = module.state_dict()
        with torch.no_grad():
            for k, v in state.items():
                if k.startswith("body."):
                    d = self.deltas.get(k)
                    v.copy_(body[k] if d is None or not v.is_floating_point() else body[k] + d.to(v.dtype))
                elif k.startswith("task_head."):
                    v.copy_(head["head"][k])
        if X_bn is None:
            # A vector of a fit whose BatchNorm statistics moved (freeze_bn_stats=False), negated or scaled, can
            # subtract more than the start's variance: BatchNorm would take the root of a negative number.
            negative = [k[len("body."):-len(".running_var")] for k, v in state.items()
                        if k.endswith(".running_var") and k in self.deltas and bool((v < 0).any())]
            if negative:
                raise ValueError(
                    f"the edited weights have a negative BatchNorm running_var in {len(negative)} layer(s) (first: "
                    f"{negative[0]!r}): this vector changes BatchNorm statistics (a fit with freeze_bn_stats=False) "
                    f"and, negated or scaled, subtracts more than the start's variance, which makes every output "
                    f"NaN. Pass X_bn (e.g. training rows) to recompute the statistics of the edited weights."
                )
        est.backbone_source_ = shared.source
        est = est._attach_net(module)
        if X_bn is not None:
            from ._data import RowDataset

            layers = [m for _, m in _bn_layers_changed(module, body)]
            if layers:
                rows = RowDataset(shared, shared.check_inputs(X_bn), max_length=est.max_length, image_size=est.image_size)
                recompute_bn_statistics(module, layers, rows, max(est.batch_size, 32), est.net_.device)
        est.task_vector_tasks_ = self.tasks
        return est


def _union(a, b):
    seen = {id(h) for h in a}
    return list(a) + [h for h in b if id(h) not in seen]


def _head_of(est, name):
    state = est.net_.module_.state_dict()
    fitted = est._fitted_json()
    return {
        "name": name,
        "class": type(est),
        "params": {k: v for k, v in est.get_params(deep=False).items() if k != "callbacks"},
        "fitted": fitted,
        "lr": float(est.__dict__.get("lr_", 1e-3)) if est.__dict__.get("lr_") != "auto" else 1e-3,
        "head": {k: v.detach().cpu().clone() for k, v in state.items() if k.startswith("task_head.")},
    }


def task_vector(estimator, name=None):
    """The task vector of a fine-tuned model: its backbone weights minus the pretrained ones.

    Task arithmetic (Ilharco et al. 2023): fine-tuning on a task moves the
    backbone's weights along a direction; adding the directions of two
    tasks gives one backbone for both, negating one makes the model forget
    that task, scaling one sets how much of it is applied.

    Parameters
    ----------
    estimator : fitted FineTunedClassifier, FineTunedRegressor or LoRAClassifier
        A LoRA model's vector is its merged update ``B @ A * scale`` on each
        adapted layer (zero elsewhere).
    name : str or None, default=None
        The task's name in :attr:`TaskVector.tasks` (None: ``"task0"`` style
        names are not unique across vectors, so the estimator's description
        with its classes is used).

    Returns
    -------
    TaskVector
        The change of every floating backbone tensor, and the estimator's
        head (with its classes or target scaling and parameters).

    Examples
    --------
    >>> from sktransfer import FineTunedClassifier
    >>> from sktransfer.merging import task_vector
    >>> texts = ["the match ended in a draw", "shares fell sharply",
    ...          "the striker scored twice", "the bank raised rates"] * 4
    >>> y = ["sport", "business", "sport", "business"] * 4
    >>> clf = FineTunedClassifier(max_epochs=1, random_state=0).fit(texts, y)
    >>> tv = task_vector(clf, name="topic")
    >>> (tv + (-tv)).norm() == 0.0
    True
    """
    _check_fitted(estimator, "estimator")
    fingerprint = _fingerprint(estimator)
    dense = _dense(estimator)
    shared = _pretrained(dense)
    if shared.fingerprint() != fingerprint:
        raise ValueError(
            f"{_describe(estimator)} was trained on weights with fingerprint {fingerprint}, but {estimator.backbone!r} "
            f"now has {shared.fingerprint()}: its task vector needs the pretrained weights it started from."
        )
    pretrained = shared.body.state_dict()
    deltas = {}
    for k, v in dense.net_.module_.state_dict().items():
        if k.startswith("body.") and v.is_floating_point():
            deltas[k] = (v.detach().cpu().float() - pretrained[k[len("body."):]].float())
    if name is None:
        what = getattr(dense, "classes_", None)
        name = _describe(estimator) + (f" {[str(c) for c in what[:4]]}" if what is not None else "")
    head = _head_of(dense, name)
    return TaskVector(deltas, dense.backbone, fingerprint, [head])


def merge_task_vectors(vectors, weights=None, *, method="linear", density=None):
    """Combine task vectors with task arithmetic, TIES or DARE, tensor by tensor.

    The implementation is PEFT's ``peft.utils.merge_utils``, the one
    :func:`~sktransfer.merge_adapters` uses (through
    ``add_weighted_adapter``) for LoRA adapters: TIES (Yadav et al. 2023)
    keeps each vector's largest ``density`` share, elects a sign per weight
    and averages the agreeing ones; DARE (Yu et al. 2024) drops a random
    ``1 - density`` share and rescales the rest (random: seed torch for a
    repeatable result).

    Parameters
    ----------
    vectors : list of TaskVector
        Of the same pretrained backbone.
    weights : list of float or None, default=None
        One per vector (default: 1 each, plain task arithmetic's sum).
    method : {"linear", "ties", "dare_linear", "dare_ties"}, default="linear"
    density : float in (0, 1] or None
        Needed by TIES and DARE.

    Returns
    -------
    TaskVector
        Carrying every vector's heads.
    """
    from peft.utils import merge_utils

    methods = {"linear": None, "ties": merge_utils.ties, "dare_linear": merge_utils.dare_linear, "dare_ties": merge_utils.dare_ties}
    if method not in methods:
        raise ValueError(f"method={method!r}; valid values: {', '.join(map(repr, methods))}.")
    vectors = list(vectors)
    if not vectors or not all(isinstance(v, TaskVector) for v in vectors):
        raise ValueError("merge_task_vectors needs a non-empty list of TaskVector.")
    for v in vectors[1:]:
        vectors[0]._check_other(v)
    weights = [1.0] * len(vectors) if weights is None else [float(w) for w in weights]
    if len(weights) != len(vectors):
        raise ValueError(f"{len(weights)} weights for {len(vectors)} task vectors.")
    if method != "linear" and (density is None or not 0 < density <= 1):
        raise ValueError(f"method={method!r} needs density in (0, 1], got {density!r}.")
    w = torch.tensor(weights, dtype=torch.float32)
    deltas = {}
    for k in vectors[0].deltas:
        tensors = [v.deltas[k] for v in vectors]
        if method == "linear":
            deltas[k] = merge_utils.task_arithmetic(tensors, w)
        else:
            deltas[k] = methods[method](tensors, w, density)
    heads = []
    for v in vectors:
        heads = _union(heads, v._heads)
    return TaskVector(deltas, vectors[0].backbone, vectors[0].fingerprint, heads)

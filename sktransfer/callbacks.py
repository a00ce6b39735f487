"""skorch callbacks for transfer learning.

Each one does one job, as skorch's own callbacks do, and is stateless with
respect to the epoch counter: it reads the position in training from the
net's history, so a fit resumed from a checkpoint continues the schedule
where it stopped. They are used by :class:`~sktransfer.FineTunedClassifier`
and can be passed to any skorch net whose module exposes ``block_groups``
(lists of parameter names from the stem to the top) and ``head``.
"""

import json
import math
import os

import numpy as np
import torch
from skorch.callbacks import Callback

from ._data import RowDataset


class CheckpointError(ValueError):
    """A ``checkpoint_dir`` run can't be resumed: a file is missing, damaged, changed or of another fit.

    The message names the file and the run's directory; deleting that
    directory trains the fit from the start.
    """


def _cuda_index(device):
    from ._seeding import _cuda_index as index

    return index(device)


def _last_epoch_complete(net):
    """Whether the last epoch of ``net.history`` ran to its end (losses recorded)."""
    if not len(net.history):
        return False
    row = net.history[-1]
    if "train_loss" not in row:
        return False
    return "valid_loss" in row or not net.train_split


def _trained_keys(net):
    """Names of the module's tensors a checkpoint must keep: every buffer, and the parameters that trained.

    A parameter trained if it trains now or the optimizer holds state for
    it (it had a gradient at some step). The others are the backbone's
    pretrained weights, unchanged, and covered by the backbone's
    fingerprint in the run's name: a resumed fit rebuilds them as they were.
    """
    optimizer = getattr(net, "optimizer_", None)
    stepped = {id(p) for p in optimizer.state} if optimizer is not None else set()
    keep = set()
    for name, v in net.module_.state_dict(keep_vars=True).items():
        if not isinstance(v, torch.nn.Parameter) or v.requires_grad or id(v) in stepped:
            keep.add(name)
    return keep


def _subset(state, keys):
    return {k: v for k, v in state.items() if k in keys}


def _n_train_batches_done(net):
    done = 0
    for epoch in net.history:
        done += sum(1 for b in epoch.get("batches", []) if "train_loss" in b)
    return done


class FreezeSchedule(Callback):
    """Choose which backbone block groups train, epoch by epoch.

    The head always trains. ``n_unfrozen(epoch)`` top groups of the backbone
    train too; the rest keep ``requires_grad=False`` (and frozen BatchNorm
    layers keep their running statistics, see ``_TransferModule.train``).

    Parameters
    ----------
    strategy : {"linear_probe", "partial", "full", "progressive"}
    unfreeze_last : int, default=2
        Top groups trained by ``"partial"``.
    unfreeze_every : int, default=1
        ``"progressive"`` unfreezes one more group every this many epochs,
        starting with the head alone (ULMFiT's gradual unfreezing).
    """

    def __init__(self, strategy, unfreeze_last=2, unfreeze_every=1):
        self.strategy = strategy
        self.unfreeze_last = unfreeze_last
        self.unfreeze_every = unfreeze_every

    def n_unfrozen(self, epoch, n_groups):
        if self.strategy == "linear_probe":
            return 0
        if self.strategy == "partial":
            return min(self.unfreeze_last, n_groups)
        if self.strategy == "full":
            return n_groups
        return min(n_groups, epoch // max(1, self.unfreeze_every))

    def on_epoch_begin(self, net, **kwargs):
        module = net.module_
        groups = module.block_groups
        k = self.n_unfrozen(len(net.history) - 1, len(groups))
        trainable = set()
        for names in groups[len(groups) - k :]:
            trainable.update(names)
        for name, p in module.body.named_parameters():
            p.requires_grad_(name in trainable)
        net.history.record("unfrozen_groups", k)


class WarmupCosine(Callback):
    """Linear warm-up over a fraction of the steps, then cosine decay to 0.

    Sets each optimizer group's learning rate to its base rate (stored as
    ``initial_lr``) times the schedule factor, before every training batch,
    and records the factor in the batch history (``lr_factor``).

    Parameters
    ----------
    total_steps : int or None, default=None
        Training batches in the whole fit. None: counted at
        ``on_train_begin`` from the data ``fit`` was given (the training
        part of the split, in batches as the loader draws them) times
        ``max_epochs``, so the schedule spans the batches that really train.
    warmup : float, default=0.1
        Fraction of ``total_steps`` spent warming up.

    Attributes
    ----------
    total_steps_ : int
        The length of the schedule in the fit that is running (or ran last).
    """

    def __init__(self, total_steps=None, warmup=0.1):
        self.total_steps = total_steps
        self.warmup = warmup

    def factor(self, step):
        total = max(1, int(self.total_steps_ if hasattr(self, "total_steps_") else self.total_steps))
        warm = int(round(self.warmup * total))
        if warm > 0 and step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        self.total_steps_ = planned_train_steps(net, X, y) if self.total_steps is None else int(self.total_steps)
        self.step_ = _n_train_batches_done(net)
        for group in net.optimizer_.param_groups:
            group.setdefault("initial_lr", group["lr"])

    def on_batch_begin(self, net, training=False, **kwargs):
        if not training:
            return
        f = self.factor(self.step_)
        for group in net.optimizer_.param_groups:
            group["lr"] = group["initial_lr"] * f
        net.history.record_batch("lr_factor", f)
        self.step_ += 1


def planned_train_steps(net, X, y):
    """Training batches of the whole fit: batches per epoch of ``X``'s training part × ``max_epochs``.

    The count comes from skorch itself (the net's own split and training
    loader: its batch size and ``drop_last``), so a schedule never
    re-derives it. skorch splits with a seeded ``ValidSplit`` in every
    trainer here, so splitting again gives the split that trains.
    """
    if X is None:
        raise ValueError("planned_train_steps needs the X given to fit.")
    dataset_train, _ = net.get_split_datasets(X, y)
    return max(1, len(net.get_iterator(dataset_train, training=True))) * int(net.max_epochs)


class L2SP(Callback):
    """L2-SP: pull the backbone towards its pretrained weights.

    Adds ``alpha * (w - w0)`` to each backbone gradient, the gradient of
    ``alpha / 2 * ||w - w0||²`` (Li et al., 2018, "Explicit inductive bias
    for transfer learning"). Weight decay toward zero should then be off
    for the backbone, which :class:`~sktransfer.FineTunedClassifier` does.

    Parameters
    ----------
    alpha : float
        Strength of the pull.
    reference : dict of str to Tensor
        Pretrained backbone weights (``body.`` prefixed names).
    """

    def __init__(self, alpha, reference):
        self.alpha = alpha
        self.reference = reference

    def on_train_begin(self, net, **kwargs):
        device = next(net.module_.parameters()).device
        self.ref_ = {k: v.to(device) for k, v in self.reference.items()}

    def on_grad_computed(self, net, named_parameters, **kwargs):
        if self.alpha <= 0:
            return
        with torch.no_grad():
            for name, p in named_parameters:
                if p.grad is not None and name in self.ref_:
                    p.grad.add_(p - self.ref_[name], alpha=self.alpha)


class WiSEFT(Callback):
    """WiSE-FT: interpolate the fine-tuned backbone with the pretrained one.

    After training, each backbone weight becomes
    ``(1 - alpha) * w0 + alpha * w`` (Wortsman et al., 2022, "Robust
    fine-tuning of zero-shot models"). ``alpha=1`` keeps the fine-tuned
    weights; smaller values keep more of what the backbone knew.

    BatchNorm layers need one more step. Their running statistics describe
    the activations of the network they were measured in; neither the
    pretrained nor the fine-tuned statistics (nor a mix of the two) describe
    the interpolated network, which collapses with them (measured on
    EfficientNet-Lite0: ``docs/fine_tuning.md``, "Catastrophic forgetting").
    With ``recalibrate_bn=True`` the statistics of every BatchNorm layer that
    updated them during training are recomputed on the training inputs
    (no augmentation, one pass, plain average) for the interpolated weights.
    Layers that stayed in inference mode keep their pretrained statistics.

    Parameters
    ----------
    alpha : float in [0, 1]
    reference : dict of str to Tensor
        Pretrained backbone state (``body.`` prefixed names): weights and
        floating buffers such as BatchNorm running statistics.
    recalibrate_bn : bool, default=True
        Recompute the running statistics of the BatchNorm layers that changed
        during training, on the ``X`` given to ``fit``. Without it, those
        statistics are interpolated like the weights.
    batch_size : int, default=32
        Batch size of the recalibration pass.
    """

    def __init__(self, alpha, reference, recalibrate_bn=True, batch_size=32):
        self.alpha = alpha
        self.reference = reference
        self.recalibrate_bn = recalibrate_bn
        self.batch_size = batch_size

    def on_train_end(self, net, X=None, y=None, **kwargs):
        apply_wise_ft(net, self.reference, self.alpha, X, y, self.recalibrate_bn, self.batch_size)


def apply_wise_ft(net, reference, alpha, X=None, y=None, recalibrate_bn=True, batch_size=32):
    """Interpolate ``net``'s backbone towards ``reference`` (WiSE-FT), in place.

    What :class:`WiSEFT` does at the end of training; the estimators call it
    as an explicit step after ``fit`` (so it sees the final weights, after
    ``EarlyStopping`` restored the best ones, whatever the callback order).
    ``X, y`` are the data given to ``fit``: the BatchNorm statistics that
    moved are recomputed on its training part.
    """
    if alpha >= 1.0:
        return
    module = net.module_
    changed = _bn_layers_changed(module, reference) if recalibrate_bn and X is not None else []
    if changed:
        X = _training_rows(net, X, y)
    with torch.no_grad():
        for name, p in module.state_dict(keep_vars=True).items():
            ref = reference.get(name)
            if ref is not None and p.is_floating_point():
                p.copy_(torch.lerp(ref.to(p.device, p.dtype), p, alpha))
    if changed:
        # With the fit's loader workers (num_workers) preparing the batches.
        workers = getattr(net, "iterator_train__num_workers", 0)
        recompute_bn_statistics(module, [m for _, m in changed], X, batch_size, net.device, num_workers=workers)
        net.history.record("wise_bn_recalibrated", len(changed))


def _training_rows(net, X, y):
    """The rows of ``X`` that ``fit`` trained on (without the validation split).

    This splits again, so it relies on the split being a function of the
    data: the trainers always give ``ValidSplit`` a concrete seed (drawn once
    per fit when ``random_state=None``, see ``sktransfer._seeding``), so this
    is the split that trained.
    """
    if not net.train_split or y is None:
        return X
    dataset_train, _ = net.get_split_datasets(X, y)
    idx = getattr(dataset_train, "indices", None)
    if idx is None:
        return X
    idx = np.asarray(idx)
    if isinstance(X, RowDataset):  # the trainers' rows: a view, nothing decoded
        return X.subset(idx)
    return {k: np.asarray(v)[idx] for k, v in X.items()}


def _bn_layers_changed(module, reference):
    """(name, layer) of the BatchNorm layers whose running mean moved from ``reference``."""
    out = []
    for name, m in module.named_modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            ref = reference.get(f"{name}.running_mean")
            if ref is not None and not torch.equal(ref.to(m.running_mean.device), m.running_mean):
                out.append((name, m))
    return out


def recompute_bn_statistics(module, layers, X, batch_size=32, device="cpu", num_workers=0):
    """Recompute the running statistics of ``layers`` on inputs ``X``.

    The idea of ``torch.optim.swa_utils.update_bn`` (reset, momentum None
    for a plain average, one pass), written out because ``update_bn`` resets
    *every* BatchNorm of the model, including those that kept their
    pretrained statistics because they never trained, puts the whole model
    in training mode (dropout, augmentation) and feeds it one positional
    tensor, while a ``TransferModule`` takes keyword batches.

    Parameters
    ----------
    module : torch.nn.Module
        Called as ``module(**batch)``.
    layers : list of BatchNorm modules inside ``module``
    X : RowDataset, or dict of str to array
        The rows (a :class:`~sktransfer._data.RowDataset`: read batch by
        batch, in order), or keyword inputs of ``module``, rows first.
    """
    if not layers:
        return
    momenta = {m: m.momentum for m in layers}
    was_training = module.training
    module.eval()  # no augmentation, no dropout
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    n = len(X) if isinstance(X, RowDataset) else len(next(iter(X.values())))
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()  # a one-row batch has no batch statistics: fold it into the one before
    ends = starts[1:] + [n]
    if isinstance(X, RowDataset):
        batches = X.batches(bounds=list(zip(starts, ends)), num_workers=num_workers)
    else:
        batches = ({k: torch.as_tensor(v[start:end]) for k, v in X.items()} for start, end in zip(starts, ends))
    try:
        with torch.no_grad():
            for batch in batches:
                module(**{k: v.to(device) for k, v in batch.items()})
    finally:
        for m, momentum in momenta.items():
            m.momentum = momentum
        module.train(was_training)


class ResumableCheckpoint(Callback):
    """Kill-safe checkpoint of one fit, from which the fit resumes bit-identically.

    Used by the trainers when ``checkpoint_dir`` is set; ``dirname`` is the
    directory of one fit (``checkpoint_path_``: a subdirectory of
    ``checkpoint_dir`` named by the fit's fingerprint, see
    ``_SkorchTransferBase._fit``). After every epoch it writes, through
    skorch's own ``save_params`` (``f_params``, ``f_optimizer``,
    ``f_history``):

    * the module's parameters, the optimizer's state and the history;
    * the random state: torch's global generators (dropout, augmentation),
      the DataLoader's generator (the shuffling order: at an epoch's end,
      the sampler's position is the start of the next epoch's permutation);
    * :class:`~skorch.callbacks.EarlyStopping`'s state, its best weights
      included, which its ``on_train_begin`` would otherwise reset;

    then ``checkpoint.json``, last and atomically: the epoch, the seed, the
    fingerprint, and the SHA-256 of each file. When training ends after a
    complete epoch (all epochs, or stopped by any callback: early stopping,
    built-in or the user's) the final model (early stopping's best
    weights, when it restores them: the trainers put this callback last) is
    written and the run is marked finished: a later fit with the same
    fingerprint loads it and trains nothing. Steps after training
    (WiSE-FT) are not in it: the estimator applies them after ``fit`` and
    after a resume alike.

    Why not skorch's :class:`~skorch.callbacks.Checkpoint`: it overwrites its
    files in place one after the other, so a kill between two writes leaves
    the parameters of one epoch next to the history of another, and it keeps
    no random state. Here each epoch's files have names of their own,
    ``checkpoint.json`` switches to them in one ``os.replace``, and the
    previous epoch's files are removed only then: whenever the process dies,
    ``checkpoint.json`` names a complete epoch.

    Parameters
    ----------
    dirname : str
    fingerprint : str
        What the run was made for (data, parameters, classes).
    seed : int
        The fit's seed (kept so that a ``random_state=None`` fit resumes
        with the seed it started with).
    max_epochs : int
    generator : torch.Generator or None
        The training DataLoader's generator.
    early_stopping : skorch.callbacks.EarlyStopping or None
    """

    STATE = "checkpoint.json"

    def __init__(self, dirname, fingerprint, seed, max_epochs, generator=None, early_stopping=None):
        self.dirname = dirname
        self.fingerprint = fingerprint
        self.seed = seed
        self.max_epochs = max_epochs
        self.generator = generator
        self.early_stopping = early_stopping

    def initialize(self):
        os.makedirs(self.dirname, exist_ok=True)
        self.pending_ = None
        return self

    # ----------------------------------------------------------- reading
    def read_state(self):
        """The run's ``checkpoint.json`` (None: no checkpoint yet); a damaged one raises ValueError."""
        path = os.path.join(self.dirname, self.STATE)
        try:
            with open(path, encoding="utf-8") as f:
                state = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(
                f"The checkpoint state {path!r} is unreadable ({exc}). Delete the directory "
                f"{self.dirname!r} to train this fit from the start."
            ) from exc
        ok = (
            isinstance(state, dict)
            and state.get("format") == 1
            and isinstance(state.get("epochs"), int)
            and isinstance(state.get("seed"), int)
            and isinstance(state.get("files"), dict)
        )
        if not ok:
            raise CheckpointError(
                f"The checkpoint state {path!r} is not a checkpoint of this version of sktransfer. "
                f"Delete the directory {self.dirname!r} to train this fit from the start."
            )
        if state.get("fingerprint") != self.fingerprint:
            raise CheckpointError(
                f"The checkpoint state {path!r} was made for another fit (fingerprint "
                f"{state.get('fingerprint')!r}, this fit is {self.fingerprint!r}): refusing to resume from it."
            )
        return state

    def _file(self, state, role):
        """Path of the file ``role`` of ``state``, checked against its SHA-256."""
        from ._utils import sha256_file

        try:
            name, digest = state["files"][role]
            path = os.path.join(self.dirname, os.path.basename(str(name)))
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"{os.path.join(self.dirname, self.STATE)!r} lists no valid {role!r} file ({exc!r}). "
                f"Delete the directory {self.dirname!r} to train this fit from the start."
            ) from exc
        try:
            actual = sha256_file(path)
        except OSError as exc:
            raise CheckpointError(
                f"The checkpoint file {path!r} is missing or unreadable ({exc}). "
                f"Delete the directory {self.dirname!r} to train this fit from the start."
            ) from exc
        if actual != digest:
            raise CheckpointError(
                f"The checkpoint file {path!r} does not match {os.path.join(self.dirname, self.STATE)!r} "
                f"(damaged or changed). Delete the directory {self.dirname!r} to train this fit from the start."
            )
        return path

    def restore(self, net, state):
        """Load a checkpoint into an initialised ``net``: weights, history, and (finished) nothing else to train.

        An unfinished run also gets its optimizer state now, and its random
        state and early stopping's state at the next ``on_train_begin``
        (after EarlyStopping's own, which resets it). Every failure is a
        :class:`CheckpointError` naming the file.
        """
        self.state_ = state
        if state.get("finished"):
            self._load_params(net, "final_params")
            self._load(net, "history", f_history="history")
            return
        self._load_params(net, "params")
        self._load(net, "optimizer", "history", f_optimizer="optimizer", f_history="history")
        rng = self._torch_load("rng", "cpu")
        best = None
        if "best" in state["files"]:
            # The best epoch's trained tensors over the rest, which never train (a full state for EarlyStopping).
            best = {k: v.detach().clone() for k, v in net.module_.state_dict().items()}
            best.update(self._torch_load("best", net.device))
            self.best_saved_ = ((state.get("early_stopping") or {}).get("best_epoch"), tuple(state["files"]["best"]))
        self.pending_ = (rng, state.get("early_stopping"), best)

    def _load_params(self, net, role):
        """Load the tensors a checkpoint keeps (trained ones and buffers); the others stay as built."""
        tensors = self._torch_load(role, net.device)
        path = self._file(self.state_, role)
        try:
            result = net.module_.load_state_dict(tensors, strict=False)
        except Exception as exc:  # shapes that don't fit
            raise CheckpointError(
                f"The checkpoint file {path!r} does not fit the model ({type(exc).__name__}: {exc}). "
                f"Delete the directory {self.dirname!r} to train this fit from the start."
            ) from exc
        params = {name for name, _ in net.module_.named_parameters()}
        lost = [k for k in result.missing_keys if k not in params]
        if result.unexpected_keys or lost:
            raise CheckpointError(
                f"The checkpoint file {path!r} does not fit the model (not in the model: "
                f"{result.unexpected_keys[:3]}; missing buffers: {lost[:3]}). "
                f"Delete the directory {self.dirname!r} to train this fit from the start."
            )

    def _load(self, net, *roles, **kwargs):
        state = self.state_
        paths = {role: self._file(state, role) for role in roles}
        try:
            net.load_params(**{k: paths[role] for k, role in kwargs.items()})
        except Exception as exc:  # torch/pickle/json/shape errors: which file is unknown, name them all
            raise CheckpointError(
                f"The checkpoint files {sorted(paths.values())} could not be loaded ({type(exc).__name__}: {exc}). "
                f"Delete the directory {self.dirname!r} to train this fit from the start."
            ) from exc

    def _torch_load(self, role, map_location, mmap=False):
        path = self._file(self.state_, role)
        try:
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
        except Exception as exc:  # OSError, pickle.UnpicklingError, RuntimeError, ...
            raise CheckpointError(
                f"The checkpoint file {path!r} could not be loaded ({type(exc).__name__}: {exc}). "
                f"Delete the directory {self.dirname!r} to train this fit from the start."
            ) from exc

    def on_train_begin(self, net, **kwargs):
        if self.pending_ is None:
            return
        rng, es_state, best = self.pending_
        self.pending_ = None
        torch.set_rng_state(rng["torch"])
        index = _cuda_index(net.device)
        if index is not None and "cuda" in rng:
            torch.cuda.set_rng_state(rng["cuda"], index)
        if self.generator is not None and "data" in rng:
            self.generator.set_state(rng["data"])
        es = self.early_stopping
        if es is not None and es_state is not None:
            es.misses_ = int(es_state["misses"])
            es.dynamic_threshold_ = float(es_state["threshold"])
            es.best_epoch_ = int(es_state["best_epoch"])
            es.best_model_weights_ = best

    # ----------------------------------------------------------- writing
    def on_epoch_end(self, net, **kwargs):
        self._save(net, finished=False)

    def on_train_end(self, net, **kwargs):
        # skorch calls this when the epochs are done and when training was
        # stopped by a KeyboardInterrupt, which is how skorch's EarlyStopping
        # (built-in or the user's) stops and how Ctrl-C arrives; an exception
        # never gets here. The run is finished when its last epoch completed
        # (stopped after an epoch by any callback, or all epochs done); a
        # Ctrl-C mid-epoch leaves an incomplete history row, and the last
        # complete epoch's checkpoint stays, to resume from.
        if _last_epoch_complete(net):
            self._save(net, finished=True)

    def _save(self, net, finished):
        from ._utils import atomic_write_bytes, sha256_file

        epoch = len(net.history)
        tag = "final" if finished else f"epoch{epoch}"
        files = {}

        def put(role, name, **save_kwargs):
            path = os.path.join(self.dirname, f"{tag}-{name}")
            if save_kwargs:
                net.save_params(**{k: path for k in save_kwargs})
            files[role] = [os.path.basename(path), sha256_file(path)]

        keep_keys = _trained_keys(net)
        es = self.early_stopping
        es_state = None
        if finished:
            torch.save(_subset(net.module_.state_dict(), keep_keys), os.path.join(self.dirname, f"{tag}-params.pt"))
            put("final_params", "params.pt")
            put("history", "history.json", f_history=True)
        else:
            torch.save(_subset(net.module_.state_dict(), keep_keys), os.path.join(self.dirname, f"{tag}-params.pt"))
            put("params", "params.pt")
            put("optimizer", "optimizer.pt", f_optimizer=True)
            put("history", "history.json", f_history=True)
            rng = {"torch": torch.get_rng_state()}
            index = _cuda_index(net.device)  # the fit's device only: a CPU fit never touches CUDA
            if index is not None:
                rng["cuda"] = torch.cuda.get_rng_state(index)
            if self.generator is not None:
                rng["data"] = self.generator.get_state()
            torch.save(rng, os.path.join(self.dirname, f"{tag}-rng.pt"))
            put("rng", "rng.pt")
            if es is not None and hasattr(es, "misses_"):
                es_state = {
                    "misses": int(es.misses_),
                    "threshold": float(es.dynamic_threshold_),
                    "best_epoch": int(es.best_epoch_),
                }
                if getattr(es, "best_model_weights_", None) is not None:
                    saved = getattr(self, "best_saved_", None)
                    if saved is not None and saved[0] == es_state["best_epoch"] and os.path.exists(
                        os.path.join(self.dirname, saved[1][0])
                    ):
                        files["best"] = list(saved[1])  # the best epoch did not change: its file stays
                    else:
                        torch.save(_subset(es.best_model_weights_, keep_keys), os.path.join(self.dirname, f"{tag}-best.pt"))
                        put("best", "best.pt")
                        self.best_saved_ = (es_state["best_epoch"], tuple(files["best"]))
        state = {
            "format": 1,
            "fingerprint": self.fingerprint,
            "seed": int(self.seed),
            "epochs": epoch,
            "finished": bool(finished),
            "files": files,
            "early_stopping": es_state,
        }
        atomic_write_bytes(os.path.join(self.dirname, self.STATE), json.dumps(state, indent=1).encode("utf-8"))
        keep = {name for name, _ in files.values()} | {self.STATE}
        for name in os.listdir(self.dirname):
            if name not in keep and (name.startswith("epoch") or name.startswith("final-")):
                try:
                    os.remove(os.path.join(self.dirname, name))
                except OSError:
                    pass

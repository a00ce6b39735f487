"""The learning-rate range test behind ``lr="auto"``.

skorch has no learning-rate finder (its ``LRScheduler`` schedules a rate,
it does not search one), so this module adds one, after fastai's
``Learner.lr_find`` (Smith, "Cyclical Learning Rates for Training Neural
Networks", 2017): from the model's initial state, train on mini-batches of
the training rows while the rate grows exponentially from ``START_LR`` to
``END_LR`` over ``NUM_STEPS`` steps; smooth the loss with an exponential
moving average (``BETA``, bias-corrected); stop once the smoothed loss is
above ``DIVERGENCE`` times the best seen (or not finite); then put the
model and the optimizer back as they were. The steps are skorch's own
(``get_split_datasets``, ``get_iterator``, ``train_step``), with the
callbacks that shape a step (gradient clipping, L2-SP) and without the
others (no checkpoint, schedule, history or user callback sees the sweep).

**The rule.** ``lr = lr_at_min / 10``: one decade below the rate of the
lowest smoothed loss, on the curve without its first tenth and last five
points (fastai's trim: the start is the moving average warming up, the end
is divergence). This is the classic back-off (Smith; fastai v1's
``lr_min``): the lowest loss is where a larger step stops paying, and a
decade of margin keeps training clear of divergence, which matters
because the sweep sees each rate for one step while training runs near
its peak rate for many (warm-up, then cosine decay from it).

fastai's newer default, the *valley* (halfway down the longest descending
stretch of the curve), is computed too (``valley_lr``, marked in the plot)
but not used: on a sweep that cycles over few rows the loss already falls
at tiny rates, the descending stretch spans many decades and its middle
sits low. Compared once (sklearn digits, EfficientNet-Lite0, ``"full"``
and ``"linear_probe"``): the valley's rates were several times lower than
``lr_at_min / 10`` and than the best fixed rates tried, and scored below
them; ``lr_at_min / 10`` landed near those best rates (figures:
``docs/fine_tuning.md``, "Learning rates").
One task only, and digits is also a task of the evaluation suite
(``benchmarks/suite/``): the suite's ``lrauto`` figures on digits are not
held out from this choice. The leave-one-task-out runs on the other tasks
are the real test.

Randomness: the sweep runs on a fork of torch's generators
(:func:`~sktransfer._seeding.isolated_torch_rng`) and shuffles with a
generator of its own, so the training that follows draws exactly what a fit
with ``lr=lr_`` would: the two fits are identical.
"""

import contextlib
import copy
import math

import numpy as np
import torch

from ._seeding import data_generator, isolated_torch_rng

START_LR = 1e-7
END_LR = 10.0
NUM_STEPS = 100
BETA = 0.98
DIVERGENCE = 4.0


class LRFinderResult:
    """The sweep of a learning-rate range test and the rate chosen from it.

    Fitted estimators with ``lr="auto"`` keep one as ``lr_finder_``.

    Attributes
    ----------
    lrs : ndarray
        Base learning rate of each step (the head's; block groups ran at
        their ``backbone_lr_ratio`` / ``layer_decay`` fractions of it).
    losses : ndarray
        Training loss after each step, smoothed (exponential moving average
        with bias correction).
    raw_losses : ndarray
        The loss of each step's batch, unsmoothed.
    lr : float
        The rate chosen: ``min_loss_lr / 10`` (at least the first rate).
    valley_lr : float
        fastai's valley: halfway down the longest descending stretch of the
        curve (reported and plotted, not used; see the module's notes).
    min_loss_lr : float
        Rate of the lowest smoothed loss.
    diverged : bool
        Whether the sweep stopped because the loss blew up (above
        ``4 x`` its best, or not finite) before the last rate.
    """

    def __init__(self, lrs, losses, raw_losses, lr, valley_lr, min_loss_lr, diverged):
        self.lrs = np.asarray(lrs, dtype=float)
        self.losses = np.asarray(losses, dtype=float)
        self.raw_losses = np.asarray(raw_losses, dtype=float)
        self.lr = float(lr)
        self.valley_lr = float(valley_lr)
        self.min_loss_lr = float(min_loss_lr)
        self.diverged = bool(diverged)

    def __repr__(self):
        end = "diverged" if self.diverged else "did not diverge"
        return (
            f"LRFinderResult(lr={self.lr:.3g}, valley_lr={self.valley_lr:.3g}, "
            f"min_loss_lr={self.min_loss_lr:.3g}, {len(self.lrs)} steps, {end})"
        )

    def plot(self, ax=None):
        """Smoothed loss against the learning rate (log scale), the choice marked.

        Parameters
        ----------
        ax : matplotlib Axes or None, default=None
            Where to draw (None: a new figure).

        Returns
        -------
        ax : matplotlib Axes
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 4))
        ax.plot(self.lrs, self.losses, color="tab:blue", label="smoothed loss")
        ax.set_xscale("log")
        at = lambda lr: float(np.interp(np.log(lr), np.log(self.lrs), self.losses))  # noqa: E731
        ax.plot([self.valley_lr], [at(self.valley_lr)], "o", color="tab:orange", label=f"valley {self.valley_lr:.2g}")
        ax.plot([self.min_loss_lr], [at(self.min_loss_lr)], "s", color="tab:gray", label=f"minimum {self.min_loss_lr:.2g}")
        ax.axvline(self.lr, color="tab:red", linestyle="--", label=f"lr_ = {self.lr:.2g}")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss (smoothed)")
        ax.set_title("Learning-rate range test")
        ax.legend(loc="best")
        return ax


def plot_lr_find(estimator, ax=None):
    """Plot the learning-rate range test of an estimator fitted with ``lr="auto"``.

    Parameters
    ----------
    estimator : fitted FineTunedClassifier, FineTunedRegressor, LoRAClassifier or DANNClassifier
    ax : matplotlib Axes or None, default=None
        Where to draw (None: a new figure).

    Returns
    -------
    ax : matplotlib Axes
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(estimator, "lr_")
    finder = getattr(estimator, "lr_finder_", None)
    if finder is None:
        raise ValueError(
            f"{type(estimator).__name__} was fitted with lr={estimator.lr!r}: there is no sweep to plot. "
            "Fit it with lr='auto' to run the learning-rate range test."
        )
    return finder.plot(ax=ax)



class LRFinderError(ValueError):
    """``lr="auto"`` could not choose a rate (the sweep recorded no usable loss).

    A ``ValueError``, so code that catches those (a search's
    ``error_score``) still does.
    """

# ------------------------------------------------------------------ choice
def _valley(losses):
    """Index halfway down the longest decreasing subsequence (fastai's ``valley``)."""
    n = len(losses)
    lds = [1] * n
    start = end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[end] < lds[i]:
                end = i
                start = end - lds[end]
    third = (end - start) / 3
    return start + int(third) + int(third / 2)


def suggest_lr(lrs, losses, num_steps=None):
    """The rate to train at, from a sweep: ``lr_at_min / 10``, and fastai's valley.

    Parameters
    ----------
    lrs, losses : array-like
        The sweep (rates in increasing order, smoothed losses).
    num_steps : int or None
        Steps the sweep was planned for (its first tenth is trimmed);
        None: ``len(lrs)``.

    Returns
    -------
    lr, valley_lr, min_loss_lr : float
    """
    lrs, losses = np.asarray(lrs, dtype=float), np.asarray(losses, dtype=float)
    if len(lrs) == 0:
        raise LRFinderError(
            "the learning-rate sweep recorded no finite loss: the first step already diverged. "
            "Pass a numeric lr (e.g. lr=1e-4) instead of lr='auto'."
        )
    lo, hi = (num_steps or len(lrs)) // 10, len(lrs) - 5
    if hi - lo < 3:  # too short to trim
        lo, hi = 0, len(lrs)
    lrs_in, losses_in = lrs[lo:hi], losses[lo:hi]
    valley = float(lrs_in[_valley(losses_in)])
    at_min = float(lrs_in[int(np.argmin(losses_in))])
    return max(at_min / 10, float(lrs[0])), valley, at_min


# ------------------------------------------------------------------- sweep
def _set_base_lr(optimizer, lr):
    # Each group runs at its share of the base rate (``lr_scale``, set by
    # _TransferNet: backbone_lr_ratio, layer_decay); a group without one
    # (a head with its own head_lr) keeps its rate.
    for group in optimizer.param_groups:
        if "lr_scale" in group:
            group["lr"] = lr * group["lr_scale"]


@contextlib.contextmanager
def _initial_state_kept(net):
    """Run the block on ``net``, then put its module, optimizer and history back."""
    from .callbacks import FreezeSchedule

    module = net.module_
    params = dict(module.named_parameters())
    flags = {n: p.requires_grad for n, p in params.items()}
    was_training = module.training
    n_history = len(net.history)
    # The blocks that train in the first epoch train in the sweep.
    net.history.new_epoch()
    for _, cb in net.callbacks_:
        if isinstance(cb, FreezeSchedule):
            cb.on_epoch_begin(net)
    kept = {n: p.detach().clone() for n, p in params.items() if p.requires_grad}
    kept_buffers = {n: b.detach().clone() for n, b in module.named_buffers()}
    optimizer_state = copy.deepcopy(net.optimizer_.state_dict())
    try:
        yield
    finally:
        with torch.no_grad():
            for n, value in kept.items():
                params[n].copy_(value)
            for n, b in module.named_buffers():
                if n in kept_buffers:
                    b.copy_(kept_buffers[n])
        for n, p in params.items():
            p.grad = None
            p.requires_grad_(flags[n])
        net.optimizer_.load_state_dict(optimizer_state)
        module.train(was_training)
        del net.history[n_history:]


@contextlib.contextmanager
def _swapped(obj, **attrs):
    old = {k: getattr(obj, k) for k in attrs}
    for k, v in attrs.items():
        setattr(obj, k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            setattr(obj, k, v)


def lr_range_test(net, X, y, seed, *, start_lr=None, end_lr=None, num_steps=None):
    """Run a learning-rate range test on an initialized skorch net.

    Parameters
    ----------
    net : _TransferNet, initialized
        Left as it was: weights, buffers, ``requires_grad`` flags,
        optimizer, history, torch's random state.
    X, y
        The fit's inputs, as ``partial_fit`` takes them (the trainers': a
        :class:`~sktransfer._data.RowDataset`, whose batches the net's
        loader prepares as they are read, in ``num_workers`` processes);
        the net's ``train_split`` holds out its validation rows.
    seed : int
        The fit's seed: the sweep shuffles with a generator of its own
        seeded from it.
    start_lr, end_lr, num_steps : optional
        The sweep (default ``START_LR``, ``END_LR``, ``NUM_STEPS``).

    Returns
    -------
    LRFinderResult
    """
    from skorch.callbacks import GradientNormClipping

    from .callbacks import L2SP

    start = START_LR if start_lr is None else float(start_lr)
    end = END_LR if end_lr is None else float(end_lr)
    n = NUM_STEPS if num_steps is None else int(num_steps)
    train, _ = net.get_split_datasets(X, y)
    lrs, losses, raw = [], [], []
    avg, best, diverged, step = 0.0, math.inf, False, 0
    # Only the callbacks that change a step's gradient take part.
    step_callbacks = [(name, cb) for name, cb in net.callbacks_ if isinstance(cb, (GradientNormClipping, L2SP))]
    with isolated_torch_rng(), _initial_state_kept(net), _swapped(
        net, callbacks_=step_callbacks, iterator_train__generator=data_generator(seed)
    ):
        for _, cb in step_callbacks:
            if isinstance(cb, L2SP):
                cb.on_train_begin(net)
        while step < n and not diverged:
            n_before = step
            for batch in net.get_iterator(train, training=True):
                lr = start * (end / start) ** (step / max(1, n - 1))
                _set_base_lr(net.optimizer_, lr)
                loss = float(net.train_step(batch)["loss"].detach())
                step += 1
                raw.append(loss)
                if not math.isfinite(loss):
                    diverged = True
                    break
                avg = BETA * avg + (1 - BETA) * loss
                smooth = avg / (1 - BETA**step)
                lrs.append(lr)
                losses.append(smooth)
                best = min(best, smooth)
                if smooth > DIVERGENCE * best:
                    diverged = True
                    break
                if step >= n:
                    break
            if step == n_before:  # no batch at all
                break
    lr, valley, at_min = suggest_lr(lrs, losses, n)
    result = LRFinderResult(lrs, losses, raw, lr, valley, at_min, diverged)
    if net.verbose:
        print(f"LR range test: {len(lrs)} steps from {start:.1e}, {result!r}")
    return result

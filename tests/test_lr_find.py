"""``lr="auto"``: the LR range test, on real backbones and small real data.

Most fits use EfficientNet-Lite0 on sklearn's digits at 32 px (a training
step costs a few ms), one uses MiniLM on BBC texts. Tests of the wiring
(LoRA, DANN, the search, the text model) shorten the sweep through
``_lr_finder.NUM_STEPS``; the ones about the choice keep fastai's 100 steps.
"""

import math

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV

from sktransfer import FineTunedClassifier, FineTunedRegressor, LoRAClassifier
from sktransfer import _lr_finder
from sktransfer.adaptation import DANNClassifier
from sktransfer._lr_finder import LRFinderResult, plot_lr_find, suggest_lr
from conftest import IMAGE, TEXT

FAST = dict(image_size=32, batch_size=16, max_epochs=2, random_state=0)


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    X = (d.images[:64] * 16).clip(0, 255).astype(np.uint8)
    return X, d.target[:64]


@pytest.fixture
def short_sweep(monkeypatch):
    monkeypatch.setattr(_lr_finder, "NUM_STEPS", 30)


@pytest.fixture(scope="module")
def auto_fit(digits, one_thread):
    """A linear probe fitted with lr="auto", and torch's/numpy's global RNG state around the fit."""
    X, y = digits
    torch.manual_seed(123)
    np.random.seed(123)
    before = torch.get_rng_state().clone(), np.random.get_state()[1].copy()
    clf = FineTunedClassifier(IMAGE, strategy="linear_probe", lr="auto", layer_decay=0.5, **FAST).fit(X, y)
    after = torch.get_rng_state().clone(), np.random.get_state()[1].copy()
    return clf, before, after


# ----------------------------------------------------------------- the choice
def test_the_chosen_rate_is_finite_and_within_the_sweep(auto_fit):
    clf, _, _ = auto_fit
    f = clf.lr_finder_
    assert isinstance(f, LRFinderResult)
    assert math.isfinite(clf.lr_) and clf.lr_ > 0
    assert f.lrs.min() <= clf.lr_ <= f.lrs.max()
    assert clf.lr_ == f.lr and clf.net_.lr == clf.lr_
    assert len(f.lrs) == len(f.losses) > 10
    assert np.all(np.diff(f.lrs) > 0) and np.all(np.isfinite(f.losses))
    # The smoothed loss fell somewhere before the chosen rate: it is not the first point.
    assert f.losses.min() < f.losses[0]


def test_discriminative_rates_scale_from_the_found_rate(auto_fit):
    clf, _, _ = auto_fit
    lrs = [g["initial_lr"] for g in clf.net_.optimizer_.param_groups]
    assert lrs[0] == pytest.approx(clf.lr_)  # head
    assert lrs[1] == pytest.approx(clf.lr_ * 0.1)  # top block group: backbone_lr_ratio
    assert lrs[2] == pytest.approx(clf.lr_ * 0.1 * 0.5)  # one below: layer_decay


def test_the_sweep_leaves_no_trace(auto_fit, digits):
    """A fit with lr="auto" is the fit with lr=lr_: same weights, same losses."""
    clf, _, _ = auto_fit
    X, y = digits
    ref = FineTunedClassifier(IMAGE, strategy="linear_probe", lr=clf.lr_, layer_decay=0.5, **FAST).fit(X, y)
    assert ref.lr_ == clf.lr_ and ref.lr_finder_ is None
    a, b = clf.net_.module_.state_dict(), ref.net_.module_.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert list(clf.history_[:, "train_loss"]) == list(ref.history_[:, "train_loss"])


def test_the_users_random_generators_are_left_alone(auto_fit):
    _, before, after = auto_fit
    assert torch.equal(before[0], after[0])
    assert np.array_equal(before[1], after[1])


def test_auto_fits_are_repeatable(auto_fit, digits):
    clf, _, _ = auto_fit
    X, y = digits
    again = clone(clf).fit(X, y)
    assert again.lr_ == clf.lr_
    np.testing.assert_array_equal(again.lr_finder_.losses, clf.lr_finder_.losses)


def test_a_diverging_sweep_picks_a_rate_well_below_divergence(digits):
    X, y = digits
    reg = FineTunedRegressor(IMAGE, strategy="linear_probe", lr="auto", grad_clip=None, weight_decay=0.0, **FAST)
    reg.fit(X, y.astype(float))
    f = reg.lr_finder_
    assert f.diverged, "a linear head under Adam at lr 10 should diverge"
    assert f.losses[-1] > 4 * f.losses.min()
    # At least a decade below the rate of the lowest loss, which lies below divergence.
    assert reg.lr_ <= f.min_loss_lr / 10 * (1 + 1e-9)
    assert reg.lr_ < f.lrs[-1] / 10
    assert np.isfinite(reg.predict(X[:4])).all()


def test_suggestion_on_a_synthetic_curve():
    lrs = np.logspace(-7, 1, 100)
    x = np.log10(lrs)
    # Flat, then falls from 1e-4 to a minimum at 1e-2, then blows up.
    losses = 2.0 - 1.5 / (1 + np.exp(-3 * (x + 3))) + np.where(x > -2, 20 * (x + 2) ** 2, 0.0)
    lr, valley, at_min = suggest_lr(lrs, losses, num_steps=100)
    assert at_min == pytest.approx(lrs[np.argmin(losses[10:-5]) + 10])
    assert 1e-5 < valley < at_min
    assert lr == pytest.approx(at_min / 10)
    # Too short a sweep to trim still gives a rate within it.
    lr2, _, _ = suggest_lr(lrs[:4], losses[:4], num_steps=100)
    assert lrs[0] <= lr2 <= lrs[3]


# ------------------------------------------------------------- other estimators
def test_lora_with_auto(digits, short_sweep):
    X, y = digits
    clf = LoRAClassifier(IMAGE, lr="auto", **{**FAST, "max_epochs": 1}).fit(X, y)
    assert clf.lr_finder_.lrs.min() <= clf.lr_ <= clf.lr_finder_.lrs.max()
    assert [g["initial_lr"] for g in clf.net_.optimizer_.param_groups] == pytest.approx([clf.lr_, clf.lr_])
    # head_lr stays the head's rate: only the adapters' rate is searched.
    fixed = LoRAClassifier(IMAGE, lr="auto", head_lr=1e-2, **{**FAST, "max_epochs": 1}).fit(X, y)
    assert [g["initial_lr"] for g in fixed.net_.optimizer_.param_groups] == pytest.approx([fixed.lr_, 1e-2])


def test_dann_with_auto(digits, short_sweep):
    X, y = digits
    clf = DANNClassifier(IMAGE, lr="auto", strategy="partial", unfreeze_last=1, **{**FAST, "max_epochs": 1})
    clf.fit(X[:32], y[:32], X_target=255 - X[32:])
    assert math.isfinite(clf.lr_) and clf.lr_finder_.lrs.min() <= clf.lr_ <= clf.lr_finder_.lrs.max()
    assert clf.predict(255 - X[:3]).shape == (3,)


def test_text_backbone_with_auto(bbc, one_thread, monkeypatch):
    monkeypatch.setattr(_lr_finder, "NUM_STEPS", 12)  # a MiniLM forward is ~20x a 32 px EfficientNet's
    idx = np.concatenate([np.flatnonzero(bbc.target == k)[:8] for k in range(5)])
    X = [bbc.data[i][:300] for i in idx]
    y = np.asarray(bbc.target_names)[bbc.target[idx]]
    clf = FineTunedClassifier(TEXT, strategy="linear_probe", lr="auto", max_length=64, batch_size=20,
                              max_epochs=1, random_state=0).fit(X, y)
    assert clf.lr_finder_.lrs.min() <= clf.lr_ <= clf.lr_finder_.lrs.max()
    assert set(clf.predict(X[:5])) <= set(y)


def test_no_checkpoint_is_written_by_the_sweep(digits, short_sweep, tmp_path, monkeypatch):
    from sktransfer.callbacks import ResumableCheckpoint

    saves = []
    real = ResumableCheckpoint._save
    monkeypatch.setattr(ResumableCheckpoint, "_save", lambda self, net, finished: saves.append(len(net.history)) or real(self, net, finished))
    X, y = digits
    kw = dict(strategy="linear_probe", checkpoint_dir=str(tmp_path), **{**FAST, "max_epochs": 1})
    clf = FineTunedClassifier(IMAGE, lr="auto", **kw).fit(X[:32], y[:32])
    assert saves == [1, 1]  # the epoch's and the final save, both after the real epoch
    # A rerun reuses the finished run, with the same rate.
    again = FineTunedClassifier(IMAGE, lr="auto", **kw).fit(X[:32], y[:32])
    assert again.lr_ == clf.lr_ and again.checkpoint_path_ == clf.checkpoint_path_


# ------------------------------------------------------------------ sklearn
def test_clone_and_grid_search_with_auto(digits, short_sweep):
    X, y = digits
    est = FineTunedClassifier(IMAGE, strategy="linear_probe", lr="auto", **{**FAST, "max_epochs": 1})
    assert clone(est).get_params()["lr"] == "auto"
    search = GridSearchCV(est, {"lr": ["auto", 1e-2]}, cv=2).fit(X, y)
    assert search.best_params_["lr"] in ("auto", 1e-2)
    assert math.isfinite(search.best_estimator_.lr_)


@pytest.mark.parametrize("cls", [FineTunedClassifier, FineTunedRegressor, LoRAClassifier, DANNClassifier])
@pytest.mark.parametrize("bad", [0, -1e-3, float("nan"), float("inf"), "fast", "Auto", None, True, [1e-3]])
def test_invalid_lr_is_refused_naming_the_parameter(cls, bad):
    with pytest.raises(ValueError, match=r"The 'lr' parameter of \w+ must be a float in the range \(0\.0, inf\) or a str among \{'auto'\}\. Got "):
        cls(IMAGE, lr=bad).fit(np.zeros((4, 8, 8), np.uint8), [0, 1, 0, 1])


# --------------------------------------------------------------------- plot
def test_plot_returns_axes(auto_fit):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.axes import Axes

    clf, _, _ = auto_fit
    ax = plot_lr_find(clf)
    assert isinstance(ax, Axes) and ax.get_xscale() == "log"
    x, _ = ax.lines[0].get_data()
    np.testing.assert_array_equal(x, clf.lr_finder_.lrs)
    assert isinstance(clf.lr_finder_.plot(ax=ax), Axes)
    import matplotlib.pyplot as plt

    plt.close("all")


def test_plot_of_a_numeric_lr_fit_says_what_to_do(digits):
    X, y = digits
    clf = FineTunedClassifier(IMAGE, strategy="linear_probe", lr=1e-2, **{**FAST, "max_epochs": 1}).fit(X[:32], y[:32])
    assert clf.lr_ == 1e-2
    with pytest.raises(ValueError, match="lr='auto'"):
        plot_lr_find(clf)


def test_the_found_rate_survives_save_and_load(auto_fit, tmp_path):
    clf, _, _ = auto_fit
    back = FineTunedClassifier.load(clf.save(tmp_path / "m"))
    assert back.lr == "auto" and back.lr_ == clf.lr_
    assert back.net_.lr == clf.lr_  # training on after load continues at the found rate


def test_a_sweep_that_diverges_at_once_raises_a_named_error():
    from sktransfer import LRFinderError

    with pytest.raises(LRFinderError, match="first step already diverged"):
        suggest_lr([], [])
    assert issubclass(LRFinderError, ValueError)  # callers catching ValueError still do

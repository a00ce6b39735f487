"""FineTunedClassifier / FineTunedRegressor on real backbones, small and fast."""

import json
import os
import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from skorch.callbacks import Callback

from sktransfer import FineTunedClassifier, FineTunedRegressor
from sktransfer.callbacks import WarmupCosine
from sktransfer.metrics import forgetting_report, linear_cka
from conftest import IMAGE, TEXT, TV_IMAGE

FAST_IMG = dict(image_size=32, batch_size=16, max_epochs=1, random_state=0)
FAST_TXT = dict(max_length=48, batch_size=16, max_epochs=1, random_state=0)


@pytest.fixture(scope="module")
def texts(bbc_small):
    X, y = bbc_small
    order = np.random.RandomState(1).permutation(len(y))  # mix the topics
    return [X[i][:300] for i in order], y[order]


@pytest.fixture(scope="module")
def images(fashion_small):
    X, y = fashion_small
    order = np.random.RandomState(1).permutation(len(y))
    X, y = X[order], y[order]
    return X, np.asarray(["tshirt", "trouser", "sneaker", "bag"])[np.searchsorted([0, 1, 7, 8], y)]


def _split(X, y, n_test=40, seed=0):
    idx = np.random.RandomState(seed).permutation(len(y))
    te, tr = idx[:n_test], idx[n_test:]
    take = (lambda A, i: [A[j] for j in i]) if isinstance(X, list) else (lambda A, i: A[i])
    return take(X, tr), y[tr], take(X, te), y[te]


def _backbone_state(clf):
    return {k: v.detach().clone() for k, v in clf.net_.module_.body.state_dict().items()}


def _pretrained_state(backbone):
    from sktransfer.backbones import load_backbone

    return {k: v.detach().clone() for k, v in load_backbone(backbone).body.state_dict().items()}


# ----------------------------------------------------------------- learning
def test_text_classifier_learns_with_string_labels(texts):
    Xtr, ytr, Xte, yte = _split(*texts)
    clf = FineTunedClassifier(TEXT, strategy="linear_probe", lr=3e-2, **{**FAST_TXT, "max_epochs": 4}).fit(Xtr, ytr)
    assert list(clf.classes_) == sorted(set(ytr))
    proba = clf.predict_proba(Xte)
    assert proba.shape == (len(Xte), 5)
    np.testing.assert_allclose(proba.sum(1), 1, atol=1e-5)
    assert clf.score(Xte, yte) > 0.7  # 5 topics, chance 0.2
    assert set(clf.predict(Xte)) <= set(clf.classes_)
    assert clf.transform(Xte).shape == (len(Xte), 384)


def test_image_full_fine_tuning_reduces_loss(images):
    X, y = images
    clf = FineTunedClassifier(IMAGE, strategy="full", lr=3e-3, **{**FAST_IMG, "max_epochs": 3}).fit(X, y)
    losses = clf.history_[:, "train_loss"]
    assert losses[-1] < losses[0]
    assert clf.score(X, y) > 0.5


def test_search_round_trip_clone_set_params_then_fit(images):
    # What GridSearchCV does with each candidate and with the refit:
    # clone(estimator).set_params(**params).fit(X, y). A clone keeps the
    # parameters and none of the fitted state; set_params reaches fit; a
    # fit changes neither the estimator it was cloned from nor the shared
    # pretrained weights that the next clone starts from (fits are
    # repeatable with a seed: test_random_state_makes_cpu_runs_repeatable).
    X, y = images
    X, y = X[::2], y[::2]
    base = FineTunedClassifier(IMAGE, strategy="partial", lr=3e-4, class_weight="balanced", **FAST_IMG)
    params = {"strategy": "progressive", "lr": 1e-2}
    cand = clone(base)
    assert cand.get_params() == base.get_params() and not hasattr(cand, "net_")
    cand.set_params(**params)
    assert cand.get_params() == FineTunedClassifier(
        IMAGE, class_weight="balanced", **{**FAST_IMG, **params}).get_params()
    assert base.get_params()["strategy"] == "partial" and base.get_params()["lr"] == 3e-4
    before = _pretrained_state(IMAGE)
    cand.fit(X, y)
    assert cand.lr_ == 1e-2  # set_params reached the fit
    assert np.isfinite(cand.score(X, y))
    assert not hasattr(base, "net_") and base.get_params()["strategy"] == "partial"
    after = _pretrained_state(IMAGE)
    assert all(torch.equal(before[k], after[k]) for k in before)
    again = clone(cand)
    assert not hasattr(again, "net_") and again.get_params() == cand.get_params()


# --------------------------------------------------------------- strategies
def _changed_groups(clf, before):
    after = clf.net_.module_.body.state_dict()
    groups = clf.net_.module_.block_groups
    out = []
    for names in groups:
        out.append(any(not torch.equal(before[n], after[n]) for n in names))
    return out


@pytest.mark.parametrize(
    "strategy, expect",
    [
        ("linear_probe", lambda ch: not any(ch)),
        ("partial", lambda ch: ch[-2:] == [True, True] and not any(ch[:-2])),
        ("full", lambda ch: all(ch)),
    ],
)
def test_strategy_trains_exactly_the_expected_groups(images, strategy, expect):
    X, y = images
    before = _pretrained_state(IMAGE)
    clf = FineTunedClassifier(IMAGE, strategy=strategy, unfreeze_last=2, lr=1e-2, **FAST_IMG).fit(X[:32], y[:32])
    changed = _changed_groups(clf, before)
    assert expect(changed), changed


def test_linear_probe_keeps_batchnorm_statistics(images):
    X, y = images
    before = _pretrained_state(IMAGE)
    clf = FineTunedClassifier(IMAGE, strategy="linear_probe", **FAST_IMG).fit(X[:32], y[:32])
    after = clf.net_.module_.body.state_dict()
    stats = [k for k in before if k.endswith("running_mean")]
    assert stats and all(torch.equal(before[k], after[k]) for k in stats)


def test_progressive_unfreezes_one_group_per_epoch(texts):
    X, y = texts
    clf = FineTunedClassifier(TEXT, strategy="progressive", **{**FAST_TXT, "max_epochs": 3}).fit(X[:24], y[:24])
    assert list(clf.history_[:, "unfrozen_groups"]) == [0, 1, 2]
    # Transformer groups come from the model: embeddings, 6 layers, pooling/top.
    assert len(clf.net_.module_.block_groups) == 8


def test_discriminative_learning_rates(texts):
    X, y = texts
    clf = FineTunedClassifier(
        TEXT, strategy="full", lr=1e-3, backbone_lr_ratio=0.1, layer_decay=0.5, warmup=0.0, **FAST_TXT
    ).fit(X[:16], y[:16])
    lrs = [g["initial_lr"] for g in clf.net_.optimizer_.param_groups]
    assert lrs[0] == pytest.approx(1e-3)  # head
    assert lrs[1] == pytest.approx(1e-4)  # top block group
    assert lrs[2] == pytest.approx(5e-5)  # one below
    assert lrs[-1] < lrs[1] / 50  # stem gets the smallest


def test_warmup_then_cosine():
    s = WarmupCosine(total_steps=100, warmup=0.1)
    assert s.factor(0) == pytest.approx(0.1)
    assert s.factor(9) == pytest.approx(1.0)
    assert s.factor(55) == pytest.approx(0.5, abs=0.02)
    assert s.factor(99) < 0.01


# --------------------------------------------------------------- forgetting
def _distance(a, b, names):
    return sum(float((a[k] - b[k]).pow(2).sum()) for k in names)


def test_l2sp_keeps_weights_closer_to_pretrained(images):
    X, y = images
    w0 = _pretrained_state(IMAGE)
    kw = dict(strategy="full", lr=1e-2, backbone_lr_ratio=1.0, **{**FAST_IMG, "max_epochs": 2})
    free = FineTunedClassifier(IMAGE, **kw).fit(X[:48], y[:48])
    tied = FineTunedClassifier(IMAGE, l2sp=50.0, **kw).fit(X[:48], y[:48])
    names = [n for n, _ in free.net_.module_.body.named_parameters()]  # weights, not BN statistics
    assert _distance(_backbone_state(tied), w0, names) < 0.5 * _distance(_backbone_state(free), w0, names)


def test_wise_ft_interpolates_backbone(images):
    X, y = images
    w0 = _pretrained_state(IMAGE)
    kw = dict(strategy="full", lr=1e-2, **FAST_IMG)
    ft = FineTunedClassifier(IMAGE, **kw).fit(X[:32], y[:32])
    zero = FineTunedClassifier(IMAGE, wise_alpha=0.0, **kw).fit(X[:32], y[:32])
    half = FineTunedClassifier(IMAGE, wise_alpha=0.5, **kw).fit(X[:32], y[:32])
    w_ft, w_zero, w_half = _backbone_state(ft), _backbone_state(zero), _backbone_state(half)
    key = "conv_head.weight"
    torch.testing.assert_close(w_zero[key], w0[key])
    torch.testing.assert_close(w_half[key], 0.5 * (w0[key] + w_ft[key]), atol=1e-6, rtol=1e-5)


def _bn_stats(state):
    return [k for k in state if k.endswith(("running_mean", "running_var"))]


def test_freeze_bn_stats_keeps_the_pretrained_statistics_by_default(images):
    X, y = images
    w0 = _pretrained_state(IMAGE)
    kw = dict(strategy="full", lr=1e-2, backbone_lr_ratio=1.0, **FAST_IMG)
    moved = _backbone_state(FineTunedClassifier(IMAGE, freeze_bn_stats=False, **kw).fit(X[:32], y[:32]))
    kept = _backbone_state(FineTunedClassifier(IMAGE, **kw).fit(X[:32], y[:32]))  # the default
    stats = _bn_stats(w0)
    assert stats and _distance(moved, w0, stats) > 0
    for k in stats:
        torch.testing.assert_close(kept[k], w0[k], atol=0, rtol=0)
    # ... while the weights (BatchNorm scale and shift included) still train.
    assert not torch.equal(kept["conv_head.weight"], w0["conv_head.weight"])
    assert not torch.equal(kept["bn2.weight"], w0["bn2.weight"])
    with pytest.raises(ValueError, match=r"'freeze_bn_stats' parameter of FineTunedClassifier must be .* Got 'yes'"):
        FineTunedClassifier(IMAGE, freeze_bn_stats="yes", **FAST_IMG).fit(X[:8], y[:8])


def test_wise_ft_recomputes_batchnorm_statistics_for_the_interpolated_weights(images):
    """Interpolated statistics collapse a BatchNorm network (benchmarks): the
    statistics of the stem's BatchNorm must be those of its input, computed
    with the interpolated stem convolution on the training images."""
    from sktransfer.backbones import load_backbone

    X, y = images
    kw = dict(strategy="full", lr=1e-2, backbone_lr_ratio=1.0, augment=False, **FAST_IMG)
    half = FineTunedClassifier(IMAGE, wise_alpha=0.5, freeze_bn_stats=False, **kw).fit(X[:32], y[:32])
    assert half.history_[-1, "wise_bn_recalibrated"] > 0
    core = half.net_.module_
    crops = half._encode_X(X[:32], load_backbone(IMAGE), fitting=False)["X"]
    with torch.no_grad():
        stem_out = core.body.conv_stem(core.normalize(torch.as_tensor(crops)))
    torch.testing.assert_close(core.body.bn1.running_mean, stem_out.mean(dim=(0, 2, 3)), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(core.body.bn1.running_var, stem_out.var(dim=(0, 2, 3)), atol=1e-3, rtol=1e-3)
    assert core.body.bn1.momentum == 0.1  # restored after the recalibration pass
    # With frozen statistics there is nothing to recompute: they stay pretrained.
    w0 = _pretrained_state(IMAGE)
    frozen = FineTunedClassifier(IMAGE, wise_alpha=0.5, **kw).fit(X[:32], y[:32])  # freeze_bn_stats=True: the default
    assert "wise_bn_recalibrated" not in frozen.history_[-1]
    torch.testing.assert_close(_backbone_state(frozen)["bn1.running_mean"], w0["bn1.running_mean"], atol=0, rtol=0)


def test_wise_ft_recalibrates_on_the_training_rows_only(images):
    """With a validation split, the held-out rows must not enter the statistics."""
    from sktransfer.backbones import load_backbone

    X, y = images
    kw = dict(strategy="full", lr=1e-2, backbone_lr_ratio=1.0, augment=False, validation_fraction=0.25, **FAST_IMG)
    clf = FineTunedClassifier(IMAGE, wise_alpha=0.5, freeze_bn_stats=False, **kw).fit(X[:48], y[:48])
    core = clf.net_.module_
    crops = clf._encode_X(X[:48], load_backbone(IMAGE), fitting=False)["X"]
    with torch.no_grad():
        stem_out = core.body.conv_stem(core.normalize(torch.as_tensor(crops)))
    y_enc = torch.as_tensor(np.searchsorted(clf.classes_, y[:48]))
    train_ds, _ = clf.net_.get_split_datasets({"X": crops}, y_enc)
    train_idx = np.asarray(train_ds.indices)
    assert len(train_idx) == 36
    # one recalibration batch of 32 rows, then the remaining 4: a plain average of the two batch means
    means = [stem_out[train_idx[a:b]].mean(dim=(0, 2, 3)) for a, b in ((0, 32), (32, 36))]
    torch.testing.assert_close(core.body.bn1.running_mean, (means[0] + means[1]) / 2, atol=1e-4, rtol=1e-4)


def test_wise_ft_leaves_statistics_that_never_trained_alone(images):
    """`partial`: the lower groups keep their pretrained BatchNorm statistics
    during training, so WiSE-FT must not recompute them either."""
    X, y = images
    w0 = _pretrained_state(IMAGE)
    kw = dict(strategy="partial", unfreeze_last=1, lr=1e-2, freeze_bn_stats=False, **{**FAST_IMG, "batch_size": 12})
    # 33 rows: the recalibration pass (batches of 32) would end on a 1-row batch
    clf = FineTunedClassifier(IMAGE, wise_alpha=0.5, **kw).fit(X[:33], y[:33])
    state = _backbone_state(clf)
    torch.testing.assert_close(state["bn1.running_mean"], w0["bn1.running_mean"], atol=0, rtol=0)
    assert not torch.equal(state["bn2.running_mean"], w0["bn2.running_mean"])  # the top group's, recomputed


def test_wise_ft_applies_after_early_stopping_restores_the_best_weights(images):
    X, y = images
    w0 = _pretrained_state(IMAGE)
    clf = FineTunedClassifier(
        IMAGE, strategy="full", lr=1e-2, backbone_lr_ratio=1.0, wise_alpha=0.0, validation_fraction=0.25,
        early_stopping=1, **{**FAST_IMG, "max_epochs": 6},
    ).fit(X[:48], y[:48])
    assert not clf.history_[-1, "valid_loss_best"]  # it stopped early: EarlyStopping restored an earlier epoch
    # wise_alpha=0 gives back the pretrained backbone, whatever EarlyStopping restored before.
    torch.testing.assert_close(_backbone_state(clf)["conv_head.weight"], w0["conv_head.weight"], atol=0, rtol=0)


def test_a_one_row_last_batch_does_not_break_training_batchnorm(images):
    X, y = images
    # 33 rows in batches of 16: the last would hold one row, on which a
    # training BatchNorm (1x1 feature map at 32 px) cannot compute statistics.
    clf = FineTunedClassifier(IMAGE, strategy="full", freeze_bn_stats=False, **FAST_IMG).fit(X[:33], y[:33])
    assert clf.history_[-1, "train_batch_count"] == 2


def test_every_parameter_is_in_exactly_one_optimizer_group(texts):
    X, y = texts
    clf = FineTunedClassifier(TEXT, strategy="full", head="mlp", layer_decay=0.8, **FAST_TXT).fit(X[:16], y[:16])
    grouped = [id(p) for g in clf.net_.optimizer_.param_groups for p in g["params"]]
    assert len(grouped) == len(set(grouped))
    assert set(grouped) == {id(p) for p in clf.net_.module_.parameters()}


def test_objects_from_before_new_parameters_still_work(texts, tmp_path):
    """A pickle or a save() from before freeze_bn_stats existed: it trained
    with updating BatchNorm statistics, and says so."""
    X, y = texts
    clf = FineTunedClassifier(TEXT, strategy="linear_probe", **FAST_TXT).fit(X[:16], y[:16])
    old = pickle.loads(pickle.dumps(clf))
    del old.__dict__["freeze_bn_stats"]
    back = pickle.loads(pickle.dumps(old))
    assert back.get_params()["freeze_bn_stats"] is False
    clf.save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    del cfg["params"]["freeze_bn_stats"]
    cfg.pop("manifest", None)  # an old save: no manifest marker either
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    os.remove(tmp_path / "m" / "manifest.json")  # such a save also predates the manifest
    with pytest.warns(UserWarning, match="no manifest.json"):
        loaded = FineTunedClassifier.load(tmp_path / "m")
    assert loaded.freeze_bn_stats is False
    np.testing.assert_allclose(loaded.predict_proba(X[16:20]), clf.predict_proba(X[16:20]), atol=1e-6)


def test_linear_cka_properties():
    rng = np.random.RandomState(0)
    X = rng.randn(60, 10)
    Q, _ = np.linalg.qr(rng.randn(10, 10))
    assert linear_cka(X, X) == pytest.approx(1.0)
    assert linear_cka(X, 2.5 * X @ Q) == pytest.approx(1.0)
    assert linear_cka(X, rng.randn(60, 10)) < 0.4
    with pytest.raises(ValueError, match="same samples"):
        linear_cka(X, X[:5])


def test_forgetting_report(images):
    X, y = images
    clf = FineTunedClassifier(IMAGE, strategy="linear_probe", **FAST_IMG).fit(X[:32], y[:32])
    rep = forgetting_report(clf, X, y, cv=3)
    # A linear probe leaves the backbone untouched: nothing is forgotten.
    assert rep["cka"] == pytest.approx(1.0, abs=1e-5)
    assert rep["retained"] == pytest.approx(1.0, abs=1e-6)


# ---------------------------------------------------------------- hygiene
def test_random_state_makes_cpu_runs_repeatable(images):
    X, y = images
    a = FineTunedClassifier(IMAGE, strategy="full", **FAST_IMG).fit(X[:32], y[:32]).predict_proba(X[:8])
    b = FineTunedClassifier(IMAGE, strategy="full", **FAST_IMG).fit(X[:32], y[:32]).predict_proba(X[:8])
    np.testing.assert_array_equal(a, b)


def test_first_fit_in_a_process_is_repeatable_too(images):
    # Loading a backbone for the first time consumes torch's generator; the
    # seed must be applied after it, or the first fit differs from later ones.
    from sktransfer.backbones import clear_backbone_memo

    X, y = images
    clear_backbone_memo()
    a = FineTunedClassifier(IMAGE, strategy="full", **FAST_IMG).fit(X[:32], y[:32]).predict_proba(X[:8])
    b = FineTunedClassifier(IMAGE, strategy="full", **FAST_IMG).fit(X[:32], y[:32]).predict_proba(X[:8])
    np.testing.assert_array_equal(a, b)


def test_validation_split_and_early_stopping(texts):
    X, y = texts
    clf = FineTunedClassifier(
        TEXT, strategy="linear_probe", validation_fraction=0.25, early_stopping=1, lr=1e-5, **{**FAST_TXT, "max_epochs": 6}
    ).fit(X[:40], y[:40])
    assert "valid_loss" in clf.history_[-1]
    assert 1 <= clf.n_epochs_ <= 6


def test_checkpoint_and_resume(images, tmp_path):
    X, y = images
    kw = dict(strategy="progressive", checkpoint_dir=str(tmp_path / "ckpt"), **{**FAST_IMG, "max_epochs": 3})

    class Die(Callback):  # the process dies in the third epoch
        def on_batch_begin(self, net, training=False, **kwargs):
            if training and len(net.history) == 3:
                raise MemoryError

    with pytest.raises(MemoryError):
        FineTunedClassifier(IMAGE, callbacks=[Die()], **kw).fit(X[:32], y[:32])
    (run,) = os.listdir(tmp_path / "ckpt")
    assert "checkpoint.json" in os.listdir(tmp_path / "ckpt" / run)
    resumed = FineTunedClassifier(IMAGE, **kw).fit(X[:32], y[:32])
    assert resumed.n_epochs_ == 3 and resumed.checkpoint_path_ == str(tmp_path / "ckpt" / run)
    # The schedule continued: the third epoch unfroze a third group.
    assert list(resumed.history_[:, "unfrozen_groups"]) == [0, 1, 2]


def test_user_callbacks_run(texts):
    X, y = texts

    class Count(Callback):
        def initialize(self):
            self.epochs_ = 0
            return self

        def on_epoch_end(self, net, **kwargs):
            self.epochs_ += 1

    cb = Count()
    clf = FineTunedClassifier(TEXT, strategy="linear_probe", callbacks=[cb], **{**FAST_TXT, "max_epochs": 2}).fit(X[:16], y[:16])
    assert dict(clf.net_.callbacks_)["user_0"].epochs_ == 2


def test_class_weight(texts):
    X, y = texts
    clf = FineTunedClassifier(TEXT, strategy="linear_probe", class_weight="balanced", **FAST_TXT).fit(X[:20], y[:20])
    assert clf.net_.criterion_.weight is not None
    with pytest.raises(ValueError, match="class_weight names classes not in y"):
        FineTunedClassifier(TEXT, class_weight={"nope": 2.0}, **FAST_TXT).fit(X[:20], y[:20])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 autocast path needs CUDA (unverified on CPU-only CI)")
def test_bf16_autocast_on_cuda(images):  # pragma: no cover - GPU only
    X, y = images
    clf = FineTunedClassifier(IMAGE, device="cuda", bf16=True, **FAST_IMG).fit(X[:32], y[:32])
    assert clf.predict(X[:4]).shape == (4,)
    # predict runs in the precision it trained in (issue 12 §6): the same as skorch's own inference path
    from sktransfer.backbones import load_backbone

    via_skorch = torch.softmax(clf.net_.forward(clf._encode_X(X[:4], load_backbone(IMAGE), False)).float(), 1)
    np.testing.assert_allclose(clf.predict_proba(X[:4]), via_skorch.numpy(), atol=1e-3)


def test_prediction_runs_in_full_precision_on_cpu(images):
    import contextlib

    X, y = images
    clf = FineTunedClassifier(IMAGE, bf16=True, **FAST_IMG).fit(X[:16], y[:16])
    assert isinstance(clf.net_.precision(), contextlib.nullcontext)
    assert clf.predict_proba(X[:2]).dtype == np.float32


# ------------------------------------------------------------ persistence
def test_pickle_and_save_load_round_trip(texts, tmp_path):
    X, y = texts
    clf = FineTunedClassifier(TEXT, strategy="partial", unfreeze_last=1, head="mlp", **FAST_TXT).fit(X[:20], y[:20])
    ref = clf.predict_proba(X[20:30])
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(clf)).predict_proba(X[20:30]), ref)
    clf.save(tmp_path / "model")
    assert sorted(os.listdir(tmp_path / "model")) == ["config.json", "manifest.json", "model.safetensors"]
    meta = json.loads((tmp_path / "model" / "config.json").read_text())
    assert meta["class"] == "FineTunedClassifier" and meta["params"]["head"] == "mlp"
    back = FineTunedClassifier.load(tmp_path / "model")
    np.testing.assert_allclose(back.predict_proba(X[20:30]), ref, atol=1e-6)
    assert list(back.classes_) == list(clf.classes_)
    with pytest.raises(ValueError, match="holds a FineTunedClassifier, not a FineTunedRegressor"):
        FineTunedRegressor.load(tmp_path / "model")


# ------------------------------------------------------------- regression
def test_regressor_on_image_targets():
    from sklearn.datasets import load_digits

    digits = load_digits()
    X = (digits.images[:160] * 16).clip(0, 255).astype(np.uint8)
    y = digits.target[:160].astype(float)
    reg = FineTunedRegressor(TV_IMAGE, strategy="linear_probe", lr=1e-2, image_size=32, max_epochs=4, random_state=0)
    reg.fit(X[:120], y[:120])
    pred = reg.predict(X[120:])
    assert pred.shape == (40,)
    # Predicting the digit value as a number: better than predicting the mean.
    assert reg.score(X[120:], y[120:]) > 0.1
    assert np.abs(pred.mean() - y[:120].mean()) < 2.5


# -------------------------------------------------------------- bad input
def test_bad_input_errors(texts, images):
    X, y = texts
    Xi, yi = images
    with pytest.raises(ValueError, match="single class"):
        FineTunedClassifier(TEXT, **FAST_TXT).fit(X[:4], ["a"] * 4)
    with pytest.raises(ValueError, match="Row 2 of y is missing"):
        FineTunedClassifier(TEXT, **FAST_TXT).fit(X[:4], np.array([0.0, 1.0, np.nan, 1.0]))
    with pytest.raises(ValueError, match="4 inputs but 3 labels"):
        FineTunedClassifier(TEXT, **FAST_TXT).fit(X[:4], y[:3])
    with pytest.raises(ValueError, match=r"'strategy' parameter of FineTunedClassifier must be a str among .* Got 'half'"):
        FineTunedClassifier(TEXT, strategy="half").fit(X[:4], y[:4])
    with pytest.raises(ValueError, match="unfreeze_last=20 is larger than the 8 block groups"):
        FineTunedClassifier(TEXT, strategy="partial", unfreeze_last=20, **FAST_TXT).fit(X[:4], y[:4])
    with pytest.raises(ValueError, match="early_stopping needs validation data"):
        FineTunedClassifier(TEXT, early_stopping=2).fit(X[:4], y[:4])
    with pytest.raises(ValueError, match="continuous.*FineTunedRegressor"):
        FineTunedClassifier(TEXT, **FAST_TXT).fit(X[:4], [0.5, 1.7, 2.2, 3.1])
    with pytest.raises(ValueError, match="Row 1 of y is NaN"):
        FineTunedRegressor(TEXT, **FAST_TXT).fit(X[:3], [1.0, np.nan, 2.0])
    with pytest.raises(ValueError, match="Row 1 of X is missing"):
        FineTunedClassifier(TEXT, **FAST_TXT).fit([X[0], None, X[2]], y[:3])
    clf = FineTunedClassifier(IMAGE, strategy="linear_probe", **FAST_IMG).fit(Xi[:16], yi[:16])
    with pytest.raises(ValueError, match=r"labels never seen during fit: \['coat'\]"):
        clf.score(Xi[:2], ["coat", yi[1]])


def test_images_of_different_sizes_are_resized(images):
    X, y = images
    mixed = [X[i] if i % 2 else np.kron(X[i], np.ones((3, 3), np.uint8)) for i in range(16)]
    clf = FineTunedClassifier(IMAGE, strategy="linear_probe", **FAST_IMG).fit(mixed, y[:16])
    assert clf.predict(mixed).shape == (16,)


def test_long_texts_are_truncated_with_one_warning(texts):
    X, y = texts
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        FineTunedClassifier(TEXT, strategy="linear_probe", **{**FAST_TXT, "max_length": 16}).fit(X[:8], y[:8])
    msgs = [str(w.message) for w in rec if "longer than the model's limit" in str(w.message)]
    assert len(msgs) == 1 and "8 of 8 texts" in msgs[0]

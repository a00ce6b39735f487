"""Model soups and task arithmetic (sktransfer.merging) on the real offline backbones.

Fits are tiny (1 epoch, a few dozen rows, max_length=24, image_size=32):
what is tested is the arithmetic on the weights, not accuracy.
"""

import ast
import gc
import json
import os

import numpy as np
import pytest
import torch

from sktransfer import FineTunedClassifier, FineTunedRegressor, LoRAClassifier, load_backbone
from sktransfer.merging import TaskVector, merge_task_vectors, soup, task_vector

from conftest import IMAGE, TEXT, TV_IMAGE

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = dict(max_epochs=1, batch_size=8, max_length=24, device="cpu", bf16=False)


def _state(est):
    return {k: v.detach().clone() for k, v in est.net_.module_.state_dict().items()}


@pytest.fixture(scope="module")
def text_data(bbc_small):
    texts, y = bbc_small
    # 3 topics; 6 training and 4 validation rows each (bbc_small is grouped by topic, 20 each).
    train = [i for k in range(3) for i in range(20 * k, 20 * k + 6)]
    val = [i for k in range(3) for i in range(20 * k + 6, 20 * k + 10)]
    pick = lambda idx: ([texts[i][:200] for i in idx], y[idx])  # noqa: E731
    return pick(train), pick(val)


@pytest.fixture(scope="module")
def text_seeds(text_data):
    (X, y), _ = text_data
    return [FineTunedClassifier(TEXT, lr=1e-3, random_state=s, **FAST).fit(X, y) for s in (0, 1)]


@pytest.fixture(scope="module")
def text_bad(text_data):
    """A fit from the same start with a learning rate far too large: a poor ingredient."""
    (X, y), _ = text_data
    return FineTunedClassifier(TEXT, lr=0.5, backbone_lr_ratio=1.0, random_state=2, **FAST).fit(X, y)


def test_uniform_soup_is_the_mean_of_the_weights(text_seeds, text_data):
    _, (Xv, yv) = text_data
    a, b = (_state(m) for m in text_seeds)
    merged = soup(text_seeds, Xv, yv, method="uniform")
    assert isinstance(merged, FineTunedClassifier)
    assert merged.soup_ingredients_ == [0, 1]
    assert merged.soup_scores_.shape == (2,)
    got = merged.net_.module_.state_dict()
    for k, v in got.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, (a[k] + b[k]) / 2, rtol=1e-6, atol=1e-7)
    # The ingredients are left as they were.
    for m, s in zip(text_seeds, (a, b)):
        for k, v in m.net_.module_.state_dict().items():
            assert torch.equal(v, s[k])
    assert merged.soup_score_ == pytest.approx(merged.score(Xv, yv))
    np.testing.assert_array_equal(merged.classes_, text_seeds[0].classes_)


def test_greedy_soup_is_not_worse_than_its_best_ingredient(text_seeds, text_bad, text_data):
    _, (Xv, yv) = text_data
    models = [*text_seeds, text_bad]
    merged = soup(models, Xv, yv, method="greedy")
    assert merged.soup_score_ >= merged.soup_scores_.max()
    assert merged.soup_score_ == pytest.approx(merged.score(Xv, yv))
    best = int(np.argmax(merged.soup_scores_))
    assert merged.soup_ingredients_[0] == best
    assert merged.random_state == models[best].random_state  # the best ingredient's parameters
    for i, m in enumerate(models):  # each ingredient's own score, in the order given
        assert merged.soup_scores_[i] == pytest.approx(m.score(Xv, yv))
    assert len(merged.soup_sources_) == 3 and merged.soup_sources_[0].startswith("models[0]")


def _peak_rss_above_baseline(call):
    """``call()``'s peak resident memory above the resident memory just before it, in bytes.

    Measured as benchmarks/bench_merging.py does: garbage collected and
    freed heap pages handed back to the OS (``malloc_trim``), then the
    kernel's high-water mark (VmHWM) reset and read after the call. Unlike
    counting live tensors, it sees every byte the process touches (tensors
    torch allocates in C++, activations of the scoring passes, allocator
    slack) and the peak between two samples.
    """
    import ctypes

    def status(key):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
    except OSError:
        pytest.skip("peak RSS needs Linux (/proc/self/clear_refs) and glibc")
    base = status("VmRSS:")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    out = call()
    return status("VmHWM:") - base, out


def _model_bytes(est):
    return sum(v.numel() * v.element_size() for v in est.net_.module_.state_dict().values())


def test_soup_from_save_dirs_equals_soup_in_memory_and_streams(text_seeds, text_data, tmp_path):
    _, (Xv, yv) = text_data
    dirs = [m.save(str(tmp_path / f"m{i}")) for i, m in enumerate(text_seeds)]
    in_memory = soup(text_seeds, Xv, yv, method="uniform")
    from_disk = soup(dirs, Xv, yv, method="uniform")
    assert type(from_disk) is FineTunedClassifier
    for k, v in in_memory.net_.module_.state_dict().items():
        torch.testing.assert_close(from_disk.net_.module_.state_dict()[k], v, rtol=0, atol=1e-6)
    assert from_disk.soup_sources_ == [repr(d) for d in dirs]
    np.testing.assert_allclose(from_disk.soup_scores_, in_memory.soup_scores_)
    del in_memory, from_disk

    # Streaming: 6 save directories (copies of the two) souped greedily. Peak
    # RSS above the RSS before the call, as the benchmark measures it: two
    # sets of weights (the running sum, the soup being scored), the model
    # read from disk a block of rows at a time, and the scoring's
    # activations (measured 2.23 models here; 3.19 when each model read was
    # loaded whole, and 2.70 when read a tensor at a time: MiniLM's token
    # embeddings are half the model).
    # The pretrained backbone, loaded once per process (the fits loaded it),
    # is part of the baseline.
    many = [m.save(str(tmp_path / f"c{i}")) for i in range(3) for m in text_seeds]
    model_bytes = _model_bytes(text_seeds[0])
    load_backbone(TEXT)
    peak, merged = _peak_rss_above_baseline(lambda: soup(many, Xv, yv, method="greedy"))
    print(f"soup of 6 save dirs: peak RSS {peak / model_bytes:.2f} models above the baseline")
    assert peak <= 2.5 * model_bytes, f"peak RSS {peak / model_bytes:.2f} models above the baseline"
    assert merged.soup_score_ >= merged.soup_scores_.max()


def test_soup_of_fitted_models_does_not_copy_their_training_state(text_seeds, text_data):
    """The soup scored is built from the pretrained backbone, not a deep copy of a fitted model.

    A fitted full fine-tune's net also holds its optimizer's state (Adam: two
    more sets of weights) and its callbacks' tensors: a deep copy of one was
    measured at 12 models' worth of memory. The fitted models' weights are
    read where they are (no copy): the soup needs the running sum and the
    module scored, two sets of weights.
    """
    _, (Xv, yv) = text_data
    models = [m for _ in range(3) for m in text_seeds]
    model_bytes = _model_bytes(text_seeds[0])
    load_backbone(TEXT)
    peak, merged = _peak_rss_above_baseline(lambda: soup(models, Xv, yv, method="greedy"))
    print(f"soup of 6 fitted models: peak RSS {peak / model_bytes:.2f} models above the baseline")
    assert peak <= 2.5 * model_bytes, f"peak RSS {peak / model_bytes:.2f} models above the baseline"  # measured 2.18
    assert merged.soup_score_ >= merged.soup_scores_.max()
    assert not merged.net_.optimizer_.state  # a fresh net, not the first model's trained one


def test_one_model_is_returned_with_a_warning(text_seeds, text_data):
    _, (Xv, yv) = text_data
    with pytest.warns(UserWarning, match="one model"):
        merged = soup(text_seeds[:1], Xv, yv)
    assert merged is not text_seeds[0]
    assert merged.soup_ingredients_ == [0]
    for k, v in text_seeds[0].net_.module_.state_dict().items():
        assert torch.equal(merged.net_.module_.state_dict()[k], v)


def test_bad_input(text_seeds, text_data, bbc_small):
    (X, y), (Xv, yv) = text_data
    with pytest.raises(ValueError, match="empty"):
        soup([], Xv, yv)
    with pytest.raises(ValueError, match="method='best'"):
        soup(text_seeds, Xv, yv, method="best")
    y_nan = np.array([np.nan] + [1.0] * (len(yv) - 1))
    with pytest.raises(ValueError, match="row 0"):
        soup(text_seeds, Xv, y_nan)
    y_none = np.array(list(yv[:-1]) + [None], dtype=object)
    with pytest.raises(ValueError, match=f"row {len(yv) - 1}"):
        soup(text_seeds, Xv, y_none)
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError, match=r"models\[1\].*not fitted"):
        soup([text_seeds[0], FineTunedClassifier(TEXT)], Xv, yv)
    with pytest.raises(TypeError, match=r"models\[1\] is a str|not one path"):
        soup(str(X[0]), Xv, yv)
    # Other classes: the heads answer different questions.
    two = np.where(y == y[0], "a", "b")
    other = FineTunedClassifier(TEXT, random_state=0, **FAST).fit(X, two)
    with pytest.raises(ValueError, match=r"models\[1\].*classes.*models\[0\]"):
        soup([text_seeds[0], other], Xv, yv)
    # Another architecture (an MLP head): named tensors differ.
    mlp = FineTunedClassifier(TEXT, head="mlp", head_hidden=8, random_state=0, **FAST).fit(X, y)
    with pytest.raises(ValueError, match=r"models\[1\].*models\[0\].*architectures"):
        soup([text_seeds[0], mlp], Xv, yv)


def test_search_without_checkpoints_is_refused(text_data):
    from sklearn.model_selection import GridSearchCV

    (X, y), (Xv, yv) = text_data
    gs = GridSearchCV(FineTunedClassifier(TEXT, random_state=0, **FAST), {"lr": [1e-3]}, cv=2, refit=False)
    gs.cv_results_ = {"params": [{"lr": 1e-3}]}  # as after fit: the check comes before any model
    with pytest.raises(ValueError, match="checkpoint_dir=None"):
        soup(gs, Xv, yv)


def test_soup_of_a_search_without_refit(text_data, tmp_path):
    from sklearn.model_selection import GridSearchCV

    (X, y), (Xv, yv) = text_data
    est = FineTunedClassifier(TEXT, random_state=0, checkpoint_dir=str(tmp_path / "ck"), **FAST)
    gs = GridSearchCV(est, {"lr": [1e-3, 3e-4]}, cv=2, refit=False).fit(X, y)
    # Each checkpoint is read through a memory map over the pretrained body, not
    # loaded into a module built for it: built modules hold reference cycles and
    # were freed only by the next garbage collection (4 checkpoints: 7.5 models;
    # 8: 10.8); with the checkpoint's mapped pages left resident as read: 3.17.
    # Now: the running sum, the soup scored and the activations.
    load_backbone(TEXT)
    peak, merged = _peak_rss_above_baseline(lambda: soup(gs, Xv, yv, method="greedy"))
    model_bytes = sum(v.numel() * v.element_size() for v in merged.net_.module_.state_dict().values())
    print(f"soup of 4 checkpoints: peak RSS {peak / model_bytes:.2f} models above the baseline")
    assert peak <= 2.6 * model_bytes, f"peak RSS {peak / model_bytes:.2f} models above the baseline"  # measured 2.26
    assert len(merged.soup_sources_) == 4  # 2 candidates x 2 folds
    # Read whole (torch.load, no memory map, no pages dropped), the same fits average to the same uniform soup.
    uniform = soup(gs, Xv, yv, method="uniform")
    body = {f"body.{k}": v for k, v in load_backbone(TEXT).body.state_dict().items()}
    from sktransfer.callbacks import ResumableCheckpoint

    def final_params(run):  # a finished run's state file names its final weights
        with open(os.path.join(run, ResumableCheckpoint.STATE)) as f:
            return os.path.join(run, json.load(f)["files"]["final_params"][0])

    runs = [{**body, **torch.load(final_params(ast.literal_eval(run)), weights_only=True)}
            for run in uniform.soup_sources_]  # the run directories, as repr()
    for k, v in uniform.net_.module_.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(v, sum(r[k] for r in runs) / len(runs), rtol=0, atol=1e-6)
    assert all("run-" in s for s in merged.soup_sources_)
    assert merged.soup_score_ >= merged.soup_scores_.max()
    assert merged.checkpoint_dir is None or isinstance(merged.checkpoint_dir, str)
    # Fits of another estimator in the same directory are not this search's.
    FineTunedClassifier(TEXT, random_state=0, lr=1e-2, checkpoint_dir=str(tmp_path / "ck"), **FAST).fit(X, y)
    assert len(soup(gs, Xv, yv, method="uniform").soup_sources_) == 4


def test_search_checkpoints_without_estimator_record_are_named(text_data, tmp_path):
    from sklearn.model_selection import GridSearchCV

    (X, y), (Xv, yv) = text_data
    est = FineTunedClassifier(TEXT, random_state=0, checkpoint_dir=str(tmp_path / "ck"), **FAST)
    gs = GridSearchCV(est, {"lr": [1e-3]}, cv=2, refit=False).fit(X, y)
    # Checkpoints written before fits recorded their estimator (final-estimator.json).
    runs = [os.path.join(tmp_path, "ck", r) for r in os.listdir(tmp_path / "ck")]
    for run in runs:
        state_path = os.path.join(run, "checkpoint.json")
        with open(state_path, encoding="utf-8") as f:
            state = json.load(f)
        assert state["files"].pop("estimator")[0] == "final-estimator.json"
        with open(state_path, "w", encoding="utf-8") as f:
            json.dump(state, f)
    with pytest.raises(ValueError, match="2 finished fits there do not record their estimator"):
        soup(gs, Xv, yv)


# ------------------------------------------------------------ BatchNorm CNN
@pytest.fixture(scope="module")
def image_data(fashion_small):
    X, y = fashion_small
    idx = np.concatenate([np.flatnonzero(y == k)[:8] for k in (0, 1)])
    val = np.concatenate([np.flatnonzero(y == k)[8:14] for k in (0, 1)])
    return (X[idx], y[idx]), (X[val], y[val])


IMAGE_FAST = dict(max_epochs=1, batch_size=8, image_size=32, device="cpu", bf16=False, freeze_bn_stats=False, augment=False)


@pytest.fixture(scope="module")
def image_seeds(image_data):
    (X, y), _ = image_data
    return [FineTunedClassifier(IMAGE, random_state=s, **IMAGE_FAST).fit(X, y) for s in (0, 1)]


def test_bn_statistics_are_recomputed_for_a_cnn_soup(image_data, image_seeds):
    from sktransfer.callbacks import recompute_bn_statistics
    from sktransfer._data import RowDataset

    (X, y), (Xv, yv) = image_data
    kw = IMAGE_FAST
    models = image_seeds
    states = [_state(m) for m in models]
    plain = soup(models, Xv, yv, method="uniform", recalibrate_bn=False)
    merged = soup(models, Xv, yv, method="uniform")
    bn = [k for k in states[0] if k.endswith("running_mean")]
    assert bn
    p, m = plain.net_.module_.state_dict(), merged.net_.module_.state_dict()
    key = bn[0]
    torch.testing.assert_close(p[key], (states[0][key] + states[1][key]) / 2)
    assert not torch.allclose(m[key], p[key])
    # The recomputed statistics are those of the averaged network on X_val.
    bb = load_backbone(IMAGE)
    module = plain.net_.module_
    layers = [mod for name, mod in module.named_modules() if f"{name}.running_mean" in bn]
    recompute_bn_statistics(module, layers, RowDataset(bb, bb.check_inputs(Xv), image_size=32), 32, "cpu")
    for k in bn:
        torch.testing.assert_close(module.state_dict()[k], m[k], rtol=1e-4, atol=1e-5)
    # Frozen statistics (the default) are the pretrained ones: nothing to recompute.
    frozen = [FineTunedClassifier(IMAGE, random_state=s, **{**kw, "freeze_bn_stats": True}).fit(X, y) for s in (0, 1)]
    f = soup(frozen, Xv, yv, method="uniform").net_.module_.state_dict()
    torch.testing.assert_close(f[key], frozen[0].net_.module_.state_dict()[key])


# ------------------------------------------------------------ task vectors
def test_task_vector_arithmetic(text_seeds, text_data):
    (X, y), (Xv, yv) = text_data
    ft = text_seeds[0]
    tv = task_vector(ft, name="topics")
    assert isinstance(tv, TaskVector) and tv.tasks == ["topics"]
    assert tv.norm() > 0
    zero = tv + (-tv)
    assert all(float(d.abs().max()) == 0.0 for d in zero.deltas.values())
    for k, d in (2 * tv - tv).deltas.items():
        torch.testing.assert_close(d, tv.deltas[k])
    # 0 * tv on the pretrained backbone: the pretrained body, with the task's head.
    pre = load_backbone(TEXT).body.state_dict()
    applied = (0 * tv).apply(TEXT)
    assert isinstance(applied, FineTunedClassifier)
    got = applied.net_.module_.state_dict()
    for k, v in pre.items():
        assert torch.equal(got[f"body.{k}"], v), k
    # tv on the pretrained backbone gives back the fine-tuned model.
    back = tv.apply()
    np.testing.assert_allclose(back.decision_function(Xv), ft.decision_function(Xv), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(back.classes_, ft.classes_)


def test_task_vectors_keep_their_heads(text_seeds, text_data):
    (X, y), (Xv, yv) = text_data
    two = np.where(y == y[0], "first", "other")
    other = FineTunedClassifier(TEXT, random_state=3, **FAST).fit(X, two)
    a, b = task_vector(text_seeds[0], name="a"), task_vector(other, name="b")
    both = a + b
    assert both.tasks == ["a", "b"]
    on_b = both.apply(head_from="b")
    assert list(on_b.classes_) == ["first", "other"]
    assert list(both.apply(head_from=0).classes_) == list(text_seeds[0].classes_)
    # Added to a fitted model: its head is kept unless head_from says otherwise.
    edited = (0 * b).apply(text_seeds[0])
    np.testing.assert_allclose(edited.decision_function(Xv), text_seeds[0].decision_function(Xv), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="names no task"):
        both.apply(head_from="c")
    with pytest.raises(IndexError, match="2 heads"):
        both.apply(head_from=5)
    # TIES / DARE through PEFT's merge_utils; "linear" with weights 1 is the sum.
    lin = merge_task_vectors([a, b])
    for k, d in lin.deltas.items():
        torch.testing.assert_close(d, a.deltas[k] + b.deltas[k])
    ties = merge_task_vectors([a, b], method="ties", density=0.5)
    assert ties.tasks == ["a", "b"] and set(ties.deltas) == set(a.deltas)
    with pytest.raises(ValueError, match="density"):
        merge_task_vectors([a, b], method="dare_ties")
    with pytest.raises(TypeError):
        a + 1.0


def test_task_vector_of_unfitted_or_foreign_model():
    from sklearn.exceptions import NotFittedError
    from sklearn.linear_model import LogisticRegression

    with pytest.raises(NotFittedError, match="estimator .*not fitted"):
        task_vector(FineTunedClassifier(TEXT))
    with pytest.raises(TypeError, match="LogisticRegression"):
        task_vector(LogisticRegression())


def test_regressor_soup_averages_in_one_unit(text_data, tmp_path):
    (X, y), (Xv, _) = text_data
    t = np.arange(len(X), dtype=float)
    # Fitted on different rows: different standardisation of the targets.
    r1 = FineTunedRegressor(TEXT, random_state=0, **FAST).fit(X[:12], t[:12])
    r2 = FineTunedRegressor(TEXT, random_state=1, **FAST).fit(X[6:], t[6:] * 3)
    assert not np.allclose(r1.y_mean_, r2.y_mean_)
    yv = np.linspace(0, 10, len(Xv))
    merged = soup([r1, r2], Xv, yv, method="uniform")
    assert isinstance(merged, FineTunedRegressor)
    # The soup of a model with itself re-expressed is the model: predictions kept.
    same = soup([r1, r1], Xv, yv, method="uniform")
    np.testing.assert_allclose(same.predict(Xv), r1.predict(Xv), rtol=1e-4, atol=1e-4)
    # Read from save directories (a block of rows at a time, the head rescaled in memory): the same soup.
    dirs = [r.save(str(tmp_path / f"r{i}")) for i, r in enumerate((r1, r2))]
    from_disk = soup(dirs, Xv, yv, method="uniform")
    np.testing.assert_allclose(from_disk.predict(Xv), merged.predict(Xv), rtol=1e-5, atol=1e-5)


def test_lora_soup_and_task_vector_use_merged_weights(text_data):
    (X, y), (Xv, yv) = text_data
    kw = dict(r=2, lr=5e-3, head_init="random", **FAST)
    loras = [LoRAClassifier(TEXT, random_state=s, **kw).fit(X, y) for s in (0, 1)]
    merged_each = [_state(m.merge()) for m in loras]
    s = soup(loras, Xv, yv, method="uniform")
    assert isinstance(s, FineTunedClassifier)
    for k, v in s.net_.module_.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(v, (merged_each[0][k] + merged_each[1][k]) / 2, rtol=1e-5, atol=1e-6)
    tv = task_vector(loras[0])
    changed = {k for k, d in tv.deltas.items() if float(d.abs().max()) > 0}
    assert changed and all(any(t.split("body.", 1)[1] in k for t in loras[0].target_modules_) for k in changed)
    np.testing.assert_allclose(tv.apply().decision_function(Xv), loras[0].decision_function(Xv), rtol=1e-3, atol=1e-4)


def test_different_backbones_are_refused_naming_both(image_data, image_seeds):
    (X, y), (Xv, yv) = image_data
    other = FineTunedClassifier(TV_IMAGE, random_state=0, **IMAGE_FAST).fit(X, y)
    with pytest.raises(ValueError, match=r"models\[1\].*mobilenet_v2.*models\[0\].*tf_efficientnet_lite0.*different pretrained"):
        soup([image_seeds[0], other], Xv, yv)
    with pytest.raises(ValueError, match="different pretrained backbones.*tf_efficientnet_lite0.*mobilenet_v2"):
        task_vector(image_seeds[0]) + task_vector(other)
    with pytest.raises(ValueError, match="measured on 'timm/tf_efficientnet_lite0'.*fingerprint"):
        task_vector(image_seeds[0]).apply(TV_IMAGE)


def test_apply_with_moved_bn_statistics_never_leaves_a_negative_variance(image_data, image_seeds):
    """A fit with moving BatchNorm statistics (``freeze_bn_stats=False``) carries their change in its vector.
    Negated (the paper's forgetting edit) or scaled, ``pretrained + c·Δvar`` falls below zero wherever the
    pretrained variance is smaller than the change (EfficientNet-Lite0 has channels of variance 0): BatchNorm
    then takes the square root of a negative number and every output is NaN, without a word. ``apply``
    recomputes the statistics on ``X_bn``; without it, it refuses naming ``X_bn`` and the layer."""
    (X, y), (Xv, yv) = image_data
    tv = task_vector(image_seeds[0])
    pre = load_backbone(IMAGE).body.state_dict()
    var = {k: d for k, d in tv.deltas.items() if k.endswith("running_var")}
    # The premise: plain negation, pretrained - Δvar, is negative somewhere.
    assert any(bool((pre[k[len("body."):]] - d < 0).any()) for k, d in var.items())
    with pytest.raises(ValueError, match=r"running_var.*X_bn"):
        (-tv).apply()
    est = (-tv).apply(X_bn=X)
    state = est.net_.module_.state_dict()
    assert all(bool((state[k] >= 0).all()) for k in var)
    assert np.isfinite(est.decision_function(Xv)).all()
    # Where no variance goes negative (the vector itself), no X_bn is needed, as before.
    assert np.isfinite(tv.apply().decision_function(Xv)).all()

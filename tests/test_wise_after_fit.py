"""WiSE-FT chosen after fit: ``set_wise_alpha`` (issue 15, part 3).

Real offline backbones (all-MiniLM-L6-v2 on BBC News texts, EfficientNet-Lite0
on Fashion-MNIST images), one-epoch fits on a few rows.
"""

import numpy as np
import pytest
import torch

from sktransfer import FineTunedClassifier, FineTunedRegressor, LoRAClassifier
from sktransfer.backbones import load_backbone
from conftest import IMAGE, TEXT

pytestmark = pytest.mark.usefixtures("one_thread")

KW = dict(strategy="partial", unfreeze_last=2, lr=1e-2, backbone_lr_ratio=1.0, max_epochs=1, batch_size=8, max_length=16,
          head_init="random", random_state=0)


@pytest.fixture(scope="module")
def texts(bbc_small):
    X, y = bbc_small
    idx = np.r_[0:3, 20:23, 40:43, 60:63, 80:83]  # 3 per topic
    return [X[i][:200] for i in idx], y[idx]


@pytest.fixture(scope="module")
def pair(texts):
    """The same fit (same seed) with wise_alpha=1 and wise_alpha=0.5 at fit."""
    X, y = texts
    with pytest.warns(UserWarning, match="truncated"):
        tuned = FineTunedClassifier(TEXT, **KW).fit(X, y)
    with pytest.warns(UserWarning, match="truncated"):
        mixed = FineTunedClassifier(TEXT, wise_alpha=0.5, **KW).fit(X, y)
    return tuned, mixed


def _body(est):
    return {k: v.detach().clone() for k, v in est.net_.module_.body.state_dict().items() if v.is_floating_point()}


def test_alpha_one_zero_and_round_trip(pair, texts):
    X, _ = texts
    tuned, _ = pair
    assert tuned.wise_alpha_ == 1.0 and "_wise_finetuned" not in tuned.__dict__  # nothing kept until asked
    logits = tuned.decision_function(X)
    body, head = _body(tuned), {k: v.clone() for k, v in tuned.net_.module_.task_head.state_dict().items()}

    # alpha=1: the fine-tuned model, bit for bit.
    assert tuned.set_wise_alpha(1.0) is tuned
    np.testing.assert_array_equal(tuned.decision_function(X), logits)
    # Kept: only the tensors that trained (partial, unfreeze_last=2: the top two block groups, pooler and layer 5), not the backbone.
    kept = tuned._wise_finetuned
    top = {f"body.{k}" for g in tuned.net_.module_.block_groups[-2:] for k in g}
    assert kept and set(kept) <= top, sorted(set(kept) - top)[:3]

    # alpha=0: the pretrained backbone with the trained head (WiSE-FT's definition).
    tuned.set_wise_alpha(0.0)
    pre = load_backbone(TEXT, device="cpu").body.state_dict()
    for k, v in _body(tuned).items():
        assert torch.equal(v, pre[k]), k
    for k, v in tuned.net_.module_.task_head.state_dict().items():
        assert torch.equal(v, head[k])
    assert tuned.wise_alpha_ == 0.0 and tuned.wise_alpha == 1.0  # the parameter is left alone

    # 0.3 then 1.0: back to the fine-tuned weights exactly.
    tuned.set_wise_alpha(0.3)
    mid = tuned.decision_function(X)
    assert not np.allclose(mid, logits)
    tuned.set_wise_alpha(1.0)
    np.testing.assert_array_equal(tuned.decision_function(X), logits)
    for k, v in _body(tuned).items():
        assert torch.equal(v, body[k]), k


def test_fit_time_mix_and_mix_after_fit_agree(pair, texts):
    X, _ = texts
    tuned, mixed = pair
    assert mixed.wise_alpha_ == 0.5 and "_wise_finetuned" in mixed.__dict__  # kept from fit on
    tuned.set_wise_alpha(0.5)
    np.testing.assert_allclose(tuned.decision_function(X), mixed.decision_function(X), atol=1e-5)
    tuned.set_wise_alpha(1.0)
    mixed.set_wise_alpha(1.0)  # the fine-tuned weights of the wise_alpha=0.5 fit: the same training
    np.testing.assert_array_equal(mixed.decision_function(X), tuned.decision_function(X))
    mixed.set_wise_alpha(0.5)


def test_save_load_keeps_alpha(pair, texts, tmp_path):
    X, _ = texts
    tuned, _ = pair
    full = tuned.set_wise_alpha(1.0).decision_function(X)
    tuned.set_wise_alpha(0.3)
    mid = tuned.decision_function(X)
    tuned.save(tmp_path / "m")
    loaded = FineTunedClassifier.load(tmp_path / "m")
    assert loaded.wise_alpha_ == 0.3 and loaded.wise_alpha == 1.0
    np.testing.assert_array_equal(loaded.decision_function(X), mid)
    np.testing.assert_array_equal(loaded.set_wise_alpha(1.0).decision_function(X), full)  # alpha can change again
    assert (tmp_path / "m" / "wise_finetuned.safetensors").exists()  # listed in the manifest, checked at load
    tuned.set_wise_alpha(1.0)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan"), True, "0.5"])
def test_alpha_outside_unit_interval_is_refused(pair, alpha):
    tuned, _ = pair
    with pytest.raises(ValueError, match="alpha"):
        tuned.set_wise_alpha(alpha)
    assert tuned.wise_alpha_ in (0.5, 1.0)


def test_unfitted_and_no_kept_weights():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        FineTunedRegressor(TEXT).set_wise_alpha(0.5)


def test_batchnorm_statistics_are_recomputed_for_the_mix(fashion_small):
    X, y = fashion_small
    X, y = X[::6][:20], y[::6][:20]
    clf = FineTunedClassifier(IMAGE, image_size=32, freeze_bn_stats=False, **{**KW, "max_length": None}).fit(X, y)
    tuned = clf.decision_function(X)
    with pytest.raises(ValueError, match="X_bn"):
        clf.set_wise_alpha(0.5)  # BatchNorm layers moved: the mix needs statistics of its own
    assert clf.wise_alpha_ == 1.0
    clf.set_wise_alpha(0.5, X_bn=X)
    bn = [m for m in clf.net_.module_.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    kept = clf._wise_finetuned
    name = next(k for k in kept if k.endswith("running_mean"))
    pre = load_backbone(IMAGE, device="cpu").body.state_dict()[name[len("body."):]]
    now = clf.net_.module_.state_dict()[name]
    assert not torch.allclose(now, torch.lerp(pre, kept[name], 0.5))  # recomputed, not interpolated
    assert bn
    clf.set_wise_alpha(0.0)  # exact pretrained statistics, no X_bn needed
    assert torch.equal(clf.net_.module_.state_dict()[name], pre)
    np.testing.assert_array_equal(clf.set_wise_alpha(1.0).decision_function(X), tuned)


def test_weights_written_by_others_are_a_new_fine_tuned_model(pair, texts):
    # A soup or task vector starts from a copy of a model (kept tensors included): its weights are
    # not that model's mix any more, so set_wise_alpha mixes them, not the copied fine-tuned ones.
    X, _ = texts
    _, other = pair  # mixed at fit (wise_alpha=0.5), so it keeps its fine-tuned tensors
    with torch.no_grad():
        name = next(iter(other._wise_finetuned))
        other.net_.module_.state_dict(keep_vars=True)[name].add_(0.01)
    written = other.decision_function(X)
    other.set_wise_alpha(1.0)
    np.testing.assert_array_equal(other.decision_function(X), written)
    assert other.wise_alpha_ == 1.0


def test_lora_through_its_merged_model(texts):
    X, y = texts[0][:9], texts[1][:9]
    with pytest.warns(UserWarning, match="truncated"):
        lora = LoRAClassifier(TEXT, r=2, lr=1e-2, max_epochs=1, batch_size=8, max_length=16, head_init="random",
                              random_state=0).fit(X, y)
    merged = lora.merge()
    kept = merged.set_wise_alpha(0.5)._wise_finetuned
    assert kept and all(any(t[len("body."):] in k for t in lora.target_modules_) for k in kept)  # adapted layers only
    np.testing.assert_allclose(merged.set_wise_alpha(1.0).decision_function(X), lora.decision_function(X), atol=1e-4)

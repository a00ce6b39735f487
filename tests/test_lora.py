"""LoRAClassifier: PEFT adapters on real backbones, small and fast."""

import os

import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV

from sktransfer import FineTunedClassifier, LoRAClassifier, merge_adapters
from conftest import IMAGE, TEXT, TV_IMAGE

FAST = dict(max_length=32, batch_size=16, max_epochs=2, random_state=0, lr=5e-3)


@pytest.fixture(scope="module")
def texts(bbc_small):
    X, y = bbc_small
    order = np.random.RandomState(2).permutation(len(y))
    return [X[i][:250] for i in order], y[order]


@pytest.fixture(scope="module")
def lora_text(texts):
    X, y = texts
    return LoRAClassifier(TEXT, r=8, lora_alpha=16, **FAST).fit(X[:60], y[:60])


def test_lora_learns_and_trains_a_tiny_fraction(lora_text, texts):
    X, y = texts
    clf = lora_text
    assert 0 < clf.trainable_fraction_ <= 0.02  # issue target: <= 2% at r=8 on MiniLM
    assert clf.score(X[60:], y[60:]) > 0.4  # 5 topics, chance 0.2, 2 short epochs
    # Only adapters and head moved; the base attention weights did not.
    names = [n for n, p in clf.net_.module_.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n or "task_head" in n for n in names)
    assert clf.target_modules_ and all(t.rsplit(".", 1)[-1] in ("query", "key", "value") for t in clf.target_modules_)


def test_adapter_only_save_reload_keeps_the_head(lora_text, texts, tmp_path):
    X, _ = texts
    lora_text.save(tmp_path / "ad")
    assert sorted(os.listdir(tmp_path / "ad")) == ["adapter.safetensors", "config.json", "manifest.json"]
    size = os.path.getsize(tmp_path / "ad" / "adapter.safetensors")
    assert size < 0.05 * 90_000_000  # issue target: adapter <= 5% of the full weights
    back = LoRAClassifier.load(tmp_path / "ad")
    np.testing.assert_allclose(back.predict_proba(X[60:70]), lora_text.predict_proba(X[60:70]), atol=1e-6)


def test_merge_gives_a_plain_model_with_the_same_predictions(lora_text, texts):
    X, _ = texts
    merged = lora_text.merge()
    assert isinstance(merged, FineTunedClassifier)
    assert not any("lora_" in n for n, _ in merged.net_.module_.named_parameters())
    np.testing.assert_allclose(merged.predict_proba(X[60:70]), lora_text.predict_proba(X[60:70]), atol=1e-5)


@pytest.mark.parametrize("method", ["dora", "ia3", "prompt_tuning"])
def test_other_peft_methods_train_save_and_reload(texts, method, tmp_path):
    X, y = texts
    clf = LoRAClassifier(TEXT, method=method, num_virtual_tokens=4, **{**FAST, "max_epochs": 1}).fit(X[:32], y[:32])
    assert 0 < clf.trainable_fraction_ < 0.02
    clf.save(tmp_path / method)
    back = LoRAClassifier.load(tmp_path / method)
    np.testing.assert_allclose(back.predict_proba(X[:6]), clf.predict_proba(X[:6]), atol=1e-6)


def test_lora_on_a_cnn_adapts_pointwise_convolutions(fashion_small):
    X, y = fashion_small
    clf = LoRAClassifier(IMAGE, r=4, image_size=32, max_epochs=1, random_state=0).fit(X[::3], y[::3])
    assert clf.target_modules_ and all("conv_pw" in t or "conv_pwl" in t or "conv_head" in t for t in clf.target_modules_)
    assert clf.trainable_fraction_ < 0.2
    assert clf.predict(X[:4]).shape == (4,)


def test_cnn_auto_targets_skip_layers_too_narrow_for_the_rank(fashion_small):
    from sktransfer.backbones import load_backbone

    X, y = fashion_small
    clf = LoRAClassifier(IMAGE, r=8, image_size=32, max_epochs=1, random_state=0).fit(X[::4], y[::4])
    body = load_backbone(IMAGE).body
    layers = dict(body.named_modules())
    for name in clf.target_modules_:
        conv = layers[name[len("body."):]]
        # a rank-8 pair holds at most 10 % of the layer's own weights
        assert 8 * (conv.in_channels + conv.out_channels) <= 0.1 * conv.weight.numel()
    pointwise = [n for n, m in layers.items() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1) and m.groups == 1]
    wide = {f"body.{n}" for n in pointwise if 8 * (layers[n].in_channels + layers[n].out_channels) <= 0.1 * layers[n].weight.numel()}
    assert set(clf.target_modules_) == wide  # all of those, and only those
    assert "body.conv_head" in clf.target_modules_
    assert not any(t.startswith("body.blocks.0.") for t in clf.target_modules_)  # 32→16 channels
    # The budget: what save() writes is at most 5 % of the full weights.
    full_bytes = sum(p.numel() * p.element_size() for p in body.parameters())
    assert clf.adapter_nbytes_ <= 0.05 * full_bytes
    # IA3 vectors are tiny: every pointwise convolution keeps its scaling.
    ia3 = LoRAClassifier(IMAGE, method="ia3", image_size=32, max_epochs=1, random_state=0).fit(X[::4], y[::4])
    assert len(ia3.target_modules_) > len(clf.target_modules_)


def test_head_lr_gives_the_head_its_own_rate(texts):
    X, y = texts
    clf = LoRAClassifier(TEXT, head_lr=3e-2, **{**FAST, "max_epochs": 1}).fit(X[:16], y[:16])
    groups = clf.net_.optimizer_.param_groups
    head_ids = {id(p) for n, p in clf.net_.module_.named_parameters() if "task_head." in n and p.requires_grad}
    by_rate = {g["initial_lr"]: {id(p) for p in g["params"]} for g in groups}
    assert set(by_rate) == {FAST["lr"], 3e-2}
    assert by_rate[3e-2] == head_ids and not (by_rate[FAST["lr"]] & head_ids)
    with pytest.raises(ValueError, match=r"'head_lr' parameter of LoRAClassifier must be .* Got 0.0"):
        LoRAClassifier(TEXT, head_lr=0.0).fit(X[:8], y[:8])


def test_grid_search_over_rank_alpha_and_lr(texts):
    X, y = texts
    gs = GridSearchCV(
        LoRAClassifier(TEXT, **{**FAST, "max_epochs": 1}),
        {"r": [2, 8], "lora_alpha": [8], "lr": [5e-3]},
        cv=2,
    ).fit(X[:40], y[:40])
    # The refit model is the one the chosen parameters give (no state shared between clones).
    again = LoRAClassifier(TEXT, **{**FAST, "max_epochs": 1, **gs.best_params_}).fit(X[:40], y[:40])
    np.testing.assert_allclose(gs.best_estimator_.predict_proba(X[40:46]), again.predict_proba(X[40:46]), atol=1e-5)


def test_merge_adapters_of_two_tasks(texts):
    X, y = texts
    y2 = np.where(np.isin(y, ["business", "politics"]), "serious", "other")
    a = LoRAClassifier(TEXT, **FAST).fit(X[:60], y[:60])
    b = LoRAClassifier(TEXT, **{**FAST, "random_state": 1}).fit(X[:60], y2[:60])
    for combination, density in (("linear", None), ("ties", 0.5), ("dare_linear", 0.5)):
        ma, mb = merge_adapters([a, b], [0.5, 0.5], combination_type=combination, density=density)
        # Each task keeps its own head and labels, on one merged adapter.
        assert set(ma.predict(X[60:])) <= set(a.classes_) and set(mb.predict(X[60:])) <= {"serious", "other"}
        names = [n for n, _ in ma.net_.module_.named_parameters() if "lora_" in n]
        assert names and all(".merged." in n for n in names)


# --------------------------------------------------------------- bad input
def test_bad_parameters_and_targets(texts):
    X, y = texts
    with pytest.raises(ValueError, match=r"'r' parameter of LoRAClassifier must be an int in the range \[1, inf\)\. Got 0"):
        LoRAClassifier(TEXT, r=0).fit(X[:8], y[:8])
    with pytest.raises(ValueError, match=r"'method' parameter of LoRAClassifier must be a str among .* Got 'adalora'"):
        LoRAClassifier(TEXT, method="adalora").fit(X[:8], y[:8])
    with pytest.raises(ValueError, match=r"matches no Linear or Conv2d layer.*end in: \[.*'query'"):
        LoRAClassifier(TEXT, target_modules=["q_proj"], **FAST).fit(X[:8], y[:8])
    with pytest.raises(ValueError, match="prompt_tuning' needs a text encoder"):
        LoRAClassifier(TV_IMAGE, method="prompt_tuning", image_size=32, max_epochs=1).fit(
            np.zeros((4, 32, 32, 3), np.uint8), [0, 1, 0, 1]
        )
    with pytest.raises(ValueError, match="single class"):
        LoRAClassifier(TEXT, **FAST).fit(X[:4], ["a"] * 4)
    with pytest.raises(ValueError, match="4 inputs but 3 labels"):
        LoRAClassifier(TEXT, **FAST).fit(X[:4], y[:3])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal")
def test_qlora_is_refused_clearly_without_cuda(texts):
    X, y = texts
    with pytest.raises(RuntimeError, match="QLoRA.*needs a CUDA GPU and the bitsandbytes"):
        LoRAClassifier(TEXT, quantize="4bit").fit(X[:8], y[:8])
    with pytest.raises(ValueError, match=r"'quantize' parameter of LoRAClassifier must be a str among \{'4bit'\} or None\. Got '8bit'"):
        LoRAClassifier(TEXT, quantize="8bit").fit(X[:8], y[:8])


def test_adapter_refused_on_a_different_base(lora_text, tmp_path):
    import json

    lora_text.save(tmp_path / "ad")
    cfg = json.loads((tmp_path / "ad" / "config.json").read_text())
    cfg["base_fingerprint"] = "0" * 32  # as if trained on another checkpoint
    (tmp_path / "ad" / "config.json").write_text(json.dumps(cfg))
    from sktransfer._persistence import write_manifest

    write_manifest(str(tmp_path / "ad"), ["config.json", "adapter.safetensors"], "LoRAClassifier")  # a consistent save
    with pytest.raises(ValueError, match="refusing to load it onto a different model"):
        LoRAClassifier.load(tmp_path / "ad")
    with pytest.raises(ValueError, match="holds a LoRAClassifier, not a FineTunedClassifier"):
        FineTunedClassifier.load(tmp_path / "ad")


def test_merge_adapters_refuses_mismatched_inputs(lora_text, texts):
    X, y = texts
    other = LoRAClassifier(TEXT, target_modules=["query"], **{**FAST, "max_epochs": 1}).fit(X[:16], y[:16])
    with pytest.raises(ValueError, match="target different layers"):
        merge_adapters([lora_text, other])
    with pytest.raises(ValueError, match="at least two"):
        merge_adapters([lora_text])


def test_use_dora_is_deprecated_for_method_dora():
    clf = LoRAClassifier(TEXT, use_dora=True)
    with pytest.warns(FutureWarning, match="use method='dora'"):
        clf._check_params()


@pytest.mark.parametrize("spec", [TEXT, "hf/sentence-transformers/all-MiniLM-L6-v2"])
def test_text_bodies_replace_their_encoder_whatever_library_built_them(spec):
    # What quantize="4bit" relies on (CUDA only): the body runs the new encoder.
    import copy

    from sktransfer import load_backbone

    body = copy.deepcopy(load_backbone(spec).body)
    other = copy.deepcopy(body.encoder)
    body.replace_encoder(other)
    assert body.encoder is other

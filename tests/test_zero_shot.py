"""ZeroShotClassifier and the open_clip adapter.

Text: the real all-MiniLM-L6-v2 on real BBC News. Images: no CLIP weights
can be installed offline, so the CLIP tests build a tiny, randomly
initialised open_clip model from a small config and check the mechanics
(preprocessing, prompt ensembling, temperature) against open_clip's own
functions, not accuracy.
"""

import pickle
import re

import numpy as np
import pytest

from sktransfer._zero_shot import ZeroShotClassifier
from sktransfer.backbones import BackboneNotFoundError, load_backbone, parse_spec
from conftest import IMAGE, TEXT

TOPICS = ["business", "entertainment", "politics", "sports", "tech"]
TEMPLATE = "This article is about {}."


@pytest.fixture(scope="module")
def news(bbc_small):
    """10 articles per topic, their first 200 characters."""
    X, y = bbc_small
    return [t[:200] for t in X[::2]], y[::2]


@pytest.fixture(scope="module")
def zs_news(news):
    return ZeroShotClassifier(TEXT, template=TEMPLATE, max_length=48).fit(None, TOPICS)


@pytest.fixture(scope="module")
def tiny_clip():
    """A tiny randomly initialised open_clip CLIP (ViT tower of 32 px).

    Built with open_clip's own factory from a small config, so it carries
    the preprocessing configuration open_clip attaches to its models. Its
    weights are random: it tests mechanics, not accuracy.
    """
    open_clip = pytest.importorskip("open_clip")
    import torch

    torch.manual_seed(0)
    return open_clip.create_model(
        "ViT-B-32",
        pretrained=None,
        embed_dim=16,
        vision_cfg={"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
        text_cfg={"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    )


def _images(n, seed=0):
    rng = np.random.RandomState(seed)
    return [rng.randint(0, 256, size=(40 + 3 * i, 48, 3)).astype(np.uint8) for i in range(n)]


# ------------------------------------------------------------------- text
def test_zero_shot_news_topics_beat_chance(zs_news, news):
    X, y = news
    acc = zs_news.score(X, y)
    # 5 topics, chance 0.2; this model and template get ~0.8 on these texts.
    assert acc > 0.65
    proba = zs_news.predict_proba(X)
    assert proba.shape == (len(X), 5)
    np.testing.assert_allclose(proba.sum(1), 1, atol=1e-6)
    assert list(zs_news.classes_) == TOPICS
    np.testing.assert_array_equal(zs_news.classes_[proba.argmax(1)], zs_news.predict(X))
    assert zs_news.temperature_ == pytest.approx(0.05)


def test_decision_function_is_cosine_over_temperature(zs_news, news):
    from sktransfer import PretrainedFeatureExtractor

    X = news[0][:5]
    Z = PretrainedFeatureExtractor(TEXT, normalize=True, max_length=48).fit_transform(X)
    np.testing.assert_allclose(zs_news.decision_function(X), Z @ zs_news.label_embeddings_.T / 0.05, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(zs_news.label_embeddings_, axis=1), 1, atol=1e-5)


def test_templates_are_averaged_per_label():
    from sktransfer import PretrainedFeatureExtractor

    templates = ["This article is about {}.", "{} news"]
    clf = ZeroShotClassifier(TEXT, template=templates).fit(None, ["sports", "tech"])
    assert clf.prompts_ == [["This article is about sports.", "sports news"], ["This article is about tech.", "tech news"]]
    E = PretrainedFeatureExtractor(TEXT, normalize=True).fit_transform([p for ps in clf.prompts_ for p in ps])
    mean = E.reshape(2, 2, -1).mean(1)
    np.testing.assert_allclose(clf.label_embeddings_, mean / np.linalg.norm(mean, axis=1, keepdims=True), atol=1e-5)


def test_label_descriptions_let_integer_labels_work(news, zs_news):
    X, y = news
    codes = {k: name for k, name in enumerate(TOPICS)}
    clf = ZeroShotClassifier(TEXT, template=TEMPLATE, label_descriptions=codes, max_length=48)
    clf.fit(None, [3, 1, 0, 4, 2])
    assert clf.classes_.tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(np.asarray(TOPICS)[clf.predict(X[:10])], zs_news.predict(X[:10]))


def test_labeled_X_gives_the_candidates_and_pickle_round_trips(news, zs_news):
    X, y = news
    clf = ZeroShotClassifier(TEXT, template=TEMPLATE, max_length=48).fit(X[::10], y[::10])
    assert clf.classes_.tolist() == TOPICS
    again = pickle.loads(pickle.dumps(zs_news))
    np.testing.assert_allclose(again.predict_proba(X[:4]), zs_news.predict_proba(X[:4]), atol=1e-6)


@pytest.mark.parametrize(
    "X, y, params, match",
    [
        (None, ["sports", "sports", "tech"], {}, "appears twice"),
        (None, ["sports", "  "], {}, "empty"),
        (None, ["Sports", "sports "], {}, "same name"),
        (None, ["sports"], {}, "at least two"),
        (None, [0, 1, 2], {}, "not text"),
        (None, ["sports", "tech"], {"template": "This is about sport."}, r"template\[0\].*placeholder"),
        (None, ["sports", "tech"], {"template": ["{} news", "news"]}, r"template\[1\]"),
        (None, ["sports", "tech"], {"template": []}, "empty list"),
        (None, ["sports", "tech"], {"label_descriptions": {"cars": "motoring"}}, "not classes"),
        (None, ["sports", "tech"], {"temperature": 0}, "temperature"),
        (["a", "b", "c"], ["sports", "tech"], {}, "different lengths"),
        (None, None, {}, "candidate labels"),
    ],
)
def test_bad_labels_and_templates_fail_clearly(X, y, params, match):
    with pytest.raises(ValueError, match=match):
        ZeroShotClassifier(TEXT, **params).fit(X, y)


@pytest.mark.parametrize(
    "name, value", [("temperature", -1.0), ("batch_size", 0), ("verbose", "yes"), ("progress", "yes"), ("cache", 3), ("label_descriptions", [1])]
)
def test_every_parameter_is_checked_against_the_declared_table(name, value):
    assert set(ZeroShotClassifier._parameter_constraints) == set(ZeroShotClassifier._get_param_names())
    with pytest.raises(ValueError, match=rf"'{name}' parameter of ZeroShotClassifier must be .*Got {re.escape(repr(value))}"):
        ZeroShotClassifier(TEXT, **{name: value}).fit(None, ["sport", "business"])


def test_image_backbone_without_text_tower_is_refused():
    with pytest.raises(ValueError, match="text tower"):
        ZeroShotClassifier(IMAGE).fit(None, ["cat", "dog"])


# ------------------------------------------------------------------- CLIP
def test_clip_zero_shot_matches_open_clip(tiny_clip):
    """Mechanics only (random weights): our pipeline equals open_clip's own.

    Preprocessing from the model's ``preprocess_cfg`` through open_clip's
    eval transform, prompt ensembling of the text tower, and the model's
    learned temperature.
    """
    import open_clip
    import torch
    from open_clip.transform import PreprocessCfg, image_transform_v2

    from sktransfer._inputs import to_rgb

    templates = ["a photo of a {}.", "a {}."]
    labels = ["car", "cat", "dog"]
    images = _images(4)
    clf = ZeroShotClassifier(tiny_clip, template=templates).fit(None, labels)
    assert clf.modality_ == "image"

    model = tiny_clip.eval()
    preprocess = image_transform_v2(PreprocessCfg(**open_clip.get_model_preprocess_cfg(model)), is_train=False)
    tokenizer = open_clip.SimpleTokenizer(context_length=model.context_length)
    with torch.no_grad():
        img = model.encode_image(torch.stack([preprocess(to_rgb(im, i)) for i, im in enumerate(images)]), normalize=True)
        txt = model.encode_text(tokenizer([t.format(c) for c in labels for t in templates]), normalize=True)
        txt = txt.reshape(3, 2, -1).mean(1)
        txt = txt / txt.norm(dim=1, keepdim=True)
        expected = (model.logit_scale.exp() * img @ txt.T).softmax(dim=1).numpy()
    assert clf.temperature_ == pytest.approx(1 / float(model.logit_scale.detach().exp()))
    np.testing.assert_allclose(clf.predict_proba(images), expected, atol=1e-4)


def test_open_clip_backbone_family(tiny_clip):
    bb = load_backbone(tiny_clip)
    assert (bb.family, bb.modality, bb.embedding_dim) == ("open_clip", "image", 16)
    assert bb.preprocess_config()["input_size"] == 32
    with pytest.raises(ValueError, match="pretrained size"):
        bb.preprocess_config(64)
    assert bb.n_layers() == 2 and bb.layer_dim(0) == 32
    assert len(bb.block_groups()) == 4  # stem, 2 blocks, pooling + projection


def test_open_clip_names_resolve_offline_or_fail_clearly():
    assert parse_spec("open_clip/ViT-B-32") == ("open_clip", "ViT-B-32")
    # No CLIP weights are installed here: a clear error, never random weights.
    with pytest.raises(BackboneNotFoundError, match="open_clip/ViT-B-32:openai"):
        load_backbone("open_clip/ViT-B-32", shared=False)
    with pytest.raises(ValueError, match="Did you mean: ViT-B-32"):
        load_backbone("open_clip/ViT-B-33")
    with pytest.raises(ValueError, match="Known tags"):
        load_backbone("open_clip/ViT-B-32:nope")

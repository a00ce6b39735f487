"""Backbone names that can't be found: close matches, offline and fast."""

import socket

import pytest

from sktransfer import config_context
from sktransfer.backbones import BackboneNotFoundError, load_backbone


def _suggested(exc, marker="Did you mean"):
    """The names after ``marker`` in an error message, in order."""
    tail = str(exc.value).split(marker, 1)[1]
    tail = tail.split("?", 1)[0] if marker == "Did you mean" else tail.split(". ", 1)[0]
    return [s.strip().removesuffix(" (available offline)") for s in tail.lstrip(": ").split(",")]


@pytest.mark.parametrize(
    "spec, error, expected",
    [
        ("sentence-transformers/all-MiniLM-L6-v3", BackboneNotFoundError, "sentence-transformers/all-MiniLM-L6-v2"),
        ("st/all-minilm-l6-v2x", BackboneNotFoundError, "sentence-transformers/all-MiniLM-L6-v2"),
        ("timm/tf_efficientnet_lite00", ValueError, "tf_efficientnet_lite0"),
        ("torchvision/mobilenet_v22", ValueError, "mobilenet_v2"),
        ("all-MiniLM-L6-v3", ValueError, "sentence-transformers/all-MiniLM-L6-v2"),
        ("tf_efficientnet_lite0", ValueError, "timm/tf_efficientnet_lite0"),
    ],
)
def test_unknown_names_suggest_close_matches_offline(spec, error, expected, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the lookup tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    with config_context(offline=True):
        with pytest.raises(error, match="Did you mean") as exc:
            load_backbone(spec)
    # The closest name comes first; among equally close ones, the one that loads offline.
    assert _suggested(exc)[0] == expected


def test_a_name_with_nothing_close_gets_no_suggestion():
    with config_context(offline=True):
        with pytest.raises(BackboneNotFoundError) as exc:
            load_backbone("sentence-transformers/zzzz-qqqq-nothing-like-it")
    assert "Did you mean" not in str(exc.value) and "Close matches" not in str(exc.value)


def test_a_real_name_missing_offline_points_to_what_is_installed():
    # tf_efficientnet_lite1 is a real timm model, just not installed here: no
    # "did you mean", but the close name that loads offline.
    with config_context(offline=True):
        with pytest.raises(BackboneNotFoundError) as exc:
            load_backbone("timm/tf_efficientnet_lite1")
    assert "Did you mean" not in str(exc.value)
    assert _suggested(exc, "Close matches available offline:") == ["timm/tf_efficientnet_lite0"]


def test_hub_rejection_of_a_misspelt_name_gets_close_matches(monkeypatch):
    # Online, the hub answers "not a valid model identifier" (an OSError):
    # the error keeps the hub's words and adds the close matches.
    from sktransfer.backbones import _loading

    def hub_says_no(model_id, name, local_dir=None):
        raise OSError(f"{model_id} is not a local folder and is not a valid model identifier")

    monkeypatch.setattr(_loading, "load_sentence_transformer", hub_says_no)
    with pytest.raises(BackboneNotFoundError, match="not a valid model identifier.*Did you mean") as exc:
        load_backbone("sentence-transformers/all-MiniLM-L6-v3")
    assert _suggested(exc)[0] == "sentence-transformers/all-MiniLM-L6-v2"
    assert isinstance(exc.value.__cause__, OSError)
    # Nothing close: the hub's own error, unchanged.
    with pytest.raises(OSError, match="not a valid model identifier") as exc:
        load_backbone("sentence-transformers/zzzz-qqqq-nothing-like-it")
    assert not isinstance(exc.value, BackboneNotFoundError)


@pytest.mark.parametrize(
    "error",
    [PermissionError(13, "Permission denied", "/hf-cache/models--x"), OSError(28, "No space left on device")],
    ids=["permission", "disk-full"],
)
def test_other_os_errors_are_not_turned_into_a_name_lookup(error, monkeypatch):
    # A misspelt-looking name, but the load failed for another reason: that
    # reason, unchanged, not "did you mean".
    from sktransfer.backbones import _loading

    def fails(model_id, name, local_dir=None):
        raise error

    monkeypatch.setattr(_loading, "load_sentence_transformer", fails)
    with pytest.raises(OSError) as exc:
        load_backbone("sentence-transformers/all-MiniLM-L6-v3")
    assert exc.value is error and not isinstance(exc.value, BackboneNotFoundError)


def test_the_hubs_repository_not_found_gets_close_matches(monkeypatch):
    # The other side of the test above: the hub's not-found, even wrapped, still gets them.
    from huggingface_hub.errors import RepositoryNotFoundError

    from sktransfer.backbones import _loading

    def hub_says_no(model_id, name, local_dir=None):
        not_found = RepositoryNotFoundError.__new__(RepositoryNotFoundError)  # no HTTP response to build it from
        Exception.__init__(not_found, "404 Client Error: Repository Not Found")
        try:
            raise not_found
        except RepositoryNotFoundError as exc:
            raise OSError("could not load the model") from exc

    monkeypatch.setattr(_loading, "load_sentence_transformer", hub_says_no)
    with pytest.raises(BackboneNotFoundError, match="Did you mean") as exc:
        load_backbone("sentence-transformers/all-MiniLM-L6-v3")
    assert _suggested(exc)[0] == "sentence-transformers/all-MiniLM-L6-v2"


def test_a_suggestion_lists_the_hub_cache_once(monkeypatch):
    from sktransfer.backbones import _offline

    calls = []
    real = _offline._hub_cache_names
    monkeypatch.setattr(_offline, "_hub_cache_names", lambda: calls.append(1) or real())
    assert "all-MiniLM-L6-v2" in _offline.suggestion("sentence-transformers/all-MiniLM-L6-v3", "text")
    assert len(calls) == 1

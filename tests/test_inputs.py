"""Input coercion: every bad row gets a clear error naming it, never a raw crash."""

import warnings

import numpy as np
import pytest
from PIL import Image

from sktransfer import FineTunedClassifier, LoRAClassifier, PretrainedFeatureExtractor
from conftest import IMAGE, TEXT


@pytest.fixture(scope="module")
def text_ext():
    return PretrainedFeatureExtractor(TEXT).fit(["fine"])


@pytest.fixture(scope="module")
def image_ext():
    return PretrainedFeatureExtractor(IMAGE, image_size=32).fit([np.zeros((8, 8, 3), np.uint8)])


# ------------------------------------------------------------------ texts
def test_text_backbone_warns_when_every_row_is_an_image_path(tmp_path, text_ext):
    paths = []
    for i in range(3):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(p)
        paths.append(str(p))
    with pytest.warns(UserWarning, match=r"All 3 rows of X are paths to image files \(e\.g\. '.*img0\.png'\)"):
        text_ext.transform(paths)
    # Texts that merely mention a file name, or paths that do not exist, are text.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        text_ext.transform(["see photo.png", str(tmp_path / "missing.png")])
        text_ext.transform([paths[0], "a caption"])


@pytest.mark.parametrize("bad", ["\ud800", "ok \udcff then"])
def test_lone_surrogate_in_text_is_named(text_ext, bad):
    with pytest.raises(ValueError, match=r"Row 1 of X contains a lone surrogate .*errors='replace'"):
        text_ext.transform(["fine", bad])


# ----------------------------------------------------------------- images
@pytest.mark.parametrize(
    "row",
    [np.zeros((0, 0), np.uint8), np.zeros((0, 0, 3), np.uint8), np.zeros((5, 0, 3), np.uint8), Image.new("RGB", (0, 0)), Image.new("L", (4, 0))],
    ids=["array 0x0", "array 0x0x3", "array 5x0x3", "PIL 0x0", "PIL 4x0"],
)
def test_empty_image_is_named(image_ext, row):
    with pytest.raises(ValueError, match=r"Row 1 of X: the image is empty \(.*no pixels"):
        image_ext.transform([np.zeros((8, 8, 3), np.uint8), row])


def test_empty_image_file_is_named(tmp_path, image_ext):
    # A stacked array with no pixels, too.
    with pytest.raises(ValueError, match=r"Row 0 of X: the image is empty"):
        image_ext.transform(np.zeros((2, 0, 0, 3), np.uint8))


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_channels_first_arrays_are_recognised(image_ext, channels):
    chw = np.zeros((channels, 32, 32), np.uint8)
    with pytest.raises(ValueError, match=r"Row 1 of X: image array of shape \(%d, 32, 32\) looks channels-first.*np\.moveaxis\(a, 0, -1\)" % channels):
        image_ext.transform([np.zeros((8, 8, 3), np.uint8), chw])
    with pytest.raises(ValueError, match=r"looks channels-first \(N×C×H×W\).*np\.moveaxis\(X, 1, -1\)"):
        image_ext.transform(np.zeros((2, channels, 32, 32), np.uint8))


def test_genuine_odd_channel_count_still_says_channels(image_ext):
    with pytest.raises(ValueError, match="Row 0 of X: image array of shape \\(8, 8, 5\\) has 5 channels"):
        image_ext.transform([np.zeros((8, 8, 5), np.uint8)])
    # Tiny 3×4×5 could be either layout: no channels-first guess below 5 px.
    with pytest.raises(ValueError, match="has 5 channels"):
        image_ext.transform([np.zeros((3, 4, 5), np.uint8)])


# -------------------------------------------------------------- max_length
@pytest.mark.parametrize("cls", [FineTunedClassifier, LoRAClassifier])
def test_max_length_above_the_model_limit_is_a_clear_error(cls, one_thread):
    est = cls(TEXT, max_length=1000, max_epochs=1, batch_size=2, validation_fraction=0)
    with pytest.raises(ValueError, match=r"max_length=1000 .*limit of 512 tokens"):
        est.fit(["a", "b", "c", "d"], [0, 1, 0, 1])

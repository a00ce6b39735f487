"""Image preprocessing of the extractor: exact and fast resizing, batches prepared in a thread.

Real backbone (EfficientNet-Lite0 from its offline weights), small inputs.
"""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from sktransfer import PretrainedFeatureExtractor
from sktransfer import _feature_extractor as FE
from sktransfer.backbones._image import _center_crop, prefetch_batches, resize_center_crop

from conftest import IMAGE, TEXT

pytestmark = pytest.mark.usefixtures("one_thread")


def _cosines(a, b):
    return np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def photos():
    """Real images of different sizes: the two sklearn photos, cut to four shapes, and a Fashion-MNIST-like gray image."""
    from sklearn.datasets import load_sample_image

    china, flower = load_sample_image("china.jpg"), load_sample_image("flower.jpg")
    return [
        Image.fromarray(china),  # 427×640 (downscaled)
        Image.fromarray(flower[:300, 100:350]),  # 300×250, portrait
        Image.fromarray(china[100:160, 200:420]),  # 60×220, wide strip (upscaled)
        Image.fromarray(flower[50:90, 300:340]),  # 40×40 (upscaled)
    ]


@pytest.fixture(scope="module")
def odd_images(tmp_path_factory):
    """Odd sizes and modes: L, LA, RGBA, P with and without transparency, 1-bit, 16-bit file, 1×1, 3×500."""
    rng = np.random.RandomState(0)
    rgb = rng.randint(0, 256, (37, 23, 3), dtype=np.uint8)
    gray = rng.randint(0, 256, (29, 41), dtype=np.uint8)
    rgba = np.concatenate([rgb, rng.randint(0, 256, (37, 23, 1), dtype=np.uint8)], axis=2)
    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal_t = pal.copy()
    pal_t.info["transparency"] = 3
    path16 = tmp_path_factory.mktemp("img") / "gray16.png"
    Image.fromarray(gray.astype(np.uint16)).save(path16)  # 16-bit file, values within 0-255
    assert Image.open(path16).mode.startswith("I")
    return {
        "L": Image.fromarray(gray),
        "LA": Image.merge("LA", (Image.fromarray(gray), Image.fromarray(gray[::-1].copy()))),
        "RGBA": Image.fromarray(rgba),
        "P": pal,
        "P+transparency": pal_t,
        "1": Image.fromarray(gray > 128),
        "I;16 file": str(path16),
        "1x1": rgb[:1, :1],
        "3x500": rng.randint(0, 256, (3, 500, 3), dtype=np.uint8),
        "float HxW": gray.astype(np.float32) / 255.0,
    }


def test_fast_resize_is_close_to_timms_pipeline(photos):
    import timm

    ext = {m: PretrainedFeatureExtractor(IMAGE, image_resize=m, batch_size=2).fit(photos[:1]) for m in ("exact", "fast")}
    body = ext["exact"]._get_backbone().body
    tfm = timm.data.create_transform(**timm.data.resolve_model_data_config(body), is_training=False)
    with torch.inference_mode():
        ref = body(torch.stack([tfm(im.convert("RGB")) for im in photos])).numpy()
    exact, fast = ext["exact"].transform(photos), ext["fast"].transform(photos)
    np.testing.assert_allclose(exact, ref, atol=1e-4)  # the same pixels as timm's transform
    assert _cosines(fast, ref).min() >= 0.999
    assert not np.array_equal(fast, exact)  # really another resampling


def test_fast_crops_differ_from_exact_by_rounding_only(photos):
    for interpolation in ("bicubic", "bilinear", "nearest"):
        exact = resize_center_crop(photos, 64, 0.875, interpolation).numpy().astype(int)
        fast = resize_center_crop(photos, 64, 0.875, interpolation, method="fast")
        assert fast.shape == exact.shape and fast.dtype == torch.uint8
        assert fast.is_contiguous(memory_format=torch.channels_last)
        diff = np.abs(fast.numpy().astype(int) - exact)
        assert diff.mean() < 0.5 and np.percentile(diff, 99) <= 2, interpolation


def test_fast_crop_pads_as_torchvision_when_the_image_is_smaller():
    # crop_pct > 1: the resized image is smaller than the crop, which is zero-padded around it.
    from torchvision.transforms import functional as F

    x = torch.arange(2 * 3 * 5 * 8, dtype=torch.uint8).reshape(2, 3, 5, 8)
    for size in (6, 9, 11):
        np.testing.assert_array_equal(_center_crop(x, size).numpy(), F.center_crop(x, [size, size]).numpy())
    img = Image.fromarray(np.full((10, 14, 3), 200, dtype=np.uint8))
    exact = resize_center_crop([img], 16, 1.25, "bicubic")
    fast = resize_center_crop([img], 16, 1.25, "bicubic", method="fast")
    np.testing.assert_array_equal(fast.numpy(), exact.numpy())  # flat image: resampling is exact, padding equal


@pytest.mark.parametrize("resize", ["exact", "fast"])
def test_prefetch_gives_the_same_embeddings(resize, odd_images, monkeypatch):
    X = list(odd_images.values())
    ext = PretrainedFeatureExtractor(IMAGE, image_size=48, image_resize=resize, batch_size=3).fit(X[:1])
    out = {}
    for ahead in (0, 1, 2):
        monkeypatch.setattr(FE, "_PREFETCH_AHEAD", ahead)
        out[ahead] = ext.transform(X)
    np.testing.assert_array_equal(out[0], out[1])
    np.testing.assert_array_equal(out[0], out[2])


def test_odd_sizes_and_modes_work_in_both_paths(odd_images):
    X = list(odd_images.values())
    Z = {m: PretrainedFeatureExtractor(IMAGE, image_size=48, image_resize=m, batch_size=4).fit(X).transform(X)
         for m in ("exact", "fast")}
    for m, z in Z.items():
        assert z.shape == (len(X), 1280) and np.isfinite(z).all(), m
    cos = _cosines(Z["exact"], Z["fast"])
    for name, c in zip(odd_images, cos):
        assert c > 0.99, (name, c)


def test_one_image_per_size_or_all_of_one_size_give_the_same_crops(photos):
    # Grouping by size in the fast path: a batch of mixed sizes = each image alone.
    batch = resize_center_crop(photos, 32, 0.875, "bicubic", method="fast")
    alone = torch.cat([resize_center_crop([p], 32, 0.875, "bicubic", method="fast") for p in photos])
    np.testing.assert_array_equal(batch.numpy(), alone.numpy())


def test_an_error_in_a_prefetched_batch_names_its_row(tmp_path, photos):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    X = [photos[3]] * 5 + [str(bad)] + [photos[3]] * 3
    ext = PretrainedFeatureExtractor(IMAGE, image_size=32, image_resize="fast", batch_size=2).fit(X[:1])
    with pytest.raises(ValueError, match=r"Row 5 of X: cannot read image file .*broken\.png"):
        ext.transform(X)
    assert ext.transform(X[:2]).shape == (2, 1280)  # still usable afterwards


def test_prefetch_batches_order_errors_and_early_stop():
    from contextlib import closing

    seen = []

    def prepare(b):
        seen.append(b)
        if b == 3:
            raise KeyError("row 3")
        return b * 10

    assert list(prefetch_batches(prepare, [0, 1, 2], ahead=1)) == [0, 10, 20]
    assert list(prefetch_batches(prepare, [0, 1, 2], ahead=0)) == [0, 10, 20]
    got = []
    with pytest.raises(KeyError, match="row 3"):
        for v in prefetch_batches(prepare, [1, 2, 3, 4], ahead=2):
            got.append(v)
    assert got == [10, 20]
    seen.clear()
    with closing(prefetch_batches(prepare, list(range(100)), ahead=1)) as it:
        next(it)
    assert len(seen) <= 3  # stopped early: no batch prepared beyond the one ahead


@pytest.mark.parametrize("value", ["slow", "EXACT", None, 1, True])
def test_bad_image_resize_is_named(value):
    with pytest.raises(ValueError, match=r"'image_resize' parameter of PretrainedFeatureExtractor must be a str among "
                                         r"\{.*'exact'.*\}\. Got"):
        PretrainedFeatureExtractor(IMAGE, image_resize=value).fit([np.zeros((8, 8), np.uint8)])


def test_image_resize_is_ignored_for_text():
    texts = ["a short text", "another one"]
    a = PretrainedFeatureExtractor(TEXT, image_resize="fast").fit_transform(texts)
    b = PretrainedFeatureExtractor(TEXT).fit_transform(texts)
    np.testing.assert_array_equal(a, b)


def test_cache_keeps_the_two_resize_methods_apart(photos, cache_dir):
    # The default (fast) fills the cache first: an exact extractor on the same cache must not read its rows.
    X = photos[2:]
    fast = PretrainedFeatureExtractor(IMAGE, image_size=32, cache=cache_dir).fit(X).transform(X)
    exact = PretrainedFeatureExtractor(IMAGE, image_size=32, image_resize="exact", cache=cache_dir).fit(X).transform(X)
    ref = PretrainedFeatureExtractor(IMAGE, image_size=32, image_resize="exact").fit(X).transform(X)
    np.testing.assert_array_equal(exact, ref)
    assert not np.array_equal(fast, exact)
    again = PretrainedFeatureExtractor(IMAGE, image_size=32, cache=cache_dir).fit(X).transform(X)
    np.testing.assert_array_equal(again, fast)


def test_file_bytes_decode_like_the_image(photos, tmp_path):
    # A PNG file and its decoded image give the same crops in both paths (decoding happens in the thread).
    path = tmp_path / "p.png"
    photos[1].save(path)
    for m in ("exact", "fast"):
        ext = PretrainedFeatureExtractor(IMAGE, image_size=32, image_resize=m).fit([str(path)])
        np.testing.assert_array_equal(ext.transform([str(path)]), ext.transform([Image.open(io.BytesIO(path.read_bytes()))]))


def test_channels_last_normalisation_gives_the_same_floats(photos):
    from sktransfer.backbones import load_backbone

    bb = load_backbone(IMAGE)
    fast = resize_center_crop(photos, 40, 0.875, "bicubic", method="fast")  # channels-last uint8
    x = bb._prepare(fast)
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(x, bb.normalize(fast.contiguous()).contiguous(memory_format=torch.channels_last))

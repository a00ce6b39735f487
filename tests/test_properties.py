"""Property-based tests of input coercion: found by a machine, not a person.

Whatever texts or images a user passes, the extractor either raises a
ValueError / TypeError / FileNotFoundError that names the bad row ("Row k of
X", or "X ..." for the input as a whole), or returns an ``(n, d)`` finite
float32 array whose every row equals the same input embedded alone, also
through the cache (a digest collision would show up as a wrong row).

The backbones are the real ones; images are tiny and ``image_size=32`` (the
backbone resizes), examples are few and derandomized so that CI is stable.
For a deeper search: SKTRANSFER_FUZZ_EXAMPLES=150 pytest tests/test_properties.py
(about 10 minutes on 2 CPU cores).
"""

import itertools
import math
import os
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from PIL import Image

from sktransfer import PretrainedFeatureExtractor
from sktransfer._cache import clear_memory_layer
from conftest import IMAGE, TEXT

# Few examples and no shrinking: every example runs real backbones, and a
# shrink of a failure would take minutes; derandomized, so CI is stable and
# a failure prints the same (unshrunk) example every run.
FUZZ = settings(
    max_examples=int(os.environ.get("SKTRANSFER_FUZZ_EXAMPLES", 12)),
    phases=[Phase.explicit, Phase.generate],
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_ERRORS = (ValueError, TypeError, FileNotFoundError)
_NAMED = re.compile(r"Row (\d+) of X|^X ")


@pytest.fixture(scope="module")
def text_pair(tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("prop-text-cache"))
    fit = ["fine"]
    return (
        PretrainedFeatureExtractor(TEXT, cache=cache, batch_size=3).fit(fit),
        PretrainedFeatureExtractor(TEXT).fit(fit),
    )


@pytest.fixture(scope="module")
def image_pair(tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("prop-image-cache"))
    fit = [np.zeros((8, 8, 3), np.uint8)]
    return (
        PretrainedFeatureExtractor(IMAGE, image_size=32, cache=cache, batch_size=3).fit(fit),
        PretrainedFeatureExtractor(IMAGE, image_size=32).fit(fit),
    )


@pytest.fixture(scope="module")
def file_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("prop-files")


def _alone(ext, row):
    return ext.transform([row])


def check_invariant(cached, plain, X, rows, must_embed=False):
    """The property: a named error, or each row as if embedded alone."""
    clear_memory_layer()  # the cache is read from disk, not from memory
    try:
        Z = cached.transform(X)
    except _ERRORS as exc:
        if must_embed:
            raise
        msg = str(exc)
        m = _NAMED.search(msg)
        assert m, f"error does not name the row or X: {type(exc).__name__}: {msg}"
        if m.group(1) is not None:
            k = int(m.group(1))
            assert k < len(rows), msg
            # The same row alone fails the same way, as row 0.
            with pytest.raises(_ERRORS, match="Row 0 of X"):
                _alone(plain, rows[k])
        return
    n = len(rows)
    assert Z.shape == (n, plain.embedding_dim_) and Z.dtype == np.float32
    assert np.isfinite(Z).all()
    for i, row in enumerate(rows):
        # Batched vs alone differs by float noise (~1e-5 relative on CPU
        # convolutions); a wrong or colliding row is off by ~0.1 or more.
        np.testing.assert_allclose(Z[i], _alone(plain, row)[0], rtol=1e-4, atol=1e-4, err_msg=f"row {i}")
    # A second call is served from the cache and agrees.
    np.testing.assert_allclose(cached.transform(X), Z, atol=1e-6)


# ------------------------------------------------------------------ texts
# Each modality has two properties: one over any input (mostly clear
# errors), one over valid inputs only (so that the embeddings themselves are
# checked on every example, not only when no row happened to be bad).
_SPECIAL = ["\ud800", "\udfff", "\x00", "\u200b", "\ufeff", "\n", " ", "é", "日", "🙂", "a"]
_SURROGATES = {"\ud800", "\udfff"}
_BAD_TEXT = [None, float("nan"), pd.NA, 3, 2.5, b"bytes"]


@st.composite
def _text_row(draw, valid):
    if not valid and draw(st.integers(0, 7)) == 0:
        return draw(st.sampled_from(_BAD_TEXT))
    chars = st.one_of(st.characters(exclude_categories=() if not valid else ("Cs",)), st.sampled_from(_SPECIAL))
    if valid:
        chars = chars.filter(lambda c: c not in _SURROGATES)
    text = "".join(draw(st.lists(chars, max_size=60)))  # st.text() never draws surrogates
    return np.str_(text) if draw(st.integers(0, 5)) == 0 else text


@st.composite
def text_inputs(draw, valid=False):
    rows = draw(st.lists(_text_row(valid), min_size=1, max_size=4))
    if draw(st.booleans()):
        rows.append(rows[0])  # a duplicate within one call
    container = draw(st.sampled_from(["list", "object", "str", "series", "frame"]))
    if container == "object":
        X = np.empty(len(rows), dtype=object)
        X[:] = rows
    elif container == "str" and all(isinstance(r, str) for r in rows):
        X = np.asarray(rows, dtype=str)
        rows = list(X)
    elif container == "series":
        X = pd.Series(rows, dtype=object)
    elif container == "frame":
        X = pd.DataFrame({"text": pd.Series(rows, dtype=object)})
    else:
        X = list(rows)
    return X, rows


@FUZZ
@given(data=text_inputs())
def test_any_text_input_embeds_or_names_the_row(text_pair, data):
    check_invariant(*text_pair, *data)


@FUZZ
@given(data=text_inputs(valid=True))
def test_valid_text_rows_embed_as_if_alone(text_pair, data):
    check_invariant(*text_pair, *data, must_embed=True)


# ----------------------------------------------------------------- images
_DTYPES = [np.uint8, np.uint16, np.int8, np.int32, np.int64, np.float16, np.float32, np.float64, np.bool_]
_MODES = {"1": None, "L": 1, "P": 1, "PA": 2, "LA": 2, "RGB": 3, "RGBA": 4, "CMYK": 4, "I;16": 2, "I": 4, "F": 4}
_file_ids = itertools.count()


def _sides(draw, valid):
    side = st.integers(1, 10) if valid else st.sampled_from([5, 1, 2, 3, 4, 6, 7, 8, 9, 10, 0])
    return draw(side), draw(side)


def _pixels(draw, rng, shape, dtype, valid):
    """Values in a valid range for ``dtype``, or (not ``valid``) anything."""
    scale = "ok" if valid else draw(st.sampled_from(["ok", "ok", "wide", "special"]))
    if dtype.kind == "b":
        return rng.rand(*shape) > 0.5
    if dtype.kind == "f":
        lo, hi = (0, 1) if scale != "wide" else (-1e4, 1e4)
        a = rng.uniform(lo, hi, shape).astype(dtype)
        if scale == "special" and a.size:
            a.flat[rng.randint(a.size)] = rng.choice([np.nan, np.inf, -np.inf, 1.0 + 1e-3])
        return a
    info = np.iinfo(dtype)
    lo, hi = (0, 256) if scale != "wide" else (int(info.min), int(info.max) + 1)
    return rng.randint(max(lo, info.min), min(hi, int(info.max) + 1), size=shape, dtype=np.int64).astype(dtype)


@st.composite
def image_arrays(draw, valid=False, shape=None):
    if shape is None:
        h, w = _sides(draw, valid)
        channels = draw(st.sampled_from([None, 1, 3, 4] if valid else [None, 1, 3, 4, 2, 5]))
        if channels is None:
            shape = (h, w)
        elif not valid and draw(st.integers(0, 5)) == 0:
            shape = (channels, h + 5, w + 5)  # big enough to look channels-first
        else:
            shape = (h, w, channels)
    dtypes = [d for d in _DTYPES if d is not np.bool_] if valid else _DTYPES
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    rng = np.random.RandomState(draw(st.integers(0, 2**16)))
    return _pixels(draw, rng, shape, dtype, valid)


@st.composite
def pil_images(draw, valid=False):
    mode = draw(st.sampled_from(sorted(_MODES)))
    w, h = _sides(draw, valid)
    rng = np.random.RandomState(draw(st.integers(0, 2**16)))
    if w * h == 0:
        return Image.new(mode, (w, h))
    if mode == "F" and (valid or draw(st.booleans())):
        img = Image.fromarray(rng.rand(h, w).astype(np.float32))
    elif mode in ("I", "I;16") and (valid or draw(st.booleans())):
        img = Image.fromarray(rng.randint(0, 256, (h, w)).astype(np.int32 if mode == "I" else np.uint16))
    else:
        stride = math.ceil(w / 8) * h if mode == "1" else _MODES[mode] * w * h
        img = Image.frombytes(mode, (w, h), rng.bytes(stride))
    if mode in ("P", "PA"):
        img.putpalette(list(rng.bytes(768)))
        if draw(st.booleans()):
            img.info["transparency"] = draw(st.sampled_from([0, rng.bytes(4)]))
    return img


@st.composite
def image_files(draw, directory, valid=False):
    img = draw(pil_images(valid))
    if img.width * img.height == 0 or img.mode in ("CMYK", "PA", "F", "I"):  # PNG can't hold these
        img = Image.new("RGB", (3, 3), (200, 10, 10))
    path = directory / f"{next(_file_ids)}.png"
    if not valid and draw(st.integers(0, 5)) == 0:
        path.write_bytes(b"\x89PNG not really")  # corrupt
    else:
        img.save(path)
    return str(path) if draw(st.booleans()) else path


@st.composite
def _image_row(draw, directory, valid):
    kind = draw(st.sampled_from(["array", "pil", "file"] if valid else ["array", "pil", "file", "bad"]))
    if kind == "bad":
        return draw(st.sampled_from([None, float("nan"), "a caption", "missing/photo.jpg", 7]))
    if kind == "array":
        return draw(image_arrays(valid))
    if kind == "pil":
        return draw(pil_images(valid))
    return draw(image_files(directory, valid))


_SAME_BYTES = [("L", "P"), ("LA", "PA", "I;16"), ("RGBA", "CMYK", "I", "F")]


@st.composite
def _sibling(draw, img):
    """Same pixel bytes, different meaning: a cache digest must tell them apart."""
    rng = np.random.RandomState(draw(st.integers(0, 2**16)))
    how = draw(st.sampled_from(["palette", "transparency", "mode"]))
    if how == "mode":
        group = next((g for g in _SAME_BYTES if img.mode in g), None)
        if group is not None:
            other = Image.frombytes(draw(st.sampled_from(group)), img.size, img.tobytes())
            if other.mode in ("P", "PA"):
                other.putpalette(list(rng.bytes(768)))
            if other.mode not in ("I", "F"):  # random I/F values are rarely valid
                return other
    twin = img.copy()
    if how == "palette" and twin.mode in ("P", "PA"):
        twin.putpalette(list(rng.bytes(768)))
    elif "transparency" in twin.info:
        del twin.info["transparency"]
    elif twin.mode in ("P", "L"):
        twin.info["transparency"] = 0
    return twin


@st.composite
def image_inputs(draw, directory, valid=False):
    if draw(st.integers(0, 3)) == 0:  # one stacked array
        n = draw(st.integers(1, 3))
        h, w = _sides(draw, valid)
        c = draw(st.sampled_from([1, 3, 4] if valid else [1, 3, 4, 2]))
        shapes = [(n, h, w), (n, h, w, c)] + ([] if valid else [(n, 3, h + 5, w + 5)])
        X = draw(image_arrays(valid, shape=draw(st.sampled_from(shapes))))
        return X, list(X)
    rows = draw(st.lists(_image_row(directory, valid), min_size=1, max_size=4))
    if draw(st.booleans()):
        rows.append(rows[0])
    if isinstance(rows[0], Image.Image) and rows[0].width * rows[0].height and draw(st.booleans()):
        rows.append(draw(_sibling(rows[0])))
    X = pd.Series(rows, dtype=object) if draw(st.integers(0, 4)) == 0 else rows
    return X, rows


@FUZZ
@given(data=st.data())
def test_any_image_input_embeds_or_names_the_row(image_pair, file_dir, data):
    check_invariant(*image_pair, *data.draw(image_inputs(file_dir)))


@FUZZ
@given(data=st.data())
def test_valid_image_rows_embed_as_if_alone(image_pair, file_dir, data):
    check_invariant(*image_pair, *data.draw(image_inputs(file_dir, valid=True)), must_embed=True)

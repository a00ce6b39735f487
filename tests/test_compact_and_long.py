"""Issue 13, parts 3 and 4: long texts in token windows, compact embeddings.

Real all-MiniLM-L6-v2 (offline) on full BBC News articles. Windows of 64
tokens keep the forwards cheap while every article spans several windows.
"""

import math
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.utils._param_validation import InvalidParameterError

from sktransfer import PretrainedFeatureExtractor, embedding_stats, reset_embedding_stats

from conftest import IMAGE, TEXT

WINDOW = 64
SHORT = ["the striker scored twice in the cup final", "shares fell sharply"]


@pytest.fixture(scope="module")
def articles(bbc):
    """Three full articles (each several 64-token windows) and two short texts."""
    long = [t for t in bbc.data if 1500 < len(t) < 2500][:3]
    return long + SHORT


def _cos(a, b):
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# ------------------------------------------------------------------ long texts
def test_chunking_pools_windows_and_leaves_short_texts_alone(articles, one_thread):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no truncation warning (or any other) for chunked texts
        mean = PretrainedFeatureExtractor(TEXT, max_length=WINDOW, long_texts="chunk_mean").fit(articles)
        Z_mean = mean.transform(articles)
    Z_max = PretrainedFeatureExtractor(TEXT, max_length=WINDOW, long_texts="chunk_max").fit_transform(articles)
    Z_trunc = PretrainedFeatureExtractor(TEXT, max_length=WINDOW).fit_transform(articles)
    assert Z_mean.shape == Z_max.shape == Z_trunc.shape == (5, 384) and Z_mean.dtype == np.float32
    # A text within one window: the same embedding as truncation.
    np.testing.assert_allclose(Z_mean[3:], Z_trunc[3:], atol=1e-5)
    np.testing.assert_allclose(Z_max[3:], Z_trunc[3:], atol=1e-5)
    # Long articles read beyond the first window: pooled embeddings differ.
    assert (_cos(Z_mean[:3], Z_trunc[:3]) < 0.99).all()
    assert (_cos(Z_max[:3], Z_mean[:3]) < 0.999).all()
    # The pooling is the mean / max of the windows embedded one by one.
    bb = mean._backbone_obj
    windows, owner = bb.chunk(articles, WINDOW, 0.125)
    assert list(np.bincount(owner)[3:]) == [1, 1] and (np.bincount(owner)[:3] >= 4).all()
    each = np.vstack([bb.embed(bb.window_inputs(windows, [j])).numpy() for j in range(len(windows))])
    for i in range(5):
        np.testing.assert_allclose(Z_mean[i], each[owner == i].mean(axis=0), atol=1e-5)
        np.testing.assert_allclose(Z_max[i], each[owner == i].max(axis=0), atol=1e-5)


def test_windows_overlap_and_fit_the_model(articles):
    ext = PretrainedFeatureExtractor(TEXT).fit(SHORT)
    bb = ext._backbone_obj
    windows, owner = bb.chunk(articles[:1], WINDOW, 0.25)
    ids = [w["input_ids"] for w in windows]
    assert all(len(w) <= WINDOW for w in ids) and all(w[0] == ids[0][0] and w[-1] == ids[0][-1] for w in ids)
    shared = round(0.25 * (WINDOW - 2))  # MiniLM adds [CLS] and [SEP]
    assert ids[1][1 : 1 + shared] == ids[0][-1 - shared : -1]
    fewer, _ = bb.chunk(articles[:1], WINDOW, 0.0)
    assert len(fewer) < len(windows)


def test_windows_of_all_texts_share_batches(articles, one_thread):
    ext = PretrainedFeatureExtractor(TEXT, max_length=WINDOW, long_texts="chunk_mean", batch_size=8).fit(SHORT)
    bb = ext._backbone_obj
    n_windows = len(bb.chunk(articles, WINDOW, 0.125)[0])
    sizes = []
    embed = bb.embed
    bb.embed = lambda batch, layer=None: (sizes.append(len(batch["input_ids"])), embed(batch, layer))[1]
    try:
        ext.transform(articles)
    finally:
        del bb.embed
    assert sum(sizes) == n_windows and len(sizes) == math.ceil(n_windows / 8)  # windows of every text mixed
    assert all(s == 8 for s in sizes[:-1])


def test_chunking_with_compiled_backend_matches_torch(articles, one_thread):
    pytest.importorskip("onnxruntime")
    kw = {"max_length": WINDOW, "long_texts": "chunk_max"}
    Z_onnx = PretrainedFeatureExtractor(TEXT, backend="onnx", **kw).fit_transform(articles)
    Z_torch = PretrainedFeatureExtractor(TEXT, **kw).fit_transform(articles)
    assert _cos(Z_onnx, Z_torch).min() > 0.9999


def test_cache_keys_separate_long_texts_and_serve_every_precision(articles, cache_dir, one_thread):
    n = len(articles)

    def computed(**params):
        reset_embedding_stats()
        ext = PretrainedFeatureExtractor(TEXT, max_length=WINDOW, cache=cache_dir, **params)
        Z = ext.fit_transform(articles)
        return embedding_stats()["computed"], Z

    assert computed()[0] == n
    c, Z_mean = computed(long_texts="chunk_mean")
    assert c == n  # not served truncation's rows
    assert computed(long_texts="chunk_max")[0] == n
    assert computed(long_texts="chunk_mean", chunk_overlap=0.25)[0] == n
    c, Z_again = computed(long_texts="chunk_mean")
    assert c == 0 and np.array_equal(Z_again, Z_mean)
    # Full float32 rows are cached: truncate_dim and precision are served from the same entries.
    for params in ({"truncate_dim": 32}, {"precision": "int8"}, {"precision": "ubinary", "truncate_dim": 100}):
        assert computed(long_texts="chunk_mean", **params)[0] == 0
    c, Z16 = computed(long_texts="chunk_mean", precision="float16")
    assert c == 0 and np.array_equal(Z16, Z_mean.astype(np.float16))


def test_long_texts_is_a_grid_search_hyper_parameter(bbc, cache_dir, one_thread):
    rng = np.random.RandomState(0)
    idx = np.concatenate([rng.choice(np.flatnonzero(bbc.target == k), 4, replace=False) for k in range(2)])
    X, y = [bbc.data[i][:1200] for i in idx], bbc.target[idx]
    pipe = make_pipeline(PretrainedFeatureExtractor(TEXT, max_length=WINDOW, cache=cache_dir), LogisticRegression())
    assert clone(pipe.set_params(pretrainedfeatureextractor__long_texts="chunk_max"))[0].long_texts == "chunk_max"
    grid = GridSearchCV(pipe, {"pretrainedfeatureextractor__long_texts": ["truncate", "chunk_mean"]}, cv=2).fit(X, y)
    assert grid.best_params_["pretrainedfeatureextractor__long_texts"] in {"truncate", "chunk_mean"}


# ----------------------------------------------------------- compact output
@pytest.fixture(scope="module")
def full(bbc_small):
    texts = bbc_small[0][:12]
    ext = PretrainedFeatureExtractor(TEXT, cache=None)
    return texts, ext.fit_transform(texts)


def test_truncate_dim_is_a_prefix_then_normalized(full):
    texts, Z = full
    ext = PretrainedFeatureExtractor(TEXT, truncate_dim=32).fit(texts)
    assert ext.embedding_dim_ == 32 and len(ext.get_feature_names_out()) == 32
    np.testing.assert_allclose(ext.transform(texts), Z[:, :32], atol=1e-6)
    Zn = PretrainedFeatureExtractor(TEXT, truncate_dim=32, normalize=True).fit_transform(texts)
    np.testing.assert_allclose(Zn, Z[:, :32] / np.linalg.norm(Z[:, :32], axis=1, keepdims=True), atol=1e-6)


@pytest.mark.parametrize(
    "precision, dtype, width",
    [("float32", np.float32, 100), ("float16", np.float16, 100), ("int8", np.int8, 100),
     ("uint8", np.uint8, 100), ("binary", np.int8, 13), ("ubinary", np.uint8, 13)],
)
def test_precision_matches_sentence_transformers(full, precision, dtype, width):
    try:
        from sentence_transformers.util.quantization import quantize_embeddings
    except ImportError:  # sentence-transformers < 5.2
        from sentence_transformers.quantization import quantize_embeddings

    texts, Z = full
    ext = PretrainedFeatureExtractor(TEXT, truncate_dim=100, precision=precision).fit(texts)
    Q = ext.transform(texts)
    assert Q.dtype == dtype and Q.shape == (len(texts), width) and ext.embedding_dim_ == 100
    assert len(ext.get_feature_names_out()) == width
    ranges = ext.quantization_ranges_
    assert (ranges is not None) == precision.endswith("int8")
    if precision == "float16":  # not one of sentence-transformers' precisions
        expected = Z[:, :100].astype(np.float16)
    else:
        expected = quantize_embeddings(Z[:, :100], precision=precision, ranges=ranges)
    np.testing.assert_array_equal(Q, expected)


def test_int8_ranges_come_from_fit(bbc_small, full):
    texts, Z = full
    new = bbc_small[0][50:58]
    ext = PretrainedFeatureExtractor(TEXT, precision="int8").fit(texts)
    np.testing.assert_array_equal(ext.quantization_ranges_, np.stack([Z.min(axis=0), Z.max(axis=0)]))
    Q_fit = ext.transform(texts)
    assert np.array_equal(ext.fit_transform(texts), Q_fit)  # one embedding pass, same codes
    assert np.array_equal(ext.transform(texts[3:5]), Q_fit[3:5])  # a row's code does not depend on the batch
    # A new batch is scaled by fit's ranges (values outside are clipped), not by its own.
    Z_new = PretrainedFeatureExtractor(TEXT).fit_transform(new)
    Q_new = ext.transform(new)
    starts, steps = Z.min(axis=0), (Z.max(axis=0) - Z.min(axis=0)) / 255
    expected = (np.clip(np.floor((Z_new - starts) / steps), 0, 255) - 128).astype(np.int8)
    np.testing.assert_array_equal(Q_new, expected)
    own = PretrainedFeatureExtractor(TEXT, precision="int8").fit(new).transform(new)
    assert not np.array_equal(Q_new, own)


# ------------------------------------------------------------------- errors
def test_truncate_dim_larger_than_the_embedding():
    with pytest.raises(ValueError, match=r"truncate_dim=500 is more than the 384 dimensions .*truncate_dim <= 384"):
        PretrainedFeatureExtractor(TEXT, truncate_dim=500).fit(SHORT)


@pytest.mark.parametrize("precision", ["binary", "ubinary"])
def test_binary_with_normalize_is_refused(precision):
    with pytest.raises(ValueError, match=rf"precision='{precision}' keeps only the sign .*Set normalize=False"):
        PretrainedFeatureExtractor(TEXT, precision=precision, normalize=True).fit(SHORT)


def test_int8_ranges_need_rows():
    with pytest.raises(ValueError, match=r"precision='uint8' learns each dimension's range .*at least 2 rows, got 1"):
        PretrainedFeatureExtractor(TEXT, precision="uint8").fit(SHORT[:1])


def test_chunking_an_image_backbone_is_refused():
    with pytest.raises(ValueError, match=r"long_texts='chunk_mean' or 'chunk_max' .*tf_efficientnet_lite0.*reads images"):
        PretrainedFeatureExtractor(IMAGE, long_texts="chunk_mean").fit(np.zeros((1, 32, 32, 3), np.uint8))


def test_window_too_small_to_chunk():
    with pytest.raises(ValueError, match=r"max_length=3 leaves 1 text tokens per window .*larger max_length"):
        PretrainedFeatureExtractor(TEXT, max_length=3, long_texts="chunk_max").fit(SHORT)


@pytest.mark.parametrize(
    "params, name",
    [({"long_texts": "chunk"}, "long_texts"), ({"chunk_overlap": 0.9}, "chunk_overlap"),
     ({"chunk_overlap": True}, "chunk_overlap"), ({"truncate_dim": 0}, "truncate_dim"),
     ({"precision": "int4"}, "precision")],
)
def test_bad_values_are_named(params, name):
    with pytest.raises(InvalidParameterError, match=rf"The '{name}' parameter of PretrainedFeatureExtractor must be"):
        PretrainedFeatureExtractor(TEXT, **params).fit(SHORT)

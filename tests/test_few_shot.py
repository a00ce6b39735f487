"""FewShotClassifier on the real all-MiniLM-L6-v2 and real BBC News, small and fast.

8 articles per topic (their first 200 characters, 48 tokens), one epoch of a
few pairs: enough to check the behaviour users rely on in well under a
minute on a 2-core CPU. The accuracy figures of the full recipe are in
benchmarks/sections/few_shot.md.
"""

import pickle
import re
import tracemalloc
import types

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from sktransfer import PretrainedFeatureExtractor
from sktransfer._few_shot import FewShotClassifier, PairSampler, _PairDataset, resolve_n_pairs
from conftest import IMAGE, TEXT

FAST = dict(max_length=48, batch_size=8, random_state=0)
TOPICS = ["business", "entertainment", "politics", "sports", "tech"]


@pytest.fixture(scope="module")
def split(bbc_small):
    """8 training and 12 test articles per topic (bbc_small has 20 of each)."""
    X, y = bbc_small
    X = [t[:200] for t in X]
    train = np.concatenate([np.flatnonzero(y == c)[:8] for c in TOPICS])
    test = np.setdiff1d(np.arange(len(y)), train)
    train = train[np.random.RandomState(0).permutation(len(train))]
    return [X[i] for i in train], y[train], [X[i] for i in test], y[test]


@pytest.fixture(scope="module")
def fitted(split):
    Xtr, ytr, _, _ = split
    return FewShotClassifier(TEXT, estimator=LogisticRegression(), n_pairs=16, **FAST).fit(Xtr, ytr)


@pytest.fixture(scope="module")
def tuned_test(fitted, split):
    return fitted.transform(split[2])


# --------------------------------------------------------------- learning
def test_default_pairs_grow_with_the_examples_up_to_a_cap():
    # n_pairs="auto": SetFit's 20 pairs per example, at most 1,024, so a CPU fit's cost is bounded.
    assert FewShotClassifier().get_params()["n_pairs"] == "auto"
    texts = ["the striker scored twice", "a late goal won the cup", "the coach praised his team",
             "shares fell sharply", "the bank raised interest rates", "profits beat forecasts"]
    clf = FewShotClassifier(TEXT, batch_size=30, max_length=16, random_state=0).fit(texts, ["s"] * 3 + ["b"] * 3)
    assert clf.n_pairs_ == 20 * 6
    assert clf.predict(["the goalkeeper saved a penalty"]).tolist() == ["s"]
    assert resolve_n_pairs("auto", 51) == 1020 and resolve_n_pairs("auto", 52) == 1024
    assert resolve_n_pairs("auto", 10_000) == 1024 and resolve_n_pairs(300, 10_000) == 300


def test_few_shot_learns_topics_from_8_examples(fitted, split, tuned_test):
    _, _, Xte, yte = split
    proba = fitted.predict_proba(Xte)
    assert proba.shape == (len(Xte), 5)
    np.testing.assert_allclose(proba.sum(1), 1, atol=1e-6)
    np.testing.assert_allclose(proba, fitted.estimator_.predict_proba(tuned_test), atol=1e-6)
    assert fitted.classes_.tolist() == TOPICS
    assert np.mean(fitted.classes_[proba.argmax(1)] == yte) > 0.6  # 5 topics: chance is 0.2
    np.testing.assert_array_equal(fitted.predict(Xte[:5]), fitted.classes_[proba[:5].argmax(1)])
    assert fitted.n_pairs_ == 16 and fitted.n_label_examples_ == 0
    assert len(fitted.history_) == 1 and np.isfinite(fitted.history_[-1, "train_loss"])


def test_tuning_changes_the_embeddings_and_they_feed_another_head(fitted, split, tuned_test):
    Xtr, ytr, Xte, yte = split
    tuned = tuned_test
    frozen = PretrainedFeatureExtractor(TEXT, max_length=48).fit_transform(Xte)
    assert tuned.shape == frozen.shape == (len(Xte), 384) and tuned.dtype == np.float32
    assert np.abs(tuned - frozen).max() > 1e-3
    # Still the same space, moved a little: rows stay close to where they were.
    cos = np.sum(tuned * frozen, 1) / np.linalg.norm(tuned, axis=1) / np.linalg.norm(frozen, axis=1)
    assert cos.mean() > 0.8
    svc = LinearSVC().fit(fitted.transform(Xtr), ytr)
    assert svc.score(tuned, yte) > 0.6


def test_random_state_makes_cpu_runs_repeatable(split):
    Xtr, ytr, Xte, _ = split
    X, y = Xtr[:12], ytr[:12]
    keep = np.isin(y, [c for c in TOPICS if np.sum(y == c) >= 2])
    X, y = [x for x, k in zip(X, keep) if k], y[keep]
    runs = [FewShotClassifier(TEXT, n_pairs=8, **FAST).fit(X, y).transform(Xte[:4]) for _ in range(2)]
    np.testing.assert_allclose(runs[0], runs[1], atol=1e-5)


def test_pickle_and_save_load_round_trip(fitted, split, tmp_path):
    _, _, Xte, _ = split
    expected = fitted.predict_proba(Xte[:6])
    np.testing.assert_allclose(pickle.loads(pickle.dumps(fitted)).predict_proba(Xte[:6]), expected, atol=1e-6)
    fitted.save(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["body.safetensors", "config.json", "head.skops", "manifest.json"]
    loaded = FewShotClassifier.load(tmp_path / "model")
    np.testing.assert_allclose(loaded.predict_proba(Xte[:6]), expected, atol=1e-5)
    assert loaded.get_params()["n_pairs"] == 16


def test_any_sklearn_classifier_as_head(split, tmp_path):
    from xgboost import XGBClassifier

    Xtr, ytr, Xte, _ = split
    clf = FewShotClassifier(TEXT, estimator=XGBClassifier(n_estimators=5, max_depth=2), n_pairs=2, **FAST).fit(Xtr, ytr)
    assert isinstance(clf.estimator_, XGBClassifier)
    assert set(clf.predict(Xte[:5])) <= set(TOPICS)  # string labels through an int-only head
    np.testing.assert_array_equal(clf.classes_[clf.predict_proba(Xte[:5]).argmax(1)], clf.predict(Xte[:5]))
    clf.save(tmp_path / "xgb")
    with pytest.raises(ValueError, match="trusted="):
        FewShotClassifier.load(tmp_path / "xgb")
    trusted = ["xgboost.core.Booster", "xgboost.sklearn.XGBClassifier"]
    loaded = FewShotClassifier.load(tmp_path / "xgb", trusted=trusted)
    np.testing.assert_array_equal(loaded.predict(Xte[:5]), clf.predict(Xte[:5]))
    # A head without predict_proba: the method is absent, as in sklearn.
    svc = FewShotClassifier(TEXT, estimator=LinearSVC(), n_pairs=2, **FAST)
    assert not hasattr(svc, "predict_proba") and hasattr(svc, "decision_function")


def test_label_names_allow_one_example_per_class(split):
    Xtr, ytr, Xte, yte = split
    one = [int(np.flatnonzero(ytr == c)[0]) for c in TOPICS]
    clf = FewShotClassifier(TEXT, init_from_labels=True, template="This article is about {}.", n_pairs=8, **FAST)
    clf.fit([Xtr[i] for i in one], ytr[one])
    assert clf.n_label_examples_ == 5
    assert clf.score(Xte[::3], yte[::3]) > 0.5


# ------------------------------------------------------------------ pairs
def test_pair_sampler_is_lazy_balanced_and_seeded():
    y = np.repeat(np.arange(10), 2_000)  # 20,000 labels: 4e8 possible pairs
    sampler = PairSampler(y, n_pairs=10_000, seed=0)
    stream = sampler.epoch(0)
    assert isinstance(stream, types.GeneratorType)
    tracemalloc.start()
    n_pos = n = 0
    for i, j, sim in stream:
        n += 1
        n_pos += sim == 1.0
        assert (y[i] == y[j]) == (sim == 1.0)
        assert i != j
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert n == 10_000 and n_pos == 5_000
    assert peak < 1_000_000  # flat: no list of pairs is ever built
    first = list(PairSampler(y, 20, seed=0).epoch(0))
    assert first == list(PairSampler(y, 20, seed=0).epoch(0))
    assert first != list(PairSampler(y, 20, seed=0).epoch(1))
    ds = _PairDataset(PairSampler(y, 20, seed=0))
    assert list(ds) == first and list(ds) != first  # each epoch draws new pairs


# -------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "X, y, params, match",
    [
        (["a", "b", "c", "d", "e"], ["x", "x", "y", "y", "z"], {}, r"single example: 'z' \(row 4\)"),
        (["a", "b", "c"], ["x", "y", "z"], {}, "3 classes but only 3 examples"),
        (["a", "b", "c"], ["x", "x", "x"], {}, "single class"),
        (["a", "b"], ["x", "x", "y"], {}, "different lengths"),
        (["a", "b", "c", "d"], [0, 0, 1, 1], {"init_from_labels": True}, "not text"),
        (["a", "b", "c", "d"], ["x", "x", "y", "y"], {"init_from_labels": True, "template": "about"}, "placeholder"),
        (["a", "b", "c", "d"], ["x", "x", "y", "y"], {"head": StandardScaler()}, "classifier"),
        (["a", "b", "c", "d"], ["x", "x", "y", "y"], {"n_pairs": 0}, "n_pairs"),
        (["a", "b", "c", "d"], ["x", "x", "y", "y"], {"lr": 0.0}, "lr"),
    ],
)
def test_bad_input_fails_clearly(X, y, params, match):
    with pytest.raises(ValueError, match=match):
        FewShotClassifier(TEXT, **params).fit(X, y)


@pytest.mark.parametrize(
    "name, value",
    [("warmup", 1.5), ("init_from_labels", "yes"), ("batch_size", 0), ("max_epochs", True), ("pooling", "max"),
     ("label_descriptions", ["a"]), ("image_size", 4), ("estimator", "logistic")],
)
def test_every_parameter_is_checked_against_the_declared_table(name, value):
    assert set(FewShotClassifier._parameter_constraints) == set(FewShotClassifier._get_param_names())
    with pytest.raises(ValueError, match=rf"'{name}' parameter of FewShotClassifier must be .*Got {re.escape(repr(value))}"):
        FewShotClassifier(TEXT, **{name: value}).fit(["a", "b", "c", "d"], ["x", "x", "y", "y"])


def test_label_init_needs_a_text_backbone():
    X = [np.zeros((8, 8, 3), np.uint8)] * 4
    with pytest.raises(ValueError, match="text backbone"):
        FewShotClassifier(IMAGE, init_from_labels=True).fit(X, ["cat", "cat", "dog", "dog"])


# ------------------------------------------------------------------ images
def test_image_backbone_trains_with_the_same_loss(fashion_small):
    X, y = fashion_small
    train = np.concatenate([np.flatnonzero(y == c)[:4] for c in np.unique(y)])
    test = np.setdiff1d(np.arange(len(y)), train)
    clf = FewShotClassifier(IMAGE, image_size=32, n_pairs=8, batch_size=8, random_state=0).fit(X[train], y[train])
    assert clf.modality_ == "image" and clf.transform(X[:3]).shape == (3, 1280)
    assert clf.score(X[test], y[test]) > 0.4  # 4 classes: chance is 0.25


def test_the_old_name_head_still_works_with_a_future_warning(split):
    from sklearn.linear_model import LogisticRegression

    Xtr, ytr = split[0], split[1]
    with pytest.warns(FutureWarning, match=r"renamed estimator=") as record:
        clf = FewShotClassifier(TEXT, head=LogisticRegression(C=3.0), n_pairs=2, **FAST).fit(Xtr, ytr)
    assert [w.filename for w in record if issubclass(w.category, FutureWarning)] == [__file__]
    assert clf.estimator_.C == 3.0
    with pytest.warns(FutureWarning, match="head_ was renamed estimator_"):
        assert clf.head_ is clf.estimator_
    with pytest.raises(ValueError, match="Give estimator= only"):
        FewShotClassifier(TEXT, head=LogisticRegression(), estimator=LogisticRegression()).fit(Xtr, ytr)

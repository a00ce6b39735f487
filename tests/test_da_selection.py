"""Choosing the domain adaptation without target labels: skada's scorers and
splitters around EmbeddingDAClassifier / DANNClassifier in GridSearchCV.

Data: 60 short review sentences (Sentiment Labelled Sentences), 30 from
Amazon (source, labelled) and 30 from IMDb (target, labels masked), embedded
once with the real all-MiniLM-L6-v2.
"""

import numpy as np
import pytest
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV

from sktransfer.adaptation import (
    UNSUPERVISED_SCORERS,
    DANNClassifier,
    EmbeddingDAClassifier,
    unsupervised_scorer,
)
from conftest import TEXT

with sklearn.config_context():  # a plain `import skada` switches metadata routing on globally
    pytest.importorskip("skada")

pytestmark = pytest.mark.usefixtures("one_thread")

GRID = {"adapter": [None, "coral", "subspace"], "estimator__C": [0.1, 1.0]}


@pytest.fixture(scope="module")
def reviews():
    from sktransfer import PretrainedFeatureExtractor
    from sktransfer.datasets import load_sentiment_sentences

    d = load_sentiment_sentences(domains=["amazon", "imdb"])
    dom, y = np.asarray(d.domain), np.asarray(d.target)
    rng = np.random.RandomState(0)
    idx = []
    for k in ("amazon", "imdb"):
        for c in (0, 1):
            cand = [i for i in np.flatnonzero((dom == k) & (y == c)) if len(d.data[i]) < 80]
            idx += list(rng.choice(cand, 15, replace=False))
    idx = np.asarray(idx)
    Z = PretrainedFeatureExtractor(TEXT, max_length=32, verbose=False).fit_transform([d.data[i] for i in idx])
    sd = np.where(dom[idx] == "amazon", 1, -2)
    return np.asarray(Z, dtype=np.float64), y[idx], sd


def _splitter():
    from skada.model_selection import SourceTargetShuffleSplit

    return SourceTargetShuffleSplit(n_splits=2, test_size=0.3, random_state=0)


def _search(scoring, X, y, sd, estimator=None, grid=GRID):
    est = estimator if estimator is not None else EmbeddingDAClassifier(estimator=LogisticRegression(max_iter=300))
    with sklearn.config_context(enable_metadata_routing=True):
        return GridSearchCV(est, grid, scoring=scoring, cv=_splitter(), error_score="raise").fit(
            X, y, sample_domain=sd
        )


@pytest.mark.parametrize("name", ["prediction_entropy", "dev", "importance_weighted"])
def test_selection_never_reads_target_labels(reviews, name):
    Z, y, sd = reviews
    tgt = sd < 0
    masked = np.where(tgt, -1, y)
    shuffled = y.copy()
    shuffled[tgt] = np.random.RandomState(1).permutation(y[tgt])
    flipped = np.where(tgt, 1 - y, y)
    kwargs = {"random_state": 0} if name == "dev" else {}  # DEV splits the source rows at random
    searches = [_search(unsupervised_scorer(name, **kwargs), Z, labels, sd) for labels in (masked, shuffled, flipped)]
    best = [s.best_params_ for s in searches]
    assert best[0] == best[1] == best[2]
    for s in searches[1:]:
        np.testing.assert_allclose(s.cv_results_["mean_test_score"], searches[0].cv_results_["mean_test_score"])
    # refit on all rows: the chosen adapter, fitted on source + target rows
    assert searches[0].best_estimator_.n_target_ == tgt.sum()
    assert searches[0].best_estimator_.adapter == best[0]["adapter"]


def test_circular_validation_refuses_unmasked_target_labels(reviews):
    # skada's circular validation insists on masked target labels (-1).
    Z, y, sd = reviews
    s = _search(unsupervised_scorer("circular"), Z, np.where(sd < 0, -1, y), sd, grid={"adapter": [None, "coral"]})
    assert s.best_params_["adapter"] in (None, "coral")
    with pytest.raises(ValueError, match="labels should be masked"):
        _search(unsupervised_scorer("circular"), Z, y, sd, grid={"adapter": ["coral"]})


def test_every_named_scorer_runs_in_one_search(reviews):
    Z, y, sd = reviews
    masked = np.where(sd < 0, -1, y)
    scoring = {n: unsupervised_scorer(n) for n in UNSUPERVISED_SCORERS}
    with sklearn.config_context(enable_metadata_routing=True):
        s = GridSearchCV(
            EmbeddingDAClassifier(estimator=LogisticRegression(max_iter=300)), {"adapter": [None, "coral"]},
            scoring=scoring, refit=False, cv=_splitter(), error_score="raise",
        ).fit(Z, masked, sample_domain=sd)
    for n in UNSUPERVISED_SCORERS:
        assert np.isfinite(s.cv_results_[f"mean_test_{n}"]).all(), n


def test_sample_domain_is_routed_to_fit_splitter_and_scorer(reviews):
    Z, y, sd = reviews
    masked = np.where(sd < 0, -1, y)
    seen = []
    routing_before = sklearn.get_config()["enable_metadata_routing"]  # skada's import may have set it already

    class Spy(EmbeddingDAClassifier):
        def fit(self, X, y, *, X_target=None, sample_domain=None):
            seen.append(("fit", None if sample_domain is None else np.unique(sample_domain).tolist()))
            return super().fit(X, y, X_target=X_target, sample_domain=sample_domain)

        def predict_proba(self, X, *, sample_domain=None, allow_source=False):
            seen.append(("predict_proba", None if sample_domain is None else np.unique(sample_domain).tolist()))
            return super().predict_proba(X, sample_domain=sample_domain, allow_source=allow_source)

    _search(unsupervised_scorer("prediction_entropy"), Z, masked, sd, Spy(), {"adapter": ["coral"]})
    fits = [d for m, d in seen if m == "fit"]
    assert len(fits) == 3 and all(d == [-2, 1] for d in fits)  # 2 folds + refit, both domains each time
    assert [d for m, d in seen if m == "predict_proba"] == [[-2], [-2]]  # the scorer asks about target rows
    # the global configuration is left as it was
    assert sklearn.get_config()["enable_metadata_routing"] is routing_before


def test_scorer_calls_with_skada_keywords(reviews):
    Z, y, sd = reviews
    clf = EmbeddingDAClassifier().fit(Z, np.where(sd < 0, -1, y), sample_domain=sd)
    src = sd > 0
    # source rows go through the adapter's source side only when allowed, as in skada
    with pytest.raises(ValueError, match="allow_source=True"):
        clf.predict_proba(Z[src], sample_domain=sd[src])
    p_src = clf.predict_proba(Z[src], sample_domain=sd[src], allow_source=True)
    assert p_src.shape == (src.sum(), 2)
    np.testing.assert_allclose(clf.predict_proba(Z[~src], sample_domain=sd[~src]), clf.predict_proba(Z[~src]))
    w = np.random.RandomState(0).rand(src.sum())
    acc = clf.score(Z[src], y[src], sample_weight=w, sample_domain=sd[src], allow_source=True)
    assert acc == pytest.approx(np.average(clf.classes_[p_src.argmax(1)] == y[src], weights=w))
    with pytest.raises(ValueError, match="one non-zero int domain id per row"):
        clf.predict(Z[:3], sample_domain=[0, -2, -2])


def test_clear_error_without_target_rows(reviews):
    Z, y, sd = reviews
    src = sd > 0
    # a search given only source rows (a plain K-fold: skada's SourceTargetShuffleSplit fails earlier, on its own)
    with sklearn.config_context(enable_metadata_routing=True):
        search = GridSearchCV(EmbeddingDAClassifier(), {"adapter": ["coral"]}, cv=2, error_score="raise")
        with pytest.raises(ValueError, match="marks no target rows"):
            search.fit(Z[src], y[src], sample_domain=sd[src])
    # sample_domain not passed to the search: the estimator says how to route it
    with sklearn.config_context(enable_metadata_routing=True):
        search = GridSearchCV(EmbeddingDAClassifier(), {"adapter": ["coral"]}, cv=2, error_score="raise")
        with pytest.raises(ValueError, match="pass sample_domain to the search's fit with metadata routing"):
            search.fit(Z, np.where(sd < 0, -1, y))
    with pytest.raises(ValueError, match="Unknown scorer 'entropy'"):
        unsupervised_scorer("entropy")


def test_dann_accepts_skada_scorers_in_a_search():
    # Tiny images (arrays: skada's scorers need numeric X), 1 epoch, two settings.
    from sklearn.datasets import load_digits

    from conftest import IMAGE

    d = load_digits()
    img = (d.images[:48] * 16).clip(0, 255).astype(np.uint8)
    X = np.concatenate([img[:24], 255 - img[24:]])
    sd = np.r_[np.ones(24, int), np.full(24, -2)]
    y = np.where(sd > 0, d.target[:48], -1)
    dann = DANNClassifier(IMAGE, image_size=32, batch_size=32, max_epochs=1, augment=False, random_state=0)
    s = _search(unsupervised_scorer("prediction_entropy"), X, y, sd, dann, {"domain_weight": [0.0, 1.0]})
    assert s.best_params_["domain_weight"] in (0.0, 1.0)
    assert np.isfinite(s.cv_results_["mean_test_score"]).all()
    assert s.best_estimator_.n_target_ == 24

"""Transferability scores and BackboneSelector.

Each score is checked against an independent, direct implementation of its
paper's formula (plain numpy/scipy, no SVD tricks) on small matrices, in
both shapes (n >> d and d >> n), and against values worked out by hand.
The selector runs on real backbones, on a few dozen small images.
"""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from sktransfer import PretrainedFeatureExtractor, embedding_stats, reset_embedding_stats
from sktransfer.selection import (
    BackboneSelector,
    SourceProbabilityExtractor,
    h_score,
    leep_score,
    logme_score,
    make_transferability_scorer,
    nce_score,
    regularized_h_score,
)
from conftest import IMAGE, TEXT, TV_IMAGE

FAST = {"image_size": 32, "batch_size": 64}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    rng = np.random.RandomState(0)
    idx = np.concatenate([rng.choice(np.flatnonzero(d.target == k), 6, replace=False) for k in range(10)])
    X = (d.images[idx] * 16).clip(0, 255).astype(np.uint8)
    return X, d.target[idx]


# ------------------------------------------------------ naive references
def naive_evidence(F, y, alpha, beta):
    """The paper's log evidence, with the D x D matrix A built explicitly."""
    n, D = F.shape
    A = alpha * np.eye(D) + beta * F.T @ F
    m = beta * np.linalg.solve(A, F.T @ y)
    _, logdet = np.linalg.slogdet(A)
    return (
        D / 2 * np.log(alpha) + n / 2 * np.log(beta) - n / 2 * np.log(2 * np.pi)
        - beta / 2 * np.sum((F @ m - y) ** 2) - alpha / 2 * m @ m - logdet / 2
    )


def naive_logme(F, targets):
    """max over (alpha, beta) of the evidence / n, by a generic optimiser."""
    from scipy.optimize import minimize

    n = F.shape[0]
    out = []
    for y in targets:
        best = -np.inf
        for start in ([0.0, 0.0], [3.0, -1.0], [-3.0, 2.0]):
            res = minimize(lambda p: -naive_evidence(F, y, np.exp(p[0]), np.exp(p[1])), start,
                           method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000})
            best = max(best, -res.fun)
        out.append(best / n)
    return float(np.mean(out))


def naive_h_score(F, y, pinv_rcond=1e-10):
    F = F - F.mean(0)
    G = np.zeros_like(F)
    for c in np.unique(y):
        G[y == c] = F[y == c].mean(0)
    cov_f = F.T @ F / len(F)
    cov_g = G.T @ G / len(F)
    return np.trace(np.linalg.pinv(cov_f, rcond=pinv_rcond) @ cov_g)


def naive_regularized_h_score(F, y, a):
    F = F - F.mean(0)
    n, d = F.shape
    G = np.zeros_like(F)
    for c in np.unique(y):
        G[y == c] = F[y == c].mean(0)
    cov_f = F.T @ F / n
    cov_a = (1 - a) * cov_f + a * np.trace(cov_f) / d * np.eye(d)
    return np.trace(np.linalg.inv(cov_a) @ ((1 - a) * G.T @ G / n))


def naive_leep(P, y):
    n, Z = P.shape
    labels = sorted(set(y))
    joint = {(c, z): sum(P[i, z] for i in range(n) if y[i] == c) / n for c in labels for z in range(Z)}
    pz = [sum(joint[(c, z)] for c in labels) for z in range(Z)]
    total = 0.0
    for i in range(n):
        total += np.log(sum(joint[(y[i], z)] / pz[z] * P[i, z] for z in range(Z)))
    return total / n


def naive_nce(z, y):
    n = len(y)
    h = 0.0
    for zv in set(z):
        for yv in set(y):
            pyz = sum(1 for a, b in zip(z, y) if a == zv and b == yv) / n
            pz = sum(1 for a in z if a == zv) / n
            if pyz > 0:
                h -= pyz * np.log(pyz / pz)
    return -h


# ------------------------------------------------------------------- LogME
@pytest.mark.parametrize("n, d", [(40, 5), (12, 30)], ids=["n>>d", "d>>n"])
def test_logme_classification_is_the_maximum_evidence(n, d):
    rng = np.random.RandomState(n)
    y = np.arange(n) % 3
    F = rng.randn(n, d) + 0.7 * y[:, None]
    expected = naive_logme(F, [(y == k).astype(float) for k in range(3)])
    assert logme_score(F, y) == pytest.approx(expected, rel=1e-6, abs=1e-8)


def test_logme_regression_and_string_labels():
    rng = np.random.RandomState(1)
    F = rng.randn(30, 4)
    Y = np.c_[F @ [1.0, -2.0, 0.5, 0.0] + 0.3 * rng.randn(30), rng.randn(30)]
    expected = naive_logme(F, [Y[:, 0], Y[:, 1]])
    assert logme_score(F, Y) == pytest.approx(expected, rel=1e-6)
    assert logme_score(F, Y[:, 0]) == pytest.approx(naive_logme(F, [Y[:, 0]]), rel=1e-6)
    labels = np.array(["b", "a", "c"])[np.arange(30) % 3]
    assert logme_score(F, labels) == pytest.approx(logme_score(F, np.arange(30) % 3))


def test_logme_extreme_shapes_are_finite_and_ordered():
    rng = np.random.RandomState(0)
    y = np.repeat([0, 1], 10_000)
    tall_good = rng.randn(20_000, 3) + y[:, None]
    tall_bad = rng.randn(20_000, 3)
    assert np.isfinite(logme_score(tall_good, y)) and logme_score(tall_good, y) > logme_score(tall_bad, y)
    y = np.repeat([0, 1], 10)
    wide_good = rng.randn(20, 5_000) * 0.1 + y[:, None]
    wide_bad = rng.randn(20, 5_000)
    assert np.isfinite(logme_score(wide_bad, y)) and logme_score(wide_good, y) > logme_score(wide_bad, y)
    # Rank-deficient features (duplicated columns, a zero column) stay exact.
    F = rng.randn(25, 3)
    F = np.c_[F, F, np.zeros(25)]
    yy = np.arange(25) % 2
    assert logme_score(F, yy) == pytest.approx(naive_logme(F, [(yy == k).astype(float) for k in (0, 1)]), rel=1e-6)


# ----------------------------------------------------------------- H-score
def test_h_score_hand_case():
    # f = [0, 2, 4, 6]: var 5; class means [1, 1, 5, 5]: var 4; H = 4 / 5.
    F = np.array([[0.0], [2.0], [4.0], [6.0]])
    assert h_score(F, ["a", "a", "b", "b"]) == pytest.approx(0.8)
    # Regularised, fixed shrinkage 0.5: cov_a = 0.5*5 + 0.5*5 = 5; H = 0.5*4/5.
    assert regularized_h_score(F, ["a", "a", "b", "b"], shrinkage=0.5) == pytest.approx(0.4)


def test_h_score_matches_formula_and_saturates_when_d_exceeds_n():
    rng = np.random.RandomState(0)
    y = np.arange(60) % 4
    F = rng.randn(60, 7) + 0.5 * y[:, None]
    assert h_score(F, y) == pytest.approx(naive_h_score(F, y), rel=1e-8)
    # d >= n - 1: the features separate any labelling, H = n_classes - 1.
    Fw = rng.randn(12, 40)
    yw = np.arange(12) % 3
    assert h_score(Fw, yw) == pytest.approx(2.0, rel=1e-8)
    assert naive_h_score(Fw, yw) == pytest.approx(2.0, rel=1e-6)


@pytest.mark.parametrize("n, d", [(50, 8), (10, 60)], ids=["n>>d", "d>>n"])
def test_regularized_h_score_matches_formula(n, d):
    from sklearn.covariance import LedoitWolf

    rng = np.random.RandomState(d)
    y = np.arange(n) % 2
    F = rng.randn(n, d) + y[:, None]
    a = LedoitWolf().fit(F).shrinkage_
    assert regularized_h_score(F, y) == pytest.approx(naive_regularized_h_score(F, y, a), rel=1e-8)
    assert regularized_h_score(F, y, shrinkage=0.3) == pytest.approx(naive_regularized_h_score(F, y, 0.3), rel=1e-8)
    if d > n:  # unlike the plain H-score, it still tells signal from noise
        assert regularized_h_score(F, y) > regularized_h_score(rng.randn(n, d), y)


# ------------------------------------------------------------ LEEP and NCE
def test_leep_hand_case_and_formula():
    # P(y|z) = [[.85, .15], [.15, .85]]: EEP = .78, .71, .78, .71.
    P = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8]])
    assert leep_score(P, ["cat", "cat", "dog", "dog"]) == pytest.approx((np.log(0.78) + np.log(0.71)) / 2)
    rng = np.random.RandomState(0)
    P = rng.dirichlet(np.ones(6), size=30)
    y = list(rng.randint(0, 3, 30))
    assert leep_score(P, y) == pytest.approx(naive_leep(P, y), rel=1e-10)


def test_nce_hand_case_and_formula():
    # P(a,0)=P(b,0)=1/4, P(b,1)=1/2: H(Y|Z) = 1/2 log 2.
    assert nce_score([0, 0, 1, 1], ["a", "b", "b", "b"]) == pytest.approx(-0.5 * np.log(2))
    rng = np.random.RandomState(1)
    z, y = list(rng.randint(0, 5, 40)), list(rng.randint(0, 3, 40))
    assert nce_score(z, y) == pytest.approx(naive_nce(z, y), rel=1e-10)
    P = rng.dirichlet(np.ones(5), size=40)
    assert nce_score(P, y) == pytest.approx(naive_nce(list(P.argmax(1)), y))


# ---------------------------------------------------------------- bad input
SCORES = [
    ("logme", lambda F, y: logme_score(F, y)),
    ("hscore", lambda F, y: h_score(F, y)),
    ("regularized_hscore", lambda F, y: regularized_h_score(F, y)),
    ("leep", lambda F, y: leep_score(np.abs(F) / np.abs(F).sum(1, keepdims=True), y)),
    ("nce", lambda F, y: nce_score(F.argmax(1), y)),
]


@pytest.mark.parametrize("name, fn", SCORES, ids=[s[0] for s in SCORES])
def test_scores_reject_a_single_class(name, fn):
    F = np.random.RandomState(0).rand(10, 3) + 0.1
    with pytest.raises(ValueError, match="single class"):
        fn(F, ["a"] * 10)


@pytest.mark.parametrize("fn", [logme_score, h_score, regularized_h_score, leep_score])
def test_scores_name_the_row_with_nan(fn):
    F = np.full((6, 3), 1 / 3)
    F[4, 1] = np.nan
    with pytest.raises(ValueError, match="Row 4 of .* NaN"):
        fn(F, [0, 1] * 3)


@pytest.mark.parametrize("name, fn", SCORES, ids=[s[0] for s in SCORES])
def test_scores_reject_mixed_and_continuous_labels(name, fn):
    F = np.random.RandomState(0).rand(6, 3) + 0.1
    with pytest.raises(ValueError, match=r"mixes label types: row 0 is a string \('a'\), row 1 is a number"):
        fn(F, ["a", 1, "a", 1, "a", 1])
    if name != "logme":  # LogME reads continuous targets as a regression
        with pytest.raises(ValueError, match="continuous"):
            fn(F, [0.1, 0.7, 1.3, 2.2, 0.4, 0.9])


def test_scores_other_bad_input():
    F = np.random.RandomState(0).randn(6, 3)
    with pytest.raises(ValueError, match="6 rows of features"):
        logme_score(F, [0, 1, 0])
    with pytest.raises(ValueError, match="Row 2 of y is missing"):
        h_score(F, [0, 1, None, 1, 0, 1])
    with pytest.raises(ValueError, match="not logits"):
        leep_score(F, [0, 1] * 3)
    with pytest.raises(ValueError, match="2-D"):
        logme_score(F[:, 0], [0, 1] * 3)
    with pytest.raises(ValueError, match="task must be"):
        logme_score(F, [0, 1] * 3, task="ranking")
    with pytest.raises(ValueError, match="shrinkage"):
        regularized_h_score(F, [0, 1] * 3, shrinkage=1.5)
    with pytest.raises(ValueError, match="Unknown transferability metric"):
        make_transferability_scorer("accuracy")


# ------------------------------------------------------------------ scorer
def test_scorer_on_a_fitted_transformer_and_in_grid_search(digits):
    X, y = digits
    Xf = X.reshape(len(X), -1).astype(float)
    scorer = make_transferability_scorer("logme")
    assert scorer(PCA(8).fit(Xf), Xf, y) == pytest.approx(logme_score(PCA(8).fit_transform(Xf), y))
    assert "logme" in repr(scorer)
    # Choose a layer of a frozen backbone without training anything.
    grid = GridSearchCV(
        PretrainedFeatureExtractor(IMAGE, **FAST),
        {"layer": [1, None]},
        scoring=make_transferability_scorer("regularized_hscore"),
        cv=StratifiedKFold(2),
        refit=False,
    ).fit(X, y)
    # Each cell is the score of that layer's features on that fold's rows.
    _, test0 = next(StratifiedKFold(2).split(X, y))
    Z0 = PretrainedFeatureExtractor(IMAGE, **FAST).fit(X[test0]).transform(X[test0])
    assert grid.cv_results_["split0_test_score"][1] == pytest.approx(regularized_h_score(Z0, y[test0]), rel=1e-5)


# ------------------------------------------------- source probabilities
@pytest.mark.parametrize("backbone", [IMAGE, TV_IMAGE])
def test_source_probabilities_come_from_the_pretrained_head(backbone):
    # ImageNet class 698 is "palace": the sample photo china.jpg shows one.
    from sklearn.datasets import load_sample_image

    photo = load_sample_image("china.jpg")
    ext = SourceProbabilityExtractor(backbone).fit([photo])
    P = ext.transform([photo, photo[::-1]])
    assert P.shape == (2, 1000) and ext.n_source_classes_ == 1000
    np.testing.assert_allclose(P.sum(1), 1.0, rtol=1e-9)
    assert P[0].argmax() == 698


def test_source_probabilities_reject_text_backbones():
    with pytest.raises(ValueError, match="no source classifier"):
        SourceProbabilityExtractor(TEXT).fit(np.zeros((2, 8, 8), np.uint8))


# ---------------------------------------------------------------- selector
def test_selector_ranks_reports_failures_and_refits(digits, cache_dir, tmp_path):
    X, y = digits
    sel = BackboneSelector(
        [IMAGE, (IMAGE, 1), {"backbone": TV_IMAGE, "name": "mobilenet"}, "timm/not_a_real_model_xyz"],
        confirm_top_k=2, cv=3, cache=cache_dir, extractor_params=FAST,
    ).fit(X, y)
    r = sel.ranking_
    assert list(r.columns) == ["candidate", "backbone", "layer", "score", "probe_score", "seconds",
                               "embed_seconds", "score_seconds", "probe_seconds", "rank", "error"]
    failed = r[r.candidate == "timm/not_a_real_model_xyz"].iloc[0]
    assert "Unknown timm model" in failed.error and np.isnan(failed.score) and failed["rank"] is pd_NA()
    ok = r[r.error.isna()]
    assert len(ok) == 3 and np.isfinite(ok.score).all() and list(ok["rank"]) == [1, 2, 3]
    assert ok.probe_score.notna().sum() == 2 and r.iloc[0].candidate == sel.best_candidate_
    assert r.loc[r.candidate == f"{IMAGE} [layer 1]", "layer"].iloc[0] == 1
    # The refit pipeline is the chosen extractor + head.
    best = sel.best_estimator_
    assert best[0].backbone == sel.best_backbone_ and best[0].layer == sel.best_layer_
    np.testing.assert_array_equal(sel.predict(X[:5]), best.predict(X[:5]))
    np.testing.assert_array_equal(sel.predict_proba(X[:5]), best.predict_proba(X[:5]))
    assert sel.score(X, y) == best.score(X, y)
    assert list(sel.classes_) == list(range(10))
    path = tmp_path / "ranking.png"
    sel.plot_ranking(path=str(path))
    assert path.stat().st_size > 1000
    # A second fit with the same cache embeds nothing again.
    reset_embedding_stats()
    clone(sel).set_params(confirm_top_k=0).fit(X, y)
    assert embedding_stats()["computed"] == 0


def pd_NA():
    import pandas as pd

    return pd.NA


def test_selector_leep_scores_source_heads_and_rejects_layers(digits):
    X, y = digits
    sel = BackboneSelector([IMAGE, (IMAGE, 2)], metric="leep", extractor_params=FAST).fit(X, y)
    r = sel.ranking_.set_index("candidate")
    assert r.loc[IMAGE, "score"] < 0 and "intermediate layer" in r.loc[f"{IMAGE} [layer 2]", "error"]
    # LEEP scores the source head's probabilities, but the refit head reads the features.
    assert sel.best_backbone_ == IMAGE
    features = PretrainedFeatureExtractor(IMAGE, **FAST).fit(X).transform(X[:2])
    np.testing.assert_allclose(sel.transform(X[:2]), features, atol=1e-5)


def test_selector_on_text_layers(bbc_small):
    texts, y = bbc_small
    texts, y = [t[:200] for t in texts[::2]], y[::2]
    sel = BackboneSelector([TEXT, (TEXT, 2)], refit=False, extractor_params={"max_length": 48}).fit(texts, y)
    assert sel.ranking_["error"].isna().all() and not hasattr(sel, "best_estimator_")
    best = PretrainedFeatureExtractor(TEXT, layer=sel.best_layer_, max_length=48).fit(texts)
    np.testing.assert_allclose(sel.transform(texts[:2]), best.transform(texts[:2]), atol=1e-5)
    with pytest.raises(AttributeError) as exc:
        sel.predict(texts[:2])
    assert "refit=False" in str(exc.value.__cause__)
    assert not hasattr(sel, "predict_proba")


def test_selector_when_every_candidate_fails(digits):
    X, y = digits
    with pytest.raises(ValueError, match="All 2 candidates failed.*not_a_model_a"):
        BackboneSelector(["timm/not_a_model_a", "timm/not_a_model_b"]).fit(X, y)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"candidates": []}, "empty"),
        ({"candidates": "timm/x"}, "list of candidates"),
        ({"candidates": [("timm/x", 1, 2)]}, r"candidates\[0\] is a tuple"),
        ({"candidates": [{"backbone": "timm/x", "lr": 1}]}, r"candidates\[0\] has keys.*lr"),
        ({"candidates": [{"layer": 1}]}, "without a 'backbone'"),
        ({"candidates": [3]}, r"candidates\[0\] is a int"),
        ({"candidates": ["timm/x", "timm/x"]}, "unique"),
        ({"candidates": ["timm/x"], "metric": "auc"}, r"'metric' parameter of BackboneSelector must be a str among .*'logme'.* Got 'auc'"),
        ({"candidates": ["timm/x"], "confirm_top_k": -1}, "confirm_top_k"),
        ({"candidates": ["timm/x"], "extractor_params": {"layer": 2}}, "may not set"),
    ],
)
def test_selector_bad_parameters_are_named(params, match):
    X = np.zeros((4, 8, 8), np.uint8)
    with pytest.raises(ValueError, match=match):
        BackboneSelector(**params).fit(X, [0, 1, 0, 1])


def test_selector_checks_y_before_loading_any_model():
    X = np.zeros((4, 8, 8), np.uint8)
    with pytest.raises(ValueError, match="single class"):
        BackboneSelector(["timm/would_fail_to_load"]).fit(X, ["a"] * 4)
    with pytest.raises(ValueError, match="different lengths"):
        BackboneSelector(["timm/would_fail_to_load"]).fit(X, [0, 1])


@pytest.mark.parametrize(
    "params, y, match",
    [
        # LogME scores continuous targets, but the default head is a classifier.
        ({}, [0.1, 0.7, 1.3, 2.2], r"y is continuous.*LogisticRegression is a classifier.*estimator=Ridge\(\)"),
        ({"metric": "hscore"}, [0.1, 0.7, 1.3, 2.2], r"y is continuous.*metric='hscore' scores class labels"),
        ({"metric": "leep"}, [0.1, 0.7, 1.3, 2.2], r"y is continuous.*metric='leep' scores class labels"),
        ({"metric": "hscore", "head": "ridge"}, [0.1, 0.7, 1.3, 2.2], "metric='hscore' scores class labels.*regressor"),
        ({}, ["a", 1, "a", 1], r"y mixes label types: row 0 is a string \('a'\), row 1 is a number"),
        ({}, ["a", "b", None, "a"], "Row 2 of y is missing"),
        ({"head": "ridge"}, [0.5, np.nan, 1.0, 2.0], "Row 1 of y"),
        ({"head": "ridge"}, ["a", "b", "a", "b"], "numeric targets"),
    ],
    ids=["continuous-logme", "continuous-hscore", "continuous-leep", "hscore-regressor", "mixed", "missing",
         "regression-nan", "regression-strings"],
)
def test_selector_validates_y_for_its_task_before_loading_any_model(params, y, match):
    from sklearn.linear_model import Ridge

    if params.get("head") == "ridge":
        params = {**params, "head": Ridge()}
    X = np.zeros((4, 8, 8), np.uint8)
    with pytest.raises(ValueError, match=match):
        BackboneSelector(["timm/would_fail_to_load"], **params).fit(X, y)


def test_selector_with_a_regressor_head_ranks_by_regression_logme(digits):
    from sklearn.linear_model import Ridge

    X, y = digits
    # Whole-number targets: with a regressor head they are values, not classes.
    targets = y.astype(np.float64)
    sel = BackboneSelector([IMAGE], estimator=Ridge(), extractor_params=FAST).fit(X, targets)
    Z = sel.transform(X)
    assert sel.best_score_ == pytest.approx(logme_score(Z, targets, task="regression"))
    assert sel.best_score_ != pytest.approx(logme_score(Z, targets, task="classification"))
    np.testing.assert_allclose(sel.predict(X[:5]), Ridge().fit(Z, targets).predict(Z[:5]), atol=1e-3)
    assert not hasattr(sel, "classes_")


def test_the_old_name_head_still_works_with_a_future_warning():
    from sklearn.linear_model import LogisticRegression

    sel = BackboneSelector([IMAGE], head=LogisticRegression(C=2.0))
    with pytest.warns(FutureWarning, match=r"renamed estimator="):
        assert sel._check_params()
    assert sel._estimator().C == 2.0
    with pytest.raises(ValueError, match="Give estimator= only"):
        BackboneSelector([IMAGE], head=LogisticRegression(), estimator=LogisticRegression())._check_params()

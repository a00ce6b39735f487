"""AutoTransferClassifier: strategy search by successive halving, on a real backbone.

Short BBC texts (200 characters, max_length=64) and all-MiniLM-L6-v2; the
trained candidates are shrunk (16 pairs, one epoch) so the module runs in
well under a minute and a half on a shared 2-core CPU.
"""

import copy
import doctest
import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV

from sktransfer import AutoTransferClassifier, embedding_stats, reset_embedding_stats
from sktransfer import _auto
from conftest import TEXT

FAST = [
    {"strategy": "probe", "C": 0.1},
    {"strategy": "probe", "C": 10.0},
    {"strategy": "few_shot", "n_pairs": 16},
    {"strategy": "full", "max_epochs": 1, "batch_size": 32},
]
COLUMNS = ["rank", "strategy", "backbone", "params", "iter", "n_resources", "mean_score", "std_score",
           "fit_seconds", "total_seconds", "status"]


@pytest.fixture(scope="module")
def texts(bbc, one_thread):
    """16 articles per topic (80), the first 200 characters of each."""
    rng = np.random.RandomState(0)
    idx = np.concatenate([rng.choice(np.flatnonzero(bbc.target == k), 16, replace=False) for k in range(5)])
    return [bbc.data[i][:200] for i in idx], np.asarray(bbc.target_names)[bbc.target[idx]]


@pytest.fixture(scope="module")
def small(texts):
    """8 per topic (40)."""
    X, y = texts
    keep = np.concatenate([np.flatnonzero(y == c)[:8] for c in np.unique(y)])
    return [X[i] for i in keep], y[keep]


@pytest.fixture(scope="module")
def auto(texts):
    # cv=2, factor=2: 40 training rows per fold, two rounds (20 then 40 rows).
    X, y = texts
    return AutoTransferClassifier(TEXT, candidates=FAST, cv=2, factor=2, max_length=64, random_state=0).fit(X, y)


def test_picks_the_best_of_the_last_round(auto, texts):
    res = auto.cv_results_
    assert auto.n_resources_ == [20, 40] and auto.n_candidates_ == [4, 2]
    last = np.flatnonzero(res["iter"] == res["iter"].max())
    scores = np.asarray(res["mean_test_score"])
    assert auto.best_index_ in last
    assert auto.best_score_ == pytest.approx(np.nanmax(scores[last]))
    p = res["params"][auto.best_index_]
    assert auto.best_strategy_ == p["strategy"] and auto.best_params_ == {"strategy": p["strategy"], **p["settings"]}
    # Every candidate was scored in the first round, cheapest (the probes) first.
    first = np.flatnonzero(res["iter"] == 0)
    assert [res["params"][i]["strategy"] for i in first][:2] == ["probe", "probe"]
    assert np.isfinite(scores[first]).all()
    X, y = texts[0][::4], texts[1][::4]
    pred = auto.predict(X)
    np.testing.assert_array_equal(pred, auto.best_estimator_.predict(X))
    np.testing.assert_allclose(auto.predict_proba(X[:5]), auto.best_estimator_.predict_proba(X[:5]))
    np.testing.assert_array_equal(auto.classes_, np.unique(texts[1]))
    assert auto.score(X, y) == pytest.approx(np.mean(pred == y))


def test_leaderboard(auto):
    board = auto.leaderboard_
    assert list(board.columns) == COLUMNS
    assert len(board) == len(FAST) and board["rank"].tolist() == [1, 2, 3, 4]
    top = board.iloc[0]
    assert top["strategy"] == auto.best_strategy_ and top["mean_score"] == pytest.approx(auto.best_score_)
    # Halving's order: the last round's candidates first, each group by score.
    key = list(zip(-board["iter"], -board["mean_score"], board["fit_seconds"]))
    assert key == sorted(key)
    assert (board["status"] == "ok").all() and (board["total_seconds"] > 0).all()
    assert set(board["strategy"]) == {"probe", "few_shot", "full"}


def test_plot_leaderboard(auto):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = auto.plot_leaderboard()
    assert len(ax.patches) == len(FAST)
    _, ax2 = plt.subplots()
    assert auto.plot_leaderboard(ax=ax2) is ax2
    plt.close("all")


def test_clone_and_pickle(auto, texts):
    X, _ = texts
    fresh = clone(auto)
    assert fresh.get_params() == auto.get_params() and not hasattr(fresh, "best_estimator_")
    back = pickle.loads(pickle.dumps(auto))
    np.testing.assert_array_equal(back.predict(X[:10]), auto.predict(X[:10]))
    assert back.leaderboard_.equals(auto.leaderboard_)


def test_not_fitted():
    est = AutoTransferClassifier(TEXT)
    for method in (est.predict, est.predict_proba):
        with pytest.raises(NotFittedError):
            method(["a text"])
    with pytest.raises(NotFittedError):
        est.plot_leaderboard()


@pytest.mark.parametrize(
    "params, match",
    [
        ({"budget_s": -1}, "budget_s"),
        ({"budget_s": 0}, "budget_s"),
        ({"budget_s": float("nan")}, "budget_s"),
        ({"cv": 1}, "cv must be at least 2"),
        ({"cv": "five"}, "cv must be"),
        ({"backbone": []}, "backbone is an empty list"),
        ({"backbone": [TEXT, TEXT]}, "backbone lists"),
        ({"factor": 1}, "factor"),
        ({"n_backbones": 0}, "n_backbones"),
        ({"candidates": []}, "candidates is an empty list"),
        ({"candidates": [{"strategy": "magic"}]}, r"candidates\[0\] has strategy='magic'"),
        ({"candidates": [{"strategy": "probe", "n_pairs": 4}]}, r"candidates\[0\].*n_pairs"),
        ({"candidates": [{"strategy": "full", "backbone": "x"}]}, "set by AutoTransferClassifier"),
    ],
)
def test_bad_params_name_the_parameter(params, match):
    # Checked at fit, before any model is loaded.
    with pytest.raises(ValueError, match=match):
        AutoTransferClassifier(**{"backbone": TEXT, **params}).fit(["a", "b", "c", "d"], [0, 1, 0, 1])


def test_tiny_budget_keeps_the_probe_only(small, cache_dir):
    X, y = small
    est = AutoTransferClassifier(TEXT, candidates=[FAST[0], FAST[2], FAST[3]], budget_s=1e-3, cv=2,
                                 max_length=64, cache=cache_dir, random_state=0).fit(X, y)
    board = est.leaderboard_.set_index("strategy")
    assert est.best_strategy_ == "probe" and est.budget_exhausted_
    assert board.loc["probe", "status"] == "ok"
    assert all(s.startswith("over budget: ") for s in board.loc[["few_shot", "full"], "status"])
    assert np.isnan(board.loc[["few_shot", "full"], "mean_score"]).all()
    assert est.predict(X[:3]).shape == (3,)


def test_budget_drops_what_does_not_fit(small, monkeypatch):
    # Measured costs decide: with 40 s left and a candidate timed at 20 s a
    # fold, its remaining fold and its refit (40 s on twice the rows) don't fit.
    log = _auto._SearchLog(deadline=_auto.time.monotonic() + 40, n_splits=2, n_total=40)
    log.record("probe | m | C=1", "probe", {}, 20, 20, 0.02)  # 1 ms per input
    # Backbone "m"'s rates were not measured: the probe's seconds per input stand for a forward.
    assert log.rates_for("few_shot | m | defaults")["forward"] == pytest.approx(1e-3)
    assert log.estimate("few_shot | m | defaults", "few_shot", {}, 20) == pytest.approx(
        1e-3 * _auto._prior_forwards("few_shot", {}, 20))
    assert log.check("few_shot | m | defaults", "few_shot", {}, 20, 20) is None
    log.record("full | m | defaults", "full", {}, 20, 20, 20.0)
    assert log.check("full | m | defaults", "full", {}, 20, 20).startswith("over budget")
    # The trained candidate's measured/expected ratio now calibrates the prior of the others.
    ratio = 20.0 / (1e-3 * _auto._prior_forwards("full", {}, 20))
    assert log.correction() == pytest.approx(ratio)
    assert log.estimate("lora | m | defaults", "lora", {}, 20) == pytest.approx(
        ratio * 1e-3 * _auto._prior_forwards("lora", {}, 20))
    assert log.check("probe | m | C=1", "probe", {}, 20, 20) is None  # the probe always runs


# Rates as _measure_rates gives them (seconds per input; MiniLM on a loaded CPU thread).
RATES = {"forward": 0.05, "train": 0.15, "train_all": 0.2, "load": 1.0, "groups": 8}


def test_untimed_estimate_comes_from_measured_rates_not_the_probe():
    # The probe's first fit holds the backbone's load and the first
    # embedding's overheads (3 to 19 s for 89 short texts on the suite's
    # loaded CPU): its seconds per input, scaled, called every trained
    # candidate "over budget" at N = 200. Measured rates decide now.
    log = _auto._SearchLog(deadline=_auto.time.monotonic() + 300, n_splits=3, n_total=400)
    log.rates["m"] = RATES
    log.record("probe | m | C=1", "probe", {}, 89, 89, 15.0)
    for strategy in ("few_shot", "lora", "partial", "full"):
        key = f"{strategy} | m | defaults"
        assert log.estimate(key, strategy, {}, 89) == pytest.approx(_auto._prior_seconds(strategy, {}, 89, RATES))
    # few-shot: 64 steps (n_pairs="auto": 20 x 89 pairs, capped at 1,024) of at most 32 texts,
    # then the head's embeddings; with fewer rows, fewer pairs.
    assert _auto._prior_seconds("few_shot", {}, 89, RATES) == pytest.approx(1.0 + 64 * 32 * 0.15 + 89 * 0.05)
    assert _auto._prior_seconds("few_shot", {}, 10, RATES) == pytest.approx(1.0 + 13 * 10 * 0.15 + 10 * 0.05)
    # full fine-tuning: load, LP-FT's embedding pass, 5 epochs of steps training every weight.
    assert _auto._prior_seconds("full", {}, 89, RATES) == pytest.approx(1.0 + 89 * 0.05 + 5 * 89 * 0.2)
    # partial: the backward of the top 2 of 8 block groups only.
    partial = 1.0 + 89 * 0.05 + 5 * 89 * (0.05 + 0.1 * 2 / 8)
    assert _auto._prior_seconds("partial", {}, 89, RATES) == pytest.approx(partial)
    # It scales with epochs and pairs.
    full = _auto._prior_seconds("full", {}, 89, RATES)
    assert _auto._prior_seconds("full", {"max_epochs": 10}, 89, RATES) > 1.9 * full
    assert (_auto._prior_seconds("few_shot", {"n_pairs": 2048}, 89, RATES)
            > 1.8 * _auto._prior_seconds("few_shot", {}, 89, RATES))
    # The ordering of the first round is unchanged: the same model in forward passes.
    assert _auto._prior_forwards("full", {}, 10) == pytest.approx(10 + 5 * 10 * 3)


def test_own_times_extrapolate_along_the_cost_model():
    # Few-shot's pairs do not grow with the rows: 50 s on 89 rows is not
    # 225 s on 400 (the old linear extrapolation, which put its refit over
    # budget); fine-tuning's steps do.
    log = _auto._SearchLog(deadline=_auto.time.monotonic() + 300, n_splits=3, n_total=400)
    log.rates["m"] = RATES
    log.record("few_shot | m | defaults", "few_shot", {}, 89, 89, 50.0)
    refit = log.estimate("few_shot | m | defaults", "few_shot", {}, 400)
    assert 50.0 < refit < 1.3 * 50.0
    log.record("full | m | defaults", "full", {}, 89, 89, 100.0)
    full = log.estimate("full | m | defaults", "full", {}, 400)
    assert 3.5 * 100.0 < full < 400 / 89 * 100.0  # linear but for the load, counted once
    # Its two folds left (100 s) and its refit (~60 s) fit in 230 s; with the old linear refit (225 s) they did not.
    log = _auto._SearchLog(deadline=_auto.time.monotonic() + 230, n_splits=3, n_total=400)
    log.rates["m"] = RATES
    log.record("few_shot | m | defaults", "few_shot", {}, 89, 89, 50.0)
    assert log.check("few_shot | m | defaults", "few_shot", {}, 89, 89) is None


def test_measured_rates_follow_the_inputs(one_thread):
    # Measured here and now on the search's own rows: longer texts cost more per input
    # (4 tokens against 128; the best of three forwards, as the CPU may be shared).
    short = ["good", "bad film", "fine", "awful"]
    long = [" ".join(["the plot moves slowly but the acting is very good"] * 12)] * 4
    rates = _auto._measure_rates(TEXT, short, max_length=128, batch_size=4, random_state=0)
    assert set(rates) == {"forward", "train", "train_all", "load", "groups"}
    assert rates["groups"] >= 2 and rates["forward"] <= rates["train"] <= rates["train_all"]
    fwd_short, fwd_long = (
        min(_auto._measure_rates(TEXT, X, max_length=128, batch_size=4, forward_only=True)["forward"]
            for _ in range(3))
        for X in (short, long)
    )
    assert fwd_long > 2 * fwd_short


def test_first_trained_candidate_measures_the_rates(monkeypatch):
    # With a deadline, the first trained candidate of a backbone measures its
    # rates on its rows (once); a backbone that cannot be measured falls back.
    calls, slower = [], {"by": 1.0}

    def measure(backbone, X, forward_only=False, **kw):
        calls.append((backbone, forward_only))
        return {"forward": RATES["forward"] * slower["by"]} if forward_only else dict(RATES)

    monkeypatch.setattr(_auto, "_measure_rates", measure)
    monkeypatch.setattr(_auto, "build_estimator", lambda *a, **k: _Fake())
    log = _auto._SearchLog(deadline=_auto.time.monotonic() + 1e4, n_splits=2, n_total=16)
    monkeypatch.setitem(_auto._SEARCHES, "t", log)
    X, y = [f"text {i}" for i in range(16)], np.array([0, 1] * 8)
    _auto._Candidate("probe", {}, "m", search="t").fit(X, y)
    assert calls == []  # the probe measures nothing
    for strategy in ("few_shot", "full"):
        _auto._Candidate(strategy, {}, "m", max_samples=8, search="t").fit(X, y)
    assert calls == [("m", False)] and log.rates["m"] == RATES
    # The next round re-times the forward only; a machine twice as slow doubles every rate,
    # and the estimates from the candidates' own fits follow.
    log.fits["full | m | defaults"], log.fit_rates["full | m | defaults"] = [(8, 8, 10.0)], [RATES]
    before = log.estimate("full | m | defaults", "full", {}, 16)
    slower["by"] = 2.0
    _auto._Candidate("full", {}, "m", max_samples=16, search="t").fit(X, y)
    assert calls[1:] == [("m", True)]
    assert log.rates["m"]["train_all"] == pytest.approx(2 * RATES["train_all"])
    assert log.estimate("full | m | defaults", "full", {}, 16) == pytest.approx(2 * before)

    def fail(backbone, X, **kw):
        raise OSError("no such model")

    monkeypatch.setattr(_auto, "_measure_rates", fail)
    _auto._Candidate("full", {}, "other", search="t").fit(X, y)
    assert log.rates["other"] is None and log.rates_for("full | other | defaults")["forward"] > 0


def test_one_cache_for_the_search(small, cache_dir):
    # Two probes × 2 folds, the test folds and the refit: each text embedded once.
    X, y = small
    est = AutoTransferClassifier(TEXT, candidates=FAST[:2], cv=2, max_length=64, cache=cache_dir)
    before = copy.deepcopy(est.get_params())
    reset_embedding_stats()
    assert est.fit(X, y) is est
    assert embedding_stats()["computed"] == len(set(X))
    assert est.get_params() == before  # fit leaves the parameters alone


def test_backbone_list_is_ranked_first(small, cache_dir):
    X, y = small
    est = AutoTransferClassifier(["no-such/model-xyz", TEXT], candidates=FAST[:1], cv=2, max_length=64,
                                 cache=cache_dir, random_state=0).fit(X, y)
    assert est.backbones_ == [TEXT] and est.best_backbone_ == TEXT
    ranking = est.backbone_ranking_.set_index("candidate")
    assert ranking.loc["no-such/model-xyz", "error"] is not None


def test_grid_search_around_it(small, cache_dir):
    X, y = small
    inner = AutoTransferClassifier(TEXT, candidates=FAST[:1], cv=2, max_length=64, cache=cache_dir, random_state=0)
    gs = GridSearchCV(inner, {"candidates": [FAST[:1], FAST[1:2]]}, cv=2).fit(X, y)
    assert gs.best_estimator_.best_strategy_ == "probe"
    assert gs.predict(X[:4]).shape == (4,)


def test_docstring_example_runs():
    results = doctest.testmod(_auto, optionflags=doctest.ELLIPSIS)
    assert results.failed == 0 and results.attempted > 0


# ------------------------------------------------- review fixes (H2)
def test_stratified_subset_never_exceeds_max_samples():
    # 90/10: the minority's floor of 2 used to push m=10 to 11 rows (m=20 on 5 classes to more).
    y = np.array([0] * 90 + [1] * 10)
    for m in range(4, 100):
        idx = _auto._stratified_subset(y, m, 0)
        assert len(idx) == m and len(np.unique(idx)) == m
        assert np.bincount(y[idx], minlength=2).min() >= 2
    y5 = np.repeat(np.arange(5), [60, 10, 10, 10, 10])
    for m in (10, 11, 20, 33):
        idx = _auto._stratified_subset(y5, m, 0)
        assert len(idx) == m and np.bincount(y5[idx]).min() >= 2
    # The floors alone over m: the floors are used (2 of each class).
    idx = _auto._stratified_subset(y5, 7, 0)
    np.testing.assert_array_equal(np.bincount(y5[idx]), [2] * 5)


def test_rows_used_are_reported(monkeypatch):
    # A candidate's fit on a subset records the rows it really used; the
    # search reports those (here the floors, 6 rows for max_samples=4).
    log = _auto._SearchLog(deadline=None, n_splits=2, n_total=30)
    monkeypatch.setitem(_auto._SEARCHES, "t", log)
    monkeypatch.setattr(_auto, "build_estimator", lambda *a, **k: _Fake())
    y = np.repeat(["a", "b", "c"], [20, 5, 5])
    cand = _auto._Candidate("lora", {}, "m", max_samples=4, search="t").fit(list(range(30)), y)
    assert cand.n_rows_ == 6 and log.rows_used == {4: 6}
    results = {"n_resources": np.array([4, 4, 30])}
    assert _auto._rows_used(results["n_resources"], log).tolist() == [6, 6, 30]


class _Fake(ClassifierMixin, BaseEstimator):
    """A trained candidate stand-in: raises ``error`` in fit if given, else predicts the majority."""

    def __init__(self, error=None, inner=None):
        self.error = error
        self.inner = inner

    def _check_params(self):
        pass

    def fit(self, X, y):
        if self.error is not None:
            raise self.error
        if self.inner is not None:
            self.inner_ = clone(self.inner).fit(X, y)
            self.classes_ = self.inner_.classes_
            return self
        self.classes_, counts = np.unique(y, return_counts=True)
        self.majority_ = self.classes_[np.argmax(counts)]
        return self

    def predict(self, X):
        if self.inner is not None:
            return self.inner_.predict(X)
        return np.full(len(X), self.majority_)

    def predict_proba(self, X):
        if self.inner is not None:
            return self.inner_.predict_proba(X)
        return np.tile((self.classes_ == self.majority_).astype(float), (len(X), 1))


@pytest.mark.parametrize(
    "candidate, match",
    [
        ({"strategy": "full", "lr": -1}, r"candidates\[1\].*'full'.*lr"),
        ({"strategy": "few_shot", "n_pairs": 0}, r"candidates\[1\].*'few_shot'.*n_pairs"),
        ({"strategy": "lora", "r": 0}, r"candidates\[1\].*'lora'.*\br\b"),
        ({"strategy": "probe", "C": -1.0}, r"candidates\[1\].*'probe'.*C"),
    ],
)
def test_bad_candidate_settings_raise_before_the_search(candidate, match):
    # Used to be a "failed" candidate with a warning, and the probe won silently.
    est = AutoTransferClassifier(TEXT, candidates=[{"strategy": "probe"}, candidate], cv=2)
    with pytest.raises(ValueError, match=match):
        est.fit(["a", "b", "c", "d"], [0, 1, 0, 1])


def test_only_runtime_failures_are_caught(monkeypatch):
    log = _auto._SearchLog(deadline=None, n_splits=2, n_total=8)
    monkeypatch.setitem(_auto._SEARCHES, "t", log)
    X, y = list(range(8)), np.array([0, 1] * 4)
    for error in (RuntimeError("CUDA out of memory"), FloatingPointError("nan loss"), MemoryError()):
        monkeypatch.setattr(_auto, "build_estimator", lambda *a, e=error, **k: _Fake(error=e))
        cand = _auto._Candidate("full", {}, "m", search="t").fit(X, y)
        assert cand.skipped_.startswith(f"failed: {type(error).__name__}")
    # A programming or configuration error is not a failed candidate: it raises.
    for error in (ValueError("bad setting"), TypeError("bad type"), KeyError("k")):
        monkeypatch.setattr(_auto, "build_estimator", lambda *a, e=error, **k: _Fake(error=e))
        with pytest.raises(type(error)):
            _auto._Candidate("full", {}, "m", search="t").fit(X, y)


def test_refit_reserve_is_shared():
    # "full" was timed at 20 s a fold on 20 rows: its refit on 40 rows needs
    # ~40 s. A cheap candidate (1 s a fold, 2 s refit) used to be started
    # with 40.5 s left, eating the time of full's refit: the reserve is now
    # the largest refit among the live candidates.
    log = _auto._SearchLog(deadline=_auto.time.monotonic() + 40.5, n_splits=2, n_total=40)
    log.record("full | m | defaults", "full", {}, 20, 20, 20.0)
    log.record("lora | m | defaults", "lora", {}, 20, 20, 1.0)
    assert log.refit_reserve() == pytest.approx(40.0)
    assert log.check("lora | m | defaults", "lora", {}, 20, 20).startswith("over budget")
    # A candidate of an earlier round that was not kept is not reserved for.
    log = _auto._SearchLog(deadline=_auto.time.monotonic() + 40.5, n_splits=2, n_total=40)
    log.record("full | m | defaults", "full", {}, 10, 10, 20.0)  # round 0 only: dropped
    log.record("probe | m | C=1", "probe", {}, 20, 20, 0.02)
    log.record("lora | m | defaults", "lora", {}, 20, 20, 1.0)
    assert log.refit_reserve() == pytest.approx(2.0)
    assert log.check("lora | m | defaults", "lora", {}, 20, 20) is None


def test_final_refit_falls_back_when_over_budget(small, cache_dir, monkeypatch):
    # A fake slow "lora" (a strong probe inside) wins the search, but its
    # refit is expected to take 1e6 s: the best candidate that fits (the
    # probe) is refit instead, with a warning and refit_fallback_.
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    X, y = small
    real = _auto.build_estimator

    def build(strategy, settings, backbone, **kw):
        if strategy == "lora":
            return _Fake(inner=real("probe", {"C": 10.0}, backbone, **kw))
        return real(strategy, settings, backbone, **kw)

    monkeypatch.setattr(_auto, "build_estimator", build)
    monkeypatch.setattr(_auto._SearchLog, "check", lambda self, *a: None)  # run every candidate
    monkeypatch.setattr(_auto._SearchLog, "measure", lambda self, *a, **k: None)  # estimates are set below
    monkeypatch.setattr(
        _auto._SearchLog, "estimate", lambda self, key, strategy, settings, n: 1e6 if strategy == "lora" else 0.1
    )
    cands = [{"strategy": "probe", "C": 1e-4}, {"strategy": "lora"}]
    est = AutoTransferClassifier(TEXT, candidates=cands, cv=2, max_length=64, budget_s=600, cache=cache_dir,
                                 random_state=0)
    with pytest.warns(UserWarning, match="refit"):
        est.fit(X, y)
    fb = est.refit_fallback_
    assert fb["searched_best"] == {"strategy": "lora"} and fb["refit"] == {"strategy": "probe", "C": 1e-4}
    assert est.best_strategy_ == "probe" and isinstance(est.best_estimator_, Pipeline)
    assert isinstance(est.best_estimator_[-1], LogisticRegression)
    assert est.best_params_ == {"strategy": "probe", "C": 1e-4}
    assert est.best_score_ == pytest.approx(est.cv_results_["mean_test_score"][est.best_index_])
    # Without a budget there is no fallback.
    monkeypatch.undo()
    assert AutoTransferClassifier(TEXT, candidates=FAST[:1], cv=2, max_length=64, cache=cache_dir,
                                  random_state=0).fit(X, y).refit_fallback_ is None


# ------------------------------------------------------- the baseline
def test_baseline_wins_where_the_backbone_cannot_help(bbc, one_thread):
    # Whole articles behind a shared preamble, and a backbone that reads 16
    # tokens: the encoder sees only the preamble, TF-IDF reads the articles.
    # The search must pick the baseline, refit it, and say there is no backbone.
    rng = np.random.RandomState(0)
    idx = np.concatenate([rng.choice(np.flatnonzero(bbc.target == k), 8, replace=False) for k in range(5)])
    preamble = "Transcript of the weekly newsroom meeting, as filed by the desk editor on Monday morning: "
    X = [preamble + bbc.data[i] for i in idx]
    y = np.asarray(bbc.target_names)[bbc.target[idx]]
    est = AutoTransferClassifier(TEXT, candidates=[{"strategy": "probe", "C": 1.0}, {"strategy": "baseline"}],
                                 cv=2, max_length=16, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the truncation warning: the point of the test
        est.fit(X, y)
    assert est.best_strategy_ == "baseline" and est.best_backbone_ is None
    assert est.best_params_ == {"strategy": "baseline"}
    assert list(est.best_estimator_.named_steps) == ["texts", "tfidf", "head"]
    board = est.leaderboard_.set_index("strategy")
    assert board.loc["baseline", "backbone"] == "none"
    assert board.loc["baseline", "mean_score"] > board.loc["probe", "mean_score"] + 0.3


def test_baseline_is_in_the_default_search_once_per_search():
    assert _auto.default_candidates("text")[0] == {"strategy": "baseline"}
    assert _auto.default_candidates("image")[0] == {"strategy": "baseline"}


def test_baseline_budget_and_settings(small):
    # Cheap like the probe: never skipped by the budget; its settings are LogisticRegression's.
    log = _auto._SearchLog(deadline=0.0, n_splits=2, n_total=40)
    assert log.check("baseline | none | defaults", "baseline", {}, 20, 20) is None
    with pytest.raises(ValueError, match=r"candidates\[0\].*n_pairs"):
        AutoTransferClassifier(TEXT, candidates=[{"strategy": "baseline", "n_pairs": 4}]).fit(*small)
    with pytest.raises(ValueError, match=r"candidates\[0\] \(strategy='baseline'\) has an invalid setting"):
        AutoTransferClassifier(TEXT, candidates=[{"strategy": "baseline", "C": -1.0}]).fit(*small)


def test_raw_pixels_of_mixed_sizes_and_inputs(tmp_path):
    from PIL import Image

    from sktransfer._baseline import _RawPixels, baseline_estimator

    big = np.full((64, 48, 3), 255, dtype=np.uint8)
    tiny = np.zeros((8, 8), dtype=np.uint8)
    path = tmp_path / "gray.png"
    Image.fromarray(np.full((40, 40), 128, dtype=np.uint8)).save(path)
    Z = _RawPixels().fit(None).transform([big, tiny, str(path), Image.fromarray(tiny)])
    assert Z.shape == (4, 32 * 32)
    np.testing.assert_allclose(Z[0], 1.0)
    np.testing.assert_allclose(Z[1], 0.0)
    np.testing.assert_allclose(Z[2], 128 / 255, atol=1e-6)
    with pytest.raises(FileNotFoundError, match="Row 1 of X: image file not found"):
        _RawPixels().fit(None).transform([big, str(tmp_path / "missing.png")])
    with pytest.raises(ValueError, match="size must be a positive int"):
        _RawPixels(size=0).fit(None)
    # A stacked N×H×W array is split into its images, as the backbones do.
    digits = np.random.RandomState(0).randint(0, 255, size=(6, 8, 8)).astype(np.uint8)
    clf = baseline_estimator("image").fit(digits, [0, 1] * 3)
    assert clf.predict(digits).shape == (6,)
    with pytest.raises(ValueError, match="Row 2 of X is missing"):
        baseline_estimator("text").fit(["a b", "c d", None], [0, 1, 0])

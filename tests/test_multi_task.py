"""MultiTaskClassifier / MultiTaskRegressor (issue 15, part 4).

Real offline all-MiniLM-L6-v2 on BBC News: 6 articles per topic, two label
columns: ``topic`` (the corpus's label) and ``length``, a **derived** column
("long" when the whole article has more words than the median of the rows
used, else "short"), with every fifth row's ``length`` missing (None).
"""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import estimator_checks as ec
from sklearn.utils.estimator_checks import parametrize_with_checks

from sktransfer._multi_task import MultiTaskClassifier, MultiTaskRegressor, _MultiTaskLoss
from conftest import TEXT

pytestmark = pytest.mark.usefixtures("one_thread")

KW = dict(lr=1e-2, max_epochs=2, batch_size=8, max_length=24, random_state=0)


@pytest.fixture(scope="module")
def data(bbc):
    rng = np.random.RandomState(0)
    idx = np.concatenate([rng.choice(np.flatnonzero(bbc.target == k), 8, replace=False) for k in range(5)])
    X = [bbc.data[i][:240] for i in idx]
    topic = np.asarray(bbc.target_names, dtype=object)[bbc.target[idx]]
    words = np.array([len(bbc.data[i].split()) for i in idx])
    length = np.where(words > np.median(words), "long", "short").astype(object)  # derived
    length[::5] = None  # missing labels
    Y = np.column_stack([topic, length])
    tr = np.r_[0:6, 8:14, 16:22, 24:30, 32:38]
    te = np.setdiff1d(np.arange(40), tr)
    take = lambda rows: ([X[i] for i in rows], Y[rows], words[rows])  # noqa: E731
    return take(tr), take(te)


@pytest.fixture(scope="module")
def lora(data):
    pd = pytest.importorskip("pandas")
    (X, Y, _), _ = data
    frame = pd.DataFrame({"topic": Y[:, 0], "length": Y[:, 1]})  # column names become task names
    est = MultiTaskClassifier(TEXT, strategy="lora", r=4, task_weights={"topic": 2.0}, **KW)
    with pytest.warns(UserWarning, match="truncated"):
        fitted = est.fit(X, frame)
    assert fitted is est and est.get_params() == clone(est).get_params()  # fit returns self, params untouched
    return est


# ----------------------------------------------------------- sklearn contract
@parametrize_with_checks([MultiTaskClassifier(TEXT, max_epochs=1), MultiTaskRegressor(TEXT, max_epochs=1)])
def test_sklearn_common_checks(estimator, check):
    # Honest tags (text in, multi-output y): sklearn yields the checks that apply; none is expected to fail.
    check(estimator)


@pytest.mark.parametrize("cls", [MultiTaskClassifier, MultiTaskRegressor])
@pytest.mark.parametrize("check", [
    ec.check_no_attributes_set_in_init, ec.check_parameters_default_constructible, ec.check_get_params_invariance,
    ec.check_set_params, ec.check_estimator_repr, ec.check_estimator_cloneable, ec.check_param_validation,
    ec.check_do_not_raise_errors_in_init_or_set_params, ec.check_valid_tag_types, ec.check_mixin_order,
], ids=lambda c: getattr(c, "__name__", str(c)))
def test_sklearn_data_free_checks(cls, check):
    check(cls.__name__, cls(TEXT))


def test_tags_say_multi_output():
    tags = MultiTaskClassifier(TEXT).__sklearn_tags__()
    assert tags.target_tags.multi_output and not tags.target_tags.single_output
    assert tags.estimator_type == "classifier" and tags.input_tags.string
    assert MultiTaskRegressor(TEXT).__sklearn_tags__().estimator_type == "regressor"


def test_unfitted():
    for method in ("predict", "predict_proba", "transform"):
        with pytest.raises(NotFittedError):
            getattr(MultiTaskClassifier(TEXT), method)(["text"])


# ------------------------------------------------------------------ training
def test_lora_outputs_like_multioutput_classifier(lora, data):
    (X, Y, _), (Xt, Yt, _) = data
    assert [c.tolist() for c in lora.classes_] == [sorted(set(Y[:, 0])), ["long", "short"]]
    assert lora.n_tasks_ == 2 and lora.task_names_.tolist() == ["topic", "length"]
    assert lora.task_weights_.tolist() == [2.0, 1.0]
    pred = lora.predict(Xt)
    assert pred.shape == (len(Xt), 2)
    proba = lora.predict_proba(Xt)
    assert [p.shape for p in proba] == [(len(Xt), 5), (len(Xt), 2)]
    np.testing.assert_allclose([p.sum(axis=1) for p in proba], 1.0, rtol=1e-5)
    for j in range(2):
        np.testing.assert_array_equal(pred[:, j], lora.classes_[j][proba[j].argmax(axis=1)])
    # One shared adapter (on the attention projections) plus the two heads train; the base stays frozen.
    trainable = [n for n, p in lora.net_.module_.named_parameters() if p.requires_grad]
    assert any("lora_A" in n for n in trainable) and any("task_head" in n for n in trainable)
    assert not any("lora" not in n and "task_head" not in n for n in trainable)
    assert lora.transform(Xt[:2]).shape == (2, 384)
    assert 0.0 <= lora.score(Xt, Yt) <= 1.0
    assert lora.score(X, Y) > 0.5  # training rows: the topic is learned (chance: 0.2 and 0.5)


def test_lora_save_load_once(lora, data, tmp_path):
    _, (Xt, _, _) = data
    lora.save(tmp_path / "mt")
    files = {p.name: p.stat().st_size for p in (tmp_path / "mt").iterdir()}
    assert set(files) == {"config.json", "manifest.json", "model.safetensors"}
    assert files["model.safetensors"] < 2_000_000  # adapter + heads, not the 90 MB base
    loaded = MultiTaskClassifier.load(tmp_path / "mt")
    for a, b in zip(loaded.predict_proba(Xt), lora.predict_proba(Xt)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert loaded.get_params() == lora.get_params()
    assert [c.tolist() for c in loaded.classes_] == [c.tolist() for c in lora.classes_]
    assert loaded.task_names_.tolist() == ["topic", "length"] and loaded.task_weights_.tolist() == [2.0, 1.0]


def test_regressor_masks_missing_targets(data):
    (X, _, words), (Xt, _, wt) = data
    Y = np.column_stack([words, [x.count(" ") for x in X]]).astype(float)
    Y[::3, 1] = np.nan
    with pytest.warns(UserWarning, match="truncated"):
        reg = MultiTaskRegressor(TEXT, strategy="linear_probe", **{**KW, "max_epochs": 1}).fit(X, Y)
    assert reg.predict(Xt).shape == (len(Xt), 2)
    from sktransfer.backbones import load_backbone

    pre = load_backbone(TEXT).body.state_dict()  # linear probe: the shared backbone did not move
    assert all(torch.equal(v, pre[k]) for k, v in reg.net_.module_.body.state_dict().items())
    np.testing.assert_allclose(reg.y_mean_, np.nanmean(Y, axis=0))
    assert np.isfinite(reg.score(X, Y))


def test_loss_masks_missing_labels_and_weights_tasks():
    torch.manual_seed(0)
    logits = torch.randn(4, 5)  # task 0: 3 classes, task 1: 2 classes
    y = torch.tensor([[0, 1], [2, -1], [1, 0], [-1, 1]])
    loss = _MultiTaskLoss([3, 2], [2.0, 0.5])(logits, y)
    ce = torch.nn.functional.cross_entropy
    expected = 2.0 * ce(logits[[0, 1, 2], :3], y[[0, 1, 2], 0]) + 0.5 * ce(logits[[0, 2, 3], 3:], y[[0, 2, 3], 1])
    torch.testing.assert_close(loss, expected)
    # A batch without any label of a task: that task adds nothing (and no NaN).
    only_first = _MultiTaskLoss([3, 2], [1.0, 1.0])(logits, torch.tensor([[0, -1], [1, -1], [2, -1], [0, -1]]))
    torch.testing.assert_close(only_first, ce(logits[:, :3], torch.tensor([0, 1, 2, 0])))
    reg = _MultiTaskLoss([1, 1], [1.0, 1.0], regression=True)(
        torch.zeros(2, 2), torch.tensor([[1.0, float("nan")], [3.0, 2.0]]))
    torch.testing.assert_close(reg, torch.tensor(5.0 + 4.0))


# ----------------------------------------------------------------- bad input
@pytest.mark.parametrize("Y, match", [
    (np.array([["a", "x"], ["a", "y"], ["a", "x"]], dtype=object), r"Y column '0' has a single class \('a'\)"),
    (np.array(["a", "b", "a"], dtype=object), r"Y must be 2-D \(n_samples, n_tasks\).*got shape \(3,\)"),
    (np.array([["a", "x"], ["b", "y"]], dtype=object), "X and Y have different lengths: 3 inputs but 2"),
    (np.array([["a", "x"], [None, None], ["b", "y"]], dtype=object), "Row 1 of Y has no label in any column"),
    (np.array([["a", None], ["b", None], ["a", None]], dtype=object), "Y column '1' has no labels"),
    (np.array([["a", 1], ["b", "y"], ["a", 1]], dtype=object), "Y column '1' mixes label types"),
    (np.array([[0.5, 1.0], [0.25, 2.0], [0.75, 1.0]]), "Y column '0' is continuous"),
])
def test_bad_Y_is_refused_before_any_model_loads(Y, match):
    with pytest.raises(ValueError, match=match):
        MultiTaskClassifier("no/such-backbone-is-loaded").fit(["a", "b", "c"], Y)


def test_bad_task_weights_and_regression_targets():
    Y = np.array([["a", "x"], ["b", "y"], ["a", "x"]], dtype=object)
    with pytest.raises(ValueError, match="task_weights has 3 weights for the 2 columns"):
        MultiTaskClassifier("no/such", task_weights=[1, 1, 1]).fit(["a", "b", "c"], Y)
    with pytest.raises(ValueError, match=r"task_weights names columns not in Y: \['topic'\]"):
        MultiTaskClassifier("no/such", task_weights={"topic": 2}).fit(["a", "b", "c"], Y)
    with pytest.raises(ValueError, match="Row 1 of Y column '0' is infinite"):
        MultiTaskRegressor("no/such").fit(["a", "b", "c"], np.array([[1.0, 2.0], [np.inf, 1.0], [0.0, 1.0]]))

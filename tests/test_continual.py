"""Sequential tasks (continual transfer): a fitted model as the start of the next fit (issue 15, part 5).

``FineTunedClassifier(backbone=clf_a)`` (or ``backbone=<clf_a's save
directory>``) trains task B from task A's trained body with a new head; L2-SP,
WiSE-FT and task vectors then measure from A's weights, not the pretrained
ones. Real offline backbone (all-MiniLM-L6-v2 on BBC News texts), one-epoch
fits on a few rows.
"""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from sktransfer import FineTunedClassifier, FineTunedRegressor, LoRAClassifier
from sktransfer.merging import task_vector
from sktransfer.metrics import forgetting_report
from conftest import TEXT

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore:.*truncated")]

KW = dict(strategy="full", lr=1e-2, backbone_lr_ratio=1.0, max_epochs=1, batch_size=8, max_length=16,
          head_init="random", random_state=0)


@pytest.fixture(scope="module")
def tasks(bbc_small):
    """Task A: business vs sports; task B: tech, politics, entertainment (new classes)."""
    X, y = bbc_small
    X = np.asarray([t[:200] for t in X], dtype=object)
    a = np.isin(y, ["business", "sports"])
    pick_a = np.flatnonzero(a)[::3]
    pick_b = np.flatnonzero(~a)[::4]
    return (list(X[pick_a]), y[pick_a]), (list(X[pick_b]), y[pick_b])


@pytest.fixture(scope="module")
def clf_a(tasks):
    (Xa, ya), _ = tasks
    return FineTunedClassifier(TEXT, **KW).fit(Xa, ya)


def _body(est):
    return {k: v.detach().clone() for k, v in est.net_.module_.body.state_dict().items() if v.is_floating_point()}


def _same(a, b):
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_fit_from_a_fitted_model_starts_from_its_body(clf_a, tasks):
    (Xa, ya), (Xb, yb) = tasks
    body_a = _body(clf_a)
    # Linear probe on B: the body is A's, untouched; only a new head (B's classes) trains.
    clf_b = FineTunedClassifier(backbone=clf_a, **{**KW, "strategy": "linear_probe"}).fit(Xb, yb)
    assert sorted(clf_b.classes_.tolist()) == sorted(set(yb))
    assert _same(_body(clf_b), body_a)
    np.testing.assert_allclose(clf_b.transform(Xa), clf_a.transform(Xa), rtol=1e-5, atol=1e-5)
    assert _same(_body(clf_a), body_a)  # A itself is left as it was
    assert clf_a.score(Xa, ya) == clf_a.score(Xa, ya)


def test_clone_keeps_the_fitted_start(clf_a, tasks):
    _, (Xb, yb) = tasks
    est = FineTunedClassifier(backbone=clf_a, **KW)
    twin = clone(est)
    assert twin.backbone is clf_a  # the start is shared, not cloned into an unfitted copy
    assert twin.get_params(deep=False)["backbone"] is clf_a


def test_a_fitted_start_is_not_a_sub_estimator_to_tune(clf_a):
    # set_params(backbone__lr=...) would change clf_a itself: its parameters are not exposed.
    est = FineTunedClassifier(backbone=clf_a, **KW)
    params = est.get_params(deep=True)
    assert params["backbone"] is clf_a and not any(k.startswith("backbone__") for k in params)
    with pytest.raises(ValueError, match="backbone__lr"):
        est.set_params(backbone__lr=1.0)
    assert clf_a.lr == KW["lr"]


def test_l2sp_and_wise_ft_are_anchored_at_the_start(clf_a, tasks):
    (Xa, _), (Xb, yb) = tasks
    body_a = _body(clf_a)
    clf_b = FineTunedClassifier(backbone=clf_a, l2sp=0.1, **KW).fit(Xb, yb)
    l2sp = dict(clf_b.net_.callbacks_)["l2sp"]
    assert l2sp.reference and all(torch.equal(v.cpu(), body_a[k[len("body."):]]) for k, v in l2sp.reference.items())
    assert not _same(_body(clf_b), body_a)  # full fine-tuning moved it
    # WiSE-FT between A and A->B: alpha=0 is A's body (with B's head).
    clf_b.set_wise_alpha(0.0)
    assert _same(_body(clf_b), body_a)
    clf_b.set_wise_alpha(1.0)
    assert not _same(_body(clf_b), body_a)


def test_a_head_on_the_new_body_and_forgetting_report(clf_a, tasks):
    (Xa, ya), (Xb, yb) = tasks
    clf_b = FineTunedClassifier(backbone=clf_a, **KW).fit(Xb, yb)
    tv = task_vector(clf_b, name="B after A")  # measured from A's weights
    a_after = tv.apply(clf_a)  # A's body + (A->B - A): the A->B body with A's head
    assert a_after.classes_.tolist() == clf_a.classes_.tolist()
    np.testing.assert_allclose(a_after.transform(Xa), clf_b.transform(Xa), rtol=1e-4, atol=1e-4)
    half = (0.5 * tv).apply(clf_a)  # WiSE-FT's mix with A's head
    clf_b.set_wise_alpha(0.5)
    np.testing.assert_allclose(half.transform(Xa), clf_b.transform(Xa), rtol=1e-4, atol=1e-4)
    clf_b.set_wise_alpha(1.0)
    # forgetting_report compares with the start's features (A's), not the pretrained ones.
    probe = FineTunedClassifier(backbone=clf_a, **{**KW, "strategy": "linear_probe"}).fit(Xb, yb)
    report = forgetting_report(probe, Xa, ya, cv=2)
    assert report["cka"] == pytest.approx(1.0, abs=1e-6)
    assert report["ref_accuracy_finetuned"] == pytest.approx(report["ref_accuracy_pretrained"])


def test_saved_directory_as_the_start(clf_a, tasks, tmp_path):
    (Xa, _), (Xb, yb) = tasks
    clf_a.save(tmp_path / "a")
    clf_b = FineTunedClassifier(backbone=str(tmp_path / "a"), **KW).fit(Xb, yb)
    ref = FineTunedClassifier(backbone=clf_a, **KW).fit(Xb, yb)
    np.testing.assert_allclose(clf_b.decision_function(Xb), ref.decision_function(Xb), rtol=1e-5, atol=1e-5)
    clf_b.save(tmp_path / "b")  # its backbone is a path: it saves, and loads from A's save
    loaded = FineTunedClassifier.load(tmp_path / "b")
    np.testing.assert_allclose(loaded.decision_function(Xb), clf_b.decision_function(Xb), rtol=1e-5, atol=1e-5)
    # An in-memory start is not saved with B: the error says what to do.
    with pytest.raises(ValueError, match="backbone.*save"):
        ref.save(tmp_path / "c")


def test_saves_name_their_start_wherever_they_are_read(clf_a, tasks, tmp_path, monkeypatch):
    _, (Xb, yb) = tasks
    monkeypatch.chdir(tmp_path)
    clf_a.save("a")
    clf_b = FineTunedClassifier(backbone="a", **KW).fit(Xb, yb)  # a relative start directory
    # Saving B over its own start would lose A and make the save name itself: refused, nothing written.
    digest = (tmp_path / "a" / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="overwrite this model's start"):
        clf_b.save("a")
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == digest
    clf_b.save("b")
    expected = clf_b.decision_function(Xb)  # (clf_b itself reads "a" relative to the working directory)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the save holds A's directory as an absolute path
    loaded = FineTunedClassifier.load(str(tmp_path / "b"))
    np.testing.assert_allclose(loaded.decision_function(Xb), expected, rtol=1e-5, atol=1e-5)


def test_a_task_vector_refuses_a_start_changed_since_the_fit(tasks):
    (Xa, ya), (Xb, yb) = tasks
    a = FineTunedClassifier(TEXT, **KW).fit(Xa, ya)
    b = FineTunedClassifier(backbone=a, **KW).fit(Xb, yb)
    assert task_vector(b).norm() > 0
    a.set_wise_alpha(0.0)  # A's weights are not those B was trained from any more
    with pytest.raises(ValueError, match="fingerprint"):
        task_vector(b)


def test_bad_starts_are_refused_naming_backbone(clf_a, tasks):
    _, (Xb, yb) = tasks
    with pytest.raises(NotFittedError, match="backbone"):
        FineTunedClassifier(backbone=FineTunedClassifier(TEXT), **KW).fit(Xb, yb)
    with pytest.raises(ValueError, match="backbone.*merge"):
        FineTunedClassifier(backbone=LoRAClassifier(TEXT), **KW).fit(Xb, yb)
    reg = FineTunedRegressor(backbone=clf_a, **KW)  # a classifier's body may start a regressor
    reg.fit(Xb, np.arange(len(Xb), dtype=float))
    assert reg.predict(Xb).shape == (len(Xb),)

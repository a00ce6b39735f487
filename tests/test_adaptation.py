"""Domain adaptation: skada on embeddings, and DANN fine-tuning.

Source: sklearn digits as they are; target: the same digits inverted (a
shift a frozen ImageNet backbone feels strongly). Everything runs at 32 px
on a few dozen images.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import sklearn
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from sktransfer import PretrainedFeatureExtractor
from sktransfer.adaptation import DANNClassifier, EmbeddingDAClassifier, GradientReversalSchedule
from sktransfer.adaptation import _DANNHead, _DANNLoss, _GradientReversal, _import_skada
from conftest import IMAGE

pytest.importorskip("skada")

FAST_EXT = {"image_size": 32, "batch_size": 64}
FAST_DANN = dict(image_size=32, batch_size=32, max_epochs=2, lr=3e-3, random_state=0)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def shift():
    d = load_digits()
    rng = np.random.RandomState(0)
    idx = rng.permutation(len(d.target))
    src, tgt = idx[:96], idx[96:192]
    img = (d.images * 16).clip(0, 255).astype(np.uint8)
    labels = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    return img[src], labels[d.target[src]], 255 - img[tgt], labels[d.target[tgt]]


def _numeric_shift(seed=0, n=200, d=6):
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 2, n)
    Xs = rng.randn(n, d) + 1.5 * y[:, None]
    A = np.diag(rng.uniform(2, 4, d))
    Xt = (rng.randn(n, d) + 1.5 * y[:, None]) @ A - 5.0
    return Xs, y, Xt, y


# ------------------------------------------------------ metadata routing
def test_sktransfer_leaves_metadata_routing_as_it_was():
    # A fresh interpreter: a plain `import skada` switches routing on for
    # the thread; importing and using sktransfer.adaptation must not. Once
    # skada is imported (by us), a later `import skada` is a no-op, so a
    # user of skada's own pipelines switches routing on explicitly.
    code = """
import json, sklearn, numpy as np
out = {"start": sklearn.get_config()["enable_metadata_routing"]}
from sktransfer.adaptation import EmbeddingDAClassifier
rng = np.random.RandomState(0)
y = rng.randint(0, 2, 40)
clf = EmbeddingDAClassifier(adapter="coral").fit(rng.randn(40, 3) + y[:, None], y, X_target=rng.randn(40, 3))
clf.predict(rng.randn(5, 3))
out["after_use"] = sklearn.get_config()["enable_metadata_routing"]
import skada
out["after_later_import"] = sklearn.get_config()["enable_metadata_routing"]
print(json.dumps(out))
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out == {"start": False, "after_use": False, "after_later_import": False}


@pytest.mark.parametrize("routing", [False, True])
def test_routing_setting_is_kept_in_this_process(routing):
    Xs, ys, Xt, _ = _numeric_shift()
    with sklearn.config_context(enable_metadata_routing=routing):
        _import_skada()
        EmbeddingDAClassifier().fit(Xs, ys, X_target=Xt).predict(Xt[:3])
        assert sklearn.get_config()["enable_metadata_routing"] is routing


# ------------------------------------------------ shallow: skada adapters
def test_coral_corrects_a_linear_shift():
    Xs, ys, Xt, yt = _numeric_shift()
    plain = EmbeddingDAClassifier(adapter=None, scale=False).fit(Xs, ys, X_target=Xt)
    coral = EmbeddingDAClassifier(adapter="coral").fit(Xs, ys, X_target=Xt)
    assert coral.score(Xt, yt) > 0.85 > plain.score(Xt, yt)
    np.testing.assert_array_equal(coral.classes_[coral.predict_proba(Xt).argmax(1)], coral.predict(Xt))


@pytest.mark.parametrize("adapter", ["subspace", "tca", "linear_ot", "density_reweight"])
def test_other_adapters_run(adapter):
    Xs, ys, Xt, yt = _numeric_shift(n=60)
    clf = EmbeddingDAClassifier(adapter=adapter).fit(Xs, ys, X_target=Xt)
    # The adapter is applied: the target predictions are not the unadapted classifier's.
    assert not np.array_equal(clf.predict(Xt), EmbeddingDAClassifier(adapter=None).fit(Xs, ys, X_target=Xt).predict(Xt))


def test_extractor_inside_a_skada_pipeline_routes_domains(shift):
    # The extractor as the first step of skada's own pipeline, with
    # sample_domain routed through it to CORAL.
    skada = _import_skada()
    Xs, ys, Xt, yt = shift
    X = np.concatenate([Xs, Xt])
    y = np.concatenate([np.searchsorted(np.unique(ys), ys), np.full(len(Xt), -1)])
    sd = np.r_[np.ones(len(Xs), int), np.full(len(Xt), -2)]
    ext = PretrainedFeatureExtractor(IMAGE, **FAST_EXT)
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = skada.make_da_pipeline(ext, skada.CORALAdapter(), LogisticRegression(max_iter=500))
        pipe.fit(X, y.copy(), sample_domain=sd)
        pred = pipe.predict(Xt, sample_domain=np.full(len(Xt), -2))
    coral = pipe.named_steps["coraladapter"].base_estimator_
    Zt = PretrainedFeatureExtractor(IMAGE, **FAST_EXT).fit(Xt).transform(Xt)
    np.testing.assert_allclose(coral.mean_target_, Zt.mean(0), rtol=1e-4, atol=1e-5)  # CORAL saw the target rows
    assert pred.shape == (len(Xt),)
    # The same thing through EmbeddingDAClassifier (no routing to set up).
    clf = EmbeddingDAClassifier(PretrainedFeatureExtractor(IMAGE, **FAST_EXT), "coral",
                                LogisticRegression(max_iter=500), scale=False).fit(X, np.r_[ys, yt], sample_domain=sd)
    np.testing.assert_array_equal(np.searchsorted(clf.classes_, clf.predict(Xt)), pred)
    same = EmbeddingDAClassifier(PretrainedFeatureExtractor(IMAGE, **FAST_EXT), "coral",
                                 LogisticRegression(max_iter=500), scale=False).fit(Xs, ys, X_target=Xt)
    np.testing.assert_array_equal(same.predict(Xt), clf.predict(Xt))


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("cls", [EmbeddingDAClassifier, DANNClassifier])
def test_no_unlabeled_target_rows(cls):
    X = np.random.RandomState(0).randint(0, 255, (8, 8, 8)).astype(np.uint8)
    est = cls() if cls is EmbeddingDAClassifier else cls(IMAGE, **FAST_DANN)
    y = [0, 1] * 4
    with pytest.raises(ValueError, match="needs unlabeled target rows"):
        est.fit(X, y)
    with pytest.raises(ValueError, match="no target rows"):
        est.fit(X, y, sample_domain=np.ones(8, int))
    with pytest.raises(ValueError, match="X_target is empty"):
        est.fit(X, y, X_target=[])
    with pytest.raises(ValueError, match="either X_target"):
        est.fit(X, y, X_target=X, sample_domain=np.ones(8, int))
    with pytest.raises(ValueError, match="row 3 is 0"):
        est.fit(X, y, sample_domain=np.array([1, 1, 1, 0, -2, -2, -2, -2]))


def test_embedding_da_bad_input():
    Xs, ys, Xt, _ = _numeric_shift(n=20)
    with pytest.raises(ValueError, match="X_target has 5 features but X has 6"):
        EmbeddingDAClassifier().fit(Xs, ys, X_target=Xt[:, :5])
    bad = Xs.copy()
    bad[7, 2] = np.nan
    with pytest.raises(ValueError, match="Row 7 of X contains NaN"):
        EmbeddingDAClassifier().fit(bad, ys, X_target=Xt)
    with pytest.raises(ValueError, match="single class"):
        EmbeddingDAClassifier().fit(Xs, np.zeros(20), X_target=Xt)
    with pytest.raises(ValueError, match=r"'adapter' parameter of EmbeddingDAClassifier must be a str among .*'coral'.* Got 'magic'"):
        EmbeddingDAClassifier(adapter="magic").fit(Xs, ys, X_target=Xt)
    with pytest.raises(ValueError, match="2 target domains"):
        EmbeddingDAClassifier().fit(np.r_[Xs, Xt], np.r_[ys, ys], sample_domain=np.r_[np.ones(20, int), [-2] * 10, [-3] * 10])
    clf = EmbeddingDAClassifier().fit(Xs, ys, X_target=Xt)
    with pytest.raises(ValueError, match="X has 4 features, but this classifier was fitted with 6"):
        clf.predict(Xt[:, :4])


def test_dann_bad_parameters():
    X = np.zeros((4, 8, 8), np.uint8)
    for params, match in [
        ({"strategy": "linear_probe"}, "linear_probe"),
        ({"domain_weight": -1}, "domain_weight"),
        ({"domain_schedule": "cosine"}, "domain_schedule"),
        ({"domain_hidden": 0}, "domain_hidden"),
    ]:
        with pytest.raises(ValueError, match=match):
            DANNClassifier(IMAGE, **params).fit(X, [0, 1, 0, 1], X_target=X)


# --------------------------------------------------------------- DANN parts
def test_gradient_reversal_and_head():
    x = torch.randn(5, 4, requires_grad=True)
    _GradientReversal.apply(x, 0.5).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), -0.5)
    head = _DANNHead(torch.nn.Linear(4, 3), torch.nn.Linear(4, 1))
    assert head.train()(x).shape == (5, 4) and head.eval()(x).shape == (5, 3)
    # The features get the class gradient minus lambda times the domain gradient.
    head.train().grl_lambda = 1.0
    f = torch.randn(5, 4, requires_grad=True)
    head(f)[:, 3].sum().backward()
    np.testing.assert_allclose(f.grad.numpy(), -head.domain_classifier.weight.detach().numpy().repeat(5, 0), rtol=1e-6)


def test_dann_loss_balances_domains_and_ignores_target_labels():
    loss = _DANNLoss(n_classes=2)
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 2.0, -1.0], [0.0, 0.0, 1.0]])
    y = torch.tensor([0, 1, -100])
    ce = torch.nn.functional.cross_entropy(logits[:2, :2], y[:2])
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    dom = (bce(logits[:2, 2], torch.zeros(2)) + bce(logits[2:, 2], torch.ones(1))) / 2
    assert float(loss(logits, y)) == pytest.approx(float(ce + dom), rel=1e-6)
    assert float(loss(logits[:, :2], y)) == pytest.approx(float(ce), rel=1e-6)  # eval: no domain logit
    assert loss.last_domain_accuracy == pytest.approx(1.0)


@pytest.fixture(scope="module")
def dann(shift):
    Xs, ys, Xt, _ = shift
    return DANNClassifier(IMAGE, **FAST_DANN).fit(Xs, ys, X_target=Xt)


def test_dann_trains_on_both_domains(dann, shift):
    Xs, ys, Xt, yt = shift
    assert dann.n_target_ == len(Xt) and list(dann.classes_) == sorted(set(ys))
    batches = [b for epoch in dann.history_ for b in epoch["batches"]]
    lambdas = [b["grl_lambda"] for b in batches]
    assert lambdas[0] == 0.0 and lambdas == sorted(lambdas) and lambdas[-1] > 0.9  # Ganin's ramp
    assert all(np.isfinite(b["domain_loss"]) for b in batches)
    # The domain classifier is trained (it is in the optimizer, at the head's rate).
    dom = {id(p) for p in dann.net_.module_.task_head.domain_classifier.parameters()}
    in_opt = {id(p) for g in dann.net_.optimizer_.param_groups for p in g["params"]}
    assert dom <= in_opt
    P = dann.predict_proba(Xt)
    assert P.shape == (len(Xt), 10) and np.allclose(P.sum(1), 1, atol=1e-5)
    assert dann.score(Xt, yt) == np.mean(dann.classes_[P.argmax(1)] == yt)  # predict agrees with predict_proba


def test_dann_save_load_and_sample_domain(dann, shift, tmp_path):
    Xs, ys, Xt, _ = shift
    path = dann.save(str(tmp_path / "dann"))
    again = DANNClassifier.load(path)
    np.testing.assert_allclose(again.predict_proba(Xt[:8]), dann.predict_proba(Xt[:8]), atol=1e-5)
    # skada's convention: one X, negative domain ids for target rows.
    X = np.concatenate([Xs[:32], Xt[:32]])
    sd = np.r_[np.ones(32, int), np.full(32, -2)]
    clf = DANNClassifier(IMAGE, **{**FAST_DANN, "max_epochs": 1}).fit(X, np.r_[ys[:32], ys[:32]], sample_domain=sd)
    assert clf.n_target_ == 32 and clf.predict(Xt[:4]).shape == (4,)


def test_schedule_callback_constant():
    cb = GradientReversalSchedule(weight=0.3, schedule="constant")
    assert cb._lambda(None) == 0.3


def test_an_adapter_that_breaks_down_on_few_rows_says_so():
    # linear OT estimates d x d covariances: 15 rows per domain in 50 dimensions give NaNs.
    rng = np.random.RandomState(0)
    X, y = rng.randn(30, 50), np.arange(30) % 2
    with pytest.raises(ValueError, match=r"adapter='linear_ot' produced non-finite features .*15 source and 15 target rows of 50 dimensions"):
        EmbeddingDAClassifier(adapter="linear_ot").fit(X[:15], y[:15], X_target=X[15:])

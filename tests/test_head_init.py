"""head_init="probe" (LP-FT): fine-tuning starts where the frozen probe ends."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, Ridge

import sktransfer._head_init as head_init_module
from sktransfer import FineTunedClassifier, FineTunedRegressor, PretrainedFeatureExtractor

from conftest import TEXT


@pytest.fixture(scope="module")
def small(bbc):
    y = np.asarray(bbc.target_names)[bbc.target]
    rows = np.concatenate([np.flatnonzero(y == c)[:6] for c in np.unique(y)[:3]])
    return [bbc.data[i][:200] for i in rows], y[rows]


# Two LogisticRegression fits (the head's, on the features the estimator
# embeds, and this file's, on the extractor's) stop at lbfgs's tolerance from
# float32 features that differ in the last bits: their probabilities agree to
# about 1e-5 (1.08e-5 with transformers 5.25), a random head differs by 1e-1.
PROBE_ATOL = 1e-4


def _probe_features(X):
    return PretrainedFeatureExtractor(TEXT, max_length=32).fit(X).transform(X)


def test_probe_head_equals_the_sklearn_probe_before_training(small):
    X, y = small
    # lr so small that training changes nothing: what remains is the initial head.
    clf = FineTunedClassifier(TEXT, strategy="linear_probe", head_init="probe", lr=1e-12, max_epochs=1,
                              max_length=32, random_state=0).fit(X, y)
    Z = _probe_features(X)
    probe = LogisticRegression(max_iter=2000).fit(Z, y)
    np.testing.assert_allclose(clf.predict_proba(X), probe.predict_proba(Z), atol=PROBE_ATOL)
    # the random head it replaces is far from the probe
    rnd = FineTunedClassifier(TEXT, strategy="linear_probe", head_init="random", lr=1e-12, max_epochs=1, max_length=32,
                              random_state=0).fit(X, y)
    assert np.abs(rnd.predict_proba(X) - probe.predict_proba(Z)).max() > 0.05


@pytest.mark.parametrize("cls_path", ["sktransfer.FineTunedClassifier", "sktransfer.LoRAClassifier"])
def test_default_starts_from_the_probe(small, cls_path):
    # The default (head_init="auto", chosen leave-one-task-out on the suite:
    # benchmarks/RESULTS.md) is LP-FT for a linear head.
    import importlib

    module, name = cls_path.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    X, y = small
    assert cls(TEXT).head_init == "auto"
    clf = cls(TEXT, lr=1e-12, max_epochs=1, max_length=32, random_state=0).fit(X, y)
    Z = _probe_features(X)
    np.testing.assert_allclose(clf.predict_proba(X), LogisticRegression(max_iter=2000).fit(Z, y).predict_proba(Z),
                               atol=PROBE_ATOL)


def test_auto_keeps_an_mlp_head_random_without_a_warning(small, recwarn):
    X, y = small
    FineTunedClassifier(TEXT, strategy="linear_probe", head="mlp", max_epochs=1, max_length=32, random_state=0).fit(X, y)
    assert not [w for w in recwarn if "head_init" in str(w.message)]


def test_binary_probe_head(small):
    X, y = small
    keep = np.isin(y, np.unique(y)[:2])
    X2, y2 = [x for x, k in zip(X, keep) if k], y[keep]
    clf = FineTunedClassifier(TEXT, strategy="linear_probe", head_init="probe", lr=1e-12, max_epochs=1,
                              max_length=32, random_state=0).fit(X2, y2)
    Z = _probe_features(X2)
    np.testing.assert_allclose(clf.predict_proba(X2), LogisticRegression(max_iter=2000).fit(Z, y2).predict_proba(Z), atol=PROBE_ATOL)


def test_regressor_probe_head_equals_ridge(small):
    X, _ = small
    target = np.array([len(t.split()) for t in X], dtype=float)
    reg = FineTunedRegressor(TEXT, strategy="linear_probe", head_init="probe", lr=1e-12, max_epochs=1,
                             max_length=32, random_state=0).fit(X, target)
    Z = _probe_features(X)
    mean, std = target.mean(), target.std()
    expected = Ridge(alpha=1.0).fit(Z, (target - mean) / std).predict(Z) * std + mean
    np.testing.assert_allclose(reg.predict(X), expected, rtol=1e-4, atol=1e-3)


def test_probe_sees_the_training_rows_only(small, monkeypatch):
    X, y = small
    seen = []
    original = head_init_module.init_head_from_probe

    def spy(module, Xd, y_enc, **kwargs):
        seen.append(len(y_enc))
        return original(module, Xd, y_enc, **kwargs)

    monkeypatch.setattr(head_init_module, "init_head_from_probe", spy)
    FineTunedClassifier(TEXT, strategy="linear_probe", head_init="probe", validation_fraction=0.25, max_epochs=1,
                        max_length=32, random_state=0).fit(X, y)
    assert seen == [len(y) - int(np.ceil(0.25 * len(y)))]


@pytest.mark.parametrize("params, message", [
    ({"head_init": "lp"}, r"'head_init' parameter of \w+ must be a str among .*'probe'.* Got 'lp'"),
    ({"head_init": "probe", "head": "mlp"}, "head='mlp' is not linear"),
])
def test_bad_head_init_is_refused(small, params, message):
    X, y = small
    with pytest.raises(ValueError, match=message):
        FineTunedClassifier(TEXT, max_epochs=1, **params).fit(X, y)


def test_a_head_the_probe_cannot_set_is_not_silent(small, monkeypatch):
    # init_head_from_probe declines (e.g. a class missing from the training rows after the validation split)
    monkeypatch.setattr(head_init_module, "init_head_from_probe", lambda *a, **k: False)
    X, y = small
    with pytest.warns(UserWarning, match="training starts from a random head"):
        FineTunedClassifier(TEXT, strategy="linear_probe", head_init="probe", max_epochs=1, max_length=32,
                            random_state=0).fit(X, y)


# ------------------------------------------------------------------- LoRA
def test_lora_probe_head_equals_the_sklearn_probe_before_training(small):
    from sktransfer import LoRAClassifier

    X, y = small
    # At init the adapters leave the base unchanged (LoRA's B = 0): the probe on
    # the frozen extractor's features is the head, in PEFT's trainable copy.
    clf = LoRAClassifier(TEXT, head_init="probe", lr=1e-12, max_epochs=1, max_length=32, random_state=0).fit(X, y)
    Z = _probe_features(X)
    probe = LogisticRegression(max_iter=2000).fit(Z, y)
    np.testing.assert_allclose(clf.predict_proba(X), probe.predict_proba(Z), atol=PROBE_ATOL)
    # the head's original and its trainable copy agree
    head = clf.net_.module_.get_base_model().task_head
    original, trained = head.original_module.state_dict(), head.modules_to_save["default"].state_dict()
    assert original.keys() == trained.keys()
    for k in original:
        np.testing.assert_allclose(original[k].numpy(), trained[k].numpy(), atol=1e-6)
    rnd = LoRAClassifier(TEXT, head_init="random", lr=1e-12, max_epochs=1, max_length=32, random_state=0).fit(X, y)
    assert np.abs(rnd.predict_proba(X) - probe.predict_proba(Z)).max() > 0.05


def test_lora_probe_head_survives_save_and_load(small, tmp_path):
    from sktransfer import LoRAClassifier

    X, y = small
    clf = LoRAClassifier(TEXT, head_init="probe", lr=1e-12, max_epochs=1, max_length=32, random_state=0).fit(X, y)
    back = LoRAClassifier.load(clf.save(tmp_path / "m"))
    assert back.head_init == "probe"
    np.testing.assert_allclose(back.predict_proba(X), clf.predict_proba(X), atol=1e-6)


@pytest.mark.parametrize("params, message", [
    ({"head_init": "lp"}, r"'head_init' parameter of \w+ must be a str among .*'probe'.* Got 'lp'"),
    ({"head_init": "probe", "head": "mlp"}, "head='mlp' is not linear"),
])
def test_lora_bad_head_init_is_refused(small, params, message):
    from sktransfer import LoRAClassifier

    X, y = small
    with pytest.raises(ValueError, match=message):
        LoRAClassifier(TEXT, max_epochs=1, **params).fit(X, y)


# ------------------------------------------------------------------- DANN
def test_dann_probe_sets_the_class_head_from_labelled_source_rows(small, monkeypatch):
    from sktransfer.adaptation import DANNClassifier

    X, y = small
    X_target = [t[::-1] for t in X[:5]]
    seen = []
    original = head_init_module.init_head_from_probe

    def spy(module, Xd, y_enc, **kwargs):
        seen.append(np.asarray(y_enc).copy())
        return original(module, Xd, y_enc, **kwargs)

    monkeypatch.setattr(head_init_module, "init_head_from_probe", spy)
    clf = DANNClassifier(TEXT, head_init="probe", lr=1e-12, max_epochs=1, max_length=32,
                         random_state=0).fit(X, y, X_target=X_target)
    assert len(seen) == 1 and len(seen[0]) == len(y) and (seen[0] >= 0).all()  # no target row
    Z = _probe_features(X)
    probe = LogisticRegression(max_iter=2000).fit(Z, y)
    np.testing.assert_allclose(clf.predict_proba(X), probe.predict_proba(Z), atol=PROBE_ATOL)


def test_dann_bad_head_init_is_refused(small):
    from sktransfer.adaptation import DANNClassifier

    X, y = small
    with pytest.raises(ValueError, match=r"'head_init' parameter of DANNClassifier must be a str among .*'probe'.* Got 'lp'"):
        DANNClassifier(TEXT, head_init="lp", max_epochs=1).fit(X, y, X_target=X[:3])


@pytest.mark.parametrize("cls_path", ["sktransfer.LoRAClassifier", "sktransfer.adaptation.DANNClassifier"])
def test_pickles_from_before_head_init_load_with_a_random_head(cls_path):
    import importlib

    module, name = cls_path.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    state = cls(TEXT).__getstate__()
    del state["head_init"]  # a pickle written before the parameter existed
    est = cls.__new__(cls)
    est.__setstate__(state)
    assert est.get_params()["head_init"] == "random"

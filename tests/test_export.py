"""Fitted estimators predict through the compiled backends (issue 13, part 2).

FineTunedClassifier / FineTunedRegressor, LoRAClassifier (merged) and
FewShotClassifier export their trained body + head (FewShot: body) with
``export(path, backend, quantize)`` and predict through it with
``inference_backend``. Tiny real fits (MiniLM on BBC snippets, 32 tokens;
EfficientNet-Lite0 on 32 px digits), compared with the torch predictions on
held-out rows. Label agreement of each arm is printed (``-s``) and asserted.
"""

import pickle
import sys
import warnings

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from sktransfer import FewShotClassifier, FineTunedClassifier, FineTunedRegressor, LoRAClassifier
from sktransfer import _runtime

from conftest import IMAGE, TEXT

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")
pytest.importorskip("nncf")

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore::UserWarning")]

FAST = dict(max_epochs=1, max_length=32, random_state=0, device="cpu")
MIN_FP32_AGREEMENT = 0.995  # issue 13's target; measured: 1.0 on every fp32 arm here
MIN_INT8_AGREEMENT = 0.9  # reported: a 1-epoch model on a few rows has close calls


def _agreement(a, b, what):
    agree = float(np.mean(np.asarray(a) == np.asarray(b)))
    print(f"\n[export] label agreement {what}: {agree:.3f} ({len(a)} rows)")
    return agree


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory):
    """Compiled models in a module-wide temporary cache (not the user's)."""
    from sktransfer import config_context

    with config_context(cache_dir=str(tmp_path_factory.mktemp("export-cache"))):
        yield


@pytest.fixture(scope="module")
def texts(bbc):
    rng = np.random.RandomState(0)
    idx = rng.permutation(len(bbc.data))[:100]
    X = [bbc.data[i][:300] for i in idx]
    y = np.asarray(bbc.target_names)[bbc.target[idx]]
    return X[:40], y[:40], X[40:]


def _digits(rows):
    from sklearn.datasets import load_digits

    d = load_digits()
    X = [np.repeat((d.images[i] * 15).astype(np.uint8)[..., None], 3, axis=-1) for i in rows]
    return X, d.target[list(rows)]


@pytest.fixture(scope="module")
def text_clf(texts):
    X, y, _ = texts
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return FineTunedClassifier(TEXT, strategy="full", head_init="random", lr=1e-3, **FAST).fit(X, y)


@pytest.fixture(scope="module")
def image_clf():
    """Fitted with ONNX int8 inference: calibrated at fit, on its training rows."""
    X, y = _digits(range(60))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = FineTunedClassifier(
            IMAGE, strategy="full", head_init="random", image_size=32, augment=False,
            inference_backend="onnx", inference_quantize="int8", **FAST,
        )
        return clf.fit(X, y)


def _with(est, backend, quantize=None):
    return est.set_params(inference_backend=backend, inference_quantize=quantize)


# ------------------------------------------------------------------ text
def test_text_onnx_fp32_predicts_as_torch(text_clf, texts):
    X_test = texts[2]
    ref_proba, ref = _with(text_clf, "torch").predict_proba(X_test), text_clf.predict(X_test)
    ref_emb = text_clf.transform(X_test[:8])
    try:
        _with(text_clf, "onnx")
        proba, labels = text_clf.predict_proba(X_test), text_clf.predict(X_test)
        emb = text_clf.transform(X_test[:8])
    finally:
        _with(text_clf, "torch")
    assert _agreement(labels, ref, "MiniLM fine-tuned, ONNX fp32") >= MIN_FP32_AGREEMENT
    np.testing.assert_allclose(proba, ref_proba, atol=1e-4)
    np.testing.assert_allclose(emb, ref_emb, atol=1e-4)


def test_text_int8(text_clf, texts):
    X_test = texts[2]
    ref = _with(text_clf, "torch").predict(X_test)
    try:
        int8 = _with(text_clf, "onnx", "int8").predict(X_test)  # dynamic: no calibration needed
    finally:
        _with(text_clf, "torch")
    assert _agreement(int8, ref, "MiniLM fine-tuned, ONNX int8 (dynamic)") >= MIN_INT8_AGREEMENT


def test_exported_onnx_runs_in_a_bare_session(text_clf, texts, tmp_path):
    """What a user deploying the file does: onnxruntime and the model's tokenizer, no sktransfer."""
    import onnxruntime as ort

    from sktransfer.backbones import load_backbone

    X_test = texts[2][:12]
    path = text_clf.export(tmp_path / "clf.onnx")
    assert path.endswith("clf.onnx")
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["logits", "embedding"]
    tokenizer = load_backbone(TEXT).tokenizer
    enc = tokenizer(X_test, padding=True, truncation=True, max_length=32, return_tensors="np")
    feed = {i.name: enc[i.name].astype(np.int64) for i in session.get_inputs()}
    logits = session.run(["logits"], feed)[0]
    np.testing.assert_allclose(logits, text_clf.decision_function(X_test), atol=1e-4)
    assert (text_clf.classes_[logits.argmax(1)] == text_clf.predict(X_test)).all()


def test_regressor_predicts_in_y_units(texts):
    X, _, X_test = texts
    y = np.array([len(t) for t in X], dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg = FineTunedRegressor(TEXT, strategy="linear_probe", lr=1e-2, **FAST).fit(X, y)
    ref = reg.predict(X_test[:16])
    pred = reg.set_params(inference_backend="onnx").predict(X_test[:16])
    assert pred.shape == ref.shape == (16,)
    np.testing.assert_allclose(pred, ref, rtol=1e-4, atol=1e-3)


# ----------------------------------------------------------------- image
def test_image_int8_calibrated_at_fit_and_fp32(image_clf):
    X_test, _ = _digits(range(100, 160))
    int8 = image_clf.predict(X_test)  # the model fitted with ONNX int8
    ref_proba = _with(image_clf, "torch").predict_proba(X_test)
    ref = image_clf.classes_[ref_proba.argmax(1)]
    try:
        fp32_proba = _with(image_clf, "onnx").predict_proba(X_test)
        ov = _with(image_clf, "openvino").predict(X_test)
    finally:
        _with(image_clf, "onnx", "int8")
    assert _agreement(int8, ref, "EfficientNet-Lite0 fine-tuned, ONNX int8 (NNCF static)") >= MIN_INT8_AGREEMENT
    assert _agreement(image_clf.classes_[fp32_proba.argmax(1)], ref, "EfficientNet-Lite0, ONNX fp32") >= MIN_FP32_AGREEMENT
    assert _agreement(ov, ref, "EfficientNet-Lite0, OpenVINO fp32") >= MIN_FP32_AGREEMENT
    np.testing.assert_allclose(fp32_proba, ref_proba, atol=1e-4)


def test_unpickled_calibrated_model_is_read_back(image_clf):
    X_test, _ = _digits(range(100, 116))
    before = image_clf.predict_proba(X_test)
    builds = _runtime.runtime_stats()["builds"]
    again = pickle.loads(pickle.dumps(image_clf))
    assert "_runners" not in again.__dict__
    np.testing.assert_array_equal(again.predict_proba(X_test), before)
    assert _runtime.runtime_stats()["builds"] == builds  # read from the cache, not rebuilt


def test_calibrated_int8_without_rows_asks_for_them(image_clf, tmp_path):
    est = pickle.loads(pickle.dumps(image_clf)).set_params(inference_backend="openvino")
    X_test, _ = _digits(range(100, 104))
    with pytest.raises(ValueError, match=r"calibrat.*rows given to fit.*export\(path"):
        est.predict(X_test)
    with pytest.raises(ValueError, match="calibration=X"):
        est.export(tmp_path / "m.xml", backend="openvino", quantize="int8")
    # Other calibration rows: another model, calibrated for the export.
    path = est.export(tmp_path / "m.onnx", backend="onnx", quantize="int8", calibration=_digits(range(200, 204))[0])
    assert path.endswith("m.onnx")
    # The one fitted with it needs no rows: its compiled model is reused.
    assert image_clf.export(tmp_path / "int8.onnx", backend="onnx", quantize="int8").endswith("int8.onnx")


def test_exported_openvino_model_gives_the_logits(image_clf, tmp_path):
    import openvino as ov

    X_test, _ = _digits(range(100, 108))
    xml, _ = image_clf.export(tmp_path / "clf", backend="openvino")
    model = ov.Core().compile_model(xml, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    from sktransfer.backbones import load_backbone

    bb = load_backbone(IMAGE)
    crops = bb.module_inputs(bb.check_inputs(X_test), np.arange(len(X_test)), image_size=32)["X"].numpy()
    logits = model({"X": crops})[model.output("logits")]
    ref = _with(image_clf, "torch").decision_function(X_test)
    _with(image_clf, "onnx", "int8")
    np.testing.assert_allclose(logits, ref, atol=1e-3)


# ------------------------------------------------------- LoRA, FewShot
def test_lora_merged_export_predicts_as_peft(texts, tmp_path):
    import onnxruntime as ort

    X, y, X_test = texts
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lora = LoRAClassifier(TEXT, r=4, head_init="random", **FAST).fit(X, y)
    ref_proba, ref = lora.predict_proba(X_test), lora.predict(X_test)  # the PEFT model
    proba = lora.set_params(inference_backend="onnx").predict_proba(X_test)
    assert _agreement(lora.classes_[proba.argmax(1)], ref, "LoRA merged, ONNX fp32") >= MIN_FP32_AGREEMENT
    np.testing.assert_allclose(proba, ref_proba, atol=1e-4)
    session = ort.InferenceSession(lora.export(tmp_path / "lora.onnx"))
    assert not any("lora" in init.name for init in __import__("onnx").load(tmp_path / "lora.onnx").graph.initializer)
    assert [o.name for o in session.get_outputs()] == ["logits", "embedding"]


def test_few_shot_exports_its_body(texts, tmp_path):
    import onnxruntime as ort

    X, y, X_test = texts
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = FewShotClassifier(TEXT, n_pairs=16, inference_backend="onnx", **FAST).fit(X, y)
    labels, emb = clf.predict(X_test), clf.transform(X_test[:8])
    clf.set_params(inference_backend="torch")
    assert _agreement(labels, clf.predict(X_test), "FewShot tuned body, ONNX fp32") >= MIN_FP32_AGREEMENT
    np.testing.assert_allclose(emb, clf.transform(X_test[:8]), atol=1e-4)
    session = ort.InferenceSession(clf.export(tmp_path / "body.onnx"))
    assert [o.name for o in session.get_outputs()] == ["embedding"]
    again = pickle.loads(pickle.dumps(clf.set_params(inference_backend="onnx")))
    np.testing.assert_allclose(again.transform(X_test[:8]), emb, atol=1e-6)


# --------------------------------------------------------------- errors
@pytest.mark.parametrize("cls", [FineTunedClassifier, FineTunedRegressor, LoRAClassifier, FewShotClassifier])
def test_export_before_fit(cls, tmp_path):
    with pytest.raises(NotFittedError):
        cls(TEXT).export(tmp_path / "m.onnx")


def test_bad_backend_or_quantize(text_clf, texts, tmp_path):
    with pytest.raises(ValueError, match=r"backend='tensorrt'.*'onnx', 'openvino'"):
        text_clf.export(tmp_path / "m.onnx", backend="tensorrt")
    with pytest.raises(ValueError, match=r"backend='torch'.*'onnx', 'openvino'.*save\(path\)"):
        text_clf.export(tmp_path / "m.onnx", backend="torch")
    with pytest.raises(ValueError, match=r"quantize='int4'.*None, 'int8'"):
        text_clf.export(tmp_path / "m.onnx", quantize="int4")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        text_clf.export(tmp_path / "no" / "such" / "m.onnx")
    X, y, _ = texts
    with pytest.raises(ValueError, match=r"'inference_backend' parameter.*'tensorrt'") as err:
        FineTunedClassifier(TEXT, inference_backend="tensorrt").fit(X[:4], y[:4])
    assert all(repr(b) in str(err.value) for b in ("torch", "onnx", "openvino"))
    with pytest.raises(ValueError, match="inference_quantize='int8' needs inference_backend"):
        FewShotClassifier(TEXT, inference_quantize="int8").fit(X[:4], y[:4])


@pytest.mark.parametrize("backend, module, extra", [("onnx", "onnxruntime", "onnx"), ("openvino", "openvino", "openvino")])
def test_missing_package_is_named_before_training(texts, monkeypatch, backend, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # import fails
    X, y, _ = texts
    with pytest.raises(ImportError, match=rf"{module!r}.*pip install 'sktransfer\[{extra}\]'"):
        FineTunedClassifier(TEXT, inference_backend=backend, **FAST).fit(X[:4], y[:4])


def test_parameters_clone_and_save(text_clf, texts, tmp_path):
    from sklearn.base import clone

    assert clone(text_clf.set_params(inference_backend="onnx")).get_params()["inference_backend"] == "onnx"
    text_clf.save(tmp_path / "saved")
    _with(text_clf, "torch")
    loaded = FineTunedClassifier.load(tmp_path / "saved")
    assert loaded.inference_backend == "onnx"
    X_test = texts[2][:10]
    np.testing.assert_allclose(loaded.predict_proba(X_test), text_clf.predict_proba(X_test), atol=1e-4)

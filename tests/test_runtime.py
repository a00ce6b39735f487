"""Compiled CPU backends (issue 13, part 1): ONNX Runtime and OpenVINO, fp32 and int8.

Each backend × quantization runs the real offline backbones (MiniLM on BBC
snippets, EfficientNet-Lite0 on sklearn digits) and is compared with the torch
body; the compiled models are exported once per module (a shared cache).
"""

import os
import sys
import time
import warnings

import numpy as np
import pytest
import torch

from sktransfer import _runtime
from sktransfer.backbones import load_backbone

from conftest import IMAGE, TEXT

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")
pytest.importorskip("nncf")

pytestmark = pytest.mark.usefixtures("one_thread")


def _cosine(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _digits(rows):
    from sklearn.datasets import load_digits

    images = load_digits().images
    return [np.repeat((images[i] * 15).astype(np.uint8)[..., None], 3, axis=-1) for i in rows]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("rt-cache"))


@pytest.fixture(scope="module")
def case(bbc):
    """Per modality: the backbone, calibration rows, one test batch and the torch embeddings."""
    cases = {}
    text = load_backbone(TEXT, device="cpu")
    calib = text.check_inputs([bbc.data[i][:300] for i in range(0, 80, 10)])
    test = text.check_inputs([bbc.data[i][:400] for i in range(1, 60, 10)])
    cases["text"] = (text, calib, test)
    image = load_backbone(IMAGE, device="cpu")
    cases["image"] = (image, image.check_inputs(_digits(range(8))), image.check_inputs(_digits(range(100, 106))))
    out = {}
    for modality, (bb, calib, test) in cases.items():
        batch = bb.module_inputs(test, np.arange(len(test)))
        ref = bb.embed(batch["X"] if "X" in batch else batch).numpy()
        out[modality] = (bb, calib, batch, ref)
    return out


_runners = {}


def _compile(case, root, modality, backend, quantize):
    key = (modality, backend, quantize)
    if key not in _runners:
        bb, calib, _, _ = case[modality]
        _runners[key] = _runtime.compile_body(bb, backend, quantize, calibration=calib, cache_dir=root)
    return _runners[key]


# Measured here: MiniLM int8 mean cosine 0.995 (ONNX dynamic MatMul, OpenVINO NNCF);
# EfficientNet-Lite0 int8 0.988 (NNCF QDQ in ONNX) and 0.980 (OpenVINO), with 8 calibration digits.
MIN_MEAN_COSINE = {None: 0.9999, ("text", "int8"): 0.99, ("image", "int8"): 0.97}
# OpenVINO's CNN int8 uses the full-bias-correction recipe (CNN_INT8_RECIPE): 0.984 on these digits.
MIN_MEAN_COSINE_OPENVINO_CNN_INT8 = 0.98


@pytest.mark.parametrize("quantize", [None, "int8"])
@pytest.mark.parametrize("backend", ["onnx", "openvino"])
@pytest.mark.parametrize("modality", ["text", "image"])
def test_backend_matches_torch(case, root, modality, backend, quantize):
    _, _, batch, ref = case[modality]
    t0 = time.perf_counter()
    runner = _compile(case, root, modality, backend, quantize)
    t1 = time.perf_counter()
    out = runner(**batch)
    t2 = time.perf_counter()
    assert out.dtype == np.float32 and out.shape == ref.shape
    cos = _cosine(out, ref)
    print(f"{modality} {backend} {quantize}: compile {t1 - t0:.1f}s, run {t2 - t1:.3f}s, cosine mean {cos.mean():.4f} min {cos.min():.4f}")
    if quantize is None:
        assert cos.min() >= MIN_MEAN_COSINE[None]
    else:
        floor = MIN_MEAN_COSINE[(modality, quantize)]
        if (modality, backend) == ("image", "openvino"):
            floor = MIN_MEAN_COSINE_OPENVINO_CNN_INT8
        assert cos.mean() >= floor
    assert runner.path and os.path.isfile(runner.path)
    # dynamic batch: one row alone (int8 activations are quantized per batch: close, not equal)
    one = runner(**{k: v[:1] for k, v in batch.items()})
    if quantize is None:
        np.testing.assert_allclose(one[0], out[0], rtol=1e-3, atol=1e-3 * np.abs(out[0]).max())
    else:
        assert _cosine(one, ref[:1])[0] >= MIN_MEAN_COSINE[(modality, quantize)] - 0.02


def test_cache_is_reused_and_keys_separate(case, root):
    bb, calib, batch, ref = case["text"]
    first = _compile(case, root, "text", "onnx", None)
    before = _runtime.runtime_stats()
    t0 = time.perf_counter()
    again = _runtime.compile_body(bb, "onnx", None, cache_dir=root)
    print(f"MiniLM ONNX loaded from the cache in {time.perf_counter() - t0:.2f}s")
    after = _runtime.runtime_stats()
    assert again.built is False and after["exports"] == before["exports"] and after["builds"] == before["builds"]
    assert again.path == first.path
    np.testing.assert_allclose(again(**batch), first(**batch), rtol=1e-5, atol=1e-6)
    # backend and quantization in the key; calibration rows in the key of calibrated int8
    paths = {_compile(case, root, "text", b, q).path for b in ("onnx", "openvino") for q in (None, "int8")}
    assert len(paths) == 4
    spec = bb.export_spec()
    keys = {
        _runtime._Context(bb, spec, bb.name, root, _runtime._calibration_batches(bb, rows, None, None)).key("openvino", "int8")
        for rows in (calib, calib[:4])
    }
    assert len(keys) == 2



def test_cnn_int8_recipe_is_in_the_key(case, root, monkeypatch):
    """A changed NNCF recipe for CNNs rebuilds the model (new key); transformers' keys ignore it."""
    def keys(modality):
        bb, calib = case[modality][0], _runtime._calibration_batches(case[modality][0], case[modality][1], None, None)
        out = set()
        for recipe in _runtime.CNN_INT8_RECIPES:
            monkeypatch.setattr(_runtime, "CNN_INT8_RECIPE", recipe)
            out.add(_runtime._Context(bb, bb.export_spec(), bb.name, root, calib).key("openvino", "int8"))
        return out

    assert len(keys("image")) == len(_runtime.CNN_INT8_RECIPES)
    assert len(keys("text")) == 1
    monkeypatch.setattr(_runtime, "CNN_INT8_RECIPE", "no-such-recipe")
    with pytest.raises(ValueError, match="CNN_INT8_RECIPE='no-such-recipe'.*'nncf_default'"):
        _runtime.compile_body(case["image"][0], "openvino", "int8", calibration=case["image"][1], cache_dir=root)

def test_cache_hit_marks_the_model_used(case, root):
    """Loading a compiled model from the cache refreshes its time: ``cache prune --compiled``
    removes the least recently *used* models, not the first built."""
    bb = case["text"][0]
    path = _compile(case, root, "text", "onnx", None).path
    old = time.time() - 40 * 86400
    os.utime(path, (old, old))
    again = _runtime.compile_body(bb, "onnx", None, cache_dir=root)
    assert again.built is False and again.path == path
    assert os.stat(path).st_mtime > time.time() - 3600


def test_corrupt_cached_model_is_exported_again(case, root):
    bb, calib, batch, ref = case["image"]
    runner = _compile(case, root, "image", "onnx", None)
    data = bytearray(open(runner.path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    with open(runner.path, "wb") as f:
        f.write(bytes(data))
    before = _runtime.runtime_stats()["exports"]
    with pytest.warns(UserWarning, match="exported again"):
        fresh = _runtime.compile_body(bb, "onnx", None, cache_dir=root)
    assert fresh.built is True and _runtime.runtime_stats()["exports"] == before + 1
    assert _cosine(fresh(**batch), ref).min() >= 0.9999
    with open(runner.path, "wb") as f:  # truncated: the same
        f.write(bytes(data[:100]))
    with pytest.warns(UserWarning, match="exported again"):
        _runtime.compile_body(bb, "onnx", None, cache_dir=root)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and now it is sound again
        assert _runtime.compile_body(bb, "onnx", None, cache_dir=root).built is False


# ---------------------------------------------------------------- errors
def test_unknown_backend_or_quantize(case, root):
    bb = case["text"][0]
    with pytest.raises(ValueError, match="backend='tensorrt'.*'onnx', 'openvino'"):
        _runtime.compile_body(bb, "tensorrt", cache_dir=root)
    with pytest.raises(ValueError, match="quantize='int4'.*None, 'int8'"):
        _runtime.compile_body(bb, "onnx", "int4", cache_dir=root)


@pytest.mark.parametrize("backend, module, extra", [("onnx", "onnxruntime", "onnx"), ("openvino", "openvino", "openvino")])
def test_missing_package_names_the_extra(case, root, monkeypatch, backend, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # import fails
    with pytest.raises(ImportError, match=rf"{module!r}.*pip install 'sktransfer\[{extra}\]'"):
        _runtime.compile_body(case["text"][0], backend, cache_dir=root)


def test_static_int8_needs_calibration(case, root):
    with pytest.raises(ValueError, match="calibration"):
        _runtime.compile_body(case["image"][0], "onnx", "int8", cache_dir=root)
    with pytest.raises(ValueError, match="calibration"):
        _runtime.compile_body(case["text"][0], "openvino", "int8", calibration=[], cache_dir=root)


def test_intermediate_layer_is_not_exported(case, root):
    with pytest.raises(ValueError, match=r"backend='onnx'.*all-MiniLM-L6-v2.*layer=2"):
        _runtime.compile_body(case["text"][0], "onnx", layer=2, cache_dir=root)


def test_backbone_that_cannot_export(root):
    class SVDBody(torch.nn.Module):  # no ONNX symbolic for linalg.svd
        def forward(self, x):
            return torch.linalg.svdvals(x.float().mean(1))

    bb = load_backbone(SVDBody())
    with pytest.raises(ValueError, match=r"Backbone 'SVDBody' could not be exported to ONNX.*linalg_svdvals"):
        _runtime.compile_body(bb, "openvino", cache_dir=root)

    from sktransfer.backbones._base import Backbone

    plain = Backbone("my-model", torch.nn.Identity(), 4, "module")
    with pytest.raises(ValueError, match=r"backend='onnx' cannot run backbone 'my-model'"):
        _runtime.compile_body(plain, "onnx", cache_dir=root)


def test_runner_input_errors_and_pickling(case, root):
    import pickle

    runner = _compile(case, root, "text", "onnx", None)
    batch = case["text"][2]
    with pytest.raises(ValueError, match="Unexpected inputs.*'X'"):
        runner(**batch, X=np.zeros(1))
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(runner)


# ------------------------------------------------ PretrainedFeatureExtractor
def test_extractor_backend_embeds_as_torch_and_keys_the_cache(bbc, root):
    import pickle

    from sktransfer import PretrainedFeatureExtractor, embedding_stats, reset_embedding_stats

    texts = [bbc.data[i][:300] for i in range(0, 40, 4)]
    cache = os.path.join(root, "embeddings")
    torch_emb = PretrainedFeatureExtractor(TEXT, cache=cache).fit_transform(texts)
    ext = PretrainedFeatureExtractor(TEXT, backend="onnx", cache=cache).fit(texts)
    assert ext.compiled_key_ and os.path.exists(ext.compiled_path_)
    reset_embedding_stats()
    onnx_emb = ext.transform(texts)
    # Not served from the torch rows of the same cache: computed by ONNX Runtime.
    assert embedding_stats()["computed"] == len(texts)
    assert _cosine(onnx_emb, torch_emb).min() > 0.9999
    int8 = PretrainedFeatureExtractor(TEXT, backend="onnx", quantize="int8", cache=cache).fit(texts)
    assert int8.compiled_key_ != ext.compiled_key_
    q = int8.transform(texts)
    assert 0.99 < _cosine(q, torch_emb).mean() < 0.99999  # int8: close, not the same rows
    # Pickled without its native session, loaded again from the compiled-model cache.
    back = pickle.loads(pickle.dumps(int8))
    np.testing.assert_allclose(back.transform(texts[:3]), q[:3], atol=1e-5)


def test_extractor_calibrated_int8_after_unpickling(root):
    import pickle

    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from sktransfer import PretrainedFeatureExtractor

    d = load_digits()
    X = [np.repeat((img * 15).astype(np.uint8)[..., None], 3, axis=-1) for img in d.images[:160]]
    y = d.target[:160]
    kw = {"image_size": 64, "cache": False}
    ref = make_pipeline(PretrainedFeatureExtractor(IMAGE, **kw), LogisticRegression(max_iter=2000))
    ov = make_pipeline(PretrainedFeatureExtractor(IMAGE, backend="openvino", quantize="int8", **kw),
                       LogisticRegression(max_iter=2000))
    acc_ref = ref.fit(X[:120], y[:120]).score(X[120:], y[120:])
    acc_ov = ov.fit(X[:120], y[:120]).score(X[120:], y[120:])
    assert acc_ov >= acc_ref - 0.1  # 40 test rows: a couple of rows of slack
    ext = ov[0]
    back = pickle.loads(pickle.dumps(ext))
    np.testing.assert_allclose(back.transform(X[120:124]), ext.transform(X[120:124]), atol=1e-5)
    # The calibrated model cannot be rebuilt without the fit rows: a clear error if it is gone.
    os.remove(ext.compiled_path_)
    gone = pickle.loads(pickle.dumps(ext))
    with pytest.raises(ValueError, match="no longer at .*fit it again"):
        gone.transform(X[120:124])


@pytest.mark.parametrize(
    "params, match",
    [
        ({"quantize": "int8"}, "quantize='int8' needs backend='onnx' or 'openvino'"),
        ({"backend": "onnx", "layer": 2}, "runs the final embedding only; layer=2"),
        ({"backend": "tensorrt"}, "backend"),
        ({"backend": "onnx", "quantize": "int4"}, "quantize"),
    ],
)
def test_extractor_backend_errors(params, match):
    from sktransfer import PretrainedFeatureExtractor

    with pytest.raises(ValueError, match=match):
        PretrainedFeatureExtractor(TEXT, **params).fit(["a text", "another"])

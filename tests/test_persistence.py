"""Saves, loads and pickles: tamper evidence, clear errors, small pickles.

Every estimator with ``save`` is fitted once on a few short real texts
(MiniLM, one epoch) and saved; each test then damages a copy of the save
the way a disk, a hand edit or a mix-up would, and checks that ``load``
refuses it with an error naming the file, never loads it silently.
"""

import json
import os
import pickle
import re
import shutil
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

from conftest import IMAGE, TEXT
from sktransfer import (
    BackboneSelector,
    DANNClassifier,
    EmbeddingDAClassifier,
    FewShotClassifier,
    FineTunedClassifier,
    FineTunedRegressor,
    LoRAClassifier,
    PretrainedFeatureExtractor,
    ZeroShotClassifier,
)

SHORT = dict(max_length=24, max_epochs=1, batch_size=8, random_state=0)
WEIGHTS = {
    "ft": "model.safetensors",
    "reg": "model.safetensors",
    "dann": "model.safetensors",
    "lora": "adapter.safetensors",
    "fewshot": "body.safetensors",
}
CLASSES = {"ft": FineTunedClassifier, "reg": FineTunedRegressor, "dann": DANNClassifier, "lora": LoRAClassifier, "fewshot": FewShotClassifier}


@pytest.fixture(scope="module")
def data(bbc_small):
    X, y = bbc_small
    order = np.random.RandomState(0).permutation(len(y))
    return [X[i][:160] for i in order], y[order]


@pytest.fixture(scope="module")
def fitted(data, one_thread):
    """One fitted estimator of each kind that saves, and its reference outputs."""
    X, y = data
    Xtr, ytr = X[:20], y[:20]
    models = {
        "ft": FineTunedClassifier(TEXT, strategy="partial", unfreeze_last=1, **SHORT).fit(Xtr, ytr),
        "reg": FineTunedRegressor(TEXT, strategy="linear_probe", **SHORT).fit(Xtr, np.arange(20.0)),
        "dann": DANNClassifier(TEXT, strategy="partial", unfreeze_last=1, **SHORT).fit(Xtr[:12], ytr[:12], X_target=Xtr[12:]),
        "lora": LoRAClassifier(TEXT, r=4, lr=5e-3, **SHORT).fit(Xtr, ytr),
        "fewshot": FewShotClassifier(TEXT, n_pairs=8, batch_size=8, max_length=24, random_state=0).fit(Xtr, ytr),
    }
    return models


@pytest.fixture(scope="module")
def saves(fitted, tmp_path_factory):
    root = tmp_path_factory.mktemp("saves")
    return {name: est.save(str(root / name)) for name, est in fitted.items()}


def _copy(saves, name, tmp_path):
    dst = tmp_path / name
    shutil.copytree(saves[name], dst)
    return dst


def _resign(path):
    """Rewrite the manifest for the files as they are now (a consistent but wrong save)."""
    try:
        from sktransfer._persistence import write_manifest
    except ImportError:  # sktransfer before manifests: nothing to rewrite
        return
    manifest = json.loads((path / "manifest.json").read_text())
    write_manifest(str(path), list(manifest["files"]), manifest["estimator"])


def _edit_config(path, edit, resign=True):
    cfg = json.loads((path / "config.json").read_text())
    edit(cfg)
    (path / "config.json").write_text(json.dumps(cfg))
    if resign:
        _resign(path)


def _load(name, path, **kw):
    return CLASSES[name].load(str(path), **kw)


def _outputs(est, X):
    return est.predict(X) if isinstance(est, FineTunedRegressor) else est.predict_proba(X)


# --------------------------------------------------------------- manifest
@pytest.mark.parametrize("name", sorted(WEIGHTS))
def test_every_save_writes_a_manifest_and_loads_back(name, fitted, saves, data):
    path = saves[name]
    manifest = json.loads(open(os.path.join(path, "manifest.json")).read())
    assert manifest["format_version"] == 1 and manifest["sktransfer_version"]
    files = set(os.listdir(path)) - {"manifest.json"}
    assert set(manifest["files"]) == files and WEIGHTS[name] in files
    assert all(len(e["sha256"]) == 64 for e in manifest["files"].values())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a verified save loads without a word
        back = _load(name, path)
    X, _ = data
    np.testing.assert_allclose(_outputs(back, X[20:24]), _outputs(fitted[name], X[20:24]), atol=1e-5)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a CPU-only machine")
@pytest.mark.parametrize("name", sorted(WEIGHTS))
def test_a_model_saved_on_a_gpu_loads_on_a_cpu_only_machine(name, fitted, saves, data, tmp_path):
    # Trained on a GPU (device="cuda:0" saved), deployed on a CPU: the load falls back to "auto" and says so.
    path = _copy(saves, name, tmp_path)
    _edit_config(path, lambda cfg: cfg["params"].update(device="cuda:0"))
    with pytest.warns(UserWarning, match=r"device='cuda:0'.*loaded with device='auto'"):
        back = _load(name, path)
    assert back.device == "auto"
    X, _ = data
    np.testing.assert_allclose(_outputs(back, X[20:24]), _outputs(fitted[name], X[20:24]), atol=1e-5)


@pytest.mark.parametrize("name", ["ft", "lora", "fewshot"])
def test_classifier_saves_share_one_config_layout(name, saves):
    cfg = json.loads(open(os.path.join(saves[name], "config.json")).read())
    assert cfg["class"] == CLASSES[name].__name__ and isinstance(cfg["params"], dict)
    assert isinstance(cfg["fitted"]["classes"], list) and "classes" not in cfg


def _as_saved_by_0_1(path, label_descriptions):
    """A FewShotClassifier save rewritten in the layout sktransfer 0.1 wrote (body and head files
    unchanged): ``classes`` and ``label_descriptions`` (as pairs) beside ``params``, not in
    ``fitted`` and ``params``; the manifest rewritten to match, as 0.1 wrote one."""

    def old_layout(cfg):
        cfg["classes"] = cfg["fitted"].pop("classes")
        del cfg["params"]["label_descriptions"]
        cfg["label_descriptions"] = label_descriptions

    _edit_config(path, old_layout)


def test_a_few_shot_save_in_the_0_1_layout_loads(fitted, saves, data, tmp_path):
    path = _copy(saves, "fewshot", tmp_path)
    _as_saved_by_0_1(path, [["business", "money and markets"]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = FewShotClassifier.load(str(path))
    X, _ = data
    np.testing.assert_allclose(back.predict_proba(X[20:24]), fitted["fewshot"].predict_proba(X[20:24]), atol=1e-5)
    assert back.classes_.tolist() == fitted["fewshot"].classes_.tolist()
    assert back.get_params()["label_descriptions"] == {"business": "money and markets"}
    # And one without label descriptions (the usual case), re-saved in today's layout.
    path = _copy(saves, "fewshot", tmp_path / "plain")
    _as_saved_by_0_1(path, None)
    again = FewShotClassifier.load(FewShotClassifier.load(str(path)).save(str(tmp_path / "resaved")))
    assert again.get_params()["label_descriptions"] is None
    np.testing.assert_allclose(again.predict_proba(X[20:24]), back.predict_proba(X[20:24]), atol=1e-6)


def test_garbled_label_descriptions_in_a_few_shot_save_are_named(saves, tmp_path):
    path = _copy(saves, "fewshot", tmp_path)
    _edit_config(path, lambda cfg: cfg["params"].update(label_descriptions=[["a", "b", "c"]]))
    with pytest.raises(ValueError, match=r"config\.json': label_descriptions is not a list of \[key, value\] pairs"):
        FewShotClassifier.load(str(path))


@pytest.mark.parametrize("name", sorted(WEIGHTS))
def test_one_flipped_byte_in_the_weights_is_refused_naming_the_file(name, saves, tmp_path):
    path = _copy(saves, name, tmp_path)
    f = path / WEIGHTS[name]
    raw = bytearray(f.read_bytes())
    raw[len(raw) - 1001] ^= 0x01  # inside the tensor data, not the header
    f.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=rf"{WEIGHTS[name]}.*SHA-256") as err:
        _load(name, path)
    from sktransfer import SaveIntegrityError  # public: users can catch exactly this

    assert isinstance(err.value, SaveIntegrityError)


def test_flipped_byte_in_a_few_shot_head_is_refused(saves, tmp_path):
    path = _copy(saves, "fewshot", tmp_path)
    f = path / "head.skops"
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    f.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"head\.skops.*SHA-256"):
        FewShotClassifier.load(str(path))


@pytest.mark.parametrize("name", ["ft", "dann", "lora", "fewshot"])
def test_reversed_classes_in_the_config_are_refused(name, saves, tmp_path):
    path = _copy(saves, name, tmp_path)

    def reverse(cfg):
        cfg["fitted"]["classes"] = cfg["fitted"]["classes"][::-1]

    _edit_config(path, reverse, resign=False)
    with pytest.raises(ValueError, match=r"config\.json.*SHA-256"):
        _load(name, path)


# --------------------------------------------------- damaged / missing files
@pytest.mark.parametrize("name", ["ft", "lora", "fewshot"])
def test_truncated_or_non_json_config_names_the_file(name, saves, tmp_path):
    path = _copy(saves, name, tmp_path)
    cfg = path / "config.json"
    cfg.write_text(cfg.read_text()[:40])
    with pytest.raises(ValueError, match=r"config\.json.*SHA-256"):
        _load(name, path)
    os.remove(path / "manifest.json")  # a lost manifest, or an old save: nothing to check digests against
    with pytest.warns(UserWarning, match="no manifest.json"), pytest.raises(ValueError, match=r"config\.json' is not valid JSON"):
        _load(name, path)
    cfg.write_bytes(b"\xff\xfe not json")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match=r"config\.json' is not valid JSON"):
        _load(name, path)


def test_a_damaged_manifest_names_itself(saves, tmp_path):
    path = _copy(saves, "ft", tmp_path)
    (path / "manifest.json").write_text('{"files": ')
    with pytest.raises(ValueError, match=r"manifest\.json' is not valid JSON"):
        FineTunedClassifier.load(str(path))


@pytest.mark.parametrize("name", sorted(WEIGHTS))
@pytest.mark.parametrize("missing", ["weights", "config.json"])
def test_a_missing_file_names_the_file_and_the_directory(name, missing, saves, tmp_path):
    path = _copy(saves, name, tmp_path)
    gone = WEIGHTS[name] if missing == "weights" else missing
    os.remove(path / gone)
    with pytest.raises(FileNotFoundError, match=rf"'{gone}' is missing from the saved estimator in '{re.escape(str(path))}'"):
        _load(name, path)


def test_a_directory_that_does_not_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match="No saved estimator at .*nowhere"):
        FineTunedClassifier.load(str(tmp_path / "nowhere"))


def _as_old_save(path):
    """What a save from before manifests looks like: no manifest.json, no marker in config.json."""
    os.remove(path / "manifest.json")
    _edit_config(path, lambda cfg: cfg.pop("manifest"), resign=False)


def test_a_damaged_weights_file_of_an_old_save_names_the_file(saves, tmp_path):
    path = _copy(saves, "ft", tmp_path)
    _as_old_save(path)
    (path / "model.safetensors").write_bytes(b"\x00" * 12)
    with pytest.warns(UserWarning, match="no manifest.json"), pytest.raises(ValueError, match=r"model\.safetensors' is not a readable safetensors"):
        FineTunedClassifier.load(str(path))


@pytest.mark.parametrize("name", sorted(WEIGHTS))
def test_a_save_without_manifest_loads_with_a_warning(name, fitted, saves, data, tmp_path):
    from sktransfer._persistence import UnverifiedSaveWarning

    path = _copy(saves, name, tmp_path)
    _as_old_save(path)
    with pytest.warns(UnverifiedSaveWarning, match="can't be checked"):
        back = _load(name, path)
    X, _ = data
    np.testing.assert_allclose(_outputs(back, X[20:22]), _outputs(fitted[name], X[20:22]), atol=1e-5)
    back.save(str(tmp_path / "again"))  # saving again adds the manifest
    assert os.path.exists(tmp_path / "again" / "manifest.json")


@pytest.mark.parametrize("name", sorted(WEIGHTS))
def test_a_deleted_manifest_is_refused_not_a_warning(name, saves, tmp_path):
    from sktransfer import SaveIntegrityError

    path = _copy(saves, name, tmp_path)
    os.remove(path / "manifest.json")
    # An edit after the manifest went can't pass for an old save either.
    _edit_config(path, lambda cfg: cfg["params"].update(batch_size=3), resign=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(SaveIntegrityError, match=r"manifest\.json' is missing"):
            _load(name, path)


def test_saves_are_written_atomically(saves, tmp_path, monkeypatch):
    """config.json and manifest.json go through one atomic writer (no partial file when killed mid-write)."""
    from sktransfer import _persistence

    written = []
    real = _persistence.atomic_write_bytes
    monkeypatch.setattr(_persistence, "atomic_write_bytes", lambda p, data: written.append(os.path.basename(p)) or real(p, data))
    for name in ("ft", "fewshot"):
        est = CLASSES[name].load(saves[name])
        written.clear()
        est.save(str(tmp_path / name))
        assert written == ["config.json", "manifest.json"]


# ------------------------------------------------- consistent but wrong saves
@pytest.mark.parametrize("name", ["ft", "dann", "lora", "fewshot"])
def test_a_class_count_that_does_not_fit_the_weights_is_named(name, fitted, saves, tmp_path):
    path = _copy(saves, name, tmp_path)
    n = len(fitted[name].classes_) - 1

    def drop_one(cfg):
        cfg["fitted"]["classes"] = cfg["fitted"]["classes"][:-1]

    _edit_config(path, drop_one)
    with pytest.raises(ValueError, match=f"{n} classes") as err:
        _load(name, path)
    assert "config.json" in str(err.value) or "safetensors" in str(err.value)


@pytest.mark.parametrize("name", ["ft", "lora", "fewshot"])
@pytest.mark.parametrize(
    "classes, match",
    [(["a", "a", "b", "c", "d"], "lists a label twice"), (["a", 1, "b", "c", "d"], "must be all strings or all finite numbers"),
     (["a", None, "b", "c", "d"], "must be all strings or all finite numbers"), ("abcde", "must be a list")],
)
def test_garbled_classes_in_a_consistent_save_are_refused(name, classes, match, saves, tmp_path):
    path = _copy(saves, name, tmp_path)
    _edit_config(path, lambda cfg: cfg["fitted"].update(classes=classes))
    with pytest.raises(ValueError, match=rf"config\.json': 'classes' {match}"):
        _load(name, path)


@pytest.mark.parametrize(
    "edit, match",
    [({"y_scale": [-1.0]}, "'y_scale' must list 1 finite positive numbers"), ({"y_mean": ["x"]}, "'y_mean' must list 1"),
     ({"n_outputs": "1"}, "'n_outputs' must be a positive integer"), ({"y_1d": "yes"}, "'y_1d' must be true or false")],
)
def test_a_garbled_regressor_scaling_is_refused(edit, match, saves, tmp_path):
    path = _copy(saves, "reg", tmp_path)
    _edit_config(path, lambda cfg: cfg["fitted"].update(edit))
    with pytest.raises(ValueError, match=rf"config\.json': {re.escape(match)}"):
        FineTunedRegressor.load(str(path))


def test_weights_of_another_backbone_are_named(saves, tmp_path):
    path = _copy(saves, "ft", tmp_path)
    _edit_config(path, lambda cfg: cfg["params"].update(backbone=IMAGE))
    with pytest.raises(ValueError, match=rf"model\.safetensors' does not fit .*backbone '{IMAGE}'"):
        FineTunedClassifier.load(str(path))


@pytest.mark.parametrize("name", ["ft", "lora", "fewshot"])
def test_load_takes_the_backbone_from_a_local_copy(name, fitted, saves, data):
    """``load(path, backbone=...)``, one keyword for every estimator: the same model from a local directory."""
    from sktransfer.backbones._offline import known_local_path

    local = str(known_local_path(TEXT))
    assert os.path.isdir(local)
    back = CLASSES[name].load(saves[name], backbone=local)
    assert back.backbone == local
    X, _ = data
    np.testing.assert_allclose(_outputs(back, X[20:24]), _outputs(fitted[name], X[20:24]), atol=1e-5)


@pytest.mark.parametrize("name", ["ft", "fewshot"])
def test_load_refuses_a_backbone_of_another_architecture(name, saves):
    with pytest.raises(ValueError, match=rf"{WEIGHTS[name]}' does not fit .*'{IMAGE}'"):
        CLASSES[name].load(saves[name], backbone=IMAGE)


def test_lora_refuses_another_base_and_names_both(saves):
    with pytest.raises(ValueError, match=rf"trained on '{TEXT}'.*backbone='{IMAGE}'.*refusing to load it onto a different model"):
        LoRAClassifier.load(saves["lora"], backbone=IMAGE)


def _invalid(name, value):
    """The refusal of ``name=value`` in a config, naming both: ``name must be ...`` or sklearn's
    ``The 'name' parameter of <class> must be ... Got value instead.``"""
    return rf"config\.json' holds an invalid parameter: (The '{name}' parameter of \w+ must be .*Got {re.escape(repr(value))}|{name} must be)"


_INVALID = {
    "lr": ({"lr": "evil"}, _invalid("lr", "evil")),
    "unknown": ({"evil": 1}, r"unknown parameters \['evil'\]"),
    "device": ({"device": "evil"}, _invalid("device", "evil")),
    "max_length": ({"max_length": "evil"}, _invalid("max_length", "evil")),
    "backbone": ({"backbone": []}, _invalid("backbone", [])),
    "pooling": ({"pooling": 0}, _invalid("pooling", 0)),
}
# Every case on one estimator, and one case on each of the others (they share the checks).
_INVALID_CASES = [("ft", case) for case in _INVALID] + [
    ("reg", "device"), ("dann", "max_length"), ("lora", "pooling"), ("fewshot", "lr"),
]


@pytest.mark.parametrize("name, case", _INVALID_CASES, ids=[f"{n}-{c}" for n, c in _INVALID_CASES])
def test_an_invalid_parameter_in_the_config_is_refused(name, case, saves, tmp_path):
    params, match = _INVALID[case]
    path = _copy(saves, name, tmp_path)
    _edit_config(path, lambda cfg: cfg["params"].update(params))
    with pytest.raises(ValueError, match=match):
        _load(name, path)


def test_lora_target_modules_in_the_config_are_checked(saves, tmp_path):
    path = _copy(saves, "lora", tmp_path)
    _edit_config(path, lambda cfg: cfg["params"].update(target_modules=5))
    with pytest.raises(ValueError, match=_invalid("target_modules", 5)):
        LoRAClassifier.load(str(path))


def test_a_loaded_classifier_has_its_own_loss_not_mse(saves):
    import torch

    back = FineTunedClassifier.load(saves["ft"])
    assert isinstance(back.net_.criterion_, torch.nn.CrossEntropyLoss)
    assert isinstance(FineTunedRegressor.load(saves["reg"]).net_.criterion_, torch.nn.MSELoss)
    assert isinstance(LoRAClassifier.load(saves["lora"]).net_.criterion_, torch.nn.CrossEntropyLoss)
    assert type(DANNClassifier.load(saves["dann"]).net_.criterion_).__name__ == "_DANNLoss"


def test_integer_labels_and_class_weight_survive_a_save(data, tmp_path, one_thread):
    X, _ = data
    y = np.array([0, 1] * 5)
    clf = FineTunedClassifier(TEXT, strategy="linear_probe", class_weight={0: 2.0}, **SHORT).fit(X[:10], y)
    back = FineTunedClassifier.load(clf.save(str(tmp_path / "cw")))
    assert back.class_weight == {0: 2.0} and back.classes_.tolist() == [0, 1]


# ------------------------------------------------------------- not fitted
def _public_estimators():
    """Every estimator class ``sktransfer`` exports, and its public methods that need a fitted model."""
    import inspect

    import sktransfer
    from sklearn.base import BaseEstimator

    skip = {"fit", "fit_transform", "fit_predict", "load", "get_params", "get_metadata_routing", "set_output"}
    out = []
    for name in sktransfer.__all__:
        cls = getattr(sktransfer, name)
        if inspect.isclass(cls) and issubclass(cls, BaseEstimator):
            methods = sorted(
                m for m in dir(cls)
                if not m.startswith("_") and m not in skip and not m.startswith("set_") and callable(getattr(cls, m, None))
            )
            out.append((cls, methods))
    return out


_UNFITTED = {
    "BackboneSelector": lambda: BackboneSelector([TEXT]),
    "EmbeddingDAClassifier": lambda: EmbeddingDAClassifier(),
}


def test_the_not_fitted_test_covers_every_exported_estimator():
    names = {cls.__name__ for cls, _ in _public_estimators()}
    assert names == {
        "AutoTransferClassifier", "BackboneSelector", "DANNClassifier", "EmbeddingDAClassifier", "FewShotClassifier", "FineTunedClassifier",
        "FineTunedRegressor", "LoRAClassifier", "PretrainedFeatureExtractor", "ZeroShotClassifier",
        "FederatedTransferClassifier", "MultiTaskClassifier", "MultiTaskRegressor",
    }


@pytest.mark.parametrize("cls, methods", _public_estimators(), ids=[cls.__name__ for cls, _ in _public_estimators()])
def test_every_public_method_before_fit_raises_not_fitted(cls, methods, tmp_path):
    est = _UNFITTED.get(cls.__name__, lambda: cls(TEXT))()
    X = np.zeros((2, 3)) if isinstance(est, EmbeddingDAClassifier) else ["a text", "another"]
    by_name = {
        "predict": (X,), "predict_proba": (X,), "decision_function": (X,), "transform": (X,),
        "score": (X, [0, 1]), "save": (str(tmp_path / "m"),), "merge": (), "get_feature_names_out": (),
        "plot_ranking": (), "plot_leaderboard": (), "export": (str(tmp_path / "m.onnx"),),
    }
    unknown = sorted(set(methods) - set(by_name))
    assert not unknown, f"{cls.__name__} has public methods this test does not call yet: {unknown}"
    for method in methods:
        with pytest.raises(NotFittedError):
            getattr(est, method)(*by_name[method])
    assert not os.path.exists(tmp_path / "m")


# --------------------------------------------------------------- pickles
def test_a_pickled_lora_keeps_the_adapter_not_the_base(fitted, data, tmp_path):
    X, _ = data
    lora = fitted["lora"]
    ref = lora.predict_proba(X[20:26])
    blob = pickle.dumps(lora)
    assert len(blob) < 5_000_000  # MiniLM itself is ~90 MB
    again = pickle.loads(blob)
    assert "net_" not in vars(again)  # the base is rebuilt on first use
    np.testing.assert_array_equal(again.predict_proba(X[20:26]), ref)
    assert len(pickle.dumps(again)) < 5_000_000
    # Everything that needs the net works after a round trip.
    np.testing.assert_allclose(again.merge().predict_proba(X[20:22]), ref[:2], atol=1e-5)
    back = LoRAClassifier.load(pickle.loads(blob).save(str(tmp_path / "ad")))
    np.testing.assert_allclose(back.predict_proba(X[20:26]), ref, atol=1e-6)


def test_a_pickled_lora_refuses_a_changed_base(fitted):
    again = pickle.loads(pickle.dumps(fitted["lora"]))
    again.base_fingerprint_ = "0" * 32  # as if the named weights changed since
    with pytest.raises(ValueError, match="refusing to load it onto a different model"):
        again.predict(["a text"])


@pytest.mark.parametrize("name", ["ft", "fewshot"])
def test_full_model_pickles_hold_the_weights_once(name, fitted, data):
    X, _ = data
    est = fitted[name]
    blob = pickle.dumps(est)
    assert len(blob) < 1.2 * 91_000_000  # MiniLM's weights once, not twice (skorch pickles module and module_)
    again = pickle.loads(blob)
    np.testing.assert_array_equal(_outputs(again, X[20:24]), _outputs(est, X[20:24]))
    if name == "ft":
        assert again.net_.module is again.net_.module_


# ------------------------------------------- the user's random generators
def _torch_state_kept(action):
    import torch

    torch.manual_seed(123)
    before = torch.get_rng_state()
    action()
    return torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("name", ["ft", "lora", "fewshot"])
def test_load_leaves_the_users_torch_generator_alone(name, saves, data):
    # Rebuilding draws random numbers (a new head's init, LoRA's adapters,
    # a backbone's first load in a process): all of them on a fork.
    X, _ = data
    assert _torch_state_kept(lambda: _load(name, saves[name]).predict(X[:2]))


def test_unpickling_a_lora_leaves_the_users_torch_generator_alone(fitted, data):
    X, _ = data
    blob = pickle.dumps(fitted["lora"])
    assert _torch_state_kept(lambda: pickle.loads(blob).predict(X[:2]))


def test_a_fresh_backbone_load_in_load_is_isolated(saves, data, monkeypatch):
    """A backbone not yet in the process's memo (a fresh load, as in a new process) is loaded on a fork too."""
    from sktransfer.backbones import _loading

    monkeypatch.setattr(_loading, "_memo", type(_loading._memo)())  # an empty memo of the same kind (an LRU)
    assert _torch_state_kept(lambda: FineTunedClassifier.load(saves["ft"]))

"""Hugging Face accelerate (issue 14, part 4): ``accelerator=`` on every estimator that trains.

On this CPU: an ``Accelerator(cpu=True)`` fit trains the same model as a
plain fit, bf16 mixed precision runs, the fitted estimator pickles and
saves without the accelerator. The GPU tests (one device, and two
processes through ``accelerate launch``) are skipped where there is no GPU:
the GPU paths are unverified until they run on one.
"""

import inspect
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from skorch.callbacks import Callback

from sktransfer import (
    DANNClassifier,
    FewShotClassifier,
    FineTunedClassifier,
    FineTunedRegressor,
    LoRAClassifier,
    MultiTaskClassifier,
    MultiTaskRegressor,
)
from sktransfer._trainer import TransferNet
from conftest import TEXT

accelerate = pytest.importorskip("accelerate")
pytestmark = pytest.mark.usefixtures("one_thread")  # a shared 2-core machine: oversubscribed, it crawls

TRAINERS = [
    FineTunedClassifier, FineTunedRegressor, LoRAClassifier, DANNClassifier,
    MultiTaskClassifier, MultiTaskRegressor, FewShotClassifier,
]

TEXTS = [
    "the striker scored twice", "a late goal won the cup", "the coach praised his team",
    "the keeper saved a penalty", "fans sang in the stadium", "the match ended in a draw",
    "a red card in the final", "the league title was decided",
    "shares fell sharply", "the bank raised interest rates", "profits beat forecasts",
    "the market closed higher", "investors sold their bonds", "inflation slowed this month",
    "the firm cut its costs", "a merger was announced",
]
Y = np.array(["sport"] * 8 + ["business"] * 8)
FAST = dict(max_length=16, batch_size=8, max_epochs=1, random_state=0)


def _accelerator(**kwargs):
    """A new Accelerator: accelerate keeps one process-wide state, reset so each test sets its own."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    return accelerate.Accelerator(**kwargs)


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    yield
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.mark.parametrize("cls", TRAINERS, ids=lambda c: c.__name__)
def test_the_parameter_is_declared_cloned_and_checked(cls):
    assert cls().accelerator is None and "accelerator" in cls._parameter_constraints
    assert list(inspect.signature(cls.__init__).parameters)[-1] == "accelerator"  # added at the end
    assert "accelerator" in cls.__doc__ or cls is FineTunedRegressor  # "same parameters as FineTunedClassifier"
    acc = _accelerator(cpu=True)
    est = cls(TEXT, accelerator=acc)
    assert clone(est).accelerator is acc  # Accelerator's deepcopy is itself
    with pytest.raises(ValueError, match="'accelerator' parameter of .* must be"):
        kwargs = {"X_target": TEXTS[:2]} if cls is DANNClassifier else {}
        y = np.c_[Y[:4], Y[:4]] if cls.__name__.startswith("MultiTask") else Y[:4]
        if cls in (FineTunedRegressor, MultiTaskRegressor):
            y = np.arange(4.0) if cls is FineTunedRegressor else np.c_[np.arange(4.0), np.arange(4.0)]
        cls(TEXT, accelerator="yes").fit(TEXTS[:4], y, **kwargs)


def test_a_device_other_than_the_accelerators_is_refused():
    acc = _accelerator(cpu=True)
    with pytest.raises(ValueError, match="device='cuda:1'.*accelerator"):
        FineTunedClassifier(TEXT, device="cuda:1", accelerator=acc, **FAST).fit(TEXTS, Y)
    clf = FineTunedClassifier(TEXT, device="cpu", accelerator=acc, strategy="linear_probe", **FAST).fit(TEXTS, Y)
    assert clf.device_ == "cpu"


def test_a_checkpoint_name_covers_the_accelerators_settings_not_the_object():
    from sktransfer._data import RowDataset
    from sktransfer.backbones import load_backbone

    bb = load_backbone(TEXT)
    y = (Y == "sport").astype(np.int64)
    data = RowDataset(bb, bb.check_inputs(TEXTS), y)

    def name(accelerator):
        clf = FineTunedClassifier(TEXT, accelerator=accelerator, **FAST)
        clf.classes_ = np.array(["business", "sport"])
        return clf._checkpoint_fingerprint(bb, data, y, 2, 0)

    plain, first = name(None), name(_accelerator(cpu=True))
    assert name(_accelerator(cpu=True)) == first != plain  # another Accelerator, same settings: same run
    try:
        bf16 = _accelerator(cpu=True, mixed_precision="bf16")
    except (ValueError, RuntimeError):  # pragma: no cover - depends on the CPU
        return
    assert name(bf16) not in (plain, first)


def test_fine_tuned_same_model_as_without_accelerator_and_pickles(tmp_path):
    # L2-SP's pull to the pretrained weights in training, WiSE-FT's mix after it: both see the model's own names.
    kw = dict(strategy="partial", unfreeze_last=1, validation_fraction=0.25, l2sp=0.1, wise_alpha=0.5, **FAST)
    plain = FineTunedClassifier(TEXT, **kw).fit(TEXTS, Y)
    acc = _accelerator(cpu=True)
    clf = FineTunedClassifier(TEXT, accelerator=acc, **kw).fit(TEXTS, Y)
    np.testing.assert_allclose(clf.predict_proba(TEXTS), plain.predict_proba(TEXTS), rtol=0, atol=1e-6)
    np.testing.assert_allclose(clf.history_[:, "valid_loss"], plain.history_[:, "valid_loss"], rtol=0, atol=1e-6)
    assert clf.device_ == "cpu"
    # What the estimator keeps is a plain net: nothing of accelerate's after training.
    assert type(clf.net_) is TransferNet and "accelerator" not in clf.net_.__dict__
    assert not acc._models and not acc._optimizers and not acc._dataloaders  # no training data held
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(TEXTS), clf.predict_proba(TEXTS))
    assert again.accelerator is None  # bound to the process that trained: not pickled, as not saved
    assert clf.accelerator is acc
    # save/load: the accelerator is not saved (a run-time object); the model is.
    loaded = FineTunedClassifier.load(clf.save(tmp_path / "m"))
    assert loaded.accelerator is None
    np.testing.assert_allclose(loaded.predict_proba(TEXTS), clf.predict_proba(TEXTS), rtol=0, atol=1e-6)


class _OptimizerSeen(Callback):
    """The kind of optimizer training starts with."""

    def on_train_begin(self, net, **kwargs):
        self.seen_ = type(net.optimizer_).__name__


def test_lr_auto_rebuilds_a_prepared_optimizer(monkeypatch):
    # lr="auto" sets the rate, then builds the optimizer's groups again: prepared again.
    from sktransfer import _lr_finder

    monkeypatch.setattr(_lr_finder, "NUM_STEPS", 4)  # a short sweep: the same in both fits
    kw = dict(strategy="linear_probe", lr="auto", head_init="random", max_length=8, batch_size=16,
              max_epochs=1, random_state=0)
    plain = FineTunedClassifier(TEXT, **kw).fit(TEXTS, Y)
    seen = _OptimizerSeen()
    acc = _accelerator(cpu=True)
    clf = FineTunedClassifier(TEXT, accelerator=acc, callbacks=[seen], **kw).fit(TEXTS, Y)
    assert seen.seen_ == "AcceleratedOptimizer"
    # The range test stops its passes early: accelerate's record of them is cleared all the same.
    assert acc.gradient_state.dataloader_references == [None]
    pickle.loads(pickle.dumps(acc))
    assert clf.lr_ == plain.lr_
    np.testing.assert_allclose(clf.predict_proba(TEXTS), plain.predict_proba(TEXTS), rtol=0, atol=1e-6)


def test_lora_same_model_as_without_accelerator():
    kw = dict(r=2, **FAST)
    plain = LoRAClassifier(TEXT, **kw).fit(TEXTS, Y)
    clf = LoRAClassifier(TEXT, accelerator=_accelerator(cpu=True), **kw).fit(TEXTS, Y)
    np.testing.assert_allclose(clf.predict_proba(TEXTS), plain.predict_proba(TEXTS), rtol=0, atol=1e-6)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(TEXTS[:4]), clf.predict_proba(TEXTS[:4]))


@pytest.mark.parametrize("cls", [DANNClassifier, MultiTaskClassifier], ids=lambda c: c.__name__)
def test_dann_and_multi_task_same_model_as_without_accelerator(cls):
    strategy = dict(strategy="partial", unfreeze_last=1) if cls is DANNClassifier else dict(strategy="linear_probe")
    kw = dict(max_length=8, batch_size=16, max_epochs=1, random_state=0, **strategy)
    y = np.c_[Y, Y[::-1]] if cls is MultiTaskClassifier else Y
    fit = {"X_target": TEXTS[::2]} if cls is DANNClassifier else {}
    plain = cls(TEXT, **kw).fit(TEXTS, y, **fit)
    clf = cls(TEXT, accelerator=_accelerator(cpu=True), **kw).fit(TEXTS, y, **fit)
    np.testing.assert_allclose(clf.decision_function(TEXTS), plain.decision_function(TEXTS), rtol=0, atol=1e-6)


def test_few_shot_same_model_as_without_accelerator():
    kw = dict(estimator=LogisticRegression(), n_pairs=4, max_length=16, batch_size=4, random_state=0)
    plain = FewShotClassifier(TEXT, **kw).fit(TEXTS, Y)
    acc = _accelerator(cpu=True)
    clf = FewShotClassifier(TEXT, accelerator=acc, **kw).fit(TEXTS, Y)
    np.testing.assert_allclose(clf.transform(TEXTS), plain.transform(TEXTS), rtol=0, atol=1e-5)
    assert not acc._models and not acc._dataloaders
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict(TEXTS), clf.predict(TEXTS))
    assert again.accelerator is None


class _LinearDtypes(Callback):
    """The dtypes of the head's outputs in training."""

    def on_train_begin(self, net, **kwargs):
        self.dtypes_ = set()
        head = [m for m in net.module_.modules() if isinstance(m, torch.nn.Linear)][-1]
        self._hook = head.register_forward_hook(lambda m, i, out: self.dtypes_.add(out.dtype))

    def on_train_end(self, net, **kwargs):
        self._hook.remove()
        del self._hook


def test_bf16_mixed_precision_on_the_cpu():
    try:
        acc = _accelerator(cpu=True, mixed_precision="bf16")
    except (ValueError, RuntimeError) as exc:  # pragma: no cover - depends on the CPU and torch build
        pytest.skip(f"accelerate refuses bf16 on this CPU: {exc}")
    seen = _LinearDtypes()
    clf = FineTunedClassifier(TEXT, strategy="partial", unfreeze_last=1, bf16=False, accelerator=acc,
                              callbacks=[seen], **FAST)
    clf.fit(TEXTS, Y)
    assert seen.dtypes_ == {torch.bfloat16}  # trained under accelerate's autocast, whatever bf16= says
    proba = clf.predict_proba(TEXTS)
    assert proba.shape == (16, 2) and np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert np.isfinite(clf.history_[:, "train_loss"]).all()
    # The accelerator's precision, not bf16=: predicts as it trained (bf16 autocast where the net is on CUDA).
    assert clf.net_.bf16 is True
    assert all(p.dtype == torch.float32 for p in clf.net_.module_.parameters())  # weights stay float32


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (unverified in this project's CPU-only CI)")
def test_one_gpu_bf16():  # pragma: no cover - no GPU in CI
    acc = _accelerator(mixed_precision="bf16")
    clf = FineTunedClassifier(TEXT, strategy="partial", unfreeze_last=1, accelerator=acc, **FAST).fit(TEXTS, Y)
    assert clf.device_.startswith("cuda")
    assert next(clf.net_.module_.parameters()).device.type == "cuda"
    proba = clf.predict_proba(TEXTS)
    assert np.isfinite(proba).all() and (clf.predict(TEXTS) == Y).mean() >= 0.5
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict(TEXTS), clf.predict(TEXTS))


_LAUNCHED = """
import numpy as np, accelerate, torch
from sktransfer import FineTunedClassifier
acc = accelerate.Accelerator(mixed_precision="bf16")
texts = {texts!r}
y = np.array({y!r})
clf = FineTunedClassifier({text!r}, strategy="partial", unfreeze_last=1, max_length=16, batch_size=4,
                          max_epochs=2, validation_fraction=0.25, random_state=0, accelerator=acc).fit(texts, y)
proba = clf.predict_proba(texts)
assert np.isfinite(proba).all()
if acc.is_main_process:
    np.save({out!r}, proba)
"""


@pytest.mark.cuda
@pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.device_count() < 2,
    reason="needs two CUDA GPUs (multi-GPU is unverified in this project's CPU-only CI)",
)
def test_two_gpus_with_accelerate_launch(tmp_path):  # pragma: no cover - no GPU in CI
    out = str(tmp_path / "proba.npy")
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(_LAUNCHED.format(texts=TEXTS, y=Y.tolist(), text=TEXT, out=out)))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", str(script)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    proba = np.load(out)
    assert proba.shape == (16, 2) and np.isfinite(proba).all()

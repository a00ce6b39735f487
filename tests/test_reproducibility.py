"""Repeatability, checkpoints and resume of the estimators that train.

What a user relies on: a fit with ``random_state`` gives the same model every
time on a CPU (also the first fit of a process); a fit leaves the global
torch and numpy generators as it found them; a ``checkpoint_dir`` belongs
to one fit (data, parameters, classes), so it never hands one fit's model to
another; an interrupted fit resumed from its checkpoint ends bit-identical
to one that ran straight through.
"""

import json
import os
import re

import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV, cross_validate
from skorch.callbacks import Callback

from sktransfer import FewShotClassifier, FineTunedClassifier, FineTunedRegressor, LoRAClassifier
from sktransfer.adaptation import DANNClassifier
from conftest import IMAGE, TEXT

FAST_IMG = dict(image_size=32, batch_size=16, max_epochs=1, random_state=0)
FAST_TXT = dict(max_length=32, batch_size=8, max_epochs=1, random_state=0)


@pytest.fixture(scope="module")
def images(fashion_small):
    X, y = fashion_small
    order = np.random.RandomState(1).permutation(len(y))
    return X[order], y[order]


@pytest.fixture(scope="module")
def texts(bbc_small):
    X, y = bbc_small
    order = np.random.RandomState(1).permutation(len(y))
    return [X[i][:200] for i in order], y[order]


@pytest.fixture(scope="module")
def two_topics(texts):
    """12 texts, 6 of each of two topics, mixed (every class has pairs for FewShotClassifier)."""
    X, y = texts
    idx = np.concatenate([np.flatnonzero(y == c)[:6] for c in ("business", "sports")])
    idx = idx[np.random.RandomState(0).permutation(len(idx))]
    return [X[i] for i in idx], [str(y[i]) for i in idx]


class _Killed(Exception):
    """Stands for the process dying (kill -9, out of memory, a power cut)."""


class _KillInEpoch(Callback):
    """Raise at the first training batch of epoch ``epoch`` (1-based)."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_batch_begin(self, net, training=False, **kwargs):
        if training and len(net.history) == self.epoch:
            raise _Killed


class _CountEpochs(Callback):
    def initialize(self):
        self.trained_ = 0
        return self

    def on_epoch_begin(self, net, **kwargs):
        self.trained_ += 1


# ------------------------------------------------------------ checkpoints
def test_checkpoint_dir_belongs_to_the_data_it_was_made_for(images, tmp_path, one_thread):
    X, y = images
    d = str(tmp_path / "ckpt")
    kw = dict(strategy="linear_probe", lr=1e-2, **FAST_IMG)  # one epoch: "trained in full" is then "trained at all"
    a = FineTunedClassifier(IMAGE, checkpoint_dir=d, **kw).fit(X[:32], y[:32])
    counter = _CountEpochs()
    b = FineTunedClassifier(IMAGE, checkpoint_dir=d, callbacks=[counter], **kw).fit(X[32:64], y[32:64])
    # New data: a new run, trained in full, not the first fit's model.
    assert counter.trained_ == 1 and b.n_epochs_ == 1
    assert a.checkpoint_path_ != b.checkpoint_path_
    assert os.path.dirname(a.checkpoint_path_) == d
    fresh = FineTunedClassifier(IMAGE, **kw).fit(X[32:64], y[32:64])
    np.testing.assert_array_equal(b.predict_proba(X[64:72]), fresh.predict_proba(X[64:72]))
    assert not np.array_equal(a.predict_proba(X[64:72]), b.predict_proba(X[64:72]))
    # The same fit again: the finished run is reused, nothing trains.
    again_counter = _CountEpochs()
    again = FineTunedClassifier(IMAGE, checkpoint_dir=d, callbacks=[again_counter], **kw).fit(X[:32], y[:32])
    assert again_counter.trained_ == 0 and again.n_epochs_ == 1
    assert again.checkpoint_path_ == a.checkpoint_path_
    np.testing.assert_array_equal(again.predict_proba(X[64:72]), a.predict_proba(X[64:72]))
    # Another parameter, or other classes for the same rows: another run.
    c = FineTunedClassifier(IMAGE, checkpoint_dir=d, **{**kw, "lr": 3e-3}).fit(X[:32], y[:32])
    relabelled = FineTunedClassifier(IMAGE, checkpoint_dir=d, **kw).fit(X[:32], np.asarray(y[:32]) + 10)
    assert len({a.checkpoint_path_, b.checkpoint_path_, c.checkpoint_path_, relabelled.checkpoint_path_}) == 4


def test_search_with_a_checkpoint_dir_trains_every_fold_and_candidate(images, tmp_path, one_thread):
    X, y = images
    X, y = X[:48], y[:48]
    d = str(tmp_path / "ckpt")
    est = FineTunedClassifier(IMAGE, strategy="linear_probe", lr=1e-2, checkpoint_dir=d, **FAST_IMG)
    cv = cross_validate(est, X, y, cv=2, return_estimator=True)
    a, b = cv["estimator"]
    assert a.checkpoint_path_ != b.checkpoint_path_
    assert not np.array_equal(a.predict_proba(X[:8]), b.predict_proba(X[:8]))
    search = GridSearchCV(est, {"lr": [1e-2, 1e-3]}, cv=2).fit(X, y)
    # The first lr on the same folds is the cross-validation's fit (resumed, finished);
    # the second lr's two folds and the refit on all rows are runs of their own.
    assert len(os.listdir(d)) == 2 + 2 + 1
    assert search.best_estimator_.checkpoint_path_ not in (a.checkpoint_path_, b.checkpoint_path_)


@pytest.mark.parametrize(
    "make, data",
    [
        # augmentation, dropout, a validation split and early stopping's state
        (lambda d, cbs: FineTunedClassifier(
            IMAGE, strategy="full", augment=True, validation_fraction=0.25, early_stopping=3, checkpoint_dir=d, callbacks=cbs,
            **{**FAST_IMG, "max_epochs": 4}), "images"),
        # text, an MLP head with dropout
        (lambda d, cbs: FineTunedClassifier(TEXT, strategy="linear_probe", head="mlp", lr=5e-3,
                                            checkpoint_dir=d, callbacks=cbs, **{**FAST_TXT, "max_epochs": 4}), "texts"),
    ],
    ids=["fine_tuned_image", "fine_tuned_text"],
)
def test_resume_after_a_kill_is_bit_identical_to_an_uninterrupted_fit(make, data, request, tmp_path, one_thread):
    X, y = request.getfixturevalue(data)
    X, y = X[:32], y[:32]
    straight = make(None, None).fit(X, y)
    d = str(tmp_path / "ckpt")
    with pytest.raises(_Killed):
        make(d, [_KillInEpoch(3)]).fit(X, y)
    counter = _CountEpochs()
    resumed = make(d, [counter]).fit(X, y)
    assert counter.trained_ == 2  # epochs 3 and 4: epochs 1 and 2 came from the checkpoint
    assert resumed.n_epochs_ == straight.n_epochs_ == 4
    np.testing.assert_array_equal(resumed.predict_proba(X[:8]), straight.predict_proba(X[:8]))
    np.testing.assert_array_equal(
        np.asarray(resumed.history_[:, "train_loss"]), np.asarray(straight.history_[:, "train_loss"])
    )


def test_a_damaged_checkpoint_is_refused_with_the_file_named(images, tmp_path, one_thread):
    X, y = images
    d = str(tmp_path / "ckpt")
    kw = dict(strategy="linear_probe", checkpoint_dir=d, **{**FAST_IMG, "max_epochs": 2})
    with pytest.raises(_Killed):
        FineTunedClassifier(IMAGE, callbacks=[_KillInEpoch(2)], **kw).fit(X[:16], y[:16])
    (run,) = os.listdir(d)
    state = os.path.join(d, run, "checkpoint.json")
    with open(state, "w") as f:
        f.write("{not json")
    with pytest.raises(ValueError, match="checkpoint.json"):
        FineTunedClassifier(IMAGE, **kw).fit(X[:16], y[:16])


# ------------------------------------------------------------ repeatability
def test_wise_ft_recalibrates_on_the_rows_the_fit_trained_on_without_a_seed(images, one_thread):
    """random_state=None: the split that trains and the split WiSE-FT recalibrates on are one split."""
    from sktransfer.backbones import load_backbone

    X, y = images
    X, y = X[:40], y[:40]  # 30 training rows: one recalibration batch, whatever their order

    class RecordRows(Callback):
        def initialize(self):
            self.rows_ = []
            return self

        def on_batch_begin(self, net, batch=None, training=False, **kwargs):
            if training:
                self.rows_.extend(bytes(r) for r in batch[0]["X"].numpy())

    rec = RecordRows()
    kw = dict(strategy="full", lr=1e-2, backbone_lr_ratio=1.0, augment=False, validation_fraction=0.25,
              image_size=32, batch_size=8, max_epochs=1, random_state=None)
    clf = FineTunedClassifier(IMAGE, wise_alpha=0.5, freeze_bn_stats=False, callbacks=[rec], **kw).fit(X, y)
    crops = clf._encode_X(X, load_backbone(IMAGE), fitting=False)["X"]
    index = {bytes(r): i for i, r in enumerate(crops)}
    trained = sorted({index[r] for r in rec.rows_})
    assert len(trained) == 30
    core = clf.net_.module_
    with torch.no_grad():
        stem_out = core.body.conv_stem(core.normalize(torch.as_tensor(crops[trained])))
    torch.testing.assert_close(core.body.bn1.running_mean, stem_out.mean(dim=(0, 2, 3)), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("random_state", [0, None])
def test_fit_leaves_the_global_generators_as_it_found_them(two_topics, random_state, one_thread):
    X, y = two_topics
    torch.manual_seed(123)
    np.random.seed(123)
    torch_before, np_before = torch.get_rng_state(), np.random.get_state()
    FineTunedClassifier(TEXT, strategy="linear_probe", **{**FAST_TXT, "random_state": random_state}).fit(X, y)
    FewShotClassifier(TEXT, n_pairs=8, batch_size=4, max_length=32, random_state=random_state).fit(X, y)
    assert torch.equal(torch.get_rng_state(), torch_before)
    np_after = np.random.get_state()
    assert np.array_equal(np_after[1], np_before[1]) and np_after[2:] == np_before[2:]


def test_few_shot_fit_is_repeatable_in_one_process(two_topics, one_thread):
    # In-process form of "the first fit of a process equals the later ones"
    # (load before seeding): two fits with one seed agree exactly, and a
    # draw from torch's global generator between them changes nothing.
    X, y = two_topics
    kw = dict(n_pairs=8, batch_size=4, max_length=32, random_state=0)
    first = FewShotClassifier(TEXT, **kw).fit(X, y).decision_function(X)
    torch.rand(7)
    second = FewShotClassifier(TEXT, **kw).fit(X, y).decision_function(X)
    np.testing.assert_array_equal(first, second)


# ------------------------------------------------------------ empty input
@pytest.mark.parametrize(
    "make, fit_kwargs",
    [
        (lambda bb: FineTunedClassifier(bb), {}),
        (lambda bb: FineTunedRegressor(bb), {}),
        (lambda bb: LoRAClassifier(bb), {}),
        (lambda bb: FewShotClassifier(bb), {}),
        (lambda bb: DANNClassifier(bb), {"X_target": ["a target text"]}),
    ],
    ids=["fine_tuned", "regressor", "lora", "few_shot", "dann"],
)
def test_empty_input_fails_clearly_before_any_backbone_loads(make, fit_kwargs):
    # A backbone that does not exist: an error about it would mean it was loaded first.
    est = make("sentence-transformers/no-such-model-anywhere")
    with pytest.raises(ValueError, match="empty"):
        est.fit([], [], **fit_kwargs)


# ------------------------------------------------------------ review fixes
def _run_dir(d):
    (run,) = os.listdir(d)
    return os.path.join(d, run)


def _checkpoint_state(d):
    with open(os.path.join(_run_dir(d), "checkpoint.json")) as f:
        return json.load(f)


def test_a_fit_without_seed_keeps_its_seed_across_two_resumes(images, tmp_path, one_thread):
    X, y = images
    X, y = X[:32], y[:32]
    d = str(tmp_path / "ckpt")
    # A validation split: a second seed would draw another split.
    kw = dict(strategy="linear_probe", lr=1e-2, validation_fraction=0.25, image_size=32, batch_size=8,
              max_epochs=3, random_state=None, checkpoint_dir=d)
    with pytest.raises(_Killed):
        FineTunedClassifier(IMAGE, callbacks=[_KillInEpoch(2)], **kw).fit(X, y)
    seed = _checkpoint_state(d)["seed"]
    with pytest.raises(_Killed):
        FineTunedClassifier(IMAGE, callbacks=[_KillInEpoch(3)], **kw).fit(X, y)
    assert _checkpoint_state(d)["seed"] == seed
    resumed = FineTunedClassifier(IMAGE, **kw).fit(X, y)
    state = _checkpoint_state(d)
    assert state["seed"] == seed and state["finished"]
    straight = FineTunedClassifier(IMAGE, **{**kw, "checkpoint_dir": None, "random_state": seed}).fit(X, y)
    np.testing.assert_array_equal(resumed.predict_proba(X[:8]), straight.predict_proba(X[:8]))
    np.testing.assert_array_equal(
        np.asarray(resumed.history_[:, "valid_loss"]), np.asarray(straight.history_[:, "valid_loss"])
    )


class _CtrlCInEpoch(_KillInEpoch):
    """A Ctrl-C at the first training batch of epoch ``epoch``: skorch ends training, and calls on_train_end."""

    def on_batch_begin(self, net, training=False, **kwargs):
        if training and len(net.history) == self.epoch:
            raise KeyboardInterrupt


def test_a_run_stopped_by_the_users_early_stopping_is_finished(images, tmp_path, one_thread):
    from skorch.callbacks import EarlyStopping

    X, y = images
    d = str(tmp_path / "ckpt")
    kw = dict(strategy="linear_probe", lr=1e-2, checkpoint_dir=d, **{**FAST_IMG, "max_epochs": 4})
    # threshold=1: no epoch after the first improves on it, so it stops after epoch 2.
    stop = EarlyStopping(monitor="train_loss", patience=1, threshold=1.0, load_best=False)
    first = FineTunedClassifier(IMAGE, callbacks=[stop], **kw).fit(X[:16], y[:16])
    assert first.n_epochs_ == 2
    assert _checkpoint_state(d)["finished"]
    counter = _CountEpochs()
    again = FineTunedClassifier(IMAGE, callbacks=[counter], **kw).fit(X[:16], y[:16])
    assert counter.trained_ == 0 and again.n_epochs_ == 2
    np.testing.assert_array_equal(again.predict_proba(X[16:24]), first.predict_proba(X[16:24]))


def test_ctrl_c_in_the_last_epoch_stays_resumable(images, tmp_path, one_thread):
    X, y = images
    X, y = X[:16], y[:16]
    d = str(tmp_path / "ckpt")
    kw = dict(strategy="linear_probe", lr=1e-2, **{**FAST_IMG, "max_epochs": 2})
    FineTunedClassifier(IMAGE, checkpoint_dir=d, callbacks=[_CtrlCInEpoch(2)], **kw).fit(X, y)
    state = _checkpoint_state(d)
    assert not state["finished"] and state["epochs"] == 1
    counter = _CountEpochs()
    resumed = FineTunedClassifier(IMAGE, checkpoint_dir=d, callbacks=[counter], **kw).fit(X, y)
    assert counter.trained_ == 1 and resumed.n_epochs_ == 2
    straight = FineTunedClassifier(IMAGE, **kw).fit(X, y)
    np.testing.assert_array_equal(resumed.predict_proba(X[:8]), straight.predict_proba(X[:8]))


def test_a_flipped_byte_in_an_epoch_file_is_refused_naming_it(images, tmp_path, one_thread):
    from sktransfer.callbacks import CheckpointError

    X, y = images
    d = str(tmp_path / "ckpt")
    kw = dict(strategy="linear_probe", checkpoint_dir=d, **{**FAST_IMG, "max_epochs": 2})
    with pytest.raises(_Killed):
        FineTunedClassifier(IMAGE, callbacks=[_KillInEpoch(2)], **kw).fit(X[:16], y[:16])
    name = _checkpoint_state(d)["files"]["params"][0]
    path = os.path.join(_run_dir(d), name)
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(CheckpointError, match=re.escape(name) + ".*does not match"):
        FineTunedClassifier(IMAGE, **kw).fit(X[:16], y[:16])


def test_an_unloadable_epoch_file_is_a_checkpoint_error_naming_it(images, tmp_path, one_thread):
    """A file that matches its digest but can't be unpickled (written by a broken torch, say)."""
    from sktransfer._utils import sha256_file
    from sktransfer.callbacks import CheckpointError

    X, y = images
    d = str(tmp_path / "ckpt")
    kw = dict(strategy="linear_probe", checkpoint_dir=d, **{**FAST_IMG, "max_epochs": 2})
    with pytest.raises(_Killed):
        FineTunedClassifier(IMAGE, callbacks=[_KillInEpoch(2)], **kw).fit(X[:16], y[:16])
    state_path = os.path.join(_run_dir(d), "checkpoint.json")
    state = _checkpoint_state(d)
    name = state["files"]["rng"][0]
    path = os.path.join(_run_dir(d), name)
    with open(path, "wb") as f:
        f.write(b"not a torch file")
    state["files"]["rng"][1] = sha256_file(path)
    with open(state_path, "w") as f:
        json.dump(state, f)
    with pytest.raises(CheckpointError, match=re.escape(name)):
        FineTunedClassifier(IMAGE, **kw).fit(X[:16], y[:16])


def test_a_cpu_fit_never_touches_the_cuda_generators(two_topics, monkeypatch, one_thread):
    """On a GPU machine a device="cpu" fit must not initialise CUDA (forking its generators) nor reseed it.

    torch.manual_seed seeds every CUDA device (queued until CUDA starts: the
    user's later CUDA work would be reseeded); fork_rng over CUDA devices
    initialises CUDA. Here every torch.cuda RNG function raises.
    """
    X, y = two_topics

    def refuse(*args, **kwargs):
        raise AssertionError("a CPU fit called a torch.cuda RNG function")

    for fn in ("get_rng_state", "get_rng_state_all", "set_rng_state", "set_rng_state_all",
               "manual_seed", "manual_seed_all"):
        monkeypatch.setattr(torch.cuda, fn, refuse)
    FineTunedClassifier(TEXT, strategy="linear_probe", device="cpu", **FAST_TXT).fit(X, y)
    FewShotClassifier(TEXT, n_pairs=8, batch_size=4, max_length=32, device="cpu", random_state=0).fit(X, y)


def test_checkpoints_keep_only_what_trains(two_topics, tmp_path, one_thread):
    """A linear probe's checkpoint holds the head (and buffers), not MiniLM's 90 MB of frozen weights."""
    X, y = two_topics
    d = str(tmp_path / "ckpt")
    kw = dict(strategy="linear_probe", lr=5e-3, validation_fraction=0.25, early_stopping=3, checkpoint_dir=d,
              **{**FAST_TXT, "max_epochs": 3})
    with pytest.raises(_Killed):
        FineTunedClassifier(TEXT, callbacks=[_KillInEpoch(3)], **kw).fit(X, y)
    files = _checkpoint_state(d)["files"]
    for role in ("params", "best"):
        assert os.path.getsize(os.path.join(_run_dir(d), files[role][0])) < 1_000_000
    resumed = FineTunedClassifier(TEXT, **kw).fit(X, y)
    assert os.path.getsize(os.path.join(_run_dir(d), _checkpoint_state(d)["files"]["final_params"][0])) < 1_000_000
    straight = FineTunedClassifier(TEXT, **{**kw, "checkpoint_dir": None}).fit(X, y)
    np.testing.assert_array_equal(resumed.predict_proba(X[:8]), straight.predict_proba(X[:8]))
    # The finished run, reused: the frozen weights come from the backbone, the rest from the file.
    again = FineTunedClassifier(TEXT, **kw).fit(X, y)
    np.testing.assert_array_equal(again.predict_proba(X[:8]), straight.predict_proba(X[:8]))

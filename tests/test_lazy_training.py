"""Lazy training data (issue 14, part 3): the trainers read rows batch by batch, never all at once."""

import pickle

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback

from sktransfer import FineTunedClassifier
from sktransfer._data import RowDataset
from sktransfer.backbones import load_backbone
from conftest import IMAGE, TEXT

FAST_IMG = dict(image_size=32, batch_size=8, max_epochs=1, random_state=0)
FAST_TXT = dict(max_length=64, batch_size=8, max_epochs=1, random_state=0)


@pytest.fixture(scope="module")
def images(fashion_small):
    X, y = fashion_small
    order = np.random.RandomState(2).permutation(len(y))[:40]
    return X[order], y[order]


@pytest.fixture(scope="module")
def texts(bbc_small):
    X, y = bbc_small
    order = np.random.RandomState(2).permutation(len(y))[:32]
    # Lengths spread from a few words to more than max_length tokens.
    return [X[i][: 20 + 15 * (k % 12)] for k, i in enumerate(order)], y[order]


class _Batches(Callback):
    """Records the inputs of every batch skorch runs (training and validation)."""

    def initialize(self):
        self.seen_ = []
        return self

    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        self.seen_.append((training, {k: v.clone() for k, v in batch[0].items()}))


def _no_encoding(monkeypatch):
    """Make any all-rows-at-once encoding fail the test."""
    from sktransfer.backbones._base import Backbone
    from sktransfer.backbones._image import ImageBackbone
    from sktransfer.backbones._text import TextBackbone

    def refuse(self, *args, **kwargs):
        raise AssertionError("the whole training set was encoded at once")

    for cls in (Backbone, ImageBackbone, TextBackbone):
        monkeypatch.setattr(cls, "encode", refuse)


def test_training_holds_rows_not_an_array_of_every_image(images, monkeypatch, one_thread):
    X, y = images
    _no_encoding(monkeypatch)
    prepared = []
    original = RowDataset.inputs

    def spy(self, positions):
        prepared.append(len(positions))
        return original(self, positions)

    monkeypatch.setattr(RowDataset, "inputs", spy)
    datasets = []
    import sktransfer._training as training

    make_net = training.make_net

    def capture(*args, **kwargs):
        datasets.append(kwargs["collate_fn"].__self__)
        return make_net(*args, **kwargs)

    monkeypatch.setattr(training, "make_net", capture)
    rec = _Batches()
    clf = FineTunedClassifier(IMAGE, strategy="full", head_init="probe", wise_alpha=0.5, freeze_bn_stats=False,
                              validation_fraction=0.25, callbacks=[rec], **FAST_IMG).fit(X, y)
    (data,) = datasets
    # The dataset holds the rows as given (one 28×28 image each), not crops.
    assert isinstance(data, RowDataset) and len(data) == len(X)
    assert all(isinstance(item, np.ndarray) and item.shape == (28, 28) for item in data.items)
    # Every pass (probe features, training, validation, BatchNorm recalibration) prepared a batch at a time.
    assert prepared and max(prepared) <= 32
    assert {t for t, _ in rec.seen_} == {True, False}
    assert all(b["X"].shape[0] <= FAST_IMG["batch_size"] and b["X"].shape[1:] == (3, 32, 32) for _, b in rec.seen_)
    assert clf.history_[-1, "wise_bn_recalibrated"] > 0
    # Prediction reads batches too.
    prepared_before = len(prepared)
    assert clf.predict(X[:5]).shape == (5,)
    assert len(prepared) == prepared_before  # inference does not go through the training rows


def test_the_fitted_model_keeps_no_training_rows(texts, one_thread):
    X, y = texts
    marker = "zebra-marker-sentence"
    X = [f"{marker} {x}" if i == 3 else x for i, x in enumerate(X)]
    clf = FineTunedClassifier(TEXT, strategy="linear_probe", **FAST_TXT).fit(X, y)
    assert not any("collate_fn" in k for k in vars(clf.net_))
    assert marker.encode() not in pickle.dumps(clf)


def test_text_batches_are_padded_to_their_longest_text(texts, one_thread):
    X, y = texts
    rec = _Batches()
    FineTunedClassifier(TEXT, strategy="linear_probe", validation_fraction=0.25, callbacks=[rec],
                        **FAST_TXT).fit(X, y)
    widths = set()
    for _, batch in rec.seen_:
        mask = batch["attention_mask"]
        # padded to the batch's longest text, not to max_length
        assert batch["input_ids"].shape == mask.shape and mask.shape[1] == int(mask.sum(1).max())
        widths.add(mask.shape[1])
    assert {t for t, _ in rec.seen_} == {True, False}
    assert min(widths) < FAST_TXT["max_length"] and max(widths) <= FAST_TXT["max_length"]


def test_worker_processes_train_the_same_model(images, one_thread):
    X, y = images
    kw = dict(strategy="partial", unfreeze_last=1, validation_fraction=0.25, augment=True, **FAST_IMG)
    kw["max_epochs"] = 2
    a = FineTunedClassifier(IMAGE, **kw).fit(X, y)
    b = FineTunedClassifier(IMAGE, num_workers=2, **kw).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X[:12]), b.predict_proba(X[:12]))
    np.testing.assert_array_equal(a.history_[:, "valid_loss"], b.history_[:, "valid_loss"])
    assert b.get_params()["num_workers"] == 2


def test_num_workers_is_declared_and_not_in_the_checkpoint_name(images):
    from sktransfer import DANNClassifier, FineTunedRegressor, LoRAClassifier

    for cls in (FineTunedClassifier, FineTunedRegressor, LoRAClassifier, DANNClassifier):
        assert cls().num_workers == 0 and "num_workers" in cls._parameter_constraints
        assert "num_workers" in cls.__doc__ or cls is FineTunedRegressor  # "same parameters as FineTunedClassifier"
    with pytest.raises(ValueError, match="'num_workers' parameter of FineTunedClassifier must be an int"):
        FineTunedClassifier(IMAGE, num_workers=-1).fit(images[0][:4], images[1][:4])
    X, y = images
    bb = load_backbone(IMAGE)
    data = RowDataset(bb, bb.check_inputs(X[:8]), np.arange(8) % 2)
    names = set()
    for workers in (0, 2):
        clf = FineTunedClassifier(IMAGE, num_workers=workers, **FAST_IMG)
        clf.classes_ = np.array([0, 1])
        names.add(clf._checkpoint_fingerprint(bb, data, data.y, 2, 0))
    assert len(names) == 1
    # One changed row (by content, hashed row by row): another run.
    changed = [x.copy() for x in X[:8]]
    changed[6][0, 0] ^= 1
    other = RowDataset(bb, bb.check_inputs(changed), data.y)
    assert clf._checkpoint_fingerprint(bb, other, data.y, 2, 0) not in names


def test_an_unreadable_image_is_named_by_row_from_a_worker(images, tmp_path, one_thread):
    from PIL import Image

    X, y = images
    paths = []
    for i, x in enumerate(X[:16]):
        p = tmp_path / f"{i}.png"
        Image.fromarray(x).save(p)
        paths.append(str(p))
    (tmp_path / "5.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match="Row 5 of X: cannot read image file"):
        FineTunedClassifier(IMAGE, strategy="linear_probe", head_init="random", num_workers=2,
                            **FAST_IMG).fit(paths, y[:16])


def test_row_dataset_batches_in_order(texts):
    X, y = texts
    bb = load_backbone(TEXT)
    data = RowDataset(bb, bb.check_inputs(X), np.arange(len(X)), max_length=64)
    part = data.subset([5, 1, 7])
    assert len(part) == 3 and list(part.targets()) == [5, 1, 7]
    (batch,) = list(part.batches(8))
    ref = bb.module_inputs(data.items, [5, 1, 7], 64)
    torch.testing.assert_close(batch["input_ids"], ref["input_ids"])
    inputs, targets = part.collate([2, 0])
    assert targets.tolist() == [7, 5] and inputs["input_ids"].shape[0] == 2
    for workers in (0, 2):
        got = list(data.batches(bounds=[(0, 3), (3, 10), (10, len(X))], num_workers=workers))
        assert [b["input_ids"].shape[0] for b in got] == [3, 7, len(X) - 10]
        torch.testing.assert_close(got[1]["input_ids"], bb.module_inputs(data.items, range(3, 10), 64)["input_ids"])


def test_a_file_that_is_no_image_fails_before_training(tmp_path, one_thread):
    # Batches are decoded as they are read; a broken file must still stop the fit before the first epoch.
    from PIL import Image
    from skorch.callbacks import Callback

    from conftest import IMAGE
    from sktransfer import FineTunedClassifier

    paths = []
    for i in range(6):
        p = tmp_path / f"img{i}.png"
        Image.new("RGB", (20, 20), (40 * i, 0, 0)).save(p)
        paths.append(str(p))
    (tmp_path / "img3.png").write_bytes(b"this is not a png")

    class Started(Callback):
        began = False

        def on_train_begin(self, net, **kwargs):
            type(self).began = True

    clf = FineTunedClassifier(IMAGE, strategy="linear_probe", head_init="random", image_size=32, max_epochs=1,
                              callbacks=[Started()])
    with pytest.raises(ValueError, match=r"Row 3 of X: cannot read image file .*img3\.png"):
        clf.fit(paths, [0, 1, 0, 1, 0, 1])
    assert not Started.began

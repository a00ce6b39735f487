"""The no-transfer baseline: what a user would fit without a pretrained model.

Texts: TF-IDF (sublinear term frequencies) and ``LogisticRegression``.
Images: raw pixels (grayscale, resized to 32 × 32, standardised) and
``LogisticRegression``. :class:`~sktransfer.AutoTransferClassifier` searches
it next to the transfer strategies, so that on a task where no pretrained
model helps (long, vocabulary-driven texts; tiny grayscale images: see
``benchmarks/RESULTS.md``, "Evaluation suite") the search says so and still
returns the better model.
"""

import numbers

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ._inputs import check_images, check_texts, to_rgb


class _RawPixels(TransformerMixin, BaseEstimator):
    """Images as raw grayscale pixels, resized to ``size × size``, in [0, 1].

    Every image gives ``size ** 2`` features whatever its own size (larger
    ones are downsampled bilinearly, smaller ones upsampled to the nearest
    pixel), so a set of mixed sizes makes one matrix. Inputs are what every
    backbone reads: paths, PIL images or arrays (one image or a stack).
    """

    def __init__(self, size=32):
        self.size = size

    def fit(self, X, y=None):
        if isinstance(self.size, bool) or not isinstance(self.size, numbers.Integral) or self.size < 1:
            raise ValueError(f"size must be a positive int (pixels per side), got {self.size!r}.")
        self.n_features_out_ = int(self.size) ** 2
        return self

    def transform(self, X):
        from PIL import Image

        check_is_fitted(self, "n_features_out_")
        s = int(self.size)
        rows = []
        for row, item in enumerate(check_images(X)):
            img = to_rgb(item, row).convert("L")
            if img.size != (s, s):
                smaller = img.size[0] < s and img.size[1] < s
                img = img.resize((s, s), Image.NEAREST if smaller else Image.BILINEAR)
            rows.append(np.asarray(img, dtype=np.float32).ravel() / 255.0)
        return np.stack(rows)


class _Texts(TransformerMixin, BaseEstimator):
    """The rows as a list of ``str``, checked as every text backbone checks them
    (a missing or non-text row raises naming the row)."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return check_texts(X)


def baseline_estimator(modality, **head_params):
    """The unfitted baseline pipeline for ``modality`` ("text" or "image").

    ``head_params`` go to its ``LogisticRegression`` (step ``"head"``).
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    head = LogisticRegression(**{"max_iter": 3000, **head_params})
    if modality == "text":
        return Pipeline([("texts", _Texts()), ("tfidf", TfidfVectorizer(sublinear_tf=True)), ("head", head)])
    if modality == "image":
        return Pipeline([("pixels", _RawPixels()), ("scale", StandardScaler()), ("head", head)])
    raise ValueError(f"modality must be 'text' or 'image', got {modality!r}.")

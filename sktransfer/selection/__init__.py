"""Model selection before training: transferability scores and a backbone selector.

- :func:`logme_score`, :func:`h_score`, :func:`regularized_h_score`: score
  the embeddings of a frozen backbone against the target labels.
- :func:`leep_score`, :func:`nce_score`: score a source classifier's own
  predictions (:class:`SourceProbabilityExtractor` gives them for the
  timm/torchvision ImageNet models).
- :func:`make_transferability_scorer`: any of these as a scikit-learn
  scorer ``(estimator, X, y)``, for ``cross_validate`` or ``GridSearchCV``.
- :class:`BackboneSelector`: rank candidate backbones and layers, confirm
  the best with a probe, refit the winner.
"""

from ._scores import (
    SourceProbabilityExtractor,
    h_score,
    leep_score,
    logme_score,
    make_transferability_scorer,
    nce_score,
    regularized_h_score,
)
from ._selector import BackboneSelector

__all__ = [
    "BackboneSelector",
    "SourceProbabilityExtractor",
    "h_score",
    "leep_score",
    "logme_score",
    "make_transferability_scorer",
    "nce_score",
    "regularized_h_score",
]

"""sktransfer: transfer learning as scikit-learn estimators."""

from ._cache import EmbeddingCache, embedding_stats, reset_embedding_stats
from ._config import config_context, get_config, set_config
from ._feature_extractor import PretrainedFeatureExtractor
from ._fine_tuning import FineTunedClassifier, FineTunedRegressor
from .backbones import BackboneNotFoundError, load_backbone

__version__ = "0.1.0"

__all__ = [
    "BackboneNotFoundError",
    "EmbeddingCache",
    "FineTunedClassifier",
    "FineTunedRegressor",
    "PretrainedFeatureExtractor",
    "config_context",
    "embedding_stats",
    "get_config",
    "load_backbone",
    "reset_embedding_stats",
    "set_config",
]

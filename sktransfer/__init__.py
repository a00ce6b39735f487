"""sktransfer: transfer learning as scikit-learn estimators."""

from ._auto import AutoTransferClassifier
from ._cache import EmbeddingCache, embedding_stats, reset_embedding_stats
from ._config import config_context, get_config, set_config
from ._feature_extractor import PretrainedFeatureExtractor
from ._few_shot import FewShotClassifier
from ._fine_tuning import FineTunedClassifier, FineTunedRegressor
from ._lora import LoRAClassifier, merge_adapters
from ._lr_finder import LRFinderError, plot_lr_find
from ._multi_task import MultiTaskClassifier, MultiTaskRegressor
from ._persistence import SaveIntegrityError, UnverifiedSaveWarning
from ._zero_shot import ZeroShotClassifier
from .adaptation import DANNClassifier, EmbeddingDAClassifier
from .backbones import BackboneNotFoundError, load_backbone
from .callbacks import CheckpointError
from .federated import FederatedTransferClassifier
from .selection import BackboneSelector
from . import merging, metrics  # noqa: F401  (sktransfer.merging: soups, task vectors; sktransfer.metrics)

__version__ = "0.1.0"

__all__ = [
    "AutoTransferClassifier",
    "BackboneNotFoundError",
    "BackboneSelector",
    "CheckpointError",
    "DANNClassifier",
    "EmbeddingDAClassifier",
    "EmbeddingCache",
    "FederatedTransferClassifier",
    "FewShotClassifier",
    "FineTunedClassifier",
    "FineTunedRegressor",
    "LRFinderError",
    "LoRAClassifier",
    "MultiTaskClassifier",
    "MultiTaskRegressor",
    "PretrainedFeatureExtractor",
    "SaveIntegrityError",
    "UnverifiedSaveWarning",
    "ZeroShotClassifier",
    "config_context",
    "embedding_stats",
    "get_config",
    "load_backbone",
    "merge_adapters",
    "plot_lr_find",
    "reset_embedding_stats",
    "set_config",
]

"""Backbone families behind one interface.

Each family (timm, torchvision, sentence-transformers, transformers) has an
adapter that builds the model, removes its head and describes its
preprocessing from the model's own pretrained configuration.
"""

from ._base import Backbone
from ._loading import clear_backbone_memo, load_backbone, parse_spec
from ._offline import KNOWN_WEIGHTS, BackboneNotFoundError

__all__ = [
    "Backbone",
    "BackboneNotFoundError",
    "KNOWN_WEIGHTS",
    "clear_backbone_memo",
    "load_backbone",
    "parse_spec",
]

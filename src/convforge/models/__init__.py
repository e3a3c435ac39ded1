"""The layer spec (single source of truth for an architecture), its torch module, summary and the model zoo.

spec = resolve_spec("digits-cnn", in_shape=(1, 28, 28), num_classes=10)   # or a path, dict, list of layers
model = build_model(spec)      # SpecNet: model.layers[i] is spec.layers[i]; returns logits
print(format_summary(spec))
"""

from ._layer import ACTIVATIONS, LAYERS, NORMS
from ._resolve import load_spec_file, resolve_spec
from .build import SpecNet, build_model
from .spec import ModelSpec
from .summary import format_summary, summary_rows
from .transfer import copy_matching_weights, feature_parameters, head_index, head_parameters
from .zoo import MODELS, describe, zoo_spec

__all__ = [
    "ACTIVATIONS",
    "LAYERS",
    "MODELS",
    "NORMS",
    "ModelSpec",
    "SpecNet",
    "build_model",
    "copy_matching_weights",
    "describe",
    "feature_parameters",
    "format_summary",
    "head_index",
    "head_parameters",
    "load_spec_file",
    "resolve_spec",
    "summary_rows",
    "zoo_spec",
]

"""Transfer learning helpers: copy weights between specs, split feature and head parameters."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .spec import ModelSpec


def copy_matching_weights(src_state: dict[str, torch.Tensor], model: nn.Module) -> list[str]:
    """Copy every tensor (parameters and buffers) whose key and shape match; return the copied keys in order.

    Used by ``train --init RUN``: a network with a new head keeps the trained features.
    """
    own = model.state_dict()
    matching = {k: v for k, v in src_state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(matching, strict=False)
    return [k for k in own if k in matching]


def head_index(spec: ModelSpec) -> int:
    """Index of the final dense layer (the classifier head)."""
    for i in range(len(spec.layers) - 1, -1, -1):
        if spec.layers[i]["type"] == "dense":
            return i
    raise ConfigError(f"model '{spec.name}' has no dense layer to use as the head")


def head_parameters(model: nn.Module, spec: ModelSpec) -> list[nn.Parameter]:
    """Parameters of the final dense layer and anything after it (train these when fine-tuning the head)."""
    start = head_index(spec)
    return [p for layer in model.layers[start:] for p in layer.parameters()]


def feature_parameters(model: nn.Module, spec: ModelSpec) -> list[nn.Parameter]:
    """Every parameter before the final dense layer (freeze these to train only the head)."""
    start = head_index(spec)
    return [p for layer in model.layers[:start] for p in layer.parameters()]

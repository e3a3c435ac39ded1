"""simple-cnn: the Keras cats-vs-dogs CNN; binary (dense 1 + sigmoid) for 2 classes like the reference."""

from __future__ import annotations

from typing import Any

from ...errors import ConfigError
from ._common import MODELS, conv


@MODELS.register("simple-cnn")
def simple_cnn(in_shape: tuple[int, int, int], num_classes: int, binary: bool | None = None) -> dict[str, Any]:
    """Keras cats-vs-dogs CNN: 2x (conv 32 3x3 relu, maxpool 2), flatten, dense 128 relu, dense output."""
    binary = num_classes == 2 if binary is None else binary
    if binary and num_classes != 2:
        raise ConfigError(f"model 'simple-cnn': binary=True needs 2 classes, not {num_classes}")
    size, layers = min(in_shape[1:]), []
    for _ in range(2):
        padding = 0 if size >= 3 else "same"  # Keras' valid padding, unless the map is already tiny
        layers.append(conv(32, 3, padding=padding, act="relu"))
        size = size - 2 if padding == 0 else size
        if size >= 2:
            layers.append({"maxpool": {"kernel": 2}})
            size //= 2
    head = "sigmoid" if binary else "softmax"
    layers += ["flatten", {"dense": {"units": 128, "act": "relu"}}, {"dense": {"units": "classes", "act": head}}]
    return {"layers": layers}

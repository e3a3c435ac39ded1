"""mlp: the Keras Fashion-MNIST MLP (28x28, 10 classes: 101,770 parameters)."""

from __future__ import annotations

from typing import Any

from ._common import MODELS


@MODELS.register("mlp")
def mlp(in_shape: tuple[int, int, int], num_classes: int, hidden: int = 128) -> dict[str, Any]:
    """Keras Fashion-MNIST MLP: flatten, dense 128 relu, dense classes, softmax."""
    return {
        "layers": [
            "flatten",
            {"dense": {"units": hidden, "act": "relu"}},
            {"dense": {"units": "classes"}},
            "softmax",
        ]
    }

"""imagenette-cnn: a CNN with conv, pooling, batch norm, dropout and dense layers (Imagenette, 10 classes)."""

from __future__ import annotations

from typing import Any

from ._common import MODELS, conv


@MODELS.register("imagenette-cnn")
def imagenette_cnn(in_shape: tuple[int, int, int], num_classes: int, dropout: float = 0.5) -> dict[str, Any]:
    """CNN with batch norm and dropout: 4x (conv 3x3 32-256, BN, relu, maxpool), global avg pool, dense 256."""
    size, layers = min(in_shape[1:]), []
    for filters in (32, 64, 128, 256):
        layers.append(conv(filters, 3, padding="same", bias=False, norm="batchnorm", act="relu"))
        if size >= 2:
            layers.append({"maxpool": {"kernel": 2}})
            size //= 2
    layers += [
        "global_avgpool",  # size-independent head: works for 64 px as for 224 px
        {"dropout": {"rate": dropout}},
        {"dense": {"units": 256, "act": "relu"}},
        {"dropout": {"rate": dropout}},
        {"dense": {"units": "classes"}},
        "softmax",
    ]
    return {"layers": layers}

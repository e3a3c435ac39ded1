"""digits-cnn: the MATLAB digits example CNN (imageInputLayer ... fullyConnectedLayer, softmax, classification)."""

from __future__ import annotations

from typing import Any

from ._common import MODELS, conv


@MODELS.register("digits-cnn")
def digits_cnn(in_shape: tuple[int, int, int], num_classes: int) -> dict[str, Any]:
    """MATLAB-style digits CNN: 3x (conv 3x3 8/16/32 same, batchnorm, relu), 2 max-pools, dense, softmax."""
    size, layers = min(in_shape[1:]), []
    for filters in (8, 16, 32):
        layers.append(conv(filters, 3, padding="same", norm="batchnorm", act="relu"))
        if filters != 32 and size >= 2:  # 8x8 digits: 8 -> 4 -> 2; 28x28: 28 -> 14 -> 7
            layers.append({"maxpool": {"kernel": 2, "stride": 2}})
            size //= 2
    # MATLAB's fullyConnectedLayer flattens implicitly; the spec says it. softmax + classification are markers
    # of one softmax output (MATLAB's softmaxLayer, classificationLayer), identity in the model.
    layers += ["flatten", {"dense": {"units": "classes"}}, "softmax", "classification"]
    return {"layers": layers}

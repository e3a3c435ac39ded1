"""lenet5: LeNet-5 (LeCun et al. 1998). 1x28x28, 10 classes: 61,706 parameters."""

from __future__ import annotations

from typing import Any

from ._common import MODELS, conv


@MODELS.register("lenet5")
def lenet5(in_shape: tuple[int, int, int], num_classes: int, classic: bool = False) -> dict[str, Any]:
    """LeNet-5: conv 6 5x5, pool, conv 16 5x5, pool, dense 120, 84, classes (classic=True: tanh + avgpool)."""
    act, pool = ("tanh", "avgpool") if classic else ("relu", "maxpool")
    size, layers = min(in_shape[1:]), []
    # The original takes 32x32; a 28x28 (MNIST) input is padded by 2 so the maps keep their classic sizes.
    for filters, padding in ((6, 2 if size < 32 else 0), (16, None)):
        padding = (0 if size >= 5 else 2) if padding is None else padding  # tiny maps (8x8): keep the size
        layers.append(conv(filters, 5, padding=padding, act=act))
        size = size + 2 * padding - 4
        if size >= 2:
            layers.append({pool: {"kernel": 2}})
            size //= 2
    layers += [
        "flatten",
        {"dense": {"units": 120, "act": act}},
        {"dense": {"units": 84, "act": act}},
        {"dense": {"units": "classes"}},
        "softmax",
    ]
    return {"layers": layers}

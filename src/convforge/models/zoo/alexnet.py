"""alexnet: AlexNet (Krizhevsky et al. 2012): 5 conv, 3 max-pool, 2 FC-4096 with dropout.

The ImageNet variant has torchvision's layer sizes (3x224x224, 1000 classes: 61,100,840 parameters); the CIFAR
variant (inputs under 64 px) uses a 5x5 stride-1 stem so a 32x32 image is not shrunk to nothing.
"""

from __future__ import annotations

from typing import Any

from ._common import MODELS, choose, conv, conv_out


def _features(size: int, stem: tuple[int, int, int]) -> list[dict[str, Any]]:
    """conv stem, pool, conv 192, pool, conv 384/256/256, pool; pools that no longer fit are skipped."""
    kernel, stride, padding = stem
    layers, size = [conv(64, kernel, stride, padding, act="relu")], conv_out(size, kernel, stride, padding)
    for block in ([conv(192, 5, padding=2, act="relu")], [conv(n, 3, padding=1, act="relu") for n in (384, 256, 256)]):
        if size >= 3:
            layers.append({"maxpool": {"kernel": 3, "stride": 2}})
            size = conv_out(size, 3, 2)
        layers += block
    if size >= 3:
        layers.append({"maxpool": {"kernel": 3, "stride": 2}})
    return layers


@MODELS.register("alexnet")
def alexnet(
    in_shape: tuple[int, int, int], num_classes: int, variant: str | None = None, dropout: float = 0.5
) -> dict[str, Any]:
    """AlexNet: 5 conv, 3 max-pool, 2 FC-4096 + dropout; ImageNet stem (11x11/4) from 64 px, else CIFAR stem."""
    size = min(in_shape[1:])
    variant = choose("alexnet", "variant", variant or ("imagenet" if size >= 64 else "cifar"), ("imagenet", "cifar"))
    stem = (11, 4, 2) if variant == "imagenet" else (5, 1, 2)
    layers = _features(size, stem) + [
        "flatten",  # 224 px: 256x6x6 = 9216, as torchvision's adaptive pool gives
        {"dropout": {"rate": dropout}},
        {"dense": {"units": 4096, "act": "relu"}},
        {"dropout": {"rate": dropout}},
        {"dense": {"units": 4096, "act": "relu"}},
        {"dense": {"units": "classes"}},
        "softmax",
    ]
    return {"layers": layers}

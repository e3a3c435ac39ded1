"""vgg11: VGG-11, configuration A (Simonyan & Zisserman 2014).

3x224x224, 1000 classes: 132,863,336 parameters (= torchvision vgg11), 132,868,840 with batch norm (= vgg11_bn).
Under 64 px the CIFAR variant keeps the conv layers, skips pools that no longer fit and ends in one dense layer.
"""

from __future__ import annotations

from typing import Any

from ._common import MODELS, choose, conv

CONFIG_A = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]


@MODELS.register("vgg11")
def vgg11(
    in_shape: tuple[int, int, int],
    num_classes: int,
    batch_norm: bool = True,
    variant: str | None = None,
    dropout: float = 0.5,
) -> dict[str, Any]:
    """VGG-11 (config A), batch norm optional; ImageNet head (2x FC-4096) from 64 px, else 512 -> classes."""
    size = min(in_shape[1:])
    variant = choose("vgg11", "variant", variant or ("imagenet" if size >= 64 else "cifar"), ("imagenet", "cifar"))
    norm = "batchnorm" if batch_norm else "none"
    layers: list[Any] = []
    for v in CONFIG_A:
        if v != "M":
            layers.append(conv(v, 3, padding=1, norm=norm, act="relu"))
        elif size >= 2:
            layers.append({"maxpool": {"kernel": 2}})
            size //= 2
    layers.append("flatten")
    if variant == "imagenet":
        for _ in range(2):
            layers += [{"dense": {"units": 4096, "act": "relu"}}, {"dropout": {"rate": dropout}}]
    layers += [{"dense": {"units": "classes"}}, "softmax"]
    return {"layers": layers}

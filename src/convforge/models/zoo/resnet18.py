"""resnet18: ResNet-18 (He et al. 2015) from residual blocks.

3x224x224, 1000 classes: 11,689,512 parameters (= torchvision resnet18); the CIFAR stem (inputs under 96 px)
with 10 classes: 11,173,962.
"""

from __future__ import annotations

from typing import Any

from ._common import MODELS, choose, conv


def basic_block(filters: int, stride: int) -> dict[str, Any]:
    """conv 3x3 - BN - relu - conv 3x3 - BN, plus the input (1x1 conv + BN projection when the shape changes)."""
    body = [
        conv(filters, 3, stride, padding=1, bias=False, norm="batchnorm", act="relu"),
        conv(filters, 3, 1, padding=1, bias=False, norm="batchnorm"),
    ]
    return {"residual": {"layers": body, "shortcut": "auto", "act": "relu"}}


@MODELS.register("resnet18")
def resnet18(in_shape: tuple[int, int, int], num_classes: int, variant: str | None = None) -> dict[str, Any]:
    """ResNet-18: 8 basic blocks 64-512; ImageNet stem (7x7/2 + maxpool) from 96 px, else a 3x3/1 stem."""
    size = min(in_shape[1:])
    variant = choose("resnet18", "variant", variant or ("imagenet" if size >= 96 else "cifar"), ("imagenet", "cifar"))
    if variant == "imagenet":
        layers = [
            conv(64, 7, 2, padding=3, bias=False, norm="batchnorm", act="relu"),
            {"maxpool": {"kernel": 3, "stride": 2, "padding": 1}},
        ]
    else:
        layers = [conv(64, 3, 1, padding=1, bias=False, norm="batchnorm", act="relu")]
    for filters, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [basic_block(filters, stride), basic_block(filters, 1)]
    layers += ["global_avgpool", {"dense": {"units": "classes"}}, "softmax"]
    return {"layers": layers}

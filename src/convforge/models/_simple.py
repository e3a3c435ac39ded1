"""Element-wise, normalization, dense and output layers: the layers whose shape rule is simple."""

from __future__ import annotations

from typing import Any

from torch import nn

from ._layer import REQUIRED, Ctx, LayerKind, Shape, fmt_shape, register
from ._modules import Maxout


class _Elementwise(LayerKind):
    """Shape in = shape out, no parameters; ``module`` builds the torch module."""

    module: type[nn.Module] = nn.Identity

    def build(self, p: dict[str, Any], shape: Shape) -> nn.Module:
        return self.module()

    def details(self, p: dict[str, Any]) -> str:
        return ""


@register
class ReLU(_Elementwise):
    type = "relu"
    module = nn.ReLU  # not inplace: its input may be the saved output of a residual add or a batchnorm


@register
class GELU(_Elementwise):
    """GELU with the exact erf form (x * Phi(x)): the form the generated CUDA code computes too."""

    type = "gelu"
    module = nn.GELU


@register
class Tanh(_Elementwise):
    type = "tanh"
    module = nn.Tanh


@register
class LeakyReLU(LayerKind):
    type = "leaky_relu"
    defaults = dict(slope=0.01)

    def check(self, p: dict[str, Any], shape: Shape, ctx: Ctx) -> dict[str, Any]:
        return dict(slope=ctx.number("slope", p["slope"], 0.0, 1.0))

    def build(self, p: dict[str, Any], shape: Shape) -> nn.Module:
        return nn.LeakyReLU(p["slope"])


@register
class MaxoutKind(LayerKind):
    """Channel-wise maxout: C -> C / pieces (max over each run of ``pieces`` consecutive channels)."""

    type = "maxout"
    defaults = dict(pieces=2)

    def check(self, p: dict[str, Any], shape: Shape, ctx: Ctx) -> dict[str, Any]:
        pieces = ctx.int_("pieces", p["pieces"])
        if shape[0] % pieces:
            ctx.fail(f"channels {shape[0]} not divisible by pieces {pieces} (input {fmt_shape(shape)})")
        return dict(pieces=pieces)

    def out_shape(self, p: dict[str, Any], shape: Shape) -> Shape:
        return (shape[0] // p["pieces"], *shape[1:])

    def build(self, p: dict[str, Any], shape: Shape) -> nn.Module:
        return Maxout(p["pieces"])


@register
class BatchNorm(LayerKind):
    """BatchNorm2d on feature maps, BatchNorm1d on vectors. ``momentum`` is PyTorch's (= 1 - Keras momentum).

    ``scale: false`` (Keras' name) keeps the weight at 1, untrained: only the shift (bias) learns, as in the
    CIFAR-10 speed runs. The weight stays in the state dict, so exports and codegen see an ordinary batchnorm.
    """

    type = "batchnorm"
    defaults = dict(eps=1e-5, momentum=0.1, scale=True)

    def check(self, p: dict[str, Any], shape: Shape, ctx: Ctx) -> dict[str, Any]:
        eps = ctx.number("eps", p["eps"], 0.0, 1.0)
        if eps == 0:
            ctx.fail("eps must be > 0, not 0")
        momentum = ctx.number("momentum", p["momentum"], 0.0, 1.0, high_ok=True)
        return dict(eps=eps, momentum=momentum, scale=ctx.bool_("scale", p["scale"]))

    def count(self, p: dict[str, Any], shape: Shape) -> int:
        # weight and bias (a scale fixed at 1 is still a parameter, as the whitening conv's frozen weights are);
        # the running mean/var are buffers, not parameters
        return 2 * shape[0]

    def build(self, p: dict[str, Any], shape: Shape) -> nn.Module:
        cls = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
        module = cls(shape[0], eps=p["eps"], momentum=p["momentum"])
        module.weight.requires_grad_(p["scale"])
        return module

    def details(self, p: dict[str, Any]) -> str:
        return "" if p["scale"] else "scale fixed at 1"


@register
class Dropout(LayerKind):
    type = "dropout"
    defaults = dict(rate=0.5)

    def check(self, p: dict[str, Any], shape: Shape, ctx: Ctx) -> dict[str, Any]:
        return dict(rate=ctx.number("rate", p["rate"], 0.0, 1.0))

    def build(self, p: dict[str, Any], shape: Shape) -> nn.Module:
        return nn.Dropout(p["rate"])


@register
class Dense(LayerKind):
    """Fully connected. The input must be a vector: a feature map needs an explicit flatten (as in Keras)."""

    type = "dense"
    defaults = dict(units=REQUIRED, bias=True)
    shorthands = True

    def check(self, p: dict[str, Any], shape: Shape, ctx: Ctx) -> dict[str, Any]:
        if len(shape) != 1:
            ctx.fail(f"input is a {fmt_shape(shape)} feature map; add a flatten layer before it")
        units = p["units"]
        if units == "classes":
            if ctx.class_units is None:
                ctx.fail("units: classes needs the number of classes; pass num_classes")
            units = ctx.class_units
        return dict(units=ctx.int_("units", units), bias=ctx.bool_("bias", p["bias"]))

    def out_shape(self, p: dict[str, Any], shape: Shape) -> Shape:
        return (p["units"],)

    def count(self, p: dict[str, Any], shape: Shape) -> int:
        return p["units"] * shape[0] + (p["units"] if p["bias"] else 0)

    def build(self, p: dict[str, Any], shape: Shape) -> nn.Module:
        return nn.Linear(shape[0], p["units"], bias=p["bias"])

    def details(self, p: dict[str, Any]) -> str:
        return f"{p['units']} units" + ("" if p["bias"] else ", no bias")


# Output layers. Inside the network they compute; at the end of the top-level list build_model makes them
# identity, because the model returns logits (the loss and predict apply softmax/sigmoid once).


@register
class Softmax(_Elementwise):
    type = "softmax"

    def build(self, p: dict[str, Any], shape: Shape) -> nn.Module:
        return nn.Softmax(dim=1)


@register
class Sigmoid(_Elementwise):
    type = "sigmoid"
    module = nn.Sigmoid


@register
class Classification(_Elementwise):
    """MATLAB's classification output layer: marks a softmax output; it computes nothing itself."""

    type = "classification"


@register
class Input(LayerKind):
    """The optional first item ``input: {channels, size}``; it sets the model's input shape and is not a layer."""

    type = "input"
    defaults = dict(channels=REQUIRED, size=REQUIRED)

    def check(self, p: dict[str, Any], shape: Shape, ctx: Ctx) -> dict[str, Any]:
        ctx.fail("input must be the first layer of the spec")

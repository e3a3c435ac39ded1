"""The residual block: ``act(body(x) + shortcut(x))`` with its own nested layer lists.

Resolved parameters: ``layers`` (the body, resolved layers), ``shortcut`` (resolved layers; an empty list is the
identity) and ``act`` (an activation name, applied after the add). ``shortcut: auto`` resolves to the identity
when the body keeps the shape, else to a 1x1 conv projection with the stride that matches the body's output
(followed by a batchnorm, and without conv bias, when the body has a batchnorm), as in ResNet.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import ConfigError
from ._layer import ACTIVATIONS, LAYERS, Ctx, LayerKind, Shape, build_seq, fmt_shape, register
from ._modules import ResidualBlock


def _projection_stride(size: int, out: int) -> int | None:
    """The stride of a 1x1 conv that maps ``size`` pixels to ``out`` pixels, if there is one."""
    return next((s for s in range(1, size + 1) if (size - 1) // s + 1 == out), None)


def _auto_shortcut(body: list[dict[str, Any]], shape: Shape, out: Shape, ctx: Ctx) -> list[dict[str, Any]]:
    if out == shape:
        return []
    maps = len(shape) == 3 and len(out) == 3
    strides = [_projection_stride(a, b) for a, b in zip(shape[1:], out[1:], strict=True)] if maps else []
    if not maps or None in strides:
        ctx.fail(
            f"shortcut: auto cannot project input {fmt_shape(shape)} to the body's output {fmt_shape(out)} "
            "with a 1x1 conv; give shortcut: [layers]"
        )
    has_bn = any(layer["type"] == "batchnorm" for layer in body)
    items: list[Any] = [{"conv": {"filters": out[0], "kernel": 1, "stride": strides, "bias": not has_bn}}]
    if has_bn:
        items.append("batchnorm")
    return ctx.resolve_list(items, shape, f"{ctx.where}, shortcut")[0]


@register
class Residual(LayerKind):
    type = "residual"
    defaults = dict(layers=[], shortcut="auto", act="relu")

    def check(self, p: dict[str, Any], shape: Shape, ctx: Ctx) -> dict[str, Any]:
        if not isinstance(p["layers"], list) or not p["layers"]:
            ctx.fail("layers must be a non-empty list of layers (the block's body)")
        body, out = ctx.resolve_list(p["layers"], shape, f"{ctx.where}, body")
        sc = p["shortcut"]
        if sc == "auto":
            shortcut = _auto_shortcut(body, shape, out, ctx)
        elif sc == "identity" or sc == []:
            shortcut, sc_out = [], shape
            if sc_out != out:
                ctx.fail(
                    f"identity shortcut gives {fmt_shape(shape)} but the body gives {fmt_shape(out)}; "
                    "use shortcut: auto"
                )
        elif isinstance(sc, list):
            shortcut, sc_out = ctx.resolve_list(sc, shape, f"{ctx.where}, shortcut")
            if sc_out != out:
                ctx.fail(f"shortcut gives {fmt_shape(sc_out)} but the body gives {fmt_shape(out)}")
        else:
            ctx.fail(f"shortcut must be auto, identity or a list of layers, not {sc!r}")
        try:
            ACTIVATIONS.get(p["act"])
        except ConfigError as e:
            ctx.fail(str(e))
        return dict(layers=body, shortcut=shortcut, act=p["act"])

    def out_shape(self, p: dict[str, Any], shape: Shape) -> Shape:
        return tuple(p["layers"][-1]["out_shape"])

    def count(self, p: dict[str, Any], shape: Shape) -> int:
        return sum(layer["param_count"] for layer in p["layers"] + p["shortcut"])

    def build(self, p: dict[str, Any], shape: Shape) -> nn.Module:
        body, out = build_seq(p["layers"], shape)
        shortcut, _ = build_seq(p["shortcut"], shape)
        act_type = ACTIVATIONS.get(p["act"])
        act = nn.Identity() if not act_type else _default_layer(act_type, out)
        return ResidualBlock(body, shortcut, act)

    def details(self, p: dict[str, Any]) -> str:
        sc = "projection" if p["shortcut"] else "identity"
        return f"{len(p['layers'])} layers, {sc} shortcut, then {p['act']}"


def _default_layer(layer_type: str, shape: Shape) -> nn.Module:
    kind = LAYERS.get(layer_type)
    return kind.build(dict(kind.defaults), shape)

"""Layers on feature maps: conv, maxpool, avgpool, global_avgpool, flatten.

Resolved parameters are explicit: kernel, stride, padding and dilation become [height, width] lists, padding
`same`/`valid` becomes numbers (`same` needs an odd kernel; with stride s it gives ceil(H / s), like Keras).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ._layer import REQUIRED, Ctx, LayerKind, Shape, register
from ._modules import GlobalAvgPool, GlobalMaxPool, WindowMaxPool


def _fmt_pair(v: list[int]) -> str:
    return str(v[0]) if v[0] == v[1] else f"{v[0]}x{v[1]}"


def _padding(ctx: Ctx, value: Any, kernel: list[int], dilation: list[int]) -> list[int]:
    if value == "valid":
        return [0, 0]
    if value == "same":
        span = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
        if any(s % 2 for s in span):
            ctx.fail(f"padding 'same' needs an odd kernel, got {_fmt_pair(kernel)}; give padding as numbers")
        return [s // 2 for s in span]
    if isinstance(value, str):
        ctx.fail(f"padding must be an integer, [height, width], 'same' or 'valid', not {value!r}")
    return ctx.pair("padding", value, low=0)


def _window_out(ctx: Ctx, shape: Shape, p: dict[str, Any], dilation: list[int], pool: bool) -> list[int]:
    """Output H, W of a sliding window; fails when the kernel does not fit the padded input."""
    out = []
    for size, k, s, pad, d in zip(shape[1:], p["kernel"], p["stride"], p["padding"], dilation, strict=True):
        span = d * (k - 1) + 1
        if size + 2 * pad < span:
            if pool:
                hint = f"too many pools for {ctx.model_in[1]}x{ctx.model_in[2]} input?"
            else:
                hint = f"padding {_fmt_pair(p['padding'])}; use padding: same or a smaller kernel"
            ctx.fail(f"kernel {_fmt_pair(p['kernel'])} does not fit input {shape[1]}x{shape[2]} ({hint})")
        out.append((size + 2 * pad - span) // s + 1)
    return out


@register
class Conv(LayerKind):
    type = "conv"
    defaults = dict(filters=REQUIRED, kernel=3, stride=1, padding=0, groups=1, bias=True, dilation=1)
    shorthands = True

    def check(self, p: dict[str, Any], shape: Shape, ctx: Ctx) -> dict[str, Any]:
        ctx.need_map(shape, "; conv works on images (remove the flatten before it?)")
        q = dict(filters=ctx.int_("filters", p["filters"]), kernel=ctx.pair("kernel", p["kernel"]))
        q["stride"] = ctx.pair("stride", p["stride"])
        dilation = ctx.pair("dilation", p["dilation"])
        q["padding"] = _padding(ctx, p["padding"], q["kernel"], dilation)
        q["groups"] = ctx.int_("groups", p["groups"])
        q["bias"] = ctx.bool_("bias", p["bias"])
        q["dilation"] = dilation
        for what, n in (("input channels", shape[0]), ("filters", q["filters"])):
            if n % q["groups"]:
                ctx.fail(f"{what} {n} not divisible by groups {q['groups']} (input {_shape_str(shape)})")
        _window_out(ctx, shape, q, dilation, pool=False)
        return q

    def out_shape(self, p: dict[str, Any], shape: Shape) -> Shape:
        h, w = _plain_window_out(shape, p, p["dilation"])
        return (p["filters"], h, w)

    def count(self, p: dict[str, Any], shape: Shape) -> int:
        k = p["kernel"]
        return p["filters"] * (shape[0] // p["groups"]) * k[0] * k[1] + (p["filters"] if p["bias"] else 0)

    def build(self, p: dict[str, Any], shape: Shape) -> nn.Module:
        return nn.Conv2d(
            shape[0], p["filters"], tuple(p["kernel"]), tuple(p["stride"]), tuple(p["padding"]),
            tuple(p["dilation"]), p["groups"], p["bias"],
        )  # fmt: skip

    def details(self, p: dict[str, Any]) -> str:
        extra = "".join(
            f", {k} {_fmt_pair(p[k]) if isinstance(p[k], list) else p[k]}"
            for k, default in (("dilation", [1, 1]), ("groups", 1), ("bias", True))
            if p[k] != default
        )
        return f"{_window_str(p)}, {p['filters']} filters{extra}"


def _shape_str(shape: Shape) -> str:
    return "x".join(map(str, shape))


def _window_str(p: dict[str, Any]) -> str:
    k = p["kernel"]
    return f"{k[0]}x{k[1]}/{_fmt_pair(p['stride'])} pad {_fmt_pair(p['padding'])}"


def _plain_window_out(shape: Shape, p: dict[str, Any], dilation: list[int]) -> tuple[int, int]:
    h, w = (
        (size + 2 * pad - d * (k - 1) - 1) // s + 1
        for size, k, s, pad, d in zip(shape[1:], p["kernel"], p["stride"], p["padding"], dilation, strict=True)
    )
    return h, w


class _Pool(LayerKind):
    defaults = dict(kernel=2, stride=None, padding=0)

    def check(self, p: dict[str, Any], shape: Shape, ctx: Ctx) -> dict[str, Any]:
        ctx.need_map(shape)
        kernel = ctx.pair("kernel", p["kernel"])
        stride = list(kernel) if p["stride"] is None else ctx.pair("stride", p["stride"])
        q = dict(kernel=kernel, stride=stride, padding=_padding(ctx, p["padding"], kernel, [1, 1]))
        if any(pad > k // 2 for pad, k in zip(q["padding"], kernel, strict=True)):
            ctx.fail(f"padding {_fmt_pair(q['padding'])} is more than half the kernel {_fmt_pair(kernel)}")
        _window_out(ctx, shape, q, [1, 1], pool=True)
        return q

    def out_shape(self, p: dict[str, Any], shape: Shape) -> Shape:
        return (shape[0], *_plain_window_out(shape, p, [1, 1]))

    def details(self, p: dict[str, Any]) -> str:
        return _window_str(p)


@register
class MaxPool(_Pool):
    type = "maxpool"

    def build(self, p: dict[str, Any], shape: Shape) -> nn.Module:
        return WindowMaxPool(tuple(p["kernel"]), tuple(p["stride"]), tuple(p["padding"]))


@register
class AvgPool(_Pool):
    """Average pooling; zero padding counts in the average (PyTorch's count_include_pad=True)."""

    type = "avgpool"

    def build(self, p: dict[str, Any], shape: Shape) -> nn.Module:
        return nn.AvgPool2d(tuple(p["kernel"]), tuple(p["stride"]), tuple(p["padding"]))


@register
class GlobalAvg(LayerKind):
    """CxHxW -> C: the mean of each channel (no flatten needed after it)."""

    type = "global_avgpool"

    def check(self, p: dict[str, Any], shape: Shape, ctx: Ctx) -> dict[str, Any]:
        ctx.need_map(shape)
        return {}

    def out_shape(self, p: dict[str, Any], shape: Shape) -> Shape:
        return (shape[0],)

    def build(self, p: dict[str, Any], shape: Shape) -> nn.Module:
        return GlobalAvgPool()


@register
class GlobalMax(GlobalAvg):
    """CxHxW -> C: the maximum of each channel (no flatten needed after it)."""

    type = "global_maxpool"

    def build(self, p: dict[str, Any], shape: Shape) -> nn.Module:
        return GlobalMaxPool()


@register
class Flatten(LayerKind):
    """CxHxW -> C*H*W in channel-major order (as torch.flatten on NCHW); a vector passes through."""

    type = "flatten"

    def out_shape(self, p: dict[str, Any], shape: Shape) -> Shape:
        n = 1
        for s in shape:
            n *= s
        return (n,)

    def build(self, p: dict[str, Any], shape: Shape) -> nn.Module:
        return nn.Flatten()

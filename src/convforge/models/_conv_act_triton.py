"""Triton source of the fused small-convolution + activation forward that models/_conv_act.py launches (see there
for why it exists).

One program computes BP output pixels x all output channels of a channels_last output map, from an input of any
layout (its element strides are unspecialized arguments: convforge trains channels_last, predicts on NCHW batches;
one compiled kernel serves both): for each of the K = C x KH x KW
taps it loads one input value per pixel (zero outside the map) and one row of the tap-major weight matrix, and adds
their outer product to an fp32 accumulator; then bias and activation, one rounding, one store. ACT: 0 ReLU, 1 GELU
(exact erf form, as nn.GELU()).
"""

from __future__ import annotations

import triton
import triton.language as tl

from ._dependent_triton import wait_for_previous

_SQRT_HALF = tl.constexpr(0.7071067811865476)


@triton.jit(do_not_specialize=["pixels", "ho", "wo", "h", "w", "xn", "xc", "xh", "xw"])
def conv_act_forward(x, weight, bias, y, pixels, ho, wo, h, w, xn, xc, xh, xw, C: tl.constexpr,
                     KH: tl.constexpr, KW: tl.constexpr, STRIDE: tl.constexpr, PAD: tl.constexpr, OUT: tl.constexpr,
                     BO: tl.constexpr, ACT: tl.constexpr, HAS_BIAS: tl.constexpr, BP: tl.constexpr):  # fmt: skip
    wait_for_previous()  # PDL: the kernel before has ended (_dependent_triton.py)
    p = tl.program_id(0) * BP + tl.arange(0, BP)  # int32 offsets: maps of < 2^31 elements (_kernels.INT32_LIMIT)
    inside = p < pixels
    j = p % wo
    i = (p // wo) % ho
    n = p // (wo * ho)
    o = tl.arange(0, BO)
    acc = tl.zeros([BP, BO], tl.float32)
    for t in tl.static_range(KH * KW * C):
        di, dj, ci = t // (KW * C), (t // C) % KW, t % C
        yy = i * STRIDE - PAD + di
        xx = j * STRIDE - PAD + dj
        valid = inside & (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        v = tl.load(x + n * xn + ci * xc + yy * xh + xx * xw, mask=valid, other=0.0).to(tl.float32)
        row = tl.load(weight + t * OUT + o, mask=o < OUT, other=0.0)
        acc += v[:, None] * row[None, :]
    if HAS_BIAS:
        acc += tl.load(bias + o, mask=o < OUT, other=0.0)[None, :]
    if ACT == 0:
        acc = tl.maximum(acc, 0.0)
    else:
        acc = 0.5 * acc * (1.0 + tl.math.erf(acc * _SQRT_HALF))
    tl.store(y + p[:, None] * OUT + o[None, :], acc.to(y.dtype.element_ty), mask=inside[:, None] & (o < OUT)[None, :])

"""Triton source of the trainable small-channel convolution that models/_small_conv.py launches (see there for why
it exists).

Maps are N x C x H x W tensors addressed through their element strides (convforge's are channels_last; an image batch
may come NCHW); the stride is 1, the padding zeros. A conv is an implicit GEMM over K = KH x KW x C_in packed
(tap-major, then input channel): blocks of BK columns of the im2col matrix are gathered into registers (zero
outside the map) and multiplied by the matching rows of the weight, accumulated in fp32 by tl.dot with both
operands in the output's (autocast's) type, as cuDNN's conv under autocast does. Packing keeps few-channel layers
dense: a 1-channel 3x3 conv is one K = 16 dot, not nine mostly-masked ones. Output channels are padded to the dot's
minimum of 16 with masked loads.

- `conv_forward`: y = act(conv(x) + bias) for BP output pixels x all output channels per program. With SIGN = -1
  and the weight's two channel strides swapped it is the input gradient: dx[i] = sum_k g[i + PAD - k] w[k].
- `wgrad_partial`: program (chunk, K block) adds g^T im2col(x) over a run of pixels into one row of partial sums
  (and, for K block 0, the sums of g: the bias gradient); `wgrad_finish` adds the rows in a fixed order (no
  atomics: deterministic) and writes fp32 gradients in the weight's own layout.
- GATE (ReLU fused): the output gradient counts only where the saved output y > 0.
"""

from __future__ import annotations

import triton
import triton.language as tl

from ._dependent_triton import wait_for_previous

MAPS = ["pixels", "ho", "wo", "h", "w", "sxn", "sxc", "sxh", "sxw"]  # sizes and strides: one kernel serves all


@triton.jit
def _pixels(p, ho, wo):
    """Image, row and column of flat output pixel indices p (n-major, then rows, then columns)."""
    return p // (wo * ho), (p // wo) % ho, p % wo


@triton.jit
def _im2col(n, i, j, inside, k, h, w, sxn, sxc, sxh, sxw, CIN: tl.constexpr, KW: tl.constexpr,
            K: tl.constexpr, PAD_H: tl.constexpr, PAD_W: tl.constexpr, SIGN: tl.constexpr):  # fmt: skip
    """Offsets and mask of the im2col block: pixels (n, i, j) x packed columns k = tap * CIN + ci."""
    t, ci = k // CIN, k % CIN
    yy = i[:, None] + SIGN * ((t // KW)[None, :] - PAD_H)
    xx = j[:, None] + SIGN * ((t % KW)[None, :] - PAD_W)
    mask = inside[:, None] & (k < K)[None, :] & (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
    return n[:, None] * sxn + yy * sxh + xx * sxw + ci[None, :] * sxc, mask


@triton.jit(do_not_specialize=MAPS + ["swo", "swi", "swh", "sww"])
def conv_forward(x, gate, weight, bias, y, pixels, ho, wo, h, w, sxn, sxc, sxh, sxw, swo, swi, swh, sww,
                 CIN: tl.constexpr, COUT: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr, PAD_H: tl.constexpr,
                 PAD_W: tl.constexpr, SIGN: tl.constexpr, GATE: tl.constexpr, HAS_BIAS: tl.constexpr,
                 ACT: tl.constexpr, BP: tl.constexpr, BK: tl.constexpr, BCO: tl.constexpr):  # fmt: skip
    """y (channels_last, pixels x COUT) = act(im2col(x) @ W + bias); ACT 0: none, 1: ReLU. `gate` has x's
    strides."""
    wait_for_previous()  # PDL: the kernel before has ended (_dependent_triton.py)
    K: tl.constexpr = KH * KW * CIN
    p = tl.program_id(0) * BP + tl.arange(0, BP)  # int32 offsets: maps of < 2^31 elements (_kernels.INT32_LIMIT)
    inside = p < pixels
    n, i, j = _pixels(p, ho, wo)
    co = tl.arange(0, BCO)
    acc = tl.zeros([BP, BCO], tl.float32)
    for k0 in tl.static_range(0, K, BK):
        k = k0 + tl.arange(0, BK)
        offs, mask = _im2col(n, i, j, inside, k, h, w, sxn, sxc, sxh, sxw, CIN, KW, K, PAD_H, PAD_W, SIGN)
        cols = tl.load(x + offs, mask=mask, other=0.0)
        if GATE:  # the input is an output gradient, counted where the fused ReLU passed its input
            cols = tl.where(tl.load(gate + offs, mask=mask, other=0.0) > 0, cols, 0.0)
        t, ci = k // CIN, k % CIN
        w_offs = (ci * swi + (t // KW) * swh + (t % KW) * sww)[:, None] + co[None, :] * swo
        rows = tl.load(weight + w_offs, mask=(k < K)[:, None] & (co < COUT)[None, :], other=0.0)
        acc = tl.dot(cols.to(y.dtype.element_ty), rows.to(y.dtype.element_ty), acc)
    if HAS_BIAS:
        acc += tl.load(bias + co, mask=co < COUT, other=0.0)[None, :]
    if ACT == 1:
        acc = tl.maximum(acc, 0.0)
    out = p[:, None] * COUT + co[None, :]
    tl.store(y + out, acc.to(y.dtype.element_ty), mask=inside[:, None] & (co < COUT)[None, :])


@triton.jit(do_not_specialize=MAPS + ["per_chunk", "row"])
def wgrad_partial(x, g, gate, partial, pixels, ho, wo, h, w, sxn, sxc, sxh, sxw, per_chunk, row,
                  CIN: tl.constexpr, COUT: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr, PAD_H: tl.constexpr,
                  PAD_W: tl.constexpr, GATE: tl.constexpr, BP: tl.constexpr, BK: tl.constexpr,
                  BCO: tl.constexpr):  # fmt: skip
    """partial[chunk, co * K + k] = sum over the chunk's output pixels of g[., co] times im2col(x)[., k] for this
    program's K block; K block 0's programs also write partial[chunk, COUT * K + co] = sum of g[., co]."""
    wait_for_previous()  # PDL: the kernel before has ended (_dependent_triton.py)
    K: tl.constexpr = KH * KW * CIN
    chunk = tl.program_id(0)
    k = tl.program_id(1) * BK + tl.arange(0, BK)
    co = tl.arange(0, BCO)
    acc = tl.zeros([BCO, BK], tl.float32)
    bias_acc = tl.zeros([BCO], tl.float32)
    first = chunk * per_chunk
    end = tl.minimum(first + per_chunk, pixels)
    for start in range(first, end, BP):
        p = start + tl.arange(0, BP)
        inside = p < end
        n, i, j = _pixels(p, ho, wo)
        g_offs = p[None, :] * COUT + co[:, None]
        g_mask = inside[None, :] & (co < COUT)[:, None]
        grad = tl.load(g + g_offs, mask=g_mask, other=0.0)  # BCO x BP
        if GATE:
            grad = tl.where(tl.load(gate + g_offs, mask=g_mask, other=0.0) > 0, grad, 0.0)
        offs, mask = _im2col(n, i, j, inside, k, h, w, sxn, sxc, sxh, sxw, CIN, KW, K, PAD_H, PAD_W, 1)
        cols = tl.load(x + offs, mask=mask, other=0.0)
        acc = tl.dot(grad, cols.to(grad.dtype), acc)
        bias_acc += tl.sum(grad.to(tl.float32), 1)
    base = partial + chunk.to(tl.int64) * row
    tl.store(base + co[:, None] * K + k[None, :], acc, mask=(co < COUT)[:, None] & (k < K)[None, :])
    tl.store(base + COUT * K + co, bias_acc, mask=(co < COUT) & (tl.program_id(1) == 0))


@triton.jit(do_not_specialize=["chunks", "row", "swo", "swi", "swh", "sww"])
def wgrad_finish(partial, dw, db, chunks, row, swo, swi, swh, sww, CIN: tl.constexpr, COUT: tl.constexpr,
                 KW: tl.constexpr, TAPS: tl.constexpr, HAS_BIAS: tl.constexpr, BR: tl.constexpr,
                 BE: tl.constexpr):  # fmt: skip
    """dw (fp32, the weight's strides) and db: the partial rows added in order, BE entries per program."""
    wait_for_previous()  # PDL: the kernel before has ended (_dependent_triton.py)
    e = tl.program_id(0) * BE + tl.arange(0, BE)
    K: tl.constexpr = TAPS * CIN
    weights: tl.constexpr = COUT * K
    used = e < weights + COUT
    acc = tl.zeros([BR, BE], tl.float32)
    for r0 in range(0, chunks, BR):
        r = r0 + tl.arange(0, BR)
        mask = (r < chunks)[:, None] & used[None, :]
        acc += tl.load(partial + r[:, None].to(tl.int64) * row + e[None, :], mask=mask, other=0.0)
    total = tl.sum(acc, 0)
    co, t, ci = e // K, (e % K) // CIN, e % CIN
    tl.store(dw + co * swo + ci * swi + (t // KW) * swh + (t % KW) * sww, total, mask=e < weights)
    if HAS_BIAS:
        tl.store(db + (e - weights), total, mask=used & (e >= weights))

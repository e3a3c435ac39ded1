"""Triton source of the window max-pool kernels that models/_kernels.py launches (see there for why they exist).

A module of its own so that `triton` is imported only where it is installed and used (_kernels.available()), and
so that the forward and backward kernels can share their index arithmetic as a module-level Triton function.
"""

from __future__ import annotations

import triton
import triton.language as tl

from ._dependent_triton import wait_for_previous

# One compiled kernel per dtype and window, not per layer. The channel count stays specialized (Triton's "divisible by
# 16" case): it makes every row of channels provably 16-byte aligned, so loads and stores are vectors, not scalars.
SIZES = ["positions", "ho", "wo", "h", "w"]


@triton.jit
def _window(positions, ho, wo, h, w, c, KH: tl.constexpr, KW: tl.constexpr, BP: tl.constexpr, BC: tl.constexpr):
    """This program's block of output positions x channels: its mask, the offsets of each window's top-left
    input element, and the offsets of the outputs (all NHWC)."""
    p = tl.program_id(0) * BP + tl.arange(0, BP)  # int32 offsets: maps of < 2^31 elements (_kernels.INT32_LIMIT)
    ch = tl.program_id(1) * BC + tl.arange(0, BC)
    j = p % wo
    i = (p // wo) % ho
    n = p // (wo * ho)
    mask = (p < positions)[:, None] & (ch < c)[None, :]
    corner = (((n * h + i * KH) * w + j * KW) * c)[:, None] + ch[None, :]
    out = p[:, None] * c + ch[None, :]
    return mask, corner, out


@triton.jit(do_not_specialize=SIZES)
def pool_forward(x, y, arg, positions, ho, wo, h, w, c, KH: tl.constexpr, KW: tl.constexpr,
                 BP: tl.constexpr, BC: tl.constexpr):  # fmt: skip
    wait_for_previous()  # PDL: the kernel before has ended (_dependent_triton.py)
    mask, corner, out = _window(positions, ho, wo, h, w, c, KH, KW, BP, BC)
    best = tl.load(x + corner, mask=mask, other=0.0)
    where = tl.full([BP, BC], 0, tl.int8)
    for k in tl.static_range(1, KH * KW):
        v = tl.load(x + corner + ((k // KW) * w + k % KW) * c, mask=mask, other=0.0)
        take = (v > best) | (v != v)  # first maximum wins; NaN propagates (max_pool2d's rule)
        best = tl.where(take, v, best)
        where = tl.where(take, k, where)
    tl.store(y + out, best, mask=mask)
    tl.store(arg + out, where, mask=mask)


@triton.jit(do_not_specialize=SIZES)
def pool_backward(g, arg, gx, positions, ho, wo, h, w, c, KH: tl.constexpr, KW: tl.constexpr,
                  BP: tl.constexpr, BC: tl.constexpr):  # fmt: skip
    """Every element of gx written once: the window's gradient at its maximum, else 0. `positions` counts windows on
    a grid of ceil(h / KH) x ceil(w / KW) per image, so the rows and columns past the last whole window (odd sizes)
    get their zeros here too, not from two more kernels."""
    wait_for_previous()  # PDL: the kernel before has ended (_dependent_triton.py)
    p = tl.program_id(0) * BP + tl.arange(0, BP)  # int32 offsets: maps of < 2^31 elements (_kernels.INT32_LIMIT)
    ch = tl.program_id(1) * BC + tl.arange(0, BC)
    cho, cwo = (h + KH - 1) // KH, (w + KW - 1) // KW
    j = p % cwo
    i = (p // cwo) % cho
    n = p // (cwo * cho)
    mask = (p < positions)[:, None] & (ch < c)[None, :]
    whole = mask & ((i < ho) & (j < wo))[:, None]
    out = (((n * ho + i) * wo + j) * c)[:, None] + ch[None, :]
    grad = tl.load(g + out, mask=whole, other=0.0)
    where = tl.load(arg + out, mask=whole, other=-1)
    corner = (((n * h + i * KH) * w + j * KW) * c)[:, None] + ch[None, :]
    for k in tl.static_range(KH * KW):
        inside = ((i * KH + k // KW < h) & (j * KW + k % KW < w))[:, None]
        tl.store(gx + corner + ((k // KW) * w + k % KW) * c, tl.where(where == k, grad, 0.0), mask=mask & inside)

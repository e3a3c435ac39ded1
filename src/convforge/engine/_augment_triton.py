"""Triton source of engine/augment.py's flip + translate kernel (see there for why it exists). A module of its own so
that `triton` is imported only where it is installed and used."""

from __future__ import annotations

import triton
import triton.language as tl

from ..models._dependent_triton import wait_for_previous


# Sizes and alignments unspecialized: an epoch's last, partial batch, and every batch of a captured chunk (a slice of
# the chunk's images), launch the kernel the warm-up compiled.
@triton.jit(
    do_not_specialize=["total", "h", "w", "pad"], do_not_specialize_on_alignment=["src", "dst", "top", "left", "flip"]
)
def flip_shift(src, dst, top, left, flip, total, h, w, pad, C: tl.constexpr, SHIFT: tl.constexpr,
               FLIP: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
    """dst[n, y, x, c] (channels_last) = src[n, reflect(y + top[n] - pad), x', c], x' = reflect(x + left[n] - pad),
    mirrored (w - 1 - x') where flip[n]: the eager path's mirror, then reflect-pad and crop."""
    wait_for_previous()  # PDL: the kernel before has ended (_dependent_triton.py)
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)  # int32: total < INT32_LIMIT (augment.fusable)
    mask = offs < total
    c = offs % C
    pixel = offs // C
    x = pixel % w
    row = pixel // w
    y = row % h
    n = row // h
    if SHIFT:
        y = y + tl.load(top + n, mask=mask, other=0).to(tl.int32) - pad
        x = x + tl.load(left + n, mask=mask, other=0).to(tl.int32) - pad
        y = tl.where(y < 0, -y, y)
        y = tl.where(y >= h, 2 * (h - 1) - y, y)
        x = tl.where(x < 0, -x, x)
        x = tl.where(x >= w, 2 * (w - 1) - x, x)
    if FLIP:
        x = tl.where(tl.load(flip + n, mask=mask, other=0) != 0, w - 1 - x, x)
    value = tl.load(src + ((n * h + y) * w + x) * C + c, mask=mask)
    tl.store(dst + offs, value, mask=mask)

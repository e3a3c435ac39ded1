"""Triton source of the fused cross-entropy forward that engine/cross_entropy.py launches (see there for why it
exists). A module of its own so that `triton` is imported only where it is installed and used."""

from __future__ import annotations

import triton
import triton.language as tl

from ..models._dependent_triton import wait_for_previous


# Sizes unspecialized (a partial batch of 1 row, any row stride) and no alignment assumed of the caller's tensors
# (a column slice): one compiled kernel per dtype and class block, the one the warm-up compiles.
@triton.jit(do_not_specialize=["rows", "classes", "stride"], do_not_specialize_on_alignment=["logits", "labels"])
def cross_entropy_forward(logits, labels, loss, grad, rows, classes, stride, smoothing, BM: tl.constexpr,
                          BC: tl.constexpr):  # fmt: skip
    wait_for_previous()  # PDL: the kernel before has ended (_dependent_triton.py)
    cols = tl.arange(0, BC)
    in_row = cols < classes
    total = tl.zeros([BM], tl.float32)
    for r0 in range(0, rows, BM):  # in order, then one tl.sum: the same loss bits every run
        r = r0 + tl.arange(0, BM)  # int32 offsets: rows x row stride < INT32_LIMIT (fusable)
        mask = (r < rows)[:, None] & in_row[None, :]
        x = tl.load(logits + r[:, None] * stride + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        x = tl.where(in_row[None, :], x, -float("inf"))  # padding adds nothing; rows past the end stay finite
        hit = cols[None, :] == tl.load(labels + r, mask=r < rows, other=0)[:, None]
        top = tl.max(x, 1)
        e = tl.exp(x - top[:, None])
        sum_e = tl.sum(e, 1)
        lse = top + tl.log(sum_e)
        picked = tl.sum(tl.where(hit, x, 0.0), 1)
        mean_x = tl.sum(tl.where(in_row[None, :], x, 0.0), 1) / classes
        row_loss = (1 - smoothing) * (lse - picked) + smoothing * (lse - mean_x)
        total += tl.where(r < rows, row_loss, 0.0)
        target = tl.where(hit, 1 - smoothing, 0.0) + smoothing / classes
        d = (e / sum_e[:, None] - target) / rows
        tl.store(grad + r[:, None] * classes + cols[None, :], d.to(grad.dtype.element_ty), mask=mask)
    tl.store(loss, tl.sum(total, 0) / rows)

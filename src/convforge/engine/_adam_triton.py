"""Triton source of engine/kernels.py's Adam/AdamW update (see there for why it exists): up to SLOTS tensors a
launch, each a run of programs of BLOCK elements."""

from __future__ import annotations

import triton
import triton.language as tl

from ..models._dependent_triton import wait_for_previous

SLOTS = 8  # the kernel's tensor slots (engine/kernels.py SLOTS)
_UNSPECIALIZED = ["lr_ptr", *[f"{a}{i}" for i in range(SLOTS) for a in ("s", "n", "end")]]


@triton.jit
def update(p, g, m, v, s, n, block, lr, step, beta1, beta2, log2_beta1, log2_beta2, eps, wd,
           STEP_TENSOR: tl.constexpr, DECOUPLED: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
    offs = block.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    if STEP_TENSOR:
        step = tl.load(s).to(tl.float32)
    param = tl.load(p + offs, mask=mask).to(tl.float32)
    grad = tl.load(g + offs, mask=mask).to(tl.float32)
    if DECOUPLED:
        param = param - lr * wd * param
    else:
        grad = grad + wd * param
    exp_avg = beta1 * tl.load(m + offs, mask=mask) + (1 - beta1) * grad
    exp_avg_sq = beta2 * tl.load(v + offs, mask=mask) + (1 - beta2) * grad * grad
    step_size = lr / (1 - tl.exp2(step * log2_beta1))
    denom = tl.sqrt(exp_avg_sq) / tl.sqrt(1 - tl.exp2(step * log2_beta2)) + eps
    tl.store(m + offs, exp_avg, mask=mask)
    tl.store(v + offs, exp_avg_sq, mask=mask)
    tl.store(p + offs, param - step_size * exp_avg / denom, mask=mask)


@triton.jit(do_not_specialize=_UNSPECIALIZED)  # no variant per lr view, tensor size or slot count
def adam(lr_ptr, lr, step, beta1, beta2, log2_beta1, log2_beta2, eps, wd,
         p0, g0, m0, v0, s0, n0, end0, p1, g1, m1, v1, s1, n1, end1, p2, g2, m2, v2, s2, n2, end2,
         p3, g3, m3, v3, s3, n3, end3, p4, g4, m4, v4, s4, n4, end4, p5, g5, m5, v5, s5, n5, end5,
         p6, g6, m6, v6, s6, n6, end6, p7, g7, m7, v7, s7, n7, end7,
         LR_TENSOR: tl.constexpr, STEP_TENSOR: tl.constexpr, DECOUPLED: tl.constexpr,
         BLOCK: tl.constexpr):  # fmt: skip
    """Slot i's programs are those from end(i-1) to end(i); an unused slot has end(i) = end(i-1)."""
    wait_for_previous()  # PDL: the kernel before has ended (_dependent_triton.py)
    pid = tl.program_id(0)
    if LR_TENSOR:
        lr = tl.load(lr_ptr).to(tl.float32)
    # fmt: off
    if pid < end0:
        update(p0, g0, m0, v0, s0, n0, pid, lr, step, beta1, beta2, log2_beta1, log2_beta2, eps,
               wd, STEP_TENSOR, DECOUPLED, BLOCK)
    elif pid < end1:
        update(p1, g1, m1, v1, s1, n1, pid - end0, lr, step, beta1, beta2, log2_beta1, log2_beta2, eps,
               wd, STEP_TENSOR, DECOUPLED, BLOCK)
    elif pid < end2:
        update(p2, g2, m2, v2, s2, n2, pid - end1, lr, step, beta1, beta2, log2_beta1, log2_beta2, eps,
               wd, STEP_TENSOR, DECOUPLED, BLOCK)
    elif pid < end3:
        update(p3, g3, m3, v3, s3, n3, pid - end2, lr, step, beta1, beta2, log2_beta1, log2_beta2, eps,
               wd, STEP_TENSOR, DECOUPLED, BLOCK)
    elif pid < end4:
        update(p4, g4, m4, v4, s4, n4, pid - end3, lr, step, beta1, beta2, log2_beta1, log2_beta2, eps,
               wd, STEP_TENSOR, DECOUPLED, BLOCK)
    elif pid < end5:
        update(p5, g5, m5, v5, s5, n5, pid - end4, lr, step, beta1, beta2, log2_beta1, log2_beta2, eps,
               wd, STEP_TENSOR, DECOUPLED, BLOCK)
    elif pid < end6:
        update(p6, g6, m6, v6, s6, n6, pid - end5, lr, step, beta1, beta2, log2_beta1, log2_beta2, eps,
               wd, STEP_TENSOR, DECOUPLED, BLOCK)
    elif pid < end7:
        update(p7, g7, m7, v7, s7, n7, pid - end6, lr, step, beta1, beta2, log2_beta1, log2_beta2, eps,
               wd, STEP_TENSOR, DECOUPLED, BLOCK)
    # fmt: on

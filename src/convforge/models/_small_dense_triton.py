"""Triton source of the small dense layer that models/_small_dense.py launches (see there for why it exists).

The input is a rows x K matrix read through the strides of a rows x C x H x W map (K = C * H * W in NCHW order, as
nn.Flatten gives it; a plain matrix is C = K, H = W = 1; hw = H * W), so a flatten of a channels_last map costs no
copy, and the input gradient is written in the map's own layout. Products are tl.dot in the output's (autocast's)
type with fp32 accumulation; the weight (out x K, fp32) is read and cast in registers; the weight and bias gradients
are written in fp32. Sums run in a fixed order (no atomics: deterministic). GATE: a fused ReLU's output gradient
counts only where its saved output y > 0.
"""

from __future__ import annotations

import triton
import triton.language as tl

from ._dependent_triton import wait_for_previous

MAP = ["rows", "k_size", "hw", "w", "sxm", "sxc", "sxh", "sxw"]  # sizes and strides: one kernel serves every map


@triton.jit
def _columns(k, hw, w, sxc, sxh, sxw):
    """Offsets of flattened feature indices k = (c * H + h) * W + x in the map."""
    c, pos = k // hw, k % hw
    return c * sxc + (pos // w) * sxh + (pos % w) * sxw


@triton.jit(do_not_specialize=MAP + ["per_split"])
def dense_forward(x, weight, bias, y, partial, rows, k_size, hw, w, sxm, sxc, sxh, sxw, per_split, OUT: tl.constexpr,
                  HAS_BIAS: tl.constexpr, ACT: tl.constexpr, SPLIT: tl.constexpr, BM: tl.constexpr, BK: tl.constexpr,
                  BO: tl.constexpr):  # fmt: skip
    """y (rows x OUT, contiguous) = act(x @ weight^T + bias); ACT 0: none, 1: ReLU. SPLIT: program (., ., s) sums
    features [s * per_split, (s + 1) * per_split) into partial[s] (fp32, rows x OUT) for dense_finish: a long
    feature axis split over programs instead of looped in few (at 32-128 rows, a few programs' loop is latency)."""
    wait_for_previous()  # PDL: the kernel before has ended (_dependent_triton.py)
    K = k_size
    m = tl.program_id(0) * BM + tl.arange(0, BM)  # int32 offsets: maps of < 2^31 elements (_kernels.INT32_LIMIT)
    o = tl.program_id(1) * BO + tl.arange(0, BO)
    first = tl.program_id(2) * per_split
    end = tl.minimum(first + per_split, K)
    acc = tl.zeros([BM, BO], tl.float32)
    for k0 in range(first, end, BK):
        k = k0 + tl.arange(0, BK)
        col_mask = (m < rows)[:, None] & (k < end)[None, :]
        cols = tl.load(x + m[:, None] * sxm + _columns(k, hw, w, sxc, sxh, sxw)[None, :], mask=col_mask, other=0.0)
        taps = tl.load(weight + o[None, :] * K + k[:, None], mask=(k < end)[:, None] & (o < OUT)[None, :], other=0.0)
        acc = tl.dot(cols.to(y.dtype.element_ty), taps.to(y.dtype.element_ty), acc)
    out = m[:, None] * OUT + o[None, :]
    out_mask = (m < rows)[:, None] & (o < OUT)[None, :]
    if SPLIT:
        tl.store(partial + tl.program_id(2) * rows * OUT + out, acc, mask=out_mask)
    else:
        tl.store(y + out, _epilogue(acc, bias, o, OUT, HAS_BIAS, ACT).to(y.dtype.element_ty), mask=out_mask)


@triton.jit
def _epilogue(acc, bias, o, OUT: tl.constexpr, HAS_BIAS: tl.constexpr, ACT: tl.constexpr):
    if HAS_BIAS:
        acc += tl.load(bias + o, mask=o < OUT, other=0.0)[None, :]
    if ACT == 1:
        acc = tl.maximum(acc, 0.0)
    return acc


@triton.jit(do_not_specialize=["rows", "splits"])
def dense_finish(partial, bias, y, rows, splits, OUT: tl.constexpr, HAS_BIAS: tl.constexpr, ACT: tl.constexpr,
                 BM: tl.constexpr, BO: tl.constexpr):  # fmt: skip
    """y = act(the partial sums added in order + bias)."""
    wait_for_previous()  # PDL: the kernel before has ended (_dependent_triton.py)
    m = tl.program_id(0) * BM + tl.arange(0, BM)  # int32 offsets: maps of < 2^31 elements (_kernels.INT32_LIMIT)
    o = tl.program_id(1) * BO + tl.arange(0, BO)
    out = m[:, None] * OUT + o[None, :]
    mask = (m < rows)[:, None] & (o < OUT)[None, :]
    acc = tl.zeros([BM, BO], tl.float32)
    for s in range(0, splits):
        acc += tl.load(partial + s * rows * OUT + out, mask=mask, other=0.0)
    tl.store(y + out, _epilogue(acc, bias, o, OUT, HAS_BIAS, ACT).to(y.dtype.element_ty), mask=mask)


@triton.jit
def _gated(g, gate, offs, mask, GATE: tl.constexpr):
    grad = tl.load(g + offs, mask=mask, other=0.0)
    if GATE:
        grad = tl.where(tl.load(gate + offs, mask=mask, other=0.0) > 0, grad, 0.0)
    return grad


@triton.jit(do_not_specialize=MAP)
def dense_input_grad(g, gate, weight, dx, rows, k_size, hw, w, sxm, sxc, sxh, sxw, OUT: tl.constexpr,
                     GATE: tl.constexpr, BM: tl.constexpr, BK: tl.constexpr, BO: tl.constexpr):  # fmt: skip
    """dx (the input map's strides) = g @ weight for BM rows x BK features per program."""
    wait_for_previous()  # PDL: the kernel before has ended (_dependent_triton.py)
    K = k_size
    m = tl.program_id(0) * BM + tl.arange(0, BM)  # int32 offsets: maps of < 2^31 elements (_kernels.INT32_LIMIT)
    k = tl.program_id(1) * BK + tl.arange(0, BK)
    acc = tl.zeros([BM, BK], tl.float32)
    for o0 in range(0, OUT, BO):
        o = o0 + tl.arange(0, BO)
        grad = _gated(g, gate, m[:, None] * OUT + o[None, :], (m < rows)[:, None] & (o < OUT)[None, :], GATE)
        taps = tl.load(weight + o[:, None] * K + k[None, :], mask=(o < OUT)[:, None] & (k < K)[None, :], other=0.0)
        acc = tl.dot(grad, taps.to(grad.dtype), acc)
    offs = m[:, None] * sxm + _columns(k, hw, w, sxc, sxh, sxw)[None, :]
    tl.store(dx + offs, acc.to(dx.dtype.element_ty), mask=(m < rows)[:, None] & (k < K)[None, :])


@triton.jit(do_not_specialize=MAP)
def dense_weight_grad(x, g, gate, dw, db, rows, k_size, hw, w, sxm, sxc, sxh, sxw, OUT: tl.constexpr,
                      GATE: tl.constexpr, HAS_BIAS: tl.constexpr, BM: tl.constexpr, BK: tl.constexpr,
                      BO: tl.constexpr):  # fmt: skip
    """dw[o, k] = sum over rows of g[., o] x[., k] (fp32, contiguous out x K) for BO x BK entries per program; the
    first feature block's programs also write db = the sums of g."""
    wait_for_previous()  # PDL: the kernel before has ended (_dependent_triton.py)
    K = k_size
    k = tl.program_id(0) * BK + tl.arange(0, BK)
    o = tl.program_id(1) * BO + tl.arange(0, BO)
    acc = tl.zeros([BO, BK], tl.float32)
    bias_acc = tl.zeros([BO], tl.float32)
    columns = _columns(k, hw, w, sxc, sxh, sxw)
    for m0 in range(0, rows, BM):
        m = m0 + tl.arange(0, BM)
        grad = _gated(g, gate, m[None, :] * OUT + o[:, None], (m < rows)[None, :] & (o < OUT)[:, None], GATE)
        col_mask = (m < rows)[:, None] & (k < K)[None, :]
        cols = tl.load(x + m[:, None] * sxm + columns[None, :], mask=col_mask, other=0.0)
        acc = tl.dot(grad, cols.to(grad.dtype), acc)
        bias_acc += tl.sum(grad.to(tl.float32), 1)
    tl.store(dw + o[:, None] * K + k[None, :], acc, mask=(o < OUT)[:, None] & (k < K)[None, :])
    if HAS_BIAS:
        tl.store(db + o, bias_acc, mask=(o < OUT) & (tl.program_id(0) == 0))


# A pair: dense 1 (with the flatten before it) -> ReLU -> dense 2, whose backward runs as two launches side by side
# instead of two levels of two. Both recompute the hidden layer's gradient g = (dy @ w2) * (h > 0) from the output
# gradient dy (rows x OUT2, OUT2 small), w2 (OUT2 x H) and the saved hidden output h (rows x H), rounded to dy's type
# as the hidden layer's input gradient was stored.


@triton.jit(do_not_specialize=MAP)
def pair_input_grad(dy, w2, h, w1, dx, rows, k_size, hw, w, sxm, sxc, sxh, sxw, H: tl.constexpr,
                    OUT2: tl.constexpr, B2: tl.constexpr, BM: tl.constexpr, BK: tl.constexpr,
                    BO: tl.constexpr):  # fmt: skip
    """dx (the input map's strides) = g @ w1 for BM rows x BK features per program."""
    wait_for_previous()  # PDL: the kernel before has ended (_dependent_triton.py)
    K = k_size
    m = tl.program_id(0) * BM + tl.arange(0, BM)  # int32 offsets: maps of < 2^31 elements (_kernels.INT32_LIMIT)
    k = tl.program_id(1) * BK + tl.arange(0, BK)
    j = tl.arange(0, B2)
    out_grad = tl.load(dy + m[:, None] * OUT2 + j[None, :], mask=(m < rows)[:, None] & (j < OUT2)[None, :], other=0.0)
    acc = tl.zeros([BM, BK], tl.float32)
    for o0 in range(0, H, BO):
        o = o0 + tl.arange(0, BO)
        w2_block = tl.load(w2 + j[:, None] * H + o[None, :], mask=(j < OUT2)[:, None] & (o < H)[None, :], other=0.0)
        g = tl.dot(out_grad, w2_block.to(out_grad.dtype))
        hidden = tl.load(h + m[:, None] * H + o[None, :], mask=(m < rows)[:, None] & (o < H)[None, :], other=0.0)
        g = tl.where(hidden > 0, g, 0.0).to(out_grad.dtype)
        taps = tl.load(w1 + o[:, None] * K + k[None, :], mask=(o < H)[:, None] & (k < K)[None, :], other=0.0)
        acc = tl.dot(g, taps.to(g.dtype), acc)
    offs = m[:, None] * sxm + _columns(k, hw, w, sxc, sxh, sxw)[None, :]
    tl.store(dx + offs, acc.to(dx.dtype.element_ty), mask=(m < rows)[:, None] & (k < K)[None, :])


@triton.jit(do_not_specialize=MAP)
def pair_weight_grad(x, dy, w2, h, dw1, db1, dw2, db2, rows, k_size, hw, w, sxm, sxc, sxh, sxw, H: tl.constexpr,
                     OUT2: tl.constexpr, B2: tl.constexpr, HAS_BIAS1: tl.constexpr, HAS_BIAS2: tl.constexpr,
                     BM: tl.constexpr, BK: tl.constexpr, BO: tl.constexpr):  # fmt: skip
    """dw1[o, k] = sum over rows of g[., o] x[., k] (fp32) for BO x BK entries per program; the first feature
    block's programs also write db1 = the sums of g, and dw2[:, o] = dy^T h[:, o] (fp32); program (0, 0) db2."""
    wait_for_previous()  # PDL: the kernel before has ended (_dependent_triton.py)
    K = k_size
    k = tl.program_id(0) * BK + tl.arange(0, BK)
    o = tl.program_id(1) * BO + tl.arange(0, BO)
    j = tl.arange(0, B2)
    first = tl.program_id(0) == 0
    w2_t = tl.load(w2 + j[None, :] * H + o[:, None], mask=(o < H)[:, None] & (j < OUT2)[None, :], other=0.0)
    acc = tl.zeros([BO, BK], tl.float32)
    acc2 = tl.zeros([B2, BO], tl.float32)
    bias_acc = tl.zeros([BO], tl.float32)
    bias2_acc = tl.zeros([B2], tl.float32)
    columns = _columns(k, hw, w, sxc, sxh, sxw)
    for m0 in range(0, rows, BM):
        m = m0 + tl.arange(0, BM)
        out_grad_t = tl.load(dy + m[None, :] * OUT2 + j[:, None], mask=(j < OUT2)[:, None] & (m < rows)[None, :],
                             other=0.0)  # fmt: skip
        g_t = tl.dot(w2_t.to(out_grad_t.dtype), out_grad_t)
        hidden_t = tl.load(h + m[None, :] * H + o[:, None], mask=(o < H)[:, None] & (m < rows)[None, :], other=0.0)
        g_t = tl.where(hidden_t > 0, g_t, 0.0).to(out_grad_t.dtype)
        cols = tl.load(x + m[:, None] * sxm + columns[None, :], mask=(m < rows)[:, None] & (k < K)[None, :], other=0.0)
        acc = tl.dot(g_t, cols.to(g_t.dtype), acc)
        bias_acc += tl.sum(g_t.to(tl.float32), 1)
        if first:
            acc2 = tl.dot(out_grad_t, tl.trans(hidden_t).to(out_grad_t.dtype), acc2)
            bias2_acc += tl.sum(out_grad_t.to(tl.float32), 1)
    tl.store(dw1 + o[:, None] * K + k[None, :], acc, mask=(o < H)[:, None] & (k < K)[None, :])
    if first:
        tl.store(dw2 + j[:, None] * H + o[None, :], acc2, mask=(j < OUT2)[:, None] & (o < H)[None, :])
        if HAS_BIAS1:
            tl.store(db1 + o, bias_acc, mask=o < H)
        if HAS_BIAS2:
            tl.store(db2 + j, bias2_acc, mask=(j < OUT2) & (tl.program_id(1) == 0))

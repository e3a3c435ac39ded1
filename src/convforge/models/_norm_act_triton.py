"""Triton source of the fused training batchnorm + activation kernels that models/_norm_act.py launches (see there
for why they exist).

Tensors are channels_last maps seen as rows x channels matrices (rows = N * H * W, channels innermost). A statistics
program sums a run of rows for a block of channels and writes one row of partial sums; a finishing program adds those
rows in a fixed order (no atomics: runs are deterministic). Sums are of x minus the map's first row (a per-channel
shift near the mean), which keeps E[x^2] - E[x]^2 from cancelling when a channel's mean is large against its spread.
ACT: 0 ReLU, 1 GELU (exact erf form, as nn.GELU()).
"""

from __future__ import annotations

import triton
import triton.language as tl

from ._dependent_triton import wait_for_previous

SIZES = ["rows", "rows_per_program", "programs"]
_SQRT_HALF = tl.constexpr(0.7071067811865476)
_INV_SQRT_2PI = tl.constexpr(0.3989422804014327)


@triton.jit
def _act(z, ACT: tl.constexpr):
    if ACT == 0:
        return tl.maximum(z, 0.0)
    return 0.5 * z * (1.0 + tl.math.erf(z * _SQRT_HALF))


@triton.jit
def _act_grad(z, ACT: tl.constexpr):
    if ACT == 0:
        return tl.where(z > 0.0, 1.0, 0.0)
    return 0.5 * (1.0 + tl.math.erf(z * _SQRT_HALF)) + z * tl.exp(-0.5 * z * z) * _INV_SQRT_2PI


@triton.jit
def _tile(start, rows, c, BM: tl.constexpr, BC: tl.constexpr):
    """The offsets and mask of the tile of BM rows from `start` x this program's BC channels; its channel offsets."""
    r = start + tl.arange(0, BM)  # int32 offsets: maps of < 2^31 elements (_kernels.INT32_LIMIT)
    ch = tl.program_id(1) * BC + tl.arange(0, BC)
    mask = (r < rows)[:, None] & (ch < c)[None, :]
    return r[:, None] * c + ch[None, :], mask, ch


@triton.jit(do_not_specialize=SIZES)
def stats_partial(x, partial, rows, c, rows_per_program, programs, BM: tl.constexpr, BC: tl.constexpr):
    """partial[0, p], partial[1, p] = sums of (x - x[0]) and of its square over program p's rows. Two tiles per
    iteration: twice the bytes in flight (one tile's load at a time measured 1.2-1.6 TB/s on an H200)."""
    wait_for_previous()  # PDL: the kernel before has ended (_dependent_triton.py)
    ch = tl.program_id(1) * BC + tl.arange(0, BC)
    shift = tl.load(x + ch, mask=ch < c, other=0.0).to(tl.float32)[None, :]
    first = tl.program_id(0) * rows_per_program
    end = tl.minimum(first + rows_per_program, rows)
    s1 = tl.zeros([BM, BC], tl.float32)
    s2 = tl.zeros([BM, BC], tl.float32)
    for start in range(first, end, 2 * BM):
        offs_a, mask_a, _ = _tile(start, end, c, BM, BC)
        offs_b, mask_b, _ = _tile(start + BM, end, c, BM, BC)
        a = tl.load(x + offs_a, mask=mask_a, other=0.0)
        b = tl.load(x + offs_b, mask=mask_b, other=0.0)
        da = tl.where(mask_a, a.to(tl.float32) - shift, 0.0)
        db = tl.where(mask_b, b.to(tl.float32) - shift, 0.0)
        s1 += da + db
        s2 += da * da + db * db
    out = tl.program_id(0) * c + ch
    tl.store(partial + out, tl.sum(s1, 0), mask=ch < c)
    tl.store(partial + programs * c + out, tl.sum(s2, 0), mask=ch < c)


@triton.jit
def _add_partials(partial, ch, c, programs, BP: tl.constexpr, BC: tl.constexpr):
    """Sums over the summing programs' rows of partial[0] and partial[1] for channels ch, in a fixed order."""
    s1 = tl.zeros([BP, BC], tl.float32)
    s2 = tl.zeros([BP, BC], tl.float32)
    for p0 in range(0, programs, BP):
        p = p0 + tl.arange(0, BP)
        mask = (p < programs)[:, None] & (ch < c)[None, :]
        offs = p[:, None] * c + ch[None, :]
        s1 += tl.load(partial + offs, mask=mask, other=0.0)
        s2 += tl.load(partial + programs * c + offs, mask=mask, other=0.0)
    return tl.sum(s1, 0), tl.sum(s2, 0)


@triton.jit(do_not_specialize=SIZES)
def sum_partials(partial, sums, c, programs, BP: tl.constexpr, BC: tl.constexpr):
    """sums[0], sums[1] = the partial sums added over the summing programs."""
    wait_for_previous()  # PDL: the kernel before has ended (_dependent_triton.py)
    ch = tl.program_id(0) * BC + tl.arange(0, BC)
    s1, s2 = _add_partials(partial, ch, c, programs, BP, BC)
    tl.store(sums + ch, s1, mask=ch < c)
    tl.store(sums + c + ch, s2, mask=ch < c)


@triton.jit
def _finish(x, partial, weight, bias, ch, c, rows, programs, eps, BP: tl.constexpr, BC: tl.constexpr):
    """Mean and 1/std of channels ch from the partial sums, scale = weight/std and shift = bias - mean * scale (the
    affine map the apply kernel runs), and the biased variance."""
    cmask = ch < c
    s1, s2 = _add_partials(partial, ch, c, programs, BP, BC)
    n = rows.to(tl.float32)
    shifted_mean = s1 / n
    var = tl.maximum(s2 / n - shifted_mean * shifted_mean, 0.0)
    mean = tl.load(x + ch, mask=cmask, other=0.0).to(tl.float32) + shifted_mean
    rstd = 1.0 / tl.sqrt(var + eps)
    scale = tl.load(weight + ch, mask=cmask, other=1.0) * rstd
    return mean, rstd, scale, tl.load(bias + ch, mask=cmask, other=0.0) - mean * scale, var


@triton.jit
def _keep(stats, running_mean, running_var, batches, momentum, rows, c, ch, mean, rstd, scale, shift, var, counts):
    """stats[0..3] = mean, 1/std, scale, shift of channels ch (the backward's); the running statistics updated as
    nn.BatchNorm2d does (unbiased variance); the batch counted where `counts`."""
    cmask = ch < c
    tl.store(stats + ch, mean, mask=cmask)
    tl.store(stats + c + ch, rstd, mask=cmask)
    tl.store(stats + 2 * c + ch, scale, mask=cmask)
    tl.store(stats + 3 * c + ch, shift, mask=cmask)
    n = rows.to(tl.float32)
    old_mean = tl.load(running_mean + ch, mask=cmask, other=0.0)
    old_var = tl.load(running_var + ch, mask=cmask, other=0.0)
    unbiased = var * n / tl.maximum(n - 1.0, 1.0)
    tl.store(running_mean + ch, old_mean + momentum * (mean - old_mean), mask=cmask)
    tl.store(running_var + ch, old_var + momentum * (unbiased - old_var), mask=cmask)
    if counts:
        tl.store(batches, tl.load(batches) + 1)


@triton.jit(do_not_specialize=SIZES)
def stats_finish(x, partial, weight, bias, stats, running_mean, running_var, batches, momentum, eps, rows, c,
                 programs, BP: tl.constexpr, BC: tl.constexpr):  # fmt: skip
    """_finish and _keep for a block of channels."""
    wait_for_previous()  # PDL: the kernel before has ended (_dependent_triton.py)
    ch = tl.program_id(0) * BC + tl.arange(0, BC)
    mean, rstd, scale, shift, var = _finish(x, partial, weight, bias, ch, c, rows, programs, eps, BP, BC)
    _keep(stats, running_mean, running_var, batches, momentum, rows, c, ch, mean, rstd, scale, shift, var,
          tl.program_id(0) == 0)  # fmt: skip


@triton.jit(do_not_specialize=SIZES)
def apply_forward(x, y, partial, weight, bias, stats, running_mean, running_var, batches, momentum, eps, rows, c,
                  programs, ACT: tl.constexpr, FINISH: tl.constexpr, BM: tl.constexpr, BC: tl.constexpr,
                  BP: tl.constexpr):  # fmt: skip
    """y = act(x * scale + shift) on one tile. FINISH: each program finishes the statistics of its channels from the
    partial sums itself (a small map's: one launch fewer than stats_finish's), the first row of programs keeps them;
    else stats_finish has (stats[2], stats[3])."""
    wait_for_previous()  # PDL: the kernel before has ended (_dependent_triton.py)
    offs, mask, ch = _tile(tl.program_id(0) * BM, rows, c, BM, BC)
    if FINISH:
        mean, rstd, scale, shift, var = _finish(x, partial, weight, bias, ch, c, rows, programs, eps, BP, BC)
        if tl.program_id(0) == 0:
            _keep(stats, running_mean, running_var, batches, momentum, rows, c, ch, mean, rstd, scale, shift, var,
                  tl.program_id(1) == 0)  # fmt: skip
        scale, shift = scale[None, :], shift[None, :]
    else:
        scale, shift = _channel(stats + 2 * c, ch, c), _channel(stats + 3 * c, ch, c)
    z = tl.load(x + offs, mask=mask, other=0.0).to(tl.float32) * scale + shift
    tl.store(y + offs, _act(z, ACT).to(y.dtype.element_ty), mask=mask)


@triton.jit
def _grads(x, dy, offs, mask, ch, c, scale, shift, mean, rstd, ACT: tl.constexpr):
    """The gradient at the batchnorm's output (g) and its normalized input (xhat) on one tile."""
    xv = tl.load(x + offs, mask=mask, other=0.0).to(tl.float32)
    z = xv * _channel(scale, ch, c) + _channel(shift, ch, c)
    g = tl.load(dy + offs, mask=mask, other=0.0).to(tl.float32) * _act_grad(z, ACT)
    xhat = (xv - _channel(mean, ch, c)) * _channel(rstd, ch, c)
    return tl.where(mask, g, 0.0), xhat


@triton.jit
def _channel(values, ch, c):
    """A per-channel fp32 vector as a row that broadcasts over a tile."""
    return tl.load(values + ch, mask=ch < c, other=0.0)[None, :]


@triton.jit
def _grad_tile(x, dy, g_out, start, end, c, scale, shift, mean, rstd, ACT: tl.constexpr, BM: tl.constexpr,
               BC: tl.constexpr):  # fmt: skip
    """g and g * xhat on the tile of rows from `start` (zero past `end`); GELU's g stored, rounded as stored."""
    offs, mask, ch = _tile(start, end, c, BM, BC)
    g, xhat = _grads(x, dy, offs, mask, ch, c, scale, shift, mean, rstd, ACT)
    if ACT == 1:
        g = g.to(g_out.dtype.element_ty)
        tl.store(g_out + offs, g, mask=mask)
        g = g.to(tl.float32)
    return g, g * xhat


@triton.jit(do_not_specialize=SIZES)
def grad_partial(x, dy, g_out, scale, shift, mean, rstd, partial, rows, c, rows_per_program, programs,
                 ACT: tl.constexpr, BM: tl.constexpr, BC: tl.constexpr):  # fmt: skip
    """partial[0, p], partial[1, p] = sums of g and of g * xhat over program p's rows. ReLU: two tiles per iteration
    (as in stats_partial; 1024x32x64x64 54 -> 43 us, H200). GELU: one, its derivative (erf, exp) is the limit (two
    took 43 -> 66 us on 1024x64x15x15); its g is also stored (in x's type, the value summed), since recomputing it
    made grad_apply compute-bound as well."""
    wait_for_previous()  # PDL: the kernel before has ended (_dependent_triton.py)
    first = tl.program_id(0) * rows_per_program
    end = tl.minimum(first + rows_per_program, rows)
    sg = tl.zeros([BM, BC], tl.float32)
    sgx = tl.zeros([BM, BC], tl.float32)
    if ACT == 0:
        for start in range(first, end, 2 * BM):
            ga, gxa = _grad_tile(x, dy, g_out, start, end, c, scale, shift, mean, rstd, ACT, BM, BC)
            gb, gxb = _grad_tile(x, dy, g_out, start + BM, end, c, scale, shift, mean, rstd, ACT, BM, BC)
            sg += ga + gb
            sgx += gxa + gxb
    else:
        for start in range(first, end, BM):
            g, gx = _grad_tile(x, dy, g_out, start, end, c, scale, shift, mean, rstd, ACT, BM, BC)
            sg += g
            sgx += gx
    ch = tl.program_id(1) * BC + tl.arange(0, BC)
    out = tl.program_id(0) * c + ch
    tl.store(partial + out, tl.sum(sg, 0), mask=ch < c)
    tl.store(partial + programs * c + out, tl.sum(sgx, 0), mask=ch < c)


@triton.jit(do_not_specialize=SIZES)
def grad_apply(x, g_in, dx, scale, shift, mean, rstd, partial, sums, rows, c, programs, ACT: tl.constexpr,
               ADD: tl.constexpr, BM: tl.constexpr, BC: tl.constexpr, BP: tl.constexpr):  # fmt: skip
    """dx = scale * (g - mean(g) - xhat * mean(g * xhat)): batchnorm's input gradient (batch statistics). g_in: the
    stored g for GELU, the output gradient for ReLU (whose g is recomputed: a comparison). ADD: each program adds the
    partial sums of its channels itself (a small map's: one launch fewer than sum_partials'), the first row of
    programs writes them to `sums` (the weight and bias gradients); else sum_partials has."""
    wait_for_previous()  # PDL: the kernel before has ended (_dependent_triton.py)
    offs, mask, ch = _tile(tl.program_id(0) * BM, rows, c, BM, BC)
    if ACT == 1:
        g = tl.load(g_in + offs, mask=mask, other=0.0).to(tl.float32)
        xhat = (tl.load(x + offs, mask=mask, other=0.0).to(tl.float32) - _channel(mean, ch, c)) * _channel(rstd, ch, c)
    else:
        g, xhat = _grads(x, g_in, offs, mask, ch, c, scale, shift, mean, rstd, ACT)
    if ADD:
        s1, s2 = _add_partials(partial, ch, c, programs, BP, BC)
        if tl.program_id(0) == 0:
            tl.store(sums + ch, s1, mask=ch < c)
            tl.store(sums + c + ch, s2, mask=ch < c)
        sum_g, sum_gx = s1[None, :], s2[None, :]
    else:
        sum_g, sum_gx = _channel(sums, ch, c), _channel(sums + c, ch, c)
    n = rows.to(tl.float32)
    dxv = _channel(scale, ch, c) * (g - sum_g / n - xhat * sum_gx / n)
    tl.store(dx + offs, dxv.to(dx.dtype.element_ty), mask=mask)

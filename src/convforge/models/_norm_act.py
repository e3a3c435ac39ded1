"""A training batchnorm and the ReLU/GELU after it as one autograd op of Triton kernels, on channels_last CUDA maps.

Why: PyTorch runs them as five memory passes forward (statistics, normalize, activation) and seven backward, and its
channels_last bf16 batchnorm kernels are slow: in cifar10-fast's training step (batch 1024, H200, torch 2.11) batch
norm took 612 us of 3,176 and the element-wise kernels (mostly GELU) 420 (benchmarks/results/
step_variants_cifarfast_*.md). Fused, the forward reads the input twice and writes the output once; the backward reads
input and output gradient twice and writes the input gradient once; the activation's input is never stored.

Numerics: statistics in fp32 over the batch (biased variance normalizes, unbiased updates the running variance, as in
nn.BatchNorm2d); the normalized value is not rounded to bf16 before the activation, so outputs differ from PyTorch's
by rounding only. SpecNet (models/build.py) routes (BatchNorm2d, ReLU | GELU) pairs here in training on CUDA; eval
mode, CPU runs, tracing/export and torch.compile keep the two modules.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from . import _kernels

ENABLED = True  # benchmarks switch the fused path off to measure PyTorch's
# Launch shapes (benchmarks/norm_act_speed.py sweeps them). The sums: PROGRAMS_PER_SM programs per SM, each adding
# runs of rows in tiles of SUM_TILE elements (rows x channels); few programs keep the finishing pass short.
SUM_TILE, SUM_WARPS, PROGRAMS_PER_SM = 4096, 8, 4
APPLY_TILE, APPLY_WARPS = 4096, 4  # the element-wise passes: one tile per program
FINISH_CHANNELS = 16  # channels per finishing program
# Up to this many element-wise programs, each finishes the statistics (forward) or adds the gradient sums (backward)
# of its channels itself from the partial sums, instead of a finishing launch before it: the partial sums are then
# small (digits-cnn's maps: 49-196 programs), while a big map's tens of thousands of programs would each read them.
# Six launches fewer in digits-cnn's step: 0.269 -> 0.261 s, alternating runs on one H200 (same_recipe_ab_finish_*.txt;
# the sums are added in another order, so the bits differ from the finishing launches'). A batchnorm decides by the
# largest batch it has seen (the training batch), so an epoch's smaller last batch takes the same kernels, and the
# warm-up compiles one variant (folder-fast's first run on an empty Triton cache had waited 1.9 s for both).
FINISHING_PROGRAMS = 256


def activation_code(norm: nn.Module, act: nn.Module) -> int | None:
    """The kernels' ACT code for a (batchnorm, activation) module pair they can run, else None."""
    if type(norm) is not nn.BatchNorm2d or not (norm.affine and norm.track_running_stats) or norm.momentum is None:
        return None
    return _kernels.activation_code(act)


def pairs(layers: nn.ModuleList) -> frozenset[int]:
    """Indices of the fusable batchnorms directly followed by their activation."""
    return _kernels.adjacent_pairs(layers, activation_code)


def fused_code(norm: nn.Module, act: nn.Module, x: torch.Tensor) -> int | None:
    """The ACT code when this forward of the pair may run fused, else None. Asked at every forward: the modules may
    have been replaced since the model was built (--sync-bn's SyncBatchNorm)."""
    code = activation_code(norm, act)
    if code is None or not norm.training:  # a batchnorm in eval mode (transfer learning freezes them) uses its stats
        return None
    if not x.is_contiguous(memory_format=torch.channels_last) or norm.weight.dtype != torch.float32:
        return None
    return code if _kernels.may_fuse(ENABLED, x, norm, act) else None


def norm_act(norm: nn.BatchNorm2d, code: int, x: torch.Tensor) -> torch.Tensor:
    """act(norm(x)) in training mode (batch statistics; the running statistics updated)."""
    n, c, h, w = x.shape
    most = norm.__dict__["_convforge_rows"] = max(norm.__dict__.get("_convforge_rows", 0), n * h * w)
    return NormAct.apply(x, norm.weight, norm.bias, norm, code, finishes_itself(most, c))


def finishes_itself(rows: int, c: int) -> bool:
    """The element-wise passes finish the sums themselves on a map of `rows` x `c` (FINISHING_PROGRAMS)."""
    p = _plan(rows, c, 1)  # the element-wise grid does not depend on the SM count
    return _kernels.cdiv(rows, p.apply_rows) * p.blocks <= FINISHING_PROGRAMS


@functools.cache
def _source():
    from . import _norm_act_triton

    return _norm_act_triton


def _pow2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


class _Plan(NamedTuple):
    bc: int  # channels per tile
    blocks: int  # channel blocks
    sum_rows: int  # rows per tile of the summing programs
    per_program: int  # rows each summing program adds
    programs: int  # summing programs per channel block
    apply_rows: int  # rows per tile of the element-wise programs
    finish_bc: int  # channels per finishing program


def _plan(rows: int, c: int, sms: int) -> _Plan:
    bc = min(64, max(4, _pow2(c)))
    blocks = _kernels.cdiv(c, bc)
    sum_rows = max(1, SUM_TILE // bc)
    tiles = _kernels.cdiv(rows, sum_rows)
    programs = max(1, min(tiles, PROGRAMS_PER_SM * sms // blocks))
    per_program = _kernels.cdiv(tiles, programs) * sum_rows
    finish_bc = min(FINISH_CHANNELS, bc)
    return _Plan(bc, blocks, sum_rows, per_program, _kernels.cdiv(rows, per_program), APPLY_TILE // bc, finish_bc)


def compile_kernels(dtype: torch.dtype, pairs: set[tuple[int, int, bool]]) -> None:
    """Compile (or load from Triton's disk cache) the kernels for maps of `dtype` with each (channels, ACT code,
    finishes_itself) of `pairs` without running them. Triton specializes on the constexprs (tile shapes follow the
    channel count), dtypes and whether the channel count is a multiple of 16: what a later launch on the real maps
    picks up."""
    for job in compile_jobs(dtype, pairs):
        job()


def compile_jobs(dtype: torch.dtype, pairs: set[tuple[int, int, bool]]) -> list[Callable[[], object]]:
    """compile_kernels' work as independent calls, one per distinct specialization (engine/warmup.py runs them in
    threads while the data loads: folder-fast's 10 kernels took 2.1-2.8 s in one thread, 1.35-1.42 s in four on
    H200 hosts, benchmarks/results/triton_compile_time_*.log)."""
    jobs: dict[tuple, Callable[[], object]] = {}  # channel counts with the same tiles share kernels
    for c, code, itself in sorted(pairs):
        for key, job in _compile_jobs(dtype, c, code, itself).items():
            jobs.setdefault(key, job)
    return list(jobs.values())


def _compile_jobs(dtype: torch.dtype, c: int, code: int, itself: bool) -> dict[tuple, Callable[[], object]]:
    k = _source()
    ptr, f32, i64 = dtype, torch.float32, torch.int64
    p = _plan(2**20, c, 132)  # the row count is unspecialized; the tiles depend on the channels only
    sums = dict(BM=p.sum_rows, BC=p.bc, num_warps=SUM_WARPS, grid=(1, 1))
    apply = dict(ACT=code, BM=p.apply_rows, BC=p.bc, BP=SUM_TILE // p.bc, num_warps=APPLY_WARPS, grid=(1, 1))
    finish = dict(BP=SUM_TILE // p.finish_bc, BC=p.finish_bc, num_warps=SUM_WARPS, grid=(1,))
    wide = c % 16 == 0  # Triton's "divisible by 16" specialization of the channel count
    rows, per_program, programs = 2**20, 4096, 256  # unspecialized sizes: any values
    stats = (f32, f32, f32, f32, f32, f32, i64, 0.1, 1e-5, rows, c, programs)  # partial ... programs
    calls = {  # key: (kernel, arguments as a launch passes them, constexprs and launch options)
        ("stats_partial", p.bc, wide): (k.stats_partial, (ptr, f32, rows, c, per_program, programs), sums),
        ("apply_forward", p.bc, wide, code, itself): (k.apply_forward, (ptr, ptr, *stats), {**apply, "FINISH": itself}),
        ("grad_partial", p.bc, wide, code): (
            k.grad_partial,
            (ptr, ptr, ptr, *[f32] * 5, rows, c, per_program, programs),
            {**sums, "ACT": code},
        ),
        ("sum_partials", p.finish_bc, wide): (k.sum_partials, (f32, f32, c, programs), finish),  # also: no dx
        ("grad_apply", p.bc, wide, code, itself): (
            k.grad_apply, (ptr, ptr, ptr, *[f32] * 6, rows, c, programs), {**apply, "ADD": itself}
        ),
    }  # fmt: skip
    if not itself:
        calls["stats_finish", p.finish_bc, wide] = (k.stats_finish, (ptr, *stats), finish)
    return {key: _kernels.ahead(kernel, *args, **kw) for key, (kernel, args, kw) in calls.items()}


class NormAct(torch.autograd.Function):
    """act(batch_norm(x, training=True)) for a channels_last x; gradients for x, weight and bias. `itself`: the
    element-wise passes finish the sums (norm_act decides by the layer's largest batch: FINISHING_PROGRAMS)."""

    @staticmethod
    def forward(ctx, x, weight, bias, norm, code, itself=False):
        k = _source()
        n, c, h, w = x.shape
        rows = n * h * w
        p = _plan(rows, c, _kernels.sms(x.device))
        f32 = dict(dtype=torch.float32, device=x.device)
        partials = torch.empty(2, p.programs, c, **f32)
        sums = dict(BM=p.sum_rows, BC=p.bc, num_warps=SUM_WARPS)
        _kernels.launcher(k.stats_partial, (p.programs, p.blocks))(
            x, partials, rows, c, p.per_program, p.programs, **sums
        )
        stats = torch.empty(4, c, **f32)  # mean, 1/std, scale, shift
        kept = (stats, norm.running_mean, norm.running_var, norm.num_batches_tracked, norm.momentum, norm.eps)
        if not itself:
            _kernels.launcher(k.stats_finish, (_kernels.cdiv(c, p.finish_bc),))(
                x, partials, weight, bias, *kept, rows, c, p.programs, BP=SUM_TILE // p.finish_bc, BC=p.finish_bc,
                num_warps=SUM_WARPS,
            )  # fmt: skip
        y = torch.empty_like(x, memory_format=torch.channels_last)
        grid = (_kernels.cdiv(rows, p.apply_rows), p.blocks)
        _kernels.launcher(k.apply_forward, grid)(
            x, y, partials, weight, bias, *kept, rows, c, p.programs, ACT=code, FINISH=itself, BM=p.apply_rows,
            BC=p.bc, BP=SUM_TILE // p.bc, num_warps=APPLY_WARPS,
        )  # fmt: skip
        ctx.save_for_backward(x, stats)
        ctx.code, ctx.itself = code, itself
        return y

    @staticmethod
    def backward(ctx, dy):
        k = _source()
        x, stats = ctx.saved_tensors
        mean, rstd, scale, shift = stats
        dy = dy.contiguous(memory_format=torch.channels_last)
        n, c, h, w = x.shape
        rows = n * h * w
        p = _plan(rows, c, _kernels.sms(x.device))
        partials = torch.empty(2, p.programs, c, dtype=torch.float32, device=x.device)
        g = torch.empty_like(dy) if ctx.code == 1 else dy  # GELU's g is stored, ReLU's recomputed (grad_partial)
        _kernels.launcher(k.grad_partial, (p.programs, p.blocks))(
            x, dy, g, scale, shift, mean, rstd, partials, rows, c, p.per_program, p.programs, ACT=ctx.code,
            BM=p.sum_rows, BC=p.bc, num_warps=SUM_WARPS,
        )  # fmt: skip
        sums = torch.empty(2, c, dtype=torch.float32, device=x.device)  # of g, of g * xhat: bias, weight gradients
        itself = ctx.needs_input_grad[0] and ctx.itself
        if not itself:
            _kernels.launcher(k.sum_partials, (_kernels.cdiv(c, p.finish_bc),))(
                partials, sums, c, p.programs, BP=SUM_TILE // p.finish_bc, BC=p.finish_bc, num_warps=SUM_WARPS
            )  # fmt: skip
        dx = None
        if ctx.needs_input_grad[0]:
            dx = torch.empty_like(x, memory_format=torch.channels_last)
            grid = (_kernels.cdiv(rows, p.apply_rows), p.blocks)
            _kernels.launcher(k.grad_apply, grid)(
                x, g, dx, scale, shift, mean, rstd, partials, sums, rows, c, p.programs, ACT=ctx.code, ADD=itself,
                BM=p.apply_rows, BC=p.bc, BP=SUM_TILE // p.bc, num_warps=APPLY_WARPS,
            )  # fmt: skip
        dw = sums[1] if ctx.needs_input_grad[1] else None
        db = sums[0] if ctx.needs_input_grad[2] else None
        return dx, dw, db, None, None, None

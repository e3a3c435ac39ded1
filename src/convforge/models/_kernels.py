"""Hand-written Triton kernels for layers whose PyTorch CUDA kernels are slow on the training layout.

Max pool with non-overlapping windows on channels_last maps. Why: PyTorch's channels_last bf16 max_pool2d took
0.67 ms forward + backward on cifar10-fast's 1024 x 64 x 31 x 31 map (H200, torch 2.11,
benchmarks/maxpool_speed.py) where reading and writing the tensors takes ~0.08 ms, and it saves int64 indices.
Each program here takes a block of output positions x a block of channels (channels innermost: coalesced loads),
keeps the window's first maximum as max_pool2d does (so gradients are identical, ties included) and saves its
position in the window as int8. The backward writes every input element once, gradient or zero: no atomics,
deterministic.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn

FLOAT_TYPES = (torch.bfloat16, torch.float16, torch.float32)  # what the fused kernels load and store
# Elements of a map below which the kernels index it in int32: int64 offset arithmetic (divisions above all) took
# ~6 us of each small conv's 16-23 us forward + backward (small_conv_speed_*.md); larger maps keep PyTorch's ops.
INT32_LIMIT = 2**31
BLOCK_P, BLOCK_C = 32, 64  # output positions x channels per program: 2048 elements, 4 warps (pool_blocks)
# Every channel count takes the Triton pool: maps of fewer than 64 channels take a narrower channel block
# (pool_blocks). With the 64-wide block, digits-cnn's 8- and 16-channel pools had taken 24.6 + 24.2 us a step against
# PyTorch's 13.3 + 16.5, and such maps were left to PyTorch; with it, fwd + bwd in a CUDA graph
# (maxpool_speed_*_small.md, H200): digits-cnn 128x8x28x28 / 128x16x14x14 15 / 6 us vs PyTorch's 18 / 15, simple-cnn
# 32x32x30x30 / 32x32x13x13 6 / 8 vs 21 / 15.
# Small maps too, though the microbenchmark says otherwise (1024 x 256 x 7 x 7: 0.30 ms forward + backward against
# PyTorch's 0.15, maxpool_speed_*_pool_vector.md): with cifar10-fast's 7 x 7 pool left to PyTorch, its 8 epochs took
# 1.16 s instead of 1.13 s (3 seeds each, one H200, cifar_sweep_*_pool_suits.md vs *_pool_vector.md).


@functools.cache
def available() -> bool:
    """Triton is importable (it ships with PyTorch's CUDA wheels; a CPU-only install may lack it) and the GPU is an
    Ampere or newer one (sm_80+: what Triton targets best; measured on Hopper). Elsewhere PyTorch's own ops run."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 0)


@functools.cache
def _kernels():
    from . import _pool_triton

    return _pool_triton.pool_forward, _pool_triton.pool_backward


# Programmatic dependent launch for the kernels that wait for their predecessor (_dependent_triton.py); benchmarks
# switch it off to measure against plain launches (same_recipe_ab.py pdl).
DEPENDENT_LAUNCH = True


@functools.cache
def _pdl_supported() -> bool:
    from . import _dependent_triton

    return bool(_dependent_triton.SUPPORTED)


@functools.cache
def _waits(kernel) -> bool:
    return "wait_for_previous()" in getattr(kernel, "src", "")


def dependent(kernel) -> dict[str, bool]:
    """Launch options for `kernel`: PDL where the GPU and Triton have it and the kernel waits for its predecessor at
    its start (a kernel that does not wait must never start early); {} otherwise. Compiled in, so compile_ahead
    passes the same."""
    if DEPENDENT_LAUNCH and available() and _pdl_supported() and _waits(kernel):
        return {"launch_pdl": True}
    return {}


def launcher(kernel, grid) -> Callable[..., object]:
    """kernel[grid] with dependent(kernel)'s launch options: how convforge launches its Triton kernels."""
    return functools.partial(kernel[grid], **dependent(kernel))


def compile_ahead(kernel, *args, **kwargs) -> None:
    """kernel.warmup(*args, **kwargs): compile (or load from Triton's disk cache) without running; then also build
    its launcher and load its module, which Triton otherwise does at the first launch: on a fresh machine (empty
    Triton cache) each launcher is a C build, and folder-fast's first epoch took 2.8-4.6 s against 0.6-0.8 s with a
    warm cache while every kernel had been compiled in the warm-up (H200, folder_cli_trace_*.log); built here, epoch
    1 took 0.7-0.9 s against 3.0-3.5 s on the same machine (folder_cli_ahead_ab_*.md)."""
    compiled = kernel.warmup(*args, **dependent(kernel), **kwargs)
    init = getattr(compiled, "_init_handles", None)  # Triton's lazy loader (private: where absent, the launch does it)
    if init is not None:
        init()


def ahead(kernel, *args, **kwargs) -> Callable[[], None]:
    """compile_ahead(kernel, ...) as a call to make later (a warm-up job)."""
    return functools.partial(compile_ahead, kernel, *args, **kwargs)


def compile_pool(dtype: torch.dtype, channels: set[int] | None = None, kh: int = 2, kw: int = 2) -> None:
    """Compile (or load from Triton's disk cache) the pool kernels for `dtype` maps of each channel count in `channels`
    (default: 64) without running them.

    Triton specializes on dtypes, pointer alignment, the constexprs (the blocks follow the channel count) and whether
    the channel count is a multiple of 16 (the other sizes are not specialized), so these are the kernels a later
    launch on real maps picks up (engine/warmup.py calls this while data loads).
    """
    forward, backward = _kernels()
    variants = {(pool_blocks(c), c % 16 == 0): c for c in sorted(channels or {BLOCK_C})}  # one count per kernel
    for c in variants.values():
        bp, bc = pool_blocks(c)
        sizes = (1, 1, 1, kh, kw, c)
        options = dict(KH=kh, KW=kw, BP=bp, BC=bc, num_warps=4, grid=(1, 1))
        compile_ahead(forward, dtype, dtype, torch.int8, *sizes, **options)
        compile_ahead(backward, dtype, torch.int8, dtype, *sizes, **options)


def activation_code(act: nn.Module) -> int | None:
    """The fused kernels' ACT code for an activation module (_norm_act.py, _conv_act.py): 0 ReLU, 1 GELU in its exact
    erf form; None for any other."""
    if type(act) is nn.ReLU:
        return 0
    if type(act) is nn.GELU and act.approximate == "none":
        return 1
    return None


def fuses_relu(act: nn.Module | None) -> bool:
    """The layer after a small conv or dense layer is a ReLU its kernels run with it (no hooks on it)."""
    return act is not None and activation_code(act) == 0 and not (act._forward_hooks or act._forward_pre_hooks)


def adjacent_pairs(layers: nn.ModuleList, code: Callable[[nn.Module, nn.Module], int | None]) -> frozenset[int]:
    """Indices i of the layers that a fused kernel can run together with layer i + 1 (`code` is not None)."""
    return frozenset(i for i in range(len(layers) - 1) if code(layers[i], layers[i + 1]) is not None)


def may_fuse(enabled: bool, x: torch.Tensor, *modules: nn.Module, dims: tuple[int, ...] = (4,)) -> bool:
    """The conditions every fused path shares: switched on, a CUDA tensor of a float type with `dims` dimensions (a
    4-d map) and fewer than INT32_LIMIT elements, no tracing, scripting or torch.compile (they see PyTorch's layers),
    no hooks on the modules (they must fire), Triton available."""
    if not (enabled and x.is_cuda and x.dim() in dims and x.dtype in FLOAT_TYPES and 0 < x.numel() < INT32_LIMIT):
        return False
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling():
        return False
    hooked = any(m._forward_hooks or m._forward_pre_hooks for m in modules)
    return not hooked and available()


TICKET_SLOTS = 64  # arrival counters per stream (_arrival_triton.py): a launch uses one per group of programs
_TICKETS: dict[tuple[torch.device, int], torch.Tensor] = {}


def tickets(device: torch.device) -> torch.Tensor:
    """Arrival counters (int32 zeros) for kernels whose last-arriving program does a final step (_arrival_triton.py);
    every launch leaves its counters at zero. One set per stream, since launches on one stream run one after another;
    a CUDA graph keeps the set of the stream it was captured on (its replays never overlap other launches here)."""
    stream = torch.cuda.current_stream(device).cuda_stream if device.type == "cuda" else 0
    counters = _TICKETS.get((device, stream))
    if counters is None:
        counters = _TICKETS[(device, stream)] = torch.zeros(TICKET_SLOTS, dtype=torch.int32, device=device)
    return counters


# A captured small dense layer's backward runs its input and weight gradients side by side. Alternating A/B in one
# process (H200, same_recipe_ab_side_ops_*.txt): later epochs took 3.8% less time for simple-cnn, 5.3% for the
# Fashion MLP, 1.4% for digits-cnn. The small convs' gradients the same way: 6% less for digits-cnn but 23% MORE for
# simple-cnn's 32 -> 32 conv; so only shallow convs do (models/_small_conv.py SIDE_BY_SIDE_COLUMNS).
SIDE_BY_SIDE = True  # benchmarks switch it off to measure the launches one after the other
_SIDE_STREAMS: dict[torch.device, torch.cuda.Stream] = {}


def side_by_side(first: Callable[[], object] | None, second: Callable[[], object] | None, beside: bool = True) -> None:
    """first() on the current stream and second() on a side stream beside it, then joined, while a CUDA graph is
    being captured: the graph holds them as two parallel branches, which the GPU runs at once (a backward's input
    gradient and weight gradient: small latency-bound launches that need not wait for each other). Eagerly, or with
    `beside` False (the caller measured them slower so), they run one after the other (no stream events on the
    host's path). Both may only write tensors allocated before; None is nothing to run."""
    capturing = beside and SIDE_BY_SIDE and torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()
    if first is None or second is None or not capturing:
        for call in (first, second):
            if call is not None:
                call()
        return
    main = torch.cuda.current_stream()
    side = _SIDE_STREAMS.get(main.device)
    if side is None:
        side = _SIDE_STREAMS[main.device] = torch.cuda.Stream(main.device)
    side.wait_stream(main)
    with torch.cuda.stream(side):
        second()
    first()
    main.wait_stream(side)


@functools.cache
def sms(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device (launch grids follow it); 4 for the CPU (Triton's interpreter)."""
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 4


def cdiv(a: int, b: int) -> int:
    """Blocks of `b` needed to cover `a` (a launch grid's size)."""
    return -(-a // b)


def pool_blocks(c: int) -> tuple[int, int]:
    """Output positions x channels per program: BLOCK_P x BLOCK_C from 64 channels on; fewer channels take a
    narrower channel block and as many more positions (the same 2048 elements a program)."""
    bc = min(BLOCK_C, max(4, 1 << max(0, c - 1).bit_length()))
    return BLOCK_P * BLOCK_C // bc, bc


def _launch(kernel, tensors: tuple[torch.Tensor, ...], shape: tuple[int, ...], kh: int, kw: int,
            partial_windows: bool = False) -> None:  # fmt: skip
    """`partial_windows`: a program position for each window the map starts, whole or not (the backward's zeros)."""
    n, c, h, w = shape
    ho, wo = h // kh, w // kw
    positions = n * (cdiv(h, kh) * cdiv(w, kw) if partial_windows else ho * wo)
    bp, bc = pool_blocks(c)
    grid = (cdiv(positions, bp), cdiv(c, bc))
    launcher(kernel, grid)(*tensors, positions, ho, wo, h, w, c, KH=kh, KW=kw, BP=bp, BC=bc, num_warps=4)


class WindowMax(torch.autograd.Function):
    """max_pool2d(x, (kh, kw)) with stride = kernel and no padding, on a channels_last x (output channels_last)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
        n, c, h, w = x.shape
        cl = torch.channels_last
        y = torch.empty((n, c, h // kh, w // kw), dtype=x.dtype, device=x.device, memory_format=cl)
        arg = torch.empty(y.shape, dtype=torch.int8, device=x.device, memory_format=cl)
        _launch(_kernels()[0], (x, y, arg), x.shape, kh, kw)
        ctx.save_for_backward(arg)
        ctx.geometry = (x.shape, kh, kw)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (arg,) = ctx.saved_tensors
        shape, kh, kw = ctx.geometry
        grad = grad.contiguous(memory_format=torch.channels_last)
        gx = torch.empty(shape, dtype=grad.dtype, device=grad.device, memory_format=torch.channels_last)
        _launch(_kernels()[1], (grad, arg, gx), shape, kh, kw, partial_windows=True)
        return gx, None, None

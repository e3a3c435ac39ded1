"""A stride-1 convolution of few channels (and the ReLU after it) as one autograd op of Triton kernels, for training
and prediction under autocast on CUDA.

Why: the same-recipe models (digits-cnn: 1 -> 8 -> 16 -> 32 channels; simple-cnn: 3 -> 32 -> 32) spend their steps
on launches, not arithmetic. A digits-cnn training step at batch 128 took 307 us of GPU time (H200, torch 2.11,
benchmarks/results/step_variants_smallpool_*.md), of which cuDNN's small-channel convolutions took 124 us
(11-21 us a kernel, split-K reductions and a layout transform among them), autocast's weight casts and the cast of
each weight gradient back to fp32 35 us, and the conv-bias gradient sums 33 us. Here a conv is 3 launches forward +
backward for a first layer (forward; weight-gradient partial sums; their finishing sum) and 4 for the others (+ the
input gradient): the kernels read the fp32 weights and cast them in registers, write fp32 weight gradients in the
weight's own layout, and sum the bias gradient inside the weight-gradient pass. A ReLU after the conv runs in the
forward's epilogue and gates the output gradient inside the backward kernels (the saved output says where it passed).

Numerics as autocast's conv: bf16 (or fp16) operands, fp32 accumulation, one rounding of the output; the gradients
are sums in a fixed order (deterministic), the weight gradient kept in fp32 where cuDNN rounds it to bf16 first.
SpecNet (models/build.py) routes top-level convs here; fp32 training, export, torch.compile, the CPU and modules
with hooks keep PyTorch's layers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn

from . import _kernels

ENABLED = True  # benchmarks switch the Triton path off to measure cuDNN's
MAX_CHANNELS = 64  # input and output channels: one program holds all of them; wider convs are cuDNN's GEMM work
MAX_KERNEL = 5  # KH, KW <= 5: the K blocks (KH x KW x C_in columns) are unrolled
# Multiply-adds of one forward, batch included, up to which the kernels run: the launch-bound regime of the same-recipe
# models (25-50 M at their batch sizes); cifar10-fast's 24 -> 64 conv at batch 1024 (13.6 G) is tensor-core GEMM
# work that cuDNN does well.
MAX_MACS = 2**28
# Launch shapes (benchmarks/small_conv_speed.py --sweep, H200: small_conv_sweep_*.json; within 1-3 us of the best
# on the same-recipe convs, 20-25 us forward + backward, 46 us for simple-cnn's 32 -> 32). Forward / input gradient:
# output pixels (x all channels) per program, im2col columns per dot.
FORWARD_PIXELS, FORWARD_K, FORWARD_WARPS = 64, 64, 4
# Weight gradient: pixels and im2col columns per dot; programs (pixel chunks x column blocks) per SM, and at most
# MAX_CHUNKS chunks, which the finishing pass adds FINISH_ROWS at a time for FINISH_ENTRIES gradient entries: each
# program then loops a few times only (launch-bound sizes: a long loop is latency).
WGRAD_PIXELS, WGRAD_K, WGRAD_WARPS = 128, 64, 4
CHUNKS_PER_SM, MAX_CHUNKS = 4, 512
# A captured backward runs the input gradient and the weight gradient side by side (models/_kernels.py side_by_side)
# when the im2col depth is at most this many WGRAD_K column blocks. Alternating same-recipe runs (H200,
# same_recipe_ab_side_ops_*.txt, same_recipe_ab_side_conv_*.txt): digits-cnn's convs (8 -> 16, 16 -> 32: 2 and 3
# blocks) later epochs -6%, but simple-cnn's 32 -> 32 (5 blocks, whose weight-gradient programs each run a long
# column loop) +23%.
SIDE_BY_SIDE_COLUMNS = 3
FINISH_ROWS, FINISH_ENTRIES, FINISH_WARPS = 128, 32, 4


def padding(conv: nn.Module) -> tuple[int, int] | None:
    """The conv's zero padding as numbers, or None where the kernels cannot run it (the module is not a plain
    Conv2d, or has groups, dilation, a stride, another padding mode, or too many channels or taps)."""
    if type(conv) is not nn.Conv2d or conv.groups != 1 or conv.dilation != (1, 1) or conv.stride != (1, 1):
        return None
    (kh, kw), pad = conv.kernel_size, conv.padding
    if conv.padding_mode != "zeros" or max(conv.in_channels, conv.out_channels) > MAX_CHANNELS:
        return None
    if max(kh, kw) > MAX_KERNEL:
        return None
    if pad == "valid":
        return 0, 0
    if pad == "same":
        return (kh // 2, kw // 2) if kh % 2 and kw % 2 else None  # PyTorch pads an even kernel unevenly
    return tuple(pad)


def macs(conv: nn.Conv2d, output_pixels: int) -> int:
    """Multiply-adds of the conv's forward over `output_pixels` pixels (batch included)."""
    return output_pixels * conv.in_channels * conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]


def convs(layers: nn.ModuleList) -> frozenset[int]:
    """Indices of the top-level convs that the kernels can run."""
    return frozenset(i for i, layer in enumerate(layers) if padding(layer) is not None)


def usable(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    """This forward of `conv` may run on the kernels: autocast to bf16/fp16 on CUDA (fp32 training keeps cuDNN, whose
    TF32 or fp32 numerics the kernels do not copy), the input's channels match, fp32 weights, a small problem
    (MAX_MACS), and the checks every fused path shares."""
    if not torch.is_autocast_enabled("cuda") or torch.get_autocast_dtype("cuda") not in (torch.bfloat16, torch.half):
        return False
    if x.dim() != 4 or x.shape[1] != conv.in_channels or conv.weight.dtype != torch.float32:
        return False
    pad = padding(conv)  # the module may have been replaced since the model was built
    if pad is None:
        return False
    (kh, kw), (n, _, h, w) = conv.kernel_size, x.shape
    pixels = n * (h + 2 * pad[0] - kh + 1) * (w + 2 * pad[1] - kw + 1)
    if macs(conv, pixels) > MAX_MACS or pixels * conv.out_channels >= _kernels.INT32_LIMIT:
        return False  # too large: cuDNN's GEMM work, or beyond the kernels' int32 offsets
    return _kernels.may_fuse(ENABLED, x, conv)


def small_conv(conv: nn.Conv2d, x: torch.Tensor, relu: bool) -> torch.Tensor:
    """conv(x), then ReLU when `relu`, under autocast: the output channels_last in autocast's type."""
    geometry = (conv.kernel_size, padding(conv))
    return SmallConv.apply(x, conv.weight, conv.bias, geometry, relu, torch.get_autocast_dtype("cuda"))


@functools.cache
def _source():
    from . import _small_conv_triton

    return _small_conv_triton


def _block(size: int, cap: int = 1 << 30) -> int:
    return max(16, min(cap, 1 << (size - 1).bit_length()))  # tl.dot's smallest side is 16


def _forward_options(cin: int, cout: int, geometry, sign: int, gate: bool, bias: bool, relu: bool) -> dict:
    (kh, kw), (ph, pw) = geometry
    return dict(CIN=cin, COUT=cout, KH=kh, KW=kw, PAD_H=ph, PAD_W=pw, SIGN=sign, GATE=gate, HAS_BIAS=bias,
                ACT=int(relu), BP=FORWARD_PIXELS, BK=_block(kh * kw * cin, FORWARD_K), BCO=_block(cout),
                num_warps=FORWARD_WARPS)  # fmt: skip


def _wgrad_options(cin: int, cout: int, geometry, gate: bool) -> dict:
    (kh, kw), (ph, pw) = geometry
    return dict(CIN=cin, COUT=cout, KH=kh, KW=kw, PAD_H=ph, PAD_W=pw, GATE=gate, BP=WGRAD_PIXELS,
                BK=_block(kh * kw * cin, WGRAD_K), BCO=_block(cout), num_warps=WGRAD_WARPS)  # fmt: skip


def _finish_options(cin: int, cout: int, geometry, bias: bool) -> dict:
    (kh, kw), _ = geometry
    return dict(CIN=cin, COUT=cout, KW=kw, TAPS=kh * kw, HAS_BIAS=bias, BR=FINISH_ROWS, BE=FINISH_ENTRIES,
                num_warps=FINISH_WARPS)  # fmt: skip


def compile_jobs(conv: nn.Conv2d, relu: bool, in_dtype: torch.dtype, dtype: torch.dtype) -> list[Callable[[], object]]:
    """The compiles (or loads from Triton's disk cache) of the kernels a training step launches for `conv` on
    `in_dtype` input maps under `dtype` autocast, as calls that run none of them (engine/warmup.py)."""
    k, cin, cout, bias = _source(), conv.in_channels, conv.out_channels, conv.bias is not None
    geometry, f32 = (conv.kernel_size, padding(conv)), torch.float32
    sizes, grid = [2**20] * 13, (1,)
    jobs = [_kernels.ahead(k.conv_forward, in_dtype, in_dtype, f32, f32, dtype, *sizes, grid=grid,
                           **_forward_options(cin, cout, geometry, 1, False, bias, relu))]  # fmt: skip
    if in_dtype == dtype:  # inside the network: the input gradient too (a first layer's input wants none)
        jobs.append(_kernels.ahead(k.conv_forward, dtype, dtype, f32, f32, dtype, *sizes, grid=grid,
                                   **_forward_options(cout, cin, geometry, -1, relu, False, False)))  # fmt: skip
    jobs.append(_kernels.ahead(k.wgrad_partial, in_dtype, dtype, dtype, f32, *[2**20] * 11, grid=(1, 1),
                               **_wgrad_options(cin, cout, geometry, relu)))  # fmt: skip
    jobs.append(_kernels.ahead(k.wgrad_finish, f32, f32, f32, *[2**20] * 6, grid=grid,
                               **_finish_options(cin, cout, geometry, bias)))  # fmt: skip
    return jobs


class SmallConv(torch.autograd.Function):
    """act(conv2d(x, weight, bias, stride 1, zero padding)) with act ReLU or none, computed in `dtype` (the output's
    type); gradients for x, weight and bias."""

    @staticmethod
    def forward(ctx, x, weight, bias, geometry, relu, dtype):
        (kh, kw), (ph, pw) = geometry
        n, cin, h, w = x.shape
        cout = weight.shape[0]
        ho, wo = h + 2 * ph - kh + 1, w + 2 * pw - kw + 1
        y = torch.empty((n, cout, ho, wo), dtype=dtype, device=x.device, memory_format=torch.channels_last)
        pixels = n * ho * wo
        if pixels:
            _kernels.launcher(_source().conv_forward, (_kernels.cdiv(pixels, FORWARD_PIXELS),))(
                x, x, weight, weight if bias is None else bias, y, pixels, ho, wo, h, w, *x.stride(),
                *weight.stride(), **_forward_options(cin, cout, geometry, 1, False, bias is not None, relu),
            )  # fmt: skip
        ctx.save_for_backward(x, weight, y if relu else None)
        ctx.geometry, ctx.relu, ctx.has_bias, ctx.dtype = geometry, relu, bias is not None, dtype
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight, y = ctx.saved_tensors
        dy = dy.contiguous(memory_format=torch.channels_last).to(ctx.dtype)
        n, cin, h, w = x.shape
        cout, ho, wo = dy.shape[1:]
        dx = dw = db = None
        input_grad = weight_grads = None
        if ctx.needs_input_grad[0]:
            dx = torch.empty((n, cin, h, w), dtype=dy.dtype, device=dy.device, memory_format=torch.channels_last)
            if dx.numel():
                wo_, wi_, wh_, ww_ = weight.stride()
                input_grad = functools.partial(
                    _kernels.launcher(_source().conv_forward, (_kernels.cdiv(n * h * w, FORWARD_PIXELS),)),
                    dy, dy if y is None else y, weight, weight, dx, n * h * w, h, w, ho, wo, *dy.stride(), wi_,
                    wo_, wh_, ww_, **_forward_options(cout, cin, ctx.geometry, -1, ctx.relu, False, False),
                )  # fmt: skip
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            dw, db, weight_grads = _weight_grads(x, dy, y, weight, ctx.geometry, ctx.has_bias)
        (kh, kw), _ = ctx.geometry
        beside = _kernels.cdiv(kh * kw * cin, WGRAD_K) <= SIDE_BY_SIDE_COLUMNS  # shallow: beside in a captured step
        _kernels.side_by_side(input_grad, weight_grads, beside)
        return None if dx is None else dx.to(x.dtype), dw, db, None, None, None


def _weight_grads(x, dy, y, weight, geometry, has_bias):
    """fp32 gradients of the weight (in its own layout) and of the bias (None without one), allocated, and the call
    that launches their kernels."""
    k = _source()
    (kh, kw), _ = geometry
    n, cin, h, w = x.shape
    cout, ho, wo = dy.shape[1:]
    pixels, options = n * ho * wo, _wgrad_options(cin, cout, geometry, y is not None)
    columns = _kernels.cdiv(kh * kw * cin, options["BK"])
    dw = torch.empty_strided(weight.shape, weight.stride(), dtype=torch.float32, device=weight.device)
    db = torch.empty(cout, dtype=torch.float32, device=weight.device) if has_bias else None
    blocks = _kernels.cdiv(pixels, WGRAD_PIXELS)
    chunks = max(1, min(blocks, CHUNKS_PER_SM * _kernels.sms(x.device) // columns, MAX_CHUNKS))
    per_chunk = _kernels.cdiv(blocks, chunks) * WGRAD_PIXELS
    chunks = _kernels.cdiv(pixels, per_chunk) if pixels else 1
    row = cout * kh * kw * cin + cout
    alloc = torch.empty if pixels else torch.zeros  # every entry is written, except for an empty batch (sums: 0)
    partial = alloc(chunks, row, dtype=torch.float32, device=x.device)

    def launch() -> None:
        if pixels:
            _kernels.launcher(k.wgrad_partial, (chunks, columns))(
                x, dy, dy if y is None else y, partial, pixels, ho, wo, h, w, *x.stride(), per_chunk, row, **options
            )  # fmt: skip
        _kernels.launcher(k.wgrad_finish, (_kernels.cdiv(row, FINISH_ENTRIES),))(
            partial, dw, dw if db is None else db, chunks, row, *weight.stride(),
            **_finish_options(cin, cout, geometry, has_bias),
        )  # fmt: skip

    return dw, db, launch

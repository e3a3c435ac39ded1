"""A convolution with few input taps and the ReLU/GELU after it as one Triton kernel, forward only, on CUDA maps:
used where no gradient is wanted (evaluation, prediction, and training once the conv is frozen).

Why: cuDNN runs such first layers (3 input channels, 2x2 or 3x3 kernels) with a generic engine and the activation as a
second pass. cifar10-fast's frozen whitening conv (3 -> 24 channels, 2x2, batch 1024) took 135 us a step and its GELU
33 more, for 47 MB of output (H200, benchmarks/results/step_variants_normact_*.json); conv2d + GELU under autocast
took 244 us where this kernel takes 100 (norm_act_speed_*.md). Here each output is the sum of
C x KH x KW (<= MAX_TAPS) products accumulated in fp32, plus the bias, through the activation and rounded once; the
input is read as it comes (fp32 images: no cast kernel), the output takes autocast's type inside autocast.
SpecNet (models/build.py) routes top-level (Conv2d, ReLU | GELU) pairs here; anything that needs a gradient, export,
torch.compile, the CPU and modules with hooks keep PyTorch's layers.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from . import _kernels

ENABLED = True  # benchmarks switch the fused path off to measure PyTorch's
MAX_TAPS = 32  # C x KH x KW: the first layers of image models; larger convs are GEMM work for cuDNN
MAX_OUT = 128  # output channels held in one program's accumulator
# output pixels per program (x all output channels), warps per program: 128 x 2 took 100 us on cifar10-fast's stem
# at batch 1024, 64 x 4 took 129, 32-256 x 2-8 100-186 (benchmarks/results/norm_act_speed_sweep_*.md, H200)
PIXELS, WARPS = 128, 2


def activation_code(conv: nn.Module, act: nn.Module) -> int | None:
    """The kernel's ACT code for a (conv, activation) module pair it can run, else None."""
    if type(conv) is not nn.Conv2d or conv.groups != 1 or conv.dilation != (1, 1) or conv.padding_mode != "zeros":
        return None
    if isinstance(conv.padding, str) and conv.padding != "valid":
        return None
    stride, pad = conv.stride, _pad(conv)
    if stride[0] != stride[1] or pad[0] != pad[1]:
        return None
    if conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1] > MAX_TAPS or conv.out_channels > MAX_OUT:
        return None
    return _kernels.activation_code(act)


def pairs(layers: nn.ModuleList) -> frozenset[int]:
    """Indices of the convs that the kernel can run with the activation after them."""
    return _kernels.adjacent_pairs(layers, activation_code)


def fused_code(conv: nn.Module, act: nn.Module, x: torch.Tensor) -> int | None:
    """The ACT code when this forward may run fused: nothing needs a gradient, a CUDA map, no hooks."""
    code = activation_code(conv, act)
    if code is None or x.dim() != 4 or x.shape[1] != conv.in_channels:
        return None
    grads = (x, conv.weight) if conv.bias is None else (x, conv.weight, conv.bias)
    if torch.is_grad_enabled() and any(t.requires_grad for t in grads):
        return None
    ho, wo = _output_size(conv, *x.shape[2:])
    outputs = x.shape[0] * conv.out_channels * ho * wo
    if outputs >= _kernels.INT32_LIMIT:  # the kernel's int32 offsets
        return None
    return code if _kernels.may_fuse(ENABLED, x, conv, act) else None


@functools.cache
def _source():
    from . import _conv_act_triton

    return _conv_act_triton


def _pad(conv: nn.Conv2d) -> tuple[int, int]:
    return (0, 0) if conv.padding == "valid" else tuple(conv.padding)


def compile_kernel(conv: nn.Conv2d, code: int, dtype: torch.dtype) -> None:
    """Compile (or load from Triton's disk cache) the kernel for `conv` + activation `code` on fp32 input maps (the
    normalized images convforge feeds a first layer) with `dtype` output, without running it (engine/warmup.py)."""
    o = conv.out_channels
    shapes = dict(C=conv.in_channels, KH=conv.kernel_size[0], KW=conv.kernel_size[1], STRIDE=conv.stride[0],
                  PAD=_pad(conv)[0], OUT=o, BO=_block(o))  # fmt: skip
    f32 = torch.float32
    _kernels.compile_ahead(
        _source().conv_act_forward, f32, f32, f32, dtype, *[2**20] * 9, ACT=code, HAS_BIAS=conv.bias is not None,
        BP=PIXELS, num_warps=WARPS, grid=(1,), **shapes,
    )  # fmt: skip


def _output_size(conv: nn.Conv2d, h: int, w: int) -> tuple[int, int]:
    (kh, kw), stride, pad = conv.kernel_size, conv.stride[0], _pad(conv)[0]
    return (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1


def _block(out: int) -> int:
    return max(8, 1 << (out - 1).bit_length())


@torch.no_grad()
def conv_act(conv: nn.Conv2d, code: int, x: torch.Tensor) -> torch.Tensor:
    """act(conv(x)) without autograd, for x in any layout; the output channels_last (convforge's layout on CUDA: the
    model's weights are channels_last there, and cuDNN takes either), in autocast's type under autocast (as
    conv2d's would be), else x's."""
    n, c, h, w = x.shape
    (kh, kw), stride, pad = conv.kernel_size, conv.stride[0], _pad(conv)[0]
    ho, wo = _output_size(conv, h, w)
    dtype = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else x.dtype
    y = torch.empty((n, conv.out_channels, ho, wo), dtype=dtype, device=x.device, memory_format=torch.channels_last)
    if y.numel() == 0:
        return y
    taps = conv.weight.detach().float().permute(2, 3, 1, 0).contiguous()  # (KH, KW, C, O): one row per tap
    bias = taps if conv.bias is None else conv.bias.detach().float()
    o = conv.out_channels
    pixels = n * ho * wo
    shapes = dict(C=c, KH=kh, KW=kw, STRIDE=stride, PAD=pad, OUT=o, BO=_block(o))
    _kernels.launcher(_source().conv_act_forward, (_kernels.cdiv(pixels, PIXELS),))(
        x, taps, bias, y, pixels, ho, wo, h, w, *x.stride(), ACT=code, HAS_BIAS=conv.bias is not None,
        BP=PIXELS, num_warps=WARPS, **shapes,
    )  # fmt: skip
    return y

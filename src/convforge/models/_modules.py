"""The few torch modules that torch.nn lacks; each one is a plain tensor op so compile and ONNX export work."""

from __future__ import annotations

import torch
from torch import nn

from . import _kernels


class Maxout(nn.Module):
    """Channel-wise maxout: C -> C / pieces; output channel j is the max of input channels j*pieces .. +pieces-1."""

    def __init__(self, pieces: int) -> None:
        super().__init__()
        self.pieces = pieces

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        # reshape, not view: a channels_last input cannot always be viewed this way
        return max_over(x.reshape(n, c // self.pieces, self.pieces, *x.shape[2:]), 2)

    def extra_repr(self) -> str:
        return f"pieces={self.pieces}"


class WindowMaxPool(nn.MaxPool2d):
    """nn.MaxPool2d whose CUDA forward/backward are Triton kernels (models/_kernels.py) when windows do not overlap
    (stride = kernel, no padding, no dilation, floor mode) and the input is channels_last (the training layout on
    CUDA; any channel count: the kernels' channel blocks follow it, _kernels.pool_blocks). CPU runs, tracing/ONNX export
    and torch.compile (which fuses its own pool) keep max_pool2d; outputs and gradients are equal."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = _pair(self.kernel_size)
        if self._plain(k) or not x.is_cuda or _exporting() or not _kernels.available():
            return super().forward(x)
        if x.dim() != 4 or not x.is_contiguous(memory_format=torch.channels_last) or x.numel() >= _kernels.INT32_LIMIT:
            return super().forward(x)
        return _kernels.WindowMax.apply(x, *k)

    def _plain(self, k: tuple[int, int]) -> bool:
        overlap = _pair(self.stride) != k or _pair(self.padding) != (0, 0) or _pair(self.dilation) != (1, 1)
        return overlap or self.ceil_mode or k[0] * k[1] > 127  # window positions are saved as int8


def max_over(x: torch.Tensor, dim: int) -> torch.Tensor:
    """x.amax(dim), except under torch.compile: there max(dim), whose backward routes the gradient by the saved
    indices. amax's backward finds the maxima again by equality with the output, and inductor recomputes the input
    of a fused bf16 chain in fp32, so nothing compares equal and the gradient is 0 / 0: cifar10-fast with --compile
    and bf16 trained to NaN from its first step (H200, torch 2.11; tests/models/test_compile.py reproduces it on
    the CPU). Eager keeps amax (unchanged numerics: ties share the gradient)."""
    if torch.compiler.is_compiling():
        return x.max(dim).values
    return x.amax(dim)


def _pair(v) -> tuple[int, int]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _exporting() -> bool:
    return torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling()


class GlobalAvgPool(nn.Module):
    """N x C x H x W -> N x C (average over the whole map; exports to ONNX GlobalAveragePool)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)


class GlobalMaxPool(nn.Module):
    """N x C x H x W -> N x C (maximum over the whole map; exports to ONNX ReduceMax).

    amax, not adaptive_max_pool2d: on channels_last bf16 maps (H200, torch 2.11) the latter's kernels took 190 us
    forward + 157 us backward per batch of 1024 x 256 x 3 x 3 in cifar10-fast, 8% of its training time.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return max_over(x.flatten(2), 2)


class ResidualBlock(nn.Module):
    """``act(body(x) + shortcut(x))``; an empty ``shortcut`` is the identity."""

    def __init__(self, body: list[nn.Module], shortcut: list[nn.Module], act: nn.Module) -> None:
        super().__init__()
        self.body = nn.ModuleList(body)
        self.shortcut = nn.ModuleList(shortcut)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for layer in self.body:
            y = layer(y)
        s = x
        for layer in self.shortcut:
            s = layer(s)
        return self.act(y + s)

"""Convolution implementations compared by `convforge bench conv`, each a plain function (x, w, stride, padding).

All are cross-correlations without bias, groups=1, NCHW, as F.conv2d; each but codegen is differentiable through
autograd, so the backward pass of each is the autograd of its own forward ops.

- direct:   the sum over the R x S kernel taps of strided input slices times that tap's K x C weights (a 1x1
            convolution per tap); no im2col buffer, no transform. Loop only over taps, not pixels.
- im2col:   F.unfold to a (C*R*S) x (P*Q) column matrix per image, then one GEMM with the K x (C*R*S) weights.
- fft:      rfft2 of the padded input and of the weights at the padded size, a complex product summed over input
            channels (a batched GEMM per frequency), irfft2, keep the valid (and strided) outputs. torch.fft has no
            bf16, so bf16 inputs are computed in fp32 and the result cast back.
- winograd: F(2x2, 3x3) (Lavin & Gray 2016): 4x4 input tiles with stride 2, U = G g G^T, V = B^T d B, 16 GEMMs
            M = U V over channels, Y = A^T M A. 3x3 stride-1 only.
- aten:     F.conv2d; on CUDA with cuDNN disabled this is PyTorch's own native kernel (im2col + GEMM,
            slow_conv2d), on CPU it is oneDNN/mkldnn.
- cudnn-*:  F.conv2d with cuDNN enabled: `heuristic` (benchmark off: cuDNN's heuristics pick), `benchmark`
            (benchmark on: autotuned over all algorithms once per shape), `deterministic` (deterministic algorithms
            only). PyTorch cannot force one named cuDNN algorithm (IMPLICIT_GEMM, FFT, FFT_TILING, WINOGRAD, ...):
            these three switches are all it exposes.
- codegen:  the code generator's implicit-GEMM fp32 kernel (cudagen/kernels/conv_fp32.cuh) with the tile and
            split-K choice of a generated network, built with nvcc and called through ctypes (_native_conv.py).
            CUDA, fp32 and forward only: it has no autograd, so the bench prints n/a for its backward.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F

ConvFn = Callable[[torch.Tensor, torch.Tensor, int, int], torch.Tensor]


def out_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def conv_direct(x: torch.Tensor, w: torch.Tensor, stride: int = 1, padding: int = 0) -> torch.Tensor:
    x = F.pad(x, (padding,) * 4)
    _, _, h, wd = x.shape
    k, _, r, s = w.shape
    p, q = out_size(h, r, stride, 0), out_size(wd, s, stride, 0)
    out = None
    for i in range(r):
        for j in range(s):
            xs = x[:, :, i : i + stride * (p - 1) + 1 : stride, j : j + stride * (q - 1) + 1 : stride]
            term = torch.einsum("nchw,kc->nkhw", xs, w[:, :, i, j]).float()  # accumulate taps in fp32
            out = term if out is None else out + term
    return out.to(x.dtype)


def conv_im2col(x: torch.Tensor, w: torch.Tensor, stride: int = 1, padding: int = 0) -> torch.Tensor:
    n, _, h, wd = x.shape
    k, _, r, s = w.shape
    cols = F.unfold(x, (r, s), padding=padding, stride=stride)  # N x (C*R*S) x (P*Q)
    out = w.reshape(k, -1) @ cols  # N x K x (P*Q)
    return out.view(n, k, out_size(h, r, stride, padding), out_size(wd, s, stride, padding))


def conv_fft(x: torch.Tensor, w: torch.Tensor, stride: int = 1, padding: int = 0) -> torch.Tensor:
    dtype = x.dtype
    if dtype not in (torch.float32, torch.float64):
        x, w = x.float(), w.float()
    x = F.pad(x, (padding,) * 4)
    _, _, h, wd = x.shape
    _, _, r, s = w.shape
    p, q = out_size(h, r, stride, 0), out_size(wd, s, stride, 0)
    xf = torch.fft.rfft2(x, s=(h, wd))  # N x C x H x (W/2+1)
    wf = torch.fft.rfft2(w, s=(h, wd))  # K x C x H x (W/2+1)
    # correlation = convolution with the conjugate spectrum; sum over C is a GEMM per frequency
    yf = torch.einsum("nchw,kchw->nkhw", xf, wf.conj())
    y = torch.fft.irfft2(yf, s=(h, wd))  # circular, but outputs 0..H-R never wrap
    y = y[:, :, : stride * (p - 1) + 1 : stride, : stride * (q - 1) + 1 : stride]
    return y.to(dtype)


_G = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]]
_BT = [[1.0, 0.0, -1.0, 0.0], [0.0, 1.0, 1.0, 0.0], [0.0, -1.0, 1.0, 0.0], [0.0, 1.0, 0.0, -1.0]]
_AT = [[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, -1.0, -1.0]]


def conv_winograd(x: torch.Tensor, w: torch.Tensor, stride: int = 1, padding: int = 0) -> torch.Tensor:
    k, c, r, s = w.shape
    if (r, s) != (3, 3) or stride != 1:
        raise ValueError("winograd F(2x2,3x3) needs a 3x3 kernel with stride 1")
    n, _, h, wd = x.shape
    p, q = out_size(h, 3, 1, padding), out_size(wd, 3, 1, padding)
    tp, tq = -(-p // 2), -(-q // 2)
    # pad so that tp x tq tiles of 4x4 (stride 2) fit: extra zeros right/bottom only feed cropped outputs
    x = F.pad(x, (padding, 2 * tq + 2 - wd - padding, padding, 2 * tp + 2 - h - padding))
    g, bt, at = (torch.tensor(m, dtype=x.dtype, device=x.device) for m in (_G, _BT, _AT))
    tiles = x.unfold(2, 4, 2).unfold(3, 4, 2)  # N x C x TP x TQ x 4 x 4
    v = bt @ tiles @ bt.T
    v = v.permute(4, 5, 1, 0, 2, 3).reshape(16, c, n * tp * tq)
    u = (g @ w @ g.T).permute(2, 3, 0, 1).reshape(16, k, c)
    m = torch.bmm(u, v).view(4, 4, k, n, tp, tq).permute(3, 2, 4, 5, 0, 1)  # N x K x TP x TQ x 4 x 4
    y = at @ m @ at.T  # N x K x TP x TQ x 2 x 2
    y = y.permute(0, 1, 2, 4, 3, 5).reshape(n, k, 2 * tp, 2 * tq)
    return y[:, :, :p, :q]


def _flagged(enabled: bool, benchmark: bool = False, deterministic: bool = False) -> ConvFn:
    def conv(x: torch.Tensor, w: torch.Tensor, stride: int = 1, padding: int = 0) -> torch.Tensor:
        # fp32 means IEEE fp32 here: TF32 off, as for the other implementations' GEMMs
        with torch.backends.cudnn.flags(
            enabled=enabled, benchmark=benchmark, deterministic=deterministic, allow_tf32=False
        ):
            return F.conv2d(x, w, stride=stride, padding=padding)

    return conv


def native_conv() -> ConvFn | None:
    """The codegen package's own fp32 CUDA conv kernel (forward only), or None without CUDA/nvcc or a build."""
    from ._native_conv import native_conv2d

    return native_conv2d()


def implementations(device: torch.device) -> dict[str, ConvFn]:
    """Name -> function, in table order; cuDNN columns only on CUDA, the codegen column only when present."""
    impls: dict[str, ConvFn] = {
        "direct": conv_direct,
        "im2col": conv_im2col,
        "fft": conv_fft,
        "winograd": conv_winograd,
    }
    if device.type == "cuda":
        impls["aten-nocudnn"] = _flagged(False)
        impls["cudnn-heuristic"] = _flagged(True)
        impls["cudnn-benchmark"] = _flagged(True, benchmark=True)
        impls["cudnn-deterministic"] = _flagged(True, deterministic=True)
        native = native_conv()
        if native is not None:
            impls["codegen"] = native
    else:
        impls["aten"] = _flagged(True)
    return impls


def applicable(name: str, kernel: int, stride: int) -> bool:
    return name != "winograd" or (kernel == 3 and stride == 1)


@contextlib.contextmanager
def strict_fp32():
    """No TF32 in matmuls (im2col, direct, fft and winograd GEMMs) while measuring."""
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old

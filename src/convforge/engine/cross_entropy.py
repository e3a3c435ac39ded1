"""The training loss, mean cross-entropy with label smoothing, as one Triton launch forward and one element-wise op
backward, on CUDA.

Why: the step runs in CUDA graphs and is latency-bound (each kernel ~2-3 us). PyTorch's path for bf16 logits is ~6
kernels: the cast to fp32, log_softmax and nll_loss forward; nll_loss and log_softmax backward and the cast of the
gradient back to bf16. Here the forward computes the loss and, in the same pass, the gradient of the mean loss w.r.t.
the logits (in the logits' dtype, as autograd wants it); the backward scales that saved gradient by the loss's
gradient (a device tensor: no host sync). Numbers equal F.cross_entropy(logits.float(), labels,
label_smoothing=ls): fp32 arithmetic, one rounding of the gradient to the logits' dtype.

Labels must be class indices in [0, classes): F.cross_entropy's ignore_index (-100) is not honoured, and a label out
of range adds no target term where PyTorch's CUDA kernel raises a device-side assert. Class weights, the CPU,
tracing, scripting, torch.compile and problems larger than the limits below take F.cross_entropy.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from ..models import _kernels

# One program for the whole batch: the loss is a sum over rows, and a grid of programs would need a second launch
# (partial sums, then a finishing pass) or atomics (order-dependent, not deterministic) to add them. Its loop is
# serial latency, ~0.6 us an iteration, so it pays only for few rows and classes. Forward + backward in a CUDA graph,
# bf16 logits (H200, cross_entropy_speed_*.txt), PyTorch's path against this one at 512 elements an iteration and 8
# warps: 32 x 10 9.5 / 5.1 us, 128 x 10 13.1 / 7.7, 256 x 10 16.5 / 10.4; but 1024 x 10 21.7 / 27.3, 32 x 100 11.9 /
# 15.1, 128 x 100 14.4 / 46.3. Hence the limits: up to 256 rows of up to 16 classes (the same-recipe and MNIST /
# Fashion fast recipes' batches; cifar10-fast's 1024 rows keep PyTorch's kernels).
ENABLED = True  # benchmarks switch the fused path off to measure PyTorch's
MAX_ROWS, MAX_CLASSES = 256, 16
BLOCK_ELEMENTS = 512  # rows x padded classes per loop iteration (the first version's 4096 at 4 warps: 2-3x slower)
MIN_CLASS_BLOCK = 16  # classes are padded to a power of two, at least this: 1-16 classes share one compiled kernel
WARPS = 8


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing) as a 0-d fp32 tensor (the mean over
    rows); on the fused kernels where `fusable`."""
    if not fusable(logits, labels):
        return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
    return FusedCrossEntropy.apply(logits, labels, float(label_smoothing))


def fusable(logits: torch.Tensor, labels: torch.Tensor) -> bool:
    """A CUDA rows x classes matrix of a float type within the limits (offsets in int32), int64 labels (one a row)
    on its device, and the checks every fused path shares (_kernels.may_fuse: no tracing, scripting or torch.compile,
    Triton available)."""
    if not (_kernels.may_fuse(ENABLED, logits, dims=(2,)) and fits(*logits.shape)):
        return False
    if labels.dtype != torch.int64 or labels.shape != logits.shape[:1] or labels.device != logits.device:
        return False
    return logits.shape[0] * logits.stride(0) < _kernels.INT32_LIMIT  # a slice of a huge matrix: int32 offsets


def fits(rows: int, classes: int) -> bool:
    """The problem is small enough for one program to beat PyTorch's kernels (see MAX_ROWS)."""
    return 0 < rows <= MAX_ROWS and 0 < classes <= MAX_CLASSES


def _blocks(classes: int) -> tuple[int, int]:
    """Rows per loop iteration and the padded class block: fixed per class count, never by the row count, so an
    epoch's last, partial batch launches the kernel the captured steps loaded."""
    block_c = max(MIN_CLASS_BLOCK, 1 << (classes - 1).bit_length())
    return max(1, BLOCK_ELEMENTS // block_c), block_c


@functools.cache
def _forward_kernel():
    from . import _cross_entropy_triton

    return _cross_entropy_triton.cross_entropy_forward


def compile_forward(dtype: torch.dtype, classes: int = MIN_CLASS_BLOCK) -> None:
    """Compile (or load from Triton's disk cache) the forward kernel for `dtype` logits of `classes` classes (the
    default: any count up to 16, every built-in data set's) without running it (engine/warmup.py calls this while
    the data loads: a first launch inside a CUDA-graph capture would fail it)."""
    block_m, block_c = _blocks(classes)
    sizes = (2**20, 2**20, 2**20)  # rows, classes, row stride: unspecialized
    _kernels.compile_ahead(_forward_kernel(), dtype, torch.int64, torch.float32, dtype, *sizes, 0.1, grid=(1,),
                           BM=block_m, BC=block_c, num_warps=WARPS)  # fmt: skip


class FusedCrossEntropy(torch.autograd.Function):
    """The mean cross-entropy of rows x classes logits (any row stride) with label smoothing, computed in fp32; its
    gradient in the logits' dtype."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float) -> torch.Tensor:
        logits = logits if logits.stride(1) == 1 else logits.contiguous()
        rows, classes = logits.shape
        loss = torch.empty((), dtype=torch.float32, device=logits.device)
        grad = torch.empty((rows, classes), dtype=logits.dtype, device=logits.device)
        block_m, block_c = _blocks(classes)
        _kernels.launcher(_forward_kernel(), (1,))(logits, labels.contiguous(), loss, grad, rows, classes,
                                                   logits.stride(0), label_smoothing, BM=block_m, BC=block_c,
                                                   num_warps=WARPS)  # fmt: skip
        ctx.save_for_backward(grad)
        return loss

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (grad,) = ctx.saved_tensors
        if _is_unit(grad_loss):  # backward(loss): the saved gradient is the answer (a host-side check, no sync)
            return grad, None, None
        return grad * grad_loss, None, None  # a 0-d fp32 factor keeps grad's dtype


CACHED_UNIT = True  # benchmarks switch it off to measure autograd's own
_UNITS: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}
# The autograd engine's entry (private, torch 2.3+). torch.autograd.backward with a given gradient checks its shape
# through torch.fx's symbolic shapes, whose import (sympy) took ~2 s of a fresh process's first step (H200,
# first_run_step_warmup_ab*.txt); the cached 1 has the loss's own shape, type and device by construction.
_RUN_BACKWARD = getattr(torch.autograd.graph, "_engine_run_backward", None)


def backward(loss: torch.Tensor) -> None:
    """loss.backward() for a 0-d training loss, with a cached 1 as its gradient: autograd's own is a new tensor filled
    each step (a kernel), and the fused loss's backward returns its saved gradient for this one instead of scaling it
    (another, and a PyTorch kernel amid Triton ones, which launch early after each other: _dependent_triton.py).
    Alternating runs on one H200 (same_recipe_ab_unit_*.txt): digits-cnn 0.279 -> 0.264 s, Fashion MLP 0.611 ->
    0.492 s, simple-cnn 1.232 -> 1.169 s, the same bits trained."""
    if not CACHED_UNIT or _RUN_BACKWARD is None or type(loss) is not torch.Tensor or loss.dim() != 0:
        return loss.backward()
    key = (loss.device, loss.dtype)
    unit = _UNITS.get(key)
    if unit is None:
        if loss.is_cuda and torch.cuda.is_current_stream_capturing():  # made once, outside any graph's memory
            return loss.backward()
        unit = _UNITS[key] = torch.ones((), dtype=loss.dtype, device=loss.device)
    _RUN_BACKWARD((loss,), (unit,), False, False, (), allow_unreachable=True, accumulate_grad=True)


def _is_unit(grad_loss: torch.Tensor) -> bool:
    unit = _UNITS.get((grad_loss.device, grad_loss.dtype))
    return unit is not None and grad_loss.data_ptr() == unit.data_ptr()

"""A captured chunk's batches gathered from the device-resident training set by one Triton kernel.

Why: a chunk of K captured steps began with nine small kernels (the chunk's step numbers, the index_selects of its
rows and learning rates, the step counter's advance, the image and label gathers, the float conversion, the subtract
and the multiply), ~2 us each at the same-recipe models' sizes (H200: 17 kernels a chunk before its steps and after,
~11 us a step at digits-cnn's K = 3). Here they are one launch: later epochs 80.3 -> 77.4 ms for digits-cnn, 166.9 ->
162.1 ms for simple-cnn (H200, alternating runs in one process, graph_chunk_ab_*.md). Program (r, b) writes block b
of the chunk's image r as (x - offset[c]) * scale[c] in fp32, the operations of the eager `(x.float() - offset) *
scale`, so the same bits; the b = 0 programs also write the image's label and training-set row, program (0, 0) the
chunk's learning rates, and the last program to arrive advances the step counter (models/_arrival_triton.py), which
every program has read by then.
"""

from __future__ import annotations

import functools

import torch

from ...models import _kernels

BLOCK, WARPS = 1024, 4  # image elements per program


@functools.cache
def _kernel():
    from . import _gather_triton

    return _gather_triton.gather_chunk


def usable(x_train: torch.Tensor, offset: torch.Tensor, images_per_chunk: int) -> bool:
    """The training set is a CUDA map whose images are contiguous blocks (channels_last), normalized per channel, a
    chunk's images fit int32 offsets, and Triton runs here."""
    if not (x_train.is_cuda and x_train.dim() == 4 and x_train.is_contiguous(memory_format=torch.channels_last)):
        return False
    fits = images_per_chunk * x_train[0].numel() < _kernels.INT32_LIMIT
    return fits and offset.numel() == x_train.shape[1] and _kernels.available()


def gather_chunk(x_train: torch.Tensor, y_train: torch.Tensor, order: torch.Tensor, ptr: torch.Tensor,
                 lr_table: torch.Tensor, offset: torch.Tensor, scale: torch.Tensor, steps: int,
                 batch: int) -> tuple[torch.Tensor, ...]:  # fmt: skip
    """The images (fp32, channels_last, normalized), labels and training-set rows of the `steps` batches of `batch`
    rows from step ptr of the epoch `order`, and their lr_table rows; ptr advances by `steps`."""
    n = steps * batch
    _, c, h, w = x_train.shape
    images = torch.empty((n, c, h, w), dtype=torch.float32, device=x_train.device, memory_format=torch.channels_last)
    labels = torch.empty(n, dtype=y_train.dtype, device=y_train.device)
    rows = torch.empty(n, dtype=order.dtype, device=order.device)
    lrs = torch.empty(steps, lr_table.shape[1], dtype=lr_table.dtype, device=lr_table.device)
    _kernels.launcher(_kernel(), (n, _kernels.cdiv(c * h * w, BLOCK)))(
        x_train, y_train, order, ptr, lr_table, offset.reshape(-1), scale.reshape(-1), images, labels, rows, lrs,
        _kernels.tickets(x_train.device), batch, c * h * w, c, lr_table.shape[1], BLOCK=BLOCK, num_warps=WARPS,
    )  # fmt: skip
    return images, labels, rows, lrs


def compile_ahead(device: torch.device, dtype: torch.dtype = torch.uint8) -> None:
    """Compile (or load from Triton's disk cache) the kernel for a training set of `dtype` without running it."""
    i64, f32 = torch.int64, torch.float32
    args = (dtype, i64, i64, i64, f32, f32, f32, f32, i64, i64, f32, torch.int32, 128, 784, 1, 1)
    _kernels.compile_ahead(_kernel(), *args, BLOCK=BLOCK, num_warps=WARPS, grid=(1, 1))

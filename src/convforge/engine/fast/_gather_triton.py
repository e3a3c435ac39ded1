"""Triton source of the chunk gather that engine/fast/gather.py launches (see there for why it exists)."""

from __future__ import annotations

import triton
import triton.language as tl

from ...models._arrival_triton import last_to_arrive
from ...models._dependent_triton import wait_for_previous


@triton.jit(do_not_specialize=["batch", "image_size", "channels", "groups"])
def gather_chunk(images, labels, order, ptr, lr_table, offset, scale, out_images, out_labels, out_rows, out_lrs,
                 tickets, batch, image_size, channels, groups, BLOCK: tl.constexpr):  # fmt: skip
    wait_for_previous()  # PDL: the kernel before has ended (_dependent_triton.py)
    r = tl.program_id(0)
    step = tl.load(ptr)
    row = tl.load(order + step * batch + r)
    e = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    inside = e < image_size
    c = e % channels  # channels_last: an image's elements are pixels x channels
    x = tl.load(images + row * image_size + e, mask=inside, other=0).to(tl.float32)
    shifted = x - tl.load(offset + c, mask=inside, other=0.0)
    tl.store(out_images + r * image_size + e, shifted * tl.load(scale + c, mask=inside, other=1.0), mask=inside)
    if tl.program_id(1) == 0:
        tl.store(out_labels + r, tl.load(labels + row))
        tl.store(out_rows + r, row)
    steps = tl.num_programs(0) // batch
    if (r == 0) & (tl.program_id(1) == 0):
        j = tl.arange(0, 64)
        for j0 in range(0, steps * groups, 64):
            mask = j0 + j < steps * groups
            tl.store(out_lrs + j0 + j, tl.load(lr_table + step * groups + j0 + j, mask=mask), mask=mask)
    if last_to_arrive(tickets, tl.num_programs(0) * tl.num_programs(1)):
        tl.store(ptr, step + steps)

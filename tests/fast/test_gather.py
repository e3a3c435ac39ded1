"""The chunk gather kernel (engine/fast/gather.py) through Triton's CPU interpreter: the same images, labels, rows
and learning rates as the eager gathers it replaces, bit for bit, and the step counter advanced."""

import pytest
import torch


def test_gather_chunk_equals_the_eager_gathers(triton_interpreter):
    from convforge.engine.fast import gather
    from convforge.models import _kernels

    torch.manual_seed(0)
    x_train = torch.randint(0, 256, (50, 3, 5, 7), dtype=torch.uint8).contiguous(memory_format=torch.channels_last)
    y_train = torch.randint(0, 10, (50,))
    order = torch.randperm(50)[:48]  # 12 full batches of 4
    lr_table = torch.rand(12, 2)
    offset = torch.tensor([120.0, 110.0, 100.0]).view(1, 3, 1, 1)
    scale = 1 / torch.tensor([60.0, 62.0, 64.0]).view(1, 3, 1, 1)
    ptr = torch.tensor([2])
    images, labels, rows, lrs = gather.gather_chunk(x_train, y_train, order, ptr, lr_table, offset, scale, 3, 4)

    expected_rows = order[8:20]
    assert torch.equal(rows, expected_rows) and torch.equal(labels, y_train[expected_rows])
    assert torch.equal(images, (x_train[expected_rows].float() - offset) * scale)  # the same floats, not close ones
    assert images.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(lrs, lr_table[2:5])
    assert ptr.item() == 5  # advanced by the chunk's steps
    assert int(_kernels.tickets(torch.device("cpu")).count_nonzero()) == 0


def test_gather_is_used_for_device_maps_only():
    from convforge.engine.fast import gather

    x = torch.zeros(4, 3, 8, 8, dtype=torch.uint8).contiguous(memory_format=torch.channels_last)
    assert not gather.usable(x, torch.zeros(1, 3, 1, 1), 64)  # a CPU set: the eager gathers
    if not torch.cuda.is_available():
        pytest.skip("the CUDA cases need a GPU")
    cuda = x.cuda()
    assert gather.usable(cuda, torch.zeros(1, 3, 1, 1, device="cuda"), 64)
    assert not gather.usable(cuda.contiguous(), torch.zeros(1, 3, 1, 1, device="cuda"), 64)  # NCHW: not blocks
    assert not gather.usable(cuda, torch.zeros(1, 3, 1, 1, device="cuda"), 2**31 // 192)  # beyond int32 offsets

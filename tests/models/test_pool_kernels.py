"""The Triton window max-pool kernels (models/_pool_triton.py), run on the CPU through Triton's interpreter: the
same source the GPU compiles, checked against max_pool2d's values and gradients (ties and NaN included)."""

import pytest
import torch
import torch.nn.functional as F

triton = pytest.importorskip("triton")

KERNELS = ("_kernels", "_pool_triton", "_kernels")  # for conftest.py interpreted


@pytest.mark.parametrize("shape, window", [((3, 70, 9, 8), (2, 2)), ((2, 5, 7, 10), (3, 2))])
def test_window_max_equals_max_pool2d_values_and_gradients(interpreted, shape, window):
    torch.manual_seed(0)
    x = torch.randn(shape).round(decimals=1).contiguous(memory_format=torch.channels_last)  # rounding: ties
    x[0, 0, 0, 0] = float("nan")
    mine = x.clone().requires_grad_(True)
    ref = x.clone().requires_grad_(True)
    y = interpreted.WindowMax.apply(mine, *window)
    expected = F.max_pool2d(ref, window)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(y.nan_to_num(7.0), expected.nan_to_num(7.0))
    grad = torch.randn_like(expected)
    y.backward(grad)
    expected.backward(grad)
    assert torch.equal(mine.grad, ref.grad)  # rows/columns past the last whole window get zero, as in PyTorch

"""engine/augment.py's one-launch mirror + translate (_augment_triton.flip_shift) moves the same pixels as the eager
ops after the same random draws: run by Triton's CPU interpreter here; on CUDA inside augment_batch with -m gpu
(tests/fast/test_gpu.py's graph-equals-eager runs train through it)."""

from __future__ import annotations

import pytest
import torch

from convforge.engine import augment
from convforge.engine.augment import Augment, augment_batch

CASES = [  # (n, c, h, w), augmentation, a given flip mask (alternating flips) or None (coins drawn)
    ((5, 3, 8, 8), Augment(flip=True, crop_pad=2), None),
    ((5, 3, 8, 8), Augment(flip=True, crop_pad=2), [True, False, True, True, False]),
    ((4, 1, 7, 5), Augment(crop_pad=4), None),  # the widest reflect pad of a 5-pixel side, non-square
    ((3, 3, 6, 9), Augment(flip=True), None),
    ((2, 4, 4, 4), Augment(flip=True, crop_pad=1), [False, True]),
]


def _images(shape: tuple[int, ...]) -> torch.Tensor:
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    return x.contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("shape, aug, mask", CASES)
def test_one_launch_equals_the_eager_ops_bit_for_bit(triton_interpreter, shape, aug, mask) -> None:
    images = _images(shape)
    flip = None if mask is None else torch.tensor(mask)
    eager_gen, fused_gen = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    want = augment_batch(images, aug, eager_gen, flip=flip)  # CPU tensors: the eager ops
    got = augment._flip_shift(images, aug, fused_gen, flip)
    assert got.is_contiguous(memory_format=torch.channels_last) and got.shape == images.shape
    assert torch.equal(got, want)
    assert torch.equal(fused_gen.get_state(), eager_gen.get_state())  # the same draws: the next batch's too


def test_which_batches_take_the_kernel(monkeypatch) -> None:
    monkeypatch.setattr(augment._kernels, "may_fuse", lambda enabled, x, *m, **k: enabled)  # as on a GPU
    images = _images((2, 3, 8, 8))
    assert augment.fusable(images, Augment(flip=True, crop_pad=2))
    assert augment.fusable(images, Augment(crop_pad=7))
    assert not augment.fusable(images, Augment(crop_pad=8))  # as wide as the image: replicate padding
    assert not augment.fusable(images, Augment())  # nothing to do
    for other in (dict(cutout=2), dict(shift=0.1), dict(brightness=0.1), dict(contrast=0.1)):
        assert not augment.fusable(images, Augment(flip=True, **other))
    assert not augment.fusable(images.contiguous(), Augment(flip=True))  # NCHW
    assert not augment.fusable(images.bfloat16(), Augment(flip=True))
    monkeypatch.setattr(augment, "FUSED", False)
    assert not augment.fusable(images, Augment(flip=True))


@pytest.mark.gpu
@pytest.mark.parametrize("shape, aug, mask", CASES + [((2000, 3, 32, 32), Augment(flip=True, crop_pad=2), None)])
def test_on_cuda_the_kernel_equals_pytorchs_ops(monkeypatch, shape, aug, mask) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    images = _images(shape).cuda()
    flip = None if mask is None else torch.tensor(mask, device="cuda")
    assert augment.fusable(images, aug)
    got = augment_batch(images, aug, torch.Generator("cuda").manual_seed(3), flip=flip)
    monkeypatch.setattr(augment, "FUSED", False)
    want = augment_batch(images, aug, torch.Generator("cuda").manual_seed(3), flip=flip)
    assert torch.equal(got, want)

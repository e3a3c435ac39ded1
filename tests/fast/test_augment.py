"""The batched augmentations on known images (CPU): crop-shift, cutout, brightness/contrast, determinism."""

from __future__ import annotations

import torch

from convforge.engine.augment import Augment, augment_batch, crop_shift, cutout, photometric


def ramp(n: int = 4, c: int = 2, h: int = 6, w: int = 5) -> torch.Tensor:
    return torch.arange(n * c * h * w, dtype=torch.float32).view(n, c, h, w)


def gen(seed: int = 0) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def test_crop_shift_is_a_window_of_the_reflect_padded_image():
    x = ramp()
    out = crop_shift(x, 2, gen())
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    for i in range(x.shape[0]):
        hits = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(out[i], padded[i, :, dy : dy + 6, dx : dx + 5])
        ]
        assert len(hits) == 1  # each image is exactly one shifted window, same shift for all channels


def test_crop_shift_pad_zero_is_identity_and_shifts_vary():
    x = ramp(n=64)
    assert torch.equal(crop_shift(x, 0, gen()), x)
    out = crop_shift(x, 1, gen())
    assert not all(torch.equal(out[i], x[i]) for i in range(64))


def test_cutout_zeroes_one_square_clipped_at_the_edges():
    x = torch.ones(32, 3, 10, 10)
    out = cutout(x, 4, gen())
    zeroed = (out == 0).all(dim=1).sum(dim=(1, 2))  # same pixels in every channel
    assert ((out == 0).any(dim=1) == (out == 0).all(dim=1)).all()
    assert zeroed.max() == 16 and zeroed.min() >= 4  # full square inside; at least a 2x2 corner at an edge
    for i in range(32):
        ys, xs = torch.nonzero(out[i, 0] == 0, as_tuple=True)
        assert ys.max() - ys.min() < 4 and xs.max() - xs.min() < 4


def test_brightness_shifts_every_pixel_by_one_amount_per_image():
    x = ramp()
    out = photometric(x, Augment(brightness=0.2), gen(), unit=torch.tensor(10.0))
    delta = out - x
    assert torch.allclose(delta, delta[:, :1, :1, :1].expand_as(delta), atol=1e-4)
    assert delta.abs().max() <= 2.0 + 1e-5  # 0.2 of the range x 10 units per range


def test_contrast_keeps_each_image_mean():
    x = ramp()
    out = photometric(x, Augment(contrast=0.5), gen(), unit=None)
    assert torch.allclose(out.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), atol=1e-3)
    assert not torch.allclose(out, x)


def test_augment_batch_is_deterministic_with_a_fixed_seed():
    aug = Augment(flip=True, shift=0.1, crop_pad=2, cutout=3, brightness=0.1, contrast=0.2)
    x = torch.rand(8, 3, 12, 12)
    a, b = augment_batch(x, aug, gen(5)), augment_batch(x, aug, gen(5))
    assert torch.equal(a, b)
    assert not torch.equal(a, augment_batch(x, aug, gen(6)))
    assert a.shape == x.shape

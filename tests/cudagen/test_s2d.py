"""The space-to-depth stem rewrite (s2d.py) on the CPU: the rewritten stride-1 convolution over the s2d map equals
the original strided one, for the zoo's stems and odd sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convforge.cudagen.plan import Op, Tensor
from convforge.cudagen.s2d import plan_s2d, rewrite_conv, s2d_input, s2d_weights

F = torch.nn.functional


def _stem(c: int, h: int, w: int, k: tuple[int, int], s: int, pad: tuple[int, int], **extra) -> Op:
    ho, wo = (h + 2 * pad[0] - k[0]) // s + 1, (w + 2 * pad[1] - k[1]) // s + 1
    p = dict(cin=c, h=h, w=w, cout=8, ho=ho, wo=wo, kh=k[0], kw=k[1], sh=s, sw=s, ph=pad[0], pw=pad[1])
    p.update(dh=1, dw=1, groups=1, dense=0, act=0, slope=0.0)
    p.update(extra)
    return Op("conv", "stem", [Tensor(1, (c, h, w))], Tensor(2, (8, ho, wo)), p, {"w": "stem.weight"})


STEMS = {  # in_shape, kernel, stride, padding
    "resnet18 7x7/2": ((3, 224, 224), (7, 7), 2, (3, 3)),
    "alexnet 11x11/4": ((3, 224, 224), (11, 11), 4, (2, 2)),
    "folder-fast 3x3/2": ((3, 128, 128), (3, 3), 2, (1, 1)),
    "h, w not multiples of s": ((3, 17, 13), (5, 5), 3, (2, 2)),
    "k < s": ((1, 10, 11), (2, 2), 3, (0, 0)),
    "k = s": ((2, 16, 18), (4, 4), 4, (0, 0)),
    "unused last rows": ((4, 12, 9), (3, 3), 2, (0, 0)),
    "non-square kernel, padding past k": ((3, 9, 14), (5, 2), 2, (4, 1)),
}


@pytest.mark.parametrize("name", STEMS)
def test_rewritten_stem_equals_strided_conv(name):
    (c, h, w), k, s, pad = STEMS[name]
    op = _stem(c, h, w, k, s, pad)
    g = plan_s2d(op, (c, h, w))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, c, h, w, generator=gen)
    wt = torch.randn(8, c, *k, generator=gen) / (c * k[0] * k[1]) ** 0.5  # outputs of about 1: fp32 sums to 1e-6
    ref = F.conv2d(x, wt, stride=s, padding=pad)
    xs = torch.from_numpy(s2d_input(x.numpy(), g))
    ws = torch.from_numpy(s2d_weights(wt.numpy(), g))
    new = rewrite_conv(op, g, "stem.weight_s2d").p
    assert xs.shape[1:] == (new["cin"], new["h"], new["w"]) and ws.shape[2:] == (new["kh"], new["kw"])
    got = F.conv2d(xs, ws)
    assert got.shape == ref.shape == (2, 8, op.p["ho"], op.p["wo"])
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", STEMS)
def test_s2d_input_is_pixel_unshuffle_of_the_padded_input(name):
    """s2d_input's channel order is PyTorch's pixel_unshuffle over the zero-padded input (grown or cut at the
    bottom/right to hs * s x ws * s)."""
    (c, h, w), k, s, pad = STEMS[name]
    g = plan_s2d(_stem(c, h, w, k, s, pad), (c, h, w))
    x = torch.randn(1, c, h, w)
    bottom, right = g.hs * s - h - pad[0], g.ws * s - w - pad[1]
    padded = F.pad(x, (pad[1], right, pad[0], bottom))  # negative: cut
    assert torch.equal(torch.from_numpy(s2d_input(x.numpy(), g)), F.pixel_unshuffle(padded, s))


def test_rewrite_applies_to_strided_stems_only():
    assert plan_s2d(_stem(3, 32, 32, (3, 3), 1, (1, 1)), (3, 32, 32)) is None  # stride 1
    assert plan_s2d(_stem(8, 32, 32, (3, 3), 2, (1, 1)), (8, 32, 32)) is None  # already 8 channels
    assert plan_s2d(_stem(3, 32, 32, (3, 3), 2, (2, 2), dh=2, dw=2), (3, 32, 32)) is None
    assert plan_s2d(_stem(3, 32, 32, (3, 3), 2, (1, 1), sw=1), (3, 32, 32)) is None
    g = plan_s2d(_stem(3, 224, 224, (7, 7), 2, (3, 3)), (3, 224, 224))
    assert (g.channels, g.hs, g.ws, g.kh, g.kw) == (12, 115, 115, 4, 4)
    g = plan_s2d(_stem(3, 224, 224, (11, 11), 4, (2, 2)), (3, 224, 224))
    assert (g.channels, g.hs, g.ws, g.kh, g.kw) == (48, 57, 57, 3, 3)
    one_tap = np.zeros((1, 3, 11, 11))
    one_tap[0, 1, 5, 10] = 1  # block (1, 2), pixel (1, 2) of it: s2d channel (1 * 4 + 1) * 4 + 2
    assert np.argwhere(s2d_weights(one_tap, g)).tolist() == [[0, 22, 1, 2]]

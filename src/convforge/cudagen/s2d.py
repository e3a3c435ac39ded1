"""Space-to-depth rewrite of a strided stem: the same convolution at stride 1 over a map of more channels.

The fp16/bf16 NHWC kernels gather 8 channels (16 bytes) per copy; a 3-channel network input would be padded to 4
and gathered 8 bytes at a time (nhwc.py). A stride-s stem over it is rewritten instead. Pad the input by (ph, pw) and
cut it into s x s blocks; block (Y, X) becomes one pixel of C*s*s channels, channel (c * s + dy) * s + dx holding
padded pixel (s*Y + dy, s*X + dx) of plane c (PyTorch's pixel_unshuffle order). Output pixel (oy, ox) of the stem
reads padded rows s*oy + ky, ky < k; with ky = s*ky' + dy that is s2d row oy + ky', so

    y[o][oy][ox] = sum over c', ky' < k', kx' < k' of w'[o][c'][ky'][kx'] * s2d[c'][oy + ky'][ox + kx'],
    w'[o][(c * s + dy) * s + dx][ky'][kx'] = w[o][c][s*ky' + dy][s*kx' + dx]  (0 where s*ky' + dy >= k),

a stride-1 convolution with kernel k' = ceil(k / s) and no padding over an s2d map of ho + k' - 1 rows (wo + k' - 1
columns); its rows and columns past the padded input are zeros, read only by the zero taps. Channels of one s2d
pixel come in runs of s consecutive input pixels of a row, which the conversion kernel reads together
(nhwc_ops.cuh nchw_to_s2d). This module is the one description of that geometry: the emitter writes these numbers
into the generated code and the tests check them against F.conv2d.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .plan import Op

MAX_CHANNELS = 4  # inputs the NHWC layout would pad to 4 channels a pixel (nhwc.py)


@dataclass(frozen=True)
class SpaceToDepth:
    """A stride-s stem rewritten over the space-to-depth map of its input (fields in nchw_to_s2d's order)."""

    c: int  # channels of the network input
    h: int
    w: int
    s: int  # the stem's stride: the block size
    ph: int  # the stem's padding, top and left
    pw: int
    hs: int  # the s2d map: hs x ws pixels of c * s * s channels
    ws: int
    kh: int  # the rewritten kernel, ceil(k / s)
    kw: int

    @property
    def channels(self) -> int:
        return self.c * self.s * self.s


def plan_s2d(op: Op, in_shape: tuple[int, int, int]) -> SpaceToDepth | None:
    """The rewrite of ``op`` when it is a stem the rewrite applies to (stride s > 1 along both axes, no dilation,
    one group, an input of <= MAX_CHANNELS channels), else None. The caller checks that op reads the input."""
    p = op.p
    if op.kind != "conv" or p["dense"] or p["groups"] != 1 or (p["dh"], p["dw"]) != (1, 1):
        return None
    if p["sh"] != p["sw"] or p["sh"] < 2 or in_shape[0] > MAX_CHANNELS or p["cin"] != in_shape[0]:
        return None
    s = p["sh"]
    kh, kw = -(-p["kh"] // s), -(-p["kw"] // s)
    c, h, w = in_shape
    return SpaceToDepth(c, h, w, s, p["ph"], p["pw"], p["ho"] + kh - 1, p["wo"] + kw - 1, kh, kw)


def rewrite_conv(op: Op, g: SpaceToDepth, weight: str) -> Op:
    """``op`` as the stride-1 convolution over the s2d map, reading the rearranged weights entry ``weight``."""
    p = dict(op.p, cin=g.channels, h=g.hs, w=g.ws, kh=g.kh, kw=g.kw, sh=1, sw=1, ph=0, pw=0)
    return replace(op, p=p, weights=dict(op.weights, w=weight))


def s2d_weights(w: np.ndarray, g: SpaceToDepth) -> np.ndarray:
    """[cout][c][kh][kw] -> [cout][c * s * s][kh'][kw'], zeros for the taps past the original kernel."""
    cout, c, kh, kw = w.shape
    padded = np.zeros((cout, c, g.kh * g.s, g.kw * g.s), w.dtype)
    padded[:, :, :kh, :kw] = w
    blocks = padded.reshape(cout, c, g.kh, g.s, g.kw, g.s).transpose(0, 1, 3, 5, 2, 4)
    return np.ascontiguousarray(blocks.reshape(cout, g.channels, g.kh, g.kw))


def s2d_input(x: np.ndarray, g: SpaceToDepth) -> np.ndarray:
    """[n][c][h][w] -> [n][c * s * s][hs][ws]: the padded input (zeros past it, rows and columns it does not need
    cut off) in s x s blocks."""
    n = x.shape[0]
    padded = np.zeros((n, g.c, g.hs * g.s, g.ws * g.s), x.dtype)
    rows, cols = max(0, min(g.h, g.hs * g.s - g.ph)), max(0, min(g.w, g.ws * g.s - g.pw))
    padded[:, :, g.ph : g.ph + rows, g.pw : g.pw + cols] = x[:, :, :rows, :cols]
    blocks = padded.reshape(n, g.c, g.hs, g.s, g.ws, g.s).transpose(0, 1, 3, 5, 2, 4)
    return np.ascontiguousarray(blocks.reshape(n, g.channels, g.hs, g.ws))

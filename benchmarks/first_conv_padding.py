"""First-layer convs with 1-3 input channels: cuDNN on the map as is vs the input (and weight) zero-padded to 4 or 8
channels. CUDA-graph replays of forward (+ weight gradient when trained), bf16 channels_last; prints one JSON line per
case. Run on the GPU machine: PYTHONPATH=src python3 benchmarks/first_conv_padding.py
Result (H200): benchmarks/results/first_conv_channel_padding_*.log. Not adopted: gains of 50 / 9 us a step on two
layers, a loss on digits-cnn's 1-channel conv, <= 4% of a run.
"""

from __future__ import annotations

import functools
import json

import torch
import torch.nn.functional as F
from _graph_timing import captured, replay_us

CASES = [  # name, input shape, out channels, kernel, padding, weight trained
    ("cifar10-fast whitening", (1024, 3, 32, 32), 24, 2, 0, False),
    ("simple-cnn conv1", (32, 3, 32, 32), 32, 3, 0, True),
    ("digits-cnn conv1", (128, 1, 28, 28), 8, 3, 1, True),
]


def conv(x0: torch.Tensor, w: torch.Tensor, pad: int, trained: bool) -> torch.Tensor:
    extra = w.shape[1] - x0.shape[1]
    x = F.pad(x0, (0, 0, 0, 0, 0, extra)) if extra else x0
    y = F.conv2d(x, w.to(torch.bfloat16), padding=pad)
    if trained:
        y.float().sum().backward()
    return y


def main() -> None:
    torch.backends.cudnn.allow_tf32 = True
    for name, shape, out, k, pad, trained in CASES:
        x0 = torch.randn(shape, device="cuda", dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
        w0 = torch.randn(out, shape[1], k, k, device="cuda")
        ref = None
        for channels in (shape[1], 4, 8):
            w = torch.zeros(out, channels, k, k, device="cuda")
            w[:, : shape[1]] = w0
            w = w.contiguous(memory_format=torch.channels_last).requires_grad_(trained)
            us = replay_us(captured(functools.partial(conv, x0, w, pad, trained)), reps=200)
            with torch.no_grad():
                y = conv(x0, w, pad, False).float()
            ref = y if ref is None else ref
            diff = float((y - ref).abs().max())
            print(json.dumps(dict(case=name, channels=channels, us=round(us, 1), max_diff=diff)))


if __name__ == "__main__":
    main()

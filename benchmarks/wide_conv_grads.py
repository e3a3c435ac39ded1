"""cifar10-fast's convs of at most 64 channels at its batch (2000): cuDNN's forward, input gradient and weight gradient
against convforge's Triton kernels (models/_small_conv.py), each captured in a CUDA graph, over launch shapes.

    PYTHONPATH=src python3 benchmarks/wide_conv_grads.py [--out benchmarks/results] [--batch 2000]

Why: a steady cifar10-fast epoch spends 6.5% of its kernel time in one cuDNN weight-gradient kernel (an sm80 kernel,
323 us a step; epoch_profile_cifar10-fast_*.txt). The Triton kernels were sized for the same-recipe models' small
batches (MAX_MACS); this measures them on the large ones, and cuDNN on the first conv's input padded to 32 channels.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import torch
from _graph_timing import captured, replay_us
from _results import save

from convforge.bench.train import environment
from convforge.models import _small_conv

# (input channels, output channels, map side): block 1's two convs after the 2x2 whitening conv (31x31 -> pool 15);
# then the first with its 24 input channels zero-padded to 32 (the whitening conv given 8 zero filters), and both
# at 32x32 (a padded whitening conv)
SHAPES = [(24, 64, 31), (64, 64, 15), (32, 64, 31), (24, 64, 32), (32, 64, 32)]
LAUNCH = dict(WGRAD_PIXELS=(64, 128, 256), CHUNKS_PER_SM=(1, 2, 4), WGRAD_WARPS=(4, 8))


def cudnn_us(x: torch.Tensor, dy: torch.Tensor, w: torch.Tensor) -> dict[str, float]:
    conv = dict(stride=[1, 1], padding=[1, 1], dilation=[1, 1], transposed=False, output_padding=[0, 0], groups=1)
    out = {}
    out["forward"] = replay_us(captured(lambda: torch.ops.aten.convolution(x, w, None, **conv)))
    for name, mask in (("input_grad", [True, False, False]), ("weight_grad", [False, True, False])):
        args = (dy, x, w, None, conv["stride"], conv["padding"], conv["dilation"], False, [0, 0], 1, mask)
        out[name] = replay_us(captured(lambda args=args: torch.ops.aten.convolution_backward(*args)))
    return out


def triton_wgrad_us(x: torch.Tensor, dy: torch.Tensor, w32: torch.Tensor) -> dict[str, float]:
    geometry = ((3, 3), (1, 1))
    out = {}
    saved = {k: getattr(_small_conv, k) for k in LAUNCH}
    try:
        for values in itertools.product(*LAUNCH.values()):
            for k, v in zip(LAUNCH, values, strict=True):
                setattr(_small_conv, k, v)
            _, _, launch = _small_conv._weight_grads(x, dy, None, w32, geometry, False)
            out[" ".join(f"{k}={v}" for k, v in zip(LAUNCH, values, strict=True))] = replay_us(captured(launch))
    finally:
        for k, v in saved.items():
            setattr(_small_conv, k, v)
    return out


def check(x: torch.Tensor, dy: torch.Tensor, w32: torch.Tensor) -> float:
    """The Triton weight gradient's largest difference from an fp32 reference of the same bf16 operands, relative
    to the reference's largest entry."""
    dw, _, launch = _small_conv._weight_grads(x, dy, None, w32, ((3, 3), (1, 1)), False)
    launch()
    ref = torch.ops.aten.convolution_backward(
        dy.float(), x.float(), w32, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [False, True, False]
    )[1]
    return ((dw - ref).abs().max() / ref.abs().max()).item()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--batch", type=int, default=2000)
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False  # the fp32 reference
    gen = torch.Generator("cuda").manual_seed(0)
    rows = []
    for cin, cout, side in SHAPES:
        cl = torch.channels_last
        x = torch.randn(args.batch, cin, side, side, device="cuda", generator=gen).to(torch.bfloat16, memory_format=cl)
        dy = torch.randn(args.batch, cout, side, side, device="cuda", generator=gen).to(
            torch.bfloat16, memory_format=cl
        )
        w32 = torch.randn(cout, cin, 3, 3, device="cuda", generator=gen).to(memory_format=cl)
        row = dict(shape=f"{args.batch}x{cin}x{side}x{side} -> {cout}", cudnn=cudnn_us(x, dy, w32.bfloat16()))
        torch.backends.cudnn.benchmark = True
        row["cudnn_autotuned"] = cudnn_us(x, dy, w32.bfloat16())
        torch.backends.cudnn.benchmark = False
        row.update(triton_weight_grad=triton_wgrad_us(x, dy, w32), triton_rel_err=check(x, dy, w32))
        best = min(row["triton_weight_grad"].items(), key=lambda kv: kv[1])
        err = row["triton_rel_err"]
        print(f"{row['shape']}: cuDNN {row['cudnn']}; Triton weight grad best {best}, rel err {err:.1e}", flush=True)
        rows.append(row)
    env = environment()
    lines = [f"# wide_conv_grads: {env['device']}, torch {env['torch']}, cuDNN {env['cudnn']}, {env['date']}", "",
             "| conv | cuDNN forward us | cuDNN input grad us | cuDNN weight grad us | the same autotuned | "
             "Triton weight grad us (best) |", "|---|---|---|---|---|---|"]  # fmt: skip
    for row in rows:
        best = min(row["triton_weight_grad"].items(), key=lambda kv: kv[1])
        c, a = row["cudnn"], row["cudnn_autotuned"]
        tuned = " / ".join(f"{a[k]:.1f}" for k in ("forward", "input_grad", "weight_grad"))
        lines.append(f"| {row['shape']} | {c['forward']:.1f} | {c['input_grad']:.1f} | {c['weight_grad']:.1f} | "
                     f"{tuned} | {best[1]:.1f} ({best[0]}) |")  # fmt: skip
    stem = Path(args.out) / f"wide_conv_grads_{env['device'].replace(' ', '-')}_{env['date'][:10]}"
    save(stem, env, rows, lines)


if __name__ == "__main__":
    main()

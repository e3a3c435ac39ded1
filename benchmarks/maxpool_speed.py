"""Max pool 2x2 forward + backward on channels_last bf16 maps: PyTorch's kernels vs window-max formulations.

    PYTHONPATH=src python benchmarks/maxpool_speed.py [--out benchmarks/results]

Why: in the cifar10-fast profile, PyTorch's channels_last bf16 max_pool2d kernels took ~30% of the GPU time (the
backward ~245 us a call on 1024 x 64 x 31 x 31). The shapes are that recipe's three pools at batch 1024. Each
implementation is timed with CUDA events over 50 forward + backward passes after 5 warm-up passes; output and
gradient are compared with max_pool2d's (elements of the gradient that differ are counted).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from _graph_timing import captured, replay_us

from convforge.models._kernels import WindowMax

SHAPES = [(1024, 64, 31, 31), (1024, 256, 15, 15), (1024, 256, 7, 7)]
# --small: the maps models/_kernels.py leaves to PyTorch (< 64 channels; the Triton pool takes a narrower channel
# block there): digits-cnn's two pools at batch 128, simple-cnn's two at batch 32
SMALL = [(128, 8, 28, 28), (128, 16, 14, 14), (32, 32, 30, 30), (32, 32, 13, 13)]


IMPLS = {
    "torch max_pool2d": lambda x: F.max_pool2d(x, 2),
    "convforge Triton (WindowMax)": lambda x: WindowMax.apply(x, 2, 2),
}


def time_ms(fn, x: torch.Tensor, g: torch.Tensor, reps: int = 50) -> float:
    for _ in range(5):
        fn(x).backward(g)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn(x).backward(g)
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps


def graph_ms(fn, x: torch.Tensor, g: torch.Tensor) -> float:
    """Forward + backward captured in a CUDA graph (as the training step runs): small maps' kernels take a few us,
    less than an eager launch. A leaf of its own, gradients by autograd.grad: no accumulation node from the eager
    calls on another stream in the capture."""
    leaf = x.detach().clone().requires_grad_(True)
    return replay_us(captured(lambda: torch.autograd.grad(fn(leaf), leaf, g))) / 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--small", action="store_true", help="the small-channel maps, without torch.compile")
    ap.add_argument("--tag", default="")
    a = ap.parse_args()
    torch.manual_seed(0)
    rows = []
    for shape in SMALL if a.small else SHAPES:
        impls = dict(IMPLS)  # a compiled function per shape: no dynamic-shape recompile
        if not a.small:
            impls["torch.compile(max_pool2d)"] = torch.compile(lambda x: F.max_pool2d(x, 2), dynamic=False)
        x0 = torch.randn(shape, device="cuda").to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
        ref_x = x0.clone().requires_grad_()
        y_ref = F.max_pool2d(ref_x, 2)
        g = torch.randn_like(y_ref)
        y_ref.backward(g)
        for name, fn in impls.items():
            x = x0.clone().requires_grad_()
            y = fn(x)
            y.backward(g)
            same_out = torch.equal(y, y_ref.detach())
            grad_diff = (x.grad.float() - ref_x.grad.float()).abs().gt(0).sum().item()
            ms = graph_ms(fn, x, g) if a.small else time_ms(fn, x, g)
            cl = y.is_contiguous(memory_format=torch.channels_last)
            rows.append(dict(shape=list(shape), impl=name, ms=round(ms, 4), same_output=same_out,
                             grads_differing=grad_diff, out_channels_last=cl))  # fmt: skip
            print(rows[-1], flush=True)
    dev = torch.cuda.get_device_name()
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    meta = dict(device=dev, torch=torch.__version__, date=now)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"maxpool_speed_{dev.replace(' ', '-')}_{dt.date.today().isoformat()}{a.tag}"
    (out / f"{stem}.json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
    lines = [f"# max pool 2x2 fwd+bwd, bf16 channels_last: {dev}, torch {meta['torch']}, {meta['date']}", "",
             "| shape | implementation | ms (fwd+bwd) | output equal | grad elements differing | out channels_last |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {'x'.join(map(str, r['shape']))} | {r['impl']} | {r['ms']:.3f} | {r['same_output']} "
                     f"| {r['grads_differing']} | {r['out_channels_last']} |")  # fmt: skip
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

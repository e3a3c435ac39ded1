"""Small-channel convolutions forward + backward under bf16 autocast: cuDNN (conv2d, + ReLU) vs convforge's Triton
kernels (models/_small_conv.py), each captured in a CUDA graph as the training step runs; --dense: the same for
small dense layers (flatten + linear (+ ReLU): cuBLAS vs models/_small_dense.py, over its launch shapes).

    PYTHONPATH=src python3 benchmarks/small_conv_speed.py [--out benchmarks/results] [--sweep]

The shapes are the same-recipe models' convs: digits-cnn's three at batch 128 (a batchnorm follows: no ReLU),
simple-cnn's two at batch 32 (ReLU fused). The first layer of each takes the fp32 images and wants no input
gradient, as in training. Also reported: the largest differences of output and gradients between the two, against
an fp32 reference of the same bf16-rounded operands (cuDNN's own error for scale). --sweep times the Triton path's
launch shapes instead (forward/input-gradient shapes with the weight-gradient ones at their defaults, then the
other way round), forward alone and forward + backward.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from _graph_timing import captured, replay_us
from _results import save
from torch import nn

from convforge.models import _small_conv, _small_dense

# (batch, in, out, size, kernel, padding, ReLU after, first layer)
SHAPES = [
    (128, 1, 8, 28, 3, 1, False, True),
    (128, 8, 16, 14, 3, 1, False, False),
    (128, 16, 32, 7, 3, 1, False, False),
    (32, 3, 32, 32, 3, 0, True, True),
    (32, 32, 32, 15, 3, 0, True, False),
]


def case(shape, impl: str) -> tuple[float, dict[str, torch.Tensor]]:
    n, cin, cout, size, k, pad, relu, first = shape
    torch.manual_seed(0)
    conv = nn.Conv2d(cin, cout, k, padding=pad).cuda().to(memory_format=torch.channels_last)
    dtype = torch.float32 if first else torch.bfloat16
    x = torch.randn(n, cin, size, size, device="cuda", dtype=dtype).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(not first)
    inputs = [p for p in (x, conv.weight, conv.bias) if p.requires_grad]
    out = torch.randn(n, cout, size + 2 * pad - k + 1, size + 2 * pad - k + 1, device="cuda")
    g = out.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    results: dict[str, torch.Tensor] = {}

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            if impl == "triton":
                y = _small_conv.small_conv(conv, x, relu)
            else:
                y = conv(x)
                y = F.relu(y) if relu else y
        grads = torch.autograd.grad(y, inputs, g)
        results.update(y=y, **{f"grad{i}": t for i, t in enumerate(grads)})

    graph = captured(step)
    us = min(replay_us(graph, 200) for _ in range(3))
    return us, {k: v.detach().float().clone() for k, v in results.items()}


FORWARD_SHAPES = [(16, 32, 1), (32, 32, 1), (32, 32, 2), (64, 32, 2), (64, 32, 4), (128, 32, 4), (32, 64, 2),
                  (64, 64, 4)]  # (pixels, K block, warps)  # fmt: skip
WGRAD_SHAPES = [(64, 32, 4, 4), (64, 64, 4, 4), (128, 32, 4, 4), (128, 64, 4, 4), (128, 64, 2, 4), (128, 64, 8, 4),
                (64, 64, 8, 2), (256, 64, 4, 8)]  # (pixels, K block, chunks per SM, warps)  # fmt: skip


def forward_us(shape) -> float:
    n, cin, cout, size, k, pad, relu, first = shape
    conv = nn.Conv2d(cin, cout, k, padding=pad).cuda().to(memory_format=torch.channels_last)
    x = torch.randn(n, cin, size, size, device="cuda", dtype=torch.float32 if first else torch.bfloat16)
    x = x.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            _small_conv.small_conv(conv, x, relu)

    return min(replay_us(captured(step), 200) for _ in range(3))


def sweep() -> list[dict]:
    rows, m = [], _small_conv
    defaults = (m.FORWARD_PIXELS, m.FORWARD_K, m.FORWARD_WARPS, m.WGRAD_PIXELS, m.WGRAD_K, m.CHUNKS_PER_SM,
                m.WGRAD_WARPS)  # fmt: skip
    for shape in SHAPES:
        for fwd in FORWARD_SHAPES:
            m.FORWARD_PIXELS, m.FORWARD_K, m.FORWARD_WARPS = fwd
            row = dict(shape=shape, forward=fwd, forward_us=round(forward_us(shape), 1))
            row["total_us"] = round(case(shape, "triton")[0], 1)
            print(json.dumps(row), flush=True)
            rows.append(row)
        m.FORWARD_PIXELS, m.FORWARD_K, m.FORWARD_WARPS = defaults[:3]
        for wgrad in WGRAD_SHAPES:
            m.WGRAD_PIXELS, m.WGRAD_K, m.CHUNKS_PER_SM, m.WGRAD_WARPS = wgrad
            row = dict(shape=shape, wgrad=wgrad, total_us=round(case(shape, "triton")[0], 1))
            print(json.dumps(row), flush=True)
            rows.append(row)
        m.WGRAD_PIXELS, m.WGRAD_K, m.CHUNKS_PER_SM, m.WGRAD_WARPS = defaults[3:]
    return rows


# (rows, input map shape, out, ReLU after, first layer): digits-cnn's head on its channels_last map, simple-cnn's two
# dense layers, the Fashion MLP's two
DENSE_SHAPES = [
    (128, (32, 7, 7), 10, False, False),
    (32, (32, 6, 6), 128, True, False),
    (32, (128,), 10, False, False),
    (32, (1, 28, 28), 128, True, True),
    (32, (128,), 10, False, False),
]
DENSE_VARIANTS = [  # one launch-shape change at a time from the defaults
    {}, {"FORWARD_K": 32}, {"FORWARD_DOTS": 1}, {"FORWARD_DOTS": 4}, {"FORWARD_ROWS": 16}, {"GRAD_K": 64},
    {"GRAD_K": 32}, {"GRAD_ROWS": 16}, {"WGRAD_K": 32}, {"WGRAD_K": 128}, {"WGRAD_ROWS": 32}, {"WARPS": 2},
]  # fmt: skip


def dense_case(shape, impl: str) -> float:
    rows, features, out, relu, first = shape
    torch.manual_seed(0)
    linear = nn.Linear(math.prod(features), out).cuda()
    x = torch.randn(rows, *features, device="cuda", dtype=torch.float32 if first else torch.bfloat16)
    x = (x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x).requires_grad_(not first)
    inputs = [p for p in (x, linear.weight, linear.bias) if p.requires_grad]
    g = torch.randn(rows, out, device="cuda", dtype=torch.bfloat16)

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            if impl == "triton":
                y = _small_dense.small_dense(linear, x, relu)
            else:
                y = linear(x.flatten(1))
                y = F.relu(y) if relu else y
        torch.autograd.grad(y, inputs, g)

    return min(replay_us(captured(step), 200) for _ in range(3))


def dense_sweep() -> list[dict]:
    rows, defaults = [], {k: getattr(_small_dense, k) for v in DENSE_VARIANTS for k in v}
    for shape in DENSE_SHAPES:
        row = dict(shape=shape, cublas_us=round(dense_case(shape, "cublas"), 1))
        for variant in DENSE_VARIANTS:
            for key, value in {**defaults, **variant}.items():
                setattr(_small_dense, key, value)
            _small_dense._options.cache_clear()
            row[json.dumps(variant)] = round(dense_case(shape, "triton"), 1)
        for key, value in defaults.items():
            setattr(_small_dense, key, value)
        _small_dense._options.cache_clear()
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def reference(shape) -> dict[str, torch.Tensor]:
    """fp32 on the bf16-rounded operands: what both implementations approximate."""
    n, cin, cout, size, k, pad, relu, first = shape
    torch.manual_seed(0)
    conv = nn.Conv2d(cin, cout, k, padding=pad).cuda()
    torch.backends.cudnn.allow_tf32 = False
    dtype = torch.float32 if first else torch.bfloat16
    x = torch.randn(n, cin, size, size, device="cuda", dtype=dtype).to(torch.bfloat16).float().requires_grad_(not first)
    w = conv.weight.detach().to(torch.bfloat16).float().requires_grad_()
    b = conv.bias.detach().clone().requires_grad_()
    out = torch.randn(n, cout, size + 2 * pad - k + 1, size + 2 * pad - k + 1, device="cuda")
    y = F.conv2d(x, w, b, padding=pad)
    y = F.relu(y) if relu else y
    inputs = [t for t in (x, w, b) if t.requires_grad]
    grads = torch.autograd.grad(y, inputs, out.to(torch.bfloat16).float())
    torch.backends.cudnn.allow_tf32 = True
    return dict(y=y.detach(), **{f"grad{i}": t for i, t in enumerate(grads)})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--dense", action="store_true", help="the small dense layers: cuBLAS vs Triton launch shapes")
    args = ap.parse_args()
    props = torch.cuda.get_device_properties(0)
    env = dict(device=props.name, torch=torch.__version__, cuda=torch.version.cuda,
               date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))  # fmt: skip
    import triton

    env["triton"] = triton.__version__
    if args.dense:
        out = Path(args.out) / f"small_dense_sweep_{env['device'].replace(' ', '-')}_{env['date'][:10]}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(dict(env=env, rows=dense_sweep()), indent=1))
        return
    if args.sweep:
        out = Path(args.out) / f"small_conv_sweep_{env['device'].replace(' ', '-')}_{env['date'][:10]}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(dict(env=env, rows=sweep()), indent=1))
        return
    rows = []
    for shape in SHAPES:
        ref = reference(shape)
        row = dict(shape=shape)
        for impl in ("cudnn", "triton"):
            us, got = case(shape, impl)
            row[f"{impl}_us"] = round(us, 1)
            row[f"{impl}_max_err"] = {k: float((got[k] - ref[k]).abs().max()) for k in ref}
        row["scale"] = {k: float(ref[k].abs().max()) for k in ref}
        print(json.dumps(row), flush=True)
        rows.append(row)
    out = Path(args.out) / f"small_conv_speed_{env['device'].replace(' ', '-')}_{env['date'][:10]}"
    lines = [
        f"# small_conv_speed: {env['device']}, torch {env['torch']}, CUDA {env['cuda']}, {env['date']}",
        "",
        "Forward + backward, bf16 autocast, one CUDA graph replay (min of 3 x 200). Errors: max |difference| from "
        "an fp32 reference on the same bf16 operands (y, then the gradients of the inputs that want one: x, w, b).",
        "",
        "| batch x in -> out, size, kernel, pad, relu, first | cuDNN us | Triton us | cuDNN max err | Triton max err |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        errs = [" / ".join(f"{v:.2g}" for v in r[f"{i}_max_err"].values()) for i in ("cudnn", "triton")]
        lines.append(f"| {r['shape']} | {r['cudnn_us']} | {r['triton_us']} | {errs[0]} | {errs[1]} |")
    save(out, env, rows, lines)


if __name__ == "__main__":
    main()

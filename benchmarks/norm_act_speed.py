"""Training batchnorm + activation forward + backward on channels_last bf16 maps: PyTorch's modules vs the fused
Triton op (models/_norm_act.py), and a sweep of the fused op's launch shapes. Also the frozen-stem conv + activation
forward (models/_conv_act.py) against conv2d + activation under bf16 autocast.

    PYTHONPATH=src python benchmarks/norm_act_speed.py [--out benchmarks/results] [--sweep]

Shapes: the batchnorm inputs of cifar10-fast (batch 1024, GELU), folder-fast (batch 256, ReLU) and digits-cnn
(batch 128, ReLU). Each variant's forward + backward (input, weight and bias gradients) is captured in a CUDA graph, as
the training step is, and timed with CUDA events over 50 replays after 10; the fused op's kernels are listed with
their GPU time (torch.profiler). --sweep also times the launch-shape constants of models/_norm_act.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import itertools
import json
from pathlib import Path

import torch
from _graph_timing import captured, kernel_times, replay_us
from torch import nn

from convforge.models import _norm_act

SHAPES = {
    "cifar10-fast": ([(1024, 64, 15, 15), (1024, 256, 7, 7), (1024, 256, 3, 3)], nn.GELU),
    "folder-fast": ([(256, 32, 64, 64), (256, 64, 32, 32), (256, 128, 16, 16), (256, 384, 4, 4)], nn.ReLU),
    "digits-cnn": ([(128, 8, 28, 28), (128, 16, 14, 14), (128, 32, 7, 7)], nn.ReLU),
}
STEMS = {  # input shape, out channels, kernel, activation: cifar10-fast's whitening conv, simple-cnn's first conv
    "cifar10-fast": ((1024, 3, 32, 32), 24, 2, nn.GELU),
    "simple-cnn (eval batch)": ((512, 3, 32, 32), 32, 3, nn.ReLU),
}
SWEEP = {
    "sums": dict(PROGRAMS_PER_SM=[1, 2, 4, 8], SUM_TILE=[4096, 8192, 16384], SUM_WARPS=[4, 8]),
    "apply": dict(APPLY_TILE=[2048, 4096, 8192], APPLY_WARPS=[4, 8]),
}


def step_fn(shape, act_cls, fused: bool):
    torch.manual_seed(0)
    norm, act = nn.BatchNorm2d(shape[1], momentum=0.4).cuda(), act_cls()
    x = torch.randn(shape, device="cuda").to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    g = torch.randn(shape, device="cuda").to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    code = _norm_act.activation_code(norm, act)

    def fn():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            y = _norm_act.norm_act(norm, code, x) if fused else act(norm(x))
        torch.autograd.grad(y, (x, norm.weight, norm.bias), g)

    return fn


def stem_forward(conv: nn.Conv2d, act: nn.Module, code: int, x: torch.Tensor, fused: bool) -> torch.Tensor:
    from convforge.models import _conv_act

    with torch.autocast("cuda", dtype=torch.bfloat16):
        return _conv_act.conv_act(conv, code, x) if fused else act(conv(x))


def stem_sweep() -> list[dict]:
    """us of each stem's fused forward per (pixels per program, warps)."""
    from convforge.models import _conv_act

    rows, saved = [], (_conv_act.PIXELS, _conv_act.WARPS)
    for pixels, warps in itertools.product([32, 64, 128, 256], [2, 4, 8]):
        _conv_act.PIXELS, _conv_act.WARPS = pixels, warps
        row = dict(pixels=pixels, warps=warps)
        for name, (shape, out, k, act_cls) in STEMS.items():
            conv, act = nn.Conv2d(shape[1], out, k).cuda().requires_grad_(False), act_cls()
            x = torch.randn(shape, device="cuda").contiguous(memory_format=torch.channels_last)
            fn = functools.partial(stem_forward, conv, act, _conv_act.activation_code(conv, act), x, True)
            row[name] = round(replay_us(captured(fn)), 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    _conv_act.PIXELS, _conv_act.WARPS = saved
    return rows


def stem_rows() -> list[dict]:
    from convforge.models import _conv_act

    rows = []
    for name, (shape, out, k, act_cls) in STEMS.items():
        conv, act = nn.Conv2d(shape[1], out, k).cuda().requires_grad_(False), act_cls()
        x = torch.randn(shape, device="cuda").contiguous(memory_format=torch.channels_last)
        code = _conv_act.activation_code(conv, act)
        row = dict(recipe=name, shape=list(shape), act=act_cls.__name__, stem=f"conv {k}x{k} -> {out}")
        for label, fused in (("torch_us", False), ("fused_us", True)):
            fn = functools.partial(stem_forward, conv, act, code, x, fused)
            row[label] = round(replay_us(captured(fn)), 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def sweep(rows: list[dict]) -> None:
    defaults = {k: getattr(_norm_act, k) for part in SWEEP.values() for k in part}
    for part, grid in SWEEP.items():
        for values in itertools.product(*grid.values()):
            setting = dict(zip(grid, values))
            for k, v in {**defaults, **setting}.items():
                setattr(_norm_act, k, v)
            total = 0.0
            for shapes, act_cls in SHAPES.values():
                for shape in shapes:
                    total += replay_us(captured(step_fn(shape, act_cls, True)))
            rows.append(dict(sweep=part, setting=setting, total_us=round(total, 1)))
            print(rows[-1], flush=True)
    for k, v in defaults.items():
        setattr(_norm_act, k, v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--sweep", action="store_true")
    a = ap.parse_args()
    rows, sweeps = [], []
    for recipe, (shapes, act_cls) in SHAPES.items():
        for shape in shapes:
            row = dict(recipe=recipe, shape=list(shape), act=act_cls.__name__)
            for label, fused in (("torch_us", False), ("fused_us", True)):
                graph = captured(step_fn(shape, act_cls, fused))
                row[label] = round(replay_us(graph), 1)
                if fused:
                    row["fused_kernels"] = {k[:60]: round(v, 1) for k, v in kernel_times(graph)[1].items()}
            rows.append(row)
            print(json.dumps(row), flush=True)
    stems = stem_rows()
    stem_sweeps = stem_sweep() if a.sweep else []
    if a.sweep:
        sweep(sweeps)
    dev = torch.cuda.get_device_name()
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    constants = {k: getattr(_norm_act, k) for part in SWEEP.values() for k in part}
    meta = dict(device=dev, torch=torch.__version__, cuda=torch.version.cuda, date=now, constants=constants)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"norm_act_speed_{dev.replace(' ', '-')}_{now[:10]}"
    results = dict(meta=meta, rows=rows, stems=stems, stem_sweep=stem_sweeps, sweep=sweeps)
    (out / f"{stem}.json").write_text(json.dumps(results, indent=1))
    lines = [f"# batchnorm + activation fwd+bwd, bf16 channels_last, CUDA graph: {dev}, torch {meta['torch']}, {now}",
             "", f"Launch constants: {constants}", "",
             "| recipe | shape | act | PyTorch us | fused us | speed-up |", "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        shape = "x".join(map(str, r["shape"]))
        speedup = r["torch_us"] / r["fused_us"]
        lines.append(f"| {r['recipe']} | {shape} | {r['act']} | {r['torch_us']} | {r['fused_us']} | {speedup:.2f}x |")
    lines += [
        "",
        "Frozen stem, forward only (bf16 autocast):",
        "",
        "| recipe | input | stem | act | PyTorch us | fused us | speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in stems:
        shape = "x".join(map(str, r["shape"]))
        lines.append(f"| {r['recipe']} | {shape} | {r['stem']} | {r['act']} | {r['torch_us']} | {r['fused_us']} "
                     f"| {r['torch_us'] / r['fused_us']:.2f}x |")  # fmt: skip
    if stem_sweeps:
        lines += ["", "| stem: pixels per program | warps | " + " | ".join(STEMS) + " |", "|---|---|---|---|"]
        for r in stem_sweeps:
            lines.append(f"| {r['pixels']} | {r['warps']} | " + " | ".join(str(r[n]) for n in STEMS) + " |")
    if sweeps:
        lines += ["", "| sweep | setting | all shapes, fused us |", "|---|---|---|"]
        lines += [f"| {s['sweep']} | {s['setting']} | {s['total_us']} |" for s in sweeps]
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

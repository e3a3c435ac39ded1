"""Captured Adam steps on the same-recipe models' parameter shapes: which tensors should take the Triton update.

    PYTHONPATH=src python3 benchmarks/adam_split.py [--out benchmarks/results]

For each model's parameter shapes (simple-cnn on CIFAR, the Fashion-MNIST MLP): the whole group in one launch of
engine/kernels.py's Triton update (its default for groups of <= SLOTS tensors), and with whole groups off, each
threshold BIG (elements from which a tensor takes the Triton update; the rest go through PyTorch's fused
multi-tensor kernel, one launch; BIG = 2^62: PyTorch's kernel alone). An Adam step with a device lr is captured
in a CUDA graph as the training chunks capture it, after an eager step; prints us per replay and the kernels of a
replay. Writes adam_split_<device>_<date>.json / .md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import torch
from _graph_timing import captured, kernel_times, replay_us

from convforge.engine import kernels

SHAPES = {
    "simple-cnn": [(32, 3, 3, 3), (32,), (32, 32, 3, 3), (32,), (128, 1152), (128,), (10, 128), (10,)],
    "fashion-mlp": [(128, 784), (128,), (10, 128), (10,)],
}
THRESHOLDS = [kernels.BIG, 4096, 1024, 2**62]


def step_us(shapes: list[tuple[int, ...]], big: int, whole: int) -> tuple[float, float, dict[str, float]]:
    saved = kernels.BIG, kernels.WHOLE_GROUP
    kernels.BIG, kernels.WHOLE_GROUP = big, whole
    try:
        params = [torch.randn(s, device="cuda", requires_grad=True) for s in shapes]
        opt = kernels.Adam(params, lr=1e-3, fused=True)
        for group in opt.param_groups:
            group["capturable"] = True

        for p in params:
            p.grad = torch.randn_like(p)

        def step():
            opt.step()

        step()  # eager: states created, Triton kernels compiled
        lr = torch.full((), 1e-3, device="cuda")
        opt.param_groups[0]["lr"] = lr
        graph = captured(step, warmup=1)
        us = replay_us(graph, reps=200)
        count, times = kernel_times(graph)
        return us, count, times
    finally:
        kernels.BIG, kernels.WHOLE_GROUP = saved


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    rows = []
    for model, shapes in SHAPES.items():
        for whole, big in [(kernels.SLOTS, kernels.BIG)] + [(0, big) for big in THRESHOLDS]:
            us, count, times = step_us(shapes, big, whole)
            rows.append(dict(model=model, whole_group=whole, big=big, replay_us=us, kernels=count, kernel_us=times))
            print(f"{model:12s} whole {whole} BIG {big:>20d}: {us:7.2f} us/replay; " +
                  ", ".join(f"{k[:40]} {v:.2f}" for k, v in times.items()), flush=True)  # fmt: skip
    device = torch.cuda.get_device_name()
    date = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    meta = dict(device=device, torch=torch.__version__, cuda=torch.version.cuda, date=date)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"adam_split_{device.replace(' ', '-')}_{date[:10]}"
    (out / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [f"# adam_split: {device}, torch {meta['torch']}, {date}", "",
             "| model | whole group up to | BIG | us/replay | kernels (us) |", "|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        ks = ", ".join(f"{k[:50]} {v:.2f}" for k, v in r["kernel_us"].items())
        lines.append(f"| {r['model']} | {r['whole_group']} | {r['big']} | {r['replay_us']:.2f} | {ks} |")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

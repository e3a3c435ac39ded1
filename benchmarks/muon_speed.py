"""Muon's step on a zoo model's trained weights, captured in a CUDA graph as a training step is, per PAD_LIMIT (how
much zero padding a stack of filter banks may carry: 1 = equal shapes only, large = one stack for all).

    PYTHONPATH=src python benchmarks/muon_speed.py [--models cifar10-fast folder-fast] [--out benchmarks/results]

Writes muon_speed_<device>_<date>.{json,md}: microseconds per step, kernels per step, stacks and their padded sizes.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import torch
from _graph_timing import captured, kernel_times, replay_us
from _results import save

import convforge.recipes  # noqa: F401  registers the recipes' networks
from convforge.bench.train import environment
from convforge.engine import muon, warmup
from convforge.engine.muon import Muon

LIMITS = (1.0, 2.0, 4.0, 1e9)


def step_us(model: str, limit: float) -> dict:
    shapes = warmup._hidden_matrices(model, 3)
    torch.manual_seed(0)
    weights = [torch.nn.Parameter(torch.randn(r, c, device="cuda")) for r, c in shapes]
    flat = [torch.nn.Parameter(torch.randn(r, device="cuda")) for r, _ in shapes]  # biases/shifts: plain SGD
    for p in weights + flat:
        p.grad = torch.randn_like(p)
    groups = [dict(params=weights, orthogonalize=True, normalize=True), dict(params=flat)]
    opt = Muon(groups, lr=0.1, momentum=0.6, ns_steps=3, fused=True)
    muon.PAD_LIMIT = limit
    stacks = [[shapes[i] for i in b] for b in muon._buckets(shapes)]
    padded = sum(len(s) * max(min(m) for m in s) * max(max(m) for m in s) for s in stacks)
    graph = captured(opt.step)
    us = min(replay_us(graph) for _ in range(3))
    kernels, times = kernel_times(graph)
    top = {name[:90]: round(t, 1) for name, t in list(times.items())[:8]}
    return dict(model=model, pad_limit=limit, us=round(us, 1), kernels=kernels, stacks=len(stacks),
                padded_over_own=round(padded / sum(r * c for r, c in shapes), 2), top_kernels_us=top)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["cifar10-fast", "folder-fast"])
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--tag", default="", help="suffix of the result file names")
    args = ap.parse_args()
    saved = muon.PAD_LIMIT
    rows = [step_us(m, limit) for m in args.models for limit in LIMITS]
    muon.PAD_LIMIT = saved
    env = environment()
    device = torch.cuda.get_device_name()
    lines = [
        f"# Muon step (3 Newton-Schulz steps, normalized, + a plain SGD group), captured: {device}, "
        f"torch {torch.__version__}, {env.get('date', dt.date.today())}",
        "",
        "| model | PAD_LIMIT | stacks | padded / own size | us per step | kernels |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['model']} | {r['pad_limit']:g} | {r['stacks']} | {r['padded_over_own']} | {r['us']} | "
              f"{r['kernels']:.0f} |" for r in rows]  # fmt: skip
    stem = Path(args.out) / f"muon_speed_{device.replace(' ', '-')}_{dt.date.today()}{args.tag}"
    save(stem, env, rows, lines)
    for r in rows:
        print(r["model"], r["pad_limit"], r["top_kernels_us"])


if __name__ == "__main__":
    main()

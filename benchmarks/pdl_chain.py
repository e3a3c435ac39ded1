"""Programmatic dependent launch (Hopper's PDL) on a chain of small Triton kernels in a CUDA graph: does letting the
next kernel launch before the previous one ends shorten what each kernel costs?

The same-recipe steps are chains of ~25-45 launches of a few microseconds each (digits-cnn: 43 kernels in ~142 us,
step_profile_*.md), so the gap between kernels is a large part of the step. Variants, each a graph of CHAIN kernels
(y = x + 1 on a map of ELEMENTS bf16 elements, alternating between two buffers, so each reads the last one's output):
  plain   launched as usual
  wait    launched with PDL; each program waits (griddepcontrol.wait) before its first load
  early   as wait, and each program also lets the next kernel launch at its start (griddepcontrol.launch_dependents)
Checks that every variant computes the same result. Run on the GPU machine:
    PYTHONPATH=src python3 benchmarks/pdl_chain.py [--out benchmarks/results/pdl_chain]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import torch
import triton
import triton.language as tl
from _graph_timing import captured, replay_us
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

CHAIN = 40


@triton.jit
def add_one(x, y, n, WAIT: tl.constexpr, EARLY: tl.constexpr, BLOCK: tl.constexpr):
    if EARLY:
        gdc_launch_dependents()
    if WAIT:
        gdc_wait()
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(y + offs, tl.load(x + offs, mask=mask) + 1.0, mask=mask)


def chain(a: torch.Tensor, b: torch.Tensor, variant: str, block: int) -> None:
    wait, early = variant != "plain", variant == "early"
    grid = (triton.cdiv(a.numel(), block),)
    for i in range(CHAIN):
        src, dst = (a, b) if i % 2 == 0 else (b, a)
        add_one[grid](src, dst, a.numel(), WAIT=wait, EARLY=early, BLOCK=block, launch_pdl=wait)


def time_graph(variant: str, elements: int, block: int) -> tuple[float, float]:
    """Microseconds per kernel of the captured chain's replays, and the result of one replay from zeros."""
    a = torch.zeros(elements, device="cuda", dtype=torch.bfloat16)
    b = torch.zeros_like(a)
    graph = captured(lambda: chain(a, b, variant, block))  # compiles first
    a.zero_()
    b.zero_()
    graph.replay()
    check = float(a[0].item())  # 40 adds of 1 (exact in bf16)
    return replay_us(graph, reps=200, warm=20) / CHAIN, check


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    rows = []
    for elements, block in [(4096, 1024), (100_352 * 8, 2048), (25_088 * 16, 2048), (1 << 22, 4096)]:
        for rep in range(2):
            for variant in ("plain", "wait", "early"):
                us, check = time_graph(variant, elements, block)
                rows.append(dict(elements=elements, block=block, variant=variant, rep=rep, us_per_kernel=us,
                                 result=check))  # fmt: skip
                print(f"{elements:>9} x bf16, {triton.cdiv(elements, block):>5} programs, {variant:5s}: "
                      f"{us:6.2f} us per kernel (result {check})", flush=True)  # fmt: skip
    if args.out:
        date = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        meta = dict(device=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
                    cuda=torch.version.cuda, date=date)  # fmt: skip
        stem = Path(f"{args.out}_{meta['device'].replace(' ', '-')}_{meta['date'][:10]}")
        stem.parent.mkdir(parents=True, exist_ok=True)
        stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
        head = ["| elements | programs | variant | rep | us per kernel | result |", "|---|---|---|---|---|---|"]
        lines = [f"# PDL chain: {meta['device']}, torch {meta['torch']}, triton {meta['triton']}, {date}", "", *head]
        lines += [f"| {r['elements']} | {triton.cdiv(r['elements'], r['block'])} | {r['variant']} | {r['rep']} | "
                  f"{r['us_per_kernel']:.2f} | {r['result']} |" for r in rows]  # fmt: skip
        stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

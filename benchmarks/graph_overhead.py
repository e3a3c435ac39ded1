"""Where a same-recipe run spends time beyond its replayed steps: per-epoch times and K of a few runs, then one run
under torch.profiler: GPU idle gaps by size, the host ops overlapping them, the engine's phases (warm-up steps,
captures, the epoch's eager tail step) and the kernels of the later epochs by name. NOPROF=1 skips the profiled run.
FIRST=1 profiles the process's first run instead (CUDA initialized before it, as after train_speed's plain loop) and
prints where its first eager steps' host time goes (cProfile) and the Triton kernels the main thread compiles (at
first use). A/B switches of the warm-up (engine/warmup.py): NO_EPOCH_OPS=1 leaves out the epoch's PyTorch kernels
(_start_epoch_ops), NO_CONV_WARMUP=1 its cuDNN convs (_start_convs), NO_MUON_WARMUP=1 its Muon step (muon.warm_up),
NO_STEP_WARMUP=1 its model step (_start_step).

  PYTHONPATH=src CONVFORGE_CACHE=.data python3 benchmarks/graph_overhead.py mnist-digits-cnn mnist 3
  (NAME: a reference recipe of bench/train.py, or a recipe such as mnist-fast)
  (graph_overhead_profile_*.log: an earlier version of this script, which did not print K yet)
"""

from __future__ import annotations

import bisect
import collections
import cProfile
import json
import os
import pstats
import sys
import tempfile
import threading
import time

import torch
from torch.profiler import ProfilerActivity, profile, record_function
from triton.runtime.jit import JITFunction

from convforge import api
from convforge.bench.train import REFERENCE, SPLIT
from convforge.engine import cross_entropy, loop, warmup
from convforge.engine.fast import graph
from convforge.models import _kernels

PHASES = [(loop.Trainer, "train_epoch", "EPOCH"), (graph.GraphStep, "_warmup", "WARMUP"),
          (graph.GraphStep, "_capture", "CAPTURE"), (graph.GraphStep, "_replay_and_pick_k", "PICKK"),
          (graph.GraphStep, "start_epoch", "START"), (loop.Trainer, "step", "EAGERSTEP")]  # fmt: skip


def run(name: str, source: str, seed: int) -> None:
    if name in REFERENCE:
        ref = REFERENCE[name]
        options = {k: v for k, v in ref.items() if k != "source"}
        options.update(split=SPLIT[ref["source"]], schedule="constant", rescale="unit")
    else:  # a recipe (e.g. mnist-fast) as `convforge train --recipe NAME` runs it
        options = {"recipe": name}
    trainers = []
    init = loop.Trainer.__init__

    def keep(self, *args, **kwargs):
        init(self, *args, **kwargs)
        trainers.append(self)

    loop.Trainer.__init__ = keep
    try:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            r = api.train(source, seed=seed, out=f"{tmp}/run", progress=False, log=lambda s: None, **options)
            total = time.perf_counter() - t0
    finally:
        loop.Trainer.__init__ = init
    epochs = [row["time_s"] for row in r.history]
    k = getattr(trainers[-1].fast, "k", None) if trainers else None
    print(f"{name} seed {seed}: K {k} train {sum(epochs):.3f} s epochs {epochs} total {total:.2f} "
          f"acc {r.test_accuracy:.4f}", flush=True)  # fmt: skip


def labelled(cls, method: str, label: str) -> None:
    inner = getattr(cls, method)

    def wrapper(*args, **kwargs):
        with record_function(label):
            return inner(*args, **kwargs)

    setattr(cls, method, wrapper)


def gaps_of(kernels: list[tuple]) -> list[tuple]:
    """(idle us, start, end, kernel before, kernel after) of each stretch where no GPU work ran."""
    gaps, end, before = [], kernels[0][1], kernels[0][2]
    for start, stop, name in kernels:
        if start > end:
            gaps.append((start - end, end, start, before, name))
        if stop > end:
            end, before = stop, name
    return gaps


def size_class(us: float) -> str:
    bounds = [(2, "<2us"), (5, "<5us"), (20, "<20us"), (100, "<100us"), (1000, "<1ms")]
    return next((label for bound, label in bounds if us < bound), ">=1ms")


def report(events: list[dict]) -> None:
    kinds = ("kernel", "gpu_memcpy", "gpu_memset")
    kernels = sorted((e["ts"], e["ts"] + e["dur"], e["name"]) for e in events if e.get("cat") in kinds)
    gaps = gaps_of(kernels)
    busy = sum(stop - start for start, stop, _ in kernels)
    print(f"gpu events {len(kernels)}")
    print(f"span {(kernels[-1][1] - kernels[0][0]) / 1e3:.1f} ms busy {busy / 1e3:.1f} ms "
          f"idle {sum(g[0] for g in gaps) / 1e3:.1f} ms")  # fmt: skip
    by_size = collections.Counter()
    for gap in gaps:
        by_size[size_class(gap[0])] += gap[0]
    print("idle by gap size (ms):", {k: round(v / 1e3, 2) for k, v in sorted(by_size.items())})
    host = sorted((e for e in events if e.get("cat") in ("cpu_op", "cuda_runtime", "user_annotation", "cuda_driver")
                   and "dur" in e), key=lambda e: e["ts"])  # fmt: skip
    starts = [e["ts"] for e in host]
    big = sorted((g for g in gaps if g[0] >= 20), key=lambda g: g[1])
    overlap = collections.Counter()
    for _, start, end, _, _ in big:
        for op in host[bisect.bisect_left(starts, start - 5e4) :]:
            if op["ts"] > end:
                break
            overlap[op["name"]] += max(0.0, min(end, op["ts"] + op["dur"]) - max(start, op["ts"]))
    print("host ops overlapping GPU gaps >= 20us (ms):")
    for name, us in overlap.most_common(30):
        print(f"  {us / 1e3:8.2f}  {name[:100]}")
    print("largest gaps:")
    for us, start, _, before, after in sorted(big, reverse=True)[:25]:
        at = (start - kernels[0][0]) / 1e3
        print(f"  {us / 1e3:7.2f} ms at {at:8.1f} ms  after {before[:50]} before {after[:50]}")
    phases = sorted((e["ts"], e["dur"], e["name"]) for e in events
                    if e.get("cat") == "user_annotation" and e["name"].isupper())  # fmt: skip
    for ts, dur, name in phases:
        print(f"  {name:10s} at {(ts - kernels[0][0]) / 1e3:8.1f} ms  host {dur / 1e3:7.2f} ms")
    later_epochs(events, kernels, [(ts, ts + dur) for ts, dur, name in phases if name == "EPOCH"])


def later_epochs(events: list[dict], kernels: list[tuple], epochs: list[tuple]) -> None:
    """Kernels of epochs 2 and on (host time windows), by name: count and mean us."""
    if len(epochs) < 3:
        return
    lo, hi = epochs[1][0], epochs[-1][1]
    inside = [k for k in kernels if lo <= k[0] <= hi]
    launches = sum(1 for e in events if e.get("name") == "cudaGraphLaunch" and lo <= e["ts"] <= hi)
    count, time_us = collections.Counter(), collections.Counter()
    for start, stop, name in inside:
        count[name] += 1
        time_us[name] += stop - start
    print(f"steady epochs: {len(inside)} kernels, {launches} graph launches")
    for name, n in count.most_common(60):
        print(f"  {n:7d}  {time_us[name] / n:6.2f} us  {name[:110]}")


def main(name: str, source: str, runs: int) -> None:
    first = bool(os.environ.get("FIRST"))
    if os.environ.get("NO_EPOCH_OPS"):  # A/B of the warm-up's epoch kernels (engine/warmup.py _start_epoch_ops)
        warmup._start_epoch_ops = lambda *args: None
    if os.environ.get("NO_CONV_WARMUP"):  # A/B of the warm-up's cuDNN convs (engine/warmup.py _start_convs)
        warmup._start_convs = lambda *args: None
    if os.environ.get("NO_MUON_WARMUP"):  # A/B of the warm-up's Muon step (engine/muon.py warm_up)
        warmup.muon.warm_up = lambda *args: None
    if os.environ.get("NO_STEP_WARMUP"):  # A/B of the warm-up's model step (engine/warmup.py _start_step)
        warmup._start_step = lambda *args: None
    if os.environ.get("NO_PDL"):  # A/B of programmatic dependent launch (models/_dependent_triton.py)
        _kernels.DEPENDENT_LAUNCH = False
    if os.environ.get("NO_UNIT"):  # A/B of the backward from a cached 1 (engine/cross_entropy.py backward)
        cross_entropy.CACHED_UNIT = False
    if first:  # the process's first run profiled, as train_speed's first convforge run (after its plain loop)
        torch.zeros(1, device="cuda").sum().item()
    else:
        for seed in range(runs):
            run(name, source, seed)
    if os.environ.get("NOPROF"):
        if first:
            run(name, source, 0)
        return
    for cls, method, label in PHASES:
        labelled(cls, method, label)
    if first:  # where the first eager step's host time goes (Python level)
        warm = graph.GraphStep._warmup

        def profiled(self):
            with cProfile.Profile() as python:
                warm(self)
            pstats.Stats(python).sort_stats("cumulative").print_stats(45)

        graph.GraphStep._warmup = profiled
        eager, calls = loop.Trainer.step, []

        def first_eager(self, *args, **kwargs):  # the epoch's tail step (the warm-up step runs Trainer.update)
            if calls:
                return eager(self, *args, **kwargs)
            calls.append(1)
            with cProfile.Profile() as python:
                out = eager(self, *args, **kwargs)
            pstats.Stats(python).sort_stats("cumulative").print_stats(30)
            return out

        loop.Trainer.step = first_eager
        compile_ = JITFunction._do_compile

        def named(self, key, signature, device, constexprs, options, attrs, warmup):  # compiles at first use
            if threading.current_thread() is threading.main_thread():
                print(f"compiled at first use: {self.fn.__name__} {signature} {constexprs}", flush=True)
            return compile_(self, key, signature, device, constexprs, options, attrs, warmup)

        JITFunction._do_compile = named
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        run(name, source, 0 if first else 99)
    path = f"{tempfile.gettempdir()}/trace_{name}.json"
    prof.export_chrome_trace(path)
    with open(path) as f:
        report(json.load(f)["traceEvents"])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))

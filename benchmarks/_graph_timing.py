"""CUDA-graph timing shared by the step benchmarks: capture a function as the training step is captured, then time
its replays with CUDA events (launch gaps and Python excluded, as in a captured training chunk)."""

from __future__ import annotations

from collections.abc import Callable

import torch


def captured(fn: Callable[[], object], warmup: int = 3) -> torch.cuda.CUDAGraph:
    """fn() run `warmup` times on a side stream (lazy initialization, cuDNN plans), then captured."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph


def replay_us(graph: torch.cuda.CUDAGraph, reps: int = 50, warm: int = 10) -> float:
    """Microseconds per replay, over `reps` replays after `warm` untimed ones."""
    for _ in range(warm):
        graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        graph.replay()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1000 / reps


def kernel_times(graph: torch.cuda.CUDAGraph, replays: int = 10) -> tuple[float, dict[str, float]]:
    """Kernels per replay and each kernel name's GPU microseconds per replay (torch.profiler), largest first."""
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(replays):
            graph.replay()
        torch.cuda.synchronize()
    events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    times: dict[str, float] = {}
    for e in events:
        times[e.name] = times.get(e.name, 0.0) + e.device_time / replays
    return len(events) / replays, dict(sorted(times.items(), key=lambda kv: -kv[1]))

"""Triton source for programmatic dependent launch (PDL, Hopper and newer): a kernel launched with it may start while
the kernel before it on the stream is still finishing, and waits inside (griddepcontrol.wait) until that kernel has
ended and its writes are visible.

Why: the same-recipe training steps are chains of 25-45 launches of a few microseconds each, and the gap between two
kernels is a large part of each. In a CUDA graph of 40 small Triton kernels, launching each with PDL and waiting at
its start took 1.60 -> 1.07 us a kernel (392 programs), 1.36 -> 0.89 (196) and 3.51 -> 2.89 (1024) (H200,
benchmarks/pdl_chain.py, pdl_chain_*.md). Letting the next kernel launch early as well (launch_dependents at the
start) was slower on the larger grids, and in training (launch_dependents after the wait: digits-cnn 0.27 -> 0.29 s,
simple-cnn 1.17 -> 1.34 s, pdl_early_ab_*.txt), so kernels only wait.

Every kernel that models/_kernels.dependent() lets launch with PDL calls wait_for_previous() before it touches memory
(reads of the last kernel's output and writes of what it may still read alike). The wait is compiled in only where
PDL exists: a CUDA build of Triton with griddepcontrol (3.3+) and GPUs of compute capability 9.0+; Triton's CPU
interpreter and older GPUs get an empty function.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

try:
    from triton.language.extra.cuda import gdc_wait
except ImportError:  # a Triton before griddepcontrol: SUPPORTED is False and the name is never compiled
    gdc_wait = None


def _supported() -> bool:
    if gdc_wait is None or os.environ.get("TRITON_INTERPRET") == "1" or not torch.cuda.is_available():
        return False
    return all(torch.cuda.get_device_capability(i) >= (9, 0) for i in range(torch.cuda.device_count()))


SUPPORTED = tl.constexpr(_supported())


@triton.jit
def wait_for_previous():
    """Wait until the kernel launched before this one on the stream has ended (no-op without PDL)."""
    if SUPPORTED:
        gdc_wait()

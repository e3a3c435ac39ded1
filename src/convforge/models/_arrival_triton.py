"""Triton source shared by kernels whose last program to arrive does a final piece of work after all the others
have done theirs (engine/fast/gather.py: it advances the step counter that every program of the launch reads).

Each program takes a ticket from an arrival counter; the one that draws the last ticket goes on and resets the counter
for the next launch. Memory ordering, as CUTLASS's semaphore does it: a CTA barrier orders every thread's stores before
the one thread that makes the atomic (Triton's scalar atomics run on one thread); its release at GPU scope is
cumulative over them, and the last program's acquire (shared with its threads through the barrier Triton puts after
a scalar atomic whose value is used) orders its later loads after all of them. Loads of other programs' results
should bypass L1 (cache_modifier=".cg").

Tried as a way to drop finishing kernels (the fused batchnorm's statistics and gradient sums, the split dense
forward's partial sums: 6 kernels of digits-cnn's step): the step took 147 us instead of 145 (H200,
step_variants_tickets_*.md), since the last program's atomic and loads cost what the saved launch did; those keep
their finishing kernels.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def last_to_arrive(counter, arrivals):
    """True in the program that arrives last of `arrivals` programs at `counter`; that program resets it to zero."""
    tl.debug_barrier()
    last = tl.atomic_add(counter, 1, sem="acq_rel", scope="gpu") == arrivals - 1
    if last:
        tl.store(counter, 0)
    return last

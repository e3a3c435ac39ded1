"""Compile time of folder-fast's Triton kernels on a fresh machine (empty Triton cache): the fused batchnorm + ReLU
kernels in 1 or N threads, then the max pool's. What a first run pays before its first step (engine/warmup.py
compiles them while the data loads).

    PYTHONPATH=src python3 benchmarks/triton_compile_time.py WORKERS     (one process per measurement: fresh cache)
"""

from __future__ import annotations

import os
import sys
import tempfile
import time


def main() -> None:
    workers = int(sys.argv[1])
    os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp()  # before triton is imported: nothing cached
    import torch

    from convforge.models import _kernels, _norm_act

    torch.zeros(1, device="cuda")
    jobs = _norm_act.compile_jobs(torch.bfloat16, {(32, 0), (64, 0), (128, 0), (256, 0), (384, 0)})
    start = time.perf_counter()
    if workers <= 1:
        for job in jobs:
            job()
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as pool:
            for done in [pool.submit(job) for job in jobs]:
                done.result()
    middle = time.perf_counter()
    _kernels.compile_pool(torch.bfloat16)
    end = time.perf_counter()
    print(f"{workers} threads: {len(jobs)} norm-act kernels {middle - start:.2f} s, pool {end - middle:.2f} s")


if __name__ == "__main__":
    main()

"""Where a recipe's first run in a fresh process spends its extra time: epoch times of three runs in one process, and
the Triton kernels each run compiled (new entries of a fresh TRITON_CACHE_DIR).

    PYTHONPATH=src CONVFORGE_CACHE=.data python benchmarks/first_run.py SOURCE [RECIPE] ['{"solver": "nesterov"}']
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

CACHE = Path(tempfile.mkdtemp())
os.environ["TRITON_CACHE_DIR"] = str(CACHE)  # before Triton is imported

import convforge.recipes  # noqa: E402, F401  registers the recipes
from convforge import api  # noqa: E402


def compiled() -> set[str]:
    names = set()
    for meta in CACHE.glob("*/*.json"):
        entry = json.loads(meta.read_text())
        if "name" in entry:
            names.add(f"{entry['name']}/{meta.parent.name[:8]}")
    return names


def main() -> None:
    source = sys.argv[1]
    recipe = sys.argv[2] if len(sys.argv) > 2 else "fast"
    options = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    seen = compiled()
    for run in range(3):
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            r = api.train(source, recipe=recipe, seed=run, out=f"{tmp}/r", progress=False, log=lambda s: None,
                          **options)  # fmt: skip
        new = sorted(compiled() - seen)
        seen |= set(new)
        epochs = " ".join(f"{h['time_s'] * 1000:.0f}" for h in r.history)
        print(f"run {run} {options}: epochs {epochs} ms; train {sum(h['time_s'] for h in r.history):.3f} s; "
              f"total {time.perf_counter() - t0:.2f} s; acc {r.test_accuracy:.4f}; "
              f"Triton kernels compiled {len(new)}: {[n.split('/')[0] for n in new]}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

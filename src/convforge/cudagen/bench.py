"""Time a built project's forward pass (the program's own --bench mode: CUDA events around a graph replay)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from ..errors import ConvforgeError

BATCHES = (1, 32, 256)


def bench_project(out: Path, batches=BATCHES, iters: int = 200, timeout_s: int = 600) -> list[dict[str, Any]]:
    """One dict per batch size: median_ms, p99_ms, images_per_s (input already on the GPU)."""
    binary = Path(out) / "classify"
    if not binary.is_file():
        raise ConvforgeError(f"{binary} does not exist; build the project first (codegen --build)")
    rows = []
    for batch in batches:
        cmd = [str(binary), "--weights", str(out), "--bench", str(batch), "--iters", str(iters)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        if proc.returncode != 0:
            raise ConvforgeError(f"{binary} --bench {batch} failed: {(proc.stderr or proc.stdout).strip()[:300]}")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return rows

"""Every conv_nhwc.cuh tile of nhwc.TILES compiles for sm_90 (no GPU needed), within its register budget and without
spills (ptxas 13.0, half, 8-channel gather); ptxas's numbers are what the tile table in nhwc.py was judged by."""

from __future__ import annotations

import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from convforge.cudagen.build import find_nvcc
from convforge.cudagen.emit import KERNEL_DIR
from convforge.cudagen.nhwc import TILES

INSTANCE = """template __global__ void cf::conv_nhwc_kernel<__half, {bm}, {bn}, {bk}, {warps}, 8, __half>(const __half*,
    const __half*, const float*, const __half*, __half*, cf::NhwcShape, int, int, float, int, float*);
"""


pytestmark = pytest.mark.skipif(find_nvcc(required=False) is None, reason="needs nvcc")


def _ptxas(src: Path, tiles: list[tuple[int, int, int, int]]) -> str:
    body = "".join(INSTANCE.format(bm=bm, bn=bn, bk=bk, warps=warps) for bm, bn, bk, warps in tiles)
    src.write_text(f'#include "common.cuh"\n#include "conv_nhwc.cuh"\n{body}')
    cmd = [find_nvcc(), "-O3", "-std=c++17", "-arch=sm_90", f"-I{KERNEL_DIR}", "-Xptxas", "-v", "-c", str(src)]
    proc = subprocess.run([*cmd, "-o", str(src.with_suffix(".o"))], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stderr


def _usage(log: str) -> dict[tuple[int, int, int, int], tuple[int, int]]:
    """(bm, bn, bk, warps) -> (registers, spill store bytes) from ptxas -v."""
    found = {}
    tile = r"conv_nhwc_kernelI6__halfLi(\d+)ELi(\d+)ELi(\d+)ELi(\d+)E"
    for m in re.finditer(tile + r".*?(\d+) bytes spill stores.*?Used (\d+) registers", log, re.S):
        found[tuple(int(v) for v in m.group(1, 2, 3, 4))] = (int(m.group(6)), int(m.group(5)))
    return found


def test_every_tile_compiles_within_budget(tmp_path):
    """Two nvcc processes (the suite runs on 2 cores): about 60 s for the 13 tiles."""
    tiles = sorted(TILES)
    halves = [tiles[::2], tiles[1::2]]
    with ThreadPoolExecutor(2) as pool:
        logs = list(pool.map(lambda i: _ptxas(tmp_path / f"tiles{i}.cu", halves[i]), range(2)))
    usage = {k: v for log in logs for k, v in _usage(log).items()}
    assert sorted(usage) == tiles
    for tile, (regs, spill) in usage.items():
        bm, bn, _, warps = tile
        wide_warps = bm * bn // warps >= 64 * 64  # 64x64 warp tiles: 1 CTA of 8 warps or 2 of 4 per SM
        assert regs <= (255 if wide_warps else 128), (tile, regs)
        assert spill == 0, (tile, spill)

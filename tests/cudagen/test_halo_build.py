"""conv_halo.cuh / conv_shift.cuh selection without a GPU (nhwc.halo_tiles, halo_enabled, CF_NHWC_HALO): which
layers take them, at which batches, the shared memory they need (checked against the C++ HaloTile / ShiftTile
through nvcc), and that a generated project launching them compiles for sm_90a without spills. Their numerics run
on the GPU: test_gpu.py (resnet18, alexnet and resnet18@224 fp16/bf16, memcheck) and benchmarks/conv_check.cu."""

from __future__ import annotations

import re
import subprocess

import pytest

from convforge.cudagen import generate
from convforge.cudagen._random_run import make_run
from convforge.cudagen.build import find_nvcc
from convforge.cudagen.nhwc import HALO_ENV, TILE_ENV, WGMMA_ENV, Tile, halo_enabled, halo_smem, halo_tiles, shift_smem
from convforge.errors import ConvforgeError

KERNELS = "src/convforge/cudagen/kernels"
# NhwcShape fields: h w cs cin_g cout cs_out ho wo kh kw sh sw ph pw dh dw groups K Kp
RESNET_64 = [56, 56, 64, 64, 64, 64, 56, 56, 3, 3, 1, 1, 1, 1, 1, 1, 1, 576, 576]
RESNET_STEM = [115, 115, 16, 16, 64, 64, 112, 112, 4, 4, 1, 1, 0, 0, 1, 1, 1, 256, 256]  # s2d.py's rewrite
ALEXNET_STEM = [57, 57, 48, 48, 64, 64, 55, 55, 3, 3, 1, 1, 0, 0, 1, 1, 1, 432, 448]


def test_halo_tiles_for_resnet18_and_stems():
    """64-channel 3x3 layers: the 16-warp 256-pixel tile from the first batch with a tile per SM (13 tiles an image
    at 56 x 56: batch 11), the 128-pixel one below; stems (K < 576) keep the 128-pixel tile at every batch."""
    assert halo_tiles(RESNET_64, residual=True, fp32_out=False, max_batch=256) == [
        Tile(11, "halo", 256, 64, 0, 16),
        Tile(1, "halo", 128, 64, 0, 8),
    ]
    assert [t.name for t in halo_tiles(RESNET_64, False, False, 8)] == ["halo128"]
    assert halo_tiles(RESNET_STEM, False, False, 256) == [Tile(1, "halo", 128, 64, 0, 8)]
    assert halo_tiles(ALEXNET_STEM, False, False, 256) == [Tile(1, "halo", 128, 64, 0, 8)]


def test_shift_takes_over_from_half_the_sms():
    """sm_90a builds: conv_shift from the first batch with 66 tiles of 256 grid positions (56 x 58 = 13 an image:
    batch 6; the stem's 112 x 115: 51, batch 2), conv_halo below; halo256 (from batch 11) is then never reached."""
    assert halo_tiles(RESNET_64, True, False, 256, shift=True) == [
        Tile(6, "shift", 256, 64, 0, 8),
        Tile(1, "halo", 128, 64, 0, 8),
    ]
    assert [(t.min_n, t.name) for t in halo_tiles(RESNET_STEM, False, False, 256, shift=True)] == [
        (2, "shift256"),
        (1, "halo128"),
    ]
    assert halo_tiles(RESNET_64, True, False, 4, shift=True) == [Tile(1, "halo", 128, 64, 0, 8)]  # never 66 tiles


@pytest.mark.parametrize(
    "change, why",
    [
        ({10: 2, 11: 2}, "stride 2"),
        ({5: 128, 4: 128}, "128 output channels"),
        ({2: 24, 3: 24}, "24-channel pixels: rows not an odd number of 16-byte units"),
        ({3: 32, 16: 2}, "groups"),
        ({14: 2, 15: 2}, "dilation"),
        ({2: 128, 3: 128, 17: 1152, 18: 1152}, "128-channel pixels"),
        ({6: 400, 7: 400, 0: 402, 1: 402}, "a halo of 402-pixel rows over the shared memory"),
    ],
)
def test_halo_tiles_refuses(change, why):
    shape = list(RESNET_64)
    for i, v in change.items():
        shape[i] = v
    assert halo_tiles(shape, residual=False, fp32_out=False, max_batch=256) is None, why


def test_halo_tiles_refuses_fp32_logits():
    assert halo_tiles(RESNET_64, residual=False, fp32_out=True, max_batch=256) is None


def test_halo_enabled_reads_arch_and_env():
    assert halo_enabled("sm_90", {}) and halo_enabled("sm_90a", {HALO_ENV: "1"})
    assert not halo_enabled("sm_80", {}) and not halo_enabled("sm_90", {HALO_ENV: "0"})
    assert not halo_enabled("sm_90", {TILE_ENV: "128x128x32"})  # measuring one conv_nhwc tile
    with pytest.raises(ConvforgeError, match="CF_NHWC_HALO='yes'"):
        halo_enabled("sm_90", {HALO_ENV: "yes"})


def _printed_values(tmp_path, header: str, expressions: list[str]) -> list[int]:
    """The int values of C++ ``expressions`` (kernels/``header`` included), printed by a host program nvcc builds."""
    import pathlib

    body = "".join(f'  std::printf("%d\\n", {e});\n' for e in expressions)
    src = tmp_path / "values.cu"
    src.write_text(f'#include <cstdio>\n#include "{header}"\nint main() {{\n{body}}}\n')
    inc = pathlib.Path(__file__).resolve().parents[2] / KERNELS
    exe = tmp_path / "values"
    build = subprocess.run([find_nvcc(), "-std=c++17", "-arch=sm_90a", "-I", str(inc), str(src), "-o", str(exe)],
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    return [int(v) for v in subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()]


@pytest.mark.skipif(find_nvcc(required=False) is None, reason="needs nvcc")
def test_halo_smem_matches_the_kernel(tmp_path):
    """nhwc.halo_smem mirrors HaloTile<...>::smem_bytes (what the launcher asks for) for both tiles, with and
    without a residual."""
    cases = [(RESNET_64, 128, True), (RESNET_64, 128, False), (RESNET_64, 256, True), (RESNET_STEM, 128, False)]
    cases += [(ALEXNET_STEM, 128, True)]
    exprs = []
    for shape, bp, res in cases:
        cs, kh, kw, wo = shape[2], shape[8], shape[9], shape[7]
        staged, wm = ("true", 4) if bp == 128 else ("false", 8)
        exprs.append(f"cf::HaloTile<{cs}, {kh}, {kw}, {bp}, {wm}, 2, {staged}>::smem_bytes({wo}, {str(res).lower()})")
    got = _printed_values(tmp_path, "conv_halo.cuh", exprs)
    assert got == [halo_smem(shape, bp, res) for shape, bp, res in cases]
    assert max(got) <= 227 * 1024 and got[2] == 222208  # resnet18's 64-channel layer, 256-pixel tile


@pytest.mark.skipif(find_nvcc(required=False) is None, reason="needs nvcc")
def test_shift_smem_matches_the_kernel(tmp_path):
    shapes = [RESNET_64, RESNET_STEM, ALEXNET_STEM]
    exprs = [f"cf::ShiftTile<{s[2]}, {s[8]}, {s[9]}>::smem_bytes({s[7]})" for s in shapes]
    got = _printed_values(tmp_path, "conv_shift.cuh", exprs)
    assert got == [shift_smem(s) for s in shapes] and max(got) <= 227 * 1024


@pytest.fixture(scope="module")
def resnet_run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("run") / "run", "resnet18", in_shape=(3, 224, 224), num_classes=10)


def test_generated_project_launches_halo_only_for_sm90(resnet_run, tmp_path, monkeypatch):
    for var in (HALO_ENV, TILE_ENV, WGMMA_ENV):
        monkeypatch.delenv(var, raising=False)
    info, _ = generate(resnet_run, tmp_path / "a", precision="fp16", max_batch=64, arch="sm_90")
    src = (tmp_path / "a" / "network.cu").read_text()
    assert info["arch"] == "sm_90a" and '#include "kernels/conv_shift.cuh"' in src
    assert src.count("if (n >= 2) conv_shift<Elem, 16, 4, 4>(s, ") == 1  # the space-to-depth stem
    assert src.count("else conv_halo<Elem, 16, 4, 4, 128, 4, 2, true>(s, ") == 1
    assert src.count("if (n >= 6) conv_shift<Elem, 64, 3, 3>(s, ") == 4  # the 64-channel 3x3 layers
    assert src.count("else conv_halo<Elem, 64, 3, 3, 128, 4, 2, true>(s, ") == 4
    generate(resnet_run, tmp_path / "b", precision="fp16", max_batch=64, arch="sm_80")
    assert "conv_halo" not in (tmp_path / "b" / "network.cu").read_text()
    monkeypatch.setenv(WGMMA_ENV, "0")  # no sm_90a code: conv_halo alone, halo256 from batch 11
    info, _ = generate(resnet_run, tmp_path / "c", precision="fp16", max_batch=64, arch="sm_90")
    src = (tmp_path / "c" / "network.cu").read_text()
    assert info["arch"] == "sm_90" and "conv_shift" not in src
    assert src.count("if (n >= 11) conv_halo<Elem, 64, 3, 3, 256, 8, 2, false>(s, ") == 4
    monkeypatch.setenv(HALO_ENV, "0")
    generate(resnet_run, tmp_path / "d", precision="fp16", max_batch=64, arch="sm_90")
    assert "conv_halo" not in (tmp_path / "d" / "network.cu").read_text()


@pytest.mark.skipif(find_nvcc(required=False) is None, reason="needs nvcc")
def test_halo_project_compiles_without_spills(resnet_run, tmp_path, monkeypatch):
    """The default resnet18 224 px build: conv_shift and conv_halo for the stem and the 64-channel layers."""
    for var in (HALO_ENV, TILE_ENV, WGMMA_ENV):
        monkeypatch.delenv(var, raising=False)
    out = tmp_path / "out"
    generate(resnet_run, out, precision="fp16", max_batch=256, arch="sm_90")
    cmd = [find_nvcc(), "-O3", "-std=c++17", "-arch=sm_90a", "-cubin", "-Xptxas", "-v", "network.cu", "-o", "net.cubin"]
    proc = subprocess.run(cmd, cwd=out, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    entry = r"conv_(?:halo|shift)_kernel\S*' for 'sm_90a'\n.*?\n\s*\d+ bytes stack frame, (\d+) bytes spill stores"
    assert re.findall(entry, proc.stderr) == ["0"] * 4, proc.stderr[-3000:]  # stem and 64-channel, both kernels

"""CF_NHWC_WGMMA (nhwc.py, kernels/conv_wgmma.cuh) without a GPU: which layers take the wgmma kernel, the sm_90a
build it implies, and that such a project's device code compiles for sm_90a with ptxas reporting no spills (one
nvcc -cubin of network.cu: about 30 s here, host code checked by the same front-end pass)."""

from __future__ import annotations

import re
import subprocess

import pytest

from convforge.cudagen import generate
from convforge.cudagen._random_run import make_run
from convforge.cudagen.build import find_nvcc
from convforge.cudagen.nhwc import WGMMA_ENV, Tile, use_wgmma, wgmma_tile
from convforge.errors import ConvforgeError


def test_wgmma_tile_reads_the_env():
    assert wgmma_tile({}) == "auto" and wgmma_tile({WGMMA_ENV: "0"}) is None
    assert wgmma_tile({WGMMA_ENV: "1"}) == "all" and wgmma_tile({WGMMA_ENV: "128x256s4"}) == "128x256s4"
    with pytest.raises(ConvforgeError, match="128x128s3"):
        wgmma_tile({WGMMA_ENV: "96x96s2"})


def test_use_wgmma_replaces_conv_launches_and_keeps_the_gemv():
    """A run of conv_nhwc thresholds becomes one wgmma entry down to the run's lowest batch; the GEMV of small dense
    batches stays; grouped layers keep conv_nhwc; layers of <= 64 output channels get the BM 64 tile."""
    tiles = [Tile(64, "conv", 128, 128, 64), Tile(9, "conv", 64, 64, 32, 4), Tile(1, "gemv")]
    kw = dict(pixels=1, dense=True, max_batch=256)
    out = use_wgmma(tiles, rows_g=512, groups=1, name="all", **kw)
    assert out == [Tile(9, "wgmma", 128, 128, 64, 8, 3), Tile(1, "gemv")]
    assert [t.name for t in out] == ["wgmma128x128s3", "gemv"]
    narrow = use_wgmma([Tile(1, "conv", 64, 128)], rows_g=64, groups=1, name="all", **kw)
    assert narrow == [Tile(1, "wgmma", 64, 256, 64, 8, 4)]
    assert use_wgmma(tiles, rows_g=512, groups=2, name="all", **kw) == tiles
    assert use_wgmma(tiles[:1], rows_g=8, groups=1, name="128x256s4", **kw)[0].bn == 256


def test_auto_wgmma_takes_wide_layers_from_32_ctas():
    """The measured default: layers of >= 128 channels from the first batch with 32 CTAs of the 128x128 tile (the
    launches below stay, the entry spanning that batch split); 64-channel layers and small grids keep conv_nhwc."""
    conv3x3 = [Tile(2, "conv", 128, 128, 64), Tile(1, "conv", 128, 64)]  # resnet18 512 x 7 x 7: 1 n-tile an image
    out = use_wgmma(conv3x3, rows_g=512, pixels=49, groups=1, name="auto", dense=False, max_batch=256)
    assert [(t.min_n, t.name) for t in out] == [(19, "wgmma128x128s3"), (2, "128x128x64"), (1, "128x64x32")]
    assert use_wgmma(conv3x3, rows_g=512, pixels=49, groups=1, name="auto", dense=False, max_batch=16) == conv3x3
    narrow = [Tile(1, "conv", 64, 128, 64)]
    assert use_wgmma(narrow, rows_g=64, pixels=3136, groups=1, name="auto", dense=False, max_batch=256) == narrow
    fc = [Tile(9, "conv", 128, 128), Tile(1, "gemv")]  # 32 m-tiles: 32 CTAs from batch 1, the GEMV kept to 8
    out = use_wgmma(fc, rows_g=4096, pixels=1, groups=1, name="auto", dense=True, max_batch=256)
    assert [(t.min_n, t.kind) for t in out] == [(9, "wgmma"), (1, "gemv")]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("run") / "run", "digits-cnn")


def test_narrow_nets_off_and_only_for_sm90(digits_run, tmp_path, monkeypatch):
    """By default digits-cnn (<= 32 channels) keeps conv_nhwc and sm_90; nothing takes wgmma below sm_90."""
    monkeypatch.delenv(WGMMA_ENV, raising=False)
    info, _ = generate(digits_run, tmp_path / "a", precision="fp16", max_batch=64, arch="sm_90")
    assert info["arch"] == "sm_90" and "conv_wgmma" not in (tmp_path / "a" / "network.cu").read_text()
    monkeypatch.setenv(WGMMA_ENV, "1")
    info, _ = generate(digits_run, tmp_path / "b", precision="fp16", max_batch=64, arch="sm_80")
    assert info["arch"] == "sm_80" and "conv_wgmma" not in (tmp_path / "b" / "network.cu").read_text()


@pytest.mark.skipif(find_nvcc(required=False) is None, reason="needs nvcc")
def test_wgmma_project_compiles_for_sm90a(digits_run, tmp_path, monkeypatch):
    """digits-cnn fp16: the 4-channel stem keeps conv_nhwc, the 8- and 16-channel convs and the dense layer (fp32
    logits, batches > 8) launch conv_wgmma; the Makefile and CMakeLists target sm_90a."""
    monkeypatch.setenv(WGMMA_ENV, "1")
    out = tmp_path / "out"
    info, _ = generate(digits_run, out, precision="fp16", max_batch=64, arch="sm_90")
    src = (out / "network.cu").read_text()
    assert info["arch"] == "sm_90a" and '#include "kernels/conv_wgmma.cuh"' in src
    assert src.count("conv_wgmma<Elem, 64, 256, 4>(s, ") == 2 and "conv_wgmma<Elem, 64, 256, 4, float>(s, " in src
    assert "conv_wgmma_prepare<Elem, 64, 256, 4, float>();" in src and "conv_nhwc<Elem, 64, 128, 32, 8, 4>" in src
    assert "ARCH ?= sm_90a" in (out / "Makefile").read_text()
    assert "CMAKE_CUDA_ARCHITECTURES 90a" in (out / "CMakeLists.txt").read_text()
    cmd = [find_nvcc(), "-O3", "-std=c++17", "-arch=sm_90a", "-cubin", "-Xptxas", "-v", "network.cu", "-o", "net.cubin"]
    proc = subprocess.run(cmd, cwd=out, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    entry = r"conv_wgmma_kernel\S*' for 'sm_90a'\n.*?\n\s*\d+ bytes stack frame, (\d+) bytes spill stores"
    assert re.findall(entry, proc.stderr) == ["0", "0"], proc.stderr[-3000:]  # the two tiles (T and fp32 out)

"""The codegen conv column: its shared library builds with nvcc, it is absent without CUDA, and on a GPU it matches
F.conv2d; a forward-only implementation shows n/a for backward in the bench table."""

from __future__ import annotations

import ctypes

import pytest
import torch
import torch.nn.functional as F

from convforge.bench import _native_conv
from convforge.bench.conv import SMALL_SHAPES, conv_tables, run_conv_bench
from convforge.bench.conv_impls import conv_im2col, native_conv
from convforge.cudagen.build import find_nvcc
from convforge.errors import ConvforgeError


def _have_nvcc() -> bool:
    try:
        return bool(find_nvcc())
    except ConvforgeError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _have_nvcc(), reason="nvcc not installed")
def test_library_builds_for_an_explicit_arch_and_is_cached(tmp_path):
    lib = _native_conv.build_library("sm_90", folder=tmp_path)  # about 20 s of nvcc
    assert lib.is_file() and lib.parent == tmp_path and "sm_90" in lib.name
    assert hasattr(ctypes.CDLL(str(lib)), "cf_bench_conv_fp32")
    mtime = lib.stat().st_mtime_ns
    assert _native_conv.build_library("sm_90", folder=tmp_path) == lib and lib.stat().st_mtime_ns == mtime
    assert list(tmp_path.iterdir()) == [lib]  # no temporary files left behind
    if not torch.cuda.is_available():  # the launch fails without a GPU: an error code and message, not a crash
        err = ctypes.create_string_buffer(256)
        dims = (2, 8, 13, 13, 16, 3, 3, 1, 1, 1)
        assert _native_conv.load(lib).cf_bench_conv_fp32(None, None, None, None, 0, *dims, None, err, 256) == 1
        assert err.value.startswith(b"CUDA error in ")  # the first CUDA call's own message (cudaGetDevice)


def test_build_key_changes_with_arch_and_cache_follows_env(tmp_path, monkeypatch):
    assert _native_conv.source_hash("sm_90") != _native_conv.source_hash("sm_80")
    monkeypatch.setenv("CONVFORGE_CACHE", str(tmp_path))
    assert _native_conv.cache_dir() == tmp_path / "kernels"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only answer")
def test_native_conv_is_none_without_cuda():
    _native_conv.native_conv2d.cache_clear()
    assert native_conv() is None


def _fwd_only(x, w, stride=1, padding=0):
    with torch.no_grad():
        return conv_im2col(x, w, stride, padding)


_fwd_only.forward_only = True


def test_forward_only_implementation_prints_na_for_backward(monkeypatch):
    monkeypatch.setattr(
        "convforge.bench.conv.implementations", lambda dev: {"im2col": conv_im2col, "fwdonly": _fwd_only}
    )
    rows = run_conv_bench(SMALL_SHAPES[:1], (2,), ("fp32",), "cpu", log=lambda s: None)
    result = rows[0]["impls"]["fwdonly"]
    assert result["ok"] and result["fwd_ms"] > 0 and "bwd_ms" not in result
    assert rows[0]["fastest"] == "im2col"  # fastest is over forward+backward: a forward-only column cannot win
    text, md = conv_tables(rows)
    time_row = next(ln for ln in md.splitlines() if ln.startswith("| tiny.k3"))
    assert " / n/a |" in time_row


# -- GPU: `pytest -m gpu tests/bench/test_native_conv.py` ---------------------------------------------------------
GPU_CASES = [  # n, c, k, size, kernel, stride, padding, groups
    (2, 8, 16, 13, 3, 1, 1, 1),  # 3x3 s1 p1, 64x64 tiles
    (2, 4, 8, 12, 5, 1, 2, 1),  # 5x5
    (2, 3, 64, 227, 11, 4, 2, 1),  # AlexNet conv1: 11x11 s4
    (3, 32, 16, 9, 1, 1, 0, 1),  # 1x1
    (2, 8, 12, 10, 3, 1, 1, 4),  # grouped
    (2, 16, 16, 10, 3, 2, 1, 16),  # depthwise, stride 2
    (1, 512, 512, 7, 3, 1, 1, 1),  # batch 1, K = 4608: split-K
    (2, 128, 128, 96, 3, 1, 1, 1),  # 128x128 tiles (cout >= 128, >= 128*132 columns)
    (4, 256, 100, 1, 1, 1, 0, 1),  # dense layer at batch <= 8: the GEMV kernel
]


@pytest.mark.gpu
@pytest.mark.parametrize("case", GPU_CASES)
def test_codegen_conv_matches_conv2d(case):
    n, c, k, size, kernel, stride, padding, groups = case
    conv = native_conv()
    assert conv is not None, "the codegen conv kernel did not build or load (see the log)"
    gen = torch.Generator(device="cuda").manual_seed(sum(case))
    x = torch.randn(n, c, size, size, device="cuda", generator=gen)
    w = torch.randn(k, c // groups, kernel, kernel, device="cuda", generator=gen) / (c // groups * kernel**2) ** 0.5
    ref = F.conv2d(x.double(), w.double(), stride=stride, padding=padding, groups=groups)  # no TF32 in the reference
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):  # the kernel must run on the current stream, not the default one
        out = conv(x, w, stride, padding)
    side.synchronize()
    assert out.shape == ref.shape and out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, atol=1e-4, rtol=1e-4)


@pytest.mark.gpu
def test_codegen_column_in_the_bench():
    rows = run_conv_bench(SMALL_SHAPES, (2,), ("fp32", "bf16"), "cuda", impls=["codegen"], log=lambda s: None)
    for row in rows:
        result = row["impls"]["codegen"]
        if row["dtype"] == "fp32":
            assert result["ok"] and result["forward_only"] and result["error"] < 1e-4
        else:
            assert result["skipped"].startswith("fp32 only")
    _, md = conv_tables(rows)
    assert "FAIL" not in md and "skip" not in md

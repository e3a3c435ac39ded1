"""Convolution implementations match F.conv2d; the conv study writes its table on CPU with toy shapes."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from convforge.bench.conv import SMALL_SHAPES, ConvShape, bench_conv, run_conv_bench
from convforge.bench.conv_impls import conv_direct, conv_fft, conv_im2col, conv_winograd
from convforge.errors import ConfigError

CASES = [
    (2, 3, 8, 13, 3, 1, 1),
    (2, 5, 4, 12, 3, 1, 0),
    (2, 3, 6, 23, 11, 4, 2),
    (1, 4, 5, 10, 5, 1, 2),
    (2, 3, 4, 15, 7, 2, 3),
    (2, 4, 4, 9, 3, 2, 1),
    (1, 2, 3, 7, 3, 1, 1),
]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.mark.parametrize("fn", [conv_direct, conv_im2col, conv_fft, conv_winograd])
@pytest.mark.parametrize("case", CASES)
def test_matches_conv2d_fp32(fn, case):
    n, c, k, size, kernel, stride, padding = case
    if fn is conv_winograd and (kernel != 3 or stride != 1):
        pytest.skip("winograd F(2x2,3x3): 3x3 stride 1 only")
    gen = torch.Generator().manual_seed(sum(case))
    x, w = torch.randn(n, c, size, size, generator=gen), torch.randn(k, c, kernel, kernel, generator=gen)
    ref = F.conv2d(x.double(), w.double(), stride=stride, padding=padding)
    out = fn(x, w, stride, padding)
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert _rel(out, ref) < 1e-4


@pytest.mark.parametrize("fn", [conv_direct, conv_im2col, conv_fft, conv_winograd])
def test_bf16_within_bf16_error_and_gradients_flow(fn):
    x = torch.randn(2, 4, 10, 10, requires_grad=True)
    w = torch.randn(6, 4, 3, 3, requires_grad=True)
    out = fn(x.bfloat16(), w.bfloat16(), 1, 1)
    assert out.dtype == torch.bfloat16
    assert _rel(out, F.conv2d(x.bfloat16().double(), w.bfloat16().double(), padding=1)) < 3e-2
    fn(x, w, 1, 1).sum().backward()
    ref_x, ref_w = torch.autograd.grad(F.conv2d(x, w, padding=1).sum(), (x, w))
    assert _rel(x.grad, ref_x) < 1e-4 and _rel(w.grad, ref_w) < 1e-4


def test_winograd_refuses_other_kernels():
    with pytest.raises(ValueError, match="3x3"):
        conv_winograd(torch.randn(1, 1, 8, 8), torch.randn(1, 1, 5, 5))


def test_run_conv_bench_rows_on_cpu():
    shape = ConvShape("tiny", "k3", 4, 8, 10, 3, 1, 1)
    rows = run_conv_bench([shape, SMALL_SHAPES[2]], batches=(2,), dtypes=("fp32",), device="cpu", log=lambda s: None)
    assert len(rows) == 2
    row = rows[0]
    assert set(row["impls"]) == {"direct", "im2col", "fft", "winograd", "aten"}
    assert all(r["ok"] and r["error"] < 1e-4 and r["fwd_ms"] > 0 for r in row["impls"].values())
    assert row["fastest"] in row["impls"] and row["gflop"] == pytest.approx(shape.flops(2) / 1e9)
    assert rows[1]["impls"]["winograd"] == {"skipped": "3x3 stride 1 only"}


def test_bench_conv_study_files_and_errors(tmp_path):
    r = bench_conv(
        out=tmp_path / "c",
        batches=(2,),
        dtypes=("fp32", "bf16"),
        device="cpu",
        impls=("im2col", "winograd"),
        log=lambda s: None,
    )
    assert len(r.rows) == 2 * len(SMALL_SHAPES)
    assert "*" in r.text and "n/a" in r.markdown and "TFLOP/s" in r.markdown
    data = json.loads((tmp_path / "c" / "results.json").read_text())
    assert data["environment"]["torch"] and len(data["rows"]) == len(r.rows)
    assert (tmp_path / "c" / "conv.png").stat().st_size > 0
    with pytest.raises(ConfigError, match="unknown conv implementation 'cudnn-benchmark' on cpu"):
        bench_conv(out=tmp_path / "d", device="cpu", impls=("cudnn-benchmark",), log=lambda s: None)
    with pytest.raises(ConfigError, match="--dtype"):
        bench_conv(out=tmp_path / "e", device="cpu", dtypes=("fp16",), log=lambda s: None)


@pytest.mark.gpu
def test_every_cuda_implementation_checks_out(tmp_path):
    rows = run_conv_bench(SMALL_SHAPES, batches=(4,), dtypes=("fp32", "bf16"), device="cuda", log=lambda s: None)
    for row in rows:
        for name, r in row["impls"].items():
            assert r.get("ok") or "skipped" in r, (row["shape"], name, r)

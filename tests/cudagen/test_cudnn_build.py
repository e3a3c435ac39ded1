"""The cuDNN/cuBLAS backend and the TF32 precision without a GPU: generation, option checks, and one compile and
link against the cuDNN/cuBLAS of PyTorch's nvidia-* wheels (skipped where nvcc, make or those wheels are absent)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from convforge.cudagen import codegen, generate
from convforge.cudagen._random_run import make_run
from convforge.cudagen.build import cudnn_libs, find_nvcc
from convforge.errors import ConvforgeError


def _have(fn) -> bool:
    try:
        fn()
        return True
    except ConvforgeError:
        return False


@pytest.fixture(scope="module")
def resnet_run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("run") / "run", "resnet18", in_shape=(3, 32, 32))


@pytest.mark.skipif(not _have(cudnn_libs), reason="needs cuDNN/cuBLAS headers (nvidia-cudnn-cu13, nvidia-cublas)")
def test_cudnn_project_is_generated(resnet_run, tmp_path):
    info, plan = generate(resnet_run, tmp_path / "out", backend="cudnn", max_batch=32)
    src = (tmp_path / "out" / "network.cu").read_text()
    convs = [op for op in plan.ops if op.kind == "conv"]
    assert src.count("conv_cudnn(*backend_, ") == len(convs) and '#include "kernels/cudnn_ops.cuh"' in src
    assert "begin_plan(n)" in src and "cudaStreamBeginCapture" in src
    make = (tmp_path / "out" / "Makefile").read_text()
    assert "-rpath" in make and "cudnn" in make and "cublas" in make
    assert (tmp_path / "out" / "kernels" / "cudnn_ops.cuh").is_file() and info["backend"] == "cudnn"


def test_tf32_native_project_is_generated(resnet_run, tmp_path):
    generate(resnet_run, tmp_path / "out", precision="tf32", max_batch=32)
    src = (tmp_path / "out" / "network.cu").read_text()
    assert "conv_tf32(s, " in src and '#include "kernels/conv_tf32.cuh"' in src and "conv_wmma.cuh" not in src


def test_cudnn_precision_choices(resnet_run, tmp_path):
    for precision in ("fp16", "bf16"):
        with pytest.raises(ConvforgeError, match="--backend native"):
            generate(resnet_run, tmp_path / "out", backend="cudnn", precision=precision)


@pytest.mark.skipif(
    not (_have(find_nvcc) and _have(cudnn_libs) and shutil.which("make")), reason="needs nvcc, make, cuDNN/cuBLAS"
)
def test_cudnn_tf32_compiles_links_and_starts(tmp_path):
    """One build covers cudnn_ops.cuh, conv_tf32.cuh (its fallback) and every native kernel the backend reuses."""
    run = make_run(tmp_path / "run", "digits-cnn")
    out = tmp_path / "out"
    info = codegen(run, out, backend="cudnn", precision="tf32", max_batch=64, arch="sm_90", build=True)
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    ldd = subprocess.run(["ldd", info["binary"]], capture_output=True, text=True, env=env)
    assert "libcudnn.so" in ldd.stdout and "libcublas.so" in ldd.stdout and "not found" not in ldd.stdout
    proc = subprocess.run([info["binary"], "--frobnicate"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2 and "unknown option" in proc.stderr  # started: the loader found every library

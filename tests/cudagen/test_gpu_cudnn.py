"""On the GPU: the cuDNN/cuBLAS backend (fp32, tf32; fp16 and bf16 on NHWC activations) and the native TF32
tensor-core path against PyTorch.

fp32 must match within 1e-4 (probabilities) with 100% top-1 agreement, tf32/fp16/bf16 within 2e-2 and >= 99.9%,
flips on near ties aside (verify.py TIE).
Images and result records: conftest.py ($CONVFORGE_TEST_IMAGES, $CONVFORGE_CODEGEN_RESULTS).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from convforge.cudagen._random_run import ZOO_SHAPES
from convforge.cudagen.verify import compare, reference_probs, run_program

pytestmark = pytest.mark.gpu

CASES = [("digits-cnn", "fp32", "cudnn"), ("simple-cnn", "fp32", "cudnn"), ("resnet18", "fp32", "cudnn")]
CASES += [("resnet18", "tf32", "cudnn"), ("simple-cnn", "tf32", "native"), ("resnet18", "tf32", "native")]
# fp16/bf16: the NHWC layers with cuDNN convolutions and cuBLAS dense layers (cudnn_nhwc.cuh), on the nets the native
# NHWC path is checked on (test_gpu.py; bf16 alexnet is left out there for near-tied random logits, and here)
HALF_ZOO = ("mlp", "digits-cnn", "simple-cnn", "imagenette-cnn", "lenet5", "alexnet", "vgg11", "resnet18")
HALF_ZOO += ("cifar10-fast",)
CASES += [(name, "fp16", "cudnn") for name in HALF_ZOO]
CASES += [("resnet18", "bf16", "cudnn"), ("simple-cnn", "bf16", "cudnn")]
# strided stems rewritten space-to-depth (s2d.py) through cuDNN: alexnet's 11x11/4 above, and as in test_gpu.py
# folder-fast's 3x3/2 and resnet18's 7x7/2 at 224 px (one-hot random-weight probabilities: runs, keeps the top-1)
CASES += [("folder-fast", "fp16", "cudnn"), ("resnet18@224", "fp16", "cudnn"), ("resnet18@224", "bf16", "cudnn")]
# the same binaries with the stem on the native kernel (CF_CUDNN_STEM=native): s = 4 (48 channels, K = 432, its own
# packed weights with Kp = 448) and s = 2, fp16 and bf16
STEM_CASES = [("alexnet", "fp16", "cudnn"), ("folder-fast", "fp16", "cudnn"), ("resnet18@224", "bf16", "cudnn")]


@pytest.fixture(scope="module")
def projects(tmp_path_factory, build_projects):
    return build_projects(tmp_path_factory.mktemp("gpu-cudnn"), CASES, workers=len(CASES))


@pytest.mark.parametrize("case", CASES, ids=["-".join(c) for c in CASES])
def test_matches_pytorch(projects, case, check_case):
    out = check_case(projects, case)
    if case[2] == "cudnn" and case[0] != "mlp":  # (mlp: dense layers only, cuBLAS; no algorithm to choose)
        assert (out / "cudnn_algos.txt").is_file()  # the algorithm choices were cached beside the binary


def test_cudnn_small_batch_cache_and_find(projects, monkeypatch, gpu_images, record):
    """Batch 7 (cuBLAS with few rows, other algorithms), the cached choices, and the timed search (Find)."""
    run, out, err = projects[("resnet18", "fp32", "cudnn")]
    if err is not None:
        raise err
    images = gpu_images(ZOO_SHAPES["resnet18"][0])[0][:7]
    ref = reference_probs(run, images)
    first = run_program(out, images)
    again = run_program(out, images)  # reads cudnn_algos.txt
    assert compare(first, ref, "fp32")["passed"] and np.array_equal(first, again)
    (out / "cudnn_algos.txt").unlink()
    monkeypatch.setenv("CF_CUDNN_FIND", "1")
    found = run_program(out, images)
    result = compare(found, ref, "fp32")
    record(dict(model="resnet18", backend="cudnn", check="batch 7 + cache + find", **result))
    assert result["passed"] and "find" in (out / "cudnn_algos.txt").read_text().splitlines()[0]
    assert os.environ["CF_CUDNN_FIND"] == "1"


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cudnn_half_small_batch_cache_and_nchw(projects, monkeypatch, gpu_images, record, precision):
    """Batch 7 (cuBLAS with few rows, other algorithms), the cached choices (keyed by precision and layout), and
    the same binary's fp32-NCHW pass (CF_CONV_KERNELS=nchw: the native fp16/bf16 kernels)."""
    run, out, err = projects[("resnet18", precision, "cudnn")]
    if err is not None:
        raise err
    images = gpu_images(ZOO_SHAPES["resnet18"][0])[0]
    ref = reference_probs(run, images[:7])
    first = run_program(out, images[:7])
    again = run_program(out, images[:7])  # reads cudnn_algos.txt
    result = compare(first, ref, precision)
    record(dict(model="resnet18", backend="cudnn", check="batch 7 + cache", **result))
    assert result["passed"] and np.array_equal(first, again)
    assert f" {precision}-nhwc " in (out / "cudnn_algos.txt").read_text().splitlines()[0]
    monkeypatch.setenv("CF_CONV_KERNELS", "nchw")
    nchw = compare(run_program(out, images), reference_probs(run, images), precision)
    record(dict(model="resnet18", backend="cudnn", kernels="nchw", **nchw))
    assert nchw["passed"]


@pytest.mark.parametrize("case", STEM_CASES, ids=["-".join(c) for c in STEM_CASES])
def test_cudnn_stem_native_matches_pytorch(projects, case, monkeypatch, gpu_images, record, case_model):
    """CF_CUDNN_STEM=native: the same binary runs the space-to-depth stem with the native kernel and its own packed
    weights instead of cuDNN (for timing one against the other), and stays correct."""
    run, out, err = projects[case]
    if err is not None:
        raise err
    monkeypatch.setenv("CF_CUDNN_STEM", "native")
    images, source = gpu_images(case_model(case[0])[1])
    result = compare(run_program(out, images), reference_probs(run, images), case[1])
    record(dict(model=case[0], backend="cudnn", stem="native", **result, images_from=source))
    assert result["passed"]

"""The cuDNN/cuBLAS backend (fp32/tf32 NCHW, fp16/bf16 NHWC) and the TF32 precision without a GPU: generation,
option checks, packing, and compiles and links against the cuDNN/cuBLAS of PyTorch's nvidia-* wheels (skipped where
nvcc, make or those wheels are absent)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from convforge._io import read_yaml
from convforge.cudagen import codegen, generate
from convforge.cudagen._random_run import make_run
from convforge.cudagen.build import cudnn_libs, find_nvcc
from convforge.cudagen.cudnn_nhwc import plan_cudnn
from convforge.cudagen.nhwc import make_nhwc
from convforge.cudagen.plan import make_plan
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


# cuDNN convolutions (one with the residual as z, one with an activation cuDNN does not fuse), and a convolution that
# writes the fp32 logits, which keeps the native NHWC kernel (cudnn_nhwc.py)
MIXED = {
    "layers": [
        {"conv": {"filters": 8, "kernel": 3, "padding": "same", "act": "relu"}},
        {"maxpool": {"kernel": 2}},
        {"residual": {"layers": [{"conv": {"filters": 8, "kernel": 3, "padding": 1}}]}},
        {"conv": {"filters": 16, "kernel": 3, "padding": 1, "norm": "batchnorm", "act": "leaky_relu"}},
        {"conv": {"filters": 10, "kernel": 4}},
        "flatten",
        "softmax",
    ]
}


# MIXED behind alexnet's 11x11/4 stem (out: 8 x 8, as MIXED's first layer on 1 x 8 x 8); s2d map 10 x 10 of 48 channels,
# whose last padded input row (37 + 2 * 2 = 41 > 40) no output reads
MIXED_S2D = {"layers": [{"conv": {"filters": 8, "kernel": 11, "stride": 4, "padding": 2, "act": "relu"}}]}
MIXED_S2D["layers"] += MIXED["layers"][1:]


@pytest.mark.skipif(not _have(cudnn_libs), reason="needs cuDNN/cuBLAS headers (nvidia-cudnn-cu13, nvidia-cublas)")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cudnn_half_project_is_generated(resnet_run, tmp_path, precision):
    """fp16/bf16: the NHWC pass with every convolution but the 4-channel stem through cuDNN and every dense layer
    through cuBLAS; the fp32-NCHW pass of the same binary (CF_CONV_KERNELS=nchw, pre-sm_80 GPUs) keeps the native
    kernels."""
    info, plan = generate(resnet_run, tmp_path / "out", backend="cudnn", precision=precision, max_batch=32)
    src = (tmp_path / "out" / "network.cu").read_text()
    dense = [op for op in plan.ops if op.kind == "conv" and op.p["dense"]]
    convs = [op for op in plan.ops if op.kind == "conv" and not op.p["dense"]]
    assert info["layout"] == "nhwc" and list(info["native_convs"]) == [convs[0].name]
    assert src.count("conv_cudnn_nhwc<Elem>(*backend_, ") == len(convs) - 1 and src.count("conv_nhwc<Elem") == 1
    assert src.count("dense_cublas_nhwc<Elem>(*backend_, ") == len(dense) > 0
    assert '#include "kernels/cudnn_nhwc.cuh"' in src and f'init(stream_, weights_dir, "{precision}")' in src
    assert f"conv_{precision}(s, " in src and f"conv_{precision}_init();" in src and "conv_cudnn(" not in src
    assert (tmp_path / "out" / "kernels" / "cudnn_nhwc.cuh").is_file()


def test_cudnn_half_packing(tmp_path):
    """cuDNN's filters are packed with Kp = K (its NHWC filter layout has no row padding) and get a T bias of cs_out
    for the fused call; the layer writing the fp32 logits stays native with whole 32-wide k tiles; no packed tensors
    overlap."""
    run = make_run(tmp_path / "run", MIXED, in_shape=(1, 8, 8), num_classes=10)
    plan = make_plan(read_yaml(run.file("spec.yaml")), run.state_dict(), (1, 8, 8), run.output)
    nplan = plan_cudnn(make_nhwc(plan, 16)[0])
    convs = [i for i, op in enumerate(plan.ops) if op.kind == "conv"]
    assert [nplan.paths[i] for i in convs] == ["native", "cudnn", "cudnn", "native"]
    assert list(nplan.native_why) == [convs[0], convs[-1]] and "fp32 logits" in nplan.native_why[convs[-1]]
    assert "4 channels" in nplan.native_why[convs[0]] and nplan.shapes[convs[0]][2] == 4  # the 1-channel stem
    assert all(nplan.packs[i].kp == nplan.shapes[i][17] == nplan.shapes[i][18] for i in convs[1:3])
    assert all(nplan.packs[i].kp % 32 == 0 and nplan.tiles[i] for i in (convs[0], convs[-1]))
    biases = nplan.bias_packs
    assert sorted(biases) == convs[1:3] and all(b.rows == nplan.packs[i].rows for i, b in biases.items())
    assert not nplan.tiles[convs[1]]
    packs = [*nplan.packs.values(), *nplan.bias_packs.values()]
    spans = sorted((q.offset, q.offset + q.rows * q.kp) for q in packs)
    assert all(a[1] <= b[0] and b[0] % 64 == 0 for a, b in zip(spans, spans[1:])) and spans[-1][1] <= nplan.packed_elems


def test_cudnn_s2d_stem_packing(tmp_path):
    """A strided stem rewritten space-to-depth (alexnet's 11x11/4 over 3 channels -> 3x3/1 over 48) runs through
    cuDNN with Kp = K weights, and keeps one native tile with whole-k-tile weights of its own (CF_CUDNN_STEM=native);
    no packed tensors overlap."""
    layers = [{"conv": {"filters": 16, "kernel": 11, "stride": 4, "padding": 2, "act": "relu"}}, "flatten"]
    layers += [{"dense": {"units": "classes"}}, "softmax"]
    run = make_run(tmp_path / "run", {"layers": layers}, in_shape=(3, 67, 67))
    plan = make_plan(read_yaml(run.file("spec.yaml")), run.state_dict(), (3, 67, 67), run.output)
    nplan = plan_cudnn(make_nhwc(plan, 64)[0])
    assert nplan.stem == 0 and nplan.paths[0] == "cudnn" and not nplan.native_why
    assert nplan.packs[0].kp == nplan.shapes[0][17] == nplan.shapes[0][18] == 3 * 3 * 48
    assert nplan.stem_native.kp == 448 and nplan.packs[0].weight == nplan.stem_native.weight == "layers.0.weight.s2d"
    assert len(nplan.tiles[0]) == 1 and nplan.tiles[0][0].min_n == 1 and 0 in nplan.bias_packs
    packs = [*nplan.packs.values(), *nplan.bias_packs.values(), nplan.stem_native]
    spans = sorted((q.offset, q.offset + q.rows * q.kp) for q in packs)
    assert all(a[1] <= b[0] and b[0] % 64 == 0 for a, b in zip(spans, spans[1:])) and spans[-1][1] <= nplan.packed_elems


def test_cudnn_precision_choices(tmp_path):
    """fp16/bf16 need the NHWC layout: a network it cannot express is refused, naming the layer and the way out."""
    layers = [{"conv": {"filters": 5, "kernel": 3}}, "flatten", "batchnorm", {"dense": {"units": 3}}, "softmax"]
    run = make_run(tmp_path / "run", {"layers": layers}, in_shape=(1, 8, 8), num_classes=3)
    for precision in ("fp16", "bf16"):
        with pytest.raises(ConvforgeError, match=r"cannot use \(layers\.2.*--backend native"):
            generate(run, tmp_path / "out", backend="cudnn", precision=precision)


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


@pytest.mark.skipif(
    not (_have(find_nvcc) and _have(cudnn_libs) and shutil.which("make")), reason="needs nvcc, make, cuDNN/cuBLAS"
)
@pytest.mark.parametrize("precision, model", [("fp16", "mixed"), ("bf16", "digits-cnn")])
def test_cudnn_half_compiles_links_and_starts(tmp_path, precision, model):
    """cudnn_nhwc.cuh with cuDNN convolutions (fused and not), cuBLAS dense layers (fp16: the MIXED net's native
    fallback instead), the NHWC kernels and the native fp32-NCHW pass, in one binary each. fp16: MIXED behind
    alexnet's 11x11/4 stem, rewritten space-to-depth, through cuDNN or (CF_CUDNN_STEM=native) the native kernel;
    bf16: a 1-channel stride-1 stem, native with 8-byte gathers."""
    spec, in_shape = (MIXED_S2D, (3, 37, 37)) if model == "mixed" else (model, (1, 28, 28))
    run = make_run(tmp_path / "run", spec, in_shape=in_shape)
    info = codegen(run, tmp_path / "out", backend="cudnn", precision=precision, max_batch=64, arch="sm_90", build=True)
    if model == "mixed":
        src = (tmp_path / "out" / "network.cu").read_text()
        assert "nchw_to_s2d(s, in_" in src and "if (cudnn_stem_native())" in src and "s2d_stem" in info
        assert ["fp32 logits" in why for why in info["native_convs"].values()] == [True]
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    proc = subprocess.run([info["binary"], "--frobnicate"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2 and "unknown option" in proc.stderr

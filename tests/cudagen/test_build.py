"""Generate a small model and compile it with nvcc (no GPU needed); the program's own input/weights checks."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

from convforge.cudagen import codegen
from convforge.cudagen._random_run import make_run
from convforge.cudagen.build import find_nvcc

pytestmark = pytest.mark.skipif(
    find_nvcc(required=False) is None or shutil.which("make") is None, reason="needs nvcc and make"
)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """digits-cnn in fp16: compiles the NHWC kernels (4- and 8-channel gathers, GEMV), the mma.sync, legacy WMMA
    and fp32 kernels, all element-wise and pooling kernels of both layouts."""
    root = tmp_path_factory.mktemp("cg")
    run = make_run(root / "run", "digits-cnn")
    info = codegen(run, root / "out", precision="fp16", max_batch=64, arch="sm_90", build=True)
    return root / "out", info


def _run(binary, *args):
    return subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True, timeout=60)


def test_compiles(project):
    out, info = project
    assert (out / "classify").is_file() and info["binary"].endswith("classify")


def test_new_and_legacy_conv_kernels_ship(project):
    """The NHWC fp16 pass (the default), the fp32-NCHW pipelined kernels (CF_CONV_KERNELS=nchw) and the legacy ones
    (CF_CONV_KERNELS=legacy) are all in the project; shared memory is configured and weights are packed in the
    constructor, before any CUDA graph is captured."""
    out, info = project
    names = ("common.cuh", "igemm.cuh", "conv_ffma.cuh", "conv_mma.cuh", "conv_wmma.cuh", "conv_fp32.cuh")
    for name in (*names, "conv_nhwc.cuh", "nhwc_ops.cuh"):
        assert (out / "kernels" / name).is_file()
    src = (out / "network.cu").read_text()
    enqueue = src.index("void Network::enqueue")
    assert src.index("conv_fp16_init();") < enqueue and src.index("conv_nhwc_prepare<") < enqueue
    assert src.index("repack_weights(") < enqueue and "if (nhwc_) {\n    enqueue_nhwc(n);" in src
    assert info["layout"] == "nhwc"
    common = (out / "kernels" / "common.cuh").read_text()
    assert '"legacy"' in common and '"nchw"' in common


def test_wrong_size_input_is_one_line_error(project, tmp_path):
    out, _ = project
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 32, 32), np.uint8))
    proc = _run(out / "classify", tmp_path / "x.npy")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "1x28x28" in proc.stderr
    (tmp_path / "x.pgm").write_bytes(b"P5\n32 32\n255\n" + bytes(32 * 32))
    proc = _run(out / "classify", tmp_path / "x.pgm")
    assert proc.returncode == 1 and "resize" in proc.stderr and proc.stderr.count("\n") == 1


def test_truncated_or_corrupt_weights_are_refused(project, tmp_path):
    out, _ = project
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 28, 28), np.uint8))
    data = (out / "weights.bin").read_bytes()
    shutil.copy(out / "weights.json", tmp_path / "weights.json")
    (tmp_path / "weights.bin").write_bytes(data[:-100])
    proc = _run(out / "classify", "--weights", tmp_path, tmp_path / "x.npy")
    assert proc.returncode == 1 and "truncated" in proc.stderr and proc.stderr.count("\n") == 1
    (tmp_path / "weights.bin").write_bytes(data[:50] + bytes([data[50] ^ 1]) + data[51:])
    proc = _run(out / "classify", "--weights", tmp_path, tmp_path / "x.npy")
    assert proc.returncode == 1 and "corrupt" in proc.stderr


def test_bad_command_line(project):
    out, _ = project
    proc = _run(out / "classify", "--frobnicate")
    assert proc.returncode == 2 and "unknown option" in proc.stderr
    proc = _run(out / "classify", "--bench-layers", "32,0")
    assert proc.returncode == 2 and "positive batch sizes" in proc.stderr


def test_layer_table_matches_launches(project):
    """--bench-layers names one entry per event: the input conversion, then each launch of enqueue_nhwc."""
    out, info = project
    src = (out / "network.cu").read_text()
    table = src[src.index("kNhwcLayers[] = {") : src.index("};", src.index("kNhwcLayers[] = {"))]
    body = src[src.index("void Network::enqueue_nhwc") : src.index("void Network::mark_layer")]
    assert table.count("\n  { ") == body.count("mark_layer();") == info["kernels"] + 1


# resnet18's 7x7/2 stem in a small net; fp16 rewrites it space-to-depth (s2d.py). alexnet's 11x11/4 is built through
# cuDNN in test_cudnn_build.py; both stems on both backends are checked index by index in test_nhwc.py.
RESNET_LIKE = [{"conv": {"filters": 16, "kernel": 7, "stride": 2, "padding": 3, "bias": False, "norm": "batchnorm"}}]
RESNET_LIKE += ["relu", {"maxpool": {"kernel": 3, "stride": 2, "padding": 1}}]
RESNET_LIKE += [{"residual": {"layers": [{"conv": {"filters": 16, "kernel": 3, "padding": 1}}], "act": "relu"}}]
RESNET_LIKE += ["global_avgpool", {"dense": {"units": "classes"}}, "softmax"]


def test_s2d_stem_compiles_and_starts(tmp_path):
    """The input conversion into the space-to-depth map and the rewritten stem (16-byte gathers, no 4-channel
    kernel left) compile with the rest of an fp16 network, and the program starts."""
    run = make_run(tmp_path / "run", {"layers": RESNET_LIKE}, in_shape=(3, 32, 32))
    info = codegen(run, tmp_path / "out", precision="fp16", max_batch=64, arch="sm_90", build=True)
    src = (tmp_path / "out" / "network.cu").read_text()
    assert "nchw_to_s2d(s, in_" in src and not re.search(r"conv_nhwc<Elem(, \d+){4}, 4>", src)
    assert info["s2d_stem"].startswith("layers.0: 7x7/2 over 3 channels -> 4x4/1 over 12 (16 a pixel")
    proc = _run(info["binary"], "--frobnicate")
    assert proc.returncode == 2 and "unknown option" in proc.stderr

"""On the GPU: every zoo model's generated program against PyTorch (fp32, fp16, bf16), memcheck, multi-GPU.

Real images come from $CONVFORGE_TEST_IMAGES (mnist.npy, rgb32.npy, rgb64.npy, rgb224.npy: uint8 N x C x H x W);
without them, synthetic images. Results are appended as JSON lines to $CONVFORGE_CODEGEN_RESULTS when set.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from convforge.cudagen import codegen
from convforge.cudagen._random_run import ZOO_SHAPES, make_run
from convforge.cudagen.verify import memcheck, run_program, synthetic_images, verify_project
from convforge.models import MODELS

pytestmark = pytest.mark.gpu

CASES = [(name, "fp32", "native") for name in MODELS.names()]
CASES += [("digits-cnn", "fp16", "native"), ("resnet18", "fp16", "native"), ("resnet18", "bf16", "native")]
CASES += [("simple-cnn", "bf16", "native"), ("alexnet", "fp16", "native")]


def _images(in_shape) -> tuple[np.ndarray, str]:
    root = os.environ.get("CONVFORGE_TEST_IMAGES")
    c, h, w = in_shape
    name = "mnist.npy" if c == 1 else f"rgb{h}.npy"
    if root and (Path(root) / name).is_file() and (c > 1 or h == 28):
        return np.load(Path(root) / name), name
    if root and c == 1 and (Path(root) / "mnist.npy").is_file():  # lenet5: pad 28 -> 32
        m = np.load(Path(root) / "mnist.npy")
        pad = (h - 28) // 2
        return np.pad(m, ((0, 0), (0, 0), (pad, h - 28 - pad), (pad, w - 28 - pad))), "mnist.npy padded"
    return synthetic_images(in_shape, 256), "synthetic"


def _record(row: dict) -> None:
    path = os.environ.get("CONVFORGE_CODEGEN_RESULTS")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")


@pytest.fixture(scope="module")
def projects(tmp_path_factory):
    """Generate and build every case in parallel (the compiles dominate)."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    root = tmp_path_factory.mktemp("gpu")

    def one(case):
        name, precision, backend = case
        in_shape, classes = ZOO_SHAPES[name]
        run = make_run(root / f"run-{name}", name, in_shape=in_shape, num_classes=classes) if backend == "native" \
            and precision == "fp32" else None  # fmt: skip
        return case, run

    runs = dict(one(c) for c in CASES if c[1] == "fp32" and c[2] == "native")
    for name, precision, backend in CASES:
        runs.setdefault((name, precision, backend), runs[(name, "fp32", "native")])

    def build(case):
        name, precision, backend = case
        out = root / f"out-{name}-{precision}-{backend}"
        try:
            codegen(runs[case], out, backend=backend, precision=precision, max_batch=256, build=True)
            return case, (runs[case], out, None)
        except Exception as e:  # noqa: BLE001  (reported by the test of that case)
            return case, (runs[case], out, e)

    with ThreadPoolExecutor(8) as pool:
        return dict(pool.map(build, CASES))


@pytest.mark.parametrize("case", CASES, ids=["-".join(c) for c in CASES])
def test_matches_pytorch(projects, case):
    run, out, err = projects[case]
    if err is not None:
        raise err
    images, source = _images(ZOO_SHAPES[case[0]][0])
    result = verify_project(run, out, case[1], images=images)
    _record(dict(model=case[0], backend=case[2], **result, images_from=source))


@pytest.mark.parametrize("case", [("digits-cnn", "fp32", "native"), ("resnet18", "fp16", "native")])
def test_memcheck_clean(projects, case):
    run, out, err = projects[case]
    if err is not None:
        raise err
    images, _ = _images(ZOO_SHAPES[case[0]][0])
    result = memcheck(out, images[:4])
    _record(dict(model=case[0], precision=case[1], memcheck=result))
    assert result["clean"], result["summary"]


def test_multi_gpu_split_matches_one_gpu(projects):
    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 GPUs")
    _, out, _ = projects[("resnet18", "fp32", "native")]
    images, _ = _images(ZOO_SHAPES["resnet18"][0])
    one, two = run_program(out, images[:64]), run_program(out, images[:64], ["--gpus", "2"])
    assert np.abs(one - two).max() < 1e-6


@pytest.mark.parametrize(
    "case", [c for c in CASES if c[0] in ("digits-cnn", "alexnet", "resnet18")], ids=lambda c: "-".join(c)
)
def test_bench_runs(projects, case):
    from convforge.cudagen.bench import bench_project

    run, out, err = projects[case]
    if err is not None:
        raise err
    for row in bench_project(out, iters=100):
        _record(dict(bench=True, backend_case=case[2], **row))

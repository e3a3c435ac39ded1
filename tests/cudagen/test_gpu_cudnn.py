"""On the GPU: the cuDNN/cuBLAS backend (fp32 and tf32) and the native TF32 tensor-core path against PyTorch.

fp32 must match within 1e-4 (probabilities) with 100% top-1 agreement, tf32 within 2e-2 and >= 99.9% (verify.py).
Real images come from $CONVFORGE_TEST_IMAGES (as in test_gpu.py); results are appended to
$CONVFORGE_CODEGEN_RESULTS when set.
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
from convforge.cudagen.verify import compare, reference_probs, run_program, synthetic_images, verify_project


def _images(in_shape) -> tuple[np.ndarray, str]:  # as in test_gpu.py (lenet5's padding is not needed here)
    root = os.environ.get("CONVFORGE_TEST_IMAGES")
    c, h, _ = in_shape
    name = "mnist.npy" if c == 1 else f"rgb{h}.npy"
    if root and (Path(root) / name).is_file():
        return np.load(Path(root) / name), name
    return synthetic_images(in_shape, 256), "synthetic"


def _record(row: dict) -> None:
    path = os.environ.get("CONVFORGE_CODEGEN_RESULTS")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")


pytestmark = pytest.mark.gpu

CASES = [("digits-cnn", "fp32", "cudnn"), ("simple-cnn", "fp32", "cudnn"), ("resnet18", "fp32", "cudnn")]
CASES += [("resnet18", "tf32", "cudnn"), ("simple-cnn", "tf32", "native"), ("resnet18", "tf32", "native")]


@pytest.fixture(scope="module")
def projects(tmp_path_factory):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    root = tmp_path_factory.mktemp("gpu-cudnn")
    runs = {}
    for name in sorted({c[0] for c in CASES}):
        in_shape, classes = ZOO_SHAPES[name]
        runs[name] = make_run(root / f"run-{name}", name, in_shape=in_shape, num_classes=classes)

    def build(case):
        name, precision, backend = case
        out = root / f"out-{name}-{precision}-{backend}"
        try:
            codegen(runs[name], out, backend=backend, precision=precision, max_batch=256, build=True)
            return case, (runs[name], out, None)
        except Exception as e:  # noqa: BLE001  (reported by the test of that case)
            return case, (runs[name], out, e)

    with ThreadPoolExecutor(len(CASES)) as pool:
        return dict(pool.map(build, CASES))


@pytest.mark.parametrize("case", CASES, ids=["-".join(c) for c in CASES])
def test_matches_pytorch(projects, case):
    run, out, err = projects[case]
    if err is not None:
        raise err
    images, source = _images(ZOO_SHAPES[case[0]][0])
    result = verify_project(run, out, case[1], images=images)
    _record(dict(model=case[0], backend=case[2], **result, images_from=source))
    if case[2] == "cudnn":
        assert (out / "cudnn_algos.txt").is_file()  # the algorithm choices were cached beside the binary


def test_cudnn_small_batch_cache_and_find(projects, monkeypatch):
    """Batch 7 (cuBLAS with few rows, other algorithms), the cached choices, and the timed search (Find)."""
    run, out, err = projects[("resnet18", "fp32", "cudnn")]
    if err is not None:
        raise err
    images = _images(ZOO_SHAPES["resnet18"][0])[0][:7]
    ref = reference_probs(run, images)
    first = run_program(out, images)
    again = run_program(out, images)  # reads cudnn_algos.txt
    assert compare(first, ref, "fp32")["passed"] and np.array_equal(first, again)
    (out / "cudnn_algos.txt").unlink()
    monkeypatch.setenv("CF_CUDNN_FIND", "1")
    found = run_program(out, images)
    result = compare(found, ref, "fp32")
    _record(dict(model="resnet18", backend="cudnn", check="batch 7 + cache + find", **result))
    assert result["passed"] and "find" in (out / "cudnn_algos.txt").read_text().splitlines()[0]
    assert os.environ["CF_CUDNN_FIND"] == "1"

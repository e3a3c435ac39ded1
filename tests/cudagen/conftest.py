"""Helpers shared by the GPU tests of generated programs (test_gpu.py, test_gpu_cudnn.py), as session fixtures
(tests import no sibling modules under --import-mode=importlib).

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
from convforge.cudagen.verify import synthetic_images, verify_project


def _images(in_shape) -> tuple[np.ndarray, str]:
    """Test images for a model input shape, and where they came from (lenet5's 32 px: MNIST padded)."""
    root = os.environ.get("CONVFORGE_TEST_IMAGES")
    c, h, w = in_shape
    name = "mnist.npy" if c == 1 else f"rgb{h}.npy"
    if root and (Path(root) / name).is_file() and (c > 1 or h == 28):
        return np.load(Path(root) / name), name
    if root and c == 1 and (Path(root) / "mnist.npy").is_file():
        m = np.load(Path(root) / "mnist.npy")
        pad = (h - 28) // 2
        return np.pad(m, ((0, 0), (0, 0), (pad, h - 28 - pad), (pad, w - 28 - pad))), "mnist.npy padded"
    return synthetic_images(in_shape, 256), "synthetic"


def _model(name: str) -> tuple[str, tuple[int, int, int], int]:
    """A case's zoo network, input shape and classes: NAME at its ZOO_SHAPES size, or NAME@PX at PX x PX pixels
    (resnet18@224: the ImageNet variant, whose 7x7/2 stem is rewritten space-to-depth on the fp16/bf16 paths)."""
    spec, _, px = name.partition("@")
    (c, h, w), classes = ZOO_SHAPES[spec]
    return spec, ((c, int(px), int(px)) if px else (c, h, w)), classes


def _record(row: dict) -> None:
    path = os.environ.get("CONVFORGE_CODEGEN_RESULTS")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")


def _build(root: Path, cases, workers: int | None = None) -> dict:
    """Generate and build every (model, precision, backend) case in parallel (the compiles dominate; one nvcc of
    network.cu per project does most of the work, so one project per core); every case of a model shares one
    seeded random-weight Run. Returns {case: (run, project folder, exception or None)}; a failed build is reported
    by that case's test."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    runs = {}
    for name in sorted({c[0] for c in cases}):
        spec, in_shape, classes = _model(name)
        runs[name] = make_run(root / f"run-{name}", spec, in_shape=in_shape, num_classes=classes)

    def one(case):
        name, precision, backend = case
        out = root / f"out-{name}-{precision}-{backend}"
        try:
            codegen(runs[name], out, backend=backend, precision=precision, max_batch=256, build=True)
            return case, (runs[name], out, None)
        except Exception as e:  # noqa: BLE001  (reported by the test of that case)
            return case, (runs[name], out, e)

    with ThreadPoolExecutor(workers or max(8, os.cpu_count() or 8)) as pool:
        return dict(pool.map(one, cases))


@pytest.fixture(scope="session")
def gpu_images():
    """gpu_images(in_shape) -> (uint8 N x C x H x W, source name)."""
    return _images


@pytest.fixture(scope="session")
def record():
    """record(row): append one JSON line to $CONVFORGE_CODEGEN_RESULTS (no-op when unset)."""
    return _record


@pytest.fixture(scope="session")
def build_projects():
    """build_projects(root, cases, workers=None) -> {case: (run, out, error)}; skips the test without a GPU."""
    return _build


def _check(projects: dict, case) -> Path:
    """Verify one built (model, precision, backend) case against PyTorch on test images; record it; its folder."""
    run, out, err = projects[case]
    if err is not None:
        raise err
    images, source = _images(_model(case[0])[1])
    result = verify_project(run, out, case[1], images=images)
    _record(dict(model=case[0], backend=case[2], **result, images_from=source))
    return out


@pytest.fixture(scope="session")
def case_model():
    """case_model(name) -> (zoo network, input shape, classes) of a case's model name (NAME or NAME@PX)."""
    return _model


@pytest.fixture(scope="session")
def check_case():
    """check_case(projects, case) -> project folder: the generated program matches PyTorch (verify_project)."""
    return _check

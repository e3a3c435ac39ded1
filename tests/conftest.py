"""Shared fixtures: tiny generated image folders and a trained digits Run (trained once per session)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"

# Without a GPU, convforge's Triton kernels are tested through Triton's CPU interpreter, which must be chosen before
# anything imports triton (its standard-library functions are made at import). A GPU machine compiles them instead.
if "TRITON_INTERPRET" not in os.environ and not Path("/dev/nvidiactl").exists():
    os.environ["TRITON_INTERPRET"] = "1"


@pytest.fixture
def triton_interpreter():
    """Run convforge's Triton kernels on CPU tensors (skipped where the interpreter was not chosen at start-up)."""
    pytest.importorskip("triton")
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("Triton kernels compile for the GPU here; the interpreter tests run without one")
    from convforge.engine import augment, cross_entropy
    from convforge.engine import kernels as engine_kernels
    from convforge.models import _kernels

    def forget() -> None:  # kernels made before (e.g. compiled) are made again, interpreted
        for cached in (_kernels._kernels, engine_kernels._adam_kernel, cross_entropy._forward_kernel, augment._kernel):
            cached.cache_clear()

    forget()
    yield
    forget()


@pytest.fixture
def fresh_python():
    """Run Python code in a fresh interpreter (what a process imports at its first use of something), returning its
    stripped standard output; a failure shows its error."""

    def run(code: str) -> str:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.strip()

    return run


def make_folder(root: Path, classes=("circle", "square"), per_class: int = 20, size: int = 16, seed: int = 0) -> Path:
    """Class folders of simple synthetic shapes that a small CNN can learn in a few epochs."""
    rng = np.random.default_rng(seed)
    for ci, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = rng.integers(0, 40, (size, size, 3), dtype=np.uint8)
            lo, hi = size // 4, 3 * size // 4
            if ci % 2 == 0:
                img[lo:hi, lo:hi] = [220, 40, 40]
            else:
                img[:, lo:hi] = [40, 40, 220]
            if ci >= 2:
                img = img[:, ::-1]
            Image.fromarray(np.ascontiguousarray(img)).save(root / name / f"{i:03d}.png")
    return root


@pytest.fixture
def shapes_folder(tmp_path: Path) -> Path:
    return make_folder(tmp_path / "shapes")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory, cache_dir):
    """A digits-cnn Run trained for a few epochs on CPU, shared by evaluate/predict/codegen tests."""
    import convforge

    out = tmp_path_factory.mktemp("runs") / "digits"
    result = convforge.train(
        "digits", epochs=6, out=str(out), cache_dir=str(cache_dir), device="cpu", progress=False, log=lambda s: None
    )
    return result

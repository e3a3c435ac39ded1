"""On the GPU (sm_90: H100/H200): conv_wgmma.cuh (CF_NHWC_WGMMA, nhwc.py) on every 8-channel-aligned layer, each
tile of WGMMA_TILES forced, against PyTorch and under memcheck; resnet18 bf16 with the automatic choice. resnet18,
simple-cnn and lenet5 as in test_gpu_tiles.py (Kp % 64 == 32, output channels that fill no tile, split-K, dense
layers with fp32 logits). Images and result records: conftest.py.

    CONVFORGE_TEST_IMAGES=$PWD/.cgdata PYTHONPATH=src python3 -m pytest -m gpu tests/cudagen/test_gpu_wgmma.py -q
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from convforge.cudagen import generate
from convforge.cudagen._random_run import ZOO_SHAPES, make_run
from convforge.cudagen.build import build_project
from convforge.cudagen.nhwc import WGMMA_ENV, WGMMA_TILES
from convforge.cudagen.verify import memcheck, verify_project

pytestmark = pytest.mark.gpu

MODELS = ("resnet18", "simple-cnn", "lenet5")
CASES = [(model, tile, "fp16") for tile in WGMMA_TILES for model in MODELS] + [("resnet18", "1", "bf16")]


@pytest.fixture(scope="module")
def projects(tmp_path_factory):
    """{case: project folder or the build's exception}; generated one at a time (the variable is read from the
    process environment), built in threads."""
    if not torch.cuda.is_available() or torch.cuda.get_device_capability(0) != (9, 0):
        pytest.skip("needs an sm_90 GPU (H100/H200)")
    root = tmp_path_factory.mktemp("wgmma")
    runs = {m: make_run(root / f"run-{m}", m, in_shape=ZOO_SHAPES[m][0], num_classes=ZOO_SHAPES[m][1]) for m in MODELS}
    for model, tile, precision in CASES:
        with pytest.MonkeyPatch.context() as env:
            env.setenv(WGMMA_ENV, tile)
            generate(runs[model], root / "-".join((model, tile, precision)), precision=precision, max_batch=256)

    def build(case):
        try:
            return case, build_project(root / "-".join(case)).parent
        except Exception as e:  # noqa: BLE001  (reported by that case's test)
            return case, e

    with ThreadPoolExecutor(max(8, os.cpu_count() or 8)) as pool:
        return runs, dict(pool.map(build, CASES))


def _project(projects, case):
    runs, built = projects
    out = built[case]
    if isinstance(out, Exception):
        raise out
    src = (out / "network.cu").read_text()
    tile = WGMMA_TILES.get(case[1])
    assert ("conv_wgmma<Elem, {}, {}, {}".format(*tile) if tile else "conv_wgmma<Elem, ") in src
    return runs[case[0]], out


@pytest.mark.parametrize("case", CASES, ids=["-".join(c) for c in CASES])
def test_wgmma_matches_pytorch(projects, case, gpu_images, record):
    run, out = _project(projects, case)
    images, source = gpu_images(ZOO_SHAPES[case[0]][0])
    result = verify_project(run, out, case[2], images=images)
    record(dict(model=case[0], tile=f"wgmma {case[1]}", **result, images_from=source))


@pytest.mark.parametrize("tile", list(WGMMA_TILES))
def test_wgmma_memcheck_clean(projects, tile, gpu_images, record):
    _, out = _project(projects, ("lenet5", tile, "fp16"))
    images, _ = gpu_images(ZOO_SHAPES["lenet5"][0])
    result = memcheck(out, images[:4])
    record(dict(model="lenet5", tile=f"wgmma {tile}", memcheck=result))
    assert result["clean"], result["summary"]


def test_a_rebuild_for_another_arch_stops_with_what_to_do(projects, tmp_path):
    """The project rebuilt with make ARCH=sm_80 (its PTX JIT-compiled on this Hopper GPU: the wgmma kernels are
    traps there) refuses at start-up with the fix, instead of trapping in a layer."""
    import shutil
    import subprocess

    from convforge.cudagen.build import find_nvcc

    _, out = _project(projects, ("lenet5", "128x128s3", "fp16"))
    copy = tmp_path / "sm80"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("classify", "*.o"))
    make = subprocess.run(["make", "-B", "-j4", f"NVCC={find_nvcc()}", "ARCH=sm_80"], cwd=copy, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert make.returncode == 0, make.stderr[-2000:]
    proc = subprocess.run([str(copy / "classify"), "--weights", str(copy), "--bench", "4", "--iters", "2"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode != 0 and "regenerate it with CF_NHWC_WGMMA=0" in proc.stderr, proc.stderr[-2000:]

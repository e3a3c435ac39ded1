"""On the GPU: each conv_nhwc.cuh tile that choose_tiles does not pick yet, forced on every 8-channel-aligned layer
(CF_NHWC_TILE, nhwc.py), against PyTorch and under memcheck. resnet18 at 224 px; simple-cnn and lenet5 for packed
k lengths with Kp % 64 == 32 (the half last slice of BK 64), output channels that fill no tile, split-K and dense
layers. Images and result records: conftest.py.

    CONVFORGE_TEST_IMAGES=$PWD/.cgdata PYTHONPATH=src python3 -m pytest -m gpu tests/cudagen/test_gpu_tiles.py -q
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from convforge.cudagen import generate
from convforge.cudagen._random_run import ZOO_SHAPES, make_run
from convforge.cudagen.build import build_project
from convforge.cudagen.nhwc import AUTO_TILES, TILE_ENV, TILES, tile_name
from convforge.cudagen.verify import memcheck, verify_project

pytestmark = pytest.mark.gpu

NEW_TILES = [tile_name(t) for t in TILES if t not in AUTO_TILES]
MODELS = ("resnet18", "simple-cnn", "lenet5")
CASES = [(model, tile) for tile in NEW_TILES for model in MODELS]


@pytest.fixture(scope="module")
def projects(tmp_path_factory):
    """{(model, tile): project folder or the build's exception}. Generated one at a time (the variable is read from
    the process environment), built in threads."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    root = tmp_path_factory.mktemp("tiles")
    runs = {m: make_run(root / f"run-{m}", m, in_shape=ZOO_SHAPES[m][0], num_classes=ZOO_SHAPES[m][1]) for m in MODELS}
    for model, tile in CASES:
        with pytest.MonkeyPatch.context() as env:
            env.setenv(TILE_ENV, tile)
            generate(runs[model], root / f"{model}-{tile}", precision="fp16", max_batch=256)

    def build(case):
        try:
            return case, build_project(root / f"{case[0]}-{case[1]}").parent
        except Exception as e:  # noqa: BLE001  (reported by that case's test)
            return case, e

    with ThreadPoolExecutor(max(8, os.cpu_count() or 8)) as pool:
        return runs, dict(pool.map(build, CASES))


def _project(projects, model: str, tile: str):
    runs, built = projects
    out = built[(model, tile)]
    if isinstance(out, Exception):
        raise out
    bm, bn, bk, warps = next(t for t in TILES if tile_name(t) == tile)
    assert f"conv_nhwc<Elem, {bm}, {bn}, {bk}, {warps}, 8" in (out / "network.cu").read_text()
    return runs[model], out


@pytest.mark.parametrize("model, tile", CASES, ids=[f"{m}-{t}" for m, t in CASES])
def test_forced_tile_matches_pytorch(projects, model, tile, gpu_images, record):
    run, out = _project(projects, model, tile)
    images, source = gpu_images(ZOO_SHAPES[model][0])
    result = verify_project(run, out, "fp16", images=images)
    record(dict(model=model, tile=tile, **result, images_from=source))


@pytest.mark.parametrize("tile", NEW_TILES)
def test_forced_tile_memcheck_clean(projects, tile, gpu_images, record):
    _, out = _project(projects, "lenet5", tile)
    images, _ = gpu_images(ZOO_SHAPES["lenet5"][0])
    result = memcheck(out, images[:4])
    record(dict(model="lenet5", tile=tile, memcheck=result))
    assert result["clean"], result["summary"]

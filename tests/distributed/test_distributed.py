"""Several CPU processes (gloo) through the real launcher: data and hybrid parallel equal one process, resume with
another process count, and a dead or hung rank ends the job with one clear line."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

import convforge
from convforge.engine import distributed
from convforge.engine.config import TrainConfig
from convforge.errors import ConfigError, ConvforgeError
from convforge.run import Run, load_safetensors


def make_folder(root: Path, per_class: int, size: int) -> Path:
    """Two classes a small CNN tells apart: a red square or a blue bar on dark noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for ci, name in enumerate(("square", "bar")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 40, (size, size, 3), dtype=np.uint8)
            lo, hi = size // 4, 3 * size // 4
            (img[lo:hi, lo:hi] if ci == 0 else img[:, lo:hi])[:] = [220, 40, 40] if ci == 0 else [40, 40, 220]
            Image.fromarray(img).save(root / name / f"{i:03d}.png")
    return root


def quiet(**kw):
    return dict(progress=False, log=lambda s: None, device="cpu", **kw)


def assert_same(a: dict, b: dict, atol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].shape == b[k].shape, k
        assert torch.allclose(a[k].float(), b[k].float(), atol=atol, rtol=1e-4), (k, (a[k] - b[k]).abs().max())


def checkpoint_model(run_dir: Path) -> dict:
    tensors, _ = load_safetensors(Path(run_dir) / "checkpoints" / "last.safetensors")
    return {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}


def reference(source: Path, out: Path, **kw) -> tuple[dict, dict]:
    """One process, 2 epochs of one step each: the weights after the first and the second step."""
    after_first = {}

    def grab(row):
        if row["epoch"] == 1:
            after_first.update(checkpoint_model(out))

    result = convforge.train(str(source), out=str(out), epochs=2, on_epoch=grab, **kw)
    return after_first, result.run.state_dict()


# 24 training images (16 per class, split 0.75/0.125/0.125): one global batch of 24 splits evenly over 2 and 3
SPLIT = (0.75, 0.125, 0.125)


@pytest.fixture(scope="module")
def lenet(tmp_path_factory, cache_dir):
    root = tmp_path_factory.mktemp("dp")
    source = make_folder(root / "shapes", per_class=16, size=16)
    kw = quiet(model="lenet5", solver="sgdm", lr=0.05, schedule="constant", batch_size=24, split=SPLIT)
    kw["cache_dir"] = str(cache_dir)
    first, second = reference(source, root / "one", **kw)
    two = convforge.train(str(source), out=str(root / "two"), epochs=1, procs=2, **kw)
    return dict(source=source, root=root, kw=kw, first=first, second=second, two=two)


def test_two_processes_equal_one_process_on_the_concatenated_batch(lenet):
    assert_same(lenet["two"].run.state_dict(), lenet["first"])
    assert len(lenet["two"].history) == 1
    assert set(Run.open(lenet["two"].run.path).state_dict()) == set(lenet["first"])  # plain SpecNet keys


def test_resume_with_three_processes_continues_exactly(lenet):
    resumed = convforge.train(resume=lenet["two"].run.path, epochs=2, procs=3, progress=False, log=lambda s: None)
    assert [row["epoch"] for row in resumed.history] == [1, 2]
    assert_same(resumed.run.state_dict(), lenet["second"])  # a 3-process step from the 2-process checkpoint


def test_hybrid_equals_one_device_on_alexnet_cifar(tmp_path, cache_dir):
    from convforge._io import write_yaml
    from convforge.models.zoo import zoo_spec

    spec = tmp_path / "alexnet-cifar.yaml"  # dropout 0: the same masks cannot be drawn on one and on two devices
    write_yaml(spec, {"name": "alexnet-cifar", **zoo_spec("alexnet", (3, 32, 32), 2, dropout=0.0)})
    source = make_folder(tmp_path / "shapes", per_class=8, size=32)  # 12 training images
    kw = quiet(model=str(spec), solver="sgdm", lr=0.01, schedule="constant", batch_size=12, split=SPLIT)
    kw["cache_dir"] = str(cache_dir)
    first, second = reference(source, tmp_path / "one", **kw)
    two = convforge.train(str(source), out=str(tmp_path / "two"), epochs=1, procs=2, parallel="hybrid", **kw)
    assert_same(two.run.state_dict(), first)  # full, unsplit weights under the SpecNet keys
    model = Run.open(two.run.path).load_model()  # what evaluate/predict/codegen read
    assert model.layers[15].weight.shape == (4096, 2304)
    # 3 ranks split 4096 and 2 units unevenly; the momentum buffers of the slices come from the checkpoint
    three = convforge.train(
        resume=two.run.path, epochs=2, procs=3, parallel="hybrid", progress=False, log=lambda s: None
    )
    assert_same(three.run.state_dict(), second)


@pytest.mark.parametrize("parallel", ["data", "hybrid"])
def test_cifar_fast_recipe_trains_on_two_processes(parallel, tmp_path, cache_dir):
    """The recipe freezes its whitening conv before DDP/hybrid wraps the model (frozen after wrapping, DDP waited
    for its gradient and stopped at the second step); every rank whitens with the same images."""
    source = make_folder(tmp_path / "cifar-shapes", per_class=12, size=16)  # "cifar" in the name: cifar10-fast
    kw = quiet(epochs=2, batch_size=8, cache_dir=str(cache_dir), recipe="fast")
    one = convforge.train(str(source), out=str(tmp_path / "one"), **kw)
    two = convforge.train(str(source), out=str(tmp_path / "two"), procs=2, parallel=parallel, **kw)
    assert one.run.config_dict()["model"] == two.run.config_dict()["model"] == "cifar10-fast"
    assert len(two.history) == 2 and 0 <= two.test_accuracy <= 1
    whitening = one.run.state_dict()["layers.0.weight"]
    assert whitening.shape == (24, 3, 2, 2) and torch.equal(two.run.state_dict()["layers.0.weight"], whitening)


def test_killed_rank_ends_the_job_with_one_line_and_exit_2(lenet, tmp_path, monkeypatch, capsys):
    from convforge.cli import main

    monkeypatch.setenv(distributed.FAULT_ENV, "kill:1:2")  # rank 1 dies as epoch 2 starts
    out = tmp_path / "killed"
    args = ["train", str(lenet["source"]), "--procs", "2", "--epochs", "3", "--model", "lenet5", "--out", str(out)]
    args += ["--device", "cpu", "--cache-dir", lenet["kw"]["cache_dir"], "--split", "0.75,0.125,0.125"]
    started = time.perf_counter()
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: distributed training stopped: rank 1 of 2 was killed by SIGKILL"), err
    assert f"--resume {out}" in err
    assert time.perf_counter() - started < 60
    tensors, meta = load_safetensors(out / "checkpoints" / "last.safetensors")  # the epoch-1 checkpoint is whole
    assert '"epoch": 1' in meta["train_state"] and "model.layers.0.weight" in tensors


def test_hung_rank_ends_the_job_within_the_timeout(lenet, tmp_path, monkeypatch):
    monkeypatch.setenv(distributed.FAULT_ENV, "hang:1:2")
    started = time.perf_counter()
    with pytest.raises(ConvforgeError, match="rank 0 of 2 waited more than 3 s"):
        convforge.train(
            str(lenet["source"]), out=str(tmp_path / "hung"), epochs=3, procs=2, dist_timeout_s=3, **lenet["kw"]
        )
    assert time.perf_counter() - started < 60


# -- no processes started -------------------------------------------------------------------------------------
@pytest.mark.parametrize("n, world", [(10, 2), (10, 3), (7, 3), (2, 3), (24, 3)])
def test_shard_order_pads_by_wrapping_and_splits_every_global_batch(n, world):
    order = torch.randperm(n)
    local = 2
    parts = [distributed.shard_order(order, local * world, world, r) for r in range(world)]
    assert len({len(p) for p in parts}) == 1  # every rank runs the same steps
    padded = len(parts[0]) * world
    assert padded == n + (-n) % world
    assert set(torch.cat(parts).tolist()) == set(order.tolist())  # nothing dropped
    steps = [p.split(local) for p in parts]
    for s, batch in enumerate(order.repeat(3)[:padded].split(local * world)):
        assert torch.equal(torch.cat([steps[r][s] for r in range(world)]), batch)  # union = the global batch


def test_batch_scope_and_lr_scaling(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 4)
    cfg = TrainConfig(batch_size=256, solver="sgdm")
    assert distributed.trainer_config(cfg).batch_size == 64 and distributed.trainer_config(cfg).lr is None
    per_gpu = TrainConfig(batch_size=256, solver="sgdm", batch_scope="per-gpu", scale_lr=True)
    assert distributed.trainer_config(per_gpu).batch_size == 256
    assert distributed.trainer_config(per_gpu).lr == pytest.approx(0.04)  # 4 x the solver's 0.01
    with pytest.raises(ConfigError, match="cannot be split evenly"):
        distributed.check_launch(TrainConfig(batch_size=30, procs=4, device="cpu"))


def test_user_errors_before_anything_starts():
    with pytest.raises(ConfigError, match="--parallel must be one of data, hybrid"):
        convforge.train(procs=2, parallel="model", **quiet())
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="--gpus 2: this machine has 0 GPU"):
            convforge.train(gpus=2, progress=False, log=lambda s: None)
    with pytest.raises(ConfigError, match="hybrid splits dense layers"):
        from convforge.engine.hybrid import _head_plan
        from convforge.models import resolve_spec

        no_dense = {"layers": [{"conv": {"filters": 2, "kernel": 3}}, "global_avgpool", "softmax"]}
        _head_plan(resolve_spec(no_dense, in_shape=(1, 8, 8), num_classes=2))


# -- two GPUs (NCCL), on the GPU machine: python -m pytest -m gpu tests/distributed ------------------------------
def gpu_kw(cache_dir, **kw):
    # fp32: bf16 autocast rounds differently for a batch of 12 and two of 6
    return dict(progress=False, log=lambda s: None, device="cuda", precision="fp32", cache_dir=str(cache_dir), **kw)


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_sync_bn_data_parallel_equals_one_gpu(tmp_path, cache_dir):
    source = make_folder(tmp_path / "shapes", per_class=16, size=16)  # digits-cnn has batchnorm
    kw = gpu_kw(cache_dir, model="digits-cnn", solver="sgdm", lr=0.05, schedule="constant", batch_size=24, split=SPLIT)
    first, _ = reference(source, tmp_path / "one", **kw)
    two = convforge.train(str(source), out=str(tmp_path / "two"), epochs=1, gpus=2, sync_bn=True, **kw)
    assert_same(two.run.state_dict(), first, atol=2e-3)  # cuDNN convolutions may use TF32


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_hybrid_equals_one_gpu_on_alexnet_cifar(tmp_path, cache_dir):
    from convforge._io import write_yaml
    from convforge.models.zoo import zoo_spec

    spec = tmp_path / "alexnet-cifar.yaml"
    write_yaml(spec, {"name": "alexnet-cifar", **zoo_spec("alexnet", (3, 32, 32), 2, dropout=0.0)})
    source = make_folder(tmp_path / "shapes", per_class=8, size=32)
    kw = gpu_kw(cache_dir, model=str(spec), solver="sgdm", lr=0.01, schedule="constant", batch_size=12, split=SPLIT)
    first, _ = reference(source, tmp_path / "one", **kw)
    two = convforge.train(str(source), out=str(tmp_path / "two"), epochs=1, gpus=2, parallel="hybrid", **kw)
    assert_same(two.run.state_dict(), first, atol=2e-3)


def test_muon_with_hybrid_split_hidden_dense_layers_is_a_one_line_error(lenet, tmp_path):
    """Muon orthogonalizes whole matrices; hybrid parallelism would hand each rank a slice of lenet5's hidden dense
    layers (120, 84 units), so the run stops before training with the fix named (a rank's error, one line)."""
    kw = {**lenet["kw"], "solver": "muon", "lr": None}
    with pytest.raises(ConvforgeError, match="--solver muon orthogonalizes whole weight matrices.*--parallel data"):
        convforge.train(str(lenet["source"]), out=str(tmp_path / "m"), epochs=1, procs=2, parallel="hybrid", **kw)

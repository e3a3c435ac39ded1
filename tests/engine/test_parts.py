"""Unit tests of the engine's parts: augmentation, schedules, solvers, checkpoints, config round trip."""

from __future__ import annotations

import copy
import inspect
import math

import pytest
import torch

from convforge._config import from_dict, load_yaml, save_yaml, to_dict
from convforge.engine import TrainConfig
from convforge.engine.augment import Augment, augment_batch
from convforge.engine.checkpoint import TrainState, checkpoint_job, load_checkpoint
from convforge.engine.schedules import make_scheduler
from convforge.engine.solvers import DEFAULT_LR, SOLVERS, make_optimizer


def _image() -> torch.Tensor:
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 2, 1] = 1.0  # one bright pixel, left of centre
    return x


def test_flip_mirrors_exactly_and_is_seeded():
    x = _image().repeat(64, 1, 1, 1)
    gen = torch.Generator().manual_seed(0)
    out = augment_batch(x, Augment(flip=True), gen)
    flipped = (out[:, 0, 2, 6] == 1).sum().item()
    kept = (out[:, 0, 2, 1] == 1).sum().item()
    assert flipped + kept == 64 and 16 < flipped < 48
    again = augment_batch(x, Augment(flip=True), torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_affine_without_range_is_identity():
    x = torch.rand(4, 3, 16, 16)
    out = augment_batch(x, Augment(), torch.Generator().manual_seed(0))
    assert torch.equal(out, x)


def test_shift_moves_content_by_at_most_the_range():
    x = torch.zeros(256, 1, 32, 32)
    x[:, :, 12:20, 12:20] = 1.0
    out = augment_batch(x, Augment(shift=0.125), torch.Generator().manual_seed(1))
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    mass = out[:, 0].sum((1, 2))
    cy = (out[:, 0] * ys).sum((1, 2)) / mass
    cx = (out[:, 0] * xs).sum((1, 2)) / mass
    assert (cx - 15.5).abs().max() <= 4.01 and (cy - 15.5).abs().max() <= 4.01
    assert (cx - 15.5).abs().max() > 2  # it does move
    assert torch.allclose(mass, torch.full_like(mass, 64.0), atol=1e-3)  # translation keeps the square whole


def test_zoom_changes_the_size_of_content():
    x = torch.zeros(128, 1, 32, 32)
    x[:, :, 8:24, 8:24] = 1.0
    out = augment_batch(x, Augment(zoom=0.3), torch.Generator().manual_seed(2))
    area = out[:, 0].sum((1, 2))
    assert area.min() < 256 * 0.8 and area.max() > 256 * 1.2


@pytest.mark.parametrize("name", SOLVERS.names())
def test_every_solver_lowers_a_quadratic(name):
    w = torch.nn.Parameter(torch.tensor([3.0, -2.0]))
    opt = make_optimizer(name, [w], lr=None)
    assert opt.param_groups[0]["lr"] == DEFAULT_LR[name]
    for _ in range(200):
        opt.zero_grad()
        (w**2).sum().backward()
        opt.step()
    assert (w**2).sum().item() < 13 * 0.9  # every solver moves downhill at its default lr


def _lrs(cfg: TrainConfig, steps: int = 10) -> list[float]:
    w = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([w], lr=1.0)
    sched = make_scheduler(opt, cfg, steps_per_epoch=steps)
    out = []
    for _ in range(cfg.epochs * steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_schedules_shapes():
    assert set(_lrs(TrainConfig(schedule="constant", epochs=3))) == {1.0}
    step = _lrs(TrainConfig(schedule="step", epochs=4, step_epochs=2, gamma=0.5))
    assert step[0] == 1.0 and step[19] == 1.0 and step[20] == 0.5
    piece = _lrs(TrainConfig(schedule="piecewise", epochs=4, milestones=(1, 3), gamma=0.1))
    assert piece[9] == 1.0 and math.isclose(piece[10], 0.1) and math.isclose(piece[30], 0.01)
    cos = _lrs(TrainConfig(schedule="cosine", epochs=2))
    assert cos[0] == 1.0 and math.isclose(cos[10], 0.5, abs_tol=1e-9) and cos[-1] < 0.01
    one = _lrs(TrainConfig(schedule="onecycle", epochs=4))
    peak = one.index(max(one))
    assert one[0] < 0.1 and peak == 10 and one[-1] < 0.01
    tri = _lrs(TrainConfig(schedule="triangle", epochs=10))  # 100 steps: peak at step 23, 0.07 at the end
    assert math.isclose(tri[0], 0.2) and tri.index(max(tri)) == 23 and math.isclose(tri[61], 1 - 0.93 * 38 / 77)
    lin = _lrs(TrainConfig(schedule="linear", epochs=10))  # 100 steps: 1 at step 0, down by 0.01 a step
    assert lin[0] == 1.0 and math.isclose(lin[40], 0.6) and math.isclose(lin[-1], 0.01)
    warm = _lrs(TrainConfig(schedule="constant", epochs=2, warmup_epochs=1))
    assert math.isclose(warm[0], 0.1) and warm[9] == 1.0


def test_checkpoint_round_trip_is_exact(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.9**s)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(8, 4)).sum().backward()
        opt.step()
        sched.step()
    gen = torch.Generator().manual_seed(5)
    gen_state = gen.get_state()
    path = tmp_path / "ckpt.safetensors"
    checkpoint_job(path, model, opt, sched, gen, TrainState(epoch=3, history=[{"epoch": 3}], best={"epoch": 2}))()
    model2 = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    opt2 = torch.optim.Adam(model2.parameters(), lr=0.01)
    sched2 = torch.optim.lr_scheduler.LambdaLR(opt2, lambda s: 0.9**s)
    gen2 = torch.Generator()
    state = load_checkpoint(path, model2, opt2, sched2, gen2)
    assert state.epoch == 3 and state.best == {"epoch": 2}
    assert torch.equal(gen2.get_state(), gen_state)
    assert sched2.last_epoch == 3 and opt2.param_groups[0]["lr"] == pytest.approx(0.01 * 0.9**3)
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert all(torch.equal(s1[i]["exp_avg_sq"], s2[i]["exp_avg_sq"]) for i in s1)


def test_config_yaml_round_trip(tmp_path):
    cfg = from_dict(TrainConfig, {"epochs": 7, "split": "0.7,0.2,0.1", "image_size": [32, 32], "flip": "true"})
    assert cfg.split == (0.7, 0.2, 0.1) and cfg.image_size == (32, 32) and cfg.flip is True
    save_yaml(cfg, tmp_path / "c.yaml")
    assert load_yaml(TrainConfig, tmp_path / "c.yaml") == cfg
    assert to_dict(cfg)["split"] == [0.7, 0.2, 0.1]


def test_background_checkpoint_is_the_state_when_taken_and_errors_surface(tmp_path):
    import threading

    from convforge.engine.checkpoint import BackgroundWriter
    from convforge.errors import ConvforgeError

    model = torch.nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    path, gen = tmp_path / "ckpt.safetensors", torch.Generator()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    release, threads = threading.Event(), []
    writer = BackgroundWriter()
    job = checkpoint_job(path, model, opt, sched, gen, TrainState(epoch=1))
    writer.run(lambda: (threads.append(threading.current_thread()), release.wait(10), job()))
    with torch.no_grad():
        model.weight.add_(1.0)  # training goes on while the job waits
    release.set()
    writer.wait()
    assert threads[0] is not threading.main_thread()
    load_checkpoint(path, model2 := torch.nn.Linear(4, 3), torch.optim.SGD(model2.parameters(), lr=0.1), sched, gen)
    assert all(torch.equal(v, before[k]) for k, v in model2.state_dict().items())  # the snapshot, not the later state

    def full_disk() -> None:
        raise ConvforgeError("cannot write ckpt: No space left on device; check free disk space and permissions")

    writer.run(full_disk)
    with pytest.raises(ConvforgeError, match="No space left"):
        writer.close()  # raised where the loop waits for it, not lost in the thread


def test_warmup_thread_imports_dynamo_on_cpu_only_for_compile_and_pool_kernels_only_for_pooling_models() -> None:
    import sys

    from convforge.engine import warmup

    assert warmup.start(TrainConfig(model="mlp"), torch.device("cpu")) is None  # nothing to warm
    thread = warmup.start(TrainConfig(model="mlp", compile=True), torch.device("cpu"))
    thread.join(timeout=120)
    assert not thread.is_alive() and "torch._dynamo" in sys.modules  # what torch.compile imports first
    assert warmup._pool_channels_of("cifar10-fast") == {64, 256} and warmup._pool_channels_of("mlp") == set()
    assert warmup._pool_channels_of("digits-cnn") == {8, 16}  # narrower channel blocks (models/_kernels.py)
    assert warmup._pool_channels_of("resnet18") == set()  # its 3x3 stride-2 pool overlaps: PyTorch's
    assert warmup._pool_channels_of("no-such-model") is None  # cannot tell: warm the 64-channel kernels anyway
    import convforge.recipes  # noqa: F401  registers cifar10-fast

    # Muon's warm-up stack (engine/muon.py warm_up): the convs as (out, in * kh * kw), not the head
    assert warmup._hidden_matrices("digits-cnn", 1) == [(8, 9), (16, 72), (32, 144)]
    assert warmup._hidden_matrices("cifar10-fast", 3)[-3:] == [(256, 2304)] * 3
    assert warmup._hidden_matrices("no-such-model") == []
    fused = warmup._fusions("cifar10-fast", 3, batch=1024)  # the kernels its SpecNet will launch
    assert fused.norm_act == {(64, 1, False), (256, 1, False)}  # big maps: finishing launches (models/_norm_act.py)
    assert [(c.in_channels, c.out_channels, code) for c, code in fused.conv_act] == [(3, 24, 1)]
    assert fused.small_conv == ()  # its 24/64-channel convs at batch 1024 are cuDNN's work (MAX_MACS)
    assert [(d.in_features, d.out_features) for d, _, _ in fused.small_dense] == [(256, 10)]  # a last partial batch
    convs = [(c.in_channels, c.out_channels, shape, first) for c, shape, first in fused.cudnn_convs]  # cuDNN's
    assert convs[:2] == [(3, 24, (3, 32, 32), True), (24, 64, (24, 31, 31), False)] and len(convs) == 7
    fused = warmup._fusions("digits-cnn", 1, batch=128)
    assert fused.norm_act == {(8, 0, True), (16, 0, True), (32, 0, True)}  # small maps: finished in the passes
    assert fused.conv_act == () and fused.cudnn_convs == ()
    assert [(c.in_channels, c.out_channels, relu, first) for c, relu, first in fused.small_conv] == [
        (1, 8, False, True),  # the fp32 images' layer
        (8, 16, False, False),
        (16, 32, False, False),
    ]
    assert [(d.out_features, relu, first) for d, relu, first in fused.small_dense] == [(10, False, False)]
    fused = warmup._fusions("simple-cnn", 3, batch=32)
    assert [(c.in_channels, relu, first) for c, relu, first in fused.small_conv] == [(3, True, True), (32, True, False)]
    assert [(d.out_features, relu) for d, relu, _ in fused.small_dense] == [(128, True), (10, False)]
    assert [(a.out_features, b.out_features, first) for a, b, first in fused.dense_pairs] == [(128, 10, False)]
    assert [first for _, _, first in warmup._fusions("mlp", 1, batch=32).small_dense] == [True, False]  # flatten first
    assert [first for _, _, first in warmup._fusions("mlp", 1, batch=32).dense_pairs] == [True]
    assert warmup._fusions("no-such-model") == warmup.Fusions()
    # on its 28 x 28 images, fashion-mnist-fast's 1 -> 64 stem is small at batch 512 (at 32 x 32 it is not)
    assert [c.out_channels for c, *_ in warmup._fusions("fashion-mnist-fast", 1, (28, 28), 512).small_conv] == [64]
    assert warmup._fusions("fashion-mnist-fast", 1, (32, 32), 512).small_conv == ()
    cfg = TrainConfig(source="mnist", model="mnist-fast")
    assert warmup._input_size(cfg) == (28, 28) and warmup._input_size(TrainConfig(source="cifar10")) == (32, 32)
    assert warmup._input_size(TrainConfig(source="x", image_size=(64, 48))) == (64, 48)


def test_training_never_imports_dynamo_and_optimizer_methods_are_restored(tmp_path) -> None:
    """engine/solvers.py dynamo_import_skipped: a run without --compile (optimizer made, param groups added by a
    recipe hook, zero_grad every step, checkpoints: state_dict) does not import torch._dynamo, and afterwards
    torch.optim's wrappers are as torch made them. A fresh process: this one may have imported it already."""
    import subprocess
    import sys

    code = f"""
import sys, torch, convforge
from convforge.engine.dynamo_free import _dynamo_disabled_methods
assert len(_dynamo_disabled_methods()) >= 3, "torch.optim no longer wraps these: drop dynamo_import_skipped"
r = convforge.train("digits", model="digits-cnn", epochs=1, device="cpu", out={str(tmp_path / "run")!r},
                    progress=False, log=lambda s: None)
assert r.test_accuracy > 0.3, r.test_accuracy
assert "torch._dynamo" not in sys.modules
assert all(not hasattr(fn, "__dynamo_disable") for fn in _dynamo_disabled_methods())
torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1).zero_grad()
assert "torch._dynamo" in sys.modules  # torch's own behaviour outside a run
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("solver", ["sgd", "sgdm", "nesterov", "adam", "adamw", "rmsprop"])
def test_solvers_step_exactly_as_torch_optim(solver: str) -> None:
    """engine/dynamo_free.py StepWithoutDynamo: the same updates as the torch.optim class it derives from."""
    from convforge.engine.solvers import make_optimizer

    torch.manual_seed(0)
    ours_model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    torch_model = copy.deepcopy(ours_model)
    ours = make_optimizer(solver, ours_model.parameters(), 0.05, weight_decay=1e-3)
    torch_class = next(c for c in type(ours).__mro__ if c.__module__.startswith("torch.optim."))
    accepted = inspect.signature(torch_class).parameters
    theirs = torch_class(torch_model.parameters(), **{k: v for k, v in ours.defaults.items() if k in accepted})
    for _ in range(3):
        x = torch.randn(8, 6)
        for model, opt in ((ours_model, ours), (torch_model, theirs)):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    assert all(torch.equal(a, b) for a, b in zip(ours_model.parameters(), torch_model.parameters()))

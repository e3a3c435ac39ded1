"""GPU tests (run on the GPU machine): graph capture equals the eager reference; MNIST accuracy."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.gpu
MNIST = Path(__file__).resolve().parents[2] / ".data" / "mnist"


def _trainer(tmp_path, graphs: bool, **kw):
    from convforge.data import DataConfig, load_data
    from convforge.engine import TrainConfig
    from convforge.engine.loop import Trainer
    from convforge.run import Run

    cfg = TrainConfig(source="digits", model=kw.pop("model", "digits-cnn"), solver=kw.pop("solver", "adam"),
                      batch_size=64, precision="fp32", cuda_graphs=graphs, device="cuda", **kw)  # fmt: skip
    splits = load_data(DataConfig(source="digits", split=(0.8, 0.1, 0.1)), progress=False)
    torch.manual_seed(0)
    return Trainer(cfg, Run(tmp_path / ("g" if graphs else "e")), splits, log=print)


@pytest.mark.parametrize(
    "solver, aug",
    [
        ("adam", {}),
        ("sgdm", {}),
        ("nesterov", {"flip": True, "crop_pad": 2, "cutout": 3}),
        ("adam", {"flip": True, "flip_mode": "alternate"}),  # per-step rows inside a chunk
        ("nesterov", {"flip": True, "flip_mode": "alternate", "lookahead": 3}),  # the step hook, captured
        ("muon", {}),  # orthogonalized steps with a device lr (engine/muon.py)
    ],
)  # rmsprop: capturable takes another code path (~1e-4 apart)
def test_multistep_graph_epochs_equal_eager_epochs(tmp_path, solver, aug):
    from convforge.engine.fast import GraphStep
    from convforge.engine.progress import EpochProgress

    torch.backends.cudnn.deterministic = True
    eager = _trainer(tmp_path, False, solver=solver, schedule="onecycle", **aug)
    graph = _trainer(tmp_path, True, solver=solver, schedule="onecycle", **aug)
    assert graph.fast is not None and eager.fast is None
    assert graph.x_train.is_contiguous(memory_format=torch.channels_last)  # gathered batches need no layout copy
    graph.model.load_state_dict(eager.model.state_dict())
    before = torch.cuda.memory_allocated()
    graph.fast = GraphStep(graph, max_chunk=8)  # 22 full batches + a tail: warm-up, 8-step chunks, 1-step graph
    assert torch.cuda.memory_allocated() - before < graph.x_train.numel()  # no float copy of the training set
    with EpochProgress(3, eager.steps_per_epoch, live=False, log=lambda s: None) as progress:
        for _ in range(3):
            e, g = eager.train_epoch(progress), graph.train_epoch(progress)
            assert g["train_acc"] == e["train_acc"]
            assert g["train_loss"] == pytest.approx(e["train_loss"], rel=1e-5)
    assert sorted(graph.fast.graphs) == [1, 8]
    assert graph.scheduler.state_dict() == eager.scheduler.state_dict()
    assert graph.gen.get_state().equal(eager.gen.get_state())  # the graphs advanced the generator as eager code
    for (name, p), q in zip(eager.model.state_dict().items(), graph.model.state_dict().values()):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=name)


def test_progressive_epochs_graph_epochs_equal_eager_epochs(tmp_path):
    """--progressive-epochs with captured K-step graphs: the small epochs' step is captured at the small size and
    captured again at the switch to full size (engine/progressive.py switch); graph epochs equal eager ones on both
    sides of it."""
    from convforge.engine.fast import GraphStep
    from convforge.engine.progress import EpochProgress

    torch.backends.cudnn.deterministic = True
    kw = dict(model="mnist-fast", solver="nesterov", schedule="onecycle", flip=True, crop_pad=1, progressive_epochs=2,
              progressive_size=6)  # fmt: skip
    eager, graph = _trainer(tmp_path, False, **kw), _trainer(tmp_path, True, **kw)
    graph.model.load_state_dict(eager.model.state_dict())
    graph.fast = GraphStep(graph, max_chunk=8)
    with EpochProgress(4, eager.steps_per_epoch, live=False, log=lambda s: None) as progress:
        for epoch in range(4):
            e, g = eager.train_epoch(progress), graph.train_epoch(progress)
            assert g["train_acc"] == e["train_acc"], epoch
            assert g["train_loss"] == pytest.approx(e["train_loss"], rel=1e-5), epoch
    assert sorted(graph.fast.graphs) == [1, 8]  # captured again at full size
    for (name, p), q in zip(eager.model.state_dict().items(), graph.model.state_dict().values()):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=name)


def test_capture_behind_a_queued_replay_leaves_its_random_draws_alone():
    """A replay still queued when another graph of its generator is captured (GraphStep._ahead) draws what eager code
    draws: capture_begin's reset of the generator's device offset waits for it. Without capture_behind's waits, the
    reset ran during the replay's sleep and its draws came from offset 0 (torch 2.11, H200)."""
    from convforge.engine.fast.graph import capture_behind

    dev = torch.device("cuda")
    gen = torch.Generator(dev)
    gen.manual_seed(5)
    torch.rand(1, generator=gen, device=dev)  # the offset is no longer 0
    out = torch.empty(1 << 16, device=dev)
    side = torch.cuda.Stream(dev)
    first, second = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph()
    first.register_generator_state(gen)
    second.register_generator_state(gen)
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.graph(first, stream=side):
        torch.cuda._sleep(200_000_000)  # ~0.1 s: the draws come long after the replay wrote its offset
        out.copy_(torch.rand(out.numel(), generator=gen, device=dev))
    torch.cuda.current_stream().wait_stream(side)
    state = gen.get_state()
    first.replay()
    capture_behind(second, first.pool(), side, lambda: torch.rand(8, generator=gen, device=dev))
    torch.cuda.synchronize()
    eager = torch.Generator(dev)
    eager.set_state(state)
    assert out.equal(torch.rand(out.numel(), generator=eager, device=dev))


@pytest.mark.parametrize("aug", [{"crop_pad": 2}, {"crop_pad": 2, "cutout": 3}], ids=["one-launch", "pytorch-ops"])
def test_same_seed_same_weights_on_the_gpu(tmp_path, aug):
    """--deterministic through the API on CUDA: K-step chunks captured behind queued one-step replays, augmentation
    drawn on the device, bf16 autocast; two runs train the same bits."""
    from convforge import api

    lines: list[str] = []
    kw = dict(model="digits-cnn", solver="nesterov", lr=0.05, epochs=3, batch_size=64, schedule="onecycle", flip=True,
              device="cuda", deterministic=True, progress=False, log=lines.append, **aug)  # fmt: skip
    before = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic
    try:
        a, b = (api.train("digits", out=str(tmp_path / name), **kw) for name in "ab")
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.deterministic = before[1]
    assert not [line for line in lines if "CUDA graphs off" in line]
    sa, sb = a.run.state_dict(), b.run.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.test_accuracy == b.test_accuracy > 0.5  # it trained


@pytest.mark.skipif(not MNIST.is_dir(), reason="needs .data/mnist")
def test_mnist_digits_cnn_sgdm_reaches_report_accuracy(tmp_path):
    from convforge import api

    # the reference report's 99.24%: digits-cnn, sgdm; 8 epochs, lr 0.05 with a cosine schedule
    opts = dict(model="digits-cnn", solver="sgdm", lr=0.05, epochs=8, batch_size=128, schedule="cosine")
    r = api.train("mnist", data_dir=str(MNIST), split=(1.0, 0.0, 0.0), out=str(tmp_path / "r"), progress=False, **opts)
    print(f"digits-cnn sgdm MNIST test accuracy {r.test_accuracy:.4f}")
    assert r.test_accuracy >= 0.9924


@pytest.mark.skipif(not MNIST.is_dir(), reason="needs .data/mnist")
def test_same_recipe_same_accuracy_graph_and_eager(tmp_path):
    from convforge import api

    accs = {}
    for graphs in (True, False):
        r = api.train("mnist", data_dir=str(MNIST), model="digits-cnn", solver="sgdm", lr=0.01, epochs=4,
                      batch_size=128, schedule="constant", split=(1.0, 0.0, 0.0), cuda_graphs=graphs,
                      out=str(tmp_path / str(graphs)), progress=False)  # fmt: skip
        accs[graphs] = r.test_accuracy
    print(f"same recipe: graphs {accs[True]:.4f}, eager {accs[False]:.4f}")
    assert abs(accs[True] - accs[False]) < 0.004 and min(accs.values()) > 0.985


def test_recapture_after_an_epoch_hook_freezes_a_parameter(tmp_path):
    """cifar10-fast's whitening bias freezes at epoch 3 (recipes/_tricks.py): the captured step is captured again
    without its gradient, and graph epochs keep equal to eager epochs across the change."""
    import convforge.recipes  # noqa: F401  registers cifar10-fast's hooks
    from convforge.data import DataConfig, load_data
    from convforge.engine import TrainConfig
    from convforge.engine.loop import Trainer
    from convforge.engine.progress import EpochProgress
    from convforge.recipes import cifar10_fast
    from convforge.run import Run

    torch.backends.cudnn.deterministic = True
    data = DataConfig(source="digits", split=(0.8, 0.1, 0.1), channels=3, image_size=(16, 16))
    splits = load_data(data, progress=False)
    trainers = []
    for graphs in (False, True):
        over = dict(source="digits", device="cuda", channels=3, epochs=5, image_size=(16, 16), batch_size=128)
        cfg = TrainConfig(**{**cifar10_fast.HYP, **over, "precision": "fp32", "cuda_graphs": graphs})
        torch.manual_seed(0)
        trainers.append(Trainer(cfg, Run(tmp_path / str(graphs)), splits, log=print))
    cifar10_fast._TRAINERS.clear()
    eager, graph = trainers
    graph.model.load_state_dict(eager.model.state_dict())
    with EpochProgress(5, eager.steps_per_epoch, live=False, log=lambda s: None) as progress:
        for epoch in range(5):
            e, g = eager.train_epoch(progress), graph.train_epoch(progress)
            assert g["train_loss"] == pytest.approx(e["train_loss"], rel=1e-4), epoch
            if epoch == 3:
                assert not graph.model.layers[0].bias.requires_grad and graph.fast.graphs  # captured again
    for (name, p), q in zip(eager.model.state_dict().items(), graph.model.state_dict().values()):
        torch.testing.assert_close(q, p, rtol=1e-3, atol=1e-4, msg=name)

"""Multi-step capture bookkeeping on CPU: a stand-in graph that replays K steps eagerly must train exactly as the
eager loop (order rows, lr table, scheduler state, metric sums, tail batch). The real capture: tests/fast/test_gpu.py.
"""

from __future__ import annotations

import pytest
import torch

from convforge.engine.fast import GraphStep, advance, chunk_steps
from convforge.engine.fast.graph import epoch_lrs
from convforge.engine.progress import EpochProgress


class FakeGraph:
    def __init__(self, gs: GraphStep, steps: int):
        self.gs, self.steps = gs, steps

    def replay(self) -> None:
        groups = self.gs.tr.optimizer.param_groups
        floats = [g["lr"] for g in groups]
        self.gs._chunk(self.steps, tensor_lr=True)  # as while captured: each step reads its lr from the table
        for g, lr in zip(groups, floats):
            g["lr"] = lr


class CpuGraphStep(GraphStep):
    def _warmup(self) -> None:
        self._chunk(1, tensor_lr=False)
        self.warm += 1

    def _capture(self, steps: int, sync: bool = True) -> FakeGraph:
        self.captures.append((steps, sync))
        return FakeGraph(self, steps)

    def _replay_and_pick_k(self) -> None:
        self.graphs[1].replay()
        self.step_s, self.capture_s = self.timing


class Recorded(CpuGraphStep):
    """CpuGraphStep with its captures recorded and the timing _ahead reads: (0, 0) none, as without a timed
    replay; (1e-4, 5e-5): a one-step replay takes 0.1 ms on the GPU, a captured step 0.05 ms of host time."""

    def __init__(self, *args, timing=(0.0, 0.0), **kw):
        super().__init__(*args, **kw)
        self.timing, self.captures = timing, []


def _trainer(tmp_path, name, **kw):
    from convforge.data import DataConfig, load_data
    from convforge.engine import TrainConfig
    from convforge.engine.loop import Trainer
    from convforge.run import Run

    cfg = TrainConfig(source="digits", model="mlp", solver=kw.pop("solver", "sgdm"), batch_size=64, device="cpu",
                      epochs=3, schedule="onecycle", **kw)  # fmt: skip
    splits = load_data(DataConfig(source="digits", split=(0.8, 0.1, 0.1)), progress=False)
    torch.manual_seed(0)
    return Trainer(cfg, Run(tmp_path / name), splits, log=print)


def test_chunk_steps_and_advance():
    assert chunk_steps(22) == 22 and chunk_steps(468) == 26 and chunk_steps(1875) == 25 and chunk_steps(1250) == 25
    assert (
        chunk_steps(37) == 32 and chunk_steps(117, 1) == 1
    )  # no divisor in [16, 32]: chunks of 32 and one-step replays
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    a = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 / (1 + s))
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    b = torch.optim.lr_scheduler.LambdaLR(opt2, lambda s: 1 / (1 + s))
    lrs = epoch_lrs(b, 7)
    for i in range(7):
        assert lrs[i][0] == opt.param_groups[0]["lr"]
        opt.step()
        a.step()
    opt2.step()
    advance(b, 7)
    assert a.state_dict() == b.state_dict() and opt.param_groups[0]["lr"] == opt2.param_groups[0]["lr"]


@pytest.mark.parametrize(
    "solver, aug",
    [
        ("sgdm", {}),
        ("adam", {"flip": True, "crop_pad": 2, "cutout": 3}),
        ("adam", {"flip": True, "flip_mode": "alternate"}),
        ("nesterov", {"flip": True, "flip_mode": "alternate", "lookahead": 3}),  # the step hook, captured
    ],
)  # alternate flips: each captured step must pass its own rows (the chunk gathers K batches at once)
def test_multistep_epochs_equal_the_eager_loop(tmp_path, monkeypatch, solver, aug):
    fake = _equal_to_the_eager_loop(tmp_path, monkeypatch, solver, aug, timing=(0.0, 0.0))
    assert fake.captures == [(1, True), (8, True)]


def test_one_step_replays_queued_ahead_of_a_capture_train_as_the_eager_loop(tmp_path, monkeypatch):
    """With a timed one-step replay, the 8-step capture is preceded by ceil(8 x 0.05 / 0.1) = 4 one-step replays
    queued for the GPU and does not sync; training is unchanged."""
    aug = {"flip": True, "flip_mode": "alternate"}
    fake = _equal_to_the_eager_loop(tmp_path, monkeypatch, "adam", aug, timing=(1e-4, 5e-5))
    assert fake.captures == [(1, True), (8, False)]


def _equal_to_the_eager_loop(tmp_path, monkeypatch, solver: str, aug: dict, timing: tuple[float, float]) -> Recorded:
    eager, fake = _trainer(tmp_path, "e", solver=solver, **aug), _trainer(tmp_path, "f", solver=solver, **aug)
    assert eager.fast is None
    fake.model.load_state_dict(eager.model.state_dict())
    fake.fast = Recorded(fake, max_chunk=8, timing=timing)  # 22 full batches + a tail: warm-up, chunks, one-step
    assert fake.fast.k == 8
    replays = []
    original = FakeGraph.replay

    def replay(graph: FakeGraph) -> None:
        replays.append(graph.steps)
        original(graph)

    monkeypatch.setattr(FakeGraph, "replay", replay)
    with EpochProgress(3, eager.steps_per_epoch, live=False, log=lambda s: None) as progress:
        for _ in range(3):
            e, f = eager.train_epoch(progress), fake.train_epoch(progress)
            assert f["train_acc"] == e["train_acc"]
            assert f["train_loss"] == pytest.approx(e["train_loss"], rel=1e-5)
    assert fake.scheduler.state_dict() == eager.scheduler.state_dict()
    assert fake.gen.get_state().equal(eager.gen.get_state())  # same random draws, in the same order
    for (name, p), q in zip(eager.model.state_dict().items(), fake.model.state_dict().values()):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-6, msg=name)
    # epoch 1: warm-up step, one-step capture and its replay, the timed replay, then the chunks (after any
    # queued one-step replays), the remainder in one-step replays; epochs 2-3: chunks and remainder
    ahead = 4 if timing[0] else 0
    chunks = (22 - 3 - ahead) // 8
    first = [1, 1] + [1] * ahead + [8] * chunks + [1] * (22 - 3 - ahead - 8 * chunks)
    assert replays == first + ([8, 8] + [1] * 6) * 2
    return fake.fast


def test_collection_is_paused_inside_a_capture_and_restored_after() -> None:
    """engine/fast/graph.py collection_paused: no cyclic garbage collection while a graph is captured (it could free
    an earlier trainer's CUDA graphs mid-capture), the collector's own state restored after, errors included."""
    import gc

    from convforge.engine.fast.graph import collection_paused

    assert gc.isenabled()
    with collection_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collection_paused():
        raise RuntimeError("capture failed")
    assert gc.isenabled()
    gc.disable()
    try:
        with collection_paused():
            pass
        assert not gc.isenabled()  # off before: stays off
    finally:
        gc.enable()

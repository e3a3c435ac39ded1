"""cifar10-fast's tricks on CPU: whitening conv, head and batchnorm-shift groups, lookahead, alternating flips, TTA."""

from __future__ import annotations

import pytest
import torch

import convforge.recipes  # noqa: F401  registers the recipes' networks and setup hooks
from convforge.recipes import cifar10_fast
from convforge.recipes._tricks import freeze_first_conv_bias, tta_accuracy


def _trainer(tmp_path, **hyp):
    from convforge.data import DataConfig, load_data
    from convforge.engine import TrainConfig
    from convforge.engine.loop import Trainer
    from convforge.run import Run

    cfg = TrainConfig(**{**cifar10_fast.HYP, "source": "digits", "device": "cpu", "channels": 3,
                         "image_size": (16, 16), "batch_size": 128, **hyp})  # fmt: skip
    data = DataConfig(source="digits", split=(0.8, 0.1, 0.1), channels=3, image_size=(16, 16))
    splits = load_data(data, progress=False)
    torch.manual_seed(0)
    return Trainer(cfg, Run(tmp_path / "r"), splits, log=print)


def test_whitening_head_group_and_tta(tmp_path):
    tr = _trainer(tmp_path)
    cifar10_fast._TRAINERS.clear()
    conv = tr.model.layers[0]
    assert not conv.weight.requires_grad and conv.weight.shape == (24, 3, 2, 2)
    x = (tr.x_train[:500].float() - tr.offset) * tr.scale
    out = torch.nn.functional.conv2d(x, conv.weight[:12]).permute(0, 2, 3, 1).reshape(-1, 12)
    cov = out.T @ out / len(out)
    # grey digits as RGB: only 4 of the 12 patch directions vary; those come out with unit variance
    assert torch.allclose(cov.diagonal()[-4:], torch.ones(4), atol=0.1) and cov.diagonal()[:8].max() < 1e-3
    assert (cov - torch.diag(cov.diagonal())).abs().max() < 0.1  # decorrelated
    filters, stem_bias, g1, g2 = tr.optimizer.param_groups  # Muon; then Nesterov SGD at MUON's sgd_lr
    convs = [m for m in tr.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [id(p) for p in filters["params"]] == [id(m.weight) for m in convs[1:]]
    assert stem_bias["params"] == [conv.bias]
    assert filters["orthogonalize"] and filters["normalize"] and filters["weight_decay"] == 0
    assert filters["momentum"] == cifar10_fast.HYP["momentum"] and g1["momentum"] == cifar10_fast.MUON["sgd_momentum"]
    sgd_lr = cifar10_fast.MUON["sgd_lr"]
    assert stem_bias["initial_lr"] * stem_bias["weight_decay"] == pytest.approx(cifar10_fast.MUON["sgd_decay"])
    assert len(g1["params"]) == 1 and g1["initial_lr"] == pytest.approx(sgd_lr / 81)
    assert g1["weight_decay"] == pytest.approx(stem_bias["weight_decay"] * 81)
    bn = [m for m in tr.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert {id(p) for p in g2["params"]} == {id(m.bias) for m in bn} and not any(m.weight.requires_grad for m in bn)
    assert g2["initial_lr"] == pytest.approx(sgd_lr * 64)
    assert g2["initial_lr"] * g2["weight_decay"] == pytest.approx(cifar10_fast.MUON["sgd_decay"])  # same per step
    lr = cifar10_fast.HYP["lr"]
    assert tr.scheduler.base_lrs == pytest.approx([lr, sgd_lr, sgd_lr / 81, sgd_lr * 64])
    images, labels = tr.batch(torch.arange(128))
    loss, _ = tr.step(images, labels)
    assert conv.weight.grad is None and conv.bias.grad is not None and torch.isfinite(loss)
    for level in (1, 2):
        assert 0.05 < tta_accuracy(tr, tr.splits.test, level=level) <= 1


def test_with_nesterov_the_head_and_shifts_scale_from_the_first_group(tmp_path):
    tr = _trainer(tmp_path, solver="nesterov", lr=1.5, momentum=0.85)
    cifar10_fast._TRAINERS.clear()
    g0, g1, g2 = tr.optimizer.param_groups
    assert tr.model.layers[0].bias in g0["params"] and len(g1["params"]) == 1
    assert tr.scheduler.base_lrs == pytest.approx([1.5, 1.5 / 81, 1.5 * 64])
    assert g2["lr"] * g2["weight_decay"] == pytest.approx(g0["lr"] * g0["weight_decay"])


def test_whitening_bias_trains_for_three_epochs_then_freezes(tmp_path):
    """cifar10-fast's epoch hook: epochs 0-2 train the first conv's bias; from epoch 3 it has no gradient and keeps
    its value, while the rest of the network still trains."""
    from convforge.engine.progress import EpochProgress

    tr = _trainer(tmp_path)
    cifar10_fast._TRAINERS.clear()
    freeze = [h for h in tr.epoch_hooks if getattr(h, "func", None) is freeze_first_conv_bias]
    assert len(freeze) == 1 and cifar10_fast.TRICKS["stem_bias_epochs"] == 3
    bias = tr.model.layers[0].bias
    head = next(m for m in tr.model.modules() if isinstance(m, torch.nn.Linear)).weight
    seen = []
    with EpochProgress(5, tr.steps_per_epoch, live=False, log=lambda s: None) as progress:
        for epoch in range(5):
            before, head_before = bias.detach().clone(), head.detach().clone()
            progress.start_epoch(epoch + 1)
            tr.train_epoch(progress)
            seen.append((bias.requires_grad, not torch.equal(bias, before), not torch.equal(head, head_before)))
    assert seen == [(True, True, True)] * 3 + [(False, False, True)] * 2
    assert bias.grad is None


def test_folder_fast_trains_its_convs_by_muon_and_the_rest_by_nesterov(tmp_path):
    from convforge.data import DataConfig, load_data
    from convforge.engine import TrainConfig
    from convforge.engine.loop import Trainer
    from convforge.recipes import folder_fast
    from convforge.run import Run

    over = dict(source="digits", device="cpu", channels=3, image_size=(32, 32), batch_size=64, resize="stretch")
    data = DataConfig(source="digits", split=(0.8, 0.1, 0.1), channels=3, image_size=(32, 32))
    splits = load_data(data, progress=False)
    tr = Trainer(TrainConfig(**{**folder_fast.HYP, **over}), Run(tmp_path / "r"), splits, log=print)
    filters, plain = tr.optimizer.param_groups
    convs = [m.weight for m in tr.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [id(p) for p in filters["params"]] == [id(w) for w in convs] and len(convs) == 9
    assert filters["normalize"] and filters["ns_steps"] == 3 and filters["weight_decay"] == 0
    assert not plain["orthogonalize"] and plain["momentum"] == folder_fast.MUON["sgd_momentum"]
    assert tr.scheduler.base_lrs == pytest.approx([folder_fast.HYP["lr"], folder_fast.MUON["sgd_lr"]])
    assert plain["initial_lr"] * plain["weight_decay"] == pytest.approx(folder_fast.MUON["sgd_decay"])
    images, labels = tr.batch(torch.arange(64))
    loss, _ = tr.step(images, labels)
    assert torch.isfinite(loss)
    # held at norm sqrt(out channels) before each step, which then moves them by about lr (relative)
    assert [w.norm().item() for w in convs] == pytest.approx([w.shape[0] ** 0.5 for w in convs], rel=0.02)

"""Lookahead's mixing table and hook, alternating flips, and the layers the fast CIFAR net added."""

from __future__ import annotations

import pytest
import torch

from convforge.engine import TrainConfig
from convforge.engine.augment import AlternateFlip, Augment, augment_batch
from convforge.engine.lookahead import Lookahead, mixing_table
from convforge.errors import ConfigError
from convforge.models import build_model, resolve_spec


def test_mixing_table_follows_airbench_schedule():
    rows = mixing_table(every=5, steps_per_epoch=10, total=100)
    active = [s for s, (a, b) in enumerate(rows) if b]
    assert active[0] == 35 and rows[35] == (1.0, 1.0)  # first step past 30%: the average starts as a copy
    assert rows[40][0] == pytest.approx(1 - 0.95**5 * 0.4**3)
    assert rows[36] == (0.0, 0.0) and rows[100][0] == pytest.approx(1 - 0.95**5)  # strongest averaging at the end
    assert all(rows[s][1] == 1.0 for s in range(40, 101, 10))  # every epoch ends on the average


def test_lookahead_hook_moves_weights_to_the_average():
    model = torch.nn.Sequential(torch.nn.Linear(2, 1, bias=False), torch.nn.BatchNorm1d(1))
    hook = Lookahead(model, lambda: 0, every=2, steps_per_epoch=4, total=10)
    hook.start_epoch()
    weight = model[0].weight
    history = []
    for _ in range(10):
        with torch.no_grad():
            weight.add_(1.0)  # the optimizer's step
        hook()
        history.append(weight[0, 0].item())
    w0 = history[0] - 1
    assert history[3] == pytest.approx(w0 + 4)  # step 4: the average starts as a copy
    rho = 0.95**2 * 0.6**3  # step 6 mixes: avg + (1 - rho) (w - avg), and w takes the average
    assert history[5] == pytest.approx(w0 + 4 + (1 - rho) * 2, abs=1e-5)
    assert history[6] == pytest.approx(history[5] + 1, abs=1e-5)  # off-steps leave the weights alone


def test_alternate_flip_mirrors_each_image_every_other_epoch():
    flips = AlternateFlip(1000, seed=3, device=torch.device("cpu"))
    rows = torch.arange(1000)
    flips.start_epoch(0)
    even = flips.mask(rows)
    flips.start_epoch(1)
    odd = flips.mask(rows)
    assert torch.equal(even, ~odd) and 400 < int(even.sum()) < 600
    flips.start_epoch(2)
    assert torch.equal(flips.mask(rows), even)
    images = torch.arange(8.0).view(2, 1, 1, 4)
    out = augment_batch(images, Augment(flip=True), torch.Generator(), flip=torch.tensor([True, False]))
    assert torch.equal(out[0], images[0].flip(2)) and torch.equal(out[1], images[1])


def test_train_config_checks_the_new_options():
    with pytest.raises(ConfigError, match="--flip-mode must be one of random, alternate"):
        TrainConfig(flip_mode="sometimes").validate()
    with pytest.raises(ConfigError, match="--lookahead must be >= 0"):
        TrainConfig(lookahead=-1).validate()


def test_gelu_unscaled_batchnorm_global_max_and_dirac_init():
    raw = {"name": "t", "init": "dirac", "layers": [
        {"conv": {"filters": 4, "kernel": 3, "padding": "same", "bias": True}},
        {"batchnorm": {"scale": False}}, "gelu", "global_maxpool", {"dense": {"units": "classes"}},
        "softmax"]}  # fmt: skip
    spec = resolve_spec(raw, in_shape=(2, 5, 5), num_classes=3)
    model = build_model(spec)
    conv, bn = model.layers[0], model.layers[1]
    assert spec.param_count == 4 * 2 * 9 + 4 + 2 * 4 + 4 * 3 + 3 == sum(p.numel() for p in model.parameters())
    assert not bn.weight.requires_grad and torch.count_nonzero(conv.bias) == 0
    x = torch.randn(1, 2, 5, 5)
    identity = torch.nn.functional.conv2d(x, conv.weight[:2], padding=1)
    assert torch.allclose(identity, x)  # the first in-channels filters pass their input through
    pooled = model.layers[3](torch.arange(8.0).view(1, 2, 2, 2))
    assert pooled.tolist() == [[3.0, 7.0]]
    assert isinstance(model.layers[2], torch.nn.GELU)

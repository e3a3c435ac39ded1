"""The loop with the new options on CPU (partial batches, determinism), the recipe registry and specs."""

from __future__ import annotations

import pytest
import torch

from convforge import api
from convforge.engine import TrainConfig
from convforge.engine.fast import use_graphs
from convforge.engine.recipes import RECIPES
from convforge.models import resolve_spec
from convforge.recipes import cifar10_fast, fashion_mnist_fast, folder_fast, mnist_fast, pick


def test_recipes_are_registered_and_picked_by_source():
    for name in ("fast", "mnist-fast", "fashion-mnist-fast", "cifar10-fast", "folder-fast"):
        assert name in RECIPES
    assert pick("mnist") is mnist_fast and pick("fashion-mnist") is fashion_mnist_fast
    assert pick("cifar10") is cifar10_fast and pick(".data/cifar10-jpg-train.tar.gz") is cifar10_fast
    assert pick("photos/") is folder_fast


@pytest.mark.parametrize(
    "module, shape", [(mnist_fast, (1, 28, 28)), (fashion_mnist_fast, (1, 28, 28)), (cifar10_fast, (3, 32, 32)),
                      (folder_fast, (3, 128, 128))],
)  # fmt: skip
def test_recipe_networks_resolve(module, shape):
    spec = resolve_spec(module.NAME, in_shape=shape, num_classes=10)
    assert spec.param_count > 0
    TrainConfig(**{k: v for k, v in module.HYP.items()}).validate()


def test_graphs_are_off_on_cpu():
    assert not use_graphs(TrainConfig(), torch.device("cpu"))
    assert not use_graphs(TrainConfig(cuda_graphs=False), torch.device("cuda"))
    assert use_graphs(TrainConfig(), torch.device("cuda"))


def _train(tmp_path, name, **kw):
    opts = dict(epochs=1, batch_size=100, device="cpu", progress=False, log=lambda s: None, model="mlp")
    opts.update(kw)
    return api.train("digits", out=str(tmp_path / name), **opts)


def test_partial_last_batch_and_fixed_seed_determinism(tmp_path):
    aug = dict(crop_pad=1, cutout=2, brightness=0.1, contrast=0.1, flip=True)
    a = _train(tmp_path, "a", **aug)
    b = _train(tmp_path, "b", **aug)
    assert a.history[0]["train_loss"] == b.history[0]["train_loss"]
    assert a.test_accuracy == b.test_accuracy
    assert a.history[0]["train_loss"] > 0  # digits: 1,437 training images, so the last batch of 100 is partial

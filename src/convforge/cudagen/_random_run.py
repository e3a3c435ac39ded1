"""Runs with random-but-seeded weights, for codegen tests and benchmarks (no trainer or data needed)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..models import build_model, resolve_spec
from ..run import Run

ZOO_SHAPES = {  # zoo name -> (in_shape, classes) that its reports use
    "mlp": ((1, 28, 28), 10),
    "digits-cnn": ((1, 28, 28), 10),
    "lenet5": ((1, 32, 32), 10),
    "simple-cnn": ((3, 64, 64), 2),
    "imagenette-cnn": ((3, 64, 64), 10),
    "alexnet": ((3, 224, 224), 10),
    "vgg11": ((3, 32, 32), 10),
    "resnet18": ((3, 32, 32), 10),
    # the fast recipes' networks (registered by convforge.recipes)
    "mnist-fast": ((1, 28, 28), 10),
    "fashion-mnist-fast": ((1, 28, 28), 10),
    "cifar10-fast": ((3, 32, 32), 10),
    "folder-fast": ((3, 128, 128), 10),
}


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Seeded weights; batchnorm gets non-trivial affine and running stats so that folding is exercised."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                n = mod.num_features
                mod.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                mod.bias.copy_(torch.randn(n, generator=gen) * 0.1)
                mod.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                mod.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            elif isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = mod.weight[0].numel()
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                if mod.bias is not None:
                    mod.bias.copy_(torch.randn(mod.bias.shape, generator=gen) * 0.05)


def make_run(path: Path, spec, in_shape=(1, 28, 28), num_classes: int = 10, seed: int = 0) -> Run:
    spec = resolve_spec(spec, in_shape=in_shape, num_classes=num_classes)
    model = build_model(spec).eval()
    randomize(model, seed)
    c = in_shape[0]
    meta = dict(
        classes=[f"class{i}" for i in range(spec.num_classes)],
        output=spec.output,
        preprocessing=dict(
            channels=c, height=in_shape[1], width=in_shape[2], resize="stretch", mean=[0.5] * c, std=[0.25] * c
        ),
    )
    run = Run.create(path, meta=meta, spec_dict=spec.to_dict(), config_dict={})
    run.save_weights(model.state_dict())
    return run

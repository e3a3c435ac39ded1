"""engine/warmup.py's model step: the model it runs is made without the global random generators (the run's thread
seeds and draws from them meanwhile) and without importing torch.fx's symbolic shapes (sympy: ~1.8 s)."""

from __future__ import annotations

import torch

import convforge.recipes  # noqa: F401  registers the recipes' models
from convforge.engine import warmup
from convforge.models import build_model


def test_materialized_model_keeps_shapes_and_flags_and_leaves_the_global_generator_alone() -> None:
    spec = warmup._resolved("cifar10-fast", 3, (32, 32))
    with torch.device("meta"):
        net = build_model(spec)
    shapes = {name: (t.shape, t.dtype, t.requires_grad) for name, t in net.state_dict(keep_vars=True).items()}
    state = torch.get_rng_state()
    made = warmup._materialized(net, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), state)
    tensors = made.state_dict(keep_vars=True)
    assert {name: (t.shape, t.dtype, t.requires_grad) for name, t in tensors.items()} == shapes
    assert all(t.device.type == "cpu" and torch.isfinite(t).all() for t in tensors.values())
    logits = made(torch.rand(2, 3, 32, 32))
    logits.sum().backward()
    assert logits.shape == (2, 10) and all(p.grad is not None for p in made.parameters() if p.requires_grad)


def test_materialized_model_imports_no_symbolic_shapes(fresh_python) -> None:
    code = (
        "import sys, torch\n"
        "import convforge.recipes\n"
        "from convforge.engine import warmup\n"
        "from convforge.models import build_model\n"
        "with torch.device('meta'):\n"
        "    net = build_model(warmup._resolved('mnist-fast', 1, (28, 28)))\n"
        "warmup._materialized(net, torch.device('cpu'), torch.Generator())(torch.rand(2, 1, 28, 28)).sum().backward()\n"
        "print('sympy' in sys.modules)\n"
    )
    assert fresh_python(code) == "False"

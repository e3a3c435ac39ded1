"""build_model: state-dict names, logits, channels_last, init; summary; transfer helpers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convforge.models import (
    build_model,
    copy_matching_weights,
    feature_parameters,
    format_summary,
    head_parameters,
    resolve_spec,
    summary_rows,
)
from convforge.models._modules import Maxout, WindowMaxPool

RES = [
    {"conv": {"filters": 4, "padding": 1, "bias": False, "norm": "batchnorm", "act": "relu"}},
    {"residual": {"layers": [{"conv": {"filters": 8, "stride": 2, "padding": 1, "norm": "batchnorm"}}]}},
    {"residual": {"layers": [{"conv": {"filters": 8, "padding": 1}}], "act": "leaky_relu"}},
    {"maxout": {"pieces": 2}},
    "global_avgpool",
    {"dense": {"units": "classes"}},
    "softmax",
    "classification",
]


def test_one_module_per_layer_and_state_dict_keys() -> None:
    spec = resolve_spec(RES, (3, 8, 8), 5)
    model = build_model(spec)
    assert len(model.layers) == len(spec.layers)
    keys = list(model.state_dict())
    assert keys[:2] == ["layers.0.weight", "layers.1.weight"]
    assert "layers.3.body.0.weight" in keys and "layers.3.body.1.running_var" in keys
    assert "layers.3.shortcut.0.weight" in keys and "layers.3.shortcut.1.bias" in keys
    assert "layers.4.body.0.bias" in keys and not any(k.startswith("layers.4.shortcut") for k in keys)
    assert isinstance(model.layers[4].act, nn.LeakyReLU)
    assert isinstance(model.layers[-1], nn.Identity) and isinstance(model.layers[-2], nn.Identity)


def test_returns_logits_but_inner_activations_compute() -> None:
    layers = ["flatten", {"dense": {"units": 4, "act": "sigmoid"}}, {"dense": {"units": "classes", "act": "softmax"}}]
    model = build_model(resolve_spec(layers, (1, 2, 2), 3))
    assert isinstance(model.layers[2], nn.Sigmoid) and isinstance(model.layers[4], nn.Identity)
    out = model(torch.randn(5, 1, 2, 2))
    assert not torch.allclose(out.sum(1), torch.ones(5))  # logits, not probabilities


def test_maxout_groups_consecutive_channels() -> None:
    x = torch.arange(8.0).reshape(1, 4, 1, 2)
    expected = torch.maximum(x[:, 0::2], x[:, 1::2])
    assert torch.equal(Maxout(2)(x), expected)


@pytest.mark.parametrize("shape, k", [((3, 5, 31, 31), 2), ((2, 70, 7, 9), 3), ((2, 3, 8, 8), 2)])
def test_window_max_kernels_equal_max_pool2d(triton_interpreter, shape, k) -> None:
    """The Triton max pool (run by Triton's CPU interpreter here): output and gradient equal max_pool2d's, ties
    included (first maximum of the window), odd sizes drop the last row/column, channels beyond one block of 64."""
    from convforge.models import _kernels

    x = torch.randint(-3, 4, shape).float().contiguous(memory_format=torch.channels_last)  # many ties
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    want, got = nn.functional.max_pool2d(a, k), _kernels.WindowMax.apply(b, k, k)
    grad = torch.randn_like(want)
    want.backward(grad)
    got.backward(grad)
    assert torch.equal(got, want) and torch.equal(b.grad, a.grad)
    assert got.is_contiguous(memory_format=torch.channels_last)


def test_maxpool_layer_is_a_maxpool2d_and_keeps_max_pool2d_on_cpu() -> None:
    layers = [{"maxpool": {"kernel": 2}}, "flatten", {"dense": {"units": "classes"}}, "softmax"]
    model = build_model(resolve_spec(layers, (1, 4, 4), 3))
    assert isinstance(model.layers[0], WindowMaxPool) and isinstance(model.layers[0], nn.MaxPool2d)
    x = torch.randn(2, 1, 4, 4)
    assert torch.equal(model.layers[0](x), nn.functional.max_pool2d(x, 2))


@pytest.mark.parametrize("name", ["resnet18", "digits-cnn", "alexnet"])
def test_channels_last_matches_contiguous(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(resolve_spec(name, (3, 32, 32), 4)).eval()
    x = torch.randn(2, 3, 32, 32)
    ref = model(x)
    model = model.to(memory_format=torch.channels_last)
    out = model(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_init_options() -> None:
    layers = ["flatten", {"dense": {"units": 64, "act": "relu"}}, {"dense": {"units": "classes"}}, "softmax"]
    torch.manual_seed(0)
    default = build_model(resolve_spec(layers, (1, 16, 16), 3))
    assert default.layers[1].bias.abs().sum() > 0  # PyTorch's default: uniform biases
    for init in ("he", "glorot"):
        model = build_model(resolve_spec({"init": init, "layers": layers}, (1, 16, 16), 3))
        assert model.layers[1].bias.abs().sum() == 0
    he = build_model(resolve_spec({"init": "he", "layers": layers}, (1, 16, 16), 3))
    assert abs(he.layers[1].weight.std().item() - (2 / 256) ** 0.5) < 0.01


def test_summary_rows_and_text() -> None:
    spec = resolve_spec(RES, (3, 8, 8), 5)
    rows = summary_rows(spec)
    assert [r["index"] for r in rows[:6]] == ["0", "1", "2", "3", "3.body.0", "3.body.1"]
    assert rows[6]["index"] == "3.shortcut.0" and rows[6]["depth"] == 1
    top = [r for r in rows if r["depth"] == 0]
    assert sum(r["params"] for r in top) == spec.param_count
    assert rows[0]["details"] == "3x3/1 pad 1, 4 filters, bias False"
    text = format_summary(spec)
    assert text.splitlines()[0] == 'Model: "custom"  input 3x8x8, 5 classes, output softmax'
    assert text.endswith(f"Total params: {spec.param_count:,}")
    assert "3.body.0" in text and "global_avgpool_1 (global_avgpool)" in text


def test_transfer_helpers() -> None:
    src = build_model(resolve_spec("lenet5", (1, 28, 28), 10))
    dst = build_model(resolve_spec("lenet5", (1, 28, 28), 4))
    copied = copy_matching_weights(src.state_dict(), dst)
    head = f"layers.{len(dst.layers) - 2}"
    assert f"{head}.weight" not in copied and "layers.0.weight" in copied
    assert torch.equal(dst.layers[0].weight, src.layers[0].weight)
    spec = dst.spec
    head_ids = {id(p) for p in head_parameters(dst, spec)}
    feat_ids = {id(p) for p in feature_parameters(dst, spec)}
    assert head_ids == {id(dst.layers[-2].weight), id(dst.layers[-2].bias)}
    assert head_ids | feat_ids == {id(p) for p in dst.parameters()} and not head_ids & feat_ids

"""The small dense op (models/_small_dense.py): forward and gradients equal flatten + linear (+ ReLU) through Triton's
CPU interpreter in fp32, for channels_last and NCHW maps and matrices, with and without bias; which layers SpecNet
routes to it."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convforge.models import build_model, resolve_spec

triton = pytest.importorskip("triton")

KERNELS = ("_small_dense", "_small_dense_triton", "_source")  # for conftest.py interpreted


@pytest.mark.parametrize(
    "shape, layout, out, relu, bias",
    [
        ((70, 32, 7, 7), torch.channels_last, 10, False, True),  # digits-cnn's classifier on its channels_last map
        ((5, 3, 4, 6), torch.contiguous_format, 130, True, True),  # two output blocks, ReLU fused
        ((33, 200), torch.contiguous_format, 20, True, False),  # a matrix (a dense layer after a dense layer)
        ((9, 100), torch.contiguous_format, 12, False, True),  # few features: no split of the forward's sums
    ],
)
def test_forward_and_gradients_equal_flatten_then_linear(interpreted, shape, layout, out, relu, bias):
    torch.manual_seed(0)
    x = torch.randn(shape).contiguous(memory_format=layout).requires_grad_()
    linear = nn.Linear(x[0].numel(), out, bias=bias)
    y = interpreted.SmallDense.apply(x, linear.weight, linear.bias, relu, torch.float32)
    expected = linear(x.flatten(1))
    expected = F.relu(expected) if relu else expected
    torch.testing.assert_close(y, expected, atol=1e-4, rtol=1e-4)
    g = torch.randn_like(y)
    leaves = [t for t in (x, linear.weight, linear.bias) if t is not None]
    grads = torch.autograd.grad(y, leaves, g)
    for got, want in zip(grads, torch.autograd.grad(expected, leaves, g)):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert grads[0].stride() == x.stride()  # a map's gradient in the map's layout (channels_last: no copy)


@pytest.mark.parametrize(
    "shape, layout, hidden, out, bias",
    [
        ((5, 32, 3, 3), torch.channels_last, 130, 10, True),  # simple-cnn's head: hidden in three blocks
        ((33, 200), torch.contiguous_format, 20, 7, False),  # the MLP's head on a matrix, no biases
        ((70, 4, 5, 5), torch.contiguous_format, 64, 64, True),  # rows over one block; the widest second layer
    ],
)
def test_pair_forward_and_gradients_equal_dense_relu_dense(interpreted, shape, layout, hidden, out, bias):
    """SmallDensePair: the two Linears' output and all five gradients as flatten, linear, ReLU, linear (fp32)."""
    torch.manual_seed(0)
    x = torch.randn(shape).contiguous(memory_format=layout).requires_grad_()
    first, second = nn.Linear(x[0].numel(), hidden, bias=bias), nn.Linear(hidden, out, bias=bias)
    y = interpreted.SmallDensePair.apply(x, first.weight, first.bias, second.weight, second.bias, torch.float32)
    expected = second(F.relu(first(x.flatten(1))))
    torch.testing.assert_close(y, expected, atol=1e-4, rtol=1e-4)
    g = torch.randn_like(y)
    leaves = [t for t in (x, first.weight, first.bias, second.weight, second.bias) if t is not None]
    grads = torch.autograd.grad(y, leaves, g)
    for got, want in zip(grads, torch.autograd.grad(expected, leaves, g)):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert grads[0].stride() == x.stride()


def test_which_layers_it_starts_at():
    from convforge.models import _small_dense

    digits = build_model(resolve_spec("digits-cnn", in_shape=(1, 28, 28), num_classes=10))
    assert _small_dense.starts(digits.layers) == {11: 12}  # the flatten before the classifier
    assert digits.small_dense == {11: 12}
    simple = build_model(resolve_spec("simple-cnn", in_shape=(3, 32, 32), num_classes=10))
    assert simple.small_dense == {6: 7, 9: 9}
    assert simple.dense_pairs == {6: 9}  # flatten, dense 128, ReLU, dense 10: one op
    assert digits.dense_pairs == {}  # one Linear
    mlp = build_model(resolve_spec("mlp", in_shape=(1, 28, 28), num_classes=10))
    assert mlp.dense_pairs == {0: 3}
    wide = nn.ModuleList([nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, _small_dense.PAIR_OUT + 1)])
    relu_after = nn.ModuleList([nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3), nn.ReLU()])
    for layers in (wide, relu_after):  # a wide second layer, a ReLU after it: each Linear on its own
        assert _small_dense.pairs(layers, _small_dense.starts(layers)) == {}
    layers = nn.ModuleList([nn.Flatten(0), nn.Linear(4, 2)])
    assert _small_dense.starts(layers) == {1: 1}  # another flatten: the Linear alone
    x = torch.randn(2, 4)
    assert not _small_dense.usable(layers, 1, 1, x)  # the CPU, no autocast: PyTorch's layers


def test_side_by_side_runs_both_calls_in_order_outside_a_capture():
    """models/_kernels.py side_by_side: outside a CUDA graph capture (here, the CPU) the input and weight gradients'
    launches simply run one after the other; None is nothing to run. (Captured, the GPU tests' graph epochs equal
    the eager ones.)"""
    from convforge.models import _kernels

    calls = []
    _kernels.side_by_side(lambda: calls.append("input"), lambda: calls.append("weight"))
    _kernels.side_by_side(None, lambda: calls.append("weight only"))
    _kernels.side_by_side(lambda: calls.append("input only"), None)
    assert calls == ["input", "weight", "weight only", "input only"]


@pytest.mark.gpu
@pytest.mark.parametrize("features, bias", [(128, False), (1568, True)])  # unsplit (mnist-fast's head), split
def test_the_warm_up_compiles_what_a_partial_batch_launches(features, bias):
    """compile_jobs' kernels are the ones a launch picks: a 96-row batch (an epoch's tail) compiles nothing more."""
    if not torch.cuda.is_available():
        pytest.skip("no GPU")
    from convforge.models import _small_dense

    linear = nn.Linear(features, 10, bias=bias).cuda()
    for job in _small_dense.compile_jobs(linear, False, torch.bfloat16, torch.bfloat16):
        job()
    kernels = _small_dense._source()

    def compiled() -> int:
        jits = [kernels.dense_forward, kernels.dense_finish, kernels.dense_input_grad, kernels.dense_weight_grad]
        return sum(len(cache[0]) for jit in jits for cache in jit.device_caches.values())

    before = compiled()
    x = torch.randn(96, features, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    y = _small_dense.SmallDense.apply(x, linear.weight, linear.bias, False, torch.bfloat16)
    y.float().sum().backward()
    assert compiled() == before

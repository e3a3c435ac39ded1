"""The trainable small-channel conv (models/_small_conv.py): forward and gradients equal conv2d's (+ ReLU) through
Triton's CPU interpreter in fp32 for paddings, kernel sizes, layouts and biases; which convs qualify; SpecNet routes
them under autocast on CUDA only; on the GPU, a bf16 training step matches cuDNN's within rounding."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convforge.models import build_model, resolve_spec

triton = pytest.importorskip("triton")

KERNELS = ("_small_conv", "_small_conv_triton", "_source")  # for conftest.py interpreted


@pytest.mark.parametrize(
    "cin, cout, kernel, pad, relu, bias, layout, first",
    [
        (1, 8, 3, 1, False, True, torch.contiguous_format, True),  # digits-cnn's first layer on NCHW images
        (8, 16, 3, 1, False, True, torch.channels_last, False),  # digits-cnn's second (a batchnorm follows)
        (3, 32, 3, 0, True, True, torch.channels_last, False),  # simple-cnn's first, valid padding, ReLU fused
        (5, 7, 5, 2, True, False, torch.channels_last, False),  # odd channel counts, 5x5, no bias
        (4, 6, 1, 0, False, True, torch.contiguous_format, False),  # 1x1
    ],
)
def test_forward_and_gradients_equal_conv2d(interpreted, cin, cout, kernel, pad, relu, bias, layout, first):
    torch.manual_seed(0)
    x = torch.randn(2, cin, 9, 11).contiguous(memory_format=layout).requires_grad_(not first)
    w = torch.randn(cout, cin, kernel, kernel).contiguous(memory_format=torch.channels_last).requires_grad_()
    b = torch.randn(cout).requires_grad_() if bias else None
    y = interpreted.SmallConv.apply(x, w, b, ((kernel, kernel), (pad, pad)), relu, torch.float32)
    g = torch.randn_like(y)
    leaves = [t for t in (x, w, b) if t is not None and t.requires_grad]
    grads = torch.autograd.grad(y, leaves, g)

    expected = F.conv2d(x, w, b, padding=pad)
    expected = F.relu(expected) if relu else expected
    assert y.shape == expected.shape and y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, expected, atol=1e-4, rtol=1e-4)
    for got, want, leaf in zip(grads, torch.autograd.grad(expected, leaves, g), leaves):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
        assert got.dtype == leaf.dtype
    assert grads[-2 if bias else -1].stride() == w.stride()  # the weight's own layout: no copy


def test_an_empty_batch_has_zero_weight_gradients(interpreted):
    w = torch.randn(4, 2, 3, 3, requires_grad=True)
    b = torch.randn(4, requires_grad=True)
    y = interpreted.SmallConv.apply(torch.randn(0, 2, 5, 5), w, b, ((3, 3), (1, 1)), False, torch.float32)
    dw, db = torch.autograd.grad(y.sum(), [w, b])
    assert y.shape == (0, 4, 5, 5) and not dw.any() and not db.any()


def test_which_convs_qualify():
    from convforge.models import _small_conv

    assert _small_conv.padding(nn.Conv2d(1, 8, 3, padding=1)) == (1, 1)
    assert _small_conv.padding(nn.Conv2d(3, 32, 3)) == (0, 0)
    assert _small_conv.padding(nn.Conv2d(3, 32, 5, padding="same")) == (2, 2)
    assert _small_conv.padding(nn.Conv2d(3, 32, 4, padding="same")) is None  # PyTorch pads it unevenly
    assert _small_conv.padding(nn.Conv2d(3, 32, 3, stride=2)) is None
    assert _small_conv.padding(nn.Conv2d(64, 128, 3)) is None  # GEMM work for cuDNN
    assert _small_conv.padding(nn.Conv2d(3, 32, 7)) is None
    assert _small_conv.padding(nn.Conv2d(4, 4, 3, groups=2)) is None
    assert _small_conv.padding(nn.Conv2d(4, 4, 3, padding_mode="reflect")) is None
    assert _small_conv.padding(nn.Linear(3, 4)) is None
    x = torch.randn(2, 1, 8, 8)
    assert not _small_conv.usable(nn.Conv2d(1, 8, 3), x)  # a CPU map, no autocast: PyTorch's conv


def test_specnet_marks_its_small_convs():
    digits = build_model(resolve_spec("digits-cnn", in_shape=(1, 28, 28), num_classes=10))
    assert digits.small_conv == {0, 4, 8}
    simple = build_model(resolve_spec("simple-cnn", in_shape=(3, 32, 32), num_classes=10))
    assert simple.small_conv == {0, 3}
    x = torch.randn(2, 1, 28, 28)
    digits.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert digits(x).shape == (2, 10)  # the CPU: PyTorch's layers under CPU autocast


def _step(model, x, labels, autocast=True):
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        loss = F.cross_entropy(model(x).float(), labels)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return loss.detach(), grads


@pytest.mark.gpu
@pytest.mark.parametrize(
    "name, shape", [("digits-cnn", (1, 28, 28)), ("simple-cnn", (3, 32, 32)), ("mlp", (1, 28, 28))]
)
def test_cuda_training_step_is_as_close_to_fp32_as_cudnn(monkeypatch, name, shape):
    """One bf16 step of the same-recipe models (small convs, dense layers and dense pairs on convforge's kernels):
    loss and every parameter gradient as close to an fp32 step's as cuDNN's and cuBLAS's bf16 step is (rounding is
    all either differs by); two runs of the Triton path are bitwise equal (fixed-order sums)."""
    from convforge.models import _small_conv, _small_dense

    if not torch.cuda.is_available():
        pytest.skip("no GPU")
    torch.manual_seed(0)
    model = build_model(resolve_spec(name, in_shape=shape, num_classes=10)).cuda()
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(64, *shape, device="cuda").contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (64,), device="cuda")
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    state = {k: v.clone() for k, v in model.state_dict().items()}  # the batchnorms' running statistics move

    def run(**kw):
        model.load_state_dict(state)
        return _step(model, x, labels, **kw)

    loss, grads = run()
    loss_again, grads_again = run()
    exact_loss, exact = run(autocast=False)
    monkeypatch.setattr(_small_conv, "ENABLED", False)
    monkeypatch.setattr(_small_dense, "ENABLED", False)
    cudnn_loss, cudnn = run()
    assert torch.equal(loss, loss_again) and all(torch.equal(grads[k], grads_again[k]) for k in grads)
    assert abs(loss - exact_loss) <= 2 * abs(cudnn_loss - exact_loss) + 1e-3
    for key, ref in exact.items():
        ours, theirs = (grads[key] - ref).norm().item(), (cudnn[key] - ref).norm().item()
        assert ours <= 1.5 * theirs + 1e-4 * ref.norm().item(), (key, ours, theirs)

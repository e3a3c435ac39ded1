"""The fused small conv + activation forward (models/_conv_act_triton.py) through Triton's CPU interpreter: equal to
F.conv2d then ReLU/GELU for strides, paddings, layouts and biases; SpecNet uses it only where no gradient is wanted."""

import pytest
import torch
from torch import nn

from convforge.models import build_model, resolve_spec

triton = pytest.importorskip("triton")

KERNELS = ("_conv_act", "_conv_act_triton", "_source")  # for conftest.py interpreted


@pytest.mark.parametrize(
    "channels, out, kernel, stride, padding, bias, layout",
    [
        (3, 24, 2, 1, 0, True, torch.channels_last),  # cifar10-fast's whitening conv
        (3, 32, 3, 2, 1, False, torch.channels_last),  # a stride-2 stem, zero padding at the borders
        (2, 8, 3, 1, 1, True, torch.contiguous_format),  # an NCHW prediction batch
        (3, 20, 3, 1, "valid", True, torch.contiguous_format),
    ],
)
@pytest.mark.parametrize("act", [nn.ReLU(), nn.GELU()], ids=["relu", "gelu"])
def test_fused_equals_conv2d_then_activation(interpreted, channels, out, kernel, stride, padding, bias, layout, act):
    torch.manual_seed(0)
    conv = nn.Conv2d(channels, out, kernel, stride=stride, padding=padding, bias=bias)
    x = torch.randn(2, channels, 11, 10).contiguous(memory_format=layout)
    code = interpreted.activation_code(conv, act)
    y = interpreted.conv_act(conv, code, x)
    expected = act(conv(x))
    assert y.shape == expected.shape and y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, expected, atol=1e-5, rtol=1e-4)


def test_which_convs_qualify():
    from convforge.models import _conv_act

    relu = nn.ReLU()
    assert _conv_act.activation_code(nn.Conv2d(3, 24, 2), nn.GELU()) == 1
    assert _conv_act.activation_code(nn.Conv2d(3, 64, 3, stride=2, padding=1), relu) == 0
    assert _conv_act.activation_code(nn.Conv2d(4, 24, 3), relu) is None  # 36 taps: cuDNN's GEMM work
    assert _conv_act.activation_code(nn.Conv2d(3, 256, 3), relu) is None  # more outputs than one accumulator
    assert _conv_act.activation_code(nn.Conv2d(3, 24, 3, padding="same"), relu) is None
    assert _conv_act.activation_code(nn.Conv2d(3, 24, 3, dilation=2), relu) is None
    assert _conv_act.activation_code(nn.Conv2d(3, 24, 3), nn.SiLU()) is None
    conv = nn.Conv2d(3, 24, 2)
    x = torch.randn(2, 3, 8, 8)
    assert _conv_act.fused_code(conv, relu, x) is None  # a CPU tensor: PyTorch's modules


def test_specnet_marks_its_conv_activation_pairs():
    spec = resolve_spec("simple-cnn", in_shape=(3, 32, 32), num_classes=10)
    assert build_model(spec).conv_act == {0}


@pytest.mark.gpu
def test_cuda_frozen_stem_and_eval_run_fused(monkeypatch):
    """cifar10-fast on CUDA: its stem runs fused in eval and once its weight and bias are frozen in training, not while
    the bias trains; logits match PyTorch's layers in bf16 autocast."""
    import convforge.recipes  # noqa: F401
    from convforge.models import _conv_act

    calls = []
    original = _conv_act.conv_act
    monkeypatch.setattr(_conv_act, "conv_act", lambda *a: calls.append(a[1]) or original(*a))
    model = build_model(resolve_spec("cifar10-fast", in_shape=(3, 32, 32), num_classes=10)).cuda()
    model = model.to(memory_format=torch.channels_last)
    stem = model.layers[0]
    stem.weight.requires_grad_(False)
    jit = _conv_act._source().conv_act_forward
    _conv_act.compile_kernel(stem, 1, torch.bfloat16)  # the warm-up thread's call
    compiled = sum(len(cache[0]) for cache in jit.device_caches.values())
    x = torch.randn(64, 3, 32, 32, device="cuda").contiguous(memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        model.train()
        model(x).float().sum().backward()  # the bias trains: PyTorch's conv
        assert calls == [] and stem.bias.grad is not None
        stem.bias.requires_grad_(False)
        model(x).float().sum().backward()
        assert calls == [1]
        model.eval()
        with torch.no_grad():
            assert model(x.contiguous()).shape == (64, 10)  # an NCHW batch, as predictions come
            fused = model(x).float()
            _conv_act.ENABLED = False
            try:
                plain = model(x).float()
            finally:
                _conv_act.ENABLED = True
    assert calls == [1, 1, 1]
    assert sum(len(cache[0]) for cache in jit.device_caches.values()) == compiled  # channels_last and NCHW alike
    torch.testing.assert_close(fused, plain, atol=0.05, rtol=0.05)

"""The fused batchnorm + activation kernels (models/_norm_act_triton.py), run on the CPU through Triton's interpreter:
outputs, running statistics and gradients equal nn.BatchNorm2d followed by nn.ReLU / nn.GELU."""

import pytest
import torch
from torch import nn

from convforge.models import build_model, resolve_spec

triton = pytest.importorskip("triton")

KERNELS = ("_norm_act", "_norm_act_triton", "_source")  # for conftest.py interpreted


def _pair(c: int, act: nn.Module) -> tuple[nn.BatchNorm2d, nn.Module]:
    norm = nn.BatchNorm2d(c, momentum=0.3)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
        norm.running_var.fill_(2.0)
    return norm, act


# (3, 70, 9, 8): two channel blocks, a partial one; (8, 3, 33, 31): 4-channel tiles, 8 statistics programs;
# (2, 70, 40, 32): statistics programs summing several tiles each, the last one short
# itself: the element-wise passes finish the statistics and add the gradient sums themselves (small maps), or
# finishing launches do (FINISHING_PROGRAMS)
@pytest.mark.parametrize("shape", [(3, 70, 9, 8), (8, 3, 33, 31), (2, 70, 40, 32)])
@pytest.mark.parametrize("act", [nn.ReLU(), nn.GELU()], ids=["relu", "gelu"])
@pytest.mark.parametrize("itself", [True, False], ids=["finished-in-apply", "finishing-launches"])
def test_fused_equals_batchnorm_then_activation(interpreted, monkeypatch, shape, act, itself):
    monkeypatch.setattr(interpreted, "FINISHING_PROGRAMS", 10**9 if itself else 0)
    torch.manual_seed(0)
    x = (torch.randn(shape) * 3 + 5).contiguous(memory_format=torch.channels_last)  # a mean far from 0
    norm, _ = _pair(shape[1], act)
    ref_norm = _pair(shape[1], act)[0]
    ref_norm.load_state_dict(norm.state_dict())
    code = interpreted.activation_code(norm, act)
    mine = x.clone().requires_grad_(True)
    ref = x.clone().requires_grad_(True)

    y = interpreted.norm_act(norm, code, mine)
    expected = act(ref_norm(ref))
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, expected, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(norm.running_mean, ref_norm.running_mean)
    torch.testing.assert_close(norm.running_var, ref_norm.running_var, atol=1e-5, rtol=1e-5)
    assert norm.num_batches_tracked.item() == ref_norm.num_batches_tracked.item() == 1

    grad = torch.randn_like(expected)
    y.backward(grad)
    expected.backward(grad)
    torch.testing.assert_close(mine.grad, ref.grad, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(norm.weight.grad, ref_norm.weight.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(norm.bias.grad, ref_norm.bias.grad, atol=1e-4, rtol=1e-4)


def test_frozen_scale_gets_no_gradient_and_runs_are_deterministic(interpreted):
    results = []
    for _ in range(2):
        torch.manual_seed(1)
        x = torch.randn(4, 16, 6, 6).contiguous(memory_format=torch.channels_last)
        norm, act = _pair(16, nn.GELU())
        norm.weight.requires_grad_(False)  # batchnorm "scale: false" (cifar10-fast)
        mine = x.clone().requires_grad_(True)
        y = interpreted.norm_act(norm, 1, mine)
        y.square().sum().backward()
        assert norm.weight.grad is None and norm.bias.grad is not None
        results.append((y, mine.grad, norm.bias.grad))
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_only_plain_batchnorm_and_exact_relu_gelu_pairs_fuse():
    from convforge.models import _norm_act

    norm = nn.BatchNorm2d(4)
    assert _norm_act.activation_code(norm, nn.ReLU()) == 0
    assert _norm_act.activation_code(norm, nn.GELU()) == 1
    assert _norm_act.activation_code(norm, nn.GELU(approximate="tanh")) is None
    assert _norm_act.activation_code(norm, nn.SiLU()) is None
    assert _norm_act.activation_code(nn.SyncBatchNorm(4), nn.ReLU()) is None
    assert _norm_act.activation_code(nn.BatchNorm2d(4, momentum=None), nn.ReLU()) is None
    assert _norm_act.activation_code(nn.BatchNorm2d(4, affine=False), nn.ReLU()) is None
    x = torch.randn(2, 4, 3, 3)
    assert _norm_act.fused_code(norm, nn.ReLU(), x) is None  # a CPU tensor: PyTorch's modules


def test_specnet_marks_its_batchnorm_activation_pairs():
    spec = {
        "in_shape": [3, 16, 16],
        "num_classes": 10,
        "layers": [{"conv": {"filters": 8}}, "batchnorm", "relu", {"conv": {"filters": 8}}, "batchnorm", "tanh",
                   "batchnorm", "gelu", "flatten", {"dense": {"units": "classes"}}, "softmax"],
    }  # fmt: skip
    model = build_model(spec)
    assert model.norm_act == {1, 6}
    x = torch.randn(2, 3, 16, 16)
    model.train()
    assert model(x).shape == (2, 10)  # on the CPU the modules run one by one


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(1024, 64, 15, 15), (128, 8, 28, 28), (256, 384, 4, 4)])
@pytest.mark.parametrize("act", [nn.ReLU(), nn.GELU()], ids=["relu", "gelu"])
def test_cuda_bf16_fused_matches_fp32_reference_and_captures(shape, act):
    """On the GPU with bf16 maps (the training setting): close to nn.BatchNorm2d + activation computed in fp32 on the
    same values (bf16 rounding of the output and of GELU's stored gradient apart), and a CUDA-graph replay equals
    the eager call bit for bit."""
    from convforge.models import _norm_act

    torch.manual_seed(0)
    x = (torch.randn(shape, device="cuda") * 2 + 1).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    norm, ref_norm = _pair(shape[1], act)[0].cuda(), _pair(shape[1], act)[0].cuda()
    ref_norm.load_state_dict(norm.state_dict())
    grad = torch.randn(shape, device="cuda").to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    mine, ref = x.clone().requires_grad_(True), x.float().requires_grad_(True)
    y = _norm_act.norm_act(norm, _norm_act.activation_code(norm, act), mine)
    expected = act(ref_norm(ref))
    y.backward(grad)
    expected.backward(grad.float())
    assert y.dtype == mine.grad.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), expected, atol=1e-2, rtol=1e-2)
    torch.testing.assert_close(norm.running_mean, ref_norm.running_mean, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(norm.running_var, ref_norm.running_var, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(mine.grad.float(), ref.grad, atol=2e-2, rtol=2e-2)
    rows = shape[0] * shape[2] * shape[3]
    torch.testing.assert_close(norm.bias.grad, ref_norm.bias.grad, atol=0.01 * rows**0.5, rtol=1e-2)
    torch.testing.assert_close(norm.weight.grad, ref_norm.weight.grad, atol=0.01 * rows**0.5, rtol=1e-2)

    def step():
        y = _norm_act.norm_act(norm, _norm_act.activation_code(norm, act), mine)
        return y.detach(), torch.autograd.grad(y, (mine, norm.weight, norm.bias), grad)

    del y, expected  # their autograd graphs hold the leaves' gradient nodes on the default stream: not capturable
    eager = step()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = step()
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(captured[0], eager[0])
    for a, b in zip(captured[1], eager[1]):
        assert torch.equal(a, b)


@pytest.mark.gpu
def test_cuda_specnet_trains_through_the_fused_pairs(monkeypatch):
    """digits-cnn in training on CUDA runs its three (batchnorm, relu) pairs fused; in eval mode, PyTorch's modules."""
    from convforge.engine.transfer import freeze_batchnorm
    from convforge.models import _norm_act

    calls = []
    original = _norm_act.NormAct.apply
    monkeypatch.setattr(_norm_act.NormAct, "apply", lambda *a: calls.append(a[4]) or original(*a))  # its ACT code
    model = build_model(resolve_spec("digits-cnn", in_shape=(1, 28, 28), num_classes=10)).cuda()
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(16, 1, 28, 28, device="cuda").contiguous(memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        model.train()
        model(x).float().sum().backward()
        assert calls == [0, 0, 0]
        model.eval()
        model(x)
        assert calls == [0, 0, 0]
        model.train()
        freeze_batchnorm(model)  # transfer learning: batchnorms keep their statistics while the rest trains
        stats = [m.running_mean.clone() for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        model(x).float().sum().backward()
    assert calls == [0, 0, 0]
    after = [m.running_mean for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.equal(a, b) for a, b in zip(stats, after))


@pytest.mark.gpu
def test_cuda_compile_kernels_covers_what_training_launches():
    """compile_kernels (the warm-up thread's call) compiles exactly the specializations a forward + backward on
    real maps then launches: nothing compiles at the first training step."""
    from convforge.models import _norm_act

    k = _norm_act._source()
    jits = [k.stats_partial, k.stats_finish, k.apply_forward, k.grad_partial, k.sum_partials, k.grad_apply]

    def compiled() -> int:
        return sum(len(cache[0]) for jit in jits for cache in jit.device_caches.values())

    cases = [((32, 48, 15, 15), nn.GELU()), ((16, 384, 4, 4), nn.ReLU()), ((1024, 64, 15, 15), nn.GELU())]
    itself = [_norm_act.finishes_itself(n * h * w, c) for (n, c, h, w), _ in cases]
    assert itself == [True, True, False]  # the elementwise passes finish the small maps' sums, launches the big one's
    _norm_act.compile_kernels(torch.bfloat16, {(48, 1, True), (384, 0, True), (64, 1, False)})
    before = compiled()
    assert before >= 10
    for shape, act in cases:
        norm = nn.BatchNorm2d(shape[1]).cuda()
        x = torch.randn(shape, device="cuda").to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
        y = _norm_act.norm_act(norm, _norm_act.activation_code(norm, act), x.requires_grad_(True))
        y.float().sum().backward()
    torch.cuda.synchronize()
    assert compiled() == before

"""engine/cross_entropy.py: the fused loss equals F.cross_entropy(logits.float(), ...) in loss and gradient (run by
Triton's CPU interpreter here; on CUDA under bf16 autocast and inside a captured graph with -m gpu); which calls
fall back to PyTorch (its compile for sm_90: tests/models/test_kernels_compile.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from convforge.engine import cross_entropy as ce

SHAPES = [(1, 10), (3, 10), (33, 10), (200, 7), (64, 1000)]


def reference(logits: torch.Tensor, labels: torch.Tensor, smoothing: float) -> tuple[torch.Tensor, torch.Tensor]:
    """PyTorch's loss and its gradient w.r.t. the logits (in their dtype: the cast's backward rounds it)."""
    x = logits.detach().clone().requires_grad_()
    loss = F.cross_entropy(x.float(), labels, label_smoothing=smoothing)
    return loss.detach(), torch.autograd.grad(loss, x)[0]


def fused(logits: torch.Tensor, labels: torch.Tensor, smoothing: float) -> tuple[torch.Tensor, torch.Tensor]:
    x = logits.detach().requires_grad_()  # a view keeps its strides (a clone of a column slice would not)
    loss = ce.FusedCrossEntropy.apply(x, labels, smoothing)
    return loss.detach(), torch.autograd.grad(loss, x)[0]


def batch(rows: int, classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, classes, generator=gen) * 3
    return logits, torch.randint(0, classes, (rows,), generator=gen)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("rows, classes", SHAPES)
def test_fp32_loss_and_gradient_equal_pytorch(triton_interpreter, rows, classes, smoothing) -> None:
    logits, labels = batch(rows, classes)
    loss, grad = fused(logits, labels, smoothing)
    want_loss, want_grad = reference(logits, labels, smoothing)
    assert loss.dtype == torch.float32 and loss.shape == ()
    torch.testing.assert_close(loss, want_loss, rtol=1e-6, atol=0)
    assert grad.dtype == torch.float32 and grad.shape == logits.shape
    # relative to the largest entry: entries near zero differ in their last bits of an fp32 softmax
    scale = want_grad.abs().max().item()
    torch.testing.assert_close(grad, want_grad, rtol=1e-6, atol=1e-6 * scale)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("rows, classes", SHAPES)
def test_bf16_gradient_within_bf16_rounding_of_pytorch(triton_interpreter, rows, classes, smoothing) -> None:
    logits, labels = batch(rows, classes, seed=1)
    logits = logits.bfloat16()
    loss, grad = fused(logits, labels, smoothing)
    want_loss, want_grad = reference(logits, labels, smoothing)
    torch.testing.assert_close(loss, want_loss, rtol=1e-6, atol=0)  # both in fp32 from the same bf16 values
    assert grad.dtype == torch.bfloat16
    exact = reference(logits.float(), labels, smoothing)[1]  # the fp32 gradient both round to bf16
    # one bf16 spacing (2^-7 relative at most): the interpreter rounds toward zero where the GPU rounds to nearest;
    # atol: fp32 noise where p_j and ls / C cancel
    spacing, noise = 2.0**-7, 1e-6 * exact.abs().max().item()
    assert ((grad.float() - exact).abs() <= spacing * exact.abs() + noise).all()
    torch.testing.assert_close(grad.float(), want_grad.float(), rtol=spacing, atol=noise)


def test_column_slice_and_transposed_views(triton_interpreter) -> None:
    wide, labels = batch(33, 20)
    labels %= 10
    part = wide[:, 5:15]  # row stride 20: read in place
    assert part.stride() == (20, 1)
    loss, grad = fused(part, labels, 0.1)
    want_loss, want_grad = reference(part.contiguous(), labels, 0.1)
    torch.testing.assert_close(loss, want_loss, rtol=1e-6, atol=0)
    torch.testing.assert_close(grad, want_grad, rtol=1e-5, atol=1e-8)
    transposed = wide[:, :10].t().contiguous().t()  # column stride 33: copied to rows first
    assert transposed.stride(1) != 1
    loss, grad = fused(transposed, labels, 0.1)
    want_loss, want_grad = reference(transposed.contiguous(), labels, 0.1)
    torch.testing.assert_close(loss, want_loss, rtol=1e-6, atol=0)
    torch.testing.assert_close(grad, want_grad, rtol=1e-5, atol=1e-8)


def test_gradient_flows_through_a_view_and_scales_with_the_output_gradient(triton_interpreter) -> None:
    wide, labels = batch(8, 12)
    labels %= 10
    base = wide.clone().requires_grad_()
    (ce.FusedCrossEntropy.apply(base[:, :10], labels, 0.0) * 3).backward()
    want = reference(wide[:, :10], labels, 0.0)[1] * 3
    torch.testing.assert_close(base.grad[:, :10], want, rtol=1e-5, atol=1e-8)
    assert torch.equal(base.grad[:, 10:], torch.zeros(8, 2))


def test_two_calls_are_bitwise_equal(triton_interpreter) -> None:
    logits, labels = batch(200, 7)
    first, second = fused(logits, labels, 0.2), fused(logits, labels, 0.2)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_cross_entropy_takes_the_kernel_where_fusable(triton_interpreter, monkeypatch) -> None:
    monkeypatch.setattr(ce, "fusable", lambda logits, labels: True)  # a CPU tensor stands in for a CUDA one
    logits, labels = batch(33, 10)
    x = logits.clone().requires_grad_()
    loss = ce.cross_entropy(x, labels, label_smoothing=0.2)
    assert loss.grad_fn is not None and type(loss.grad_fn).__name__ == "FusedCrossEntropyBackward"
    loss.backward()
    want_loss, want_grad = reference(logits, labels, 0.2)
    torch.testing.assert_close(loss.detach(), want_loss, rtol=1e-6, atol=0)
    torch.testing.assert_close(x.grad, want_grad, rtol=1e-5, atol=1e-8)


def test_backward_with_the_cached_unit_takes_the_saved_gradient_as_it_is(triton_interpreter, monkeypatch) -> None:
    monkeypatch.setattr(ce, "fusable", lambda logits, labels: True)
    unit_calls = []
    is_unit = ce._is_unit
    monkeypatch.setattr(ce, "_is_unit", lambda grad: unit_calls.append(is_unit(grad)) or unit_calls[-1])
    logits, labels = batch(33, 10)
    _, want_grad = reference(logits, labels, 0.2)
    x, y = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    ce.backward(ce.cross_entropy(x, labels, label_smoothing=0.2))
    ce.backward(3 * ce.cross_entropy(y, labels, label_smoothing=0.2))  # a scaled loss: its gradient is scaled
    assert unit_calls == [True, False]
    torch.testing.assert_close(x.grad, want_grad, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(y.grad, 3 * want_grad, rtol=1e-5, atol=1e-8)


def test_backward_of_pytorchs_loss_equals_its_own_backward() -> None:
    logits, labels = batch(33, 10)
    x, y = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    ce.backward(F.cross_entropy(x, labels, label_smoothing=0.1))
    F.cross_entropy(y, labels, label_smoothing=0.1).backward()
    assert torch.equal(x.grad, y.grad)


def _no_kernel():
    raise AssertionError("the fused kernel was built")


@pytest.mark.parametrize("rows, classes", [(33, 10), (64, ce.MAX_CLASSES + 1)])
def test_cpu_and_large_problems_take_pytorch(monkeypatch, rows, classes) -> None:
    monkeypatch.setattr(ce, "_forward_kernel", _no_kernel)
    logits, labels = batch(rows, classes)
    x, y = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    loss = ce.cross_entropy(x, labels, label_smoothing=0.2)
    want = F.cross_entropy(y.float(), labels, label_smoothing=0.2)
    assert not ce.fusable(logits, labels) and torch.equal(loss, want)
    loss.backward()
    want.backward()
    assert torch.equal(x.grad, y.grad)


def test_limits() -> None:
    assert ce.fits(1, 10) and ce.fits(ce.MAX_ROWS, 10) and ce.fits(64, ce.MAX_CLASSES)
    assert not ce.fits(0, 10) and not ce.fits(ce.MAX_ROWS + 1, 10) and not ce.fits(64, ce.MAX_CLASSES + 1)
    assert not ce.fits(ce.MAX_ROWS, 1000)  # many classes: a long single-program loop, slower than PyTorch
    assert ce._blocks(10) == (32, 16) and ce._blocks(1) == (32, 16) and ce._blocks(1000) == (1, 1024)


# compiled for sm_90 on the CPU: tests/models/test_kernels_compile.py (its "loss" table)


# -- on a GPU ------------------------------------------------------------------------------------------------------
def _cuda() -> torch.device:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    return torch.device("cuda")


@pytest.mark.gpu
def test_cuda_bf16_autocast_equals_pytorch_in_two_kernels() -> None:
    device = _cuda()
    torch.manual_seed(0)
    head = torch.nn.Linear(64, 10).to(device)
    features, labels = torch.randn(128, 64, device=device), torch.randint(0, 10, (128,), device=device)
    with torch.autocast("cuda", torch.bfloat16):
        logits = head(features)
    assert logits.dtype == torch.bfloat16 and ce.fusable(logits, labels)
    x = logits.detach().requires_grad_()
    loss, grad = fused(x, labels, 0.1)
    want_loss, want_grad = reference(x, labels, 0.1)
    torch.testing.assert_close(loss, want_loss, rtol=1e-5, atol=0)  # exp/log: GPU fast-math vs PyTorch's
    torch.testing.assert_close(grad, want_grad, rtol=2.0**-7, atol=1e-6)
    one = torch.ones((), device=device)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        torch.autograd.grad(ce.cross_entropy(x, labels, 0.1), x, one)
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    assert len(kernels) == 2, [e.name for e in kernels]  # the forward, and the backward's scaling
    head.zero_grad()
    ce.backward(ce.cross_entropy(head(features).float(), labels, 0.1))  # makes the cached unit
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        ce.backward(ce.cross_entropy(x, labels, 0.1))
        torch.cuda.synchronize()
    names = [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    assert not [n for n in names if "Fill" in n or "Mul" in n], names  # no ones filled, no scaling
    torch.testing.assert_close(x.grad, want_grad, rtol=2.0**-7, atol=1e-6)


@pytest.mark.gpu
def test_cuda_graph_capture_replays_new_batches() -> None:
    device = _cuda()
    ce.compile_forward(torch.bfloat16)  # as the warm-up does: the launches below compile nothing more
    jit = ce._forward_kernel()
    before = sum(len(cache[0]) for cache in jit.device_caches.values())
    x = torch.randn(64, 10, device=device, dtype=torch.bfloat16).requires_grad_()
    labels = torch.randint(0, 10, (64,), device=device)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            x.grad = None
            ce.cross_entropy(x, labels, 0.1).backward()
    torch.cuda.current_stream().wait_stream(side)
    x.grad = None
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        loss = ce.cross_entropy(x, labels, 0.1)
        loss.backward()
    for seed in (1, 2):
        gen = torch.Generator(device).manual_seed(seed)
        with torch.no_grad():
            x.copy_(torch.randn(x.shape, device=device, generator=gen))
        labels.copy_(torch.randint(0, 10, labels.shape, device=device, generator=gen))
        graph.replay()
        want_loss, want_grad = reference(x, labels, 0.1)
        torch.testing.assert_close(loss, want_loss, rtol=1e-5, atol=0)
        torch.testing.assert_close(x.grad, want_grad, rtol=2.0**-7, atol=1e-6)
    odd = torch.randn(2, 30, device=device, dtype=torch.bfloat16)[:1, 3:13]  # 1 row, misaligned: same kernel
    assert odd.data_ptr() % 16 != 0
    torch.testing.assert_close(fused(odd, labels[:1], 0.0)[0], reference(odd, labels[:1], 0.0)[0], rtol=1e-5, atol=0)
    assert sum(len(cache[0]) for cache in jit.device_caches.values()) == before


@pytest.mark.gpu
def test_cuda_large_problems_take_pytorch() -> None:
    device = _cuda()
    logits = torch.randn(64, ce.MAX_CLASSES + 1, device=device)
    labels = torch.randint(0, ce.MAX_CLASSES, (64,), device=device)
    assert not ce.fusable(logits, labels) and ce.fusable(logits[:, : ce.MAX_CLASSES], labels)
    assert torch.equal(ce.cross_entropy(logits, labels), F.cross_entropy(logits, labels))


def test_backward_imports_no_symbolic_shapes(fresh_python) -> None:
    """torch.autograd.backward with a given gradient imports torch.fx's symbolic shapes (sympy, ~2 s at a fresh
    process's first step); backward() goes to the engine directly. In a process of its own: others import it."""
    code = (
        "import sys, torch\n"
        "from convforge.engine import cross_entropy as ce\n"
        "x = torch.randn(8, 10, requires_grad=True)\n"
        "ce.backward(torch.nn.functional.cross_entropy(x, torch.randint(0, 10, (8,))))\n"
        "assert x.grad is not None and x.grad.abs().sum() > 0\n"
        "print('torch.fx.experimental.symbolic_shapes' in sys.modules)\n"
    )
    assert fresh_python(code) == "False"

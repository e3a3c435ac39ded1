"""engine/kernels.py: the Triton Adam update equals torch.optim.Adam/AdamW (run by Triton's CPU interpreter here;
the CUDA run inside a captured graph: tests/engine/test_gpu.py)."""

from __future__ import annotations

import pytest
import torch

from convforge.engine import kernels


@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("lr_tensor", [False, True])
def test_triton_adam_update_equals_torch_adam(triton_interpreter, decoupled, lr_tensor) -> None:
    torch.manual_seed(0)
    start = torch.randn(3000)
    ref = start.clone().requires_grad_()
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    opt = cls([ref], lr=3e-3, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.05, foreach=False)
    param, m, v, step = start.clone(), torch.zeros(3000), torch.zeros(3000), torch.zeros(())
    for _ in range(4):
        grad = torch.randn(3000)
        ref.grad = grad.clone()
        opt.step()
        step += 1
        lr = torch.tensor(3e-3) if lr_tensor else 3e-3
        kernels.adam_update(param, grad, m, v, step, lr, (0.8, 0.99), 1e-7, 0.05, decoupled)
    state = opt.state[ref]
    torch.testing.assert_close(param, ref.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(m, state["exp_avg"], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(v, state["exp_avg_sq"], rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("count", [3, kernels.SLOTS + 3])
def test_triton_adam_updates_of_many_tensors_equal_torch_adam_per_tensor(triton_interpreter, count) -> None:
    """Tensors of several sizes (under a block, several blocks, a partial last block) share a launch, SLOTS per
    launch; each ends as torch.optim.Adam leaves it, step counters device-style (one per tensor)."""
    torch.manual_seed(1)
    sizes = [(5,), (kernels.BLOCK * 2 + 7,), (3, 300), (kernels.BLOCK,)] * 4
    starts = [torch.randn(s) for s in sizes[:count]]
    refs = [t.clone().requires_grad_() for t in starts]
    opt = torch.optim.Adam(refs, lr=2e-3, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.01, foreach=False)
    params = [t.clone() for t in starts]
    moments = [(torch.zeros_like(t), torch.zeros_like(t), torch.zeros(())) for t in starts]
    for _ in range(3):
        grads = [torch.randn_like(t) for t in starts]
        for ref, g in zip(refs, grads):
            ref.grad = g.clone()
        opt.step()
        for _, _, step in moments:
            step += 1
        tensors = [(p, g, m, v, step) for p, g, (m, v, step) in zip(params, grads, moments)]
        kernels.adam_updates(tensors, torch.tensor(2e-3), (0.9, 0.99), 1e-8, 0.01, False)
    for param, ref, (m, v, _) in zip(params, refs, moments):
        torch.testing.assert_close(param, ref.detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(m, opt.state[ref]["exp_avg"], rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(v, opt.state[ref]["exp_avg_sq"], rtol=1e-5, atol=1e-9)


def test_host_step_counts_that_differ_update_each_tensor_with_its_own(triton_interpreter) -> None:
    torch.manual_seed(2)
    tensors = [[torch.randn(100) for _ in range(2)] + [torch.rand(100), torch.rand(100)] for _ in range(3)]
    alone = [[t.clone() for t in group] for group in tensors]
    kernels.adam_updates([(*group, step) for group, step in zip(tensors, (1.0, 5.0, 1.0))], 1e-2, (0.9, 0.99), 1e-8,
                         0.0, False)  # fmt: skip
    for group, step in zip(alone, (1.0, 5.0, 1.0)):
        kernels.adam_update(*group, step, 1e-2, (0.9, 0.99), 1e-8, 0.0, False)
    for got, want in zip(tensors, alone):
        assert all(torch.equal(a, b) for a, b in zip(got, want))


def test_a_small_group_goes_to_triton_whole_and_a_large_group_its_big_tensors(monkeypatch) -> None:
    monkeypatch.setattr(kernels, "available", lambda: True)
    monkeypatch.setattr(kernels, "_plain", lambda p: True)
    small = [torch.nn.Parameter(torch.randn(n)) for n in (10, 100, kernels.BIG)]
    large = [torch.nn.Parameter(torch.randn(n)) for n in [10] * kernels.SLOTS + [kernels.BIG, kernels.BIG - 1]]
    opt = kernels.Adam([{"params": small}, {"params": large}], fused=False)
    for group in opt.param_groups:
        group["fused"] = True  # as on CUDA
        for p in group["params"]:
            p.grad = torch.ones_like(p)
    assert opt._big(opt.param_groups[0]) == small
    assert opt._big(opt.param_groups[1]) == [large[kernels.SLOTS]]
    small[0].grad = None  # a tensor without a gradient this step is left out, the rest still go whole
    assert opt._big(opt.param_groups[0]) == small[1:]


def test_adam_classes_are_torch_optimizers_and_keep_torch_state_on_cpu() -> None:
    w = torch.nn.Parameter(torch.randn(kernels.BIG))  # big, but on CPU: PyTorch's own update
    opt = kernels.Adam([w], lr=0.1)
    w.grad = torch.ones_like(w)
    opt.step()
    assert isinstance(opt, torch.optim.Adam) and set(opt.state[w]) == {"step", "exp_avg", "exp_avg_sq"}
    assert isinstance(kernels.AdamW([w]), torch.optim.AdamW)

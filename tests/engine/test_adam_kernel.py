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


def test_adam_classes_are_torch_optimizers_and_keep_torch_state_on_cpu() -> None:
    w = torch.nn.Parameter(torch.randn(kernels.BIG))  # big, but on CPU: PyTorch's own update
    opt = kernels.Adam([w], lr=0.1)
    w.grad = torch.ones_like(w)
    opt.step()
    assert isinstance(opt, torch.optim.Adam) and set(opt.state[w]) == {"step", "exp_avg", "exp_avg_sq"}
    assert isinstance(kernels.AdamW([w]), torch.optim.AdamW)

"""torch.compile of the zoo's own modules: gradients like eager's under bf16 autocast (CPU inductor)."""

import torch
from torch import nn

from convforge.models._modules import GlobalMaxPool, Maxout


def test_compiled_bf16_max_reductions_give_finite_gradients_close_to_eager():
    """amax's backward re-finds the maxima by equality, which inductor's fp32 recompute of a fused bf16 chain
    broke: 0 / 0 gradients (cifar10-fast --compile trained to NaN). max_over routes them by index instead."""

    def grads(compiled: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(3, 16, 3, bias=False), nn.BatchNorm2d(16), nn.GELU(), Maxout(2), GlobalMaxPool(),
                            nn.Linear(8, 10))  # fmt: skip
        run = torch.compile(net) if compiled else net
        with torch.autocast("cpu", torch.bfloat16):
            out = run(torch.randn(32, 3, 8, 8, generator=torch.Generator().manual_seed(1)))
        out.float().square().sum().backward()
        return torch.cat([p.grad.flatten() for p in net.parameters()])

    eager, compiled = grads(False), grads(True)
    assert torch.isfinite(compiled).all()
    # bf16 rounding may pick another maximum here and there: close as a whole, not element by element
    assert (compiled - eager).norm() <= 0.1 * eager.norm()

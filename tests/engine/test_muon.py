"""Muon (engine/muon.py): the orthogonalization, the padded stack against one matrix at a time, tensor lrs, the
weight normalization, the solver's groups, checkpoints, and training."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from convforge.engine.muon import Muon, orthogonalize
from convforge.engine.solvers import make_optimizer


@pytest.mark.parametrize("shape", [(3, 64, 200), (2, 300, 40), (1, 16, 48)])
def test_orthogonalize_brings_every_singular_value_near_one(shape):
    torch.manual_seed(0)
    m = torch.randn(shape) * torch.logspace(-1, 1, shape[-1])  # columns over two decades of scale
    out = orthogonalize(m, steps=5)
    assert out.shape == shape and out.dtype == torch.bfloat16
    s = torch.linalg.svdvals(out.float())
    assert s.min() > 0.55 and s.max() < 1.25
    # U V^T keeps the singular vectors: out^T m is symmetric positive semi-definite (= V S' S V^T)
    prod = out.float().mT @ m if shape[1] >= shape[2] else out.float() @ m.mT
    assert torch.allclose(prod, prod.mT, atol=0.05 * prod.abs().max())


def _params():
    torch.manual_seed(1)
    shapes = [(8, 4, 3, 3), (16, 8, 3, 3), (16, 8, 3, 3), (40, 6), (5, 30)]  # convs, a tall and a wide matrix
    ps = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    ps[1].data = ps[1].data.to(memory_format=torch.channels_last)  # a channels_last filter bank, as on CUDA
    for p in ps:
        p.grad = torch.randn_like(p)
    return ps


def _reference_step(p: torch.Tensor, grad: torch.Tensor, lr: float, momentum: float) -> torch.Tensor:
    """One Muon step from a zero momentum buffer, one matrix at a time, in logical (out, in*kh*kw) order."""
    update = (grad + momentum * grad).reshape(p.shape[0], -1)  # Nesterov: g + m * (m * 0 + g)
    rows, cols = update.shape
    ortho = orthogonalize(update[None], steps=5)[0].float()
    return p.detach() - lr * math.sqrt(max(1, rows / cols)) * ortho.reshape(p.shape)


def test_padded_stack_equals_one_matrix_at_a_time():
    ps = _params()
    expected = [_reference_step(p, p.grad, lr=0.1, momentum=0.9) for p in ps]
    opt = Muon([dict(params=ps, orthogonalize=True)], lr=0.1, momentum=0.9)
    opt.step()
    for p, e in zip(ps, expected):
        assert torch.allclose(p.detach(), e, atol=0.02), p.shape  # bf16 products, summed in another order
    assert ps[1].is_contiguous(memory_format=torch.channels_last)  # updated in place, layout kept


def test_tensor_lr_steps_like_a_float_lr():
    """A captured step reads its lr from a device tensor (engine/fast/graph.py): the same update bit for bit."""
    a, b = _params(), _params()
    opt_a = Muon([dict(params=a, orthogonalize=True)], lr=0.05, momentum=0.6, weight_decay=0.1)
    opt_b = Muon([dict(params=b, orthogonalize=True)], lr=0.05, momentum=0.6, weight_decay=0.1)
    opt_b.param_groups[0]["lr"] = torch.tensor(0.05)
    for _ in range(2):
        opt_a.step()
        opt_b.step()
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_normalize_holds_each_filter_bank_at_norm_sqrt_out():
    ps = _params()
    opt = Muon([dict(params=ps, orthogonalize=True, normalize=True)], lr=0.0, momentum=0.6)
    opt.step()
    assert [round(p.norm().item(), 4) for p in ps] == [round(math.sqrt(p.shape[0]), 4) for p in ps]


def test_other_groups_step_as_nesterov_sgd_and_flat_params_cannot_be_orthogonalized():
    w, b = torch.nn.Parameter(torch.ones(3, 4)), torch.nn.Parameter(torch.ones(4))
    w.grad, b.grad = torch.full((3, 4), 0.5), torch.full((4,), 0.5)
    Muon([dict(params=[w], orthogonalize=True), dict(params=[b])], lr=0.1, momentum=0.9).step()
    assert torch.allclose(b.detach(), torch.full((4,), 1 - 0.1 * (0.5 + 0.9 * 0.5)))
    with pytest.raises(ValueError, match=r"matrices only, not a parameter of shape \(4,\)"):
        Muon([dict(params=[b], orthogonalize=True)], lr=0.1)


def test_solver_orthogonalizes_hidden_weights_but_not_the_output_layer():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Flatten(), torch.nn.Linear(8 * 6 * 6, 32),
                              torch.nn.ReLU(), torch.nn.Linear(32, 4))  # fmt: skip
    opt = make_optimizer("muon", net.parameters(), lr=None)
    hidden, rest = opt.param_groups
    assert hidden["orthogonalize"] and [tuple(p.shape) for p in hidden["params"]] == [(8, 3, 3, 3), (32, 288)]
    assert not rest["orthogonalize"] and [tuple(p.shape) for p in rest["params"]] == [(8,), (32,), (4, 32), (4,)]
    assert hidden["lr"] == rest["lr"] == 0.02 and hidden["momentum"] == 0.95


def test_checkpoint_resumes_the_same_steps():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3))
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 3, (16,))

    def steps(model, opt, n):
        for _ in range(n):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()

    opt = make_optimizer("muon", net.parameters(), lr=0.05)
    steps(net, opt, 2)
    saved = copy.deepcopy((net.state_dict(), opt.state_dict()))  # as a checkpoint file holds them
    steps(net, opt, 3)
    again = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3))
    again.load_state_dict(saved[0])
    opt2 = make_optimizer("muon", again.parameters(), lr=0.05)
    opt2.load_state_dict(saved[1])
    steps(again, opt2, 3)
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), again.parameters()))


def test_muon_trains_a_small_cnn_on_digits(tmp_path):
    from convforge import api

    r = api.train("digits", model="digits-cnn", solver="muon", epochs=3, batch_size=64, device="cpu", seed=0,
                  out=str(tmp_path / "run"), progress=False, log=lambda s: None)  # fmt: skip
    assert r.test_accuracy > 0.93


def test_stacks_group_similar_sizes_within_the_padding_limit(monkeypatch):
    from convforge.engine import muon

    cifar = [(64, 216), (64, 576), (256, 576), (256, 2304), (256, 2304), (256, 2304)]
    assert muon._buckets(cifar) == [[3, 4, 5, 2, 1, 0]]  # one stack, largest first
    folder = [(32, 27), (64, 288), (64, 576), (128, 576), (128, 1152), (256, 1152), (256, 2304), (384, 2304),
              (384, 3456)]  # fmt: skip
    assert muon._buckets(folder) == [[8, 7, 6, 5, 4, 3, 2, 1, 0]]  # 3.5x padding
    assert muon._buckets([(4096, 25088), (64, 576), (64, 27)]) == [[0], [1, 2]]  # VGG's first dense layer apart
    monkeypatch.setattr(muon, "PAD_LIMIT", 2.0)
    stacks = muon._buckets(folder)
    assert stacks == [[8, 7, 6, 5], [4, 3, 2], [1, 0]]
    for stack in stacks:
        shapes = [folder[i] for i in stack]
        padded = len(shapes) * max(min(s) for s in shapes) * max(max(s) for s in shapes)
        assert padded <= muon.PAD_LIMIT * sum(r * c for r, c in shapes)
    assert muon._buckets([(300, 40), (40, 300)]) == [[0, 1]]  # a tall matrix stacks transposed

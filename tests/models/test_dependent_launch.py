"""Programmatic dependent launch (models/_dependent_triton.py, _kernels.dependent): which kernels may start before
their predecessor ends, and that each of them waits for it before touching memory."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from convforge.models import _kernels

SRC = Path(__file__).resolve().parents[2] / "src" / "convforge"
# every Triton kernel convforge launches (the helpers they call are jit functions too, but never launched)
LAUNCHED = {
    "engine/_adam_triton.py": {"adam"},
    "engine/_augment_triton.py": {"flip_shift"},
    "engine/_cross_entropy_triton.py": {"cross_entropy_forward"},
    "engine/fast/_gather_triton.py": {"gather_chunk"},
    "models/_conv_act_triton.py": {"conv_act_forward"},
    "models/_norm_act_triton.py": {
        "stats_partial", "sum_partials", "stats_finish", "apply_forward", "grad_partial", "grad_apply",
    },
    "models/_pool_triton.py": {"pool_forward", "pool_backward"},
    "models/_small_conv_triton.py": {"conv_forward", "wgrad_partial", "wgrad_finish"},
    "models/_small_dense_triton.py": {
        "dense_forward", "dense_finish", "dense_input_grad", "dense_weight_grad", "pair_input_grad",
        "pair_weight_grad",
    },
}  # fmt: skip


def _jit_functions(path: Path) -> dict[str, ast.FunctionDef]:
    tree = ast.parse(path.read_text())
    return {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef) and node.decorator_list}


def _first_statement(fn: ast.FunctionDef) -> ast.stmt:
    body = fn.body
    docstring = isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
    return body[1] if docstring else body[0]


@pytest.mark.parametrize("module", sorted(LAUNCHED))
def test_every_launched_kernel_waits_for_its_predecessor_first(module) -> None:
    kernels = _jit_functions(SRC / module)
    assert LAUNCHED[module] <= kernels.keys()
    for name in LAUNCHED[module]:
        first = _first_statement(kernels[name])
        call = first.value if isinstance(first, ast.Expr) else None
        assert isinstance(call, ast.Call) and getattr(call.func, "id", "") == "wait_for_previous", name


def test_no_other_launch_sites_than_the_launcher() -> None:
    """Kernels are launched through _kernels.launcher (which adds the PDL option), never as kernel[grid](...)."""
    names = set().union(*LAUNCHED.values())
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        for name in names:
            assert f"{name}[" not in text, f"{path}: {name} launched without _kernels.launcher"


class _Kernel:
    def __init__(self, src: str) -> None:
        self.src = src


def test_only_kernels_that_wait_get_the_launch_option(monkeypatch) -> None:
    monkeypatch.setattr(_kernels, "available", lambda: True)
    monkeypatch.setattr(_kernels, "_pdl_supported", lambda: True)
    waits, plain = _Kernel("def k(x):\n    wait_for_previous()\n"), _Kernel("def k(x):\n    pass\n")
    assert _kernels.dependent(waits) == {"launch_pdl": True}
    assert _kernels.dependent(plain) == {}
    monkeypatch.setattr(_kernels, "DEPENDENT_LAUNCH", False)
    assert _kernels.dependent(waits) == {}


def test_no_launch_option_without_a_gpu_that_has_it(monkeypatch) -> None:
    monkeypatch.setattr(_kernels, "available", lambda: False)
    assert _kernels.dependent(_Kernel("wait_for_previous()")) == {}

"""torch.optim without its torch._dynamo import, for runs that compile nothing.

torch.optim imports torch._dynamo at an optimizer's first use (to keep its methods out of traced graphs): 4.2-4.4 s
of a 20 s folder-fast command on an H200 host and 2.9 s on a 2-core CPU (4.8 of the digits Quickstart's 7.3 s), for
nothing in a run that compiles nothing. Once torch._dynamo is imported (--compile, or by anything else) both pieces
step aside and torch's own code runs; so they do with a torch whose wrappers work otherwise.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from collections.abc import Callable, Iterator

import torch


class StepWithoutDynamo:
    """Mixin before a torch.optim class: step() is the class's own update, minus torch.optim's step wrapper's
    `import torch._dynamo` + graph break (that wrapper only sets grad mode, then calls it: so do we)."""

    def step(self, closure=None):
        step = super().step
        update = inspect.unwrap(step)
        if update is step or "torch._dynamo" in sys.modules:
            return step(closure)
        with torch.set_grad_enabled(self.defaults.get("differentiable", False)):
            return update(self, closure)


@contextlib.contextmanager
def dynamo_import_skipped(active: bool = True) -> Iterator[None]:
    """Within: Optimizer.add_param_group, zero_grad, state_dict and load_state_dict run without importing
    torch._dynamo (`active=False`: --compile, nothing changed).

    torch wraps them in torch._disable_dynamo, whose first call imports torch._dynamo and keeps the function it
    calls in `fn.__dynamo_disable`; while this block runs that is `fn` itself, afterwards torch's behaviour is back.
    """
    targets = _dynamo_disabled_methods() if active and "torch._dynamo" not in sys.modules else []
    targets = [fn for fn in targets if getattr(fn, "__dynamo_disable", None) is None]
    for fn in targets:
        fn.__dynamo_disable = fn
    try:
        yield
    finally:
        for fn in targets:
            if getattr(fn, "__dynamo_disable", None) is fn:
                del fn.__dynamo_disable


def _dynamo_disabled_methods() -> list[Callable]:
    """The functions inside Optimizer's methods that torch._disable_dynamo wraps (matched by the wrapper's code)."""
    wrap = getattr(torch, "_disable_dynamo", None)
    if wrap is None:
        return []
    wrapper_code = wrap(lambda: None).__code__
    return [
        method.__wrapped__
        for method in vars(torch.optim.Optimizer).values()
        if getattr(method, "__code__", None) is wrapper_code and hasattr(method, "__wrapped__")
    ]

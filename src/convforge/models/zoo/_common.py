"""The zoo's registry and the small helpers its networks share.

A zoo entry is a function ``(in_shape, num_classes, **options) -> dict`` returning a raw spec that adapts to the
channels, size and class count; ``resolve_spec`` validates it like any user spec.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ..._registry import Registry
from ...errors import ConfigError

ZooFn = Callable[..., dict[str, Any]]
MODELS: Registry[ZooFn] = Registry("model")


def zoo_spec(name: str, in_shape: tuple[int, int, int], num_classes: int, **options: Any) -> dict[str, Any]:
    """The raw spec of zoo model ``name``; an unknown option is a ConfigError listing the valid ones."""
    fn = MODELS.get(name)
    valid = [p for p in inspect.signature(fn).parameters if p not in ("in_shape", "num_classes")]
    for key in options:
        if key not in valid:
            listed = ", ".join(valid) if valid else "none"
            raise ConfigError(f"unknown option '{key}' for model '{name}'; valid options: {listed}")
    options = {k: v for k, v in options.items() if v is not None}  # None keeps the model's default
    return fn(tuple(in_shape), num_classes, **options)


def describe(name: str) -> str:
    """One line about zoo model ``name`` (the first line of its docstring), for `convforge models list`."""
    doc = inspect.getdoc(MODELS.get(name)) or ""
    return doc.splitlines()[0] if doc else name


def choose(model: str, key: str, value: Any, allowed: tuple[Any, ...]) -> Any:
    if value not in allowed:
        raise ConfigError(f"model '{model}': {key} must be one of {', '.join(map(str, allowed))}, not {value!r}")
    return value


def conv_out(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output size of a conv/pool window (to decide which pools still fit)."""
    return (size + 2 * padding - kernel) // stride + 1


def conv(filters: int, kernel: int = 3, stride: int = 1, padding: Any = "same", **kw: Any) -> dict[str, Any]:
    return {"conv": dict(filters=filters, kernel=kernel, stride=stride, padding=padding, **kw)}

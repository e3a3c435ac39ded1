"""Machinery shared by every layer type: the registries, the base class, the error context and value checks.

One ``LayerKind`` per layer type knows its parameters and defaults, validates them against the input shape,
infers the output shape, counts parameters and builds the torch module. Shapes are tuples: ``(C, H, W)`` for a
feature map, ``(F,)`` for a vector; the batch dimension is never part of a spec shape.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from torch import nn

from .._registry import Registry
from ..errors import ConfigError

Shape = tuple[int, ...]
REQUIRED = object()  # marks a parameter without default in LayerKind.defaults

LAYERS: Registry[LayerKind] = Registry("layer")
# Names accepted by `act:` (conv, dense, residual) -> the layer type they expand to ("": no layer; not None,
# which Registry.register takes as "return a decorator").
ACTIVATIONS: Registry[str] = Registry("activation")
# Names accepted by `norm:` (conv, dense) -> the layer type they expand to ("": no layer).
NORMS: Registry[str] = Registry("norm")
for _act in ("relu", "leaky_relu", "gelu", "sigmoid", "tanh", "softmax"):
    ACTIVATIONS.register(_act, _act)
ACTIVATIONS.register("none", "")
NORMS.register("batchnorm", "batchnorm")
NORMS.register("none", "")

# Layers that mark the network's output; at the end of the top-level list they are identity in forward.
OUTPUT_TYPES = {"softmax": "softmax", "classification": "softmax", "sigmoid": "sigmoid"}


def fmt_shape(shape: Shape) -> str:
    return "x".join(str(s) for s in shape)


@dataclass
class Ctx:
    """Where a layer sits, for error messages, plus what resolving it needs from the model."""

    where: str  # "layer 3 conv 'c1'"
    model_in: Shape  # the model's input shape, for hints like "too many pools for 8x8 input?"
    class_units: int | None  # what `units: classes` becomes (K, or 1 for a sigmoid output)
    resolve_list: Callable[..., tuple[list[dict], Shape]]  # resolves nested layer lists (residual)

    def fail(self, msg: str) -> NoReturn:
        raise ConfigError(f"{self.where}: {msg}")

    def int_(self, key: str, value: Any, low: int = 1) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            need = "a positive integer" if low == 1 else f"an integer >= {low}"
            self.fail(f"{key} must be {need}, not {value!r}")
        return value

    def pair(self, key: str, value: Any, low: int = 1) -> list[int]:
        """An int or [h, w] -> [h, w]."""
        if isinstance(value, (list, tuple)):
            if len(value) != 2:
                self.fail(f"{key} must be an integer or [height, width], not {value!r}")
            return [self.int_(key, v, low) for v in value]
        v = self.int_(key, value, low)
        return [v, v]

    def bool_(self, key: str, value: Any) -> bool:
        if not isinstance(value, bool):
            self.fail(f"{key} must be true or false, not {value!r}")
        return value

    def number(self, key: str, value: Any, low: float, high: float, high_ok: bool = False) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or not (low <= value < high or (high_ok and value == high)):
            bracket = "]" if high_ok else ")"
            self.fail(f"{key} must be a number in [{low}, {high}{bracket}, not {value!r}")
        return float(value)

    def need_map(self, shape: Shape, fix: str = "") -> None:
        if len(shape) != 3:
            self.fail(f"needs a CxHxW feature map, but its input is a vector of {shape[0]}{fix}")


class LayerKind:
    """One layer type. Subclasses set ``type`` and ``defaults`` and override what differs."""

    type: str = ""
    defaults: dict[str, Any] = {}
    shorthands = False  # accepts `act:` and `norm:`, expanded into separate layers

    def check(self, p: dict[str, Any], shape: Shape, ctx: Ctx) -> dict[str, Any]:
        """Validate and normalize the parameters (defaults already merged); return the resolved ones."""
        return p

    def out_shape(self, p: dict[str, Any], shape: Shape) -> Shape:
        return shape

    def count(self, p: dict[str, Any], shape: Shape) -> int:
        return 0

    def build(self, p: dict[str, Any], shape: Shape) -> nn.Module:
        raise NotImplementedError

    def details(self, p: dict[str, Any]) -> str:
        """A short description of the parameters for the summary table."""
        return ", ".join(f"{k} {v}" for k, v in p.items())


def register(cls: type[LayerKind]) -> type[LayerKind]:
    """Class decorator: register one instance of a LayerKind under its ``type``."""
    LAYERS.register(cls.type, cls())
    return cls


def build_seq(layers: list[dict[str, Any]], shape: Shape) -> tuple[list[nn.Module], Shape]:
    """Torch modules for resolved layers, in order; returns them and the final shape."""
    modules = []
    for layer in layers:
        modules.append(LAYERS.get(layer["type"]).build(layer["params"], shape))
        shape = tuple(layer["out_shape"])
    return modules, shape

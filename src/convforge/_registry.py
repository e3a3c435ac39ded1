"""One small registry shape for layers, models, solvers, schedules, datasets and recipes."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from typing import Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names to objects. ``get`` of an unknown name raises ConfigError with close matches."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; without ``obj`` return a decorator."""
        if obj is not None:
            self._items[name] = obj
            return obj

        def decorator(fn: T) -> T:
            self._items[name] = fn
            return fn

        return decorator

    def get(self, name: str) -> T:
        if name in self._items:
            return self._items[name]
        close = difflib.get_close_matches(name, self._items, n=3)
        hint = (
            f"did you mean {', '.join(repr(c) for c in close)}?" if close else f"choose from: {', '.join(self.names())}"
        )
        raise ConfigError(f"unknown {self.kind} '{name}'; {hint}")

    def names(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._items if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __len__(self) -> int:
        return len(self._items)

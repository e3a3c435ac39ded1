"""Frozen dataclass configs with a checked dict/YAML round trip.

Values flow defaults -> YAML -> CLI. Unknown keys and wrong types are ConfigErrors naming the key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from ._io import read_yaml, write_yaml
from .errors import ConfigError

C = TypeVar("C")


def _coerce(name: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(name, value, arg)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"bad value for '{name}'")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"'{name}' must be one of {', '.join(map(str, args))}, not {value!r}")
        return value
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"'{name}' must be a list, not {value!r}")
        item = args[0] if args else Any
        return tuple(_coerce(name, v, item) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"'{name}' must be a mapping, not {value!r}")
        return dict(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"'{name}' must be true or false, not {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"'{name}' must be an integer, not {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"'{name}' must be an integer, not {value!r}") from None
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"'{name}' must be a number, not {value!r}")
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"'{name}' must be a number, not {value!r}") from None
    if hint is str:
        if isinstance(value, Path):
            return str(value)
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"'{name}' must be a string, not {value!r}")
        return str(value)
    return value


def from_dict(cls: type[C], data: dict[str, Any] | None, *, base: C | None = None) -> C:
    """Build ``cls`` from ``data`` over ``base`` (or the defaults), checking keys and types."""
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"a {cls.__name__} must be a mapping of options, not {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = [k for k in data if k.replace("-", "_") not in fields]
    if unknown:
        import difflib

        key = unknown[0]
        close = difflib.get_close_matches(key.replace("-", "_"), fields, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown option '{key}' in {cls.__name__}{hint}")
    values = dataclasses.asdict(base) if base is not None else {}
    for key, value in data.items():
        name = key.replace("-", "_")
        values[name] = _coerce(name, value, hints[name])
    obj = cls(**values)
    check = getattr(obj, "validate", None)
    if check:
        check()
    return obj


def to_dict(cfg: Any) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


def load_yaml(cls: type[C], path: str | Path) -> C:
    return from_dict(cls, read_yaml(path))


def save_yaml(cfg: Any, path: str | Path) -> None:
    write_yaml(path, to_dict(cfg))


def merge(cfg: C, **overrides: Any) -> C:
    """Apply overrides whose value is not None (CLI options left unset keep the config's value)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    return from_dict(type(cfg), given, base=cfg)

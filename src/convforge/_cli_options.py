"""Turn a config dataclass into typer options: one field, one option, its help from the field's comment.

This keeps the rule "every config field is one CLI option" true by construction.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Callable
from typing import Any

import typer


def field_help(cls: type) -> dict[str, str]:
    """The trailing `# comment` of each field in the class source."""
    helps = {}
    for line in inspect.getsource(cls).splitlines():
        m = re.match(r"\s+(\w+):.*?#\s*(.+)$", line)
        if m:
            helps[m.group(1)] = m.group(2).strip()
    return helps


def _cli_type(hint: Any) -> Any:
    """The type typer parses; tuples and optionals arrive as strings/values and are checked by the config."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return _cli_type(args[0]) if len(args) == 1 else str  # e.g. float | str: the config coerces
    if origin in (tuple, list):
        return str
    return hint if hint in (int, float, str, bool) else str


def config_parameters(cls: type, skip: set[str] = frozenset()) -> list[inspect.Parameter]:
    """Keyword parameters with typer.Option defaults of None, so unset options keep the config's value."""
    hints = typing.get_type_hints(cls)
    helps = field_help(cls)
    params = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = _cli_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else None
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        help_text = f"{helps.get(f.name, '')} [default: {shown}]"
        decls = [f"{flag}/--no-{flag[2:]}"] if kind is bool else [flag]
        option = typer.Option(None, *decls, help=help_text, show_default=False)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind | None))
    return params


def with_config_options(cls: type, skip: set[str] = frozenset()) -> Callable[[Callable], Callable]:
    """Decorator: append the config's options to a command's own parameters (its **options catch them)."""

    def decorate(fn: Callable) -> Callable:
        sig = inspect.signature(fn)
        hints = typing.get_type_hints(fn, include_extras=True)  # strings under `from __future__ import annotations`
        own = [
            p.replace(annotation=hints.get(p.name, p.annotation))
            for p in sig.parameters.values()
            if p.kind != inspect.Parameter.VAR_KEYWORD
        ]
        fn.__signature__ = sig.replace(parameters=own + config_parameters(cls, skip))  # type: ignore[attr-defined]
        return fn

    return decorate

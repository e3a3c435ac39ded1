"""Syntax of one layer item: parse it, check its parameter names, expand the `act:`/`norm:` shorthands.

An item is a bare name (``relu``), a one-key mapping (``{conv: {filters: 8, name: c1}}``), or the resolved form
written by ``ModelSpec.to_dict`` (``{type: conv, name: c1, params: {...}, out_shape: [...], param_count: 80}``;
``out_shape`` and ``param_count`` are recomputed, never trusted). Errors count items from 1, as a user reads the
file ("layer 3" is the third item of ``layers:``).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ._layer import ACTIVATIONS, LAYERS, NORMS, REQUIRED

RESOLVED_KEYS = ("type", "name", "params", "out_shape", "param_count")


@dataclass
class Item:
    """A parsed layer item, before shape resolution."""

    type: str
    params: dict[str, Any]
    name: str | None
    pos: int  # 1-based position in the user's list (items expanded from a shorthand share it)
    prefix: str = ""  # "layer 5 residual, body " for items nested in a residual block

    @property
    def where(self) -> str:
        named = f" '{self.name}'" if self.name else ""
        return f"{self.prefix}layer {self.pos} {self.type}{named}"


def _split(raw: Any, where: str) -> tuple[str, Any, str | None]:
    """(type, params, name) of a raw item in any of the three forms."""
    if isinstance(raw, str):
        return raw, {}, None
    if isinstance(raw, dict) and "type" in raw:
        extra = [k for k in raw if k not in RESOLVED_KEYS]
        if extra:
            raise ConfigError(f"{where}: unknown key '{extra[0]}'; a resolved layer has {', '.join(RESOLVED_KEYS)}")
        return raw["type"], raw.get("params") or {}, raw.get("name")
    if isinstance(raw, dict) and len(raw) == 1:
        ((kind, params),) = raw.items()
        params = {} if params is None else params
        if not isinstance(params, dict):
            raise ConfigError(f"{where} {kind}: parameters must be a mapping like {{kernel: 3}}, not {params!r}")
        params = dict(params)
        return kind, params, params.pop("name", None)
    shown = repr(raw) if len(repr(raw)) < 60 else repr(raw)[:57] + "..."
    raise ConfigError(
        f"{where}: a layer is a name like relu or a one-key mapping like {{conv: {{filters: 8}}}}, not {shown}"
    )


def parse_item(raw: Any, pos: int, prefix: str = "") -> Item:
    """Parse one raw item and check its type and parameter names (not values: those need the input shape)."""
    where = f"{prefix}layer {pos}"
    kind_name, params, name = _split(raw, where)
    if not isinstance(kind_name, str):
        raise ConfigError(f"{where}: the layer type must be a name like conv, not {kind_name!r}")
    if name is not None and (not isinstance(name, str) or not name):
        raise ConfigError(f"{where} {kind_name}: name must be a non-empty string, not {name!r}")
    if kind_name not in LAYERS:
        try:
            LAYERS.get(kind_name)
        except ConfigError as e:
            raise ConfigError(str(e).replace(f"'{kind_name}';", f"'{kind_name}' ({where});", 1)) from None
    item = Item(kind_name, params, name, pos, prefix)
    _check_keys(item)
    return item


def _check_keys(item: Item) -> None:
    kind = LAYERS.get(item.type)
    valid = list(kind.defaults) + (["act", "norm"] if kind.shorthands else []) + ["name"]
    for key in item.params:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ConfigError(f"{item.where}: unknown parameter '{key}'; {hint}valid: {', '.join(valid)}")
    missing = [k for k, v in kind.defaults.items() if v is REQUIRED and k not in item.params]
    if missing:
        raise ConfigError(f"{item.where}: missing parameter '{missing[0]}'")


def expand(item: Item) -> list[Item]:
    """conv/dense with `norm:` and `act:` -> the layer, then the norm layer, then the activation layer."""
    if not LAYERS.get(item.type).shorthands:
        return [item]
    params = dict(item.params)
    act, norm = params.pop("act", "none"), params.pop("norm", "none")
    out = [Item(item.type, params, item.name, item.pos, item.prefix)]
    for registry, value in ((NORMS, norm), (ACTIVATIONS, act)):
        try:
            layer_type = registry.get(value) if isinstance(value, str) else registry.get(repr(value))
        except ConfigError as e:
            raise ConfigError(f"{item.where}: {e}") from None
        if layer_type:
            name = f"{item.name}_{layer_type}" if item.name else None
            out.append(Item(layer_type, {}, name, item.pos, item.prefix))
    return out


def parse_list(raws: Any, prefix: str = "") -> list[Item]:
    """Parse and expand a list of raw items."""
    if not isinstance(raws, list) or not raws:
        where = prefix.rstrip(", ") or "the spec"
        raise ConfigError(f"{where}: layers must be a non-empty list of layers")
    return [part for pos, raw in enumerate(raws, 1) for part in expand(parse_item(raw, pos, prefix))]

"""A Keras-style summary of a resolved spec: one row per layer (residual blocks with their nested layers)."""

from __future__ import annotations

from typing import Any

from ._layer import LAYERS, fmt_shape
from ._resolve import resolve_spec
from .spec import ModelSpec


def _rows(layers: list[dict[str, Any]], prefix: str, depth: int) -> list[dict[str, Any]]:
    rows = []
    for i, layer in enumerate(layers):
        index = f"{prefix}{i}"
        rows.append(
            dict(
                index=index,  # the state-dict prefix after "layers.", e.g. "4" or "4.body.1"
                depth=depth,
                name=layer["name"],
                type=layer["type"],
                out_shape=list(layer["out_shape"]),
                params=layer["param_count"],
                details=LAYERS.get(layer["type"]).details(layer["params"]),
            )
        )
        if layer["type"] == "residual":
            rows += _rows(layer["params"]["layers"], f"{index}.body.", depth + 1)
            rows += _rows(layer["params"]["shortcut"], f"{index}.shortcut.", depth + 1)
    return rows


def summary_rows(spec: ModelSpec) -> list[dict[str, Any]]:
    """Rows of ``{index, depth, name, type, out_shape, params, details}``; nested rows follow their block."""
    spec = resolve_spec(spec) if not isinstance(spec, ModelSpec) else spec
    return _rows(spec.layers, "", 0)


def format_summary(spec: ModelSpec) -> str:
    """A plain-text table like Keras' ``model.summary()``; nested residual layers are indented."""
    spec = resolve_spec(spec) if not isinstance(spec, ModelSpec) else spec
    header = ("#", "Layer (type)", "Output shape", "Params", "Details")
    body = [
        (
            r["index"],
            "  " * r["depth"] + f"{r['name']} ({r['type']})",
            fmt_shape(r["out_shape"]),
            f"{r['params']:,}",
            r["details"],
        )
        for r in summary_rows(spec)
    ]
    widths = [max(len(row[c]) for row in [header, *body]) for c in range(len(header))]
    right = {3}  # numbers right-aligned

    def line(row: tuple[str, ...]) -> str:
        cells = [
            cell.rjust(w) if c in right else cell.ljust(w) for c, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    rule = "-" * len(line(tuple("-" * w for w in widths)))
    title = f'Model: "{spec.name}"  input {fmt_shape(spec.in_shape)}, {spec.num_classes} classes, output {spec.output}'
    lines = [title, rule, line(header), rule, *map(line, body), rule]
    lines.append(f"Total params: {spec.param_count:,}")
    return "\n".join(lines)

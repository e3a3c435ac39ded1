"""Plain-text rendering of results for the terminal."""

from __future__ import annotations

from typing import Any


def format_mapping(obj: Any, indent: int = 0) -> str:
    pad = "  " * indent
    if isinstance(obj, dict):
        lines = []
        for key, value in obj.items():
            if isinstance(value, (dict, list)) and value:
                lines.append(f"{pad}{key}:")
                lines.append(format_mapping(value, indent + 1))
            else:
                lines.append(f"{pad}{key}: {value}")
        return "\n".join(lines)
    if isinstance(obj, list):
        return "\n".join(format_mapping(v, indent) if isinstance(v, (dict, list)) else f"{pad}- {v}" for v in obj)
    return f"{pad}{obj}"


def prediction_table(rows: list[dict[str, Any]]) -> str:
    width = max([len(str(r["path"])) for r in rows] + [5])
    lines = [f"{'image':<{width}}  class (probability)"]
    for r in rows:
        top = ", ".join(f"{c} ({p:.1%})" for c, p in r["top"])
        lines.append(f"{str(r['path']):<{width}}  {top}")
    return "\n".join(lines)

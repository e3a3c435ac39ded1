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


def inspect_text(report: dict[str, Any]) -> str:
    """`convforge data inspect`: a per-class count table, sizes, modes and problems."""
    counts = report.get("counts", {})
    parts = list(counts)
    width = max([len(c) for c in report["classes"]] + [5])
    lines = [
        f"{report['source']} ({report.get('kind')}, {report.get('total')} images, {len(report['classes'])} classes)"
    ]
    lines.append(f"{'class':<{width}}  " + "  ".join(f"{p:>7}" for p in parts))
    for name in report["classes"]:
        lines.append(f"{name:<{width}}  " + "  ".join(f"{counts[p].get(name, 0):>7}" for p in parts))
    sizes = report.get("sizes", {})
    if "width" in sizes:
        w, h = sizes["width"], sizes["height"]
        lines.append(
            f"sizes: width {w['min']}..{w['max']} (median {w['median']:g}), height {h['min']}..{h['max']} "
            f"(median {h['median']:g}), {sizes['distinct']} distinct"
        )
    lines.append("modes: " + ", ".join(f"{m} {n}" for m, n in report.get("modes", {}).items()))
    problems = report.get("problems") or []
    lines.append(f"problems: {len(problems)}")
    lines += [f"  {path}: {why}" for path, why in problems[:20]]
    if len(problems) > 20:
        lines.append(f"  ... and {len(problems) - 20} more")
    if report.get("grid"):
        lines.append(f"sample grid: {report['grid']}")
    return "\n".join(lines)

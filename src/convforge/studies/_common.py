"""What every study shares: its folder, tables (terminal + markdown), plots and the result it hands back."""

from __future__ import annotations

import datetime as _dt
import math
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .._io import atomic_path, write_json, write_text  # noqa: E402


@dataclass
class StudyResult:
    """A finished study: its rows (JSON-able dicts), the rendered tables and the files written."""

    name: str
    out: Path
    rows: list[dict[str, Any]]
    text: str  # the terminal table
    markdown: str
    files: dict[str, Path] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "out": str(self.out),
            "rows": self.rows,
            "files": {k: str(v) for k, v in self.files.items()},
            **self.extra,
        }


def study_dir(name: str, out: str | Path | None = None, root: str | Path = "studies") -> Path:
    """`out`, or a fresh `studies/<name>-<timestamp>` folder."""
    if out is not None:
        path = Path(out)
    else:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        base = Path(root) / f"{name}-{stamp}"
        path, n = base, 1
        while path.exists():
            n += 1
            path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True, exist_ok=True)
    return path


def environment() -> dict[str, Any]:
    """Device name and library versions, stored with every result."""
    import torch

    env: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        env.update(gpu=torch.cuda.get_device_name(0), cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    return env


# -- tables --------------------------------------------------------------------------------------------------
def fmt(value: Any, spec: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if spec and isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, spec)
    return str(value)


def render(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str]]) -> tuple[str, str]:
    """(terminal text, markdown) of rows; columns are (key, header, format spec)."""
    cells = [[fmt(row.get(key), spec) for key, _, spec in columns] for row in rows]
    heads = [head for _, head, _ in columns]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(heads)]
    line = "  ".join(h.ljust(w) for h, w in zip(heads, widths))
    text = [line, "  ".join("-" * w for w in widths)]
    text += ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cell, widths))) for cell in cells]
    md = ["| " + " | ".join(heads) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(heads))) + "|"]
    md += ["| " + " | ".join(cell) + " |" for cell in cells]
    return "\n".join(text), "\n".join(md)


def write_report(
    out: Path, title: str, markdown: str, rows: list[dict[str, Any]], meta: dict[str, Any], notes: Sequence[str] = ()
) -> dict[str, Path]:
    """results.json (rows + environment + settings) and report.md (the table and notes)."""
    files = {"json": out / "results.json", "markdown": out / "report.md"}
    write_json(files["json"], {"study": title, "environment": environment(), **meta, "rows": rows})
    body = [f"# {title}", "", markdown, ""]
    body += [f"- {n}" for n in notes]
    write_text(files["markdown"], "\n".join(body).rstrip() + "\n")
    return files


def save_figure(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def quiet_log(message: str) -> None:
    """Training logs are kept out of a study's table; the CLI shows a progress line per run instead."""

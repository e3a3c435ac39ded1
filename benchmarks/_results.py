"""Writing a benchmark's results: the rows with their environment as JSON, the table as markdown, side by side."""

from __future__ import annotations

import json
from pathlib import Path


def save(stem: Path, env: dict, rows: list[dict], lines: list[str]) -> None:
    """stem.json (env + rows) and stem.md (the lines); folders made as needed; the table printed."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(dict(env=env, rows=rows), indent=1))
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

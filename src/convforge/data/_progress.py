"""One progress-bar shape (rich) for decoding and downloads; a no-op when disabled."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def progress_bar(total: int | None, desc: str, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``. Bytes-style totals (downloads) show transfer speed."""
    if not enabled:
        yield lambda n: None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    count = DownloadColumn() if desc.startswith("download") else MofNCompleteColumn()
    with Progress(TextColumn("{task.description}"), BarColumn(), count, TimeRemainingColumn(), transient=True) as p:
        task = p.add_task(desc, total=total)
        yield lambda n: p.advance(task, n)

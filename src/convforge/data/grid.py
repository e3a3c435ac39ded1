"""A PNG grid of random samples with their class names, to look at the data."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._io import atomic_path
from ._types import ImageSet


def sample_grid(image_set: ImageSet, path: str | Path, rows: int = 5, cols: int = 5, seed: int = 0) -> Path:
    """Write ``rows x cols`` random images (seeded) titled with their labels to ``path`` (PNG, atomic)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # Agg: no display needed
    from matplotlib.figure import Figure

    path = Path(path)
    n = min(rows * cols, len(image_set))
    pick = np.sort(np.random.default_rng(seed).choice(len(image_set), size=n, replace=False)) if n else []
    fig = Figure(figsize=(cols * 1.6, rows * 1.7))
    FigureCanvasAgg(fig)
    for k in range(rows * cols):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.axis("off")
        if k >= n:
            continue
        img = image_set.images[int(pick[k])].numpy()
        label = int(image_set.labels[int(pick[k])])
        if img.shape[0] == 1:
            ax.imshow(img[0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        else:
            ax.imshow(img.transpose(1, 2, 0), interpolation="nearest")
        ax.set_title(image_set.classes[label] if label < len(image_set.classes) else str(label), fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    return path

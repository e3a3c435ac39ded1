"""DataConfig: which images, how they are split and fitted. Every field is a CLI option."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

RESIZE_MODES = ("stretch", "crop", "pad")


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they are prepared.

    ``split`` is (train, val, test) or (train, test) ratios summing to 1; where a source has an official test
    set, the test ratio is ignored and val is carved from the training part (``val`` of it).
    ``image_size`` (H, W) or None (the set's native size; auto for folders, see ``folder.auto_size``).
    ``resize``: stretch (ignore aspect), crop (shorter side then centre crop), pad (letterbox with zeros).
    """

    source: str = "digits"
    split: tuple[float, ...] = (0.8, 0.1, 0.1)
    seed: int = 0
    data_dir: str | None = None
    cache_dir: str | None = None
    image_size: tuple[int, ...] | None = None
    channels: int | None = None
    resize: str = "stretch"
    strict: bool = False
    download: bool = True
    min_classes: int = 2  # 1 when evaluating a trained model on a folder of one class

    def validate(self) -> None:
        """Raise ConfigError naming the first bad field."""
        _check_split(self.split)
        if not str(self.source).strip():
            raise ConfigError("'source' is empty; give a folder path or a built-in name such as 'digits'")
        if self.channels is not None and self.channels not in (1, 3):
            raise ConfigError(f"'channels' must be 1 or 3, not {self.channels!r}")
        if self.resize not in RESIZE_MODES:
            raise ConfigError(f"'resize' must be one of {', '.join(RESIZE_MODES)}, not {self.resize!r}")
        if self.image_size is not None:
            size = tuple(self.image_size)
            if len(size) not in (1, 2) or any(isinstance(s, bool) or not isinstance(s, int) for s in size):
                raise ConfigError(f"'image_size' must be H,W (or one number for square), not {self.image_size!r}")
            if any(s < 1 or s > 4096 for s in size):
                raise ConfigError(f"'image_size' {self.image_size!r} is out of range; use 1..4096 pixels")

    def size_hw(self) -> tuple[int, int] | None:
        """image_size as (H, W); a single number means square."""
        if self.image_size is None:
            return None
        size = tuple(int(s) for s in self.image_size)
        return (size[0], size[0]) if len(size) == 1 else (size[0], size[1])

    def cache_path(self) -> Path:
        """cache_dir, else $CONVFORGE_CACHE, else ~/.cache/convforge."""
        return cache_root(self.cache_dir)

    def ratios(self) -> tuple[float, float, float]:
        """(train, val, test); two numbers mean (train, test) with no validation set."""
        s = tuple(float(x) for x in self.split)
        return (s[0], 0.0, s[1]) if len(s) == 2 else (s[0], s[1], s[2])


def cache_root(given: str | None = None) -> Path:
    """`given`, else $CONVFORGE_CACHE, else ~/.cache/convforge: datasets, decoded sets, built kernels."""
    given = given or os.environ.get("CONVFORGE_CACHE")
    return Path(given).expanduser() if given else Path.home() / ".cache" / "convforge"


def _check_split(split: tuple[float, ...]) -> None:
    fix = "give 2 or 3 ratios (train, val, test or train, test) >= 0 that sum to 1, e.g. 0.8,0.1,0.1"
    try:
        values = [float(x) for x in split]
    except (TypeError, ValueError):
        raise ConfigError(f"'split' {split!r} is not a list of numbers; {fix}") from None
    if len(values) not in (2, 3):
        raise ConfigError(f"'split' has {len(values)} ratios; {fix}")
    if any(v < 0 for v in values) or values[0] <= 0:
        raise ConfigError(f"'split' {tuple(values)} needs train > 0 and no negative ratio; {fix}")
    if abs(sum(values) - 1.0) > 1e-6:
        raise ConfigError(f"'split' {tuple(values)} sums to {sum(values):g}, not 1; {fix}")

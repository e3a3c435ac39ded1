"""Named training recipes (`--recipe NAME`): a recipe fills a TrainConfig (and may pick its own trainer)."""

from __future__ import annotations

from collections.abc import Callable

from .._registry import Registry

RECIPES: Registry[Callable] = Registry("recipe")

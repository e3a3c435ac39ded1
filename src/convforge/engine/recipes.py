"""Named training recipes (`--recipe NAME`): a recipe fills a TrainConfig (and may pick its own trainer)."""

from __future__ import annotations

from collections.abc import Callable

from .._registry import Registry

RECIPES: Registry[Callable] = Registry("recipe")

from .. import recipes as _builtin  # noqa: E402,F401  (registers the built-in recipes; imports RECIPES above)

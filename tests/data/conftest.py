"""Fixtures for data/ tests: small images of every Pillow mode, broken files, an isolated cache."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # data_helpers.py, under pytest's importlib import mode

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own cache and never touches ~/.cache or the network."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("CONVFORGE_CACHE", str(cache))

    def no_network(*a: object, **k: object) -> None:
        raise OSError("network disabled in tests")

    monkeypatch.setattr("convforge.data._download.urlopen", no_network)
    return cache

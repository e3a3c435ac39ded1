"""Fixtures of the model tests: convforge's Triton kernel modules run through Triton's CPU interpreter."""

import contextlib
import importlib

import pytest


@pytest.fixture
def interpret_kernels(monkeypatch):
    """A context manager: inside it the Triton source module is rebuilt under TRITON_INTERPRET=1 (read when @triton.jit
    runs) and the launcher's cached handles are cleared; afterwards rebuilt again under the process's own setting, so
    GPU tests later in the same process get compiled kernels and, where conftest.py chose the interpreter, later
    interpreter tests still run (deleting the variable there once left compiled kernels they could not run)."""

    @contextlib.contextmanager
    def rebuilt(source, *caches):
        monkeypatch.setenv("TRITON_INTERPRET", "1")
        importlib.reload(source)
        for cache in caches:
            cache.cache_clear()
        try:
            yield
        finally:
            monkeypatch.undo()
            importlib.reload(source)
            for cache in caches:
                cache.cache_clear()

    return rebuilt

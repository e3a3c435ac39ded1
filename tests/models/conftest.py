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


@pytest.fixture
def interpreted(request, interpret_kernels):
    """The test module's kernel launcher with its Triton source rebuilt under the interpreter for the test. The module
    names them: KERNELS = (launcher module, Triton source module, the launcher's cached function holding handles)."""
    launcher, source, cache = request.module.KERNELS
    module = importlib.import_module(f"convforge.models.{launcher}")
    with interpret_kernels(importlib.import_module(f"convforge.models.{source}"), getattr(module, cache)):
        yield module

"""Atomic writes: a failed write (full disk) leaves the old file whole, no temp files, and a clear error."""

from __future__ import annotations

import errno

import pytest

from convforge import _io
from convforge.errors import ConvforgeError


def test_full_disk_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    _io.write_json(target, {"epoch": 1})
    before = target.read_bytes()

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_io.os, "fsync", full_disk)
    with pytest.raises(ConvforgeError, match=r"cannot write .*metrics.json: No space left on device; check free disk"):
        _io.write_json(target, {"epoch": 2})
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_an_error_inside_the_block_leaves_nothing(tmp_path):
    target = tmp_path / "a.txt"
    with pytest.raises(KeyboardInterrupt), _io.atomic_open(target) as f:
        f.write("half")
        raise KeyboardInterrupt
    assert not target.exists() and not list(tmp_path.iterdir())


def test_read_yaml_errors_name_the_file(tmp_path):
    with pytest.raises(ConvforgeError, match="file not found"):
        _io.read_yaml(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ConvforgeError, match="bad.yaml"):
        _io.read_yaml(bad)

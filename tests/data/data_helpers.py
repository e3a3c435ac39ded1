"""Helpers for data/ tests: solid images, class folders, Python-2 style CIFAR pickles."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from PIL import Image


def save(
    path: Path, color: object, mode: str = "RGB", size: tuple[int, int] = (16, 12), fmt: str | None = None
) -> Path:
    """A solid image of ``mode`` and ``color`` at ``path`` (w, h = size)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path, format=fmt)
    return path


def make_classes(root: Path, per_class: dict[str, int], size: tuple[int, int] = (16, 12), ext: str = ".png") -> Path:
    """root/<class>/<i>.png, each class a different solid colour."""
    for k, (cls, n) in enumerate(per_class.items()):
        for i in range(n):
            save(root / cls / f"{i:03d}{ext}", (40 * k, 10 + i % 200, 100), size=size)
    return root


def py2_pickle(obj: object) -> bytes:
    """Pickle ``obj`` the way Python 2's cPickle (protocol 2) wrote the official CIFAR-10 batches:
    strings as BINSTRING opcodes and numpy arrays through numpy.core.multiarray._reconstruct."""
    out = bytearray(b"\x80\x02")

    def put(x: object) -> None:
        if isinstance(x, str):
            x = x.encode("latin1")
        if isinstance(x, bytes):
            out.extend(b"U" + bytes([len(x)]) + x if len(x) < 256 else b"T" + struct.pack("<i", len(x)) + x)
        elif x is None:
            out.extend(b"N")
        elif isinstance(x, bool):
            out.extend(b"\x88" if x else b"\x89")
        elif isinstance(x, int):
            out.extend(b"K" + bytes([x]) if 0 <= x < 256 else b"J" + struct.pack("<i", x))
        elif isinstance(x, (list, tuple)):
            out.extend(b"]" if isinstance(x, list) else b"")
            out.extend(b"(")
            for v in x:
                put(v)
            out.extend(b"e" if isinstance(x, list) else b"t")
        elif isinstance(x, dict):
            out.extend(b"}(")
            for k, v in x.items():
                put(k)
                put(v)
            out.extend(b"u")
        elif isinstance(x, np.ndarray):
            out.extend(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n")
            put((0,))
            put("b")
            out.extend(b"\x87R(")  # TUPLE3, REDUCE, then the state tuple
            put(1)
            put(tuple(x.shape))
            out.extend(b"cnumpy\ndtype\n")
            put(("u1", 0, 1))
            out.extend(b"R")
            put((3, "|", None, None, None, -1, -1, 0))
            out.extend(b"b")  # BUILD the dtype
            put(False)
            put(x.astype(np.uint8).tobytes())
            out.extend(b"tb")  # state tuple, BUILD the array
        else:
            raise TypeError(type(x))

    put(obj)
    out.extend(b".")
    return bytes(out)

"""The IDX format of MNIST-style files: magic (0, 0, type, ndim), ndim big-endian uint32 sizes, data."""

from __future__ import annotations

import struct

import numpy as np

_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(buf: bytes, name: str = "IDX file") -> np.ndarray:
    """Parse an uncompressed IDX buffer; ValueError (with ``name``) when it is not one."""
    if len(buf) < 4 or buf[0] != 0 or buf[1] != 0 or buf[2] not in _TYPES or buf[3] == 0:
        raise ValueError(f"{name} is not an IDX file (bad magic number)")
    ndim, dtype = buf[3], np.dtype(_TYPES[buf[2]])
    shape = struct.unpack(f">{ndim}I", buf[4 : 4 + 4 * ndim])
    count = int(np.prod(shape))
    if len(buf) != 4 + 4 * ndim + count * dtype.itemsize:
        raise ValueError(f"{name} is truncated or too long for shape {shape}")
    return np.frombuffer(buf, dtype, count=count, offset=4 + 4 * ndim).reshape(shape)


def write_idx(a: np.ndarray) -> bytes:
    """The IDX bytes of ``a`` (used by tests and to convert data)."""
    code = {np.dtype(v).str.lstrip("<>|"): k for k, v in _TYPES.items()}[a.dtype.str.lstrip("<>|")]
    head = bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    return head + a.astype(np.dtype(_TYPES[code])).tobytes()

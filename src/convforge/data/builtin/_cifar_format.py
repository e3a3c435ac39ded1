"""Readers for the two official CIFAR-10 formats, without ever running arbitrary pickle code.

python version: each batch is a Python-2 pickle of a dict {data: uint8 ndarray N x 3072, labels: [int], ...}.
``SafeUnpickler`` resolves ONLY numpy's array-reconstruction globals; anything else is refused.
binary version: fixed 3,073-byte records (1 label byte + 3,072 pixel bytes, channel-major R, G, B).
"""

from __future__ import annotations

import io
import pickle

import numpy as np

RECORD_BYTES = 1 + 3 * 32 * 32
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that can build dicts, lists, ints, bytes and numpy arrays, and nothing else."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")
        if name == "_reconstruct":
            try:
                from numpy._core.multiarray import _reconstruct  # numpy >= 2
            except ImportError:  # numpy 1.x
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        return np.ndarray if name == "ndarray" else np.dtype


def read_python_batch(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(images N x 3 x 32 x 32 uint8, labels) from one ``data_batch_*``/``test_batch`` pickle."""
    obj = SafeUnpickler(io.BytesIO(data), encoding="latin1").load()
    if not isinstance(obj, dict):
        raise ValueError("not a CIFAR batch (no dict inside)")
    obj = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
    if "data" not in obj or "labels" not in obj:
        raise ValueError("not a CIFAR-10 batch (no 'data'/'labels'; CIFAR-100 is not supported)")
    images = np.asarray(obj["data"], np.uint8)
    labels = np.asarray(obj["labels"], np.int64)
    if images.ndim != 2 or images.shape[1] != 3072 or len(images) != len(labels):
        raise ValueError(f"unexpected CIFAR batch shapes {images.shape} and {labels.shape}")
    return images.reshape(-1, 3, 32, 32), labels


def read_python_meta(data: bytes) -> list[str]:
    obj = SafeUnpickler(io.BytesIO(data), encoding="latin1").load()
    names = obj.get("label_names") or obj.get(b"label_names")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def read_binary_batch(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(images N x 3 x 32 x 32 uint8, labels) from one ``*.bin`` batch of 3,073-byte records."""
    if not data or len(data) % RECORD_BYTES:
        raise ValueError(f"size {len(data)} is not a multiple of the {RECORD_BYTES}-byte CIFAR-10 record")
    rec = np.frombuffer(data, np.uint8).reshape(-1, RECORD_BYTES)
    labels = rec[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise ValueError(f"label {int(labels.max())} out of range 0..9 (is this CIFAR-100?)")
    return rec[:, 1:].reshape(-1, 3, 32, 32).copy(), labels

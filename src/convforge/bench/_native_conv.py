"""The codegen fp32 conv kernel (cudagen/kernels/conv_fp32.cuh) as a torch function, for `convforge bench conv`.

`kernels/bench_conv_entry.cu` wraps the generator's own dispatcher `cf::conv_fp32` in one `extern "C"` function;
nvcc builds it once per (sources, arch) into `$CONVFORGE_CACHE/kernels/` (default ~/.cache/convforge/kernels/),
ctypes loads it, and each call passes `data_ptr()`s and torch's current stream. Forward only, fp32 only.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import subprocess
from pathlib import Path

import torch

from .._io import atomic_path
from ..cudagen.build import check_arch, default_arch, find_nvcc
from ..data.config import cache_root
from ..errors import ConvforgeError

KERNELS = Path(__file__).resolve().parents[1] / "cudagen" / "kernels"
ENTRY = KERNELS / "bench_conv_entry.cu"
WORKSPACE_FLOATS = 8 << 20  # split-K partial sums, as kWorkspaceFloats in templates/network.cu.j2 (32 MiB)
_log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """$CONVFORGE_CACHE/kernels, else ~/.cache/convforge/kernels."""
    return cache_root() / "kernels"


def source_hash(arch: str) -> str:
    """Key of a build: the entry file, every kernel header it may include, and the arch."""
    digest = hashlib.sha256(arch.encode())
    for path in [ENTRY, *sorted(KERNELS.glob("*.cuh"))]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def build_library(arch: str | None = None, folder: Path | None = None, timeout_s: int = 300) -> Path:
    """The shared library for `arch` (default: GPU 0's, else sm_90); built with nvcc unless already cached."""
    arch = check_arch(arch or default_arch())
    folder = folder or cache_dir()
    lib = folder / f"bench_conv_fp32_{arch}_{source_hash(arch)}.so"
    if lib.is_file():
        return lib
    nvcc = find_nvcc()
    with atomic_path(lib) as tmp:  # built aside, then renamed: concurrent builds stay safe
        cmd = [nvcc, "-O3", "-std=c++17", f"-arch={arch}", "-shared", "-Xcompiler", "-fPIC", str(ENTRY), "-o", str(tmp)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        if proc.returncode != 0:
            log = (proc.stdout + proc.stderr).strip().splitlines()
            first = next((ln for ln in log if "error" in ln.lower()), log[-1] if log else "no output")
            raise ConvforgeError(f"nvcc failed on {ENTRY.name} for {arch}: {first.strip()[:300]}")
    return lib


def load(lib: Path) -> ctypes.CDLL:
    dll = ctypes.CDLL(str(lib))
    fn = dll.cf_bench_conv_fp32
    c_int, c_ptr = ctypes.c_int, ctypes.c_void_p
    fn.argtypes = [c_ptr, c_ptr, c_ptr, c_ptr, ctypes.c_longlong] + [c_int] * 10 + [c_ptr, ctypes.c_char_p, c_int]
    fn.restype = c_int
    return dll


@functools.cache
def _workspace(device: torch.device) -> torch.Tensor:
    # one per device, reused: launches on one stream run in order, so successive calls never overlap on it
    return torch.empty(WORKSPACE_FLOATS, dtype=torch.float32, device=device)


def make_conv(dll: ctypes.CDLL):
    """(x, w, stride, padding) -> y through the codegen kernel; groups = x channels / w's input channels."""
    entry = dll.cf_bench_conv_fp32

    def conv_codegen(x: torch.Tensor, w: torch.Tensor, stride: int = 1, padding: int = 0) -> torch.Tensor:
        if x.dtype != torch.float32 or w.dtype != torch.float32:
            raise RuntimeError(f"fp32 only: the codegen conv kernel has no {x.dtype} path")
        if not (x.is_cuda and w.device == x.device):
            raise RuntimeError("the codegen conv kernel needs x and w on the same CUDA device")
        n, c, h, wd = x.shape
        k, cg, r, s = w.shape
        groups = c // cg
        if cg * groups != c or k % groups:
            raise RuntimeError(f"weights {tuple(w.shape)} do not fit {c} input channels")
        x, w = x.detach().contiguous(), w.detach().contiguous()  # forward only: no autograd graph
        y = x.new_empty(n, k, (h + 2 * padding - r) // stride + 1, (wd + 2 * padding - s) // stride + 1)
        err = ctypes.create_string_buffer(512)
        with torch.cuda.device(x.device):
            ws = _workspace(x.device)
            stream = torch.cuda.current_stream(x.device).cuda_stream
            dims = (n, c, h, wd, k, r, s, stride, padding, groups)
            rc = entry(x.data_ptr(), w.data_ptr(), y.data_ptr(), ws.data_ptr(), ws.numel(), *dims, stream, err, 512)
        if rc != 0:
            raise RuntimeError(f"codegen conv kernel: {err.value.decode(errors='replace')}")
        return y

    conv_codegen.forward_only = True  # the bench times its forward pass and prints n/a for backward
    return conv_codegen


@functools.cache
def native_conv2d():
    """The conv function, or None (reason logged once) without CUDA, without nvcc, or when the build fails."""
    if not torch.cuda.is_available():
        _log.warning("codegen conv column absent: CUDA is not available")
        return None
    try:
        return make_conv(load(build_library()))
    except (ConvforgeError, OSError, subprocess.TimeoutExpired) as e:
        _log.warning("codegen conv column absent: %s", e)
        return None

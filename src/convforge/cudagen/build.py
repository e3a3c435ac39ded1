"""Build a generated project with nvcc (through its Makefile), and find the toolchain and cuDNN/cuBLAS."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from ..errors import ConvforgeError

NVCC_FALLBACKS = ("/usr/local/cuda/bin/nvcc", "/usr/local/bin/nvcc")


def find_nvcc(required: bool = True) -> str | None:
    """nvcc from $CUDACXX, PATH or the usual install folders; when there is none, a ConvforgeError (or None when not
    `required`: the build tests skip then)."""
    for cand in (os.environ.get("CUDACXX"), shutil.which("nvcc"), *NVCC_FALLBACKS):
        if cand and Path(cand).is_file():
            return cand
    if not required:
        return None
    raise ConvforgeError(
        "nvcc not found; install the CUDA toolkit and put nvcc on PATH (or set CUDACXX), or run codegen without "
        "--build/--verify/--bench and build the project elsewhere"
    )


def default_arch() -> str:
    """sm_XY of GPU 0 when torch sees one, else sm_90 (Hopper)."""
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            return f"sm_{major}{minor}"
    except Exception:  # noqa: BLE001  (no driver: fall back to the default)
        pass
    return "sm_90"


def check_arch(arch: str) -> str:
    if not re.fullmatch(r"sm_\d{2,3}[a-z]?", arch):
        raise ConvforgeError(f"--arch {arch!r} is not a GPU architecture; give e.g. sm_90 (H100) or sm_80 (A100)")
    return arch


def cudnn_libs() -> dict[str, Any]:
    """Include/lib folders of cuDNN and cuBLAS: the system's, else those in PyTorch's nvidia-* wheels."""
    include_dirs, lib_dirs = [], []
    for pkg, header in (("cudnn", "cudnn.h"), ("cublas", "cublas_v2.h")):
        system = [Path(p) for p in ("/usr/include", "/usr/local/cuda/include") if (Path(p) / header).is_file()]
        if system:
            continue
        root = _wheel_root(pkg)
        if root is None or not (root / "include" / header).is_file():
            raise ConvforgeError(
                f"{header} not found (no system {pkg} and no nvidia-{pkg} Python package); install cuDNN/cuBLAS "
                "or `pip install nvidia-cudnn-cu13 nvidia-cublas`, or use --backend native"
            )
        include_dirs.append(str(root / "include"))
        lib_dirs.append(str(root / "lib"))
        _ensure_unversioned(root / "lib", f"lib{pkg}.so")
    return dict(include_dirs=include_dirs, lib_dirs=lib_dirs, lib_names=["cudnn", "cublas"])


def _wheel_root(pkg: str) -> Path | None:
    try:
        import importlib

        mod = importlib.import_module(f"nvidia.{pkg}")
    except ImportError:
        try:  # nvidia-cublas for CUDA 13 installs under nvidia/cu13
            mod = importlib.import_module("nvidia.cu13")
        except ImportError:
            return None
    paths = list(getattr(mod, "__path__", []))
    return Path(paths[0]) if paths else None


def _ensure_unversioned(lib_dir: Path, name: str) -> None:
    """Wheels ship libcudnn.so.9 only; the linker needs libcudnn.so. Point a link at it when we may."""
    target = lib_dir / name
    if target.exists() or not lib_dir.is_dir():
        return
    versioned = sorted(lib_dir.glob(f"{name}.*"))
    if versioned:
        try:
            target.symlink_to(versioned[0].name)
        except OSError:
            pass  # read-only site-packages: the Makefile then names the versioned file (see make_libs)


def make_vars(backend: str, libs: dict[str, Any]) -> dict[str, str]:
    """The INCLUDES/LIBS lines of the Makefile: -I/-L per folder, an rpath for each (the program then runs without
    LD_LIBRARY_PATH), and -l per library (-l:libX.so.N where a read-only wheel folder has no unversioned link)."""
    if backend != "cudnn":
        return dict(includes="", libs="")
    inc = " ".join(f"-I{d}" for d in libs["include_dirs"])
    link = " ".join(f"-L{d} -Xlinker -rpath -Xlinker {d}" for d in libs["lib_dirs"])
    names = [_link_flag(name, [Path(d) for d in libs["lib_dirs"]]) for name in libs["lib_names"]]
    return dict(includes=inc, libs=f"{link} {' '.join(names)}".strip())


def _link_flag(name: str, lib_dirs: list[Path]) -> str:
    for d in lib_dirs:
        if (d / f"lib{name}.so").exists():
            return f"-l{name}"
        versioned = sorted(d.glob(f"lib{name}.so.*"))
        if versioned:
            return f"-l:{versioned[0].name}"
    return f"-l{name}"  # the system's


def build_project(out: Path, jobs: int = 2, timeout_s: int = 900) -> Path:
    """Run make in the generated project; return the binary. Compiler errors become one ConvforgeError line."""
    nvcc = find_nvcc()
    if shutil.which("make") is None:
        raise ConvforgeError("make not found; install make (build-essential), or build with CMake")
    cmd = ["make", f"-j{jobs}", f"NVCC={nvcc}"]
    proc = subprocess.run(cmd, cwd=out, capture_output=True, text=True, timeout=timeout_s)
    log = proc.stdout + proc.stderr
    (out / "build.log").write_text(log)
    if proc.returncode != 0:
        first = next((ln for ln in log.splitlines() if "error" in ln.lower()), log.strip().splitlines()[-1:])
        raise ConvforgeError(f"building {out} failed: {str(first).strip()[:300]} (full log: {out / 'build.log'})")
    return out / "classify"

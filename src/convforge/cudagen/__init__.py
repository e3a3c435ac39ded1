"""Run -> standalone CUDA C++ project (native kernels or cuDNN/cuBLAS); build, verify and benchmark it.

from convforge.cudagen import codegen
info = codegen("runs/digits-cnn", "out/digits", precision="fp32", build=True, verify=True)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConvforgeError
from .build import build_project, check_arch, cudnn_libs, default_arch, make_vars
from .cudnn_nhwc import plan_cudnn
from .emit import emit_project
from .nhwc import build_arch, make_nhwc
from .plan import make_plan

BACKENDS = ("native", "cudnn")
PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
CUDNN_PRECISIONS = PRECISIONS  # fp16/bf16: NHWC activations, for networks nhwc.py can lay out

__all__ = ["BACKENDS", "CUDNN_PRECISIONS", "PRECISIONS", "codegen", "generate"]


def _open_run(run):
    from ..run import Run

    return run if isinstance(run, Run) else Run.open(run)


def _spec_dict(run) -> dict[str, Any]:
    """The resolved spec exactly as saved beside the weights (spec.yaml), so layer indices match the keys."""
    from .._io import read_yaml

    spec = read_yaml(run.file("spec.yaml"))
    if not isinstance(spec, dict) or not isinstance(spec.get("layers"), list):
        raise ConvforgeError(f"{run.file('spec.yaml')} holds no layer list; the run folder is damaged, re-train")
    return spec


def _check_options(backend: str, precision: str, max_batch: int) -> None:
    if backend not in BACKENDS:
        raise ConvforgeError(f"--backend {backend!r} is unknown; choose from: {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise ConvforgeError(f"--precision {precision!r} is unknown; choose from: {', '.join(PRECISIONS)}")
    if backend == "cudnn" and precision not in CUDNN_PRECISIONS:
        raise ConvforgeError(
            f"--backend cudnn runs --precision {' or '.join(CUDNN_PRECISIONS)}; use --backend native for {precision}"
        )
    if not isinstance(max_batch, int) or max_batch < 1 or max_batch > 65536:
        raise ConvforgeError(f"--max-batch {max_batch!r} must be an integer from 1 to 65536")


def _nhwc(plan, backend: str, precision: str, max_batch: int, arch: str):
    """The NHWC layout of an fp16/bf16 network (None: fp32 NCHW activations), and the layout's name for info."""
    if precision not in ("fp16", "bf16"):
        return None, "nchw"
    nhwc, why = make_nhwc(plan, max_batch, arch)
    if backend == "native":
        return nhwc, "nhwc" if nhwc else f"nchw ({why})"
    if nhwc is None:  # cuDNN's fp16/bf16 path is built on the NHWC one (cudnn_nhwc.py)
        raise ConvforgeError(
            f"--backend cudnn --precision {precision} keeps activations {precision} NHWC, which this network "
            f"cannot use ({why}); use --backend native (fp32 NCHW activations there) or --precision fp32/tf32"
        )
    return plan_cudnn(nhwc), "nhwc"


def generate(run, out, backend: str = "native", precision: str = "fp32", max_batch: int = 256, arch=None):
    """Write the project only (no compiler needed); return (info dict, plan)."""
    _check_options(backend, precision, max_batch)
    run = _open_run(run)
    arch = check_arch(arch or default_arch())
    spec = _spec_dict(run)
    pre = run.preprocessing
    in_shape = (int(pre["channels"]), int(pre["height"]), int(pre["width"]))
    plan = make_plan(spec, run.state_dict(), in_shape, run.output)
    libs: dict[str, Any] = dict(include_dirs=[], lib_dirs=[], lib_names=[])
    if backend == "cudnn":
        libs = cudnn_libs()
    libs.update(make_vars(backend, libs))
    meta = dict(model=spec.get("name", "model"), run_path=str(run.path), classes=run.classes, preprocessing=pre)
    out = Path(out)
    nhwc, layout = _nhwc(plan, backend, precision, max_batch, arch)
    arch = build_arch(nhwc, arch)  # layers on conv_wgmma: sm_90 -> sm_90a
    written = emit_project(
        plan, out, meta=meta, backend=backend, precision=precision, max_batch=max_batch, arch=arch, libs=libs,
        nhwc=nhwc,
    )  # fmt: skip
    info = dict(out=str(out), backend=backend, precision=precision, max_batch=max_batch, arch=arch, **written)
    info["layout"] = layout  # fp16/bf16 activations between layers (CF_CONV_KERNELS=nchw|legacy: fp32 NCHW)
    if nhwc is not None and nhwc.s2d is not None:  # the strided stem, rewritten space-to-depth (s2d.py)
        g, p = nhwc.s2d, plan.ops[nhwc.stem].p
        info["s2d_stem"] = (
            f"{plan.ops[nhwc.stem].name}: {p['kh']}x{p['kw']}/{g.s} over {g.c} channels -> {g.kh}x{g.kw}/1 over "
            f"{g.channels} ({nhwc.geom[nhwc.x0_id].cs} a pixel, {g.hs}x{g.ws})"
        )
    if nhwc is not None and nhwc.native_why:  # --backend cudnn: convolutions cuDNN cannot run exactly
        info["native_convs"] = {plan.ops[i].name: why for i, why in nhwc.native_why.items()}
    info.update(model=meta["model"], kernels=len(plan.ops), buffers=len(plan.slot_sizes))
    return info, plan


def codegen(
    run, out, backend: str = "native", precision: str = "fp32", max_batch: int = 256, arch: str | None = None,
    build: bool = False, verify: bool = False, bench: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Generate the CUDA project for a Run into ``out``; optionally build it, verify it against PyTorch on the
    Run's test images, and benchmark it. Returns a JSON-able dict of what was done and measured."""
    info, _ = generate(run, out, backend, precision, max_batch, arch)
    if build or verify or bench:
        info["binary"] = str(build_project(Path(out)))
    if verify:
        from .verify import verify_project

        info["verify"] = verify_project(_open_run(run), Path(out), precision)
    if bench:
        from .bench import bench_project

        info["bench"] = bench_project(Path(out))
    return info

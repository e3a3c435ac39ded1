"""Render the templates and write the generated project: sources, kernels, weights.bin and its manifest.

Every file is written atomically (temp file + rename). weights.bin holds the plan's float32 tensors back to back at
64-byte aligned offsets; weights.json names each with its shape, offset and size, plus the total size and CRC-32
that the generated program checks at start-up.
"""

from __future__ import annotations

import json
import shutil
import zlib
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from .. import __version__
from .._io import write_bytes, write_json, write_text
from .nhwc import HALO_TILES, NhwcPlan
from .plan import Plan, Tensor

ALIGN_BYTES = 64
KERNEL_DIR = Path(str(resources.files("convforge.cudagen") / "kernels"))
TEMPLATE_DIR = Path(str(resources.files("convforge.cudagen") / "templates"))
CONV_FN = {"fp32": "conv_fp32", "tf32": "conv_tf32", "fp16": "conv_fp16", "bf16": "conv_bf16"}
ACT_TYPE = {"fp16": "__half", "bf16": "__nv_bfloat16"}
CUDNN_NCHW = ("fp32", "tf32")  # --backend cudnn precisions with fp32 NCHW activations (cudnn_ops.cuh); fp16/bf16:
# NHWC (cudnn_nhwc.cuh), whose fp32-NCHW fallback pass (CF_CONV_KERNELS=nchw|legacy, pre-sm_80) is the native one


def pack_weights(plan: Plan) -> tuple[bytes, list[dict[str, Any]]]:
    """float32 blob with aligned offsets, and one manifest entry per tensor."""
    chunks, entries, offset = [], [], 0
    for name, w in plan.weights.items():
        pad = -offset % ALIGN_BYTES
        chunks.append(b"\0" * pad)
        offset += pad
        data = np.ascontiguousarray(w, dtype="<f4").tobytes()
        entries.append(dict(name=name, shape=list(w.shape), offset=offset, count=int(w.size)))
        chunks.append(data)
        offset += len(data)
    return b"".join(chunks), entries


def _buf(t: Tensor | None) -> str:
    if t is None:
        return "nullptr"
    return {-1: "in_", -2: "out_"}.get(t.slot, f"slots_[{t.slot}]")


def _op_view(op, offsets: dict[str, int]) -> dict[str, Any]:
    """What the template needs for one launch: buffer and weight expressions, shape arguments, fused options."""

    def wexpr(role: str) -> str:
        name = op.weights.get(role)
        return "nullptr" if name is None else f"W + {offsets[name] // 4}"

    p = op.p
    view = dict(kind=op.kind, name=op.name, shape="x".join(map(str, op.out.shape)), x=_buf(op.inputs[0]))
    view.update(y=_buf(op.out), res=_buf(op.residual), w=wexpr("w"), b=wexpr("b"), scale=wexpr("scale"))
    view.update(shift=wexpr("shift"), act=p.get("act", 0), slope=repr(float(p.get("slope", 0.0))))
    view["size"] = op.out.size
    view.update({k: v for k, v in p.items() if k not in view})  # c, hw, cout, pieces, cols, is_max
    if op.kind == "add":
        view["x2"] = _buf(op.inputs[1])
    if op.kind == "conv":
        keys = "cin h w cout ho wo kh kw sh sw ph pw dh dw groups".split()
        view["shape_args"] = ", ".join(str(p[k]) for k in keys)
    if op.kind == "pool":
        view["shape_args"] = ", ".join(str(p[k]) for k in "c h w ho wo kh kw sh sw ph pw".split())
    return view


def _tile_calls(tiles, shape: list[int], fp32_out: bool) -> list[dict[str, str]]:
    """The if / else-if chain that picks each batch size's launch (nhwc.choose_tiles), largest batches first;
    ``prepare``: the kernel's shared-memory set-up the constructor calls (empty for the GEMV)."""
    calls = []
    out, vec = ", float" if fp32_out else "", 8 if shape[3] % 8 == 0 else 4
    for i, t in enumerate(tiles):
        cond = f"if (n >= {t.min_n}) " if i < len(tiles) - 1 else ""
        fn, targs = f"gemv_nhwc<Elem{out}>", ""
        if t.kind == "conv":
            targs = f"Elem, {t.bm}, {t.bn}, {t.bk}, {t.warps}, {vec}{out}"
            fn = f"conv_nhwc<{targs}>"
        elif t.kind == "wgmma":  # conv_wgmma.cuh: 8-channel gathers only (nhwc.use_wgmma)
            targs = f"Elem, {t.bm}, {t.bn}, {t.stages}{out}"
            fn = f"conv_wgmma<{targs}>"
        elif t.kind == "halo":  # conv_halo.cuh: CS, KH, KW from the layer (nhwc.halo_tiles)
            wm, wn, staged = HALO_TILES[t.bm]
            targs = f"Elem, {shape[2]}, {shape[8]}, {shape[9]}, {t.bm}, {wm}, {wn}, {str(staged).lower()}"
            fn = f"conv_halo<{targs}>"
        elif t.kind == "shift":  # conv_shift.cuh (sm_90a): the same layers (nhwc.halo_tiles)
            targs = f"Elem, {shape[2]}, {shape[8]}, {shape[9]}"
            fn = f"conv_shift<{targs}>"
        prepare = fn.replace("<", "_prepare<", 1) if targs else ""
        calls.append(dict(prefix=("else " if i else "") + cond, fn=fn, targs=targs, tile=t.name, prepare=prepare))
    return calls


def _nhwc_view(i: int, op, plan: NhwcPlan, offsets: dict[str, int]) -> dict[str, Any]:
    """One NHWC launch: T buffers A(slot) (fp32 logits: slots_[slot]), packed weights P + offset, fp32 bias/scale
    W + offset."""

    def buf(t: Tensor | None) -> str:
        if t is None:
            return "nullptr"
        slot = plan.slot_of[plan.x0_id if t.id == plan.input_id else t.id]
        return "out_" if slot == -2 else f"slots_[{slot}]" if t.id in plan.fp32_ids else f"A({slot})"

    def wexpr(role: str) -> str:
        name = op.weights.get(role)
        return "nullptr" if name is None else f"W + {offsets[name] // 4}"

    gx, gy = plan.geom[op.inputs[0].id], plan.geom[op.out.id]
    p = op.p
    view = dict(kind=op.kind, name=op.name, shape="x".join(map(str, op.out.shape)), x=buf(op.inputs[0]), y=buf(op.out))
    view.update(act=p.get("act", 0), slope=repr(float(p.get("slope", 0.0))), cs=gy.cs, b=wexpr("b"))
    view.update(scale=wexpr("scale"), shift=wexpr("shift"), res=buf(op.residual), hw=gx.hw, c=gx.c, cs_in=gx.cs)
    view.update({k: v for k, v in p.items() if k not in view})  # is_max
    if op.kind == "conv":
        pack, shape = plan.packs[i], plan.shapes[i]
        view.update(w=f"P + {pack.offset}", shape_args=", ".join(map(str, shape)), layer=i)
        view["tiles"] = _tile_calls(plan.tiles[i], shape, op.out.id in plan.fp32_ids)
        view["tile_desc"] = plan.paths.get(i) or " ".join(f"{t.name}@{t.min_n}" for t in plan.tiles[i])
        bias_t = plan.bias_packs.get(i)  # --backend cudnn: T bias for the fused call, cudnn_nhwc.py
        view.update(path=plan.paths.get(i, "native"), bt=f"P + {bias_t.offset}" if bias_t else "nullptr")
        alt = plan.stem_native if i == plan.stem else None  # the cuDNN stem's native launch (CF_CUDNN_STEM=native)
        view["native"] = alt and dict(w=f"P + {alt.offset}", shape_args=", ".join(map(str, [*shape[:18], alt.kp])))
        if alt:
            view["tile_desc"] = f"cudnn, CF_CUDNN_STEM=native: {plan.tiles[i][0].name}@1"
    elif op.kind == "pool":
        view["shape_args"] = ", ".join(str(v) for v in [gx.cs, *(p[k] for k in "h w ho wo kh kw sh sw ph pw".split())])
    elif op.kind == "add":
        view.update(x2=buf(op.inputs[1]), elems=gx.elems)
    elif op.kind == "maxout":
        view.update(cout=p["cout"], pieces=p["pieces"])
    elif op.kind in ("softmax", "sigmoid"):
        cols = gx.c * gx.hw
        view.update(cols=cols, ys=cols if view["y"] == "out_" else gy.cs, sigmoid=int(op.kind == "sigmoid"))
    return view


def nhwc_context(plan: Plan, nplan: NhwcPlan, offsets: dict[str, int], precision: str) -> dict[str, Any]:
    """Template variables of the NHWC forward pass: conversion, launches, weight packing table, tile set-up."""
    ops = [_nhwc_view(i, op, nplan, offsets) for i, op in enumerate(nplan.ops)]
    g0 = nplan.geom[nplan.x0_id]
    packs = [dict(vars(p), src=offsets[p.weight] // 4, name=plan.ops[i].name) for i, p in nplan.packs.items()]
    packs += [dict(vars(p), src=offsets[p.weight] // 4, name=f"{plan.ops[i].name} bias")
              for i, p in nplan.bias_packs.items()]  # fmt: skip
    if nplan.stem_native is not None:
        stem = nplan.stem_native
        packs.append(dict(vars(stem), src=offsets[stem.weight] // 4, name=f"{plan.ops[nplan.stem].name} native"))
    prepares = sorted({c["prepare"] for op in ops for c in op.get("tiles", []) if c["prepare"]})
    x0 = dict(slot=nplan.slot_of[nplan.x0_id], c=g0.c, hw=g0.hw, cs=g0.cs, s2d="")
    stem = None
    if nplan.s2d is not None:  # SpaceToDepthShape fields (nhwc_ops.cuh), from s2d.py
        g = nplan.s2d
        x0["s2d"] = ", ".join(map(str, [g.c, g.h, g.w, g.s, g.ph, g.pw, g.hs, g.ws, g0.cs]))
        stem = dict(vars(g), name=plan.ops[nplan.stem].name, channels=g.channels, cs=g0.cs)
    return dict(act_type=ACT_TYPE[precision], nhwc_ops=ops, packs=packs, packed_elems=nplan.packed_elems,
                prepares=prepares, x0=x0, cudnn_nhwc=bool(nplan.paths), stem=stem, wgmma=nplan.uses_wgmma,
                halo=nplan.uses_halo, shift=nplan.uses_shift)  # fmt: skip


def _slot_bytes(plan: Plan, nhwc: NhwcPlan | None) -> list[int]:
    """Bytes per image of each activation buffer; the two layouts of one binary share them (one runs at a time)."""
    sizes = [4 * s for s in plan.slot_sizes]
    extra = nhwc.slot_bytes if nhwc is not None else []
    n = max(len(sizes), len(extra))
    return [max(sizes[i] if i < len(sizes) else 0, extra[i] if i < len(extra) else 0) for i in range(n)]


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["cstr"] = lambda s: json.dumps(str(s))  # JSON escapes are valid C++ string escapes
    return env


def emit_project(
    plan: Plan,
    out: Path,
    *,
    meta: dict[str, Any],
    backend: str,
    precision: str,
    max_batch: int,
    arch: str,
    libs: dict[str, Any],
    nhwc: NhwcPlan | None = None,
) -> dict[str, Any]:
    """Write the whole project into ``out``; return what was written. ``nhwc``: also the fp16/bf16 NHWC forward
    pass (the default at run time; CF_CONV_KERNELS=nchw|legacy run the fp32 NCHW one of the same binary)."""
    out.mkdir(parents=True, exist_ok=True)
    blob, entries = pack_weights(plan)
    crc = zlib.crc32(blob) & 0xFFFFFFFF
    offsets = {e["name"]: e["offset"] for e in entries}
    pre = meta["preprocessing"]
    ctx = dict(
        model=meta["model"], version=__version__, run_path=meta["run_path"], backend=backend, precision=precision,
        c=plan.in_shape[0], h=plan.in_shape[1], w=plan.in_shape[2], k=plan.num_outputs, classes=meta["classes"],
        mean=[float(v) for v in pre["mean"]], std=[float(v) for v in pre["std"]], output=plan.output,
        max_batch=max_batch, weights=entries, weight_bytes=len(blob), crc32=crc, slot_bytes=_slot_bytes(plan, nhwc),
        in_size=int(np.prod(plan.in_shape)), ops=[_op_view(op, offsets) for op in plan.ops],
        conv_fn="conv_cudnn" if backend == "cudnn" and precision in CUDNN_NCHW else CONV_FN[precision], arch=arch,
        arch_num=arch.removeprefix("sm_").removeprefix("compute_"), nhwc=nhwc is not None, cudnn_nhwc=False,
        stem=None, wgmma=False, halo=False, shift=False, **libs,
    )  # fmt: skip
    if nhwc is not None:
        ctx.update(nhwc_context(plan, nhwc, offsets, precision))
    env = _env()
    files = {
        "network.h": "network.h.j2", "network.cu": "network.cu.j2", "main.cu": "main.cu.j2",
        "Makefile": "Makefile.j2", "CMakeLists.txt": "CMakeLists.txt.j2", "README.md": "README.md.j2",
    }  # fmt: skip
    for name, template in files.items():
        write_text(out / name, env.get_template(template).render(**ctx))
    kernels = out / "kernels"
    kernels.mkdir(exist_ok=True)
    for src in sorted(KERNEL_DIR.glob("*.cuh")):
        shutil.copyfile(src, kernels / src.name)
    write_bytes(out / "weights.bin", blob)
    manifest = dict(format="convforge-weights-1", model=meta["model"], dtype="float32", byte_order="little")
    manifest.update(bytes=len(blob), crc32=crc, tensors=entries)
    write_json(out / "weights.json", manifest)
    return dict(files=sorted([*files, "weights.bin", "weights.json", "kernels/"]), weight_bytes=len(blob), crc32=crc)

"""--backend cudnn --precision fp16|bf16: which layers of the NHWC network (nhwc.py) cuDNN and cuBLAS run.

The activation layout, buffers and non-convolution kernels are those of the native NHWC path; only convolutions and
dense layers change hands (kernels/cudnn_nhwc.cuh):
- a convolution runs through cuDNN on NHWC tensors of cs channels, the padded ones included (their packed weights
  are 0, so they add nothing). cuDNN's NHWC filter layout [cs_out][kh][kw][cin_g] is fully packed, so its weights
  are packed with Kp = K (the native kernel rounds Kp up to whole 32-wide k tiles). Its bias is also packed as a
  T vector of cs_out (0 past cout): the operand of cuDNN's fused bias + ReLU;
- a dense layer is one cublasGemmEx over the flat NHWC rows, with the native kernel's packed weights (lda = Kp);
- a convolution cuDNN cannot express exactly keeps the native NHWC kernel (nhwc.choose_tiles): padding that is not
  symmetric (cuDNN pads both sides alike), or a layer that writes the fp32 logits (cuDNN's legacy API writes y in
  x's data type); so does a stride-1 stem over a 4-channel input (nhwc.py), which cuDNN runs without tensor cores;
- a strided stem rewritten space-to-depth (s2d.py: 16 or 48 channels a pixel, stride 1, no padding) is a cuDNN
  convolution like the others, on its tensor-core NHWC path. It also keeps the native kernel, with its own packed
  weights (whole 32-wide k tiles) and one tile, so that CF_CUDNN_STEM=native in the environment of the generated
  program runs it natively for comparison (kernels/cudnn_nhwc.cuh). Measured on an H200, resnet18 224 px fp16: the
  whole pass 2.90 ms with this stem in cuDNN (0.65 ms of it) vs 3.23 ms native; alexnet 0.94 vs 1.09 ms.
"""

from __future__ import annotations

import math
from dataclasses import replace

from .nhwc import NhwcPlan, Pack
from .plan import Op

ALIGN_ELEMS = 64  # packed tensors start 128 bytes apart, as in nhwc._pack_all


def native_why(op: Op, fp32_out: bool, cs_in: int) -> str:
    """Why this (non-dense) convolution keeps the native kernel; '' when cuDNN runs it."""
    if fp32_out:
        return "writes the fp32 logits (cuDNN writes y in x's data type)"
    if cs_in % 8:  # measured on resnet18's 7x7/2 stem before it was rewritten space-to-depth (s2d.py), 224 px batch
        # 256, H200 (ncu: this stem alone 5.25 ms in cuDNN, 1.41 native)
        return (
            "input of 4 channels a pixel: cuDNN runs it without tensor cores (resnet18 224 px batch 256: 3.22 ms "
            "with this stem native, 6.13 ms in cuDNN, 3.43 ms in cuDNN with the input padded to 8; H200)"
        )
    p = op.p
    for size, k, stride, pad, dil, out in (
        (p["h"], p["kh"], p["sh"], p["ph"], p["dh"], p["ho"]),
        (p["w"], p["kw"], p["sw"], p["pw"], p["dw"], p["wo"]),
    ):
        if (size + 2 * pad - dil * (k - 1) - 1) // stride + 1 != out:
            return "asymmetric padding (cuDNN pads both sides alike)"
    return ""


def plan_cudnn(nplan: NhwcPlan) -> NhwcPlan:
    """Give every conv/dense of ``nplan`` its path (cudnn, cublas or native), repack cuDNN's weights with Kp = K,
    add their T biases, and lay the packed buffer out again. Changes ``nplan`` in place and returns it."""
    offset = 0

    def place(count: int) -> int:
        nonlocal offset
        at = offset
        offset += math.ceil(count / ALIGN_ELEMS) * ALIGN_ELEMS
        return at

    for i, op in enumerate(nplan.ops):
        if op.kind != "conv":
            continue
        pack, shape = nplan.packs[i], nplan.shapes[i]
        cs_in = nplan.geom[op.inputs[0].id].cs
        why = "" if op.p["dense"] else native_why(op, op.out.id in nplan.fp32_ids, cs_in)
        path = "cublas" if op.p["dense"] else "native" if why else "cudnn"
        if path == "cudnn" and i == nplan.stem:  # CF_CUDNN_STEM=native: one tile, the max-batch one
            nplan.stem_native = replace(pack, offset=place(pack.rows * pack.kp))
            nplan.tiles[i] = [replace(nplan.tiles[i][0], min_n=1)]
        elif path != "native":
            nplan.tiles[i] = []  # no native kernel to compile for this layer
        else:
            nplan.native_why[i] = why
        if path == "cudnn":
            shape[18] = shape[17]  # NhwcShape.Kp = K
            pack = replace(pack, kp=shape[17])
        nplan.packs[i] = replace(pack, offset=place(pack.rows * pack.kp))
        nplan.paths[i] = path
        if path == "cudnn" and "b" in op.weights:  # [cs_out] as a 1 x 1 "convolution" of one channel
            nplan.bias_packs[i] = Pack(op.weights["b"], place(pack.rows), pack.cout, pack.rows, 1, 1, 1, 1, 1)
    nplan.packed_elems = offset
    return nplan

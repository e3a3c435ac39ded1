"""convforge's Triton kernels compile for Hopper (sm_90) on a machine without a GPU: Triton's front end and ptxas,
which catch what the CPU interpreter lets through (a non-constexpr global read inside a kernel ran interpreted and
failed to compile on the GPU); each with the wait for its predecessor that programmatic dependent launch needs."""

import os
import types

import pytest

triton = pytest.importorskip("triton")

P, F, N, C = "*bf16", "*fp32", "i32", "constexpr"  # pointers, fp32 pointers, ints, constexprs
# the batchnorm statistics' arguments after the map (stats_finish's, and apply_forward's when it finishes them)
STATS = dict(partial=F, weight=F, bias=F, stats=F, running_mean=F, running_var=F, batches="*i64", momentum="fp32",
             eps="fp32", rows=N, c=N, programs=N)  # fmt: skip
NORM_ACT = {  # kernel: (signature, constexprs)
    "stats_partial": (
        dict(x=P, partial=F, rows=N, c=N, rows_per_program=N, programs=N, BM=C, BC=C),
        dict(BM=64, BC=64),
    ),
    "stats_finish": (dict(x=P, **STATS, BP=C, BC=C), dict(BP=256, BC=16)),
    "apply_forward": (
        dict(x=P, y=P, **STATS, ACT=C, FINISH=C, BM=C, BC=C, BP=C),
        dict(FINISH=True, BM=64, BC=64, BP=64),
    ),
    "grad_partial": (
        dict(
            x=P,
            dy=P,
            g_out=P,
            scale=F,
            shift=F,
            mean=F,
            rstd=F,
            partial=F,
            rows=N,
            c=N,
            rows_per_program=N,
            programs=N,
            ACT=C,
            BM=C,
            BC=C,
        ),
        dict(BM=64, BC=64),
    ),  # fmt: skip
    "sum_partials": (dict(partial=F, sums=F, c=N, programs=N, BP=C, BC=C), dict(BP=256, BC=16)),
    "grad_apply": (
        dict(
            x=P,
            g_in=P,
            dx=P,
            scale=F,
            shift=F,
            mean=F,
            rstd=F,
            partial=F,
            sums=F,
            rows=N,
            c=N,
            programs=N,
            ACT=C,
            ADD=C,
            BM=C,
            BC=C,
            BP=C,
        ),
        dict(ADD=True, BM=64, BC=64, BP=64),
    ),
}
POOL = dict(positions=N, ho=N, wo=N, h=N, w=N, c=N, KH=C, KW=C, BP=C, BC=C)
POOL_KERNELS = {
    "pool_forward": (dict(x=P, y=P, arg="*i8", **POOL), dict(KH=2, KW=2, BP=32, BC=64)),
    "pool_backward": (dict(g=P, arg="*i8", gx=P, **POOL), dict(KH=2, KW=2, BP=32, BC=64)),
}


CONV_ACT = {
    "conv_act_forward": (
        dict(x="*fp32", weight=F, bias=F, y=P, pixels=N, ho=N, wo=N, h=N, w=N, xn=N, xc=N, xh=N, xw=N, C=C, KH=C,
             KW=C, STRIDE=C, PAD=C, OUT=C, BO=C, ACT=C, HAS_BIAS=C, BP=C),
        dict(C=3, KH=2, KW=2, STRIDE=1, PAD=0, OUT=24, BO=32, HAS_BIAS=True, BP=64),
    ),
}  # fmt: skip
MAP = dict(pixels=N, ho=N, wo=N, h=N, w=N, sxn=N, sxc=N, sxh=N, sxw=N)
SHAPE = dict(CIN=C, COUT=C, KH=C, KW=C, PAD_H=C, PAD_W=C)
SMALL_CONV = {  # the input-gradient form: the ReLU gate, the flipped taps
    "conv_forward": (
        dict(x=P, gate=P, weight=F, bias=F, y=P, **MAP, swo=N, swi=N, swh=N, sww=N, **SHAPE, SIGN=C, GATE=C,
             HAS_BIAS=C, ACT=C, BP=C, BK=C, BCO=C),
        dict(CIN=16, COUT=8, KH=3, KW=3, PAD_H=1, PAD_W=1, SIGN=-1, GATE=True, HAS_BIAS=False, BP=64, BK=32, BCO=16),
    ),
    "wgrad_partial": (
        dict(x="*fp32", g=P, gate=P, partial=F, **MAP, per_chunk=N, row=N, **SHAPE, GATE=C, BP=C, BK=C, BCO=C),
        dict(CIN=1, COUT=8, KH=3, KW=3, PAD_H=1, PAD_W=1, GATE=True, BP=128, BK=16, BCO=16),
    ),
    "wgrad_finish": (
        dict(partial=F, dw=F, db=F, chunks=N, row=N, swo=N, swi=N, swh=N, sww=N, CIN=C, COUT=C, KW=C, TAPS=C,
             HAS_BIAS=C, BR=C, BE=C),
        dict(CIN=1, COUT=8, KW=3, TAPS=9, HAS_BIAS=True, BR=128, BE=32),
    ),
}  # fmt: skip
DENSE = dict(rows=N, k_size=N, hw=N, w=N, sxm=N, sxc=N, sxh=N, sxw=N)
SMALL_DENSE = {
    "dense_forward": (
        dict(
            x="*fp32",
            weight=F,
            bias=F,
            y=P,
            partial=F,
            **DENSE,
            per_split=N,
            OUT=C,
            HAS_BIAS=C,
            ACT=C,
            SPLIT=C,
            BM=C,
            BK=C,
            BO=C,
        ),
        dict(OUT=10, HAS_BIAS=True, SPLIT=True, BM=32, BK=64, BO=16),
    ),  # fmt: skip
    "dense_finish": (
        dict(partial=F, bias=F, y=P, rows=N, splits=N, OUT=C, HAS_BIAS=C, ACT=C, BM=C, BO=C),
        dict(OUT=10, HAS_BIAS=True, BM=32, BO=16),
    ),
    "dense_input_grad": (
        dict(g=P, gate=P, weight=F, dx=P, **DENSE, OUT=C, GATE=C, BM=C, BK=C, BO=C),
        dict(OUT=128, GATE=True, BM=32, BK=128, BO=64),
    ),
    "dense_weight_grad": (
        dict(x=P, g=P, gate=P, dw=F, db=F, **DENSE, OUT=C, GATE=C, HAS_BIAS=C, BM=C, BK=C, BO=C),
        dict(OUT=128, GATE=True, HAS_BIAS=True, BM=64, BK=64, BO=64),
    ),
}
GATHER = {
    "gather_chunk": (
        dict(images="*u8", labels="*i64", order="*i64", ptr="*i64", lr_table=F, offset=F, scale=F, out_images=F,
             out_labels="*i64", out_rows="*i64", out_lrs=F, tickets="*i32", batch=N, image_size=N, channels=N,
             groups=N, BLOCK=C),
        dict(BLOCK=1024),
    ),
}  # fmt: skip
LOSS = {  # bf16 logits, up to 16 classes: the training step's (engine/cross_entropy.py)
    "cross_entropy_forward": (
        dict(logits=P, labels="*i64", loss=F, grad=P, rows=N, classes=N, stride=N, smoothing="fp32", BM=C, BC=C),
        dict(BM=32, BC=16),
    ),
}
AUGMENT = {  # a mirror and a translate of fp32 RGB images (engine/augment.py)
    "flip_shift": (
        dict(src=F, dst=F, top="*i64", left="*i64", flip="*u8", total=N, h=N, w=N, pad=N, C=C, SHIFT=C, FLIP=C,
             BLOCK=C),
        dict(C=3, SHIFT=True, FLIP=True, BLOCK=1024),
    ),
}  # fmt: skip
TABLES = {
    "norm_act": NORM_ACT,
    "pool": POOL_KERNELS,
    "conv_act": CONV_ACT,
    "small_conv": SMALL_CONV,
    "small_dense": SMALL_DENSE,
    "gather": GATHER,
    "loss": LOSS,
    "augment": AUGMENT,
}
CASES = [
    (source, name, act)
    for source, table in TABLES.items()
    for name in table
    for act in ([0, 1] if "ACT" in table[name][0] else [None])
]


def compile_all() -> list[str]:
    """Each case compiled to a cubin for sm_90; the failures, one line each. Runs in a process of its own: one whose
    Triton was imported under TRITON_INTERPRET=1 (conftest.py on machines without a GPU) cannot compile."""
    import triton
    from triton.backends.compiler import GPUTarget

    from convforge.engine import _augment_triton, cross_entropy
    from convforge.engine.fast import _gather_triton
    from convforge.models import (
        _conv_act_triton,
        _dependent_triton,
        _norm_act_triton,
        _pool_triton,
        _small_conv_triton,
        _small_dense_triton,
    )

    _dependent_triton.SUPPORTED = triton.language.constexpr(True)  # the PDL wait compiled in, as for a Hopper GPU
    modules = {
        "norm_act": _norm_act_triton,
        "pool": _pool_triton,
        "conv_act": _conv_act_triton,
        "small_conv": _small_conv_triton,
        "small_dense": _small_dense_triton,
        "gather": _gather_triton,
        "loss": types.SimpleNamespace(cross_entropy_forward=cross_entropy._forward_kernel()),  # a factory's kernel
        "augment": _augment_triton,
    }
    failures = []
    for source, name, act in CASES:
        signature, constexprs = TABLES[source][name]
        if act is not None:
            constexprs = {**constexprs, "ACT": act}
        fn = getattr(modules[source], name)
        try:
            src = triton.compiler.ASTSource(fn=fn, signature=signature, constexprs=constexprs)
            compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32))
            assert compiled.asm["cubin"]
            assert "griddepcontrol.wait" in compiled.asm["ptx"], "no PDL wait (models/_dependent_triton.py)"
        except Exception as err:  # noqa: BLE001  (report every kernel, not the first failure)
            while err.__cause__ is not None:
                err = err.__cause__
            failures.append(f"{name} ACT={act}: {type(err).__name__}: {str(err)[-300:]}")
    return failures


def test_every_kernel_compiles_for_sm90(tmp_path):
    import subprocess
    import sys

    from triton.backends import backends

    if "nvidia" not in backends:
        pytest.skip("this Triton has no NVIDIA back end")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path)
    done = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert done.stdout.strip() == f"{len(CASES)} kernels compiled"


if __name__ == "__main__":
    problems = compile_all()
    print("\n".join(problems) if problems else f"{len(CASES)} kernels compiled")
    raise SystemExit(1 if problems else 0)

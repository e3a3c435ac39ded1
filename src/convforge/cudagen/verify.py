"""Check a built project against the PyTorch model of the same Run, and run it under compute-sanitizer.

Tolerances (probabilities): fp32 max |diff| <= 1e-4 and 100% top-1 agreement; tf32/fp16/bf16 <= 2e-2 and >= 99.9%.
The reference runs in float32 with TF32 off, so fp32 is compared with true fp32 arithmetic.

A half-precision top-1 that differs from the reference's on a near tie (the two classes' reference probabilities
within TIE of each other) is rounding, not a bug, and does not count against the agreement: random-weight networks
have many near ties (alexnet fp16: 1 of 256 images flipped with max |diff| 2.0e-3; H200, codegen_fp16_s14.log).
Any other flip does, and fp32 allows none.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConvforgeError

TOLERANCE = {"fp32": (1e-4, 1.0), "tf32": (2e-2, 0.999), "fp16": (2e-2, 0.999), "bf16": (2e-2, 0.999)}
TIE = {"fp32": 0.0, "tf32": 1e-2, "fp16": 1e-2, "bf16": 2e-2}  # reference probability gaps a rounding may swap


def synthetic_images(shape: tuple[int, int, int], n: int, seed: int = 0) -> np.ndarray:
    """uint8 N x C x H x W: smooth random blobs plus noise (not zeros, not pure noise)."""
    rng = np.random.default_rng(seed)
    c, h, w = shape
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    imgs = np.zeros((n, c, h, w), np.float32)
    for i in range(n):
        for _ in range(3):
            cy, cx, r = rng.random(3) * [1, 1, 0.4] + [0, 0, 0.1]
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
            imgs[i] += blob[None] * rng.random((c, 1, 1)) * 255
    imgs += rng.normal(0, 20, imgs.shape)
    return np.clip(imgs, 0, 255).astype(np.uint8)


def reference_probs(run, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """The Run's torch model on normalised images, float32, TF32 off; softmax or sigmoid like the program."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = run.load_model(device)
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        outs = []
        with torch.no_grad():
            for i in range(0, len(images), batch):
                x = run.normalize(torch.from_numpy(images[i : i + batch]).to(device))
                logits = model(x).float()
                p = torch.sigmoid(logits) if run.output == "sigmoid" else torch.softmax(logits.flatten(1), 1)
                outs.append(p.cpu().numpy())
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old
    return np.concatenate(outs).reshape(len(images), -1)


def run_program(out: Path, images: np.ndarray, extra: list[str] | None = None, timeout_s: int = 600) -> np.ndarray:
    """Run the built classifier on uint8 images; return its probabilities (N x outputs)."""
    binary = out / "classify"
    if not binary.is_file():
        raise ConvforgeError(f"{binary} does not exist; build the project first (codegen --build)")
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "images.npy", Path(tmp) / "probs.npy"
        np.save(src, np.ascontiguousarray(images))
        cmd = [str(binary), "--quiet", "--weights", str(out), "--out", str(dst), *(extra or []), str(src)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        if proc.returncode != 0:
            raise ConvforgeError(f"{binary} failed: {(proc.stderr or proc.stdout).strip()[:300]}")
        return np.load(dst)


def compare(ours: np.ndarray, ref: np.ndarray, precision: str) -> dict[str, Any]:
    max_abs, min_agree = TOLERANCE[precision]
    diff = float(np.abs(ours - ref).max())
    if ref.shape[1] == 1:
        flips = (ours[:, 0] > 0.5) != (ref[:, 0] > 0.5)
        gaps = np.abs(2 * ref[:, 0] - 1)  # the reference's p and 1 - p
    else:
        rows = np.arange(len(ref))
        mine, theirs = ours.argmax(1), ref.argmax(1)
        flips = mine != theirs
        gaps = ref[rows, theirs] - ref[rows, mine]
    near_ties = flips & (gaps <= TIE[precision])
    agree = float(1 - (flips & ~near_ties).mean()) if len(ref) else 1.0
    ok = bool(diff <= max_abs and agree >= min_agree and np.isfinite(ours).all())
    return dict(images=len(ref), max_abs_diff=diff, top1_agreement=agree, near_tie_flips=int(near_ties.sum()),
                tolerance=max_abs, passed=ok)  # fmt: skip


def verify_project(run, out: Path, precision: str = "fp32", images: np.ndarray | None = None, n: int = 512):
    """Build must exist. Compare with PyTorch; raise ConvforgeError when outside the tolerances."""
    pre = run.preprocessing
    source = "given"
    if images is None:
        images, source = synthetic_images((pre["channels"], pre["height"], pre["width"]), n), "synthetic"
    result = compare(run_program(out, images), reference_probs(run, images), precision)
    result.update(precision=precision, source=source)
    if not result["passed"]:
        raise ConvforgeError(
            f"generated code disagrees with PyTorch ({precision}): max |diff| {result['max_abs_diff']:.2e} "
            f"(limit {result['tolerance']:.0e}), top-1 agreement {result['top1_agreement']:.2%} (near ties aside); "
            "report this bug"
        )
    return result


def memcheck(out: Path, images: np.ndarray, timeout_s: int = 600) -> dict[str, Any]:
    """Run the program under compute-sanitizer memcheck; 'clean' when it reports no errors."""
    tool = shutil.which("compute-sanitizer") or "/usr/local/cuda/bin/compute-sanitizer"
    if not Path(tool).is_file():
        raise ConvforgeError("compute-sanitizer not found; install the CUDA toolkit's sanitizer")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "images.npy"
        np.save(src, np.ascontiguousarray(images))
        cmd = [tool, "--tool", "memcheck", "--error-exitcode", "9", str(out / "classify"), "--quiet",
               "--weights", str(out), str(src)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    summary = next((ln for ln in proc.stdout.splitlines() if "ERROR SUMMARY" in ln), proc.stdout[-300:])
    return dict(clean=proc.returncode == 0, summary=summary.strip(), returncode=proc.returncode)

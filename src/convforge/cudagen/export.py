"""Export a Run's model to ONNX or TorchScript, with probabilities as output, checked against PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import ConvforgeError
from .verify import synthetic_images

FORMATS = ("onnx", "torchscript")


class _WithOutput(torch.nn.Module):
    """logits -> probabilities, as the generated CUDA program gives."""

    def __init__(self, model: torch.nn.Module, output: str):
        super().__init__()
        self.model, self.sigmoid = model, output == "sigmoid"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        return torch.sigmoid(logits) if self.sigmoid else torch.softmax(logits, dim=1)


def export(run, out, format: str = "onnx", check: bool = True) -> Path:
    """Write ``out`` (a file path; .onnx / .pt added when missing); check outputs on sample images."""
    from ..run import Run

    if format not in FORMATS:
        raise ConvforgeError(f"export format {format!r} is unknown; choose from: {', '.join(FORMATS)}")
    run = run if isinstance(run, Run) else Run.open(run)
    out = Path(out)
    suffix = ".onnx" if format == "onnx" else ".pt"
    if out.suffix != suffix:
        out = out.with_name(out.name + suffix)
    out.parent.mkdir(parents=True, exist_ok=True)
    net = _WithOutput(run.load_model("cpu"), run.output).eval()
    pre = run.preprocessing
    images = synthetic_images((pre["channels"], pre["height"], pre["width"]), 4)
    x = run.normalize(torch.from_numpy(images))
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        if format == "onnx":
            _export_onnx(net, x, tmp)
        else:
            torch.jit.save(torch.jit.trace(net, x), str(tmp))
        if check:
            _check(net, x, tmp, format)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _export_onnx(net: torch.nn.Module, x: torch.Tensor, path: Path) -> None:
    kwargs = dict(input_names=["images"], output_names=["probs"], opset_version=18)
    try:  # the TorchScript-based exporter: one self-contained file, dynamic batch
        torch.onnx.export(net, (x,), str(path), dynamo=False, dynamic_axes={"images": {0: "n"}, "probs": {0: "n"}},
                          **kwargs)  # fmt: skip
    except (TypeError, RuntimeError):  # torch versions without the legacy exporter
        batch = torch.export.Dim("n", min=1, max=65536)
        prog = torch.onnx.export(net, (x,), dynamo=True, dynamic_shapes=({0: batch},), **kwargs)
        prog.save(str(path))


def _check(net: torch.nn.Module, x: torch.Tensor, path: Path, format: str) -> None:
    with torch.no_grad():
        ref = net(x).numpy()
    if format == "onnx":
        try:
            import onnxruntime as ort
        except ImportError:
            raise ConvforgeError(
                "onnxruntime is not installed; pip install onnxruntime, or export with check=False"
            ) from None
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    else:
        got = torch.jit.load(str(path))(x).detach().numpy()
    diff = float(np.abs(got - ref).max())
    if diff > 1e-4:
        raise ConvforgeError(f"exported {format} model differs from PyTorch by {diff:.2e}; report this bug")

"""bench devices on a CPU-only machine: the CPU rows run, the GPU rows are reported as skipped."""

from __future__ import annotations

import pytest
import torch

from convforge.bench.devices import bench_devices
from convforge.errors import ConfigError


def test_cpu_rows_and_skipped_gpu_rows(tmp_path, cache_dir):
    r = bench_devices(epochs=1, threads=1, out=tmp_path / "d", cache_dir=str(cache_dir), log=lambda s: None)
    assert r.rows[0]["setting"] == "cpu-1t" and r.rows[0]["speedup"] == 1.0
    assert r.rows[0]["torch_threads"] == 1 and r.rows[0]["test_acc"] > 0.2
    if not torch.cuda.is_available():
        assert len(r.rows) == 1 and "gpu-cudnn" in r.extra["skipped"] and "skipped" in r.text
    assert (tmp_path / "d" / "devices.png").stat().st_size > 0 and (tmp_path / "d" / "report.md").is_file()


def test_device_options_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="--device"):
        bench_devices(device="cpu", out=tmp_path / "x")

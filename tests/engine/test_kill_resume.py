"""A training process killed with SIGKILL leaves a whole checkpoint, and --resume finishes the run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_sigkill_then_resume(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "CONVFORGE_CACHE": str(tmp_path / "cache")}
    args = [sys.executable, "-m", "convforge", "train", "--epochs", "15", "--out", str(out), "--device", "cpu"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = out / "metrics.json"
    deadline = time.time() + 120
    while time.time() < deadline:
        if metrics.is_file() and len(json.loads(metrics.read_text() or "[]")) >= 2:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(json.loads(metrics.read_text()))
    assert 2 <= done_before < 15, "the run finished before it could be killed"
    assert not (out / "model.safetensors").exists()
    resumed = subprocess.run(
        [sys.executable, "-m", "convforge", "train", "--resume", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout and resumed.stdout.strip().splitlines()[-1].startswith("test accuracy:")
    history = json.loads(metrics.read_text())
    assert [row["epoch"] for row in history] == list(range(1, 16))
    assert (out / "model.safetensors").is_file()

"""DDP with two CPU processes (gloo) through the CLI: Lightning launches the second rank; metrics all-reduce."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest


@pytest.mark.ddp
@pytest.mark.slow
def test_two_cpu_processes_one_epoch(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("NEURALCOLLAPSE_RUN_DIR", None)
    cmd = [sys.executable, "-m", "neuralcollapse", "train", "--accelerator", "cpu", "--devices", "2", "--strategy",
           "ddp", "--epochs", "1", "--out", str(out), "--no-progress", "--no-plots", "--soft-targets", "class",
           "--set", "model_kwargs={hidden: [32]}", "--train-subset", "512"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in proc.stdout + proc.stderr
    rows = json.loads((out / "metrics.json").read_text())
    assert len(rows) == 1
    row = rows[0]
    # each rank sees half of the 512 samples: ceil(256 / 64) = 4 optimiser steps
    assert row["step"] == math.ceil(512 / 2 / 64)
    # all-reduced evaluation over the whole test split (450 digits; DistributedSampler-style padding to 450)
    assert 0.0 < row["test/acc"] <= 1.0 and math.isfinite(row["test_nc/nc1"])
    # the train-mode averages are reduced over both ranks: sample-weighted over 512 samples
    assert abs(row["train/acc"] * 512 - round(row["train/acc"] * 512)) < 1e-6
    assert (out / "checkpoints" / "last.ckpt").is_file() and "run folder" in proc.stdout

"""DDP with two CPU processes (gloo) through the CLI: Lightning launches the second rank; metrics all-reduce; what
is logged describes the saved model (BatchNorm running statistics agree across ranks before evaluating and
saving) and counts every sample once (no DistributedSampler padding duplicates in evaluation)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch


@pytest.mark.ddp
@pytest.mark.slow
def test_two_cpu_processes_one_epoch_logged_metrics_are_those_of_the_saved_model(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("NEURALCOLLAPSE_RUN_DIR", None)
    # The MLP has BatchNorm (model default); 511 training samples: an odd split, which a padding sampler would
    # pad with a duplicate to 2 × 256.
    cmd = [sys.executable, "-m", "neuralcollapse", "train", "--accelerator", "cpu", "--devices", "2", "--strategy",
           "ddp", "--epochs", "1", "--out", str(out), "--no-progress", "--no-plots", "--soft-targets", "class",
           "--set", "model_kwargs={hidden: [32]}", "--train-subset", "511"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in proc.stdout + proc.stderr
    rows = json.loads((out / "metrics.json").read_text())
    assert len(rows) == 1
    row = rows[0]
    # each rank sees half of the 511 samples (the training sampler pads to 2 × 256): ceil(256 / 64) = 4 steps
    assert row["step"] == math.ceil(512 / 2 / 64)
    # the train-mode averages are reduced over both ranks: sample-weighted over the 512 (padded) samples
    assert abs(row["train/acc"] * 512 - round(row["train/acc"] * 512)) < 1e-6
    assert (out / "checkpoints" / "last.ckpt").is_file() and "run folder" in proc.stdout

    # Recompute everything logged from the saved checkpoint in this single process, independently (plain forward
    # passes + the functional NC metrics): equal to 1e-6. Before the fix the ranks' BatchNorm statistics diverged
    # (only rank 0's are saved) and one training sample was evaluated twice.
    from neuralcollapse.metrics import neural_collapse
    from neuralcollapse.training.datamodule import load_data
    from neuralcollapse.training.evaluation import extract, load_module

    module, config, done = load_module(out, device="cpu")
    assert done == 1 and any(isinstance(m, torch.nn.BatchNorm1d) for m in module.modules())
    splits, _ = load_data(config)
    assert len(splits.train_y) == 511
    weight, bias = module.classifier_matrix()
    compared = 0
    for stage, x, y in (("train", splits.train_x, splits.train_y), ("test", splits.test_x, splits.test_y)):
        rep = extract(module, x, y, batch_size=97)
        acc = float((rep["logits"].argmax(dim=1) == y).double().mean())
        assert row[f"{'train_clean' if stage == 'train' else 'test'}/acc"] == pytest.approx(acc, abs=1e-9)
        nc = neural_collapse(rep["features"], y, weight=weight, bias=bias, logits=rep["logits"])
        for key in ("nc1", "nc2", "nc2_means", "nc3", "nc4"):
            assert row[f"{stage}_nc/{key}"] == pytest.approx(nc[key], rel=1e-6, abs=1e-9), (stage, key)
            compared += 1
    assert compared == 10 and math.isfinite(row["test_nc/nc1"])

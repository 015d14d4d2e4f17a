"""Checkpoints: SIGKILL mid-epoch then --resume equals an uninterrupted run; corrupt files give clear errors;
writes are atomic."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from neuralcollapse.cli import main
from neuralcollapse.training.checkpoint import CorruptCheckpointError, atomic_torch_save, load_checkpoint

# One script for the three runs (same interpreter settings: one thread, deterministic): the reference, the run
# killed with SIGKILL in the middle of its third epoch, and the CLI resume of the killed run.
SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    torch.set_num_threads(1)
    from lightning.pytorch.callbacks import Callback
    from neuralcollapse.training import TrainConfig, fit

    out, kill_epoch, kill_batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

    class KillAt(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.current_epoch == kill_epoch and batch_idx == kill_batch:
                os.kill(os.getpid(), signal.SIGKILL)

    cfg = TrainConfig(epochs=4, batch_size=64, lr=0.1, model_kwargs={"hidden": [32]}, soft_targets="instance",
                      augment=True, crop_padding=1, flip=False, deterministic=True, progress=False, plots=False,
                      out=out)
    fit(cfg, callbacks=[KillAt()] if kill_epoch >= 0 else [])
    """
)


def _run_script(out: Path, kill_epoch: int = -1, kill_batch: int = -1) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", SCRIPT, str(out), str(kill_epoch), str(kill_batch)],
                          capture_output=True, text=True, env=env, timeout=300)


def _rows(folder: Path) -> list[dict]:
    return json.loads((folder / "metrics.json").read_text())


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path):
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    done = _run_script(ref)
    assert done.returncode == 0, done.stderr[-3000:]
    crash = _run_script(killed, kill_epoch=2, kill_batch=5)
    assert crash.returncode == -signal.SIGKILL
    ckpt = load_checkpoint(killed / "checkpoints" / "last.ckpt")
    assert ckpt["epoch"] == 1  # the end-of-epoch-2 checkpoint (0-indexed epoch 1): at most epoch 3 is redone
    assert [r["epoch"] for r in _rows(killed)] == [1, 2]
    assert not list((killed / "checkpoints").glob("*.tmp"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    code = ("import sys, torch; torch.set_num_threads(1); from neuralcollapse.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    resumed = subprocess.run([sys.executable, "-c", code, "train", "--resume", str(killed), "--no-progress"],
                             capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    ref_rows, res_rows = _rows(ref), _rows(killed)
    assert [r["epoch"] for r in res_rows] == [1, 2, 3, 4]
    assert res_rows == ref_rows  # every metric of every epoch, exactly (CPU, deterministic, same seed)
    a = torch.load(ref / "checkpoints" / "last.ckpt", weights_only=False)
    b = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=False)
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    soft = [k for k in a["callbacks"] if "AnticlassSelfDistillation" in k]
    assert soft and torch.equal(a["callbacks"][soft[0]]["probs"], b["callbacks"][soft[0]]["probs"])


def test_corrupt_and_truncated_checkpoints_raise_clearly(tmp_path):
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(CorruptCheckpointError, match=r"is empty \(0 bytes\)"):
        load_checkpoint(empty)
    good = tmp_path / "good.ckpt"
    atomic_torch_save({"state_dict": {"w": torch.arange(1000.0)}, "epoch": 3, "hyper_parameters": {}}, good)
    assert load_checkpoint(good)["epoch"] == 3
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CorruptCheckpointError, match=r"cannot be read: it is truncated or corrupt"):
        load_checkpoint(truncated)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(os.urandom(2048))
    with pytest.raises(CorruptCheckpointError, match="truncated or corrupt"):
        load_checkpoint(garbage)
    other = tmp_path / "other.ckpt"
    torch.save({"model": 1}, other)
    with pytest.raises(CorruptCheckpointError, match=r"not a neuralcollapse training checkpoint.*state_dict"):
        load_checkpoint(other)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.ckpt")


def test_resume_cli_with_corrupt_checkpoint_reports_it(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 not really a zip")
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "last.ckpt" in err and "truncated or corrupt" in err
    assert main(["train", "--resume", str(tmp_path / "nowhere")]) == 2
    assert "nothing to resume" in capsys.readouterr().err


class _Boom:
    def __reduce__(self):
        raise RuntimeError("disk full")


def test_atomic_save_never_replaces_the_last_good_file(tmp_path):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"state_dict": {}, "epoch": 1, "hyper_parameters": {}}, path)
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="disk full"):
        atomic_torch_save({"state_dict": {"x": _Boom()}, "epoch": 2, "hyper_parameters": {}}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_resume_refuses_trajectory_changes(tmp_path):
    from neuralcollapse.training.runner import resume_config

    run = tmp_path / "run"
    atomic_torch_save(
        {"state_dict": {}, "epoch": 0, "hyper_parameters": {"config": {"epochs": 3, "out": str(run)}}},
        run / "checkpoints" / "last.ckpt",
    )
    assert resume_config(run, {"epochs": 5}).epochs == 5
    with pytest.raises(ValueError, match=r"cannot change lr when resuming"):
        resume_config(run, {"lr": 1.0})

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

#: The run: digits, small MLP, instance soft targets (per-sample state), augmentation (RNG), deterministic mode.
SETTINGS = dict(epochs=4, batch_size=64, lr=0.1, model_kwargs={"hidden": [32]}, soft_targets="instance",
                augment=True, crop_padding=1, flip=False, deterministic=True, progress=False, plots=False,
                train_subset=512)

# The killed run runs in a subprocess (one intra-op thread, as the test process — see conftest.py) and is
# killed with SIGKILL in the middle of its third epoch.
KILLED = textwrap.dedent(
    f"""
    import os, signal, sys
    import torch
    torch.set_num_threads(1)
    from lightning.pytorch.callbacks import Callback
    from neuralcollapse.training import TrainConfig, fit

    class KillAt(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.current_epoch == 2 and batch_idx == 3:
                os.kill(os.getpid(), signal.SIGKILL)

    fit(TrainConfig(**{SETTINGS!r}, out=sys.argv[1]), callbacks=[KillAt()])
    """
)


@pytest.fixture
def restore_determinism():
    """Lightning's deterministic mode flips process-wide torch flags; put them back for the other tests."""
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    yield
    torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def _rows(folder: Path) -> list[dict]:
    return json.loads((folder / "metrics.json").read_text())


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path, restore_determinism):
    from neuralcollapse.training import TrainConfig, fit

    ref, killed = tmp_path / "ref", tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    crash = subprocess.run([sys.executable, "-c", KILLED, str(killed)], capture_output=True, text=True, env=env,
                           timeout=300)
    assert crash.returncode == -signal.SIGKILL, crash.stderr[-3000:]
    ckpt = load_checkpoint(killed / "checkpoints" / "last.ckpt")
    assert ckpt["epoch"] == 1  # the end-of-epoch-2 checkpoint (0-indexed epoch 1): at most epoch 3 is redone
    assert [r["epoch"] for r in _rows(killed)] == [1, 2]
    assert not list((killed / "checkpoints").glob("*.tmp"))

    assert main(["train", "--resume", str(killed), "--no-progress"]) == 0
    fit(TrainConfig(**SETTINGS, out=str(ref)))  # the uninterrupted reference
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


def test_stale_temporary_files_are_removed_on_resume(tmp_path):
    from neuralcollapse.training import TrainConfig, fit

    cfg = TrainConfig(epochs=1, progress=False, plots=False, tensorboard=False, nc_every=0,
                      model_kwargs={"hidden": [16]}, out=str(tmp_path / "run"))
    fit(cfg)
    stale = tmp_path / "run" / "checkpoints" / ".last.ckpt.12345.tmp"
    stale.write_bytes(b"half a checkpoint")
    fit(cfg.replace(epochs=2), resume=True)
    assert not stale.exists()
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["epoch"] == 1
    assert [r["epoch"] for r in _rows(tmp_path / "run")] == [1, 2]

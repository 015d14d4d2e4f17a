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


# ------------------------------------------------------------------------------------------ integrity, backups
TINY = dict(progress=False, plots=False, tensorboard=False, nc_every=0, model_kwargs={"hidden": [16]},
            train_subset=256)


def _flip_middle(path: Path, n: int = 64) -> None:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + n] = bytes(b ^ 0xFF for b in data[mid : mid + n])
    path.write_bytes(bytes(data))


def test_bit_flipped_checkpoint_is_refused_and_prev_ckpt_resumes(tmp_path, capsys):
    from neuralcollapse.training import TrainConfig, fit

    run = tmp_path / "run"
    fit(TrainConfig(**TINY, epochs=2, out=str(run)))
    last, prev = run / "checkpoints" / "last.ckpt", run / "checkpoints" / "prev.ckpt"
    a, b = load_checkpoint(prev), load_checkpoint(last)
    assert (a["epoch"], b["epoch"]) == (0, 1)  # prev.ckpt is the epoch before, a complete checkpoint
    assert not torch.equal(a["state_dict"]["net.head.weight"], b["state_dict"]["net.head.weight"])

    _flip_middle(last)
    corrupt = last.read_bytes()
    with pytest.raises(CorruptCheckpointError, match=r"last\.ckpt.* is corrupt: .*fails the CRC-32 check.*prev\.ckpt"):
        load_checkpoint(last)
    assert main(["train", "--resume", str(run), "--epochs", "3", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "last.ckpt" in err and "CRC-32" in err and f"--resume {prev}" in err and "Traceback" not in err
    assert last.read_bytes() == corrupt  # the refused resume wrote nothing
    assert load_checkpoint(prev)["epoch"] == 0

    from neuralcollapse.cli import build_parser
    from neuralcollapse.training.commands import build_train_config

    args = build_parser().parse_args(["train", "--resume", str(run / "prev.ckpt"), "--epochs", "3"])  # shorthand
    assert build_train_config(args)[1] == prev
    assert main(["train", "--resume", str(prev), "--epochs", "3", "--no-progress"]) == 0  # only when asked
    assert [r["epoch"] for r in _rows(run)] == [1, 2, 3]
    assert (load_checkpoint(prev)["epoch"], load_checkpoint(last)["epoch"]) == (1, 2)


def _save(path: Path, epoch: int, backups=()) -> None:
    atomic_torch_save({"state_dict": {"w": torch.full((256,), float(epoch))}, "epoch": epoch, "hyper_parameters": {}},
                      path, backups=list(backups))


def _epochs(folder: Path) -> dict[str, int]:
    return {p.name: load_checkpoint(p)["epoch"] for p in sorted(folder.glob("*.ckpt"))}


class _Crash(RuntimeError):
    """Stands for SIGKILL at one step of the rotation (not an OSError: the copy fallback must not catch it)."""


def test_rotation_keeps_n_copies_and_a_crash_at_any_step_leaves_good_ones(tmp_path, monkeypatch):
    from neuralcollapse.training.checkpoint import AtomicCheckpointIO, backup_names

    names = backup_names(3)
    assert names == ["prev.ckpt", "prev-2.ckpt"] and AtomicCheckpointIO(1).backups == []
    folder = tmp_path / "ck"
    last = folder / "last.ckpt"
    for epoch in range(4):
        _save(last, epoch, names)
    assert _epochs(folder) == {"last.ckpt": 3, "prev-2.ckpt": 1, "prev.ckpt": 2}

    real = {name: getattr(os, name) for name in ("replace", "link")}
    for crash_at in range(4):  # the renames and the link of one save, in order
        calls = []

        def step(*args, _name, _calls=calls, _at=crash_at, **kwargs):
            _calls.append(_name)
            if len(_calls) == _at + 1:
                raise _Crash(f"killed at {_name} #{len(_calls)}")
            return real[_name](*args, **kwargs)

        for name in real:
            monkeypatch.setattr(os, name, lambda *a, _n=name, **k: step(*a, _name=_n, **k))
        with pytest.raises(_Crash):
            _save(last, 4, names)
        monkeypatch.undo()
        state = _epochs(folder)  # every file present loads (CRC-checked)
        assert state["last.ckpt"] == 3, (crash_at, state)  # last.ckpt is never missing nor partial
        assert set(state.values()) <= {1, 2, 3} and len(state) >= 2, (crash_at, state)
        _save(last, 4, names)  # the next save recovers the full rotation
        assert _epochs(folder) == {"last.ckpt": 4, "prev-2.ckpt": 2, "prev.ckpt": 3}, crash_at
        for name in ("prev.ckpt", "prev-2.ckpt"):  # back to the state before this round
            _save(folder / name, {"prev.ckpt": 2, "prev-2.ckpt": 1}[name])
        _save(last, 3)
    assert calls == ["replace", "link", "replace", "replace"]

    # A corrupt last.ckpt is not rotated into the backups (it would push out a good one).
    _flip_middle(last)
    _save(last, 5, names)
    assert _epochs(folder) == {"last.ckpt": 5, "prev-2.ckpt": 1, "prev.ckpt": 2}


def test_keep_checkpoints_setting(tmp_path):
    from neuralcollapse.training import TrainConfig, fit
    from neuralcollapse.training.config import validate_config

    with pytest.raises(ValueError, match="keep_checkpoints"):
        validate_config(TrainConfig(keep_checkpoints=0))
    fit(TrainConfig(**TINY, epochs=2, keep_checkpoints=1, out=str(tmp_path / "one")))
    assert sorted(p.name for p in (tmp_path / "one" / "checkpoints").iterdir()) == ["last.ckpt"]


# ------------------------------------------------------------------------------------------ TensorBoard
def _tensorboard_steps(run: Path) -> dict[str, list[tuple[int, float]]]:
    """(step, value) of every scalar, per tag, over all event files in the order TensorBoard reads them."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    out: dict[str, list[tuple[int, float]]] = {}
    for path in sorted((run / "tensorboard").rglob("events.out.tfevents.*"), key=lambda p: (p.parent, p.name)):
        for event in EventFileLoader(str(path)).Load():
            for v in event.summary.value:
                if v.metadata.plugin_data.plugin_name == "text":
                    continue
                value = v.simple_value if v.HasField("simple_value") else float(tensor_util.make_ndarray(v.tensor))
                out.setdefault(v.tag, []).append((event.step, value))
    return out


def test_tensorboard_steps_strictly_increase_across_a_resume(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    from neuralcollapse.training import TrainConfig, fit
    from neuralcollapse.training.checkpoint import AtomicCheckpointIO

    run = tmp_path / "run"
    cfg = TrainConfig(**{**TINY, "tensorboard": True}, epochs=3, out=str(run))
    real = AtomicCheckpointIO.save_checkpoint
    saved = []

    def crash_on_second(self, checkpoint, path, storage_options=None):
        saved.append(path)
        if len(saved) == 2:  # epoch 2 is logged (test metrics, OCCE tags) but its checkpoint never written
            raise RuntimeError("simulated crash while writing the epoch-2 checkpoint")
        return real(self, checkpoint, path, storage_options)

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", crash_on_second)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(cfg)
    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", real)
    fit(cfg.replace(epochs=4), resume=True)  # redoes epoch 2, then 3 and 4

    tags = _tensorboard_steps(run)
    for tag, points in tags.items():
        steps = [s for s, _ in points]
        assert steps == sorted(set(steps)), (tag, steps)  # strictly increasing: no duplicate step
    assert len(list((run / "tensorboard" / "digits" / "mlp").iterdir())) == 1  # one version folder for the run
    per_epoch = 256 // 64
    assert [s for s, _ in tags["test/acc"]] == [per_epoch * e - 1 for e in (1, 2, 3, 4)]
    assert [s for s, _ in tags["epoch"]] == [per_epoch * e - 1 for e in (1, 2, 3, 4)]
    assert [s for s, _ in tags["Val/Accuracy"]] == [0, 1, 2, 3]  # the official OCCE tags: step = 0-indexed epoch
    rows = _rows(run)
    assert [v for _, v in tags["test/acc"]] == pytest.approx([r["test/acc"] for r in rows], abs=1e-6)
    assert [v for _, v in tags["Train/Accuracy"]] == pytest.approx([r["train/acc"] for r in rows], abs=1e-6)

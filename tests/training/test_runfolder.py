"""Run folders: one writer at a time (an exclusive lock naming its holder, released on exit and after a crash),
and one clear message, exit code 2 and nothing damaged when the folder cannot be written (before or mid-run)."""

from __future__ import annotations

import builtins
import errno
import io
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from neuralcollapse.cli import main
from neuralcollapse.training.checkpoint import atomic_torch_save, load_checkpoint
from neuralcollapse.training.runfolder import RunFolderBusyError, RunFolderLock, RunFolderNotWritableError

TINY = dict(progress=False, plots=False, nc_every=0, model_kwargs={"hidden": [16]}, train_subset=256)

# A process that takes the lock and keeps it (imports nothing but the stdlib and the lock module: fast).
HOLD = textwrap.dedent(
    """
    import sys, time
    from neuralcollapse.training.runfolder import RunFolderLock
    RunFolderLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    time.sleep(300)
    """
)


def _hold(folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _fake_run(run: Path) -> None:
    """A run folder whose last.ckpt resume_config accepts (epoch 1 of 3 done)."""
    atomic_torch_save({"state_dict": {}, "epoch": 0, "hyper_parameters": {"config": {**TINY, "epochs": 3}}},
                      run / "checkpoints" / "last.ckpt")
    (run / "metrics.json").write_text("[]")


def test_second_writer_is_refused_naming_the_holder_pid_and_a_killed_holder_leaves_no_stale_lock(tmp_path, capsys):
    run = tmp_path / "run"
    holder = _hold(run)
    try:
        with pytest.raises(RunFolderBusyError, match=rf"in use by another neuralcollapse process \(PID {holder.pid} "):
            RunFolderLock(run).acquire()
        assert main(["train", "--out", str(run), "--epochs", "1", "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert f"(PID {holder.pid} on host" in err and "--out" in err and "Traceback" not in err
        assert sorted(p.name for p in run.iterdir()) == [".lock"]  # the refused run wrote nothing
    finally:
        holder.kill()  # SIGKILL: no clean-up code runs in the holder
        holder.wait()
    with RunFolderLock(run) as lock:  # the kernel released the dead holder's lock
        assert lock.held and f"pid={os.getpid()} " in (run / ".lock").read_text()
    with RunFolderLock(run):  # released on exit (release() and the with block)
        pass


def test_lock_of_a_new_folder_that_stays_empty_is_removed_again(tmp_path):
    run = tmp_path / "new"
    with RunFolderLock(run):
        assert (run / ".lock").is_file()
    assert not run.exists()
    run.mkdir()
    with RunFolderLock(run):
        pass
    assert (run / ".lock").is_file()  # an existing folder keeps its lock file (removing it would race)


# The first run pauses at the end of epochs 1 and 2 (before that epoch's checkpoint), so that the test can try a
# second `train` on the same new folder, and then a `--resume` of it, while it holds the folder.
FIRST = textwrap.dedent(
    f"""
    import pathlib, sys, time
    import torch
    torch.set_num_threads(1)
    from lightning.pytorch.callbacks import Callback
    from neuralcollapse.training import TrainConfig, fit

    signals = pathlib.Path(sys.argv[2])

    class Pause(Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            e = trainer.current_epoch
            if e < 2:
                (signals / f"ready{{e}}").touch()
                deadline = time.time() + 240
                while not (signals / f"go{{e}}").exists() and time.time() < deadline:
                    time.sleep(0.02)

    fit(TrainConfig(**{TINY!r}, epochs=3, tensorboard=False, out=sys.argv[1]), callbacks=[Pause()])
    """
)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.02)


@pytest.mark.slow
def test_two_train_processes_on_one_folder_the_second_is_refused(tmp_path, capsys):
    run, signals = tmp_path / "run", tmp_path / "signals"
    signals.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([sys.executable, "-c", FIRST, str(run), str(signals)], stderr=subprocess.PIPE, text=True,
                             env=env)
    try:
        _wait_for(signals / "ready0", first)  # epoch 1 trained, no checkpoint yet: a "new" folder
        assert main(["train", "--out", str(run), "--epochs", "2", "--no-progress"]) == 2
        assert f"in use by another neuralcollapse process (PID {first.pid} " in capsys.readouterr().err
        (signals / "go0").touch()
        _wait_for(signals / "ready1", first)  # epoch 1's checkpoint exists: try to resume it meanwhile
        assert load_checkpoint(run / "checkpoints" / "last.ckpt")["epoch"] == 0
        assert main(["train", "--resume", str(run), "--epochs", "5", "--no-progress"]) == 2
        assert f"(PID {first.pid} " in capsys.readouterr().err
        (signals / "go1").touch()
        assert first.wait(timeout=240) == 0, first.stderr.read()[-3000:]
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    import json

    import yaml

    assert [r["epoch"] for r in json.loads((run / "metrics.json").read_text())] == [1, 2, 3]
    assert yaml.safe_load((run / "config.yaml").read_text())["epochs"] == 3  # the first run's, not the refused ones
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["epoch"] == 2
    with RunFolderLock(run):  # released when the first process exited
        pass


# ------------------------------------------------------------------------------------------ read-only folders
class _ReadOnly:
    """Make ``folder`` read-only: ``chmod -R a-w`` where that is effective; as root (chmod does not stop root)
    the same denial is emulated by refusing every write under ``folder`` (open for writing, create, rename,
    link, unlink, mkdir) with ``PermissionError(EACCES)``, as the kernel does for a non-root user."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.folder = Path(folder).resolve()
        self.monkeypatch = monkeypatch
        self.active = False
        self.chmodded: list[tuple[Path, int]] = []

    def _under(self, path: object) -> bool:
        if isinstance(path, int):
            return False
        try:
            return os.path.abspath(os.fsdecode(path)).startswith(str(self.folder))
        except TypeError:
            return False

    def _deny(self, path: object) -> None:
        if self.active and self._under(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(path))

    def on(self) -> None:
        for p in [self.folder, *self.folder.rglob("*")]:
            mode = p.stat().st_mode
            self.chmodded.append((p, mode))
            p.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        self.emulated = os.access(self.folder, os.W_OK)  # root: chmod changes nothing
        if not self.emulated:
            return
        self.off()
        self.active = True
        if getattr(self, "_patched", False):
            return
        self._patched = True
        real_open, real_os_open, mp = builtins.open, os.open, self.monkeypatch

        def fake_open(file, mode="r", *args, **kwargs):
            if any(c in mode for c in "wax+"):
                self._deny(file)
            return real_open(file, mode, *args, **kwargs)

        def fake_os_open(path, flags, *args, **kwargs):
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND):
                self._deny(path)
            return real_os_open(path, flags, *args, **kwargs)

        mp.setattr(builtins, "open", fake_open)
        mp.setattr(io, "open", fake_open)
        mp.setattr(os, "open", fake_os_open)
        for name in ("replace", "rename", "link"):
            real = getattr(os, name)
            mp.setattr(os, name, lambda a, b, *args, _real=real, **kw: (self._deny(a), self._deny(b),
                                                                         _real(a, b, *args, **kw))[-1])
        for name in ("unlink", "remove", "rmdir", "mkdir"):
            real = getattr(os, name)
            mp.setattr(os, name, lambda p, *args, _real=real, **kw: (self._deny(p), _real(p, *args, **kw))[-1])
        real_access = os.access
        mp.setattr(os, "access", lambda p, m, *a, **k: False if self.active and m & os.W_OK and self._under(p)
                   else real_access(p, m, *a, **k))

    def off(self) -> None:
        self.active = False
        for p, mode in reversed(self.chmodded):
            p.chmod(mode)
        self.chmodded = []


def test_read_only_run_folder_is_refused_before_start_with_one_message(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    _fake_run(run)
    before = _snapshot(run)
    ro = _ReadOnly(run, monkeypatch)
    ro.on()
    try:
        assert main(["train", "--resume", str(run), "--no-progress"]) == 2
    finally:
        ro.off()
    err = capsys.readouterr().err
    assert "is not writable" in err and "nothing was changed" in err and str(run) in err
    assert err.strip().count("\n") == 0 and "Traceback" not in err  # one line
    assert _snapshot(run) == before

    parent = tmp_path / "parent"
    parent.mkdir()
    ro = _ReadOnly(parent, monkeypatch)
    ro.on()
    try:
        assert main(["train", "--out", str(parent / "new"), "--no-progress"]) == 2
    finally:
        ro.off()
    assert "is not writable" in capsys.readouterr().err
    assert list(parent.iterdir()) == []


@pytest.mark.slow
def test_run_folder_made_read_only_mid_run_one_message_nothing_damaged(tmp_path, monkeypatch, capsys):
    from neuralcollapse.training.module import CollapseModule

    run = tmp_path / "run"
    ro = _ReadOnly(run, monkeypatch)
    start = CollapseModule.on_train_epoch_start

    def read_only_from_epoch_2(self):
        if self.current_epoch == 1 and not ro.chmodded and not ro.active:
            ro.on()
        start(self)

    monkeypatch.setattr(CollapseModule, "on_train_epoch_start", read_only_from_epoch_2)
    args = ["train", "--out", str(run), "--epochs", "3", "--train-subset", "256", "--nc-every", "0", "--no-plots",
            "--no-progress", "--set", "model_kwargs={hidden: [16]}"]
    try:
        assert main(args) == 2
    finally:
        ro.off()
    err = capsys.readouterr().err
    assert "stopped being writable during training" in err and "Nothing was damaged" in err
    assert "Traceback" not in err and "you tried to log" not in err.lower()
    assert f"--resume {run}" in err
    # nothing damaged: the epoch-1 checkpoint, metrics and config are complete and unchanged
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["epoch"] == 0
    import json

    assert [r["epoch"] for r in json.loads((run / "metrics.json").read_text())] == [1]
    assert not [p for p in run.rglob("*.tmp")]
    monkeypatch.setattr(CollapseModule, "on_train_epoch_start", start)
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0  # writable again: the run continues
    assert [r["epoch"] for r in json.loads((run / "metrics.json").read_text())] == [1, 2, 3]
    assert torch.isfinite(load_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"]["net.head.weight"]).all()


def test_unwritable_during_run_ignores_unrelated_errors(tmp_path):
    from neuralcollapse.training.runfolder import unwritable_during_run

    run = tmp_path / "run"
    run.mkdir()
    assert unwritable_during_run(RuntimeError("a bug"), run) is None
    outside = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "elsewhere.txt"))
    assert unwritable_during_run(outside, run) is None  # about another folder, and run/ is writable
    inside = PermissionError(errno.EROFS, "Read-only file system", str(run / "metrics.json"))
    try:
        raise RuntimeError("you tried to log ...") from inside
    except RuntimeError as err:
        found = unwritable_during_run(err, run, checkpoint=run / "missing.ckpt")
    assert isinstance(found, RunFolderNotWritableError) and found.errno == errno.EROFS
    assert "metrics.json" in str(found) and "Read-only file system" in str(found)


def test_run_folder_errors_print_as_their_message():
    err = RunFolderNotWritableError(errno.EACCES, "run folder 'x' is not writable")
    assert str(err) == "run folder 'x' is not writable" and err.errno == errno.EACCES
    assert isinstance(err, OSError) and not isinstance(RunFolderBusyError(errno.EBUSY, "m"), FileNotFoundError)

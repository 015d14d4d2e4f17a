"""Checkpoints: atomic writes, rotating backups, integrity checks on load, and the per-epoch saver.

A checkpoint is written to a temporary file in the same folder, flushed to disk (``fsync``) and renamed over
the previous one (``os.replace`` is atomic on POSIX and Windows): a crash or ``SIGKILL`` at any moment leaves
either the previous good checkpoint or the new complete one, never a partial file under the final name.

``last.ckpt`` keeps ``keep_checkpoints - 1`` backups (``prev.ckpt``, then ``prev-2.ckpt`` …, oldest last). The
rotation runs after the new file is complete and before it replaces ``last.ckpt``, one atomic rename at a time
(shift the older backups, hard-link ``last.ckpt`` as ``prev.ckpt``, replace ``last.ckpt``), so at every instant
``last.ckpt`` is a complete checkpoint and each backup is absent or an older complete one.

Loading verifies the CRC-32 of every member of the zip file that ``torch.save`` writes before unpickling it:
a file with flipped bits is refused with :class:`CorruptCheckpointError` naming the file and the backups to
resume from, never loaded with corrupted weights.
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
import zipfile
import zlib
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Checkpoint

__all__ = [
    "LAST_CHECKPOINT",
    "PREV_CHECKPOINT",
    "AtomicCheckpointIO",
    "CorruptCheckpointError",
    "RunCheckpoint",
    "atomic_torch_save",
    "backup_names",
    "load_checkpoint",
    "verify_checkpoint",
]

#: File name of the resumable end-of-epoch checkpoint inside ``<run>/checkpoints/``.
LAST_CHECKPOINT = "last.ckpt"
#: File name of the newest backup of ``last.ckpt`` (the checkpoint of the epoch before it).
PREV_CHECKPOINT = "prev.ckpt"
#: Keys every checkpoint of the training system holds.
REQUIRED_KEYS = ("state_dict", "epoch", "hyper_parameters")
#: What unpickling a damaged file raises (random bytes can ask the legacy loader for huge allocations).
_UNREADABLE = (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError, MemoryError,
               OverflowError, KeyError, IndexError, TypeError)
#: Leading bytes of a zip file (``torch.save``'s format since PyTorch 1.6).
_ZIP_MAGIC = b"PK\x03\x04"


class CorruptCheckpointError(ValueError):
    """A checkpoint file is truncated, corrupt or not a checkpoint of this training system."""


def backup_names(keep_checkpoints: int) -> list[str]:
    """File names of the ``keep_checkpoints - 1`` backups of ``last.ckpt``, newest first.

    Raises:
        ValueError: ``keep_checkpoints`` is not an int >= 1.

    Example:
        >>> backup_names(3)
        ['prev.ckpt', 'prev-2.ckpt']
    """
    if isinstance(keep_checkpoints, bool) or not isinstance(keep_checkpoints, int) or keep_checkpoints < 1:
        raise ValueError(f"`keep_checkpoints` must be an int >= 1; got {keep_checkpoints!r}")
    return [f"prev-{i}.ckpt" if i > 1 else PREV_CHECKPOINT for i in range(1, keep_checkpoints)]


def _fsync_dir(folder: Path) -> None:
    try:  # persist renames (POSIX); harmless where directories cannot be opened
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _link_or_copy(src: Path, dst: Path) -> None:
    """Make ``dst`` a complete copy of ``src`` atomically: hard link (or copy) to a temporary name, rename."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(src, tmp)
        except OSError:  # file systems without hard links
            shutil.copyfile(src, tmp)
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def _rotate(path: Path, backups: list[str], *, verify: bool = True) -> None:
    """Shift the backups of ``path`` one place older and make ``backups[0]`` a copy of ``path``.

    Each step is one atomic rename and ``path`` itself is not touched. A ``path`` that fails its integrity
    check (``verify``) is not backed up: it would push a good backup out.
    """
    if not backups or not path.is_file():
        return
    if verify:
        try:
            verify_checkpoint(path)
        except CorruptCheckpointError:
            return
    folder = path.parent
    newest = folder / backups[0]
    if newest.is_file() and os.path.samefile(path, newest):
        return  # already backed up (a save that died after linking, before replacing ``path``)
    for older, newer in zip(reversed(backups[1:]), reversed(backups[:-1])):
        if (folder / newer).is_file():
            os.replace(folder / newer, folder / older)
    _link_or_copy(path, folder / backups[0])


def atomic_torch_save(
    obj: Any, path: str | os.PathLike, *, backups: list[str] | tuple[str, ...] = (), verify_previous: bool = True
) -> Path:
    """``torch.save`` to a temporary file, ``fsync``, then ``os.replace`` onto ``path``.

    Args:
        obj: what to save.
        path: the final file.
        backups: file names in ``path``'s folder, newest first, that keep the previous versions of ``path``;
            rotated only once the new file is complete (see the module docstring).
        verify_previous: CRC-check the previous ``path`` before backing it up (False: it was written by this
            process, skip the extra read).

    Example:
        >>> atomic_torch_save({"state_dict": {}}, "/tmp/nc-doc/last.ckpt", backups=["prev.ckpt"])  # doctest: +SKIP
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    try:
        with open(tmp, "wb") as handle:
            handle.write(buffer.getbuffer())
            handle.flush()
            os.fsync(handle.fileno())
        _rotate(path, list(backups), verify=verify_previous)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)
    return path


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O plugin writing every checkpoint atomically (temp file + ``os.replace``);
    ``last.ckpt`` keeps ``keep_checkpoints - 1`` rotating backups (``prev.ckpt`` …), other names none.

    Args:
        keep_checkpoints: copies of ``last.ckpt`` kept, itself included (1 = no backup; default 2).
    """

    def __init__(self, keep_checkpoints: int = 2) -> None:
        super().__init__()
        self.backups = backup_names(keep_checkpoints)
        self._written: set[str] = set()  # files this process wrote: no need to CRC-check them again

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"`storage_options` is not supported by {type(self).__name__}; got {storage_options!r}")
        key = os.path.abspath(path)
        backups = self.backups if Path(path).name == LAST_CHECKPOINT else ()
        atomic_torch_save(checkpoint, path, backups=backups, verify_previous=key not in self._written)
        self._written.add(key)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return load_checkpoint(path, map_location=map_location or "cpu", required=("state_dict", "epoch"))


def _recovery_hint(path: Path) -> str:
    """What to do about an unusable ``path``: the complete copies beside it, else start again."""
    names = [LAST_CHECKPOINT, *backup_names(10)]
    present = [path.parent / n for n in names if n != path.name and (path.parent / n).is_file()]
    if not present:
        return "checkpoints are written atomically, so delete it and resume from an older copy, or start again"
    listed = ", ".join(repr(str(p)) for p in present)
    return (
        f"{'it was not overwritten; ' if path.name == LAST_CHECKPOINT else ''}the other checkpoint(s) {listed} "
        f"are kept beside it: resume from one explicitly with `--resume {present[0]}` "
        f"(Python: fit(config, resume={str(present[0])!r}))"
    )


def verify_checkpoint(path: str | os.PathLike) -> None:
    """Check the CRC-32 of every member of a zip-format checkpoint (what ``torch.save`` writes). Files in the
    legacy non-zip format are left to :func:`load_checkpoint`'s unpickling checks.

    Raises:
        CorruptCheckpointError: a member fails its CRC check, or the zip structure is damaged (truncated); the
            message names the file and the backups to resume from.

    Example:
        >>> verify_checkpoint("runs/digits-mlp-ce+occe-s0/checkpoints/last.ckpt")  # doctest: +SKIP
    """
    path = Path(path)
    with open(path, "rb") as handle:
        if handle.read(4) != _ZIP_MAGIC:
            return
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, NotImplementedError) as err:
        raise CorruptCheckpointError(
            f"checkpoint {str(path)!r} ({path.stat().st_size} bytes) cannot be read: it is truncated or corrupt "
            f"(was the disk full, or the file copied while being written?); {_recovery_hint(path)} "
            f"[{type(err).__name__}: {err}]"
        ) from None
    if bad is not None:
        raise CorruptCheckpointError(
            f"checkpoint {str(path)!r} is corrupt: its member {bad!r} fails the CRC-32 check (the bytes no longer "
            "match the checksum written with them: a disk or copy error, or the file was modified); "
            f"{_recovery_hint(path)}"
        )


def load_checkpoint(
    path: str | os.PathLike, *, map_location: Any = "cpu", required: tuple[str, ...] = REQUIRED_KEYS
) -> dict[str, Any]:
    """Read a checkpoint after checking its integrity (:func:`verify_checkpoint`), raising
    :class:`CorruptCheckpointError` with a clear message when it is unusable.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CorruptCheckpointError: empty, truncated or corrupt file (a CRC mismatch included), or a file without the
            keys of a training checkpoint (``state_dict``, ``epoch``, ``hyper_parameters``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    size = path.stat().st_size
    hint = "it is truncated or corrupt (was the disk full, or the file copied while being written?); "
    hint += _recovery_hint(path)
    if size == 0:
        raise CorruptCheckpointError(f"checkpoint {str(path)!r} is empty (0 bytes): {hint}")
    verify_checkpoint(path)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=False)
    except _UNREADABLE as err:
        raise CorruptCheckpointError(
            f"checkpoint {str(path)!r} ({size} bytes) cannot be read: {hint} [{type(err).__name__}: {err}]"
        ) from None
    if not isinstance(checkpoint, dict) or any(k not in checkpoint for k in required):
        found = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CorruptCheckpointError(
            f"{str(path)!r} is not a neuralcollapse training checkpoint: expected the keys "
            f"{', '.join(required)}; found {found}"
        )
    return checkpoint


class RunCheckpoint(Checkpoint):
    """Save ``<dirpath>/last.ckpt`` at the end of every training epoch (after validation and every other
    epoch-end callback, since Lightning runs checkpoint callbacks last), atomically; the trainer's
    :class:`AtomicCheckpointIO` keeps its rotating backups (``prev.ckpt`` …).

    Args:
        dirpath: the run's checkpoint folder.
        every_n_epochs: also keep ``epoch=<e>.ckpt`` snapshots every n epochs (0 = only ``last.ckpt``).
    """

    def __init__(self, dirpath: str | os.PathLike, every_n_epochs: int = 0) -> None:
        super().__init__()
        self.dirpath = Path(dirpath)
        self.every_n_epochs = int(every_n_epochs)

    @property
    def last_path(self) -> Path:
        return self.dirpath / LAST_CHECKPOINT

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        # A process killed while writing leaves its temporary file behind (never the checkpoint itself).
        if trainer.is_global_zero and self.dirpath.is_dir():
            for stale in self.dirpath.glob(".*.ckpt.*.tmp"):
                stale.unlink(missing_ok=True)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        trainer.save_checkpoint(self.last_path, weights_only=False)
        epoch = trainer.current_epoch + 1
        if self.every_n_epochs and epoch % self.every_n_epochs == 0:
            trainer.save_checkpoint(self.dirpath / f"epoch={epoch}.ckpt", weights_only=False)

    def state_dict(self) -> dict[str, Any]:
        return {"dirpath": str(self.dirpath)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        pass  # the folder is the run folder being resumed; nothing else to restore

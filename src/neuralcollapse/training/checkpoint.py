"""Checkpoints: atomic writes, a clear error for truncated or corrupt files, and the per-epoch saver.

A checkpoint is written to a temporary file in the same folder, flushed to disk (``fsync``) and renamed over
the previous one (``os.replace`` is atomic on POSIX and Windows): a crash or ``SIGKILL`` at any moment leaves
either the previous good checkpoint or the new complete one, never a partial file under the final name.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Checkpoint

__all__ = [
    "LAST_CHECKPOINT",
    "AtomicCheckpointIO",
    "CorruptCheckpointError",
    "RunCheckpoint",
    "atomic_torch_save",
    "load_checkpoint",
]

#: File name of the resumable end-of-epoch checkpoint inside ``<run>/checkpoints/``.
LAST_CHECKPOINT = "last.ckpt"
#: Keys every checkpoint of the training system holds.
REQUIRED_KEYS = ("state_dict", "epoch", "hyper_parameters")


class CorruptCheckpointError(ValueError):
    """A checkpoint file is truncated, corrupt or not a checkpoint of this training system."""


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file, ``fsync``, then ``os.replace`` onto ``path``."""
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
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    try:  # persist the rename itself (POSIX); harmless where directories cannot be opened
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
    return path


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O plugin writing every checkpoint atomically (temp file + ``os.replace``)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"`storage_options` is not supported by {type(self).__name__}; got {storage_options!r}")
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return load_checkpoint(path, map_location=map_location or "cpu", required=("state_dict", "epoch"))


def load_checkpoint(
    path: str | os.PathLike, *, map_location: Any = "cpu", required: tuple[str, ...] = REQUIRED_KEYS
) -> dict[str, Any]:
    """Read a checkpoint, raising :class:`CorruptCheckpointError` with a clear message when it is unusable.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CorruptCheckpointError: empty, truncated or corrupt file, or a file without the keys of a training
            checkpoint (``state_dict``, ``epoch``, ``hyper_parameters``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    size = path.stat().st_size
    hint = (
        "it is truncated or corrupt (was the disk full, or the file copied while being written?); checkpoints "
        "are written atomically, so delete it and resume from an older copy, or start the run again"
    )
    if size == 0:
        raise CorruptCheckpointError(f"checkpoint {str(path)!r} is empty (0 bytes): {hint}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as err:
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
    epoch-end callback, since Lightning runs checkpoint callbacks last), atomically.

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

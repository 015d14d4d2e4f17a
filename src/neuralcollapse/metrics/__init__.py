"""Geometry metrics: neural collapse (NC1–NC4 and variants, streaming twin), effective-rank NC metrics,
latent point collapse metrics, independence deficit, CKA, Jacobian rank, logit distributions.

The functional forms need torch/numpy/scipy only; ``NeuralCollapse`` (a ``torchmetrics.Metric``) is
imported lazily so that ``torchmetrics`` stays optional.
"""

import importlib as _importlib

from .effective_rank import *  # noqa: F403
from .independence import *  # noqa: F403
from .jacobian import *  # noqa: F403
from .latent import *  # noqa: F403
from .logits import *  # noqa: F403
from .neural_collapse import *  # noqa: F403
from .similarity import *  # noqa: F403

_FAMILIES = ("effective_rank", "independence", "jacobian", "latent", "logits", "neural_collapse", "similarity")
_LAZY = {"NeuralCollapse": "neuralcollapse.metrics.streaming"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(_importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'neuralcollapse.metrics' has no attribute {name!r}")


# Modules and functions share names (``neural_collapse``): read ``__all__`` through importlib.
__all__ = [
    "NeuralCollapse",  # noqa: F405
    *(name for family in _FAMILIES for name in _importlib.import_module(f"{__name__}.{family}").__all__),
]

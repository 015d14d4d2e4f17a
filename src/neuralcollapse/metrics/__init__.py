"""Geometry metrics: neural collapse (NC1–NC4 and variants, streaming twin), effective-rank NC metrics,
latent point collapse metrics, independence deficit, CKA, Jacobian rank, logit distributions.

The functional forms need torch/numpy/scipy only; ``NeuralCollapse`` (a ``torchmetrics.Metric``) is
imported lazily so that ``torchmetrics`` stays optional.
"""

from . import effective_rank, independence, jacobian, latent, logits, neural_collapse, similarity
from .effective_rank import *  # noqa: F403
from .independence import *  # noqa: F403
from .jacobian import *  # noqa: F403
from .latent import *  # noqa: F403
from .logits import *  # noqa: F403
from .neural_collapse import *  # noqa: F403
from .similarity import *  # noqa: F403

_LAZY = {"NeuralCollapse": "neuralcollapse.metrics.streaming"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'neuralcollapse.metrics' has no attribute {name!r}")


__all__ = [
    "NeuralCollapse",  # noqa: F405
    *effective_rank.__all__,
    *independence.__all__,
    *jacobian.__all__,
    *latent.__all__,
    *logits.__all__,
    *neural_collapse.__all__,
    *similarity.__all__,
]

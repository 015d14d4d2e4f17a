"""Maximum logit.

Hendrycks, Basart, Mazeika, Zou, Kwon, Mostajabi, Steinhardt & Song, "Scaling Out-of-Distribution Detection
for Real-World Settings", ICML 2022: s(x) = max_k z_k.
"""

from __future__ import annotations

from torch import Tensor

from .base import Detector, Requires, _at_least_two_classes, _float_matrix
from .registry import register_detector

__all__ = ["MaxLogit", "maxlogit_score"]


def maxlogit_score(logits: Tensor) -> Tensor:
    """Maximum logit; higher = more in-distribution.

    Formula (Hendrycks et al., ICML 2022): s_i = max_k z_ik.

    Args:
        logits: (N, K) logits, K >= 2.

    Returns:
        (N,) scores.

    Raises:
        ValueError: malformed ``logits``.

    Example:
        >>> import torch
        >>> maxlogit_score(torch.tensor([[1.0, 3.0, 2.0]]))
        tensor([3.])
    """
    z = _float_matrix(logits, "logits")
    _at_least_two_classes(z, "logits", "columns")
    return z.amax(dim=1)


@register_detector("maxlogit")
class MaxLogit(Detector):
    """Maximum-logit detector (stateless; ``fit`` is optional).

    Formula (Hendrycks et al., ICML 2022): s = max_k z_k. No hyperparameters.

    Example:
        >>> import torch
        >>> MaxLogit().score(logits=torch.tensor([[1.0, 3.0]]))
        tensor([3.])
    """

    requires = Requires(fit=(), score=("logits",))

    def _score(self, *, logits: Tensor) -> Tensor:
        return logits.amax(dim=1)

"""Maximum softmax probability (MSP).

Hendrycks & Gimpel, "A Baseline for Detecting Misclassified and Out-of-Distribution Examples in Neural
Networks", ICLR 2017: s(x) = max_k softmax(z)_k.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Detector, Requires, _at_least_two_classes, _float_matrix
from .registry import register_detector

__all__ = ["MSP", "msp_score"]


def _msp(logits: Tensor) -> Tensor:
    # softmax subtracts the row maximum first, so logits of magnitude 1e4 stay finite
    return torch.softmax(logits, dim=1).amax(dim=1)


def msp_score(logits: Tensor) -> Tensor:
    """Maximum softmax probability; higher = more in-distribution.

    Formula (Hendrycks & Gimpel, ICLR 2017): s_i = max_k exp(z_ik) / Σ_j exp(z_ij).

    Args:
        logits: (N, K) logits, K >= 2 (half precision is computed in float32).

    Returns:
        (N,) scores in [1/K, 1].

    Raises:
        ValueError: ``logits`` not 2-D, empty, with NaN/Inf or fewer than two columns.

    Example:
        >>> import torch
        >>> msp_score(torch.tensor([[0.0, 0.0], [10.0, 0.0]]))
        tensor([0.5000, 1.0000])
    """
    z = _float_matrix(logits, "logits")
    _at_least_two_classes(z, "logits", "columns")
    return _msp(z)


@register_detector("msp")
class MSP(Detector):
    """Maximum softmax probability detector (stateless; ``fit`` is optional).

    Formula (Hendrycks & Gimpel, ICLR 2017): s = max_k softmax(z)_k. No hyperparameters.

    Example:
        >>> import torch
        >>> MSP().score(logits=torch.tensor([[2.0, 0.0]]))
        tensor([0.8808])
    """

    requires = Requires(fit=(), score=("logits",))

    def _score(self, *, logits: Tensor) -> Tensor:
        return _msp(logits)

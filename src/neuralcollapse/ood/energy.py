"""Energy score (OpenOOD: EBO).

Liu, Wang, Owens & Li, "Energy-based Out-of-distribution Detection", NeurIPS 2020: the free
energy E(x) = −T·log Σ_k exp(z_k/T); the score is −E(x) = T·LSE(z/T).
"""

from __future__ import annotations

from types import MappingProxyType

import torch
from torch import Tensor

from .._validation import check_positive
from .base import Detector, Requires, _at_least_two_classes, _float_matrix
from .registry import register_detector

__all__ = ["DEFAULT_TEMPERATURE", "Energy", "energy_score"]

#: T = 1 (Liu et al. 2020; OpenOOD v1.5's ebo.yml)
DEFAULT_TEMPERATURE = 1.0


def _energy(logits: Tensor, temperature: float) -> Tensor:
    return temperature * torch.logsumexp(logits / temperature, dim=1)


def energy_score(logits: Tensor, temperature: float = DEFAULT_TEMPERATURE) -> Tensor:
    """Negative free energy T·LSE(z/T); higher = more in-distribution.

    Formula (Liu et al., NeurIPS 2020; the negated free energy): s_i = T · log Σ_k exp(z_ik / T).

    Args:
        logits: (N, K) logits, K >= 2 (half precision is computed in float32).
        temperature: T > 0; default 1 (the paper's and OpenOOD's).

    Returns:
        (N,) scores (logsumexp: finite for logits of any finite magnitude).

    Raises:
        ValueError: malformed ``logits`` or ``temperature`` <= 0.

    Example:
        >>> import torch
        >>> energy_score(torch.zeros(1, 4))  # log 4
        tensor([1.3863])
    """
    t = check_positive(temperature, "temperature")
    z = _float_matrix(logits, "logits")
    _at_least_two_classes(z, "logits", "columns")
    return _energy(z, t)


@register_detector("energy", aliases=("ebo",))
class Energy(Detector):
    """Energy-based detector (stateless; ``fit`` is optional). Alias ``"ebo"`` (OpenOOD).

    Formula (Liu et al., NeurIPS 2020): s = T·LSE(z/T).

    Args:
        temperature: T > 0, default 1.

    Example:
        >>> import torch
        >>> Energy(temperature=2.0).score(logits=torch.zeros(1, 4))
        tensor([2.7726])
    """

    requires = Requires(fit=(), score=("logits",))
    defaults = MappingProxyType({"temperature": DEFAULT_TEMPERATURE})

    def __init__(self, temperature: float = DEFAULT_TEMPERATURE) -> None:
        self.temperature = check_positive(temperature, "temperature")

    def _score(self, *, logits: Tensor) -> Tensor:
        return _energy(logits, self.temperature)

"""SCALE: activation scaling without pruning.

Xu, Chen, Franchi & Yao, "Scaling for Training Time and Post-hoc Out-of-distribution Detection
Enhancement", ICLR 2024: with s1 = Σ_j a_j, k = D − round(D·p/100) and s2 the sum of the k largest
activations, the feature is rescaled — **not** pruned — as a' = a·exp(s1/s2); the score is the energy
LSE(Wa' + b) (OpenOOD v1.5 ``ScaleNet``: on the pooled penultimate feature). OpenOOD writes the pruned
feature into a view of the caller's tensor; here everything is out of place.
"""

from __future__ import annotations

from types import MappingProxyType

import torch
from torch import Tensor

from ._utils import check_percentile, keep_count, linear_logits, prune_to_topk, sharpen_factor, warn_if_negative
from .base import Detector, Requires
from .registry import register_detector

__all__ = ["DEFAULT_P", "SWEEP_P", "Scale", "scale_features"]

#: p = 85 % (OpenOOD v1.5 scale.yml)
DEFAULT_P = 85.0
#: OpenOOD v1.5's sweep
SWEEP_P = (65.0, 70.0, 75.0, 80.0, 85.0, 90.0, 95.0)


def scale_features(features: Tensor, p: float = DEFAULT_P) -> Tensor:
    """a' = a·exp(s1/s2) row-wise (Xu et al., ICLR 2024), out of place.

    Args:
        features: (N, D) non-negative activations.
        p: percentile in percent; the k = D − round(D·p/100) largest activations define s2.

    Returns:
        (N, D) rescaled features (a row summing to zero is returned unchanged).

    Example:
        >>> import torch
        >>> scale_features(torch.tensor([[1.0, 3.0]]), p=50)  # s1 = 4, s2 = 3
        tensor([[ 3.7937, 11.3810]])
    """
    k = keep_count(features.shape[1], p)
    pruned, _, _ = prune_to_topk(features, k)
    return features * sharpen_factor(features.sum(1), pruned.sum(1)).unsqueeze(1)


@register_detector("scale")
class Scale(Detector):
    """SCALE detector: energy of the linear layer applied to the sharpened feature.

    Formula (Xu et al., ICLR 2024): s(a) = LSE(W·a·exp(s1/s2) + b).

    Args:
        p: percentile in **percent**, in [0, 100) with at least one activation kept; default 85 (OpenOOD
            v1.5); sweep {65, 70, …, 95}. A value in (0, 1) warns.

    fit: ``weight`` (K, D), ``bias`` (K,). score: ``features`` (M, D), post-ReLU (negative entries warn).

    Example:
        >>> import torch
        >>> det = Scale(p=50).fit(weight=torch.eye(2))
        >>> det.score(features=torch.tensor([[0.0, 1.0]]))  # s1 = s2: a' = e·a
        tensor([2.7822])
    """

    requires = Requires(fit=("weight",), score=("features",))
    assumptions = ("nonnegative_features", "unnormalised_features")  # shapes post-ReLU activation magnitudes
    defaults = MappingProxyType({"p": DEFAULT_P})
    sweep = MappingProxyType({"p": SWEEP_P})

    def __init__(self, p: float = DEFAULT_P) -> None:
        self.p = check_percentile(p, "p", upper_open=True)

    def _fit(self, *, weight: Tensor, bias: Tensor) -> None:
        keep_count(weight.shape[1], self.p)
        self.weight_, self.bias_ = weight.clone(), bias.clone()

    def _score(self, *, features: Tensor) -> Tensor:
        warn_if_negative(features, self.name)
        return torch.logsumexp(linear_logits(scale_features(features, self.p), self.weight_, self.bias_), dim=1)

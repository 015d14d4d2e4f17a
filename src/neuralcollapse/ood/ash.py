"""ASH: extremely simple activation shaping.

Djurisic, Bozanic, Ashok & Liu, "Extremely Simple Activation Shaping for Out-of-Distribution Detection",
ICLR 2023 (ASH-P, ASH-B, ASH-S). With s1 = Σ_j a_j and k = D − round(D·p/100) (the k largest activations kept):

- ``"p"`` (ASH-P): prune — keep the top-k activations, zero the rest;
- ``"b"`` (ASH-B): binarise — the top-k positions are set to s1/k, the rest to 0 (OpenOOD v1.5's choice);
- ``"s"`` (ASH-S): prune, then scale by exp(s1/s2) with s2 the sum after pruning.

Score: energy LSE(Wa' + b). OpenOOD applies ASH to the pooled penultimate feature; so does this module. The
reference writes into the caller's feature tensor (``x.zero_().scatter_``); here everything is out of place.
"""

from __future__ import annotations

from types import MappingProxyType

import torch
from torch import Tensor

from .._validation import check_choice
from ._utils import check_percentile, keep_count, linear_logits, prune_to_topk, sharpen_factor, warn_if_negative
from .base import Detector, Requires
from .registry import register_detector

__all__ = ["ASH", "ASH_VARIANTS", "DEFAULT_P", "DEFAULT_VARIANT", "SWEEP_P", "ash_features"]

#: p = 90 % (OpenOOD v1.5 ash.yml)
DEFAULT_P = 90.0
#: OpenOOD v1.5's sweep
SWEEP_P = (65.0, 70.0, 75.0, 80.0, 85.0, 90.0, 95.0)
ASH_VARIANTS = ("b", "p", "s")
#: ASH-B, as OpenOOD v1.5
DEFAULT_VARIANT = "b"


def ash_features(features: Tensor, p: float = DEFAULT_P, variant: str = DEFAULT_VARIANT) -> Tensor:
    """Shape activations with ASH-B/P/S (Djurisic et al., ICLR 2023), out of place.

    Args:
        features: (N, D) non-negative activations.
        p: percentile in percent; the k = D − round(D·p/100) largest activations are kept.
        variant: ``"b"``, ``"p"`` or ``"s"``.

    Returns:
        (N, D) shaped features.

    Example:
        >>> import torch
        >>> ash_features(torch.tensor([[1.0, 2.0, 3.0, 4.0]]), p=50, variant="b")  # s1/k = 10/2
        tensor([[0., 0., 5., 5.]])
    """
    check_choice(variant, "variant", ASH_VARIANTS)
    k = keep_count(features.shape[1], p)
    pruned, _, indices = prune_to_topk(features, k)
    if variant == "p":
        return pruned
    total = features.sum(1)
    if variant == "b":
        fill = (total / k).unsqueeze(1).expand(-1, k)
        return torch.zeros_like(features).scatter_(1, indices, fill)
    return pruned * sharpen_factor(total, pruned.sum(1)).unsqueeze(1)


@register_detector("ash")
class ASH(Detector):
    """ASH detector: energy of the linear layer applied to the shaped feature.

    Formula (Djurisic et al., ICLR 2023): s(a) = LSE(W·ASH(a) + b).

    Args:
        p: percentile in **percent** of activations removed, in [0, 100) with at least one kept; default
            90 (OpenOOD v1.5); sweep {65, 70, …, 95}. A value in (0, 1) warns.
        variant: ``"b"`` (default, OpenOOD), ``"p"`` or ``"s"``.

    fit: ``weight`` (K, D), ``bias`` (K,). score: ``features`` (M, D), post-ReLU (negative entries warn).

    Example:
        >>> import torch
        >>> det = ASH(p=50, variant="p").fit(weight=torch.eye(2))
        >>> det.score(features=torch.tensor([[0.0, 1.0]]))  # LSE(0, 1)
        tensor([1.3133])
    """

    requires = Requires(fit=("weight",), score=("features",))
    assumptions = ("nonnegative_features", "unnormalised_features")  # shapes post-ReLU activation magnitudes
    defaults = MappingProxyType({"p": DEFAULT_P, "variant": DEFAULT_VARIANT})
    sweep = MappingProxyType({"p": SWEEP_P})

    def __init__(self, p: float = DEFAULT_P, variant: str = DEFAULT_VARIANT) -> None:
        self.p = check_percentile(p, "p", upper_open=True)
        self.variant = check_choice(variant, "variant", ASH_VARIANTS)

    def _fit(self, *, weight: Tensor, bias: Tensor) -> None:
        keep_count(weight.shape[1], self.p)
        self.weight_, self.bias_ = weight.clone(), bias.clone()

    def _score(self, *, features: Tensor) -> Tensor:
        warn_if_negative(features, self.name)
        shaped = ash_features(features, self.p, self.variant)
        return torch.logsumexp(linear_logits(shaped, self.weight_, self.bias_), dim=1)

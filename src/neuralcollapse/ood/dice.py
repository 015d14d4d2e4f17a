"""Directed sparsification (DICE).

Sun & Li, "DICE: Leveraging Sparsification for Out-of-Distribution Detection", ECCV 2022: the
contribution matrix V = m ⊙ W (v_kj = m_j·w_kj, m the mean training feature), the mask M = 1[V > thr] with
thr the p-th percentile of all K·D entries of V (linear interpolation, ``np.percentile`` as OpenOOD), the
sparsified layer W' = W ⊙ M, and the energy score s(f) = LSE(W'f + b).
"""

from __future__ import annotations

from types import MappingProxyType

import torch
from torch import Tensor

from ._utils import check_percentile, linear_logits, mean64, percentile, warn_if_negative
from .base import Detector, Requires
from .registry import register_detector

__all__ = ["DEFAULT_P", "DICE"]

#: sparsity p = 90 % of the weights dropped (OpenOOD v1.5 dice.yml)
DEFAULT_P = 90.0


@register_detector("dice")
class DICE(Detector):
    """DICE: energy of a linear layer keeping only the weights with the largest mean contribution.

    Formula (Sun & Li, ECCV 2022): s(f) = LSE((W ⊙ 1[m ⊙ W > perc_p(m ⊙ W)]) f + b).

    Args:
        p: sparsity in **percent** of the K·D weights dropped (the percentile of the contributions), in
            [0, 100); default 90 (OpenOOD v1.5). A value in (0, 1) warns (pytorch-ood uses fractions). p = 100
            would drop every weight (the same score for every input) and raises, as for ASH and SCALE.

    Raises:
        ValueError: ``p`` outside [0, 100); at fit, no weight survives the mask (e.g. an all-zero mean
            feature makes every contribution equal).

    fit: ``features`` (N, D, post-ReLU; only their mean is used), ``weight`` (K, D), ``bias`` (K,).
    score: ``features`` (M, D).

    Example:
        >>> import torch
        >>> w = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
        >>> det = DICE(p=50).fit(features=torch.ones(4, 2), weight=w)  # keeps 3 and 4
        >>> det.masked_weight_
        tensor([[0., 0.],
                [3., 4.]])
    """

    requires = Requires(fit=("features", "weight"), score=("features",))
    assumptions = ("nonnegative_features", "unnormalised_features")  # shapes post-ReLU activation magnitudes
    defaults = MappingProxyType({"p": DEFAULT_P})

    def __init__(self, p: float = DEFAULT_P) -> None:
        self.p = check_percentile(p, "p", upper_open=True)

    def _fit(self, *, features: Tensor, weight: Tensor, bias: Tensor) -> None:
        warn_if_negative(features, self.name)
        self.mean_feature_ = mean64(features)
        contribution = self.mean_feature_.unsqueeze(0) * weight.to(torch.float64)
        self.threshold_ = percentile(contribution, self.p)
        keep = contribution > self.threshold_
        if not bool(keep.any()):
            raise ValueError(
                f"DICE pruned every weight: no contribution m_j·w_kj exceeds the {self.p:g}-th percentile "
                f"({self.threshold_:g}), so every input would get the same score; the mean feature is "
                "constant or p is too high"
            )
        self.masked_weight_ = weight * keep.to(weight.dtype)
        self.bias_ = bias.clone()

    def _score(self, *, features: Tensor) -> Tensor:
        return torch.logsumexp(linear_logits(features, self.masked_weight_, self.bias_), dim=1)

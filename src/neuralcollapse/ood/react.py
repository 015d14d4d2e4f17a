"""ReAct: rectified activations.

Sun, Guo & Li, "ReAct: Out-of-distribution Detection With Rectified Activations", NeurIPS 2021:
activations are clipped at c, the p-th percentile of all in-distribution activations (every entry of the
N×D feature matrix, ``np.percentile`` with linear interpolation), and the score is the energy
LSE(W·min(f, c) + b). OpenOOD v1.5 estimates c on the ID **validation** split; pass whichever split you
choose as ``features`` to ``fit``.
"""

from __future__ import annotations

from types import MappingProxyType

import torch
from torch import Tensor

from ._utils import check_percentile, linear_logits, percentile, warn_if_negative
from .base import Detector, Requires
from .registry import register_detector

__all__ = ["DEFAULT_P", "SWEEP_P", "ReAct"]

#: p = 90 % (OpenOOD v1.5 react.yml; the paper uses 90)
DEFAULT_P = 90.0
#: OpenOOD v1.5's sweep
SWEEP_P = (85.0, 90.0, 95.0, 99.0)


@register_detector("react")
class ReAct(Detector):
    """ReAct detector: energy after clipping activations at an ID percentile.

    Formula (Sun et al., NeurIPS 2021): s(f) = LSE(W·min(f, c) + b), c = perc_p(ID activations).

    Args:
        p: percentile in **percent**, in [0, 100]; default 90; sweep {85, 90, 95, 99}. A value in (0, 1)
            warns.

    fit: ``features`` (N, D; OpenOOD: the ID validation split), ``weight`` (K, D), ``bias`` (K,).
    score: ``features`` (M, D).

    Example:
        >>> import torch
        >>> f = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
        >>> det = ReAct(p=50).fit(features=f, weight=torch.eye(2))
        >>> det.threshold_  # median of {0, 1, 2, 3}
        1.5
    """

    requires = Requires(fit=("features", "weight"), score=("features",))
    assumptions = ("nonnegative_features", "unnormalised_features")  # shapes post-ReLU activation magnitudes
    defaults = MappingProxyType({"p": DEFAULT_P})
    sweep = MappingProxyType({"p": SWEEP_P})

    def __init__(self, p: float = DEFAULT_P) -> None:
        self.p = check_percentile(p, "p")

    def _fit(self, *, features: Tensor, weight: Tensor, bias: Tensor) -> None:
        warn_if_negative(features, self.name)
        self.threshold_ = percentile(features, self.p)
        self.weight_, self.bias_ = weight.clone(), bias.clone()

    def _score(self, *, features: Tensor) -> Tensor:
        clipped = features.clamp(max=self.threshold_)
        return torch.logsumexp(linear_logits(clipped, self.weight_, self.bias_), dim=1)

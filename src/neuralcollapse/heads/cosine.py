"""Cosine (normalised) classifier head: features and class weights on the unit sphere, no bias.

F. Wang, X. Xiang, J. Cheng, A. L. Yuille, "NormFace: L2 Hypersphere Embedding for Face Verification", ACM MM
2017; P. Koromilas et al., "Neural Collapse by Design: Learning Class Prototypes on the Hypersphere", ICML 2026
(docs/methods.md §4.1; reference pakoromilas/nc_by_design). Used with the ``normface``, ``ntce``, ``nonl``,
``arcface`` and ``cosface`` loss terms, which read ``features`` and ``prototypes``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._validation import check_positive
from ..output import HeadOutput
from ._base import HEADS, Head, reset_linear_, unit_rows

__all__ = ["DEFAULT_TEMPERATURE", "CosineHead"]

#: τ of NormFace/NTCE/NONL in the nc_by_design reference (docs/methods.md §4.3).
DEFAULT_TEMPERATURE = 0.2


@HEADS.register("cosine", aliases=("normalized", "normface"))
class CosineHead(Head):
    """Cosine classifier: u = h/‖h‖, w_c = W_c/‖W_c‖ (recomputed every forward), s_c = w_cᵀu, no bias.

    Logits are s/τ (``temperature``, default τ = 0.2, docs/methods.md §4.3) or s·``scale`` (give one of the two).
    Prediction argmax_c s_c (Koromilas et al. 2026, §4.1; Wang et al. 2017, Eq. 4 with scale s = 1/τ).

    Args:
        in_features: width d of the features h.
        num_classes: number of classes K (≥ 2).
        temperature: τ > 0; logits = s/τ. Default 0.2 when ``scale`` is not given.
        scale: s > 0; logits = s·cos (ArcFace/CosFace-style scale). Mutually exclusive with ``temperature``.

    Attributes:
        weight: (K, d) raw parameter W (rows normalised in every forward; initialised as ``nn.Linear``).
        bias: always None.
        prototypes: (K, d) unit rows W_c/‖W_c‖ (property, differentiable).
        logit_scale: the factor applied to the cosines (1/τ or ``scale``).

    Returns (forward):
        ``HeadOutput(logits=s·logit_scale, features=u, prototypes=normalised W, cosines=s)``. A zero feature
        row gives u = 0 and all cosines 0.

    Raises:
        ValueError: ``temperature`` ≤ 0 or ``scale`` ≤ 0 or both given; bad ``h``; ``num_classes`` < 2.

    Example:
        >>> import torch
        >>> head = CosineHead(8, 3)
        >>> out = head(torch.randn(4, 8))
        >>> bool(torch.allclose(out.logits, out.cosines / 0.2)), bool(out.cosines.abs().max() <= 1)
        (True, True)
    """

    def __init__(
        self, in_features: int, num_classes: int, *, temperature: float | None = None, scale: float | None = None
    ) -> None:
        super().__init__(in_features, num_classes)
        if temperature is not None and scale is not None:
            raise ValueError(
                f"give either `temperature` (logits = cos/τ) or `scale` (logits = s·cos), not both; "
                f"got temperature={temperature}, scale={scale}"
            )
        if scale is not None:
            self.logit_scale = check_positive(scale, "scale")
        else:
            tau = DEFAULT_TEMPERATURE if temperature is None else temperature
            self.logit_scale = 1.0 / check_positive(tau, "temperature")
        self.weight = nn.Parameter(torch.empty(self.num_classes, self.in_features))
        self.register_parameter("bias", None)
        reset_linear_(self.weight, None)

    @property
    def temperature(self) -> float:
        """τ = 1 / ``logit_scale``."""
        return 1.0 / self.logit_scale

    @property
    def prototypes(self) -> Tensor:
        """(K, d) unit class vectors W_c/‖W_c‖ in class order."""
        return unit_rows(self.weight)

    def forward(self, h: Tensor) -> HeadOutput:
        h = self._check_features(h)
        u = unit_rows(h)
        w = self.prototypes
        cosines = u @ w.T
        return HeadOutput(logits=cosines * self.logit_scale, features=u, prototypes=w, cosines=cosines)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, logit_scale={self.logit_scale:g}"

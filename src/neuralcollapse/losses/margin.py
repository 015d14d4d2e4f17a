"""Additive-margin softmax losses on the unit sphere: ArcFace and CosFace.

Sources:

- J. Deng, J. Guo, N. Xue, S. Zafeiriou, "ArcFace: Additive Angular Margin Loss for Deep Face Recognition",
  CVPR 2019, Eq. 3 (reference deepinsight/insightface: non-monotonic fix and ``easy_margin``).
- H. Wang, Y. Wang, Z. Zhou, X. Ji, D. Gong, J. Zhou, Z. Li, W. Liu, "CosFace: Large Margin Cosine Loss for Deep
  Face Recognition", CVPR 2018, Eq. 4.

cos θ_j = w_jᵀu with unit feature u and unit class vector w_j; logits s·ψ(θ_y) for the target and s·cos θ_j for
the others; cross-entropy (docs/methods.md §5). Cosines are clamped to [−1+1e−7, 1−1e−7] and sin θ = √max(0, 1−cos²θ)
because the derivative of √/arccos is infinite at ±1. The margin is in **radians** (pytorch-metric-learning's
ArcFace takes degrees). The LPC paper ramps scale and margin over epochs
(:class:`neuralcollapse.schedules.MarginSchedule`); the module and term attributes ``scale`` and ``margin``
may be set between epochs.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validation import check_choice, check_positive
from ..output import HeadOutput
from ._common import REDUCTIONS
from ._features import autocast_off, embedding_inputs
from ._terms import LossTerm, register_term

__all__ = ["ArcFaceLoss", "CosFaceLoss", "arcface", "cosface"]

#: ArcFace defaults (Deng et al. 2019): s = 64, m = 0.5 rad.
ARCFACE_SCALE = 64.0
ARCFACE_MARGIN = 0.5
#: CosFace defaults (Wang et al. 2018): s = 64, m = 0.35 (insightface uses 0.4; some code s = 30).
COSFACE_SCALE = 64.0
COSFACE_MARGIN = 0.35
#: Cosines are kept this far from ±1 (docs/methods.md §5).
COSINE_EPS = 1e-7


def _check_scale(scale: Any) -> float:
    return check_positive(scale, "scale")


def _check_arc_margin(margin: Any) -> float:
    """ArcFace margin in radians, 0 ≤ m < π/2, with a hint when the value looks like degrees."""
    m = check_positive(margin, "margin", strict=False)
    if m >= math.pi / 2:
        raise ValueError(
            f"`margin` must be an angle in radians in [0, π/2); got {margin}. The margin is in radians here; "
            f"{margin} looks like degrees ({margin}° = {math.radians(m):.4f} rad; pytorch-metric-learning's "
            "ArcFace takes degrees)"
        )
    return m


def _check_cos_margin(margin: Any) -> float:
    return check_positive(margin, "margin", strict=False)


def _target_cosines(features: Tensor, target: Tensor, weight: Tensor, reduction: str) -> tuple[Tensor, Tensor]:
    """Validate (before any attribute of the inputs is read); return the clamped cosine matrix (N, K) in the
    working dtype and the target cosines (N,)."""
    u, w = embedding_inputs(features, target, weight, reduction, classes_name="weight")
    with autocast_off(u.device):
        cos = (u @ w.T).clamp(-1 + COSINE_EPS, 1 - COSINE_EPS)
    return cos, cos.gather(1, target[:, None]).squeeze(1)


def _margin_cross_entropy(cos: Tensor, target: Tensor, psi: Tensor, scale: float, reduction: str) -> Tensor:
    """Cross-entropy of s·cos with the target column replaced by s·ψ."""
    logits = cos.scatter(1, target[:, None], psi[:, None]) * scale
    return F.cross_entropy(logits, target, reduction=reduction)


def arcface(
    features: Tensor,
    target: Tensor,
    weight: Tensor,
    scale: float = ARCFACE_SCALE,
    margin: float = ARCFACE_MARGIN,
    easy_margin: bool = False,
    *,
    reduction: str = "mean",
) -> Tensor:
    """ArcFace: cross-entropy with the additive angular margin cos(θ_y + m) on the target logit.

    ψ(θ_y) = cos(θ_y + m) = cos θ_y·cos m − sin θ_y·sin m (Deng et al., CVPR 2019, Eq. 3), logits s·ψ for the
    target and s·cos θ_j elsewhere. Non-monotonic fix (default, insightface): where cos θ_y ≤ cos(π − m), i.e.
    θ_y + m ≥ π, ψ = cos θ_y − m·sin m. ``easy_margin``: the margin only where cos θ_y > 0 (ψ = cos θ_y else).

    Args:
        features: (N, d) features (normalised here).
        target: (N,) integer labels in [0, K).
        weight: (K, d) raw class vectors (the head's W, normalised here).
        scale: s > 0; default 64 (paper).
        margin: m in **radians**, 0 ≤ m < π/2; default 0.5 (paper).
        easy_margin: apply the margin only to positive target cosines (insightface option); default False.
        reduction: "mean" (default), "sum" or "none".

    Returns:
        Scalar (or (N,)) loss, at least float32.

    Raises:
        ValueError: wrong shapes, K < 2, labels out of range, NaN/Inf, empty batch, ``scale`` ≤ 0,
            ``margin`` < 0 or ≥ π/2 (with a hint when it looks like degrees).
        TypeError: non-tensor or non-floating inputs, non-integer ``target``.

    Example:
        >>> import torch
        >>> w = torch.eye(2)
        >>> loss = arcface(w, torch.tensor([0, 1]), w, scale=1.0, margin=0.5)
        >>> round(float(loss), 4)  # −cos 0.5 + log(e^{cos 0.5} + e^0)
        0.3478
    """
    s = _check_scale(scale)
    m = _check_arc_margin(margin)
    cos, cos_y = _target_cosines(features, target, weight, reduction)
    with autocast_off(cos.device):
        sin_y = (1.0 - cos_y * cos_y).clamp_min(0.0).sqrt()
        psi = cos_y * math.cos(m) - sin_y * math.sin(m)
        if easy_margin:
            psi = torch.where(cos_y > 0, psi, cos_y)
        else:
            psi = torch.where(cos_y > math.cos(math.pi - m), psi, cos_y - m * math.sin(m))
        return _margin_cross_entropy(cos, target, psi, s, reduction)


def cosface(
    features: Tensor,
    target: Tensor,
    weight: Tensor,
    scale: float = COSFACE_SCALE,
    margin: float = COSFACE_MARGIN,
    *,
    reduction: str = "mean",
) -> Tensor:
    """CosFace (large-margin cosine loss): cross-entropy with the target logit s·(cos θ_y − m).

    Wang et al., CVPR 2018, Eq. 4: L_i = −log(e^{s(cos θ_y − m)} / (e^{s(cos θ_y − m)} + Σ_{j≠y} e^{s cos θ_j})).

    Args:
        features: (N, d) features (normalised here).
        target: (N,) integer labels in [0, K).
        weight: (K, d) raw class vectors (normalised here).
        scale: s > 0; default 64 (paper).
        margin: m ≥ 0, a cosine offset; default 0.35 (paper).
        reduction: "mean" (default), "sum" or "none".

    Returns:
        Scalar (or (N,)) loss, at least float32.

    Raises:
        ValueError: as :func:`arcface` (``margin`` must be ≥ 0).
        TypeError: as :func:`arcface`.

    Example:
        >>> import torch
        >>> w = torch.eye(2)
        >>> loss = cosface(w, torch.tensor([0, 1]), w, scale=2.0, margin=0.5)
        >>> round(float(loss), 4)  # log(1 + e^{−2·0.5})
        0.3133
    """
    s = _check_scale(scale)
    m = _check_cos_margin(margin)
    cos, cos_y = _target_cosines(features, target, weight, reduction)
    with autocast_off(cos.device):
        return _margin_cross_entropy(cos, target, cos_y - m, s, reduction)


class _ScaleMargin:
    """``scale`` and ``margin`` attributes validated on every assignment (a schedule sets them per epoch)."""

    _check_margin = staticmethod(_check_cos_margin)

    @property
    def scale(self) -> float:
        return self._scale

    @scale.setter
    def scale(self, value: float) -> None:
        self._scale = _check_scale(value)

    @property
    def margin(self) -> float:
        return self._margin

    @margin.setter
    def margin(self, value: float) -> None:
        self._margin = type(self)._check_margin(value)


class ArcFaceLoss(_ScaleMargin, nn.Module):
    """Module form of :func:`arcface`: ``forward(features, target, weight)``; ``scale``/``margin`` settable.

    Example:
        >>> import torch
        >>> crit = ArcFaceLoss(scale=16.0, margin=0.1)
        >>> crit.margin = 0.11  # e.g. the LPC ramp, between epochs
        >>> crit(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]), torch.randn(3, 3)).shape
        torch.Size([])
    """

    _check_margin = staticmethod(_check_arc_margin)

    def __init__(
        self,
        scale: float = ARCFACE_SCALE,
        margin: float = ARCFACE_MARGIN,
        easy_margin: bool = False,
        *,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.scale = scale
        self.margin = margin
        self.easy_margin = bool(easy_margin)
        self.reduction = check_choice(reduction, "reduction", REDUCTIONS)

    def forward(self, features: Tensor, target: Tensor, weight: Tensor) -> Tensor:
        return arcface(features, target, weight, self.scale, self.margin, self.easy_margin, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, margin={self.margin}, easy_margin={self.easy_margin}"


class CosFaceLoss(_ScaleMargin, nn.Module):
    """Module form of :func:`cosface`: ``forward(features, target, weight)``; ``scale``/``margin`` settable.

    Example:
        >>> import torch
        >>> crit = CosFaceLoss()
        >>> crit.scale = 30.0
        >>> crit(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]), torch.randn(3, 3)).shape
        torch.Size([])
    """

    def __init__(
        self, scale: float = COSFACE_SCALE, margin: float = COSFACE_MARGIN, *, reduction: str = "mean"
    ) -> None:
        super().__init__()
        self.scale = scale
        self.margin = margin
        self.reduction = check_choice(reduction, "reduction", REDUCTIONS)

    def forward(self, features: Tensor, target: Tensor, weight: Tensor) -> Tensor:
        return cosface(features, target, weight, self.scale, self.margin, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, margin={self.margin}"


@register_term("arcface")
class ArcFaceTerm(_ScaleMargin, LossTerm):
    """Objective term ``"arcface"``: :func:`arcface` on ``output.features`` and ``output.prototypes`` (the
    head's raw W, K×d). ``scale``/``margin`` may be set between epochs (``MarginSchedule.apply``)."""

    needs = ("features", "prototypes", "cosines")  # a cosine head: see LossTerm
    _check_margin = staticmethod(_check_arc_margin)

    def __init__(self, scale: float = ARCFACE_SCALE, margin: float = ARCFACE_MARGIN, easy_margin: bool = False) -> None:
        super().__init__()
        self.scale = scale
        self.margin = margin
        self.easy_margin = bool(easy_margin)

    def compute(self, output: HeadOutput, target: Tensor, **context: Any) -> Tensor:
        return arcface(output.features, target, output.prototypes, self.scale, self.margin, self.easy_margin)


@register_term("cosface")
class CosFaceTerm(_ScaleMargin, LossTerm):
    """Objective term ``"cosface"``: :func:`cosface` on ``output.features`` and ``output.prototypes`` (raw W).
    ``scale``/``margin`` may be set between epochs."""

    needs = ("features", "prototypes", "cosines")  # a cosine head: see LossTerm

    def __init__(self, scale: float = COSFACE_SCALE, margin: float = COSFACE_MARGIN) -> None:
        super().__init__()
        self.scale = scale
        self.margin = margin

    def compute(self, output: HeadOutput, target: Tensor, **context: Any) -> Tensor:
        return cosface(output.features, target, output.prototypes, self.scale, self.margin)

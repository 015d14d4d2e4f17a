"""Losses against fixed class prototypes: cosine alignment (HPN, DL2PA) and dot-regression (ETF + DR).

Sources:

- P. Mettes, E. van der Pol, C. G. M. Snoek, "Hyperspherical Prototype Networks", NeurIPS 2019 (psmmettes/hpn):
  L = Σ_i (1 − cos(z_i, p_{y_i}))².
- M. S. Ebrahimi Saadabadi, A. Dabouei, S. Rahimi Malakshan, N. M. Nasrabadi, "Hyperspherical Classification with
  Dynamic Label-to-Prototype Assignment", CVPR 2024 (DL2PA; msed-Ebrahimi/DL2PA_CVPR24): the same balanced loss,
  **summed** over the batch, against the prototype p_{π(y_i)} of the current assignment (the head passes its
  prototypes in class order, the assignment already applied) — docs/methods.md §7.3.
- Y. Yang, S. Chen, X. Li, L. Xie, Z. Lin, D. Tao, "Inducing Neural Collapse in Imbalanced Learning: Do We Really
  Need a Learnable Classifier at the End of Deep Neural Network?", NeurIPS 2022, Eq. 7
  (NeuralCollapseApplications/ImbalancedLearning, ``methods.py``: ``dot_loss``/``produce_Ew``): dot-regression
  against a fixed simplex ETF with per-batch class scaling — docs/methods.md §7.3, §8.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._validation import check_choice, check_positive, check_tensor
from ._common import REDUCTIONS, check_count, reduce_loss
from ._features import autocast_off, check_labels_1d, embedding_inputs
from ._terms import PrototypeTerm, register_term

__all__ = [
    "DotRegressionLoss",
    "PrototypeAlignmentLoss",
    "class_scaling_factors",
    "dot_regression",
    "prototype_alignment",
]

#: HPN / DL2PA sum the balanced loss over the batch (a mean would need lr × batch size; docs/methods.md §7.3).
ALIGNMENT_REDUCTION = "sum"
#: ‖h‖ is clamped here before dividing (reference: ``torch.clamp(H_length, 1e-8)``).
NORM_FLOOR = 1e-8


def prototype_alignment(
    features: Tensor, target: Tensor, prototypes: Tensor, *, reduction: str = ALIGNMENT_REDUCTION
) -> Tensor:
    """Squared cosine distance to the class prototype, summed over the batch (HPN / DL2PA balanced loss).

    L = Σ_i (1 − cos(f_i, p_{y_i}))²  (Mettes et al., NeurIPS 2019, Eq. 5; Ebrahimi Saadabadi et al., CVPR 2024,
    balanced setting). 0 ≤ (1 − cos)² ≤ 4 per sample.

    Args:
        features: (N, d) raw outputs f_i (DL2PA: the backbone's final linear layer, no normalisation before the
            cosine; normalised here).
        target: (N,) integer labels in [0, K).
        prototypes: (K, d) class prototypes in class order (for DL2PA: already permuted by the assignment π;
            normalised here).
        reduction: "sum" (default, the papers'), "mean" or "none".

    Returns:
        Scalar (or (N,)) loss, at least float32.

    Raises:
        ValueError: wrong shapes, K < 2, labels out of range, NaN/Inf, empty batch, unknown ``reduction``.
        TypeError: non-tensor or non-floating inputs, non-integer ``target``.

    Example:
        >>> import torch
        >>> p = torch.eye(2)
        >>> float(prototype_alignment(torch.tensor([[2.0, 0.0], [0.0, -1.0]]), torch.tensor([0, 1]), p))
        4.0
    """
    u, p = embedding_inputs(features, target, prototypes, reduction)
    with autocast_off(features.device):
        cos = (u * p[target]).sum(dim=1)
        return reduce_loss((1.0 - cos).square(), reduction)


def class_scaling_factors(target: Tensor, num_classes: int, *, dtype: torch.dtype = torch.float32) -> Tensor:
    """Per-batch class scaling E_c = √(γ_b/n_c), γ_b = B/#present classes; 1 for absent classes.

    Yang et al., NeurIPS 2022 (reference ``produce_Ew``): inverse-frequency reweighting of the ETF prototypes
    within a mini-batch, w*_c ← E_c·w*_c. Compute it once from the original labels to reuse it for both mixup
    targets, as the reference does.

    Args:
        target: (B,) integer labels in [0, num_classes).
        num_classes: K ≥ 2.
        dtype: floating dtype of the result; default float32.

    Returns:
        (K,) tensor of ``dtype`` on ``target``'s device.

    Raises:
        ValueError: empty ``target``, labels out of range, ``num_classes`` < 2.
        TypeError: non-integer ``target`` or ``num_classes``.

    Example:
        >>> import torch
        >>> class_scaling_factors(torch.tensor([0, 0, 0, 1]), 3).tolist()  # γ_b = 4/2 = 2
        [0.8164966106414795, 1.4142135381698608, 1.0]
    """
    check_count(num_classes, "num_classes", 2)
    check_tensor(target, "target", ndim=1, integer=True)
    check_labels_1d(target, int(target.shape[0]), num_classes)
    if not dtype.is_floating_point:
        raise TypeError(f"`dtype` must be a floating-point dtype; got {dtype}")
    counts = torch.bincount(target, minlength=num_classes).to(dtype)
    present = counts > 0
    gamma_b = target.shape[0] / present.sum().to(dtype)
    return torch.where(present, (gamma_b / counts.clamp_min(1.0)).sqrt(), torch.ones_like(counts))


def dot_regression(
    features: Tensor,
    target: Tensor,
    prototypes: Tensor,
    class_scaling: bool | Tensor = True,
    *,
    feature_norm_weight: float = 0.0,
    reduction: str = "mean",
) -> Tensor:
    """Dot-regression to fixed (ETF) prototypes: ½·mean_i (w_iᵀh_i − ‖w_i‖·sg‖h_i‖)² / sg‖h_i‖.

    Yang et al., NeurIPS 2022, Eq. 7: L_DR = (1/(2E_WE_H))(w*_{y}ᵀh − E_WE_H)², implemented as in the reference
    (``dot_loss``, criterion ``reg_dot_loss``) with stop-gradient (sg) lengths: w_i = E_{y_i}·w*_{y_i} with the
    per-batch class scaling E_c = √(γ_b/n_c) (:func:`class_scaling_factors`), and ‖h_i‖ clamped to ≥ 1e−8. For
    unit h and unit prototypes this is ½·E_c²(cos − 1)². The optional feature-norm term adds λ·mean_i‖h_i‖
    (with gradient; λ = 0.01 for ImageNet-LT). Also DL2PA's long-tail loss (target m = E_c·p_{π(y)}).

    Args:
        features: (N, d) features h (ETF + DR: normalise(BN1d(f(x))); used as given).
        target: (N,) integer labels in [0, K).
        prototypes: (K, d) fixed class vectors w*_c (used as given, not normalised).
        class_scaling: True (default) for the per-batch E_c computed from ``target``; False for none; or a (K,)
            tensor of factors (e.g. ``class_scaling_factors(y_a, K)`` shared by both mixup targets).
        feature_norm_weight: λ ≥ 0 of the λ·mean‖h‖ term; default 0 (reference ``reg_lam``).
        reduction: "mean" (default, the reference), "sum" or "none" (per-sample ½r_i²/‖h_i‖ + λ‖h_i‖).

    Returns:
        Scalar (or (N,)) loss, at least float32.

    Raises:
        ValueError: wrong shapes, K < 2, labels out of range, NaN/Inf, empty batch, λ < 0, a ``class_scaling``
            tensor of the wrong shape.
        TypeError: non-tensor or non-floating inputs, non-integer ``target``, ``class_scaling`` of another type.

    Example:
        >>> import torch
        >>> p = torch.eye(2)
        >>> h = torch.tensor([[0.0, 1.0], [0.0, 1.0]])  # sample 0 orthogonal to its prototype
        >>> float(dot_regression(h, torch.tensor([0, 1]), p))  # mean(½·(0 − 1)²/1, 0) with E_c = 1
        0.25
    """
    lam = check_positive(feature_norm_weight, "feature_norm_weight", strict=False)
    h, w_star = embedding_inputs(features, target, prototypes, reduction, normalize=False)
    num_classes, dtype = w_star.shape[0], h.dtype
    if isinstance(class_scaling, Tensor):
        check_tensor(class_scaling, "class_scaling", ndim=1, floating=True, finite=True)
        if class_scaling.shape[0] != num_classes:
            raise ValueError(
                f"`class_scaling` must have one factor per class ({num_classes}); got shape "
                f"{tuple(class_scaling.shape)}"
            )
        scales = class_scaling
    elif isinstance(class_scaling, bool):
        scales = class_scaling_factors(target, num_classes, dtype=dtype) if class_scaling else None
    else:
        raise TypeError(f"`class_scaling` must be a bool or a (K,) tensor; got {type(class_scaling).__name__}")

    with autocast_off(features.device):
        w = w_star[target]
        if scales is not None:
            w = w * scales.to(device=h.device, dtype=dtype)[target][:, None]
        h_len = h.detach().norm(dim=1).clamp_min(NORM_FLOOR)
        w_len = w.detach().norm(dim=1)
        residual = (h * w).sum(dim=1) - w_len * h_len
        per_sample = 0.5 * residual.square() / h_len
        if lam > 0:
            per_sample = per_sample + lam * h.norm(dim=1)
        return reduce_loss(per_sample, reduction)


class PrototypeAlignmentLoss(nn.Module):
    """Module form of :func:`prototype_alignment`: ``forward(features, target, prototypes)``.

    Example:
        >>> import torch
        >>> crit = PrototypeAlignmentLoss()
        >>> float(crit(torch.eye(3), torch.tensor([0, 1, 2]), torch.eye(3)))
        0.0
    """

    def __init__(self, *, reduction: str = ALIGNMENT_REDUCTION) -> None:
        super().__init__()
        self.reduction = check_choice(reduction, "reduction", REDUCTIONS)

    def forward(self, features: Tensor, target: Tensor, prototypes: Tensor) -> Tensor:
        return prototype_alignment(features, target, prototypes, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class DotRegressionLoss(nn.Module):
    """Module form of :func:`dot_regression`: ``forward(features, target, prototypes, class_scaling=None)``
    (``class_scaling`` overrides the module's setting for one call, e.g. shared factors under mixup).

    Example:
        >>> import torch
        >>> crit = DotRegressionLoss()
        >>> float(crit(torch.eye(3), torch.tensor([0, 1, 2]), torch.eye(3)))
        0.0
    """

    def __init__(
        self, class_scaling: bool = True, *, feature_norm_weight: float = 0.0, reduction: str = "mean"
    ) -> None:
        super().__init__()
        self.class_scaling = bool(class_scaling)
        self.feature_norm_weight = check_positive(feature_norm_weight, "feature_norm_weight", strict=False)
        self.reduction = check_choice(reduction, "reduction", REDUCTIONS)

    def forward(
        self, features: Tensor, target: Tensor, prototypes: Tensor, class_scaling: bool | Tensor | None = None
    ) -> Tensor:
        return dot_regression(
            features,
            target,
            prototypes,
            self.class_scaling if class_scaling is None else class_scaling,
            feature_norm_weight=self.feature_norm_weight,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return (
            f"class_scaling={self.class_scaling}, feature_norm_weight={self.feature_norm_weight}, "
            f"reduction={self.reduction!r}"
        )


@register_term("proto_align", aliases=("hpn", "dl2pa"))
class PrototypeAlignmentTerm(PrototypeTerm):
    """Objective term ``"proto_align"`` (aliases ``"hpn"``, ``"dl2pa"``): :func:`prototype_alignment`, summed
    over the batch, on ``output.features`` and ``output.prototypes`` (class order, assignment applied)."""

    def __init__(self, reduction: str = ALIGNMENT_REDUCTION) -> None:
        super().__init__()
        self.loss = PrototypeAlignmentLoss(reduction=reduction)


@register_term("dot_regression", aliases=("dr", "etf_dr"))
class DotRegressionTerm(PrototypeTerm):
    """Objective term ``"dot_regression"`` (aliases ``"dr"``, ``"etf_dr"``): :func:`dot_regression` on
    ``output.features`` and ``output.prototypes`` (the fixed ETF, K×d)."""

    def __init__(self, class_scaling: bool = True, feature_norm_weight: float = 0.0) -> None:
        super().__init__()
        self.loss = DotRegressionLoss(class_scaling, feature_norm_weight=feature_norm_weight)

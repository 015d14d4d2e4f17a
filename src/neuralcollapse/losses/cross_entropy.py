"""Cross-entropy and its two plain variants used as baselines of the OCCE paper (Katsikas, Passalis, Tefas,
TNNLS 2025, Tables 1 and 3): label-smoothed CE and one-vs-rest binary cross-entropy.

Also home of the exact ``log(1 − p_k)`` helpers shared by the complement and focal families
(docs/methods.md §3: compute log(1 − p_k) as LSE_{j≠k} z_j − LSE_j z_j, never ``log1p(-softmax)``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .._validation import check_probability
from ._common import DEFAULT_IGNORE_INDEX, LogitLossModule, logit_loss
from ._terms import LogitTerm, register_term

__all__ = [
    "BCELoss",
    "CrossEntropyLoss",
    "LabelSmoothingCELoss",
    "bce",
    "cross_entropy",
    "label_smoothing_ce",
]

#: Label-smoothing ε (Szegedy et al., CVPR 2016, "Rethinking the Inception Architecture", §7).
LABEL_SMOOTHING = 0.1


# --------------------------------------------------------------------------------------------------------
# shared numerics
# --------------------------------------------------------------------------------------------------------


def _one_hot_mask(target: Tensor, num_classes: int) -> Tensor:
    """Boolean (M, K) mask of the target class."""
    return F.one_hot(target, num_classes).bool()


def _log1m_softmax_at(z: Tensor, index: Tensor, lse: Tensor | None = None) -> Tensor:
    """log(1 − softmax(z)_k) for one class k = ``index[i]`` per row, exactly: LSE_{j≠k} z_j − LSE_j z_j.

    Finite for every finite z (K ≥ 2), with a finite gradient; ``log1p(-p)`` would give −inf once p_k
    rounds to 1.
    """
    if lse is None:
        lse = torch.logsumexp(z, dim=1)
    others = torch.logsumexp(z.masked_fill(_one_hot_mask(index, z.shape[1]), float("-inf")), dim=1)
    return others - lse


def _log1m_softmax(z: Tensor) -> Tensor:
    """log(1 − softmax(z)_k) for every k, (M, K), exact at any logit scale.

    With m = max_j z_j, e = exp(z − m), S = Σ e: for k ≠ argmax, 1 − p_k = (S − e_k)/S and S − e_k ≥ 1 (the
    maximum stays in the sum), so the subtraction loses nothing. For the argmax column (where p_k can be
    1 − tiny) the masked log-sum-exp LSE_{j≠k} z_j − LSE_j z_j is used instead.
    """
    num_classes = z.shape[1]
    m, top = z.max(dim=1, keepdim=True)
    e = torch.exp(z - m)
    total = e.sum(dim=1, keepdim=True)
    is_top = _one_hot_mask(top.squeeze(1), num_classes)
    # Zero e at the argmax before subtracting so that this (unused) entry stays >= 1: log(0) there would turn
    # the discarded branch of torch.where into a NaN gradient.
    rest = total - e.masked_fill(is_top, 0.0)
    generic = torch.log(rest) - torch.log(total)
    top_value = _log1m_softmax_at(z, top.squeeze(1), lse=m.squeeze(1) + torch.log(total.squeeze(1)))
    return torch.where(is_top, top_value.unsqueeze(1), generic)


# --------------------------------------------------------------------------------------------------------
# functional API
# --------------------------------------------------------------------------------------------------------


def cross_entropy(
    logits: Tensor,
    target: Tensor,
    *,
    weight: Tensor | None = None,
    ignore_index: int = DEFAULT_IGNORE_INDEX,
    reduction: str = "mean",
) -> Tensor:
    """Softmax cross-entropy, −log softmax(z)_y, with the library's input checks.

    Same value and gradient as ``torch.nn.functional.cross_entropy`` (class ``weight``, ``ignore_index``,
    ``reduction``, (N, K, d1, ...) inputs), except that a batch whose every sample is ignored gives a
    graph-connected 0 instead of NaN, and half-precision logits are computed in float32.

    Args:
        logits: (N, K) or (N, K, d1, ...) floating, finite; K ≥ 2.
        target: (N,) or (N, d1, ...) integer class indices in [0, K) (or ``ignore_index``).
        weight: optional (K,) class weights; ``mean`` divides by Σ_i w_{y_i}, as ``F.cross_entropy``.
        ignore_index: target value that contributes neither loss nor gradient (default −100).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (batch shape, ignored entries 0).

    Returns:
        Scalar, or the batch shape for ``reduction="none"``; float32 for half inputs.

    Raises:
        ValueError: wrong shapes, K < 2, labels out of range, NaN/Inf logits, empty batch, bad reduction.
        TypeError: non-floating logits or non-integer target.

    Example:
        >>> import torch
        >>> round(float(cross_entropy(torch.zeros(2, 4), torch.tensor([0, 3]))), 4)  # log 4
        1.3863
    """
    return logit_loss(
        lambda z, t: F.cross_entropy(z, t, reduction="none"),
        logits,
        target,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
    )


def label_smoothing_ce(
    logits: Tensor,
    target: Tensor,
    *,
    eps: float = LABEL_SMOOTHING,
    weight: Tensor | None = None,
    ignore_index: int = DEFAULT_IGNORE_INDEX,
    reduction: str = "mean",
) -> Tensor:
    """Label-smoothed cross-entropy (LSCE): −Σ_k t_k log p_k with t = (1 − ε)·e_y + ε/K.

    Szegedy et al., "Rethinking the Inception Architecture for Computer Vision", CVPR 2016, §7; the LSCE
    baseline of the OCCE paper (Table 1). Equals ``F.cross_entropy(..., label_smoothing=eps)`` without class
    weights. With ``weight`` the whole per-sample loss is weighted by w_{y_i} (the library's rule, see
    :func:`cross_entropy`); PyTorch instead weights each smoothing term by its own class weight. (The official
    OCCE repository's unused helper builds targets summing to 1 + ε/(K−1); not reproduced.)

    Args:
        logits: (N, K) or (N, K, d1, ...) floating, finite; K ≥ 2.
        target: integer class indices, shape (N,) or (N, d1, ...).
        eps: smoothing ε in [0, 1]; default 0.1 (Szegedy et al.).
        weight, ignore_index, reduction: as :func:`cross_entropy`.

    Returns:
        Scalar (or per-sample for ``reduction="none"``).

    Raises:
        ValueError / TypeError: as :func:`cross_entropy`; ``eps`` outside [0, 1].

    Example:
        >>> import torch
        >>> z, y = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([0])
        >>> torch.allclose(label_smoothing_ce(z, y), torch.nn.functional.cross_entropy(z, y, label_smoothing=0.1))
        True
    """
    eps = check_probability(eps, "eps")

    def rows(z: Tensor, t: Tensor) -> Tensor:
        logp = F.log_softmax(z, dim=1)
        nll = -logp.gather(1, t.unsqueeze(1)).squeeze(1)
        smooth = -logp.mean(dim=1)
        return (1.0 - eps) * nll + eps * smooth

    return logit_loss(rows, logits, target, weight=weight, ignore_index=ignore_index, reduction=reduction)


def bce(
    logits: Tensor,
    target: Tensor,
    *,
    weight: Tensor | None = None,
    ignore_index: int = DEFAULT_IGNORE_INDEX,
    reduction: str = "mean",
) -> Tensor:
    """One-vs-rest sigmoid binary cross-entropy: Σ_k BCE(σ(z_k), [k = y]), summed over classes.

    The "BCE" open-set baseline of the OCCE paper (Table 3): each logit is an independent "is it class k?"
    detector. Per sample ℓ_i = Σ_k softplus(z_k) − z_y (= −log σ(z_y) − Σ_{k≠y} log(1 − σ(z_k))), computed
    stably by ``binary_cross_entropy_with_logits``; the **sum over classes** is kept (not the mean over the
    N·K entries that ``F.binary_cross_entropy_with_logits`` would take), then samples are reduced as
    :func:`cross_entropy` (mean over samples by default; class ``weight`` applies w_{y_i} per sample).

    Args:
        logits: (N, K) or (N, K, d1, ...) floating, finite; K ≥ 2.
        target: integer class indices.
        weight, ignore_index, reduction: as :func:`cross_entropy`.

    Returns:
        Scalar (or per-sample for ``reduction="none"``).

    Raises:
        ValueError / TypeError: as :func:`cross_entropy`.

    Example:
        >>> import torch
        >>> round(float(bce(torch.zeros(1, 3), torch.tensor([1]))), 4)  # 3 log 2
        2.0794
    """

    def rows(z: Tensor, t: Tensor) -> Tensor:
        onehot = F.one_hot(t, z.shape[1]).to(z.dtype)
        return F.binary_cross_entropy_with_logits(z, onehot, reduction="none").sum(dim=1)

    return logit_loss(rows, logits, target, weight=weight, ignore_index=ignore_index, reduction=reduction)


# --------------------------------------------------------------------------------------------------------
# modules and objective terms
# --------------------------------------------------------------------------------------------------------


class _LabelSmoothingOptions:
    """ε of label smoothing, shared by :class:`LabelSmoothingCELoss` and the ``"ls"`` term."""

    loss_fn = staticmethod(label_smoothing_ce)
    hyperparameters = ("eps",)

    def __init__(self, eps: float = LABEL_SMOOTHING, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.eps = check_probability(eps, "eps")


class CrossEntropyLoss(LogitLossModule):
    """Module form of :func:`cross_entropy`: ``CrossEntropyLoss(weight=None, ignore_index=-100,
    reduction="mean")(logits, target)``.

    Example:
        >>> import torch
        >>> round(float(CrossEntropyLoss()(torch.zeros(2, 4), torch.tensor([0, 3]))), 4)
        1.3863
    """

    loss_fn = staticmethod(cross_entropy)


class LabelSmoothingCELoss(_LabelSmoothingOptions, LogitLossModule):
    """Module form of :func:`label_smoothing_ce` (ε default 0.1).

    Example:
        >>> import torch
        >>> loss = LabelSmoothingCELoss(eps=0.1)(torch.zeros(2, 4), torch.tensor([0, 3]))
        >>> round(float(loss), 4)
        1.3863
    """


class BCELoss(LogitLossModule):
    """Module form of :func:`bce` (one-vs-rest, summed over classes, mean over samples).

    Example:
        >>> import torch
        >>> round(float(BCELoss()(torch.zeros(1, 3), torch.tensor([1]))), 4)
        2.0794
    """

    loss_fn = staticmethod(bce)


@register_term("ce")
class CrossEntropyTerm(LogitTerm):
    """Objective term ``"ce"``: :func:`cross_entropy` of ``output.logits`` (mean over samples)."""

    loss_fn = staticmethod(cross_entropy)


@register_term("ls", aliases=("lsce",))
class LabelSmoothingTerm(_LabelSmoothingOptions, LogitTerm):
    """Objective term ``"ls"`` (alias ``"lsce"``): :func:`label_smoothing_ce`, ε = 0.1 by default."""


@register_term("bce")
class BCETerm(LogitTerm):
    """Objective term ``"bce"``: one-vs-rest :func:`bce` (the OSR baseline of OCCE Table 3)."""

    loss_fn = staticmethod(bce)

"""Complement-class baselines of the OCCE paper (Katsikas et al., TNNLS 2025, Table 1): negative learning
(CE+NL), Complement Objective Training (COT) and complement cross-entropy (CCE).

* NL: Kim, Yim, Yun, Kim, "NLNL: Negative Learning for Noisy Labels", ICCV 2019 (random complementary label);
  the OCCE repository's "SCL-NL" variant sums over every complementary class.
* COT: Chen, Chang, Chen, Wang, Jiang, "Complement Objective Training", ICLR 2019 (henry8527/COT).
* CCE: Kim, Lee, Jeon, "Imbalanced image classification with complement cross entropy", Pattern Recognition
  Letters 2021 (unique-chan/Complement-Cross-Entropy).

All log-probabilities are computed exactly in log space (docs/methods.md §3): log(1 − p_k) = LSE_{j≠k} z_j − LSE_j z_j
and the complement distribution log P_ij = z_j − LSE_{k≠y} z_k, with no ``+1e-7`` guards.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._validation import check_choice
from ..output import HeadOutput
from ._common import DEFAULT_IGNORE_INDEX, LogitLossModule, logit_loss
from ._terms import LogitTerm, register_term
from .cross_entropy import _log1m_softmax, _log1m_softmax_at, _one_hot_mask, cross_entropy

__all__ = [
    "ComplementCrossEntropyLoss",
    "ComplementEntropyLoss",
    "NegativeLearningLoss",
    "complement_cross_entropy",
    "complement_entropy",
    "negative_learning",
]

#: Negative-learning variants: every complementary class ("all", OCCE repository's SCL-NL) or one drawn at
#: random per sample and iteration ("random", NLNL).
NL_MODES = ("all", "random")
#: Default NL variant (the OCCE paper's CE+NL baseline uses the official repository's "all").
NL_MODE = "all"


def negative_learning(
    logits: Tensor,
    target: Tensor,
    *,
    mode: str = NL_MODE,
    generator: torch.Generator | None = None,
    weight: Tensor | None = None,
    ignore_index: int = DEFAULT_IGNORE_INDEX,
    reduction: str = "mean",
) -> Tensor:
    """Negative-learning loss L_NL (the "NL" half of the CE+NL baseline; the objective term ``"nl"`` adds CE).

    ``mode="all"`` (OCCE repository, SCL-NL): ℓ_i = −Σ_{k≠y} log(1 − p_k).
    ``mode="random"`` (Kim et al., ICCV 2019, Eq. 2): ℓ_i = −log(1 − p_ȳ) with a complementary label ȳ ≠ y
    drawn uniformly per sample on each call.
    log(1 − p_k) is LSE_{j≠k} z_j − LSE_j z_j, exact even when p_k rounds to 1 (the reference adds 1e−7).

    Args:
        logits: (N, K) or (N, K, d1, ...) floating, finite; K ≥ 2.
        target: integer class indices (or ``ignore_index``).
        mode: ``"all"`` (default) or ``"random"``.
        generator: ``torch.Generator`` for ``mode="random"`` (None = global RNG); its device is used for the
            draw, the labels then move to the logits' device.
        weight, ignore_index, reduction: as :func:`~neuralcollapse.losses.cross_entropy`.

    Returns:
        Scalar (or per-sample for ``reduction="none"``), ≥ 0.

    Raises:
        ValueError / TypeError: as :func:`~neuralcollapse.losses.cross_entropy`; unknown ``mode``.

    Example:
        >>> import torch
        >>> round(float(negative_learning(torch.zeros(1, 3), torch.tensor([0]))), 4)  # -2 log(2/3)
        0.8109
    """
    check_choice(mode, "mode", NL_MODES)

    def rows(z: Tensor, t: Tensor) -> Tensor:
        num_classes = z.shape[1]
        if mode == "all":
            log1m = _log1m_softmax(z)
            return -(log1m.sum(dim=1) - log1m.gather(1, t.unsqueeze(1)).squeeze(1))
        device = generator.device if generator is not None else z.device
        shift = torch.randint(1, num_classes, t.shape, generator=generator, device=device).to(z.device)
        complementary = (t + shift) % num_classes
        return -_log1m_softmax_at(z, complementary)

    return logit_loss(rows, logits, target, weight=weight, ignore_index=ignore_index, reduction=reduction)


def _complement_entropy_rows(z: Tensor, t: Tensor) -> Tensor:
    """C_i = −Σ_{j≠y} P_ij log P_ij with P_i = softmax over the non-target logits, per row (M,)."""
    hot = _one_hot_mask(t, z.shape[1])
    masked = z.masked_fill(hot, float("-inf"))
    lse_others = torch.logsumexp(masked, dim=1, keepdim=True)
    # log P from the unmasked logits (finite everywhere); P from the masked ones (exactly 0 at y, with a zero
    # gradient there) — no 0·(−inf) in either pass.
    log_p = z - lse_others
    p = torch.exp(masked - lse_others)
    return -(p * log_p).sum(dim=1)


def complement_entropy(
    logits: Tensor,
    target: Tensor,
    *,
    weight: Tensor | None = None,
    ignore_index: int = DEFAULT_IGNORE_INDEX,
    reduction: str = "mean",
) -> Tensor:
    """Complement-entropy loss of COT: −(1/K)·C_i, reduced (default mean over samples).

    Chen et al., "Complement Objective Training", ICLR 2019, Eq. 2: the complement distribution
    P_ij = p_ij/(1 − p_iy), j ≠ y, computed as log P_ij = z_j − LSE_{k≠y} z_k; its entropy
    C_i = −Σ_{j≠y} P_ij log P_ij is *maximised* (flattened complement), hence the minus sign. The 1/K
    normalisation is the reference code's (which hard-codes K = 10); here K is the logits' class count.
    COT trains with two updates per batch: a step on CE (+γ·OCCE), then a new forward and a step of a second
    optimiser on this loss (see the ``"cot"`` term).

    Args:
        logits: (N, K) or (N, K, d1, ...) floating, finite; K ≥ 2.
        target: integer class indices (or ``ignore_index``).
        weight, ignore_index, reduction: as :func:`~neuralcollapse.losses.cross_entropy`.

    Returns:
        Scalar (or per-sample for ``reduction="none"``) in [−log(K−1)/K, 0].

    Raises:
        ValueError / TypeError: as :func:`~neuralcollapse.losses.cross_entropy`.

    Example:
        >>> import torch
        >>> round(float(complement_entropy(torch.zeros(1, 3), torch.tensor([0]))), 4)  # -log(2)/3
        -0.231
    """
    return logit_loss(
        lambda z, t: -_complement_entropy_rows(z, t) / z.shape[1],
        logits,
        target,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
    )


def complement_cross_entropy(
    logits: Tensor,
    target: Tensor,
    *,
    weight: Tensor | None = None,
    ignore_index: int = DEFAULT_IGNORE_INDEX,
    reduction: str = "mean",
) -> Tensor:
    """Complement cross-entropy (CCE): CE_i − (1/K)·C_i in a single step.

    Kim, Lee, Jeon, Pattern Recognition Letters 2021, Eq. 6 (balancing factor 1/K as in the OCCE repository's
    ``CCELoss``): the cross-entropy plus the complement-entropy term of :func:`complement_entropy`, optimised
    together (one forward, one optimiser step), unlike COT's alternating updates.

    Args:
        logits: (N, K) or (N, K, d1, ...) floating, finite; K ≥ 2.
        target: integer class indices (or ``ignore_index``).
        weight, ignore_index, reduction: as :func:`~neuralcollapse.losses.cross_entropy`.

    Returns:
        Scalar (or per-sample for ``reduction="none"``).

    Raises:
        ValueError / TypeError: as :func:`~neuralcollapse.losses.cross_entropy`.

    Example:
        >>> import torch
        >>> round(float(complement_cross_entropy(torch.zeros(1, 3), torch.tensor([0]))), 4)  # log 3 - log(2)/3
        0.8676
    """

    def rows(z: Tensor, t: Tensor) -> Tensor:
        ce = torch.logsumexp(z, dim=1) - z.gather(1, t.unsqueeze(1)).squeeze(1)
        return ce - _complement_entropy_rows(z, t) / z.shape[1]

    return logit_loss(rows, logits, target, weight=weight, ignore_index=ignore_index, reduction=reduction)


# --------------------------------------------------------------------------------------------------------
# modules and objective terms
# --------------------------------------------------------------------------------------------------------


class _NegativeLearningOptions:
    """NL variant and random generator, shared by :class:`NegativeLearningLoss` and the ``"nl"`` term."""

    loss_fn = staticmethod(negative_learning)
    hyperparameters = ("mode", "generator")

    def __init__(self, mode: str = NL_MODE, generator: torch.Generator | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mode = check_choice(mode, "mode", NL_MODES)
        self.generator = generator


class NegativeLearningLoss(_NegativeLearningOptions, LogitLossModule):
    """Module form of :func:`negative_learning` (L_NL alone; ``mode="random"`` draws from ``generator``).

    Example:
        >>> import torch
        >>> round(float(NegativeLearningLoss()(torch.zeros(1, 3), torch.tensor([0]))), 4)
        0.8109
    """


class ComplementEntropyLoss(LogitLossModule):
    """Module form of :func:`complement_entropy` (COT's second-step loss).

    Example:
        >>> import torch
        >>> round(float(ComplementEntropyLoss()(torch.zeros(1, 3), torch.tensor([0]))), 4)
        -0.231
    """

    loss_fn = staticmethod(complement_entropy)


class ComplementCrossEntropyLoss(LogitLossModule):
    """Module form of :func:`complement_cross_entropy`.

    Example:
        >>> import torch
        >>> round(float(ComplementCrossEntropyLoss()(torch.zeros(1, 3), torch.tensor([0]))), 4)
        0.8676
    """

    loss_fn = staticmethod(complement_cross_entropy)


@register_term("nl")
class NegativeLearningTerm(_NegativeLearningOptions, LogitTerm):
    """Objective term ``"nl"``: CE + L_NL with weight 1:1 (the OCCE paper's "CE+NL" baseline).

    Args:
        mode: ``"all"`` (default) or ``"random"`` (see :func:`negative_learning`).
        seed: seed of a private CPU generator for ``mode="random"`` (None = the global RNG).
        weight, ignore_index: as :func:`~neuralcollapse.losses.cross_entropy`, for both halves.
    """

    def __init__(self, mode: str = NL_MODE, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(mode, None, **kwargs)  # the term owns its generator, built from `seed`
        self.generator = None if seed is None else torch.Generator().manual_seed(int(seed))

    def compute(self, output: HeadOutput, target: Tensor) -> Tensor:
        return cross_entropy(output.logits, target, **self._options()) + self._loss(output.logits, target)


@register_term("cot")
class ComplementObjectiveTerm(LogitTerm):
    """Objective term ``"cot"``: COT's complement-entropy step, −(1/K)·mean_i C_i (:func:`complement_entropy`).

    Complement Objective Training (Chen et al., ICLR 2019) alternates **two updates per batch**:

    1. forward, loss = CE (+ γ·OCCE), step of the main optimiser;
    2. a *new* forward of the same batch, loss = this term, step of a **second** SGD optimiser with its own
       momentum buffers (same learning rate and weight decay).

    This term is only the second step's loss; running the second forward and optimiser step is the training
    loop's job (docs/methods.md §3). COT costs about 1.6× the time of CE training.
    """

    loss_fn = staticmethod(complement_entropy)


@register_term("cce")
class ComplementCrossEntropyTerm(LogitTerm):
    """Objective term ``"cce"``: :func:`complement_cross_entropy`, CE − (1/K)·C_i in one step."""

    loss_fn = staticmethod(complement_cross_entropy)

"""Normalized-prototype losses: NormFace, NTCE and NONL (features and class prototypes on the unit sphere).

Sources:

- F. Wang, X. Xiang, J. Cheng, A. L. Yuille, "NormFace: L2 Hypersphere Embedding for Face Verification",
  ACM Multimedia 2017 — NormFace.
- P. Koromilas, T. Giannakopoulos, M. A. Nicolaou, Y. Panagakis, "Neural Collapse by Design: Learning Class
  Prototypes on the Hypersphere", ICML 2026 (arXiv 2605.20302) — NTCE and NONL. The definitions follow the
  authors' reference code (pakoromilas/nc_by_design, ``losses.py``) and docs/methods.md §4.

Notation: u_i = h_i/‖h_i‖ (unit feature), w_c = W_c/‖W_c‖ (unit prototype, no bias), cosine s_ic = w_cᵀu_i,
temperature τ, M = batch size, n_c = number of batch samples of class c. Every function normalises both of its
inputs (idempotent for unit rows), so the raw classifier matrix or the head's unit prototypes may be passed; an
all-zero feature row stays zero (as ``F.normalize``) and gets no gradient (F.normalize would give it ~1e12×).
All log-sum-exps are computed with ``torch.logsumexp`` over masked entries (−∞ on excluded ones), in float32 or
wider even under autocast — the reference exponentiates directly and overflows in fp16 for τ ≲ 0.09.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validation import check_choice, check_positive, data_checks_enabled
from ._common import REDUCTIONS, reduce_loss
from ._features import autocast_off, embedding_inputs, gather_batch
from ._terms import PrototypeTerm, register_term

__all__ = [
    "NONLLoss",
    "NTCELoss",
    "NormFaceLoss",
    "nonl",
    "normface",
    "ntce",
]

#: τ of NormFace, NTCE and NONL: the reference implementation's default (docs/methods.md §4.3).
DEFAULT_TEMPERATURE = 0.2
#: Anchors of NONL: "prototype" (reference ``symmetric=True``, the paper's variant), "instance"
#: (``symmetric=False``) and "both" (``bidirectional=True``).
NONL_ANCHORS = ("prototype", "instance", "both")
#: What to do with prototype anchors whose negative set is empty (single-class batch).
ON_EMPTY = ("raise", "skip")


# ---------------------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------------------


def _prepare(
    features: Tensor, target: Tensor, prototypes: Tensor, temperature: float, reduction: str
) -> tuple[Tensor, Tensor, float]:
    """Validate; return unit features, unit prototypes (working dtype) and τ."""
    tau = check_positive(temperature, "temperature")
    u, w = embedding_inputs(features, target, prototypes, reduction)
    return u, w, tau


def normface(
    features: Tensor,
    target: Tensor,
    prototypes: Tensor,
    temperature: float = DEFAULT_TEMPERATURE,
    *,
    reduction: str = "mean",
) -> Tensor:
    """NormFace: softmax cross-entropy over cosines to unit class prototypes, divided by a temperature.

    ℓ_i = −s_{i,y_i}/τ + LSE_c(s_ic/τ),  s_ic = w_cᵀu_i  (Wang et al., "NormFace", ACM MM 2017, Eq. 8 with
    scale 1/τ; reference nc_by_design ``NormFace``). ℓ_i > 0; over unit vectors with d ≥ K−1 its minimum,
    reached at a simplex, is log(1 + (K−1)·exp(−K/((K−1)τ))) (docs/methods.md §4.2).

    Args:
        features: (M, d) features h_i (normalised here).
        target: (M,) integer class labels in [0, K).
        prototypes: (K, d) class vectors in class order (normalised here; no bias).
        temperature: τ > 0; default 0.2 (nc_by_design default).
        reduction: "mean" (default, over the M samples), "sum" or "none" ((M,) per-sample losses).

    Returns:
        A scalar (or (M,) for ``reduction="none"``) in the promoted dtype, at least float32.

    Raises:
        ValueError: wrong shapes, K < 2, labels out of range, NaN/Inf, empty batch, τ ≤ 0, unknown reduction.
        TypeError: non-tensor or non-floating inputs, non-integer ``target``.

    Example:
        >>> import torch
        >>> w = torch.eye(2)
        >>> loss = normface(w, torch.tensor([0, 1]), w, temperature=0.5)
        >>> round(float(loss), 4)  # log(1 + e^{-2}): orthogonal prototypes, features on them
        0.1269
    """
    u, w, tau = _prepare(features, target, prototypes, temperature, reduction)
    with autocast_off(u.device):
        logits = u @ w.T / tau
        per_sample = torch.logsumexp(logits, dim=1) - logits.gather(1, target[:, None]).squeeze(1)
    return reduce_loss(per_sample, reduction)


def ntce(
    features: Tensor,
    target: Tensor,
    prototypes: Tensor,
    temperature: float = DEFAULT_TEMPERATURE,
    *,
    reduction: str = "mean",
    gather: bool = False,
) -> Tensor:
    """NTCE: prototype-anchored NT-Xent — each sample's class prototype against every feature of the batch.

    ℓ_i = −s_{i,y_i}/τ + LSE_{j=1..M}(w_{y_i}ᵀu_j/τ)  (Koromilas et al., ICML 2026; reference nc_by_design
    ``NTCE``). The candidates are all M batch features: same-class instances stay in the denominator as
    negatives and so does the positive. Rows of one class share their log-partition, hence the floor
    ℓ ≥ (1/M)Σ_c n_c·log n_c, zero only when every class occurs once (docs/methods.md §4.2). A single-class batch
    is allowed and finite.

    Args:
        features: (M, d) features (normalised here).
        target: (M,) integer class labels in [0, K).
        prototypes: (K, d) class vectors in class order (normalised here).
        temperature: τ > 0; default 0.2 (nc_by_design default).
        reduction: "mean" (default), "sum" or "none".
        gather: if True and ``torch.distributed`` is initialised, the candidates are the features of the whole
            global batch (all-gathered with gradient; equal per-rank batch sizes required); anchors stay local.
            Default False, as the reference (local negatives).

    Returns:
        Scalar (or (M,)) loss, at least float32.

    Raises:
        ValueError / TypeError: as :func:`normface`.

    Example:
        >>> import torch
        >>> w = torch.eye(3)
        >>> loss = ntce(w[[0, 0, 1]], torch.tensor([0, 0, 1]), w, temperature=0.01)
        >>> round(float(loss), 4)  # the floor (1/3)(2 log 2 + 1 log 1)
        0.4621
    """
    u, w, tau = _prepare(features, target, prototypes, temperature, reduction)
    with autocast_off(u.device):
        local = u @ w.T / tau  # (M, K)
        positive = local.gather(1, target[:, None]).squeeze(1)
        u_all, _ = gather_batch(u, target, gather)
        candidates = local.T if u_all is u else w @ u_all.T / tau  # (K, M_all): prototype c vs feature b
        per_sample = torch.logsumexp(candidates, dim=1)[target] - positive
    return reduce_loss(per_sample, reduction)


def nonl(
    features: Tensor,
    target: Tensor,
    prototypes: Tensor,
    temperature: float = DEFAULT_TEMPERATURE,
    anchor: str = "prototype",
    on_empty: str = "raise",
    *,
    reduction: str = "mean",
    gather: bool = False,
) -> Tensor:
    """NONL: normalized loss with no positive in the denominator (decoupled), anchored on prototypes or instances.

    Koromilas et al., ICML 2026; reference nc_by_design ``NONL`` (docs/methods.md §4.1):

    - ``anchor="prototype"`` (the paper's variant, reference ``symmetric=True``):
      ℓ_i = −s_{i,y_i}/τ + LSE_{b: y_b≠y_i}(s_{b,y_i}/τ) — negatives are the other-class batch instances seen
      from the prototype w_{y_i}. The mean splits into alignment −(1/(Mτ))Σ_i s_{i,y_i} plus uniformity
      (1/M)Σ_c n_c·LSE_{b: y_b≠c}(w_cᵀu_b/τ).
    - ``anchor="instance"`` (``symmetric=False``; DCL-style NormFace): ℓ_i = −s_{i,y_i}/τ + LSE_{c≠y_i}(s_ic/τ).
    - ``anchor="both"`` (``bidirectional=True``): one LSE over the union of the two negative sets.

    The loss **can be negative** (no positive in the denominator; never clamped). Crude lower bounds:
    −2/τ + (1/M)Σ_i log|{b: y_b≠y_i}| (prototype) and −2/τ + log(K−1) (instance).

    Args:
        features: (M, d) features (normalised here).
        target: (M,) integer class labels in [0, K).
        prototypes: (K, d) class vectors in class order (normalised here).
        temperature: τ > 0; default 0.2 (nc_by_design default; its CIFAR-100 README example uses 0.1).
        anchor: "prototype" (default), "instance" or "both".
        on_empty: for ``anchor="prototype"``, what to do when the negative set of an anchor is empty, i.e. the
            batch holds a single class (the reference returns −∞ with NaN gradients): "raise" (default) raises
            a ``ValueError`` suggesting a class-balanced sampler; "skip" drops those anchors from the mean (a
            zero still attached to the graph if none remain; zeros in ``reduction="none"``). With validation
            switched off (``neuralcollapse.validation(False)``) "raise" does not check, and such a batch gives
            −∞ (the log-sum-exp over an empty set; the reference's −log(e^{s/τ}/0) is −∞ too). "instance" and
            "both" always have negatives.
        reduction: "mean" (default, over the kept anchors), "sum" or "none".
        gather: all-gather the candidate instances over ``torch.distributed`` ranks (with gradient); see
            :func:`ntce`. Default False (reference: local negatives).

    Returns:
        Scalar (or (M,)) loss, at least float32.

    Raises:
        ValueError: as :func:`normface`; unknown ``anchor``/``on_empty``; a single-class batch with
            ``anchor="prototype"`` and ``on_empty="raise"``.

    Example:
        >>> import torch
        >>> w = torch.eye(2)
        >>> loss = nonl(w, torch.tensor([0, 1]), w, temperature=0.5)
        >>> round(float(loss), 4)  # −1/τ + 0/τ: already negative
        -2.0
    """
    check_choice(anchor, "anchor", NONL_ANCHORS)
    check_choice(on_empty, "on_empty", ON_EMPTY)
    u, w, tau = _prepare(features, target, prototypes, temperature, reduction)
    num_classes = w.shape[0]
    neg_inf = torch.tensor(float("-inf"), dtype=u.dtype, device=u.device)
    with autocast_off(u.device):
        local = u @ w.T / tau  # (M, K)
        positive = local.gather(1, target[:, None]).squeeze(1)
        keep = None
        parts = []
        if anchor in ("instance", "both"):
            own_class = F.one_hot(target, num_classes).bool()
            parts.append(torch.logsumexp(local.masked_fill(own_class, neg_inf), dim=1))
        if anchor in ("prototype", "both"):
            u_all, t_all = gather_batch(u, target, gather)
            candidates = local.T if u_all is u else w @ u_all.T / tau  # (K, M_all)
            same = t_all[None, :] == torch.arange(num_classes, device=u.device)[:, None]
            has_negative = ~same.all(dim=1)  # (K,): class c has an other-class instance in the batch
            masked = candidates.masked_fill(same, neg_inf)
            # A fully masked row would give LSE = −∞ and NaN gradients; compute it on zeros, then re-mask.
            safe = torch.where(has_negative[:, None], masked, torch.zeros_like(masked))
            per_class = torch.where(has_negative, torch.logsumexp(safe, dim=1), neg_inf)
            parts.append(per_class[target])
            if anchor == "prototype":
                keep = has_negative[target]
                if on_empty == "raise":
                    _raise_if_single_class(keep, t_all)
                    keep = None
        negatives = parts[0] if len(parts) == 1 else torch.logaddexp(parts[0], parts[1])
        per_sample = negatives - positive
    return reduce_loss(per_sample, reduction, valid=keep)


def _raise_if_single_class(keep: Tensor, labels: Tensor) -> None:
    if data_checks_enabled() and not bool(keep.all()):
        raise ValueError(
            f"`target` holds a single class ({int(labels[0])}) in this batch, so the prototype-anchored NONL "
            "has no negatives (other-class instances); use a class-balanced batch sampler (several classes "
            "per batch), or pass on_empty='skip', or anchor='both'/'instance'"
        )


# ---------------------------------------------------------------------------------------------------------
# Modules and objective terms
# ---------------------------------------------------------------------------------------------------------


class NormFaceLoss(nn.Module):
    """Module form of :func:`normface`: ``forward(features, target, prototypes)``.

    Example:
        >>> import torch
        >>> loss = NormFaceLoss(temperature=0.2)(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]), torch.randn(2, 3))
        >>> loss.shape
        torch.Size([])
    """

    def __init__(self, temperature: float = DEFAULT_TEMPERATURE, *, reduction: str = "mean") -> None:
        super().__init__()
        self.temperature = check_positive(temperature, "temperature")
        self.reduction = check_choice(reduction, "reduction", REDUCTIONS)

    def forward(self, features: Tensor, target: Tensor, prototypes: Tensor) -> Tensor:
        return normface(features, target, prototypes, self.temperature, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, reduction={self.reduction!r}"


class NTCELoss(nn.Module):
    """Module form of :func:`ntce`: ``forward(features, target, prototypes)``.

    Example:
        >>> import torch
        >>> loss = NTCELoss()(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]), torch.randn(2, 3))
        >>> bool(loss >= torch.log(torch.tensor(2.0)))  # floor (1/4)(2 log 2 + 2 log 2) = log 2
        True
    """

    def __init__(
        self, temperature: float = DEFAULT_TEMPERATURE, *, reduction: str = "mean", gather: bool = False
    ) -> None:
        super().__init__()
        self.temperature = check_positive(temperature, "temperature")
        self.reduction = check_choice(reduction, "reduction", REDUCTIONS)
        self.gather = bool(gather)

    def forward(self, features: Tensor, target: Tensor, prototypes: Tensor) -> Tensor:
        return ntce(features, target, prototypes, self.temperature, reduction=self.reduction, gather=self.gather)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, reduction={self.reduction!r}, gather={self.gather}"


class NONLLoss(nn.Module):
    """Module form of :func:`nonl`: ``forward(features, target, prototypes)``.

    Example:
        >>> import torch
        >>> crit = NONLLoss(temperature=0.1, anchor="prototype")
        >>> loss = crit(torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2]), torch.randn(3, 4))
        >>> loss.shape
        torch.Size([])
    """

    def __init__(
        self,
        temperature: float = DEFAULT_TEMPERATURE,
        anchor: str = "prototype",
        on_empty: str = "raise",
        *,
        reduction: str = "mean",
        gather: bool = False,
    ) -> None:
        super().__init__()
        self.temperature = check_positive(temperature, "temperature")
        self.anchor = check_choice(anchor, "anchor", NONL_ANCHORS)
        self.on_empty = check_choice(on_empty, "on_empty", ON_EMPTY)
        self.reduction = check_choice(reduction, "reduction", REDUCTIONS)
        self.gather = bool(gather)

    def forward(self, features: Tensor, target: Tensor, prototypes: Tensor) -> Tensor:
        return nonl(
            features,
            target,
            prototypes,
            self.temperature,
            self.anchor,
            self.on_empty,
            reduction=self.reduction,
            gather=self.gather,
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, anchor={self.anchor!r}, on_empty={self.on_empty!r}, "
            f"reduction={self.reduction!r}, gather={self.gather}"
        )


@register_term("normface")
class NormFaceTerm(PrototypeTerm):
    """Objective term ``"normface"``: :func:`normface` on ``output.features`` and ``output.prototypes``."""

    def __init__(self, temperature: float = DEFAULT_TEMPERATURE) -> None:
        super().__init__()
        self.loss = NormFaceLoss(temperature)


@register_term("ntce")
class NTCETerm(PrototypeTerm):
    """Objective term ``"ntce"``: :func:`ntce` on ``output.features`` and ``output.prototypes`` (K×d)."""

    def __init__(self, temperature: float = DEFAULT_TEMPERATURE, gather: bool = False) -> None:
        super().__init__()
        self.loss = NTCELoss(temperature, gather=gather)


@register_term("nonl")
class NONLTerm(PrototypeTerm):
    """Objective term ``"nonl"``: :func:`nonl` on ``output.features`` and ``output.prototypes`` (K×d)."""

    def __init__(
        self,
        temperature: float = DEFAULT_TEMPERATURE,
        anchor: str = "prototype",
        on_empty: str = "raise",
        gather: bool = False,
    ) -> None:
        super().__init__()
        self.loss = NONLLoss(temperature, anchor, on_empty, gather=gather)

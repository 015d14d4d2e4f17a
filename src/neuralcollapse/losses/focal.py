"""Focal-type baselines of the OCCE paper (Katsikas et al., TNNLS 2025, Table 1): focal loss, single-label
asymmetric loss (ASL), cyclical focal loss (CFL) and AdaFocal.

* Focal: Lin, Goyal, Girshick, He, Dollár, "Focal Loss for Dense Object Detection", ICCV 2017, Eq. 4.
* ASL: Ben-Baruch et al., "Asymmetric Loss for Multi-Label Classification", ICCV 2021; single-label form of
  Alibaba-MIIL/ASL (``ASLSingleLabel``).
* CFL: L. N. Smith, "Cyclical Focal Loss", arXiv:2202.08978, 2022 (lnsmith54/CFL, ``Cyclical_FocalLoss``).
* AdaFocal: Ghosh, Schaaf, Gormley, "AdaFocal: Calibration-aware Adaptive Focal Loss", NeurIPS 2022
  (3mcloud/adafocal).

Numerics (docs/methods.md §3): everything in log space. (1 − p)^γ is exp(γ·log(1 − p)) with
log(1 − p_k) = LSE_{j≠k} z_j − LSE_j z_j exact, so the weight and its gradient stay finite even when p_t rounds
to 1 (a power of −expm1(log p_t) = 0 would give 0·∞ gradients for γ < 1); p^γ is exp(γ·log p).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validation import check_positive, check_probability, check_tensor, data_checks_enabled
from ..output import HeadOutput
from ._common import DEFAULT_IGNORE_INDEX, LogitLossModule, check_count, logit_loss
from ._terms import LogitTerm, register_term
from .cross_entropy import _log1m_softmax_at

__all__ = [
    "ASLLoss",
    "AdaFocalLoss",
    "AdaFocalState",
    "CyclicalFocalLoss",
    "FocalLoss",
    "adafocal",
    "asl",
    "cyclical_focal",
    "cyclical_xi",
    "focal",
]

#: Focal γ (Lin et al., ICCV 2017; the class-balancing α is not used).
FOCAL_GAMMA = 2.0
#: Single-label ASL defaults (Alibaba-MIIL/ASL ``ASLSingleLabel``): γ+ = 0, γ− = 4, label smoothing ε = 0.1.
ASL_GAMMA_POS = 0.0
ASL_GAMMA_NEG = 4.0
ASL_EPS = 0.1
#: Cyclical focal loss settings of the CFL paper's runs (the reference class defaults γ_hc = 0 are
#: degenerate): γ_hc = 3, γ+ = 2, γ− = 2, cycle factor f = 4, ε = 0.1.
CFL_GAMMA_HC = 3.0
CFL_GAMMA_POS = 2.0
CFL_GAMMA_NEG = 2.0
CFL_FACTOR = 4.0
CFL_EPS = 0.1
#: AdaFocal defaults (Ghosh et al., NeurIPS 2022, §5 and 3mcloud/adafocal): 15 equal-mass bins, λ = 1,
#: γ_init = 1, γ ∈ [−2, 20], switch point S_th = 0.2.
ADAFOCAL_NUM_BINS = 15
ADAFOCAL_LAMBDA = 1.0
ADAFOCAL_GAMMA_INIT = 1.0
ADAFOCAL_GAMMA_MAX = 20.0
ADAFOCAL_GAMMA_MIN = -2.0
ADAFOCAL_SWITCH = 0.2


def _check_real(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"`{name}` must be a real number; got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"`{name}` must be finite; got {value}")
    return float(value)


def _focal_rows(z: Tensor, t: Tensor, gamma: float | Tensor) -> Tensor:
    """Per-row −w(p_t)·log p_t with w = (1 − p_t)^γ for γ ≥ 0 and (1 + p_t)^{|γ|} for γ < 0 (AdaFocal)."""
    lse = torch.logsumexp(z, dim=1)
    log_pt = z.gather(1, t.unsqueeze(1)).squeeze(1) - lse
    log1m_pt = _log1m_softmax_at(z, t, lse)
    if isinstance(gamma, Tensor):
        gamma = gamma.to(z.dtype)
        # Both branches are finite, so torch.where passes no NaN gradient.
        w = torch.where(gamma >= 0, torch.exp(gamma * log1m_pt), torch.exp(-gamma * torch.log1p(log_pt.exp())))
    else:
        w = torch.exp(gamma * log1m_pt)
    return -w * log_pt


def focal(
    logits: Tensor,
    target: Tensor,
    *,
    gamma: float = FOCAL_GAMMA,
    weight: Tensor | None = None,
    ignore_index: int = DEFAULT_IGNORE_INDEX,
    reduction: str = "mean",
) -> Tensor:
    """Focal loss, −(1 − p_t)^γ·log p_t (Lin et al., ICCV 2017, Eq. 4, without the α balance).

    The modulating factor is exp(γ·log(1 − p_t)) with an exact log(1 − p_t); γ = 0 gives the cross-entropy.

    Args:
        logits: (N, K) or (N, K, d1, ...) floating, finite; K ≥ 2.
        target: integer class indices (or ``ignore_index``).
        gamma: focusing parameter γ ≥ 0; default 2 (Lin et al.).
        weight, ignore_index, reduction: as :func:`~neuralcollapse.losses.cross_entropy`.

    Returns:
        Scalar (or per-sample for ``reduction="none"``), ≥ 0.

    Raises:
        ValueError / TypeError: as :func:`~neuralcollapse.losses.cross_entropy`; negative ``gamma``.

    Example:
        >>> import torch
        >>> round(float(focal(torch.zeros(1, 2), torch.tensor([0]))), 4)  # (1/2)^2 log 2
        0.1733
    """
    gamma = check_positive(gamma, "gamma", strict=False)
    return logit_loss(
        lambda z, t: _focal_rows(z, t, gamma),
        logits,
        target,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
    )


def _check_asymmetric(gamma_pos: Any, gamma_neg: Any, eps: Any) -> tuple[float, float, float]:
    """γ+ ≥ 0, γ− ≥ 0 and the label smoothing ε ∈ [0, 1] of ASL and CFL, validated."""
    return (
        check_positive(gamma_pos, "gamma_pos", strict=False),
        check_positive(gamma_neg, "gamma_neg", strict=False),
        check_probability(eps, "eps"),
    )


def _asymmetric_rows(
    z: Tensor, t: Tensor, *, gamma_pos: float, gamma_neg: float, eps: float, xi: float = 0.0, gamma_hc: float = 0.0
) -> Tensor:
    """−Σ_k t_k·W_k·log p_k with t = (1 − ε)e_y + ε/K and W = (1 − ξ)·w + ξ·h (ASL: ξ = 0).

    w_y = (1 − p_y)^{γ+}, w_k = p_k^{γ−} (k ≠ y); h_y = (1 + p_y)^{γ_hc}, h_k = 1. Weights are not detached.
    """
    num_classes = z.shape[1]
    log_p = F.log_softmax(z, dim=1)
    idx = t.unsqueeze(1)
    log_py = log_p.gather(1, idx)
    w_pos = torch.exp(gamma_pos * _log1m_softmax_at(z, t)).unsqueeze(1)
    w = torch.exp(gamma_neg * log_p).scatter(1, idx, w_pos)
    if xi != 0.0:
        h_pos = torch.exp(gamma_hc * torch.log1p(log_py.exp()))
        h = torch.ones_like(w).scatter(1, idx, h_pos)
        w = (1.0 - xi) * w + xi * h
    weighted = w * log_p
    return -((eps / num_classes) * weighted.sum(dim=1) + (1.0 - eps) * weighted.gather(1, idx).squeeze(1))


def asl(
    logits: Tensor,
    target: Tensor,
    *,
    gamma_pos: float = ASL_GAMMA_POS,
    gamma_neg: float = ASL_GAMMA_NEG,
    eps: float = ASL_EPS,
    weight: Tensor | None = None,
    ignore_index: int = DEFAULT_IGNORE_INDEX,
    reduction: str = "mean",
) -> Tensor:
    """Single-label asymmetric loss (ASL), −Σ_k t_k·w_k·log p_k.

    Ben-Baruch et al., ICCV 2021; single-label form of Alibaba-MIIL/ASL: p = softmax(z),
    w_y = (1 − p_y)^{γ+}, w_k = p_k^{γ−} for k ≠ y, t = (1 − ε)·e_y + ε/K. The weights are **not** detached
    (as in the reference), so they contribute to the gradient.

    Args:
        logits: (N, K) or (N, K, d1, ...) floating, finite; K ≥ 2.
        target: integer class indices (or ``ignore_index``).
        gamma_pos: γ+ ≥ 0 (default 0). gamma_neg: γ− ≥ 0 (default 4). eps: label smoothing ε ∈ [0, 1]
            (default 0.1). Defaults of the reference ``ASLSingleLabel``.
        weight, ignore_index, reduction: as :func:`~neuralcollapse.losses.cross_entropy`.

    Returns:
        Scalar (or per-sample for ``reduction="none"``).

    Raises:
        ValueError / TypeError: as :func:`~neuralcollapse.losses.cross_entropy`; negative γ, ε outside [0, 1].

    Example:
        >>> import torch
        >>> round(float(asl(torch.zeros(1, 2), torch.tensor([0]))), 4)  # 0.95 log 2 + 0.05 (1/16) log 2
        0.6607
    """
    gamma_pos, gamma_neg, eps = _check_asymmetric(gamma_pos, gamma_neg, eps)
    return logit_loss(
        lambda z, t: _asymmetric_rows(z, t, gamma_pos=gamma_pos, gamma_neg=gamma_neg, eps=eps),
        logits,
        target,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
    )


def cyclical_xi(epoch: int, num_epochs: int, factor: float = CFL_FACTOR) -> float:
    """Cyclical focal loss schedule ξ(e) ∈ [0, 1] (Smith 2022; lnsmith54/CFL ``Cyclical_FocalLoss``).

    For the 0-indexed epoch e of E and cycle factor f::

        f·e < E :  ξ = 1 − f·e/(E − 1)
        f = 1   :  ξ = 0
        else    :  ξ = (f·e/(E − 1) − 1)/(f − 1)

    ξ = 1 weights the high-confidence term (1 + p_y)^{γ_hc} alone; ξ = 0 the asymmetric focal weights.

    Args:
        epoch: 0-indexed epoch, 0 ≤ e < E.
        num_epochs: E ≥ 1 (with E = 1, ξ(0) = 1).
        factor: f > 0; default 4 (CFL runs; 2 = one full cycle, 1 = "modified" schedule).

    Returns:
        ξ(e) as a float.

    Raises:
        TypeError: non-integer ``epoch`` / ``num_epochs``. ValueError: out of range.

    Example:
        >>> [round(cyclical_xi(e, 9, factor=4), 3) for e in (0, 1, 2, 3, 8)]
        [1.0, 0.5, 0.0, 0.167, 1.0]
    """
    check_count(epoch, "epoch")
    check_count(num_epochs, "num_epochs", 1)
    if not 0 <= epoch < num_epochs:
        raise ValueError(f"`epoch` must be in [0, num_epochs) = [0, {num_epochs}) (0-indexed); got {epoch}")
    factor = check_positive(factor, "factor")
    if epoch == 0:  # avoids 0/0 when E = 1
        return 1.0
    if factor * epoch < num_epochs:
        return 1.0 - factor * epoch / (num_epochs - 1)
    if factor == 1.0:
        return 0.0
    return (factor * epoch / (num_epochs - 1) - 1.0) / (factor - 1.0)


def cyclical_focal(
    logits: Tensor,
    target: Tensor,
    *,
    epoch: int,
    num_epochs: int,
    gamma_hc: float = CFL_GAMMA_HC,
    gamma_pos: float = CFL_GAMMA_POS,
    gamma_neg: float = CFL_GAMMA_NEG,
    factor: float = CFL_FACTOR,
    eps: float = CFL_EPS,
    weight: Tensor | None = None,
    ignore_index: int = DEFAULT_IGNORE_INDEX,
    reduction: str = "mean",
) -> Tensor:
    """Cyclical focal loss (CFL), −Σ_k t_k·[(1 − ξ)·w_k + ξ·h_k]·log p_k.

    L. N. Smith, "Cyclical Focal Loss", 2022 (lnsmith54/CFL): w as in :func:`asl`
    (w_y = (1 − p_y)^{γ+}, w_k = p_k^{γ−}), h_y = (1 + p_y)^{γ_hc}, h_k = 1 (k ≠ y),
    t = (1 − ε)·e_y + ε/K and ξ = :func:`cyclical_xi` (epoch, num_epochs, factor). Weights not detached.

    Args:
        logits: (N, K) or (N, K, d1, ...) floating, finite; K ≥ 2.
        target: integer class indices (or ``ignore_index``).
        epoch: 0-indexed current epoch e. num_epochs: total epochs E.
        gamma_hc, gamma_pos, gamma_neg: ≥ 0; defaults 3, 2, 2 (CFL paper runs).
        factor: cycle factor f > 0; default 4. eps: label smoothing ε ∈ [0, 1]; default 0.1.
        weight, ignore_index, reduction: as :func:`~neuralcollapse.losses.cross_entropy`.

    Returns:
        Scalar (or per-sample for ``reduction="none"``).

    Raises:
        ValueError / TypeError: as :func:`asl` and :func:`cyclical_xi`.

    Example:
        >>> import torch
        >>> z, y = torch.zeros(1, 2), torch.tensor([0])
        >>> round(float(cyclical_focal(z, y, epoch=0, num_epochs=10)), 4)  # ξ = 1: 0.95 (1.5)^3 log 2 + 0.05 log 2
        2.2571
    """
    xi = cyclical_xi(epoch, num_epochs, factor)
    gamma_hc = check_positive(gamma_hc, "gamma_hc", strict=False)
    gamma_pos, gamma_neg, eps = _check_asymmetric(gamma_pos, gamma_neg, eps)

    def rows(z: Tensor, t: Tensor) -> Tensor:
        return _asymmetric_rows(z, t, gamma_pos=gamma_pos, gamma_neg=gamma_neg, eps=eps, xi=xi, gamma_hc=gamma_hc)

    return logit_loss(rows, logits, target, weight=weight, ignore_index=ignore_index, reduction=reduction)


# --------------------------------------------------------------------------------------------------------
# AdaFocal
# --------------------------------------------------------------------------------------------------------


def _equal_mass_edges(values: Tensor, num_bins: int) -> Tensor:
    """Bin edges holding equal numbers of samples: ``np.interp(linspace(0, n, B+1), arange(n), sort(x))``
    (torrvision/focal_calibration ``histedges_equalN``, as used by AdaFocal), in float64."""
    x = torch.sort(values.to(torch.float64)).values
    n = x.shape[0]
    pos = torch.linspace(0, n, num_bins + 1, dtype=torch.float64, device=x.device).clamp(max=n - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=n - 1)
    return x[lo] + (pos - lo.to(torch.float64)) * (x[hi] - x[lo])


class AdaFocalState(nn.Module):
    """The γ-per-bin state of AdaFocal and its calibration-driven update (Ghosh et al., NeurIPS 2022).

    Bins partition the confidence axis; a training sample uses the γ of the bin its true-class probability p_t
    falls in. After each epoch, :meth:`update` receives the top-1 confidences and correctness on a held-out
    split (the reference holds out 10 % of the training set), recomputes equal-mass bin edges from them, and
    for each bin b with mean confidence C_b and accuracy A_b (gap 0 for an empty bin)::

        γ_b ← γ_b·exp(+λ(C_b − A_b))   if γ_b > 0,   γ_b·exp(−λ(C_b − A_b))   otherwise
        |γ_b| < S_th  →  γ_b ← −S_th if γ_b > 0 else +S_th          (switch focal ↔ inverse focal)
        γ_b ← clip(γ_b, γ_min, γ_max)

    Before the first update the bins are equal-width on [0, 1]. Bin lookup: b = #{interior edges ≤ p}
    (the reference's ``lower ≤ p < upper``, first bin open below, last bin open above); the same rule bins
    the held-out samples (the reference counts them in (lower, upper], which drops the lowest sample).

    Args:
        num_bins: number of bins B (default 15).
        lam: λ > 0 (default 1). gamma_init: initial γ (default 1). gamma_max / gamma_min: clip range
            (default 20 / −2). switch: S_th ≥ 0 (default 0.2).

    Example:
        >>> import torch
        >>> st = AdaFocalState(num_bins=2)
        >>> # edges [0.2, 0.6, 0.8]; bin 0: C = 0.3, A = 0.5; bin 1: C = 0.7, A = 1 (both under-confident)
        >>> st.update(torch.tensor([0.2, 0.4, 0.6, 0.8]), torch.tensor([True, False, True, True]))
        >>> [round(g, 4) for g in st.gammas.tolist()]  # 1·exp(−0.2), 1·exp(−0.3)
        [0.8187, 0.7408]
    """

    gammas: Tensor
    edges: Tensor

    def __init__(
        self,
        num_bins: int = ADAFOCAL_NUM_BINS,
        *,
        lam: float = ADAFOCAL_LAMBDA,
        gamma_init: float = ADAFOCAL_GAMMA_INIT,
        gamma_max: float = ADAFOCAL_GAMMA_MAX,
        gamma_min: float = ADAFOCAL_GAMMA_MIN,
        switch: float = ADAFOCAL_SWITCH,
    ) -> None:
        super().__init__()
        if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 1:
            raise ValueError(f"`num_bins` must be an int >= 1; got {num_bins!r}")
        self.num_bins = num_bins
        self.lam = check_positive(lam, "lam")
        self.gamma_max = _check_real(gamma_max, "gamma_max")
        self.gamma_min = _check_real(gamma_min, "gamma_min")
        gamma_init = _check_real(gamma_init, "gamma_init")
        if not self.gamma_min <= gamma_init <= self.gamma_max:
            raise ValueError(
                f"`gamma_init` must lie in [gamma_min, gamma_max] = [{self.gamma_min}, {self.gamma_max}]; "
                f"got {gamma_init}"
            )
        self.switch = check_positive(switch, "switch", strict=False)
        self.register_buffer("gammas", torch.full((num_bins,), gamma_init, dtype=torch.float64))
        self.register_buffer("edges", torch.linspace(0.0, 1.0, num_bins + 1, dtype=torch.float64))

    def bin_of(self, confidence: Tensor) -> Tensor:
        """Bin index (long, same shape) of each confidence value."""
        inner = self.edges[1:-1].to(confidence.device)
        return torch.bucketize(confidence.detach().to(torch.float64), inner, right=True)

    def gamma_for(self, confidence: Tensor) -> Tensor:
        """γ (float64) of the bin of each confidence value."""
        return self.gammas.to(confidence.device)[self.bin_of(confidence)]

    @torch.no_grad()
    def update(self, confidences: Tensor, correct: Tensor) -> None:
        """One AdaFocal γ update from held-out top-1 ``confidences`` (n,) in [0, 1] and ``correct`` (n,)."""
        check_tensor(confidences, "confidences", ndim=1, floating=True, finite=True)
        check_tensor(correct, "correct", ndim=1)
        if correct.shape != confidences.shape:
            raise ValueError(
                f"`correct` must have the shape of `confidences` {tuple(confidences.shape)}; "
                f"got {tuple(correct.shape)}"
            )
        if correct.is_floating_point() or correct.is_complex():
            raise TypeError(f"`correct` must be a bool or integer tensor; got dtype {correct.dtype}")
        if data_checks_enabled() and bool(((confidences < 0) | (confidences > 1)).any()):
            raise ValueError("`confidences` must be probabilities in [0, 1]")
        conf = confidences.detach().to(torch.float64).to(self.edges.device)
        acc = correct.detach().to(torch.float64).to(self.edges.device)
        self.edges.copy_(_equal_mass_edges(conf, self.num_bins))
        bins = self.bin_of(conf)
        count = torch.bincount(bins, minlength=self.num_bins).to(torch.float64)
        conf_sum = torch.bincount(bins, weights=conf, minlength=self.num_bins)
        acc_sum = torch.bincount(bins, weights=acc, minlength=self.num_bins)
        gap = torch.where(count > 0, (conf_sum - acc_sum) / count.clamp_min(1.0), torch.zeros_like(count))
        g = self.gammas
        new = torch.where(g > 0, g * torch.exp(self.lam * gap), g * torch.exp(-self.lam * gap))
        flipped = torch.where(new > 0, torch.full_like(new, -self.switch), torch.full_like(new, self.switch))
        new = torch.where(new.abs() < self.switch, flipped, new)
        self.gammas.copy_(new.clamp(self.gamma_min, self.gamma_max))

    def extra_repr(self) -> str:
        return f"num_bins={self.num_bins}, lam={self.lam}, switch={self.switch}"


def adafocal(
    logits: Tensor,
    target: Tensor,
    state: AdaFocalState | None = None,
    *,
    weight: Tensor | None = None,
    ignore_index: int = DEFAULT_IGNORE_INDEX,
    reduction: str = "mean",
) -> Tensor:
    """AdaFocal loss with the per-bin γ of ``state`` (Ghosh, Schaaf, Gormley, NeurIPS 2022, Eq. 9).

    Each sample takes γ = γ_b of the bin of its (detached) p_t; γ_b > 0: −(1 − p_t)^{γ_b}·log p_t (focal),
    γ_b < 0: −(1 + p_t)^{|γ_b|}·log p_t (inverse focal), γ_b = 0: cross-entropy. The reference sums over the
    batch; the default here is the mean (``reduction="sum"`` reproduces the reference's scale).

    Args:
        logits: (N, K) or (N, K, d1, ...) floating, finite; K ≥ 2.
        target: integer class indices (or ``ignore_index``).
        state: :class:`AdaFocalState` holding γ per bin (None: a fresh default state, γ = 1 everywhere).
        weight, ignore_index, reduction: as :func:`~neuralcollapse.losses.cross_entropy`.

    Returns:
        Scalar (or per-sample for ``reduction="none"``).

    Raises:
        ValueError / TypeError: as :func:`~neuralcollapse.losses.cross_entropy`; ``state`` of the wrong type.

    Example:
        >>> import torch
        >>> round(float(adafocal(torch.zeros(1, 2), torch.tensor([0]))), 4)  # γ = 1: (1/2) log 2
        0.3466
    """
    if state is None:
        state = AdaFocalState()
    elif not isinstance(state, AdaFocalState):
        raise TypeError(f"`state` must be an AdaFocalState; got {type(state).__name__}")

    def rows(z: Tensor, t: Tensor) -> Tensor:
        with torch.no_grad():
            p_t = torch.softmax(z, dim=1).gather(1, t.unsqueeze(1)).squeeze(1)
        return _focal_rows(z, t, state.gamma_for(p_t))

    return logit_loss(rows, logits, target, weight=weight, ignore_index=ignore_index, reduction=reduction)


# --------------------------------------------------------------------------------------------------------
# modules and objective terms
# --------------------------------------------------------------------------------------------------------


class _FocalOptions:
    """γ of the focal loss, shared by :class:`FocalLoss` and the ``"focal"`` term."""

    loss_fn = staticmethod(focal)
    hyperparameters = ("gamma",)

    def __init__(self, gamma: float = FOCAL_GAMMA, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gamma = check_positive(gamma, "gamma", strict=False)


class _ASLOptions:
    """γ+, γ− and ε of single-label ASL, shared by :class:`ASLLoss` and the ``"asl"`` term."""

    loss_fn = staticmethod(asl)
    hyperparameters = ("gamma_pos", "gamma_neg", "eps")

    def __init__(
        self,
        gamma_pos: float = ASL_GAMMA_POS,
        gamma_neg: float = ASL_GAMMA_NEG,
        eps: float = ASL_EPS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.gamma_pos, self.gamma_neg, self.eps = _check_asymmetric(gamma_pos, gamma_neg, eps)


class _CyclicalOptions:
    """Hyperparameters of the cyclical focal loss, shared by :class:`CyclicalFocalLoss` and the ``"cfl"`` term."""

    loss_fn = staticmethod(cyclical_focal)
    hyperparameters = ("gamma_hc", "gamma_pos", "gamma_neg", "factor", "eps")

    def __init__(
        self,
        gamma_hc: float = CFL_GAMMA_HC,
        gamma_pos: float = CFL_GAMMA_POS,
        gamma_neg: float = CFL_GAMMA_NEG,
        factor: float = CFL_FACTOR,
        eps: float = CFL_EPS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.gamma_hc = check_positive(gamma_hc, "gamma_hc", strict=False)
        self.factor = check_positive(factor, "factor")
        self.gamma_pos, self.gamma_neg, self.eps = _check_asymmetric(gamma_pos, gamma_neg, eps)


class _AdaFocalOptions:
    """The :class:`AdaFocalState` (``self.state``) owned by :class:`AdaFocalLoss` and the ``"adafocal"`` term."""

    loss_fn = staticmethod(adafocal)
    hyperparameters = ("state",)

    def __init__(
        self,
        num_bins: int = ADAFOCAL_NUM_BINS,
        *,
        lam: float = ADAFOCAL_LAMBDA,
        gamma_init: float = ADAFOCAL_GAMMA_INIT,
        gamma_max: float = ADAFOCAL_GAMMA_MAX,
        gamma_min: float = ADAFOCAL_GAMMA_MIN,
        switch: float = ADAFOCAL_SWITCH,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.state = AdaFocalState(
            num_bins, lam=lam, gamma_init=gamma_init, gamma_max=gamma_max, gamma_min=gamma_min, switch=switch
        )


class FocalLoss(_FocalOptions, LogitLossModule):
    """Module form of :func:`focal` (γ = 2).

    Example:
        >>> import torch
        >>> round(float(FocalLoss()(torch.zeros(1, 2), torch.tensor([0]))), 4)
        0.1733
    """


class ASLLoss(_ASLOptions, LogitLossModule):
    """Module form of :func:`asl` (γ+ = 0, γ− = 4, ε = 0.1).

    Example:
        >>> import torch
        >>> round(float(ASLLoss()(torch.zeros(1, 2), torch.tensor([0]))), 4)
        0.6607
    """


class CyclicalFocalLoss(_CyclicalOptions, LogitLossModule):
    """Module form of :func:`cyclical_focal`; ``forward(logits, target, epoch, num_epochs)``.

    Example:
        >>> import torch
        >>> loss = CyclicalFocalLoss()(torch.zeros(1, 2), torch.tensor([0]), epoch=0, num_epochs=10)
        >>> round(float(loss), 4)
        2.2571
    """

    def forward(self, logits: Tensor, target: Tensor, epoch: int, num_epochs: int) -> Tensor:
        return self._loss(logits, target, epoch=epoch, num_epochs=num_epochs)


class AdaFocalLoss(_AdaFocalOptions, LogitLossModule):
    """Module form of :func:`adafocal` owning its :class:`AdaFocalState` (``self.state``; call
    ``self.state.update(confidences, correct)`` once per epoch on held-out data).

    Example:
        >>> import torch
        >>> round(float(AdaFocalLoss()(torch.zeros(1, 2), torch.tensor([0]))), 4)
        0.3466
    """


@register_term("focal", aliases=("fl",))
class FocalTerm(_FocalOptions, LogitTerm):
    """Objective term ``"focal"`` (alias ``"fl"``): :func:`focal`, γ = 2 by default."""


@register_term("asl")
class ASLTerm(_ASLOptions, LogitTerm):
    """Objective term ``"asl"``: single-label :func:`asl` (γ+ = 0, γ− = 4, ε = 0.1)."""


@register_term("cfl")
class CyclicalFocalTerm(_CyclicalOptions, LogitTerm):
    """Objective term ``"cfl"``: :func:`cyclical_focal`; reads the context keys ``epoch`` (0-indexed) and
    ``num_epochs`` (both required)."""

    context_keys = ("epoch", "num_epochs")

    def compute(
        self, output: HeadOutput, target: Tensor, epoch: int | None = None, num_epochs: int | None = None
    ) -> Tensor:
        if epoch is None or num_epochs is None:
            raise ValueError(
                "loss term 'cfl' needs the context keys `epoch` (0-indexed) and `num_epochs`; pass them to the "
                "objective, e.g. objective(output, target, epoch=e, num_epochs=E)"
            )
        return self._loss(output.logits, target, epoch=epoch, num_epochs=num_epochs)


@register_term("adafocal", aliases=("adafl",))
class AdaFocalTerm(_AdaFocalOptions, LogitTerm):
    """Objective term ``"adafocal"`` (alias ``"adafl"``): :func:`adafocal` with its own :class:`AdaFocalState`
    (``term.state``, saved in the objective's ``state_dict``). The training loop calls
    ``term.state.update(confidences, correct)`` after each epoch on the held-out split."""

"""Supervised contrastive loss (SupCon).

Source: P. Khosla, P. Teterwak, C. Wang, A. Sarna, Y. Tian, P. Isola, A. Maschinot, C. Liu, D. Krishnan,
"Supervised Contrastive Learning", NeurIPS 2020, Eq. 2 (L^sup_out); reference HobbitLong/SupContrast
(``losses.py``, ``contrast_mode="all"``) and its copy in pakoromilas/nc_by_design (docs/methods.md §4.4, §5).

Uses in this package: phase 1 of SCL with fixed class-mean prototypes (two views, τ = 0.07 on CIFAR, no
τ/τ_base factor) and the LPC paper's LPC-SCL / SCL variants (Sbailò & Ghiringhelli; luigisbailo/lpc): a
single-view batch SupCon on the backbone features with **τ = 0.05**, added to cross-entropy — build it with
``Objective("ce+supcon", term_kwargs={"supcon": {"temperature": 0.05}})``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .._validation import check_matrix, check_positive, check_tensor
from ..output import HeadOutput
from ._common import reduce_loss
from ._features import autocast_off, check_labels_1d, unit_rows, working_dtype
from ._terms import LossTerm, register_term

__all__ = ["SupConLoss", "flatten_views", "supcon"]

#: τ of the SupCon paper (Khosla et al. 2020); SupContrast's code default is 0.07, LPC-SCL uses 0.05.
DEFAULT_TEMPERATURE = 0.1


def flatten_views(features: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Turn multi-view features (N, V, d) into (V·N, d) rows with the labels repeated (SupContrast's "all").

    The rows are ordered view-major — all first views, then all second views — as SupContrast's
    ``torch.cat(torch.unbind(features, dim=1))``; ``target`` is repeated V times to match.

    Args:
        features: (N, V, d) V views of each of N samples (V = 2 in the SupCon recipe).
        target: (N,) integer labels.

    Returns:
        ``(features (V·N, d), target (V·N,))``; the inputs are not modified.

    Raises:
        ValueError: ``features`` not 3-D or empty, or ``target`` of the wrong length.
        TypeError: non-tensor input, non-floating ``features``, non-integer ``target``.

    Example:
        >>> import torch
        >>> f, t = flatten_views(torch.randn(4, 2, 8), torch.tensor([0, 1, 0, 1]))
        >>> tuple(f.shape), t.tolist()
        ((8, 8), [0, 1, 0, 1, 0, 1, 0, 1])
    """
    check_tensor(features, "features", ndim=3, floating=True)
    check_labels_1d(target, int(features.shape[0]))
    num_views = int(features.shape[1])
    return features.transpose(0, 1).reshape(-1, features.shape[2]), target.repeat(num_views)


def supcon(
    features: Tensor,
    target: Tensor,
    temperature: float = DEFAULT_TEMPERATURE,
    base_temperature: float | None = None,
    *,
    normalize: bool = True,
    return_count: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Supervised contrastive loss over a batch in which every row is a view.

    For anchor i, A(i) = all other rows and P(i) = the rows of A(i) with label y_i (Khosla et al., NeurIPS
    2020, Eq. 2):

        ℓ_i = −(1/|P(i)|)·Σ_{p∈P(i)} [z_iᵀz_p/τ − LSE_{a∈A(i)}(z_iᵀz_a/τ)],

    multiplied by τ/τ_base when ``base_temperature`` is given (SupContrast's factor). The loss is the mean over
    the anchors with |P(i)| > 0; anchors without a positive are excluded and counted (a zero attached to the
    graph when no anchor has a positive).

    Args:
        features: (N, d) rows z_i, each one view; or (N, V, d) multi-view input, flattened with
            :func:`flatten_views` (labels repeated per view; SupContrast ``contrast_mode="all"``).
        target: (N,) integer labels; rows with equal labels are positives of each other.
        temperature: τ > 0; default 0.1 (paper). SupContrast uses 0.07, LPC-SCL 0.05 (single view).
        base_temperature: τ_base of SupContrast's τ/τ_base factor; default None = no factor (as nc_by_design).
        normalize: L2-normalise the rows first (default True; the paper's z are unit vectors, and the LPC
            reference normalises the backbone features before its single-view SupCon).
        return_count: also return the number of excluded anchors (those without a positive).

    Returns:
        The scalar loss (at least float32), or ``(loss, num_excluded)`` with ``num_excluded`` a 0-dim int64
        tensor (no device synchronisation) when ``return_count``.

    Raises:
        ValueError: wrong shapes, empty batch, NaN/Inf, τ ≤ 0 or τ_base ≤ 0.
        TypeError: non-tensor input, non-floating ``features``, non-integer ``target``.

    Example:
        >>> import torch
        >>> z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        >>> loss, excluded = supcon(z, torch.tensor([0, 0, 1]), temperature=1.0, return_count=True)
        >>> int(excluded)  # the single sample of class 1 has no positive
        1
        >>> round(float(loss), 4)  # −[1 − log(e^1 + e^0)] for each of the two anchors of class 0
        0.3133
    """
    tau = check_positive(temperature, "temperature")
    factor = 1.0
    if base_temperature is not None:
        factor = tau / check_positive(base_temperature, "base_temperature")
    check_tensor(features, "features", ndim=(2, 3), floating=True)
    if features.ndim == 3:
        features, target = flatten_views(features, target)
    check_matrix(features, "features")
    check_labels_1d(target, int(features.shape[0]))

    dtype = working_dtype(features)
    z = unit_rows(features, dtype) if normalize else features.to(dtype)
    n = z.shape[0]
    with autocast_off(z.device):
        logits = z @ z.T / tau
        self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
        positives = (target[:, None] == target[None, :]) & ~self_mask
        num_pos = positives.sum(dim=1)
        # A one-row batch has an empty A(i): take the LSE over zeros (finite gradient); the row is excluded.
        masked = logits.masked_fill(self_mask, float("-inf")) if n > 1 else torch.zeros_like(logits)
        log_partition = torch.logsumexp(masked, dim=1)
        mean_pos = (logits * positives).sum(dim=1) / num_pos.clamp_min(1)
        per_anchor = factor * (log_partition - mean_pos)
        valid = num_pos > 0
        loss = reduce_loss(per_anchor, "mean", valid=valid)
    if return_count:
        return loss, (~valid).sum()
    return loss


class SupConLoss(nn.Module):
    """Module form of :func:`supcon`: ``forward(features, target, return_count=False)``.

    Example:
        >>> import torch
        >>> crit = SupConLoss(temperature=0.07)
        >>> loss = crit(torch.randn(8, 2, 16), torch.randint(0, 3, (8,)))  # two views per sample
        >>> loss.shape
        torch.Size([])
    """

    def __init__(
        self,
        temperature: float = DEFAULT_TEMPERATURE,
        base_temperature: float | None = None,
        *,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        self.temperature = check_positive(temperature, "temperature")
        self.base_temperature = (
            None if base_temperature is None else check_positive(base_temperature, "base_temperature")
        )
        self.normalize = bool(normalize)

    def forward(self, features: Tensor, target: Tensor, return_count: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        return supcon(
            features,
            target,
            self.temperature,
            self.base_temperature,
            normalize=self.normalize,
            return_count=return_count,
        )

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, base_temperature={self.base_temperature}, normalize={self.normalize}"


@register_term("supcon")
class SupConTerm(LossTerm):
    """Objective term ``"supcon"``: single-view :func:`supcon` on ``output.features`` (every row a view).

    LPC-SCL (Sbailò & Ghiringhelli) uses ``temperature=0.05`` with CE: ``term_kwargs={"supcon":
    {"temperature": 0.05}}``.
    """

    needs = ("features",)

    def __init__(
        self,
        temperature: float = DEFAULT_TEMPERATURE,
        base_temperature: float | None = None,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        self.loss = SupConLoss(temperature, base_temperature, normalize=normalize)

    def compute(self, output: HeadOutput, target: Tensor, **context: Any) -> Tensor:
        return self.loss(output.features, target)

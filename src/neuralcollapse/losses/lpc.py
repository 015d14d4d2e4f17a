"""Latent point collapse (LPC) penalty on the linear penultimate layer.

Source: L. Sbailò, L. M. Ghiringhelli, "Latent Point Collapse on a Low Dimensional Embedding in Deep Neural
Network Classifiers" (arXiv 2310.08224); reference luigisbailo/lpc (``trainer.py``: ``F.mse_loss(h, 0) · γ``).
The objective is L = CE + γ·P(h) with γ growing over training (:class:`neuralcollapse.schedules.GammaSchedule`),
e.g. ``Objective.parse("ce+0.01*lpc")`` with the weight set per epoch (docs/methods.md §6.1–6.2).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from .._validation import check_choice, check_matrix
from ..output import HeadOutput
from ._common import REDUCTIONS, reduce_loss
from ._features import working_dtype
from ._terms import LossTerm, register_term

__all__ = ["LPCPenalty", "lpc_penalty"]


def lpc_penalty(latent: Tensor, *, reduction: str = "mean") -> Tensor:
    """Squared L2 norm of the latent code, averaged over the batch **and the dimensions** (code convention).

    P(h) = (1/(N·d))·Σ_i ‖h_i‖² = mean over all entries of h² — the reference's ``mse_loss(h, 0)``
    (luigisbailo/lpc). The paper writes γ·‖h‖² per sample, so γ_paper = γ_code/d; every γ of this package
    (schedules, recipes) is in the code convention.

    Args:
        latent: (N, d) penultimate activations h (LPC: the linear bottleneck's output; LPC-NoPen: the backbone
            output).
        reduction: "mean" (default, P above), "sum" (Σ_i ‖h_i‖²/d) or "none" ((N,) values ‖h_i‖²/d).

    Returns:
        Scalar (or (N,)) penalty, at least float32 (half inputs are upcast, so large activations do not
        overflow in fp16).

    Raises:
        ValueError: ``latent`` not 2-D, empty, or with NaN/Inf; unknown ``reduction``.
        TypeError: non-tensor or non-floating ``latent``.

    Example:
        >>> import torch
        >>> float(lpc_penalty(torch.tensor([[1.0, 2.0], [3.0, 0.0]])))  # (1 + 4 + 9 + 0) / (2·2)
        3.5
    """
    check_choice(reduction, "reduction", REDUCTIONS)
    check_matrix(latent, "latent")
    h = latent.to(working_dtype(latent))
    return reduce_loss(h.square().mean(dim=1), reduction)


class LPCPenalty(nn.Module):
    """Module form of :func:`lpc_penalty`: ``forward(latent)``.

    Example:
        >>> import torch
        >>> float(LPCPenalty()(torch.ones(3, 4)))
        1.0
    """

    def __init__(self, *, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = check_choice(reduction, "reduction", REDUCTIONS)

    def forward(self, latent: Tensor) -> Tensor:
        return lpc_penalty(latent, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


@register_term("lpc")
class LPCTerm(LossTerm):
    """Objective term ``"lpc"``: :func:`lpc_penalty` on ``output.latent``, or on ``output.features`` when the
    head has no bottleneck (``latent`` is None: LPC-NoPen penalises the backbone output). Its weight in the
    objective is γ (code convention)."""

    needs = ("features",)

    def __init__(self) -> None:
        super().__init__()
        self.loss = LPCPenalty()

    def compute(self, output: HeadOutput, target: Tensor, **context: Any) -> Tensor:
        return self.loss(output.latent if output.latent is not None else output.features)

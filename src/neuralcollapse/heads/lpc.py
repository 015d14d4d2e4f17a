"""Latent point collapse (LPC) bottleneck head: a linear low-dimensional penultimate layer and a classifier.

L. Sbailò, L. M. Ghiringhelli, "Latent Point Collapse on a Low Dimensional Embedding in Deep Neural Network
Classifiers", arXiv 2310.08224 (reference luigisbailo/lpc); docs/methods.md §6.1. Train with
``Objective.parse("ce+<γ>*lpc")``: the ``lpc`` term penalises ``output.latent`` (γ·(1/(N·d))Σ‖h‖²).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validation import check_choice
from ..output import HeadOutput
from ._base import HEADS, Head, check_int, reset_linear_

__all__ = ["LPC_WIDTHS", "LPCBottleneckHead", "lpc_latent_dim"]

#: Paper widths of the linear penultimate layer (docs/methods.md §6.1) per data set and variant. The reference's
#: current configs use 64 / 32 / 128 (CIFAR-10) and 64 (CIFAR-100); older versions 8 / 4 / 512 and 64 / 8 / 2048.
LPC_WIDTHS: dict[str, dict[str, int]] = {
    "cifar10": {"narrow": 16, "intermediate": 64, "wide": 128},
    "cifar100": {"narrow": 32, "intermediate": 128, "wide": 256},
}
#: Default width: the paper's intermediate width for CIFAR-10 (use ``lpc_latent_dim`` for others).
DEFAULT_LATENT_DIM = LPC_WIDTHS["cifar10"]["intermediate"]


def lpc_latent_dim(dataset: str, width: str = "intermediate") -> int:
    """The paper's penultimate width for ``dataset`` ("cifar10" or "cifar100") and variant ``width`` ("narrow",
    "intermediate" = LPC, "wide"); docs/methods.md §6.1 / paper Table 3 (LPC-Narrow, LPC, LPC-Wide).

    Example:
        >>> lpc_latent_dim("cifar100", "wide")
        256
    """
    check_choice(dataset, "dataset", tuple(LPC_WIDTHS))
    check_choice(width, "width", tuple(LPC_WIDTHS[dataset]))
    return LPC_WIDTHS[dataset][width]


@HEADS.register("lpc")
class LPCBottleneckHead(Head):
    """Linear bottleneck h = Aφ + a (no activation, no BN) of width ``latent_dim``, then z = Wh (+ b).

    Sbailò & Ghiringhelli (arXiv 2310.08224, §2): the penalty on h (``lpc`` loss term) collapses each class to
    a point of a low-dimensional linear embedding. The paper zeroes the classifier bias (``bias=False``,
    default); the reference keeps it (``bias=True``). Widths: :data:`LPC_WIDTHS` — intermediate 64 / 128,
    narrow 16 / 32, wide 128 / 256 for CIFAR-10 / CIFAR-100 (:func:`lpc_latent_dim`); always record the width.
    The LPC-NoPen variant has no bottleneck (use the "linear" head and penalise the backbone features).

    Args:
        in_features: width of the backbone features φ.
        num_classes: number of classes K (≥ 2).
        latent_dim: width d of h (default 64, the CIFAR-10 intermediate width).
        bias: classifier bias b (default False, as in the paper).
        latent_bias: bias a of the bottleneck (default True; the paper's linear layer is affine).

    Attributes:
        bottleneck: ``nn.Linear(in_features, latent_dim)`` (A, a); scheduled with the backbone in the paper.
        weight: (K, latent_dim) classifier W (kept at a constant learning rate in the reference).
        bias: (K,) classifier b or None.

    Returns (forward):
        ``HeadOutput(logits=z, features=h, latent=h, prototypes=W)``.

    Raises:
        ValueError: ``latent_dim`` < 1; bad ``h``; K < 2.

    Example:
        >>> import torch
        >>> head = LPCBottleneckHead(512, 100, latent_dim=lpc_latent_dim("cifar100"))
        >>> out = head(torch.randn(4, 512))
        >>> out.latent.shape, out.logits.shape
        (torch.Size([4, 128]), torch.Size([4, 100]))
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        latent_dim: int = DEFAULT_LATENT_DIM,
        bias: bool = False,
        latent_bias: bool = True,
    ) -> None:
        super().__init__(in_features, num_classes)
        self.latent_dim = check_int(latent_dim, "latent_dim", minimum=1)
        self.bottleneck = nn.Linear(self.in_features, self.latent_dim, bias=latent_bias)
        self.weight = nn.Parameter(torch.empty(self.num_classes, self.latent_dim))
        self.register_parameter("bias", nn.Parameter(torch.empty(self.num_classes)) if bias else None)
        reset_linear_(self.weight, self.bias)

    def classifier_parameters(self) -> list[nn.Parameter]:
        """The classifier's parameters (W and b), for a separate optimiser group."""
        return [p for p in (self.weight, self.bias) if p is not None]

    def forward(self, h: Tensor) -> HeadOutput:
        h = self._check_features(h)
        latent = self.bottleneck(h)
        logits = F.linear(latent, self.weight, self.bias)
        return HeadOutput(logits=logits, features=latent, latent=latent, prototypes=self.weight)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, latent_dim={self.latent_dim}, bias={self.bias is not None}"

"""Linear classifier head: z = W h + b (the standard softmax classifier of every CE baseline)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..output import HeadOutput
from ._base import HEADS, Head, reset_linear_

__all__ = ["LinearHead"]


@HEADS.register("linear")
class LinearHead(Head):
    """Affine classifier z = W h + b.

    The usual last layer of a softmax classifier (e.g. Papyan, Han & Donoho, "Prevalence of neural collapse
    during the terminal phase of deep learning training", PNAS 2020, whose W and b the NC metrics read).
    Parameters are initialised as in ``nn.Linear``.

    Args:
        in_features: width d of the features h.
        num_classes: number of classes K (≥ 2).
        bias: learn the bias b (default True).

    Attributes:
        weight: (K, d) parameter W.
        bias: (K,) parameter b, or None.

    Returns (forward):
        ``HeadOutput(logits=z, features=h, prototypes=W)``; ``h`` is returned as given (the identical tensor).

    Raises:
        ValueError: ``h`` is not a finite (N, d) floating tensor; ``num_classes`` < 2; ``in_features`` < 1.
        TypeError: ``h``'s dtype differs from the weight's outside autocast (as ``nn.Linear``, but naming both
            dtypes; no silent cast): cast the head (``head.double()``) or the features.

    Example:
        >>> import torch
        >>> head = LinearHead(8, 3)
        >>> head(torch.randn(5, 8)).logits.shape
        torch.Size([5, 3])
    """

    def __init__(self, in_features: int, num_classes: int, *, bias: bool = True) -> None:
        super().__init__(in_features, num_classes)
        self.weight = nn.Parameter(torch.empty(self.num_classes, self.in_features))
        self.register_parameter("bias", nn.Parameter(torch.empty(self.num_classes)) if bias else None)
        reset_linear_(self.weight, self.bias)

    def forward(self, h: Tensor) -> HeadOutput:
        h = self._check_features(h, like=self.weight)
        logits = nn.functional.linear(h, self.weight, self.bias)
        return HeadOutput(logits=logits, features=h, prototypes=self.weight)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, bias={self.bias is not None}"

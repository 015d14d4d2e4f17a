"""Decoupled dual head: a CE classifier and an independent anti-class classifier on one backbone.

D. Katsikas, N. Passalis, A. Tefas, "Inducing Neural Collapse via Anticlasses and One-Cold Cross-Entropy Loss",
IEEE TNNLS 2025 (ICLR 2025 submission numbering: §3.3, Fig. 8); docs/methods.md §2.5. Trained with
``Objective.parse("ce+occe")``: the ``occe`` term reads ``anti_logits`` when present (CE(z, y) + γ·occe(−z̄, y)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validation import check_choice, check_tensor
from ..output import HeadOutput
from ._base import HEADS, Head, reset_linear_, working_dtype

__all__ = ["DUAL_PREDICTIONS", "DualHead", "dual_head_probabilities", "dual_head_scores"]

#: The three predictions of the dual head (docs/methods.md §2.5); each has a (prediction, MSP-style score) pair.
DUAL_PREDICTIONS: tuple[str, ...] = ("ce", "occe", "combined")
#: Default prediction of :class:`DualHead` (the CE head, as in the paper's main tables).
DEFAULT_PREDICT = "ce"


def _check_pair(logits: Tensor, anti_logits: Tensor) -> None:
    check_tensor(logits, "logits", ndim=2, floating=True, finite=True)
    check_tensor(anti_logits, "anti_logits", ndim=2, floating=True, finite=True)
    if logits.shape != anti_logits.shape:
        raise ValueError(
            f"`anti_logits` must have the shape of `logits` {tuple(logits.shape)}; got {tuple(anti_logits.shape)}"
        )
    if logits.shape[1] < 2:
        raise ValueError(f"`logits` must have at least 2 classes along dim 1; got K={logits.shape[1]}")


def dual_head_probabilities(logits: Tensor, anti_logits: Tensor) -> dict[str, Tensor]:
    """The three class-score matrices of the dual head (OCCE paper §3.3; docs/methods.md §2.5).

    With z the CE-head logits, z̄ the anti-class head's raw output and q = softmax(z̄):

    - ``"ce_probs"`` = softmax(z);
    - ``"occe_probs"`` = softmax(−z̄) (the paper reads class activations as negated anti-class activations);
    - ``"combined"`` = softmax(z) − q / max_j q_j, entries in [−1, 1) (a row maximum can round to 1 when
      softmax(z) saturates, logit gaps ≳ 37 in float64). q / max q is computed as exp(z̄ − max z̄), equal to it
      and free of the softmax normaliser.

    Half/bfloat16 inputs are computed in float32; results keep the computation dtype and are differentiable.

    Args:
        logits: (N, K) CE-head logits z.
        anti_logits: (N, K) anti-class head outputs z̄.

    Returns:
        dict with the three (N, K) tensors.

    Raises:
        ValueError: shapes differ, not 2-D, K < 2, or NaN/Inf values.
        TypeError: non-floating tensors.

    Example:
        >>> import torch
        >>> p = dual_head_probabilities(torch.zeros(1, 3), torch.tensor([[0.0, 0.0, 1.0]]))
        >>> [round(v, 4) for v in p["combined"][0].tolist()]
        [-0.0345, -0.0345, -0.6667]
    """
    _check_pair(logits, anti_logits)
    z = working_dtype(logits)
    anti = working_dtype(anti_logits)
    ce_probs = F.softmax(z, dim=1)
    occe_probs = F.softmax(-anti, dim=1)
    q_over_max = torch.exp(anti - anti.amax(dim=1, keepdim=True))
    return {"ce_probs": ce_probs, "occe_probs": occe_probs, "combined": ce_probs - q_over_max}


def dual_head_scores(logits: Tensor, anti_logits: Tensor, kind: str = DEFAULT_PREDICT) -> tuple[Tensor, Tensor]:
    """Prediction and MSP-style confidence of one of the dual head's three read-outs (docs/methods.md §2.5).

    - ``"ce"``: class argmax z, score max softmax(z) (MSP).
    - ``"occe"``: class argmax softmax(−z̄) = argmin z̄, score max softmax(−z̄).
    - ``"combined"``: class argmax ŷ_comb, score max ŷ_comb ∈ [−1, 1), ŷ_comb = softmax(z) − q/max q,
      q = softmax(z̄).

    Higher score = more confident / more "known" (open-set convention of docs/methods.md §11).

    Args:
        logits: (N, K) CE-head logits z.
        anti_logits: (N, K) anti-class head outputs z̄.
        kind: "ce", "occe" or "combined" (default "ce").

    Returns:
        (prediction (N,) int64, score (N,) float).

    Raises:
        ValueError: unknown ``kind``; bad shapes or values (see :func:`dual_head_probabilities`).

    Example:
        >>> import torch
        >>> pred, score = dual_head_scores(torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 3.0]]), "occe")
        >>> pred.tolist(), round(float(score), 4)
        ([0], 0.9526)
    """
    check_choice(kind, "kind", DUAL_PREDICTIONS)
    probs = dual_head_probabilities(logits, anti_logits)
    if kind == "ce":
        # argmax of the logits themselves: float rounding of softmax cannot create spurious ties.
        return logits.argmax(dim=1), probs["ce_probs"].amax(dim=1)
    if kind == "occe":
        return anti_logits.argmin(dim=1), probs["occe_probs"].amax(dim=1)
    combined = probs["combined"]
    score, pred = combined.max(dim=1)
    return pred, score


@HEADS.register("dual")
class DualHead(Head):
    """Decoupled dual head: CE head z = W₁h + b₁ and anti-class head z̄ = W₂h + b₂ (OCCE paper §3.3, Fig. 8).

    ``HeadOutput.logits`` is **always** z (so the ``ce`` term trains the CE head) and ``anti_logits`` is z̄
    (the ``occe`` term trains the anti-class head on −z̄). The three read-outs of :func:`dual_head_scores`
    are also returned, detached, in ``extras`` as (N, K) matrices: ``"ce_probs"`` = softmax(z),
    ``"occe_probs"`` = softmax(−z̄) and ``"combined"`` = softmax(z) − q/max q with q = softmax(z̄).
    ``predict`` only chooses which read-out :meth:`predict` and :meth:`scores` use by default; it never changes
    ``logits``. ``weight``/``bias`` are the CE head's (what metrics and OOD detectors read); the anti-class
    head's are ``anti_weight``/``anti_bias``.

    Args:
        in_features: width d of the features h.
        num_classes: number of classes K (≥ 2).
        bias: learn b₁ and b₂ (default True).
        predict: default read-out, "ce" (default), "occe" or "combined".

    Raises:
        ValueError: unknown ``predict``; bad ``h``; ``num_classes`` < 2.

    Example:
        >>> import torch
        >>> head = DualHead(8, 4, predict="combined")
        >>> out = head(torch.randn(3, 8))
        >>> out.anti_logits.shape, sorted(out.extras)
        (torch.Size([3, 4]), ['ce_probs', 'combined', 'occe_probs'])
        >>> pred, score = head.scores(out)  # the "combined" read-out
        >>> bool(((score >= -1) & (score < 1)).all())
        True
    """

    def __init__(
        self, in_features: int, num_classes: int, *, bias: bool = True, predict: str = DEFAULT_PREDICT
    ) -> None:
        super().__init__(in_features, num_classes)
        self.predict_kind = check_choice(predict, "predict", DUAL_PREDICTIONS)
        k, d = self.num_classes, self.in_features
        self.weight = nn.Parameter(torch.empty(k, d))
        self.anti_weight = nn.Parameter(torch.empty(k, d))
        self.register_parameter("bias", nn.Parameter(torch.empty(k)) if bias else None)
        self.register_parameter("anti_bias", nn.Parameter(torch.empty(k)) if bias else None)
        reset_linear_(self.weight, self.bias)
        reset_linear_(self.anti_weight, self.anti_bias)

    def forward(self, h: Tensor) -> HeadOutput:
        h = self._check_features(h, like=self.weight)
        logits = F.linear(h, self.weight, self.bias)
        anti_logits = F.linear(h, self.anti_weight, self.anti_bias)
        with torch.no_grad():
            extras = dual_head_probabilities(logits.detach(), anti_logits.detach())
        return HeadOutput(logits=logits, features=h, anti_logits=anti_logits, prototypes=self.weight, extras=extras)

    def scores(self, output: HeadOutput, kind: str | None = None) -> tuple[Tensor, Tensor]:
        """(prediction (N,), score (N,)) of read-out ``kind`` (default: the head's ``predict``) for ``output``.

        See :func:`dual_head_scores`; higher score = more confident.

        Raises:
            ValueError: ``output`` has no ``anti_logits`` or ``kind`` is unknown.
        """
        if output.anti_logits is None:
            raise ValueError("`output` must carry `anti_logits` (the output of a DualHead); got None")
        return dual_head_scores(output.logits, output.anti_logits, self.predict_kind if kind is None else kind)

    def predict(self, h: Tensor) -> Tensor:
        """Predicted class indices (N,) of the read-out chosen by ``predict`` at construction."""
        return self.scores(self.forward(h))[0]

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, bias={self.bias is not None}, predict={self.predict_kind!r}"

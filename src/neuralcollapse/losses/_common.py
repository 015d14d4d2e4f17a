"""Shared plumbing of the logit losses: class-dimension flattening, ``F.cross_entropy``-compatible reduction
(``reduction``, ``ignore_index``, class ``weight``), the validate → per-row loss → reduce pipeline every logit
loss runs, and the base of their ``nn.Module`` forms."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .._validation import check_choice, check_logits_target, check_tensor

__all__ = [
    "DEFAULT_IGNORE_INDEX",
    "REDUCTIONS",
    "LogitLossModule",
    "LogitLossOptions",
    "check_class_weight",
    "check_count",
    "flatten_class_dim",
    "logit_loss",
    "prepare_logits_target",
    "reduce_loss",
]

REDUCTIONS = ("mean", "sum", "none")
DEFAULT_IGNORE_INDEX = -100


def check_count(value: Any, name: str, minimum: int | None = None) -> int:
    """A plain ``int`` (not a bool) ≥ ``minimum``: epochs, class counts, memory sizes."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be an int; got {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}; got {value}")
    return value


def check_class_weight(weight: Any, num_classes: int | None = None) -> Tensor:
    """A finite floating (K,) class-weight vector; with ``num_classes``, also its length."""
    check_tensor(weight, "weight", ndim=1, floating=True, finite=True)
    if num_classes is not None and weight.shape[0] != num_classes:
        raise ValueError(f"`weight` must have one entry per class ({num_classes}); got {weight.shape[0]}")
    return weight


def flatten_class_dim(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor, tuple[int, ...]]:
    """(N, K, d1, ...) logits and (N, d1, ...) target → (M, K), (M,), and the batch shape (N, d1, ...)."""
    batch_shape = (logits.shape[0], *logits.shape[2:])
    if logits.ndim == 2:
        return logits, target, batch_shape
    num_classes = logits.shape[1]
    return logits.movedim(1, -1).reshape(-1, num_classes), target.reshape(-1), batch_shape


def prepare_logits_target(
    logits: Tensor,
    target: Tensor,
    *,
    weight: Tensor | None = None,
    ignore_index: int = DEFAULT_IGNORE_INDEX,
    reduction: str = "mean",
    min_classes: int = 2,
) -> tuple[Tensor, Tensor, Tensor, tuple[int, ...]]:
    """Validate and flatten. Returns (logits (M, K), safe target (M,), valid mask (M,), batch shape).

    Ignored positions get target 0 in the safe target so that gathers stay in range; ``reduce_loss``
    zeroes them afterwards. Half-precision logits are upcast to float32 (losses return float32).
    """
    check_choice(reduction, "reduction", REDUCTIONS)
    num_classes = check_logits_target(logits, target, ignore_index=ignore_index, min_classes=min_classes)
    if weight is not None:
        check_class_weight(weight, num_classes)
    z, t, batch_shape = flatten_class_dim(logits, target)
    if z.dtype in (torch.float16, torch.bfloat16):
        z = z.float()
    valid = t != ignore_index
    safe_t = torch.where(valid, t, torch.zeros_like(t))
    return z, safe_t, valid, batch_shape


def reduce_loss(
    per_sample: Tensor,
    reduction: str,
    *,
    target: Tensor | None = None,
    valid: Tensor | None = None,
    weight: Tensor | None = None,
    batch_shape: tuple[int, ...] | None = None,
) -> Tensor:
    """Reduce per-sample losses exactly as ``F.cross_entropy`` does.

    ``mean`` with class weights is Σ w_{y_i} ℓ_i / Σ w_{y_i} over non-ignored samples; when every sample
    is ignored the result is a zero still attached to the graph (``F.cross_entropy`` returns NaN).
    ``none`` returns the batch shape with ignored entries set to 0.
    """
    w = None
    if weight is not None:
        if target is None:
            raise ValueError("class `weight` needs `target`")
        w = weight.to(per_sample.dtype)[target]
    if valid is not None:
        vmask = valid.to(per_sample.dtype)
        w = vmask if w is None else w * vmask
        # torch.where, not multiplication: an ignored row may hold inf (e.g. a masked-out entry).
        per_sample = torch.where(valid, per_sample, torch.zeros_like(per_sample))
    weighted = per_sample if w is None else per_sample * w
    if reduction == "none":
        return weighted if batch_shape is None else weighted.reshape(batch_shape)
    if reduction == "sum":
        return weighted.sum()
    if w is None:
        return weighted.mean() if weighted.numel() else weighted.sum()
    denom = w.sum()
    return weighted.sum() / denom.clamp_min(torch.finfo(denom.dtype).tiny)


def logit_loss(
    rows: Callable[[Tensor, Tensor], Tensor],
    logits: Tensor,
    target: Tensor,
    *,
    weight: Tensor | None,
    ignore_index: int,
    reduction: str,
) -> Tensor:
    """The pipeline of every per-sample logit loss: :func:`prepare_logits_target`, then ``rows(z, t)`` on the
    flattened (M, K) logits and safe (M,) targets, then :func:`reduce_loss` with the same options (no defaults
    here: each loss passes its own, documented with it)."""
    z, t, valid, batch_shape = prepare_logits_target(
        logits, target, weight=weight, ignore_index=ignore_index, reduction=reduction
    )
    return reduce_loss(rows(z, t), reduction, target=t, valid=valid, weight=weight, batch_shape=batch_shape)


class LogitLossOptions(nn.Module):
    """Base of the module and term forms of a logit loss: the class ``weight`` (a buffer) and ``ignore_index``.

    A subclass names its functional in ``loss_fn`` (a ``staticmethod``) and, in ``hyperparameters``, the
    attributes that :meth:`_loss` passes to it as keyword arguments of the same name. Hyperparameters are set
    and validated by a small mixin per loss, shared by the module and the term.
    """

    loss_fn: ClassVar[Callable[..., Tensor]]
    hyperparameters: ClassVar[tuple[str, ...]] = ()
    weight: Tensor | None

    def __init__(self, *, weight: Tensor | None = None, ignore_index: int = DEFAULT_IGNORE_INDEX) -> None:
        super().__init__()
        # A private copy: later in-place changes to the caller's tensor do not reach the loss.
        self.register_buffer("weight", None if weight is None else check_class_weight(weight).detach().clone())
        self.ignore_index = int(ignore_index)

    def _options(self) -> dict[str, Any]:
        return {"weight": self.weight, "ignore_index": self.ignore_index}

    def _loss(self, logits: Tensor, target: Tensor, **inputs: Any) -> Tensor:
        hyper = {name: getattr(self, name) for name in self.hyperparameters}
        return self.loss_fn(logits, target, **inputs, **hyper, **self._options())


class LogitLossModule(LogitLossOptions):
    """``nn.Module`` form of a logit loss: ``forward(logits, target)`` with ``F.cross_entropy``'s options
    (``weight``, ``ignore_index``, ``reduction``)."""

    def __init__(
        self,
        *,
        weight: Tensor | None = None,
        ignore_index: int = DEFAULT_IGNORE_INDEX,
        reduction: str = "mean",
    ) -> None:
        super().__init__(weight=weight, ignore_index=ignore_index)
        self.reduction = check_choice(reduction, "reduction", REDUCTIONS)

    def _options(self) -> dict[str, Any]:
        return {**super()._options(), "reduction": self.reduction}

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return self._loss(logits, target)

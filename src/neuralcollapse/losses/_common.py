"""Shared plumbing of the logit losses: class-dimension flattening and ``F.cross_entropy``-compatible
reduction (``reduction``, ``ignore_index``, class ``weight``)."""

from __future__ import annotations

import torch
from torch import Tensor

from .._validation import check_choice, check_logits_target, check_tensor

__all__ = ["REDUCTIONS", "flatten_class_dim", "prepare_logits_target", "reduce_loss"]

REDUCTIONS = ("mean", "sum", "none")
DEFAULT_IGNORE_INDEX = -100


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
        check_tensor(weight, "weight", ndim=1, floating=True, finite=True)
        if weight.shape[0] != num_classes:
            raise ValueError(f"`weight` must have one entry per class ({num_classes}); got {weight.shape[0]}")
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

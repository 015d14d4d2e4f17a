"""Shared plumbing of the feature-based losses (``normalized``, ``margin``, ``contrastive``, ``prototype``,
``lpc``, ``anticlass``): input checks for features, labels and class matrices, the working dtype, an
autocast-free block for the similarity matmuls, and the all-gathers of ``torch.distributed``."""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import torch
from torch import Tensor

from .._validation import check_choice, check_labels, check_matrix, check_tensor
from ._common import REDUCTIONS

__all__ = [
    "all_gather_cat",
    "autocast_off",
    "check_class_matrix",
    "check_embedding_inputs",
    "check_labels_1d",
    "distributed_world_size",
    "embedding_inputs",
    "gather_batch",
    "unit_rows",
    "working_dtype",
]


def working_dtype(*tensors: Tensor) -> torch.dtype:
    """The promoted dtype of ``tensors``, at least float32 (half inputs are upcast for the reductions)."""
    dtype = functools.reduce(torch.promote_types, (t.dtype for t in tensors))
    return torch.promote_types(dtype, torch.float32)


def autocast_off(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Disable autocast so that the similarity matmuls run in the working dtype, not in bf16/fp16."""
    try:
        return torch.autocast(device_type=device.type, enabled=False)
    except RuntimeError:  # a device type autocast does not know (e.g. "meta") has no autocast to disable
        return contextlib.nullcontext()


def check_labels_1d(target: Any, length: int, num_classes: int | None = None) -> Tensor:
    """``target``: 1-D integer labels, one per feature row, in ``[0, num_classes)``."""
    check_tensor(target, "target", ndim=1, integer=True, nonempty=False)
    if target.shape[0] != length:
        raise ValueError(
            f"`target` must have length {length} (one label per row of `features`); got shape {tuple(target.shape)}"
        )
    if num_classes is not None:
        check_labels(target, "target", num_classes=num_classes)
    return target


def check_class_matrix(matrix: Any, name: str, dim: int) -> int:
    """A finite (K, d) class matrix with K ≥ 2 and d equal to the feature dimension; returns K."""
    check_matrix(matrix, name)
    if matrix.shape[1] != dim:
        raise ValueError(
            f"`{name}` must have shape (K, {dim}) to match the feature dimension of `features`; "
            f"got shape {tuple(matrix.shape)}"
        )
    if matrix.shape[0] < 2:
        raise ValueError(f"`{name}` must have at least 2 rows (one per class); got shape {tuple(matrix.shape)}")
    return int(matrix.shape[0])


def check_embedding_inputs(features: Any, target: Any, classes: Any, classes_name: str = "prototypes") -> int:
    """Validate ``features`` (M, d), ``target`` (M,) and a (K, d) class matrix; return K."""
    check_matrix(features, "features")
    num_classes = check_class_matrix(classes, classes_name, int(features.shape[1]))
    check_labels_1d(target, int(features.shape[0]), num_classes)
    return num_classes


#: ``F.normalize``'s default eps: rows with a smaller norm are divided by it (zero rows stay zero)
NORMALIZE_EPS = 1e-12


def unit_rows(x: Tensor, dtype: torch.dtype) -> Tensor:
    """Rows of ``x`` scaled to unit L2 norm in ``dtype`` (out of place; zero rows stay zero).

    The value is ``F.normalize(x, eps=1e-12)``'s, x/max(‖x‖, eps); but a row with ‖x‖ <= eps (an all-zero
    feature, e.g. a dead ReLU layer) gets no gradient instead of F.normalize's (∂L/∂u)/eps ≈ 1e12·(∂L/∂u):
    its direction is undefined, and one such row would otherwise blow up the step of the whole batch."""
    x = x.to(dtype)
    norm = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    small = norm <= NORMALIZE_EPS
    unit = x / norm.clamp_min(NORMALIZE_EPS)
    return torch.where(small, unit.detach(), unit)


def embedding_inputs(
    features: Tensor,
    target: Tensor,
    classes: Tensor,
    reduction: str,
    *,
    classes_name: str = "prototypes",
    normalize: bool = True,
) -> tuple[Tensor, Tensor]:
    """Validate ``reduction`` and the inputs of :func:`check_embedding_inputs`; return the features (M, d) and
    the class matrix (K, d) in their working dtype, with unit rows when ``normalize``."""
    check_choice(reduction, "reduction", REDUCTIONS)
    check_embedding_inputs(features, target, classes, classes_name)
    dtype = working_dtype(features, classes)
    if normalize:
        return unit_rows(features, dtype), unit_rows(classes, dtype)
    return features.to(dtype), classes.to(dtype)


def distributed_world_size() -> int:
    """Number of ranks of the default ``torch.distributed`` process group; 1 without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def all_gather_cat(x: Tensor) -> Tensor:
    """Concatenate equal-sized tensors of every rank along dim 0 (identity outside DDP); no gradient."""
    world = distributed_world_size()
    if world == 1:
        return x
    import torch.distributed as dist

    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


class _AllGatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward sums every rank's gradient for this rank's slice.

    Written with ``all_reduce`` (supported by every backend, gloo included) rather than reduce-scatter.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        import torch.distributed as dist

        ctx.rank, ctx.rows = dist.get_rank(), x.shape[0]
        return all_gather_cat(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        import torch.distributed as dist

        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def gather_batch(u: Tensor, target: Tensor, gather: bool) -> tuple[Tensor, Tensor]:
    """All-gather features (with gradient) and labels over the default process group when ``gather``.

    Without an initialised ``torch.distributed`` process group (or with one rank) the local batch is returned.
    Every rank must contribute the same number of rows (``drop_last=True``); the gradients that every rank's
    loss sends to a gathered row are summed on the row's owner, so DDP's gradient average equals the gradient
    of the global-batch mean.
    """
    if not gather or distributed_world_size() == 1:
        return u, target
    sizes = all_gather_cat(torch.tensor([u.shape[0]], dtype=torch.long, device=u.device))
    counts = [int(s) for s in sizes]
    if len(set(counts)) > 1:
        raise ValueError(
            f"`gather=True` needs the same batch size on every rank; got per-rank sizes {counts} "
            "(use drop_last=True in the data loader)"
        )
    labels = all_gather_cat(target)
    return _AllGatherWithGrad.apply(u), labels

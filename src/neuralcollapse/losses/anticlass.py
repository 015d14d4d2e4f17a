"""Soft anti-class targets for OCCE by self-distillation (Katsikas, Passalis, Tefas, TNNLS 2025, Appendix A.1.1).

The uniform one-cold target ȳ (ȳ_c = 0, ȳ_j = 1/(K−1)) is mixed with the network's own anti-class
predictions q = softmax(−z):

* instance-based (Eq. 9): ȳ'_i = (1 − α)·ȳ_i + α·q̃_i, α = 0.1, q̃_i = the *previous epoch's* prediction for the
  same training sample (the detached current one would only rescale the gradient to (1 − α)(q − ȳ));
* class-based (Eq. 10): ȳ'_i = (1 − α)·ȳ_i + α·C_{y_i}, α = 0.5, C = per-class mean of q over the previous
  epoch with C_ii = 0 and rows renormalised.

Before mixing, the true-class entry of q̃ (or C's row) is zeroed and the row renormalised, so every target stays
one-cold (the literal Eq. 9 would leave a tiny true-class mass). The builders are pure functions; the two state
holders keep the previous epoch's statistics (plain ``nn.Module`` buffers: ``state_dict``, ``.to(device)``) and
need no Lightning; under DDP they synchronise through a hook (see each class).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .._validation import check_labels, check_matrix, check_probability, check_tensor
from .._validation import data_checks_enabled as _data_checks_enabled
from ._common import check_count
from ._features import all_gather_cat, distributed_world_size, working_dtype

__all__ = [
    "AnticlassClassMatrix",
    "AnticlassMemory",
    "class_anticlass_target",
    "instance_anticlass_target",
]

#: α of the instance-based soft target (OCCE paper, Appendix A.1.1, Eq. 9; Table 5).
INSTANCE_ALPHA = 0.1
#: α of the class-based soft target (OCCE paper, Appendix A.1.1, Eq. 10; Table 5).
CLASS_ALPHA = 0.5


def _true_class_and_uniform(target: Tensor, num_classes: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """The (M, K) true-class mask and the uniform one-cold target ȳ (0 at the true class, 1/(K−1) elsewhere)."""
    hot = torch.nn.functional.one_hot(target, num_classes).bool()
    return hot, (~hot).to(dtype) / (num_classes - 1)


def _one_cold(dist: Tensor, target: Tensor) -> Tensor:
    """Zero each row's true-class entry and renormalise; a row left with no mass becomes uniform one-cold."""
    hot, uniform = _true_class_and_uniform(target, dist.shape[1], dist.dtype)
    cold = dist.masked_fill(hot, 0.0)
    mass = cold.sum(dim=1, keepdim=True)
    return torch.where(mass > 0, cold / mass.clamp_min(torch.finfo(dist.dtype).tiny), uniform)


def _mix(soft: Tensor, target: Tensor, alpha: float) -> Tensor:
    """(1 − α)·ȳ + α·one_cold(soft): rows sum to 1 and vanish at the true class."""
    _, uniform = _true_class_and_uniform(target, soft.shape[1], soft.dtype)
    return (1.0 - alpha) * uniform + alpha * _one_cold(soft, target)


def _check_distribution_rows(x: Tensor, name: str) -> None:
    if _data_checks_enabled() and bool((x < 0).any()):
        raise ValueError(f"`{name}` must be >= 0 (probabilities); got a minimum of {float(x.min()):.3g}")


def instance_anticlass_target(previous_q: Tensor, target: Tensor, alpha: float = INSTANCE_ALPHA) -> Tensor:
    """Instance-based soft anti-class target (OCCE paper, Appendix A.1.1, Eq. 9).

    ȳ'_i = (1 − α)·ȳ_i + α·q̃_i, where q̃_i is ``previous_q[i]`` with its true-class entry zeroed and the row
    renormalised (a row with no mass left is replaced by the uniform one-cold row).

    Args:
        previous_q: (N, K) the previous epoch's anti-class probabilities softmax(−z) of these samples; ≥ 0.
        target: (N,) integer class indices in [0, K).
        alpha: mixing weight α in [0, 1]; default 0.1 (Table 5).

    Returns:
        (N, K) target, rows summing to 1, exactly 0 at the true class; float32 for half inputs.

    Raises:
        ValueError: shapes, K < 2, negative or non-finite ``previous_q``, labels out of range, ``alpha``.
        TypeError: non-floating ``previous_q`` or non-integer ``target``.

    Example:
        >>> import torch
        >>> q = torch.tensor([[0.5, 0.3, 0.2]])
        >>> instance_anticlass_target(q, torch.tensor([0]), alpha=0.5)
        tensor([[0.0000, 0.5500, 0.4500]])
    """
    check_matrix(previous_q, "previous_q")
    if previous_q.shape[1] < 2:
        raise ValueError(f"`previous_q` must have at least 2 classes (columns); got K={previous_q.shape[1]}")
    check_tensor(target, "target", ndim=1, integer=True)
    check_labels(target, "target", num_classes=previous_q.shape[1], length=previous_q.shape[0])
    alpha = check_probability(alpha, "alpha")
    _check_distribution_rows(previous_q, "previous_q")
    return _mix(previous_q.to(working_dtype(previous_q)), target, alpha)


def class_anticlass_target(class_matrix: Tensor, target: Tensor, alpha: float = CLASS_ALPHA) -> Tensor:
    """Class-based soft anti-class target (OCCE paper, Appendix A.1.1, Eq. 10).

    ȳ'_i = (1 − α)·ȳ_i + α·C_{y_i}, with C the (K, K) class matrix of :class:`AnticlassClassMatrix` (row c =
    mean anti-class prediction of class c over the previous epoch, C_cc = 0, rows normalised). The row is
    re-projected (true class zeroed, renormalised) so that any non-negative matrix is accepted.

    Args:
        class_matrix: (K, K) non-negative matrix C.
        target: (N,) integer class indices in [0, K).
        alpha: mixing weight α in [0, 1]; default 0.5 (Table 5).

    Returns:
        (N, K) target, rows summing to 1, exactly 0 at the true class.

    Raises:
        ValueError: non-square or negative ``class_matrix``, labels out of range, ``alpha``.
        TypeError: non-floating ``class_matrix`` or non-integer ``target``.

    Example:
        >>> import torch
        >>> C = torch.tensor([[0.0, 0.8, 0.2], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]])
        >>> class_anticlass_target(C, torch.tensor([0]), alpha=0.5)
        tensor([[0.0000, 0.6500, 0.3500]])
    """
    check_matrix(class_matrix, "class_matrix")
    num_classes = class_matrix.shape[0]
    if class_matrix.shape[1] != num_classes or num_classes < 2:
        raise ValueError(f"`class_matrix` must be square (K, K) with K >= 2; got {tuple(class_matrix.shape)}")
    check_tensor(target, "target", ndim=1, integer=True)
    check_labels(target, "target", num_classes=num_classes)
    alpha = check_probability(alpha, "alpha")
    _check_distribution_rows(class_matrix, "class_matrix")
    rows = class_matrix.to(working_dtype(class_matrix))[target]
    return _mix(rows, target, alpha)


def _all_reduce_sum(x: Tensor) -> Tensor:
    """Sum over the ranks of the default process group (identity outside DDP)."""
    if distributed_world_size() > 1:
        import torch.distributed as dist

        x = x.clone()
        dist.all_reduce(x)
    return x


class AnticlassMemory(nn.Module):
    """Per-sample memory of the previous epoch's anti-class predictions for the instance-based soft target.

    OCCE paper, Appendix A.1.1, Eq. 9: a (num_samples, K) buffer keyed by dataset index, filled from the
    training forward passes with the detached softmax(−z); uniform before the first update (so epoch 0 trains
    on the uniform one-cold target). In each step call :meth:`targets` **before** :meth:`update`: each
    sample is visited once per epoch, so the value read is the one written in the previous epoch.

    Under DDP each rank sees other indices; pass ``all_gather=True`` (gathers indices and predictions from
    every rank of the default process group; batches must have the same size on all ranks, as with
    ``DistributedSampler``) or your own ``gather_fn(tensor) -> tensor`` that concatenates along dim 0.

    Args:
        num_samples: size of the training set (indices in [0, num_samples)).
        num_classes: K ≥ 2.
        dtype: storage dtype (float32; float16 halves the memory of large data sets).
        gather_fn: optional cross-rank concatenation hook.
        all_gather: use ``torch.distributed`` all-gather when a process group is initialised.

    Example:
        >>> import torch
        >>> mem = AnticlassMemory(num_samples=4, num_classes=3)
        >>> idx, y = torch.tensor([0, 1]), torch.tensor([0, 2])
        >>> mem.targets(idx, y)  # epoch 0: uniform one-cold
        tensor([[0.0000, 0.5000, 0.5000],
                [0.5000, 0.5000, 0.0000]])
        >>> mem.update(idx, torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
        >>> mem.targets(idx, y, alpha=1.0)[1]
        tensor([0.2689, 0.7311, 0.0000])
    """

    probs: Tensor

    def __init__(
        self,
        num_samples: int,
        num_classes: int,
        *,
        dtype: torch.dtype = torch.float32,
        gather_fn: Callable[[Tensor], Tensor] | None = None,
        all_gather: bool = False,
    ) -> None:
        super().__init__()
        self.num_samples = check_count(num_samples, "num_samples", 1)
        self.num_classes = check_count(num_classes, "num_classes", 2)
        if not dtype.is_floating_point:
            raise TypeError(f"`dtype` must be a floating dtype; got {dtype}")
        self.gather_fn = gather_fn if gather_fn is not None else (all_gather_cat if all_gather else None)
        self.register_buffer("probs", torch.full((self.num_samples, self.num_classes), 1.0 / num_classes, dtype=dtype))

    def _check_indices(self, indices: Tensor) -> None:
        check_tensor(indices, "indices", ndim=1, integer=True)
        check_labels(indices, "indices", num_classes=self.num_samples)

    def reset(self) -> None:
        """Forget every stored prediction (back to the uniform epoch-0 state)."""
        self.probs.fill_(1.0 / self.num_classes)

    @torch.no_grad()
    def update(self, indices: Tensor, logits: Tensor) -> None:
        """Store softmax(−logits) (detached) for the samples ``indices`` (dataset indices, (B,))."""
        self._check_indices(indices)
        check_matrix(logits, "logits", rows=indices.shape[0], cols=self.num_classes)
        q = torch.softmax(-logits.detach().float(), dim=1)
        if self.gather_fn is not None:
            indices, q = self.gather_fn(indices), self.gather_fn(q)
        self.probs[indices.to(self.probs.device)] = q.to(device=self.probs.device, dtype=self.probs.dtype)

    def targets(self, indices: Tensor, target: Tensor, alpha: float = INSTANCE_ALPHA) -> Tensor:
        """Soft targets (B, K) of :func:`instance_anticlass_target` from the stored predictions."""
        self._check_indices(indices)
        return instance_anticlass_target(self.probs[indices.to(self.probs.device)], target.to(self.probs.device), alpha)

    def extra_repr(self) -> str:
        return f"num_samples={self.num_samples}, num_classes={self.num_classes}"


class AnticlassClassMatrix(nn.Module):
    """Class matrix C of the class-based soft target (OCCE paper, Appendix A.1.1, Eq. 10).

    During an epoch :meth:`update` accumulates, per true class, the sum and count of the detached
    softmax(−z) of its training samples (float64). :meth:`finalize_epoch` turns them into C for the next epoch:
    row c = mean prediction of class c with C_cc = 0 and the row renormalised; a class not seen in the epoch
    keeps its previous row. C starts as the uniform one-cold matrix (epoch 0 = uniform target).

    DDP: the sums and counts must be summed over ranks before :meth:`finalize_epoch` divides them; pass
    ``all_reduce=True`` (default process group) or ``sync_fn(tensor) -> tensor`` (a sum-reduction, e.g. a
    Lightning strategy's ``reduce(x, reduce_op="sum")``).

    Args:
        num_classes: K ≥ 2.
        sync_fn: optional cross-rank sum hook applied to the sums and the counts.
        all_reduce: use ``torch.distributed.all_reduce`` when a process group is initialised.

    Example:
        >>> import torch
        >>> cm = AnticlassClassMatrix(3)
        >>> cm.update(torch.tensor([[0.0, 0.0, 0.0]]), torch.tensor([0]))
        >>> cm.finalize_epoch()
        tensor([[0.0000, 0.5000, 0.5000],
                [0.5000, 0.0000, 0.5000],
                [0.5000, 0.5000, 0.0000]])
    """

    matrix: Tensor
    sums: Tensor
    counts: Tensor

    def __init__(
        self,
        num_classes: int,
        *,
        sync_fn: Callable[[Tensor], Tensor] | None = None,
        all_reduce: bool = False,
    ) -> None:
        super().__init__()
        self.num_classes = check_count(num_classes, "num_classes", 2)
        self.sync_fn = sync_fn if sync_fn is not None else (_all_reduce_sum if all_reduce else None)
        k = self.num_classes
        self.register_buffer("matrix", (1.0 - torch.eye(k)) / (k - 1))
        self.register_buffer("sums", torch.zeros(k, k, dtype=torch.float64))
        self.register_buffer("counts", torch.zeros(k, dtype=torch.float64))

    @torch.no_grad()
    def update(self, logits: Tensor, target: Tensor) -> None:
        """Accumulate softmax(−logits) (detached) into the rows of the samples' true classes."""
        check_matrix(logits, "logits", cols=self.num_classes)
        check_tensor(target, "target", ndim=1, integer=True)
        check_labels(target, "target", num_classes=self.num_classes, length=logits.shape[0])
        q = torch.softmax(-logits.detach().to(torch.float64), dim=1).to(self.sums.device)
        t = target.to(self.sums.device)
        self.sums.index_add_(0, t, q)
        self.counts.index_add_(0, t, torch.ones_like(t, dtype=torch.float64))

    @torch.no_grad()
    def finalize_epoch(self) -> Tensor:
        """Compute C from this epoch's statistics, reset them, and return a copy of C (K, K)."""
        sums, counts = self.sums, self.counts
        if self.sync_fn is not None:
            sums, counts = self.sync_fn(sums), self.sync_fn(counts)
        seen = counts > 0
        if bool(seen.any()):
            classes = torch.arange(self.num_classes, device=sums.device)[seen]
            means = sums[seen] / counts[seen].unsqueeze(1)
            self.matrix[seen] = _one_cold(means, classes).to(self.matrix.dtype)
        self.sums.zero_()
        self.counts.zero_()
        return self.matrix.clone()

    def targets(self, target: Tensor, alpha: float = CLASS_ALPHA) -> Tensor:
        """Soft targets (N, K) of :func:`class_anticlass_target` from the current C."""
        return class_anticlass_target(self.matrix, target.to(self.matrix.device), alpha)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}"

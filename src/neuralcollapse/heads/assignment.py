"""Label-to-prototype assignment (Hungarian) and momentum class representatives for DL2PA.

M. S. Ebrahimi Saadabadi, A. Dabouei, S. Rahimi Malakshan, N. M. Nasrabadi, "Hyperspherical Classification with
Dynamic Label-to-Prototype Assignment", CVPR 2024, §3.3 (reference msed-Ebrahimi/DL2PA_CVPR24); docs/methods.md §7.2.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from .._validation import check_labels, check_matrix, check_probability, check_same_length
from ._base import one_thread, unit_rows

__all__ = ["DEFAULT_MOMENTUM", "assign_prototypes", "update_class_representatives"]

#: Momentum m of the class representatives (DL2PA, §3.3; docs/methods.md §7.2).
DEFAULT_MOMENTUM = 0.9


def assign_prototypes(class_means: Tensor, prototypes: Tensor) -> Tensor:
    """Label-to-prototype assignment maximising the total cosine (Hungarian algorithm; DL2PA, CVPR 2024, Eq. 7).

    Both inputs are row-normalised; score S = Q·Pᵀ (cosines); π = argmax_π Σ_c S[c, π(c)] over injective maps,
    solved by ``scipy.optimize.linear_sum_assignment(−S)`` in float64 on the CPU (Kuhn 1955; Crouse 2016), with
    one intra-op thread so the result does not depend on the thread count. K = 1000: ≈ 0.2 s.

    Args:
        class_means: (K, d) class representatives q_c (e.g. momentum means of normalised features).
        prototypes: (K', d) fixed prototypes, K' ≥ K (usually K' = K).

    Returns:
        int64 tensor π of shape (K,) on ``class_means.device``: ``π[c]`` = index of the prototype of class c
        (distinct entries).

    Raises:
        ValueError: not finite 2-D floating tensors; the feature widths differ; fewer prototypes than classes.

    Example:
        >>> import torch
        >>> P = torch.eye(3)
        >>> assign_prototypes(torch.tensor([[0.0, 0.1, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.2]]), P).tolist()
        [2, 0, 1]
    """
    check_matrix(class_means, "class_means")
    check_matrix(prototypes, "prototypes")
    if class_means.shape[1] != prototypes.shape[1]:
        raise ValueError(
            f"`prototypes` must have {class_means.shape[1]} columns to match `class_means` "
            f"{tuple(class_means.shape)}; got shape {tuple(prototypes.shape)}"
        )
    if prototypes.shape[0] < class_means.shape[0]:
        raise ValueError(
            f"`prototypes` must have at least as many rows as `class_means` ({class_means.shape[0]}); "
            f"got shape {tuple(prototypes.shape)}"
        )
    with one_thread():
        q = unit_rows(class_means.detach().to(device="cpu", dtype=torch.float64))
        p = unit_rows(prototypes.detach().to(device="cpu", dtype=torch.float64))
        score = (q @ p.T).numpy()
        rows, cols = linear_sum_assignment(-score)
    perm = torch.empty(q.shape[0], dtype=torch.int64)
    perm[torch.from_numpy(rows).long()] = torch.from_numpy(cols).long()
    return perm.to(class_means.device)


def update_class_representatives(
    representatives: Tensor,
    features: Tensor,
    target: Tensor,
    *,
    momentum: float = DEFAULT_MOMENTUM,
    reference_compat: bool = False,
    lam: float = 1.0,
    all_reduce: bool = False,
) -> Tensor:
    """One momentum update of the unit class representatives q_c (DL2PA §3.3; docs/methods.md §7.2). Out of place.

    Default rule: for every class c present in the batch, x̄_c = mean of the normalised (detached) features of
    class c and q_c ← normalise(m·q_c + (1 − m)·λ·x̄_c); absent classes are unchanged. With ``all_reduce`` the
    per-class sums and counts are summed over the default process group first (DDP: every rank gets the same
    update).

    ``reference_compat=True`` reproduces the reference code (``queue[y] += 0.9*queue[y] + 0.1*lam*x`` followed by
    row normalisation with a 1e−8 clamp): q_c ← normalise((1 + m)·q_c + (1 − m)·λ·x̂_c), where x̂_c is the
    normalised feature of the **last** sample of class c in the batch (non-accumulating indexed assignment: only
    one sample per class counts; last write as on the CPU, undefined on CUDA in the reference). With m = 0.9 the
    new sample's weight is 0.1/1.9 ≈ 0.053. Every row is re-normalised, as in the reference.

    Args:
        representatives: (K, d) current representatives (unit rows expected); not modified.
        features: (N, d) features of the batch (normalised here; gradients are not tracked).
        target: (N,) int labels in [0, K).
        momentum: m in [0, 1] (default 0.9, DL2PA).
        reference_compat: use the reference rule (see above).
        lam: factor λ on the new contribution (the reference passes the mixup coefficient; default 1).
        all_reduce: sum class sums/counts over ranks first (needs an initialised process group; default rule
            only).

    Returns:
        (K, d) new representatives, dtype/device of ``representatives``.

    Raises:
        ValueError: shapes, label range, NaN values, momentum outside [0, 1], ``reference_compat`` together with
            ``all_reduce``, or ``all_reduce`` without an initialised process group.

    Example:
        >>> import torch
        >>> q = torch.eye(2)
        >>> update_class_representatives(q, torch.tensor([[0.0, 2.0]]), torch.tensor([0]))
        tensor([[0.9939, 0.1104],
                [0.0000, 1.0000]])
    """
    check_matrix(representatives, "representatives")
    check_matrix(features, "features", cols=representatives.shape[1])
    check_labels(target, "target", num_classes=representatives.shape[0])
    if target.ndim != 1:
        raise ValueError(f"`target` must be 1-D; got shape {tuple(target.shape)}")
    check_same_length(("features", features), ("target", target))
    m = check_probability(momentum, "momentum")
    if reference_compat and all_reduce:
        raise ValueError("`all_reduce` is not available with `reference_compat=True` (the reference rule is per rank)")
    if all_reduce and not (dist.is_available() and dist.is_initialized()):
        raise ValueError("`all_reduce=True` needs an initialised torch.distributed process group")

    k = representatives.shape[0]
    q = representatives.detach()
    u = unit_rows(features.detach().to(q.dtype))
    target = target.to(q.device)
    with torch.no_grad():
        if reference_compat:
            positions = torch.arange(u.shape[0], device=q.device)
            last = torch.full((k,), -1, dtype=torch.int64, device=q.device)
            last = last.scatter_reduce(0, target, positions, reduce="amax", include_self=True)
            present = last >= 0
            new = (1.0 + m) * q + (1.0 - m) * lam * u[last.clamp_min(0)]
            new = torch.where(present[:, None], new, q)
            return new / new.norm(dim=1, keepdim=True).clamp_min(1e-8)
        sums = torch.zeros_like(q).index_add_(0, target, u)
        counts = torch.bincount(target, minlength=k).to(q.dtype)
        if all_reduce:
            dist.all_reduce(sums)
            dist.all_reduce(counts)
        present = counts > 0
        mean = sums / counts.clamp_min(1.0)[:, None]
        new = unit_rows(m * q + (1.0 - m) * lam * mean)
        return torch.where(present[:, None], new, q)

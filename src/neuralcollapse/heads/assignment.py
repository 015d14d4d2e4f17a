"""Label-to-prototype assignment (Hungarian) and momentum class representatives for DL2PA.

M. S. Ebrahimi Saadabadi, A. Dabouei, S. Rahimi Malakshan, N. M. Nasrabadi, "Hyperspherical Classification with
Dynamic Label-to-Prototype Assignment", CVPR 2024, §3.3 (reference msed-Ebrahimi/DL2PA_CVPR24); docs/methods.md §7.2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.distributed as dist
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from .._validation import check_labels, check_matrix, check_probability, check_same_length
from ._base import one_thread, unit_rows

__all__ = [
    "DEFAULT_ASSIGNMENTS_PER_EPOCH",
    "DEFAULT_INITIAL_ASSIGNMENT",
    "DEFAULT_MOMENTUM",
    "DEFAULT_WARMUP_ITERATIONS",
    "INITIAL_ASSIGNMENTS",
    "assign_prototypes",
    "check_assignments_per_epoch",
    "check_permutation",
    "matching_cosine",
    "reassignment_batches",
    "update_class_representatives",
]

#: Momentum m of the class representatives (DL2PA, §3.3; docs/methods.md §7.2).
DEFAULT_MOMENTUM = 0.9
#: How the first label-to-prototype assignment is made (docs/methods.md §7.2): "identity" (π = arange), "random"
#: (a seeded random permutation; the reference solves against a random queue, which amounts to this), or
#: "class_means" (Hungarian against the class means of the network's own features after a short warm-up).
INITIAL_ASSIGNMENTS: tuple[str, ...] = ("identity", "random", "class_means")
#: Default first assignment: against the class means of the barely trained network (the situation of the
#: reference's first effective re-assignment; see docs/reproductions.md, "DL2PA").
DEFAULT_INITIAL_ASSIGNMENT = "class_means"
#: Training iterations (representative updates) before the "class_means" assignment is solved.
DEFAULT_WARMUP_ITERATIONS = 1
#: ν, assignment updates per epoch (DL2PA ablation 0.1 … 10; ν = 1 is the paper's setting).
DEFAULT_ASSIGNMENTS_PER_EPOCH = 1.0


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
    observed: Tensor | None = None,
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

    ``observed`` (K bools) marks the classes whose representative already holds an estimate: a present class
    with ``observed[c] = False`` takes its first observation as is (normalise(x̄_c), or the last sample's x̂_c
    under ``reference_compat``) instead of being mixed with its placeholder row, so the estimate carries no bias
    from its initial value (the reference starts from a Gaussian random queue, whose weight then decays as
    0.947^t; docs/methods.md §7.2). ``None`` (default) treats every row as observed.

    Args:
        representatives: (K, d) current representatives (unit rows expected); not modified.
        features: (N, d) features of the batch (normalised here; gradients are not tracked).
        target: (N,) int labels in [0, K).
        momentum: m in [0, 1] (default 0.9, DL2PA).
        reference_compat: use the reference rule (see above).
        lam: factor λ on the new contribution (the reference passes the mixup coefficient; default 1).
        all_reduce: sum class sums/counts over ranks first (needs an initialised process group; default rule
            only).
        observed: optional (K,) bool tensor, see above (not modified).

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
    if observed is not None:
        if not isinstance(observed, Tensor) or observed.dtype != torch.bool or tuple(observed.shape) != (k,):
            got = (f"{observed.dtype} of shape {tuple(observed.shape)}" if isinstance(observed, Tensor)
                   else type(observed).__name__)
            raise ValueError(f"`observed` must be a bool tensor of shape ({k},); got {got}")
        fresh = ~observed.to(representatives.device)
    else:
        fresh = None

    q = representatives.detach()
    u = unit_rows(features.detach().to(q.dtype))
    target = target.to(q.device)
    with torch.no_grad():
        if reference_compat:
            positions = torch.arange(u.shape[0], device=q.device)
            last = torch.full((k,), -1, dtype=torch.int64, device=q.device)
            last = last.scatter_reduce(0, target, positions, reduce="amax", include_self=True)
            present = last >= 0
            sample = u[last.clamp_min(0)]
            new = (1.0 + m) * q + (1.0 - m) * lam * sample
            if fresh is not None:
                new = torch.where(fresh[:, None], sample, new)
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
        if fresh is not None:
            new = torch.where(fresh[:, None], unit_rows(mean), new)
        return torch.where(present[:, None], new, q)


def matching_cosine(class_means: Tensor, prototypes: Tensor, assignment: Tensor) -> float:
    """Total cosine Σ_c cos(q_c, p_{π(c)}) of an assignment (what :func:`assign_prototypes` maximises).

    Example:
        >>> import torch
        >>> matching_cosine(torch.eye(2), torch.eye(2), torch.tensor([1, 0]))
        0.0
    """
    check_matrix(class_means, "class_means")
    check_matrix(prototypes, "prototypes", cols=class_means.shape[1])
    q = unit_rows(class_means.detach().double().cpu())
    p = unit_rows(prototypes.detach().double().cpu())
    return float((q * p[assignment.detach().cpu().long()]).sum())


def check_assignments_per_epoch(value: float, name: str = "assignments_per_epoch") -> float:
    """Validate ν, the number of assignment updates per epoch (DL2PA ablation, 0.1 … 10).

    ν ≥ 1 must be a whole number (ν evenly spaced updates per epoch); ν < 1 must be 1/n for a whole n (one update
    every n epochs). Returns ν as a float.

    Raises:
        ValueError: ν not a finite number > 0, or not of either form.

    Example:
        >>> check_assignments_per_epoch(0.25), check_assignments_per_epoch(10)
        (0.25, 10.0)
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"`{name}` must be a number > 0 (assignment updates per epoch); got {value!r}")
    v = float(value)
    whole = round(v) if v >= 1 else round(1.0 / v)
    if (v >= 1 and abs(v - whole) > 1e-9 * v) or (v < 1 and abs(1.0 / v - whole) > 1e-6 * whole):
        raise ValueError(
            f"`{name}` must be a whole number (updates per epoch) or 1/n (one update every n epochs), e.g. "
            f"0.1, 0.5, 1, 2, 10; got {value!r}"
        )
    return v


def reassignment_batches(assignments_per_epoch: float, batches_per_epoch: int) -> list[int]:
    """0-indexed batch indices of one epoch after which the assignment is updated, for ν ≥ 1 (the last one is
    the epoch's final batch; the caller runs that one after validation). ν < 1 gives ``[]`` (epoch cadence).

    The ν updates split the epoch's N batches evenly: after batch round(j·N/ν) − 1 for j = 1 … ν (duplicates
    removed when ν > N).

    Example:
        >>> reassignment_batches(4, 10)
        [2, 4, 7, 9]
    """
    nu = check_assignments_per_epoch(assignments_per_epoch)
    n = int(batches_per_epoch)
    if n < 1:
        raise ValueError(f"`batches_per_epoch` must be >= 1; got {batches_per_epoch!r}")
    if nu < 1:
        return []
    k = round(nu)
    return sorted({max(0, math.floor(j * n / k + 0.5) - 1) for j in range(1, k + 1)})


def check_permutation(value: Sequence[int] | Tensor, num_classes: int, name: str = "initial_assignment") -> Tensor:
    """An explicit assignment: K distinct ints in [0, K) (π[c] = prototype of class c), as an int64 tensor.

    Raises:
        ValueError: wrong length, non-integers, out of range or repeated entries.
    """
    items = value.tolist() if isinstance(value, Tensor) else list(value)
    if (
        len(items) != num_classes
        or any(isinstance(i, bool) or not isinstance(i, int) for i in items)
        or sorted(items) != list(range(num_classes))
    ):
        raise ValueError(
            f"`{name}` must be one of {', '.join(map(repr, INITIAL_ASSIGNMENTS))} or a permutation of "
            f"0..{num_classes - 1} ({num_classes} distinct ints, π[c] = prototype of class c); got {value!r}"
        )
    return torch.tensor(items, dtype=torch.int64)

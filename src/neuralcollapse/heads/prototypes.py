"""Class prototypes on the unit sphere for fixed-classifier heads: estimation and summary statistics.

DL2PA: M. S. Ebrahimi Saadabadi, A. Dabouei, S. Rahimi Malakshan, N. M. Nasrabadi, "Hyperspherical
Classification with Dynamic Label-to-Prototype Assignment", CVPR 2024 (reference msed-Ebrahimi/DL2PA_CVPR24);
HPN: P. Mettes, E. van der Pol, C. Snoek, "Hyperspherical Prototype Networks", NeurIPS 2019 (reference
psmmettes/hpn); docs/methods.md §7.1 and §8.

When d ≥ K − 1 the optimum of every separation criterion is the simplex ETF (max cosine −1/(K−1)); below that
the prototypes are optimised. The paper's Gaussian potential with t = 2 is soft and leaves K = 100, d = 64
poorly separated, so ``method="auto"`` anneals t and finishes with a soft max-min stage (docs/methods.md §7.1).
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from .._validation import check_choice, check_floating_dtype, check_matrix, check_positive
from ._base import check_int, one_thread, unit_rows
from .etf import random_orthonormal, simplex_etf

__all__ = ["PROTOTYPE_METHODS", "optimize_prototypes", "prototype_stats"]

#: Methods of :func:`optimize_prototypes`.
PROTOTYPE_METHODS: tuple[str, ...] = ("auto", "etf", "two_stage", "cross_polytope", "dl2pa", "hpn")
#: DL2PA paper: SGD with lr 0.1 for 1000 iterations (§3.2 of the paper; docs/methods.md §7.1).
DEFAULT_STEPS = 1000
DEFAULT_LR = 0.1
#: t of the Gaussian potential of Wang & Isola (ICML 2020) used by DL2PA.
DL2PA_T = 2.0
#: Stage 1 of "two_stage": t annealed geometrically between these values (loss ÷ t keeps the step size).
_STAGE1_T = (2.0, 64.0)
#: Stage 2 of "two_stage": soft max-min temperature τ annealed geometrically, Adam learning rate.
_STAGE2_TAU = (0.05, 0.002)
_STAGE2_LR = 3e-3


def _anneal(start: float, end: float, step: int, steps: int) -> float:
    """Geometric interpolation from ``start`` (step 0) to ``end`` (last step)."""
    return start * (end / start) ** (step / max(steps - 1, 1))


def _off_diagonal(gram: Tensor, fill: float) -> Tensor:
    """Copy of ``gram`` with ``fill`` on the diagonal."""
    return gram.clone().fill_diagonal_(fill)


def _two_stage(k: int, d: int, steps: int, lr: float, generator: torch.Generator) -> Tensor:
    """The annealed Gaussian-potential + soft max-min optimisation of docs/methods.md §7.1 (float64, CPU).

    Gradients are written out (G = PPᵀ, ∂L/∂P = (S + Sᵀ)P for S = ∂L/∂G) so each step costs two K×K×d matrix
    products and a handful of K×K element-wise operations. With w the softmax of scale·G over the ordered pairs
    i ≠ j (weights summing to 1):

    - Stage 1: L₁ = (1/t)·log mean_{i≠j} exp(2t·cos_ij) (the potential log mean exp(−t‖p_i − p_j‖²) of unit
      vectors up to the constant −2t, divided by t); ∂L₁/∂G_ij = 2w_ij, so ∂L₁/∂P = 4·wP. SGD ``lr``, t from 2
      to 64.
    - Stage 2: L₂ = τ·LSE_{i<j}(cos_ij/τ); ∂L₂/∂P = 2·wP. Adam (lr 3e−3, β = (0.9, 0.999), ε = 1e−8), τ from
      0.05 to 0.002.

    Rows are re-normalised after every step; the iterate with the lowest maximal off-diagonal cosine over both
    stages is returned.
    """
    p = unit_rows(torch.randn(k, d, generator=generator, dtype=torch.float64))
    # −inf on the diagonal: excluded from every softmax and max below.
    mask = torch.zeros(k, k, dtype=torch.float64).fill_diagonal_(-math.inf)
    best, best_max = p, math.inf

    def pair_weights(current: Tensor, scale: float) -> Tensor:
        nonlocal best, best_max
        logits = torch.addmm(mask, current, current.T, alpha=scale)  # scale·G with −inf diagonal
        value = float(logits.max()) / scale  # max off-diagonal cosine of the current iterate
        if value < best_max:
            best, best_max = current.clone(), value
        return torch.softmax(logits.view(-1), dim=0).view(k, k)

    for step in range(steps):
        t = _anneal(*_STAGE1_T, step, steps)
        p = unit_rows(p - (4.0 * lr) * (pair_weights(p, 2.0 * t) @ p))

    beta1, beta2, eps = 0.9, 0.999, 1e-8
    m = torch.zeros_like(p)
    v = torch.zeros_like(p)
    for step in range(steps):
        tau = _anneal(*_STAGE2_TAU, step, steps)
        grad = 2.0 * (pair_weights(p, 1.0 / tau) @ p)
        m.mul_(beta1).add_(grad, alpha=1.0 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
        denom = (v / (1.0 - beta2 ** (step + 1))).sqrt_().add_(eps)
        p = unit_rows(p - (_STAGE2_LR / (1.0 - beta1 ** (step + 1))) * (m / denom))
    pair_weights(p, 1.0)
    return best


def _cross_polytope(k: int, d: int, generator: torch.Generator) -> Tensor:
    """⌊K/2⌋ antipodal pairs ±e_i (+ e_{⌊K/2⌋} when K is odd), rotated by a seeded random orthogonal matrix."""
    if k > 2 * d:
        raise ValueError(
            f"`method`='cross_polytope' needs num_classes <= 2*dim = {2 * d}; got num_classes={k}. "
            f"Use method='auto' (optimised prototypes)"
        )
    # row i = ±e_{i // 2} (+ for even i): pairs (2j, 2j+1) are antipodal; for odd K the last row is alone on
    # its axis ⌊K/2⌋ < d.
    rows = torch.arange(k)
    points = torch.zeros(k, d, dtype=torch.float64)
    points[rows, rows // 2] = 1.0 - 2.0 * (rows % 2).double()
    return points @ random_orthonormal(d, d, generator).T


def _dl2pa(k: int, d: int, steps: int, lr: float, subset_size: int, generator: torch.Generator) -> Tensor:
    """DL2PA's estimation verbatim: L = log mean_{i<j∈S} exp(−t‖p_i − p_j‖²), t = 2, on normalised rows, SGD,
    re-projection to the sphere after every step; S a random subset of ``subset_size`` classes per step."""
    p = unit_rows(torch.randn(k, d, generator=generator, dtype=torch.float64))
    for _ in range(steps):
        index = torch.randperm(k, generator=generator)[:subset_size] if subset_size < k else None
        leaf = p.clone().requires_grad_(True)
        chosen = unit_rows(leaf if index is None else leaf[index])
        sq_dist = torch.pdist(chosen, p=2).pow(2)
        loss = torch.logsumexp(-DL2PA_T * sq_dist, dim=0) - math.log(sq_dist.numel())
        (grad,) = torch.autograd.grad(loss, leaf)
        p = unit_rows(p - lr * grad)
    return p


def _hpn(k: int, d: int, steps: int, lr: float, generator: torch.Generator) -> Tensor:
    """HPN's estimation: minimise (1/K)Σ_i max_{j≠i} cos(p_i, p_j) by SGD with re-normalisation after every step.

    The reference re-creates its SGD optimiser (momentum 0.9) after every step, so the momentum buffer never
    carries over and the update is plain SGD; reproduced as such.
    """
    p = unit_rows(torch.randn(k, d, generator=generator, dtype=torch.float64))
    for _ in range(steps):
        leaf = p.clone().requires_grad_(True)
        gram = leaf @ leaf.T
        loss = (gram - 3.0 * torch.eye(k, dtype=gram.dtype)).amax(dim=1).mean()
        (grad,) = torch.autograd.grad(loss, leaf)
        p = unit_rows(p - lr * grad)
    return p


def _warn_if_duplicates(prototypes: Tensor, method: str, block: int = 1024) -> None:
    """Warn, naming the first pair, if two of the returned unit rows coincide to the output dtype's precision
    (cosine >= 1 − 4·eps): two classes would share one prototype. Blockwise, O(block·K) memory."""
    p = prototypes.detach().to(device="cpu", dtype=torch.float64)
    limit = 1.0 - 4.0 * torch.finfo(prototypes.dtype).eps
    for start in range(0, p.shape[0], block):
        gram = p[start : start + block] @ p.T
        rows = torch.arange(gram.shape[0])
        gram[rows, rows + start] = -math.inf  # i = j
        hits = (gram >= limit).nonzero()
        if hits.numel():
            row, col = int(hits[0, 0]), int(hits[0, 1])
            i, j = sorted((row + start, col))
            warnings.warn(
                f"optimize_prototypes(method={method!r}): prototypes {i} and {j} coincide (cosine "
                f"{float(gram[row, col]):.9f}); two classes would share one prototype. Use another "
                "method, more steps or a larger `dim`",
                UserWarning,
                stacklevel=3,
            )
            return


def optimize_prototypes(
    num_classes: int,
    dim: int,
    steps: int = DEFAULT_STEPS,
    lr: float = DEFAULT_LR,
    seed: int = 0,
    method: str = "auto",
    *,
    subset_size: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """K well-separated unit prototypes in R^d (docs/methods.md §7.1; DL2PA, CVPR 2024, §3.2 / Eqs. 4–5).

    Methods:

    - ``"auto"`` (default): the exact simplex ETF (:func:`simplex_etf`, max cosine −1/(K−1), optimal) when
      d ≥ K − 1, else ``"two_stage"``.
    - ``"etf"``: the simplex ETF (d ≥ K − 1 required).
    - ``"two_stage"``: float64, full batch. Stage 1 (``steps``): Gaussian potential
      log mean_{i<j} exp(−t‖p_i − p_j‖²) (Wang & Isola, ICML 2020) with t annealed geometrically 2 → 64 and the
      loss divided by t, SGD ``lr``, rows re-normalised each step. Stage 2 (``steps``): soft max-min
      τ·LSE_{i<j}(cos_ij/τ), τ annealed 0.05 → 0.002, Adam (lr 3e−3), re-normalised. Returns the iterate with
      the lowest maximal pairwise cosine. K = 100, d = 64: max cosine ≈ 0.0014 in ≈ 1 s (one CPU thread);
      K = 10, d = 3: ≈ 0.406 (Tammes optimum 0.4045). Cost O(steps·K²·d): K = 1000, d = 512 takes
      minutes; ``"cross_polytope"`` is instant there.
    - ``"cross_polytope"`` (K ≤ 2d): ⌊K/2⌋ antipodal pairs ±e_i (+ one extra axis when K is odd), randomly
      rotated; max cosine exactly 0, which is optimal whenever d + 1 < K ≤ 2d.
    - ``"dl2pa"``: the paper's procedure verbatim: random init, t = 2, SGD ``lr``, ``steps`` iterations on a
      random subset of ``subset_size`` classes per step (default all K), re-projection after each step; final
      iterate.
    - ``"hpn"``: HPN's (1/K)Σ_i max_{j≠i} cos(p_i, p_j) by plain SGD (the reference's momentum is reset every
      step) with re-normalisation; final iterate. HPN runs 10,000 steps (pass ``steps=10000``).

    Random numbers come from a fresh CPU generator seeded with ``seed`` (global RNG untouched). The work runs
    with one intra-op thread (the setting is restored afterwards), so the output is bitwise identical for equal
    arguments whatever the caller's thread count, on the same PyTorch build.

    Args:
        num_classes: K ≥ 2.
        dim: d ≥ 1.
        steps: iterations (per stage for "two_stage"); default 1000 (DL2PA).
        lr: SGD learning rate of stage 1 / "dl2pa" / "hpn"; default 0.1 (DL2PA, HPN).
        seed: random seed (default 0).
        method: one of ``PROTOTYPE_METHODS``.
        subset_size: classes per step for "dl2pa" (2…K; default K). Only valid with "dl2pa".
        dtype: floating dtype of the result (default float32).
        device: device of the result (default CPU).

    Returns:
        (K, d) tensor with unit rows. Warns (``UserWarning``) if two of them coincide to the output dtype's
        precision (two classes would share a prototype).

    Raises:
        ValueError: K < 2, d < 1, steps < 1, lr ≤ 0, unknown method, "etf" with d < K − 1, "cross_polytope" with
            K > 2d, ``subset_size`` outside [2, K] or given for another method; K > 2 with d = 1 (only ±1
            exist on the 0-sphere: prototypes would repeat).
        TypeError: non-integer counts; a ``dtype`` that is not floating.

    Example:
        >>> P = optimize_prototypes(10, 3, steps=300)
        >>> stats = prototype_stats(P)
        >>> stats["max_cosine"] < 0.42
        True
    """
    k = check_int(num_classes, "num_classes", minimum=2)
    d = check_int(dim, "dim", minimum=1)
    steps = check_int(steps, "steps", minimum=1)
    lr = check_positive(lr, "lr")
    seed = check_int(seed, "seed", minimum=0)
    check_choice(method, "method", PROTOTYPE_METHODS)
    check_floating_dtype(dtype)
    if d == 1 and k > 2:
        raise ValueError(
            f"`dim`=1 holds only 2 distinct unit vectors (±1); got num_classes={k}: prototypes would repeat. "
            "Use dim >= 2"
        )
    if subset_size is not None:
        if method != "dl2pa":
            raise ValueError(f"`subset_size` is only used with method='dl2pa'; got method={method!r}")
        subset_size = check_int(subset_size, "subset_size", minimum=2)
        if subset_size > k:
            raise ValueError(f"`subset_size` must be <= num_classes = {k}; got {subset_size}")
    if method == "auto":
        method = "etf" if d >= k - 1 else "two_stage"
    if method == "etf":
        return simplex_etf(k, d, seed, dtype=dtype, device=device)
    generator = torch.Generator().manual_seed(seed)
    grad_mode = torch.no_grad() if method in ("two_stage", "cross_polytope") else torch.enable_grad()
    with one_thread(), grad_mode:
        if method == "two_stage":
            prototypes = _two_stage(k, d, steps, lr, generator)
        elif method == "cross_polytope":
            prototypes = _cross_polytope(k, d, generator)
        elif method == "dl2pa":
            prototypes = _dl2pa(k, d, steps, lr, k if subset_size is None else subset_size, generator)
        else:
            prototypes = _hpn(k, d, steps, lr, generator)
    result = unit_rows(prototypes).to(dtype=dtype, device=device)
    _warn_if_duplicates(result, method)
    return result


def prototype_stats(prototypes: Tensor) -> dict[str, float]:
    """Separation statistics of a prototype set (docs/methods.md §7.1; DL2PA paper, Table 7).

    Rows are normalised first (float64); statistics are over the off-diagonal cosines cos_ij, i ≠ j.

    Args:
        prototypes: (K, d) prototypes, K ≥ 2.

    Returns:
        dict with ``max_cosine`` (max_{i≠j} cos_ij; the quantity "auto" minimises), ``min_cosine``,
        ``mean_cosine`` and ``mean_max_cosine`` ((1/K)Σ_i max_{j≠i} cos_ij, HPN's objective).

    Raises:
        ValueError: not a finite 2-D floating tensor, or fewer than 2 rows.

    Example:
        >>> stats = prototype_stats(simplex_etf(5, 4))
        >>> round(stats["max_cosine"], 6), round(stats["min_cosine"], 6)
        (-0.25, -0.25)
    """
    check_matrix(prototypes, "prototypes")
    if prototypes.shape[0] < 2:
        raise ValueError(f"`prototypes` must have at least 2 rows; got shape {tuple(prototypes.shape)}")
    unit = unit_rows(prototypes.detach().to(device="cpu", dtype=torch.float64))
    gram = unit @ unit.T
    k = gram.shape[0]
    off = ~torch.eye(k, dtype=torch.bool)
    values = gram[off]
    row_max = _off_diagonal(gram, -math.inf).amax(dim=1)
    return {
        "max_cosine": float(values.max()),
        "min_cosine": float(values.min()),
        "mean_cosine": float(values.mean()),
        "mean_max_cosine": float(row_max.mean()),
    }

"""Numerical building blocks shared by several detectors (one implementation each)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import Tensor

from .._validation import check_int, data_checks_enabled, warn_percentile_fraction

__all__ = [
    "SCATTER_CHUNK_ROWS",
    "check_int",
    "check_percentile",
    "keep_count",
    "linear_logits",
    "mean64",
    "numerical_rank",
    "percentile",
    "pinvh64",
    "prune_to_topk",
    "row_quadratic_form",
    "scatter64",
    "sharpen_factor",
    "warn_if_negative",
]

#: rows per block when accumulating float64 scatter matrices (bounds the float64 copy to ~chunk x D)
SCATTER_CHUNK_ROWS = 8192



def check_percentile(value: object, name: str, *, upper_open: bool = False) -> float:
    """A percentile in **percent**, in [0, 100] (or [0, 100)); warns on a value in (0, 1) (a fraction?)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"`{name}` must be a real number (percent); got {type(value).__name__}")
    v = float(value)
    if math.isnan(v) or v < 0 or v > 100 or (upper_open and v == 100):
        raise ValueError(f"`{name}` must be a percentile in [0, 100{')' if upper_open else ']'}; got {value}")
    warn_percentile_fraction(v, name)
    return v


def percentile(x: Tensor, q: float) -> float:
    """The ``q``-th percentile (percent) of all entries of ``x``, linear interpolation between order
    statistics: NumPy's default ``np.percentile`` (which OpenOOD's DICE and ReAct call)."""
    return float(np.percentile(x.detach().reshape(-1).cpu().numpy(), q))


def keep_count(dim: int, p: float, name: str = "p") -> int:
    """k = D − round(D·p/100), the number of activations SCALE/ASH keep (NumPy round-half-even, as
    OpenOOD's ``int(np.round(n * percentile / 100.0))``)."""
    k = dim - int(np.round(dim * p / 100.0))
    if k < 1:
        raise ValueError(f"`{name}`={p} keeps no activation of the {dim} features (k = {k}); use a smaller value")
    return k


def prune_to_topk(features: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Keep each row's k largest activations, zero the rest (out of place; OpenOOD's ``t.zero_().scatter_``
    writes into the caller's feature tensor). Returns ``(pruned, top values, their indices)``."""
    values, indices = features.topk(k, dim=1)
    pruned = torch.zeros_like(features).scatter_(1, indices, values)
    return pruned, values, indices


def sharpen_factor(total: Tensor, kept: Tensor) -> Tensor:
    """exp(s1/s2) per row, with factor 1 where s2 = 0 (an all-zero row, where SCALE/ASH-S give 0/0)."""
    safe = torch.where(kept != 0, kept, torch.ones_like(kept))
    return torch.exp(torch.where(kept != 0, total / safe, torch.zeros_like(total)))


def linear_logits(features: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """z = f Wᵀ + b in the features' dtype and device."""
    w = weight.to(device=features.device, dtype=features.dtype)
    b = bias.to(device=features.device, dtype=features.dtype)
    return torch.addmm(b, features, w.t())


def warn_if_negative(features: Tensor, detector: str) -> None:
    """Activation-shaping detectors assume non-negative (post-ReLU) features; warn otherwise."""
    if data_checks_enabled() and bool((features < 0).any()):
        warnings.warn(
            f"detector '{detector}' assumes non-negative (post-ReLU) features but `features` has negative "
            "entries (linear, e.g. LPC, or normalised features?); its scores may be meaningless",
            UserWarning,
            stacklevel=4,
        )


def mean64(x: Tensor) -> Tensor:
    """Column means of ``x`` in float64, accumulated in row blocks (no full float64 copy)."""
    total = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
    for start in range(0, x.shape[0], SCATTER_CHUNK_ROWS):
        total += x[start : start + SCATTER_CHUNK_ROWS].to(torch.float64).sum(0)
    return total / x.shape[0]


def scatter64(x: Tensor, center: Tensor, labels: Tensor | None = None) -> Tensor:
    """Σ_i (x_i − c_i)(x_i − c_i)ᵀ in float64, accumulated in row blocks.

    ``center`` is (D,) (c_i = center) or (K, D) with ``labels`` (c_i = center[labels[i]]).
    """
    d = x.shape[1]
    c64 = center.to(torch.float64)
    out = torch.zeros(d, d, dtype=torch.float64, device=x.device)
    for start in range(0, x.shape[0], SCATTER_CHUNK_ROWS):
        block = x[start : start + SCATTER_CHUNK_ROWS].to(torch.float64)
        shift = c64 if labels is None else c64[labels[start : start + SCATTER_CHUNK_ROWS]]
        block = block - shift
        out.addmm_(block.t(), block)
    return out


def pinvh64(matrix: Tensor) -> Tensor:
    """Pseudo-inverse of a symmetric matrix in float64 via ``eigh``, eigenvalues with
    |λ| <= D·eps·max|λ| treated as zero (SciPy's ``pinvh`` default, which scikit-learn's
    ``EmpiricalCovariance.precision_`` uses)."""
    m = matrix.to(torch.float64)
    m = (m + m.t()) / 2  # exact symmetry, so eigh sees the matrix it assumes
    eigenvalues, eigenvectors = torch.linalg.eigh(m)
    cutoff = eigenvalues.abs().max() * m.shape[0] * torch.finfo(torch.float64).eps
    keep = eigenvalues.abs() > cutoff
    inverse = torch.where(keep, 1.0 / torch.where(keep, eigenvalues, torch.ones_like(eigenvalues)), 0.0)
    return (eigenvectors * inverse) @ eigenvectors.t()


def numerical_rank(eigenvalues: Tensor, num_samples: int, input_dtype: torch.dtype) -> tuple[int, float]:
    """Numerical rank of a float64 second-moment matrix C = (1/N)Σ_i x_i x_iᵀ of N rows in R^D given in
    ``input_dtype``, from its eigenvalues; returns ``(rank, relative tolerance)``.

    λ counts when λ > tol·max λ with tol = max(D·√N·eps₆₄, (D·eps_in)²): the first term bounds the rounding
    of C's float64 accumulation and of ``eigh`` (absolute error ∝ eps·‖C‖), the second the rounding of the
    inputs themselves — a direction whose spread is below D·eps_in of the largest one is not resolved by
    the input dtype (float32: (16·1.2e-7)² ≈ 3.6e-12 for D = 16). ``matrix_rank``'s singular-value rule
    σ > max(N, D)·eps·σ_max, squared, without its growth in N.
    """
    d = eigenvalues.shape[0]
    eps_in = torch.finfo(input_dtype).eps if input_dtype.is_floating_point else torch.finfo(torch.float64).eps
    tol = max(d * math.sqrt(max(num_samples, 1)) * torch.finfo(torch.float64).eps, (d * eps_in) ** 2)
    top = float(eigenvalues.max()) if eigenvalues.numel() else 0.0
    return int((eigenvalues > tol * top).sum()) if top > 0 else 0, tol


def row_quadratic_form(x: Tensor, matrix: Tensor) -> Tensor:
    """(x_i)ᵀ A x_i for every row, as ((X A) ⊙ X).sum(1) — never the diagonal of an N×N product."""
    return (x @ matrix).mul_(x).sum(1)

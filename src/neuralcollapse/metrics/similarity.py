"""Linear centred kernel alignment (CKA) between representations (docs/methods.md §2.9).

Source: S. Kornblith, M. Norouzi, H. Lee, G. Hinton, "Similarity of Neural Network Representations
Revisited", ICML 2019, Eq. 5 (linear CKA) and §3 (HSIC form). The OCCE paper compares the layers of networks
trained with CE and CE + OCCE on a fixed test subset (e.g. 2,000 images) with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .._validation import check_choice, check_tensor

__all__ = ["CKA_FORMS", "cka_matrix", "linear_cka"]

#: ``"feature"``: ‖YᵀX‖_F² / (‖XᵀX‖_F ‖YᵀY‖_F) — cost ~ n(pq + p² + q²); ``"gram"``: ⟨XXᵀ, YYᵀ⟩_F /
#: (‖XXᵀ‖_F ‖YYᵀ‖_F) — cost ~ n²(p + q), cheaper when p, q ≫ n; ``"auto"`` picks the cheaper one.
CKA_FORMS = ("auto", "feature", "gram")


@dataclass
class _Centred:
    """A representation flattened to (n, p), column-centred in float64, with its self-similarity norm
    ‖XᵀX‖_F (= ‖XXᵀ‖_F) and, lazily, its n×n Gram matrix."""

    x: Tensor
    norm: float
    gram: Tensor | None = None

    def gram_matrix(self) -> Tensor:
        if self.gram is None:
            self.gram = self.x @ self.x.T
        return self.gram


def _prepare(x: Tensor, name: str, n: int | None = None) -> _Centred:
    check_tensor(x, name, min_ndim=2, floating=True, finite=True)
    if n is not None and x.shape[0] != n:
        raise ValueError(f"`{name}` must hold the same {n} inputs (rows) as the other representation; got {x.shape[0]}")
    if x.shape[0] < 2:
        raise ValueError(f"`{name}` must have at least 2 rows (inputs); got {x.shape[0]}")
    device = torch.device("cpu") if x.device.type == "mps" else x.device
    flat = x.detach().reshape(x.shape[0], -1).to(device=device, dtype=torch.float64)
    flat = flat - flat.mean(dim=0, keepdim=True)
    n_rows, p = flat.shape
    # ‖XᵀX‖_F = ‖XXᵀ‖_F: build the smaller square matrix
    norm = float(torch.linalg.matrix_norm(flat.T @ flat if p <= n_rows else flat @ flat.T))
    if norm == 0.0:
        raise ValueError(f"`{name}` is constant across inputs (zero after centring); CKA is undefined")
    return _Centred(flat, norm)


def _choose(form: str, n: int, p: int, q: int) -> str:
    if form != "auto":
        return form
    return "gram" if n * n * (p + q) < n * p * q else "feature"


def _cross(a: _Centred, b: _Centred, form: str) -> float:
    """‖YᵀX‖_F² = ⟨XXᵀ, YYᵀ⟩_F in the chosen form."""
    n, p = a.x.shape
    q = b.x.shape[1]
    if _choose(form, n, p, q) == "gram":
        return float((a.gram_matrix() * b.gram_matrix()).sum())
    return float((b.x.T @ a.x).square().sum())


def linear_cka(x: Tensor, y: Tensor, *, form: str = "auto") -> float:
    """Linear CKA between two representations of the same n inputs (Kornblith et al., ICML 2019, Eq. 5)::

        CKA(X, Y) = ‖YᵀX‖_F² / (‖XᵀX‖_F ‖YᵀY‖_F)
                  = HSIC(K, L) / √(HSIC(K, K) HSIC(L, L)),  K = XXᵀ, L = YYᵀ, HSIC = tr(KHLH)/(n−1)²

    for column-centred X (n×p) and Y (n×q), in float64. In [0, 1]; 1 for representations equal up to an
    orthogonal transform and isotropic scaling (and translation, removed by the centring). Inputs with more
    than two dimensions (N, C, H, W) are flattened per input.

    Args:
        x: (n, p) or (n, ...) first representation.
        y: (n, q) or (n, ...) second representation of the same inputs in the same order.
        form: ``"auto"`` (default: the cheaper of the two), ``"feature"`` (p×q cross-covariance) or
            ``"gram"`` (n×n Gram matrices, for p, q ≫ n).

    Returns:
        CKA in [0, 1].

    Raises:
        ValueError: different numbers of inputs, fewer than 2 inputs, a representation constant across
            inputs (CKA undefined), non-finite values, unknown ``form``.
        TypeError: non-tensor or integer input.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(50, 8, generator=g)
        >>> q, _ = torch.linalg.qr(torch.randn(8, 8, generator=g))
        >>> round(linear_cka(x, 3 * x @ q + 1), 6)
        1.0
    """
    check_choice(form, "form", CKA_FORMS)
    a = _prepare(x, "x")
    b = _prepare(y, "y", a.x.shape[0])
    return _cross(a, b, form) / (a.norm * b.norm)


def cka_matrix(list_x: Sequence[Tensor], list_y: Sequence[Tensor] | None = None, *, form: str = "auto") -> Tensor:
    """Layer × layer linear-CKA matrix between two networks (Kornblith et al., ICML 2019, Fig. 1; the OCCE
    paper's CE vs CE + OCCE comparison): entry (i, j) = :func:`linear_cka` (``list_x[i]``, ``list_y[j]``).

    Each representation is centred and normalised once; Gram matrices are built only when the Gram form is
    chosen for a pair and then reused.

    Args:
        list_x: activations of the first network's layers on the same n inputs, each (n, ...).
        list_y: the second network's layers; None = ``list_x`` (a symmetric self-similarity matrix).
        form: as in :func:`linear_cka`.

    Returns:
        (len(list_x), len(list_y)) float64 tensor of CKA values (on the first input's device).

    Raises:
        ValueError: empty lists, inputs with different n, constant representations, unknown ``form``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(40, 6, generator=g)
        >>> m = cka_matrix([x, x.tanh(), torch.randn(40, 3, generator=g)])
        >>> m.shape, round(m[0, 0].item(), 6), bool(m[0, 1] > m[0, 2])
        (torch.Size([3, 3]), 1.0, True)
    """
    check_choice(form, "form", CKA_FORMS)
    if isinstance(list_x, Tensor) or len(list_x) == 0:
        raise ValueError("`list_x` must be a non-empty sequence of tensors (one per layer)")
    if list_y is not None and (isinstance(list_y, Tensor) or len(list_y) == 0):
        raise ValueError("`list_y` must be a non-empty sequence of tensors (one per layer) or None")
    first = _prepare(list_x[0], "list_x[0]")
    n = first.x.shape[0]
    xs = [first] + [_prepare(t, f"list_x[{i}]", n) for i, t in enumerate(list_x) if i > 0]
    ys = xs if list_y is None else [_prepare(t, f"list_y[{j}]", n) for j, t in enumerate(list_y)]
    out = torch.empty(len(xs), len(ys), dtype=torch.float64)
    for i, a in enumerate(xs):
        for j, b in enumerate(ys):
            if list_y is None and j < i:
                out[i, j] = out[j, i]
                continue
            out[i, j] = _cross(a, b, form) / (a.norm * b.norm)
    return out.to(first.x.device)

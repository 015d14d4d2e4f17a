"""Fixed simplex equiangular tight frame (ETF) classifier, optionally with ETF + dot-regression feature handling.

Y. Yang, S. Chen, X. Li, L. Xie, Z. Lin, D. Tao, "Inducing Neural Collapse in Imbalanced Learning: Do We Really
Need a Learnable Classifier at the End of Deep Neural Network?", NeurIPS 2022 (reference
NeuralCollapseApplications/ImbalancedLearning); docs/methods.md §8. The dot-regression loss itself is the
``dot_regression`` term of :mod:`neuralcollapse.losses.prototype`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._validation import check_floating_dtype, check_positive
from ..output import HeadOutput
from ._base import HEADS, Head, check_int, unit_rows

__all__ = ["FixedETFHead", "simplex_etf"]


def random_orthonormal(rows: int, cols: int, generator: torch.Generator) -> Tensor:
    """A (rows, cols) float64 CPU matrix with orthonormal columns (rows ≥ cols), Haar-distributed.

    QR of a standard Gaussian matrix with the sign fix Q ← Q·sign(diag R) (Mezzadri, "How to generate random
    matrices from the classical compact groups", Notices AMS 2007), which makes the factorisation unique and the
    result uniformly distributed.
    """
    gaussian = torch.randn(rows, cols, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian, mode="reduced")
    signs = torch.sign(torch.diagonal(r))
    signs[signs == 0] = 1.0
    return q * signs


def _helmert_basis(num_classes: int) -> Tensor:
    """(K, K−1) float64 orthonormal basis of 1_K^⊥ (Helmert contrasts): eigenvectors of E_K = I − 11ᵀ/K for the
    eigenvalue 1, given in closed form so the result does not depend on the LAPACK build.

    Column j (1-based) has 1/√(j(j+1)) in rows 0…j−1, −j/√(j(j+1)) in row j and 0 below.
    """
    i = torch.arange(num_classes, dtype=torch.float64)[:, None]
    j = torch.arange(1, num_classes, dtype=torch.float64)[None, :]
    values = (i < j).double() - j * (i == j).double()
    return values / torch.sqrt(j * (j + 1))


def simplex_etf(
    num_classes: int,
    dim: int,
    seed: int = 0,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """K unit vectors in R^d with every pairwise cosine equal to −1/(K−1): a simplex ETF (docs/methods.md §8).

    Construction (valid down to d = K − 1): the rows of E_K = I_K − 1_K1_Kᵀ/K expressed in an orthonormal basis
    of their (K−1)-dimensional span (the Helmert basis, eigenvectors of E_K for eigenvalue 1), rows scaled to
    unit norm (each has norm √((K−1)/K)), then embedded in R^d by a seeded random d×(K−1) matrix with
    orthonormal columns (QR of a Gaussian matrix with sign fix). Papyan, Han & Donoho (PNAS 2020, Def. 1) define
    the simplex ETF; Yang et al. (NeurIPS 2022, Eq. 1) use W* = √(K/(K−1))·U·E_K, which needs d ≥ K. Computed in
    float64 on the CPU, then cast.

    Args:
        num_classes: K ≥ 2.
        dim: d ≥ K − 1.
        seed: seed of the random embedding (a fresh CPU generator; global RNG state is untouched).
        dtype: floating dtype of the result (default float32).
        device: device of the result (default CPU).

    Returns:
        (K, d) tensor with unit rows; rows i ≠ j have cosine −1/(K−1). Identical for equal arguments.

    Raises:
        ValueError: K < 2, d < 1, or d < K − 1 (no simplex ETF exists; use ``optimize_prototypes``).
        TypeError: non-integer arguments; a ``dtype`` that is not floating (unit vectors would truncate to 0).

    Example:
        >>> etf = simplex_etf(4, 3)
        >>> round(float((etf @ etf.T)[0, 1]), 6)
        -0.333333
    """
    k = check_int(num_classes, "num_classes", minimum=2)
    d = check_int(dim, "dim", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    check_floating_dtype(dtype)
    if d < k - 1:
        raise ValueError(
            f"`dim` must be >= num_classes - 1 = {k - 1} for a simplex ETF; got {d}. For d < K - 1 use "
            f"heads.optimize_prototypes(num_classes={k}, dim={d}) (hyperspherical prototypes)"
        )
    basis = _helmert_basis(k)
    rows = basis / basis.norm(dim=1, keepdim=True)
    embedding = random_orthonormal(d, k - 1, torch.Generator().manual_seed(seed))
    return (rows @ embedding.T).to(dtype=dtype, device=device)


@HEADS.register("etf")
class FixedETFHead(Head):
    """Classifier fixed to a simplex ETF W* (not learned); logits z_c = s·hᵀw*_c.

    Yang et al., NeurIPS 2022 (ETF + DR): h = normalise(BN1d(f)) (``batch_norm=True, normalize=True``) and the
    dot-regression loss; with CE, leave both off (a plain fixed-ETF classifier). An optional linear layer maps the
    backbone's ``in_features`` to the ETF dimension ``dim`` when they differ.

    Args:
        in_features: width of the backbone features.
        num_classes: number of classes K (≥ 2).
        dim: ETF dimension d ≥ K − 1 (default: ``in_features``, no projection).
        seed: seed of the ETF's random embedding (:func:`simplex_etf`).
        batch_norm: apply ``BatchNorm1d(d)`` to the features first (ETF + DR; default False).
        normalize: scale the features to unit norm (ETF + DR; default False).
        scale: s > 0 multiplying the logits (default 1).

    Attributes:
        weight: (K, d) buffer W* with unit rows (saved in ``state_dict``), in class order.
        bias: None.

    Returns (forward):
        ``HeadOutput(logits=s·h W*ᵀ, features=h, prototypes=W*, cosines=normalise(h) W*ᵀ)`` where h are the
        features after the optional projection / BN / normalisation.

    Raises:
        ValueError: d < K − 1 (use the "prototypes" head), ``scale`` ≤ 0, bad ``h``, K < 2.

    Example:
        >>> import torch
        >>> head = FixedETFHead(16, 10, batch_norm=True, normalize=True)
        >>> out = head(torch.randn(32, 16))
        >>> bool(torch.allclose(out.logits, out.cosines, atol=1e-6))
        True
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        dim: int | None = None,
        seed: int = 0,
        batch_norm: bool = False,
        normalize: bool = False,
        scale: float = 1.0,
    ) -> None:
        super().__init__(in_features, num_classes)
        self.dim = self.in_features if dim is None else check_int(dim, "dim", minimum=1)
        if self.dim < self.num_classes - 1:
            arg = "in_features" if dim is None else "dim"
            raise ValueError(
                f"`{arg}` must be >= num_classes - 1 = {self.num_classes - 1} for a simplex ETF; got {self.dim}. "
                f"Use the 'prototypes' head (optimised hyperspherical prototypes) for d < K - 1"
            )
        self.scale = check_positive(scale, "scale")
        self.normalize = bool(normalize)
        self.projection = nn.Linear(self.in_features, self.dim) if self.dim != self.in_features else None
        self.bn = nn.BatchNorm1d(self.dim) if batch_norm else None
        self.register_buffer("weight", simplex_etf(self.num_classes, self.dim, seed))
        self.register_parameter("bias", None)

    @property
    def prototypes(self) -> Tensor:
        """(K, d) the fixed ETF rows in class order (= ``weight``)."""
        return self.weight

    def forward(self, h: Tensor) -> HeadOutput:
        h = self._check_features(h)
        if self.projection is not None:
            h = self.projection(h)
        if self.bn is not None:
            h = self.bn(h)
        if self.normalize:
            h = unit_rows(h)
        logits = h @ self.weight.T
        cosines = logits if self.normalize else unit_rows(h) @ self.weight.T
        if self.scale != 1.0:
            logits = logits * self.scale
        return HeadOutput(logits=logits, features=h, prototypes=self.weight, cosines=cosines)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, dim={self.dim}, batch_norm={self.bn is not None}, "
            f"normalize={self.normalize}, scale={self.scale:g}"
        )

"""Virtual-logit matching (ViM).

Wang, Li, Feng & Zhang, "ViM: Out-Of-Distribution with Virtual-logit Matching", CVPR 2022:

- origin o = −W⁺b (the point whose logits are all zero; W⁺ the Moore-Penrose pseudo-inverse);
- C = (1/N) Σ_i (f_i − o)(f_i − o)ᵀ over the training features — **not** mean-centred (scikit-learn's
  ``EmpiricalCovariance(assume_centered=True)`` in the reference code);
- R ∈ R^{D×(D−dim)}: eigenvectors of the D − dim smallest eigenvalues of C (``eigh`` in float64; the
  reference calls a general eigen-solver on this symmetric matrix);
- α = mean_i max_k z_ik / mean_i ‖(f_i − o)R‖ on the training set;
- score s(f) = LSE(z) − α‖(f − o)R‖ with z = Wf + b (the negated ViM score).

``dim`` >= D raises: the residual space would be empty (OpenOOD then divides by zero, α = ∞ and NaN scores;
pytorch-ood silently uses D/2). The default ``dim=None`` is the one rule the library, ``evaluate`` and
``compare`` share: D // 2, decided at fit time from the features — 256 for 512-D ResNet-18 features (OpenOOD
v1.5's vim.yml), 1024 for 2048-D ResNet-50 features (the paper and OpenOOD use 1000).
"""

from __future__ import annotations

from types import MappingProxyType

import torch
from torch import Tensor

from ._utils import SCATTER_CHUNK_ROWS, check_int, linear_logits, numerical_rank, scatter64
from .base import Detector, Requires
from .registry import register_detector

__all__ = ["DEFAULT_DIM", "SWEEP_DIM", "ViM", "default_dim"]

#: principal-space dimension: None = D // 2 at fit (:func:`default_dim`; 256 for 512-D features, OpenOOD v1.5)
DEFAULT_DIM = None
#: OpenOOD v1.5's sweep
SWEEP_DIM = (256, 1000)


def _residual_norm(features: Tensor, origin: Tensor, basis: Tensor) -> Tensor:
    """‖(f − o)R‖ for every row, float64, in row blocks."""
    parts = []
    for start in range(0, features.shape[0], SCATTER_CHUNK_ROWS):
        centred = features[start : start + SCATTER_CHUNK_ROWS].to(torch.float64) - origin
        parts.append(torch.linalg.vector_norm(centred @ basis, dim=1))
    return torch.cat(parts)


def default_dim(num_features: int) -> int:
    """ViM's default principal-space dimension for D-dimensional features: ``max(1, D // 2)``.

    Example:
        >>> default_dim(512), default_dim(2048), default_dim(7)
        (256, 1024, 3)
    """
    return max(1, int(num_features) // 2)


@register_detector("vim")
class ViM(Detector):
    """ViM detector: energy minus the scaled norm of the feature's residual outside the principal space.

    Formula (Wang et al., CVPR 2022): s(f) = LSE(Wf + b) − α‖(f − o)R‖, with o = −W⁺b, R spanning the
    eigenvectors of the D − dim smallest eigenvalues of the uncentred second-moment matrix of f − o, and
    α = mean max-logit / mean residual norm on the training features.

    Args:
        dim: dimension of the principal space, 1 <= dim < D; None (default) = D // 2 decided at fit
            (:func:`default_dim`: 256 for 512-D ResNet-18 features, OpenOOD v1.5). The sweep is {256, 1000}.
            The dimension used is ``dim_`` after fitting.

    fit: ``features`` (N, D), ``weight`` (K, D), ``bias`` (K,). score: ``features`` (M, D); the logits are
    recomputed as Wf + b.

    Raises:
        ValueError: ``dim`` >= D (at fit), or the residual space is numerically zero — the features' second
            moment about o has numerical rank <= dim (``_utils.numerical_rank``: eigenvalues within the input
            dtype's and float64's rounding of zero), so α would scale rounding noise.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> f, w = torch.rand(100, 8, generator=g), torch.randn(3, 8, generator=g)
        >>> det = ViM(dim=4).fit(features=f, weight=w, bias=torch.zeros(3))
        >>> det.score(features=f[:2]).shape
        torch.Size([2])
    """

    requires = Requires(fit=("features", "weight"), score=("features",))
    defaults = MappingProxyType({"dim": DEFAULT_DIM})
    sweep = MappingProxyType({"dim": SWEEP_DIM})

    def __init__(self, dim: int | None = DEFAULT_DIM) -> None:
        self.dim = None if dim is None else check_int(dim, "dim", minimum=1)

    def _fit(self, *, features: Tensor, weight: Tensor, bias: Tensor) -> None:
        d = features.shape[1]
        dim = default_dim(d) if self.dim is None else self.dim
        if dim >= d:
            raise ValueError(
                f"`dim` must be smaller than the feature dimension D={d} (the residual space has D - dim "
                f"dimensions); got dim={dim}"
            )
        self.dim_ = dim
        w64, b64 = weight.to(torch.float64), bias.to(torch.float64)
        self.weight_, self.bias_ = w64, b64
        self.origin_ = -(torch.linalg.pinv(w64) @ b64)
        second_moment = scatter64(features, self.origin_) / features.shape[0]
        eigenvalues, eigenvectors = torch.linalg.eigh(second_moment)  # ascending eigenvalues
        rank, tol = numerical_rank(eigenvalues, features.shape[0], features.dtype)
        if rank <= dim:
            # the residual directions hold only rounding noise: alpha would scale noise by ~1e7
            raise ValueError(
                f"`features` have numerical rank {rank} <= dim={dim} about ViM's origin (eigenvalues of their "
                f"second moment below {tol:.1e}·max are rounding noise), so the residual space is numerically "
                "zero and ViM's alpha is undefined; use a `dim` below the rank"
            )
        self.basis_ = eigenvectors[:, : d - dim].contiguous()
        residual = _residual_norm(features, self.origin_, self.basis_)
        max_logit = torch.cat(
            [
                linear_logits(features[s : s + SCATTER_CHUNK_ROWS].to(torch.float64), w64, b64).amax(1)
                for s in range(0, features.shape[0], SCATTER_CHUNK_ROWS)
            ]
        )
        mean_residual = residual.mean()
        if not bool(mean_residual > 0):
            raise ValueError(
                "`features` have no component outside the principal space (all residual norms are 0), so "
                f"ViM's alpha is undefined; use a smaller `dim` (got {dim})"
            )
        self.alpha_ = float(max_logit.mean() / mean_residual)

    def _score(self, *, features: Tensor) -> Tensor:
        basis, origin = self.basis_.to(features.device), self.origin_.to(features.device)
        w, b = self.weight_.to(features.device), self.bias_.to(features.device)
        out = []
        for start in range(0, features.shape[0], SCATTER_CHUNK_ROWS):
            f64 = features[start : start + SCATTER_CHUNK_ROWS].to(torch.float64)
            energy = torch.logsumexp(linear_logits(f64, w, b), dim=1)
            residual = torch.linalg.vector_norm((f64 - origin) @ basis, dim=1)
            out.append(energy - self.alpha_ * residual)
        return torch.cat(out).to(features.dtype)

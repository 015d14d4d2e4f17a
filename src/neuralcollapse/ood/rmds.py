"""Relative Mahalanobis distance (RMDS).

Ren, Fort, Liu, Roy, Padhy & Lakshminarayanan, "A Simple Fix to Mahalanobis Distance for Improving Near-OOD
Detection", arXiv:2106.09022, 2021: the class-conditional Mahalanobis distance minus that of a
single "background" Gaussian fitted to all training features:
s(f) = max_k [ −(f − μ_k)ᵀ Σ⁺ (f − μ_k) + (f − μ₀)ᵀ Σ₀⁺ (f − μ₀) ],
μ_k, Σ as in :mod:`.mahalanobis`; μ₀, Σ₀ the mean and MLE covariance of all features (OpenOOD v1.5's
``rmds_postprocessor``). Float64 pseudo-inverses, row-wise quadratic forms.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._utils import SCATTER_CHUNK_ROWS, pinvh64, row_quadratic_form
from .base import Detector, Requires
from .mahalanobis import class_statistics, min_class_distance
from .registry import register_detector

__all__ = ["RMDS"]


@register_detector("rmds")
class RMDS(Detector):
    """Relative Mahalanobis distance detector.

    Formula (Ren et al. 2021): s(f) = max_k[−d_k(f)] + d_0(f) with d_k the Mahalanobis distance to
    class k under the shared covariance and d_0 that under the background Gaussian (μ₀, Σ₀) of all training
    features. No hyperparameters.

    fit: ``features`` (N, D), ``labels`` (N,). score: ``features`` (M, D).

    Example:
        >>> import torch
        >>> f = torch.tensor([[0.0, 0.0], [0.0, 2.0], [4.0, 0.0], [4.0, 2.0]])
        >>> det = RMDS().fit(features=f, labels=torch.tensor([0, 0, 1, 1]))
        >>> det.score(features=torch.tensor([[0.0, 1.0]]))  # class mean: d_k = 0, d_0 = 1
        tensor([1.])
    """

    requires = Requires(fit=("features", "labels"), score=("features",))

    def _fit(self, *, features: Tensor, labels: Tensor) -> None:
        n = features.shape[0]
        self.classes_, counts, self.means_, within = class_statistics(features, labels)
        self.precision_ = pinvh64(within / n)
        # total scatter = within-class + between-class scatter (law of total covariance): no second pass
        self.background_mean_ = (counts.unsqueeze(1) * self.means_).sum(0) / n
        offsets = self.means_ - self.background_mean_
        total = within + (offsets * counts.unsqueeze(1)).t() @ offsets
        self.background_precision_ = pinvh64(total / n)

    def _score(self, *, features: Tensor) -> Tensor:
        class_dist = min_class_distance(features, self.means_, self.precision_)
        mu0 = self.background_mean_.to(features.device)
        p0 = self.background_precision_.to(features.device)
        background = torch.cat(
            [
                row_quadratic_form(features[s : s + SCATTER_CHUNK_ROWS].to(torch.float64) - mu0, p0)
                for s in range(0, features.shape[0], SCATTER_CHUNK_ROWS)
            ]
        )
        return (background - class_dist).to(features.dtype)

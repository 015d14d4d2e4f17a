"""Mahalanobis distance to the closest class mean (OpenOOD: MDS).

Lee, Lee, Lee & Shin, "A Simple Unified Framework for Detecting Out-of-Distribution Samples and Adversarial
Attacks", NeurIPS 2018, Eq. (2) — class means μ_k and one shared ("tied") covariance Σ of the class-centred
training features; score max_k −(f − μ_k)ᵀ Σ⁺ (f − μ_k). As in OpenOOD v1.5, on the penultimate features
only, without input pre-processing or the feature ensemble.

Σ is the maximum-likelihood estimate (divided by N, as scikit-learn's ``EmpiricalCovariance``); its
pseudo-inverse is taken in float64 (pytorch-ood's float32 covariance with a fixed ridge scored at chance once
normalised). Quadratic forms are row-wise, never the diagonal of an N×N product.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._utils import SCATTER_CHUNK_ROWS, pinvh64, row_quadratic_form, scatter64
from .base import Detector, Requires
from .registry import register_detector

__all__ = ["Mahalanobis", "class_gaussian", "class_statistics", "min_class_distance"]


def class_statistics(features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Classes present, their counts, class means and the within-class scatter, in float64.

    Args:
        features: (N, D) features.
        labels: (N,) class indices.

    Returns:
        ``(classes (C,), counts (C,), means (C, D), scatter (D, D))`` with
        scatter = Σ_i (f_i − μ_{y_i})(f_i − μ_{y_i})ᵀ (explicitly centred, accumulated in row blocks).

    Raises:
        ValueError: fewer than two distinct classes in ``labels``.
    """
    classes, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    if classes.numel() < 2:
        raise ValueError(
            f"`labels` must contain at least two classes; got {classes.numel()} (class {classes.tolist()})"
        )
    n, d = features.shape
    sums = torch.zeros(classes.numel(), d, dtype=torch.float64, device=features.device)
    for start in range(0, n, SCATTER_CHUNK_ROWS):
        block = features[start : start + SCATTER_CHUNK_ROWS].to(torch.float64)
        sums.index_add_(0, inverse[start : start + SCATTER_CHUNK_ROWS], block)
    counts64 = counts.to(torch.float64)
    means = sums / counts64.unsqueeze(1)
    return classes, counts64, means, scatter64(features, means, inverse)


def class_gaussian(features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Class means and the pseudo-inverse of the shared MLE covariance, both float64.

    Only the classes present in ``labels`` are modelled.

    Returns:
        ``(classes (C,), means (C, D), precision (D, D))`` with Σ = (1/N) Σ_i (f_i − μ_{y_i})(f_i − μ_{y_i})ᵀ
        and precision = Σ⁺ (SciPy-``pinvh`` cut-off, as scikit-learn's ``EmpiricalCovariance``).

    Raises:
        ValueError: fewer than two distinct classes in ``labels``.
    """
    classes, _, means, scatter = class_statistics(features, labels)
    return classes, means, pinvh64(scatter / features.shape[0])


def min_class_distance(features: Tensor, means: Tensor, precision: Tensor) -> Tensor:
    """min_k (f − μ_k)ᵀ P (f − μ_k) for every row, in float64.

    Expanded as fᵀPf − 2 fᵀPμ_k + μ_kᵀPμ_k (row-wise quadratic forms; float64 keeps the cancellation
    harmless) so that the cost is N·D² + N·D·K instead of K·N·D².
    """
    p = precision.to(features.device)
    mu = means.to(features.device)
    mu_p = mu @ p
    mu_p_mu = (mu_p * mu).sum(1)
    out = []
    for start in range(0, features.shape[0], SCATTER_CHUNK_ROWS):
        x = features[start : start + SCATTER_CHUNK_ROWS].to(torch.float64)
        dist = torch.addmm(mu_p_mu.unsqueeze(0), x, mu_p.t(), alpha=-2.0)
        dist += row_quadratic_form(x, p).unsqueeze(1)
        out.append(dist.amin(dim=1))
    return torch.cat(out)


@register_detector("mahalanobis", aliases=("mds",))
class Mahalanobis(Detector):
    """Mahalanobis detector with class means and a shared covariance (alias ``"mds"``).

    Formula (Lee et al., NeurIPS 2018, Eq. 2): s(f) = max_k −(f − μ_k)ᵀ Σ⁺ (f − μ_k), μ_k and the tied MLE
    covariance Σ from the training features; Σ⁺ in float64. No hyperparameters.

    fit: ``features`` (N, D), ``labels`` (N,). score: ``features`` (M, D).

    Example:
        >>> import torch
        >>> f = torch.tensor([[0.0, 0.0], [0.0, 2.0], [4.0, 0.0], [4.0, 2.0]])
        >>> det = Mahalanobis().fit(features=f, labels=torch.tensor([0, 0, 1, 1]))
        >>> det.score(features=torch.tensor([[0.0, 2.0]]))  # Σ = diag(0, 1): one std from a mean
        tensor([-1.])
    """

    requires = Requires(fit=("features", "labels"), score=("features",))

    def _fit(self, *, features: Tensor, labels: Tensor) -> None:
        self.classes_, self.means_, self.precision_ = class_gaussian(features, labels)

    def _score(self, *, features: Tensor) -> Tensor:
        return (-min_class_distance(features, self.means_, self.precision_)).to(features.dtype)

"""Simplified Hopfield energy (SHE).

Zhang, Fu, Chen, Du, Li, Wang, Liu, Han & Zhang, "Out-of-Distribution Detection based on In-Distribution
Data Patterns Memorization with Modern Hopfield Energy", ICLR 2023: the stored pattern of class
k is the mean feature S_k of the training samples with label = prediction = k; a test sample is scored by
the inner product with the pattern of its predicted class, s(f) = ⟨f, S_ŷ⟩, ŷ = argmax z (OpenOOD v1.5
``she_postprocessor``, metric ``inner_product``).

A class without a correctly predicted training sample has no pattern: OpenOOD silently stores a NaN mean;
here ``fit`` raises, unless ``fallback="label_mean"`` (the mean of all training samples labelled k).
"""

from __future__ import annotations

from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import Tensor

from .._validation import check_choice
from ._utils import SCATTER_CHUNK_ROWS
from .base import Detector, Requires
from .registry import register_detector

__all__ = ["DEFAULT_METRIC", "FALLBACKS", "METRICS", "SHE"]

METRICS = ("inner_product", "euclidean", "cosine")
#: inner product (the paper's simplified energy; OpenOOD v1.5 she.yml)
DEFAULT_METRIC = "inner_product"
FALLBACKS = (None, "label_mean")


def _class_sums(features: Tensor, labels: Tensor, mask: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Per-class float64 feature sums and counts over the rows where ``mask`` holds."""
    sums = torch.zeros(num_classes, features.shape[1], dtype=torch.float64, device=features.device)
    counts = torch.zeros(num_classes, dtype=torch.float64, device=features.device)
    for start in range(0, features.shape[0], SCATTER_CHUNK_ROWS):
        keep = mask[start : start + SCATTER_CHUNK_ROWS]
        idx = labels[start : start + SCATTER_CHUNK_ROWS][keep]
        sums.index_add_(0, idx, features[start : start + SCATTER_CHUNK_ROWS][keep].to(torch.float64))
        counts.index_add_(0, idx, torch.ones_like(idx, dtype=torch.float64))
    return sums, counts


@register_detector("she")
class SHE(Detector):
    """SHE detector: similarity to the mean correctly-classified training feature of the predicted class.

    Formula (Zhang et al., ICLR 2023): s(f) = ⟨f, S_ŷ⟩, S_k = mean{f_i : y_i = argmax z_i = k}.

    Args:
        metric: ``"inner_product"`` (default), ``"euclidean"`` (−‖f − S_ŷ‖) or ``"cosine"``.
        fallback: ``None`` (default; a class with no correct prediction raises) or ``"label_mean"``.

    fit: ``features`` (N, D), ``labels`` (N,), ``logits`` (N, K). score: ``features`` (M, D),
    ``logits`` (M, K).

    Raises:
        ValueError: at fit, a class without correctly predicted samples (without fallback), or without any
            sample (with it).

    Example:
        >>> import torch
        >>> f = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
        >>> z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        >>> det = SHE().fit(features=f, labels=torch.tensor([0, 0, 1]), logits=z)
        >>> det.score(features=torch.tensor([[1.0, 1.0]]), logits=torch.tensor([[0.0, 1.0]]))
        tensor([2.])
    """

    requires = Requires(fit=("features", "labels", "logits"), score=("features", "logits"))
    defaults = MappingProxyType({"metric": DEFAULT_METRIC, "fallback": None})

    def __init__(self, metric: str = DEFAULT_METRIC, fallback: str | None = None) -> None:
        self.metric = check_choice(metric, "metric", METRICS)
        self.fallback = check_choice(fallback, "fallback", FALLBACKS)

    def _fit(self, *, features: Tensor, labels: Tensor, logits: Tensor) -> None:
        num_classes = logits.shape[1]
        correct = logits.argmax(dim=1) == labels
        sums, counts = _class_sums(features, labels, correct, num_classes)
        empty = counts == 0
        if bool(empty.any()):
            missing = torch.nonzero(empty).flatten().tolist()
            if self.fallback is None:
                raise ValueError(
                    f"class(es) {missing} have no correctly predicted training sample, so SHE's stored "
                    "pattern is undefined; pass fallback='label_mean' to use the mean of the samples "
                    "labelled k"
                )
            label_sums, label_counts = _class_sums(features, labels, torch.ones_like(correct), num_classes)
            absent = empty & (label_counts == 0)
            if bool(absent.any()):
                raise ValueError(
                    f"class(es) {torch.nonzero(absent).flatten().tolist()} have no training sample at all; "
                    "SHE needs at least one per class"
                )
            sums = torch.where(empty.unsqueeze(1), label_sums, sums)
            counts = torch.where(empty, label_counts, counts)
        self.patterns_ = (sums / counts.unsqueeze(1)).to(features.dtype)
        self.fallback_classes_ = torch.nonzero(empty).flatten().tolist()

    def _score(self, *, features: Tensor, logits: Tensor) -> Tensor:
        patterns = self.patterns_.to(device=features.device, dtype=features.dtype)[logits.argmax(dim=1)]
        if self.metric == "inner_product":
            return (features * patterns).sum(1)
        if self.metric == "euclidean":
            return -torch.linalg.vector_norm(features - patterns, dim=1)
        return F.cosine_similarity(features, patterns, dim=1)

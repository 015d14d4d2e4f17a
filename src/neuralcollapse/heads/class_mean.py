"""Fixed class-mean prototypes: phase 2 of supervised contrastive learning with class-mean prototypes.

P. Koromilas, T. Giannakopoulos, M. A. Nicolaou, Y. Panagakis, "Neural Collapse by Design: Learning Class
Prototypes on the Hypersphere", ICML 2026, §4.4 of docs/methods.md (reference pakoromilas/nc_by_design): after SupCon
training, one pass over the training set gives μ_c = normalise(Σ_{y_i=c} z_i) with z the normalised projection
output; prediction argmax_c μ_cᵀz(x), no training.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from .._validation import check_labels, check_matrix, check_positive, check_same_length
from ..output import HeadOutput
from ._base import HEADS, Head, unit_rows

__all__ = ["ClassMeanPrototypes"]


@HEADS.register("class_mean")
class ClassMeanPrototypes(Head):
    """Class-mean prototypes μ_c = normalise(Σ_{y_i=c} z_i) and cosine prediction argmax_c μ_cᵀ z/‖z‖.

    Fitting is one pass: :meth:`fit` on all features at once, or :meth:`reset` + :meth:`partial_fit` per batch
    (+ :meth:`all_reduce` under DDP). The running sums (float64) and counts are buffers, so they are saved in
    ``state_dict``. With ``normalize=True`` (default, §4.4) each feature row is normalised before summing; the
    sum is then normalised (equal to normalising the mean). A class without samples raises (the reference
    silently keeps a zero prototype).

    Args:
        in_features: width d of the features z.
        num_classes: number of classes K (≥ 2).
        scale: s > 0; logits = s·cos (default 1: the logits are the cosines).
        normalize: normalise each feature row before summing (default True).

    Attributes:
        weight: (K, d) unit class means (property; raises until every class has a sample).
        bias: None.
        class_sums: (K, d) float64 buffer Σ_{y_i=c} z_i.
        class_counts: (K,) int64 buffer.

    Returns (forward):
        ``HeadOutput(logits=s·cos, features=z/‖z‖, prototypes=μ, cosines=cos)``.

    Raises:
        ValueError: bad shapes / labels / NaN features; using the prototypes while a class has no sample.

    Example:
        >>> import torch
        >>> z = torch.tensor([[1.0, 0.0], [2.0, 0.2], [0.0, 1.0]])
        >>> model = ClassMeanPrototypes(2, 2).fit(z, torch.tensor([0, 0, 1]))
        >>> model.predict(torch.tensor([[0.3, 1.0], [1.0, 0.1]])).tolist()
        [1, 0]
    """

    def __init__(self, in_features: int, num_classes: int, *, scale: float = 1.0, normalize: bool = True) -> None:
        super().__init__(in_features, num_classes)
        self.scale = check_positive(scale, "scale")
        self.normalize = bool(normalize)
        self.register_buffer("class_sums", torch.zeros(self.num_classes, self.in_features, dtype=torch.float64))
        self.register_buffer("class_counts", torch.zeros(self.num_classes, dtype=torch.int64))
        self.register_parameter("bias", None)

    def reset(self) -> ClassMeanPrototypes:
        """Forget all accumulated samples; returns self."""
        self.class_sums.zero_()
        self.class_counts.zero_()
        return self

    @torch.no_grad()
    def partial_fit(self, features: Tensor, labels: Tensor) -> ClassMeanPrototypes:
        """Add a batch to the running class sums (streaming fit over a loader); returns self.

        Args:
            features: (N, d) features (detached; rows normalised first when ``normalize``).
            labels: (N,) int labels in [0, K).
        """
        check_matrix(features, "features", cols=self.in_features)
        check_labels(labels, "labels", num_classes=self.num_classes)
        if labels.ndim != 1:
            raise ValueError(f"`labels` must be 1-D; got shape {tuple(labels.shape)}")
        check_same_length(("features", features), ("labels", labels))
        z = features.detach().to(device=self.class_sums.device, dtype=torch.float64)
        if self.normalize:
            z = unit_rows(z)
        labels = labels.to(self.class_sums.device)
        self.class_sums.index_add_(0, labels, z)
        self.class_counts += torch.bincount(labels, minlength=self.num_classes)
        return self

    def fit(self, features: Tensor, labels: Tensor) -> ClassMeanPrototypes:
        """Class means from all samples at once (replaces earlier fits); returns self.

        Raises:
            ValueError: some class has no sample (the message lists them), or bad input.
        """
        self.reset().partial_fit(features, labels)
        self._check_complete(in_fit=True)
        return self

    @torch.no_grad()
    def all_reduce(self) -> ClassMeanPrototypes:
        """Sum the running sums and counts over the DDP process group (after a sharded pass); returns self."""
        if not (dist.is_available() and dist.is_initialized()):
            raise ValueError("all_reduce() needs an initialised torch.distributed process group")
        dist.all_reduce(self.class_sums)
        dist.all_reduce(self.class_counts)
        return self

    def _check_complete(self, *, in_fit: bool = False) -> None:
        missing = torch.nonzero(self.class_counts == 0).flatten().tolist()
        if not missing:
            return
        shown = f"{missing[:20]}{f' (+{len(missing) - 20} more)' if len(missing) > 20 else ''}"
        if in_fit:
            raise ValueError(
                f"`labels` must contain every class to build class-mean prototypes; class(es) {shown} have no sample"
            )
        raise ValueError(
            f"ClassMeanPrototypes is not fitted: class(es) {shown} have no sample. Call fit(features, labels), or "
            f"partial_fit over the training set, first (a post-hoc head, not trained by gradient descent)"
        )

    @property
    def is_fitted(self) -> bool:
        """True once every class has at least one sample."""
        return bool((self.class_counts > 0).all())

    @property
    def weight(self) -> Tensor:
        """(K, d) unit class means μ_c in class order (default dtype)."""
        self._check_complete()
        return unit_rows(self.class_sums).to(torch.get_default_dtype())

    @property
    def prototypes(self) -> Tensor:
        """(K, d) unit class means (= ``weight``)."""
        return self.weight

    def forward(self, h: Tensor) -> HeadOutput:
        h = self._check_features(h)
        mu = self.weight.to(h.dtype)
        u = unit_rows(h)
        cosines = u @ mu.T
        logits = cosines * self.scale if self.scale != 1.0 else cosines
        return HeadOutput(logits=logits, features=u, prototypes=mu, cosines=cosines)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale={self.scale:g}, normalize={self.normalize}"

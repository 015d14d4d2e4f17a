"""Neural relation graph (Relation).

Kim, Yun & Song, "Neural Relation Graph: A Unified Framework for Identifying Label Noise and Outlier Data",
NeurIPS 2023, Eq. (1) and Sec. 4 (OOD), as in OpenOOD v1.5's ``relation_postprocessor`` (code from
snu-mllab/Neural-Relation-Graph): with f̂ = f/√(‖f‖² + 1e−10) and p = softmax(z),

    r_ij = max(f̂_iᵀ f̂_j, 0) · p_iᵀ p_j,     s_i = Σ_j 1[|r_ij| > 0.03] · sign(r_ij) · |r_ij|^pow

over all training samples j. Since r_ij >= 0 the summand is r_ij^pow for r_ij > 0.03, else 0.

Cost O(N_test · N_train · (D + K)) time and N_train · (D + K) memory (the normalised training features and
softmax vectors). Both sides are processed in blocks with two matrix products each; a warning is raised when
N_test · N_train exceeds ``RELATION_WARN_PAIRS``. The reference normalises the caller's features in place;
here nothing is modified.
"""

from __future__ import annotations

import numbers
import warnings
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import Tensor

from .._validation import check_positive
from ._utils import check_int
from .base import Detector, Requires
from .registry import register_detector

__all__ = [
    "DEFAULT_CHUNK_ELEMENTS",
    "DEFAULT_POW",
    "DEFAULT_THRESHOLD",
    "NORM_EPS_SQ",
    "RELATION_WARN_PAIRS",
    "SWEEP_POW",
    "Relation",
]

#: kernel exponent (OpenOOD v1.5 relation.yml)
DEFAULT_POW = 1
#: OpenOOD v1.5's sweep
SWEEP_POW = (1, 2, 4, 6, 8)
#: edges with |r| <= 0.03 are dropped (the reference's ``thres``)
DEFAULT_THRESHOLD = 0.03
#: added to ‖f‖² before the square root (the reference's normaliser)
NORM_EPS_SQ = 1e-10
#: entries of one block of the test × training relation matrix (two float32 buffers of 64 MiB)
DEFAULT_CHUNK_ELEMENTS = 2**24
#: warn above this many (test, training) pairs
RELATION_WARN_PAIRS = 5e9


def _normalise(features: Tensor) -> Tensor:
    return features / torch.sqrt((features * features).sum(1, keepdim=True) + NORM_EPS_SQ)


@register_detector("relation")
class Relation(Detector):
    """Relation detector: thresholded kernel sum over the training set.

    Formula (Kim et al., NeurIPS 2023): s_i = Σ_j r_ij^pow·1[r_ij > 0.03], r_ij = max(f̂_iᵀf̂_j, 0)·p_iᵀp_j.

    Args:
        pow: kernel exponent > 0; default 1 (OpenOOD v1.5); sweep {1, 2, 4, 6, 8}.
        threshold: edge cut-off >= 0; default 0.03 (the reference's).
        chunk_elements: entries per block of the relation matrix (memory bound).

    fit: ``features`` (N, D), ``logits`` (N, K) of the training set. score: ``features`` (M, D),
    ``logits`` (M, K).

    Example:
        >>> import torch
        >>> f = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> z = torch.tensor([[9.0, -9.0], [-9.0, 9.0]])
        >>> det = Relation().fit(features=f, logits=z)
        >>> det.score(features=f, logits=z)  # each is related only to itself, r = ‖p‖² ≈ 1
        tensor([1., 1.])
    """

    requires = Requires(fit=("features", "logits"), score=("features", "logits"))
    defaults = MappingProxyType(
        {"pow": DEFAULT_POW, "threshold": DEFAULT_THRESHOLD, "chunk_elements": DEFAULT_CHUNK_ELEMENTS}
    )
    sweep = MappingProxyType({"pow": SWEEP_POW})

    def __init__(
        self,
        pow: float = DEFAULT_POW,
        threshold: float = DEFAULT_THRESHOLD,
        chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    ) -> None:
        check_positive(pow, "pow")
        self.pow = pow if isinstance(pow, numbers.Integral) else float(pow)
        self.threshold = check_positive(threshold, "threshold", strict=False)
        self.chunk_elements = check_int(chunk_elements, "chunk_elements", minimum=1)

    def _fit(self, *, features: Tensor, logits: Tensor) -> None:
        self.bank_ = _normalise(features)
        self.bank_prob_ = torch.softmax(logits, dim=1).to(features.dtype)

    def _score(self, *, features: Tensor, logits: Tensor) -> Tensor:
        n_train, n_test = self.bank_.shape[0], features.shape[0]
        if n_test * n_train > RELATION_WARN_PAIRS:
            warnings.warn(
                f"Relation scores every test sample against every training sample: {n_test} x {n_train} = "
                f"{n_test * n_train:.2e} pairs, O(N_test * N_train * (D + K)) work; this may take long",
                UserWarning,
                stacklevel=3,
            )
        dtype, device = features.dtype, features.device
        bank = self.bank_.to(device=device, dtype=dtype)
        bank_prob = self.bank_prob_.to(device=device, dtype=dtype)
        queries = _normalise(features)
        probs = torch.softmax(logits, dim=1).to(dtype)
        cols = min(n_train, max(1, self.chunk_elements // 64))
        rows = max(1, self.chunk_elements // cols)
        # reused buffers: CPU allocations of this size are page-faulted afresh on every block otherwise
        rel_buf = torch.empty(rows * cols, dtype=dtype, device=device)
        sim_buf = torch.empty(rows * cols, dtype=dtype, device=device)
        out = torch.zeros(n_test, dtype=dtype, device=device)
        for r0 in range(0, n_test, rows):
            q, qp = queries[r0 : r0 + rows], probs[r0 : r0 + rows]
            for c0 in range(0, n_train, cols):
                b, c = bank[c0 : c0 + cols], bank_prob[c0 : c0 + cols]
                rel = rel_buf[: q.shape[0] * b.shape[0]].view(q.shape[0], b.shape[0])
                sim = sim_buf[: q.shape[0] * b.shape[0]].view(q.shape[0], b.shape[0])
                torch.mm(q, b.t(), out=rel)
                torch.mm(qp, c.t(), out=sim)
                # p_iᵀp_j >= 0, so clamping the cosine at 0 before the product is the same as dropping
                # non-positive products, which the threshold (>= 0) does anyway
                rel.mul_(sim)
                F.threshold(rel, self.threshold, 0.0, inplace=True)
                if self.pow != 1:
                    rel.pow_(self.pow)
                out[r0 : r0 + q.shape[0]] += rel.sum(1)
        return out

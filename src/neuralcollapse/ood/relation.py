"""Neural relation graph (Relation).

Kim, Yun & Song, "Neural Relation Graph: A Unified Framework for Identifying Label Noise and Outlier Data",
NeurIPS 2023 (the OOD score), as in OpenOOD v1.5's ``relation_postprocessor`` (code from
snu-mllab/Neural-Relation-Graph): with f̂ = f/√(‖f‖² + 1e−10) and p = softmax(z),

    r_ij = max(f̂_iᵀ f̂_j, 0) · p_iᵀ p_j,     s_i = Σ_j 1[|r_ij| > 0.03] · sign(r_ij) · |r_ij|^pow

over all training samples j. Since r_ij >= 0 the summand is r_ij^pow for r_ij > 0.03, else 0.

Cost O(N_test · N_train · (D + K)) time and N_train · (D + K) memory (the normalised training features and
softmax vectors); a warning is raised when N_test · N_train exceeds ``RELATION_WARN_PAIRS``. The computation
is blocked on both sides (matrix products of bounded size) and skips, exactly, the (test, training) pairs
that cannot pass the threshold: |f̂| < 1 gives r_ij <= p_iᵀp_j, so a pair with p_iᵀp_j <= 0.03 contributes 0.
The training set is sorted by predicted class at fit, the cheap K-dimensional products p_iᵀp_j are computed
first, and the D-dimensional feature products only for the test rows that need a class block — for
confident classifiers most pairs of different predicted classes are skipped. The reference normalises the
caller's features in place; here nothing is modified.

**Assumption: softmax(z) is peaked** (z trained through a softmax). The edge weight p_iᵀp_j is what keeps
pairs of different classes out of the sum. The prototype head (DL2PA / HPN) emits raw cosines in [−1, 1] and
is trained without a softmax: its softmax is nearly uniform (mean max 0.19–0.25 on digits, K = 10), every
p_iᵀp_j ≈ 1/K passes the 0.03 threshold, and the score becomes Σ_j max(cos_ij, 0)/K — larger for a point
between several collapsed class clusters (OOD) than for a point on one of them. Measured on digits vs
digits-ood: AUROC 0.10 (d = 256 without the projection, all features in one orthant), 0.31 (d = 256) and
0.35 (d = 3); the same features with the logits ×5 give 0.97 / 0.65, and OpenOOD's formula gives the same
numbers to four digits (docs/reproductions.md, "DL2PA"). ``Relation.applicable(head="prototypes")`` is
therefore False (``neuralcollapse evaluate`` lists it under ``ood_inapplicable``).
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
from .base import ASSUMPTIONS, Assumption, Detector, Requires
from .registry import register_detector

__all__ = [
    "COSINE_LOGIT_HEADS",
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
#: entries of one block of the test × training relation matrix (64 MiB in float32)
DEFAULT_CHUNK_ELEMENTS = 2**24
#: warn above this many (test, training) pairs
RELATION_WARN_PAIRS = 5e9
#: relative margin on the pruning bound (float rounding of cosines slightly above 1)
_PRUNE_MARGIN = 1e-3
#: below this fraction of needed rows a block's feature product is computed on the gathered rows only
_SPARSE_ROWS = 0.5


#: Heads whose logits are unscaled cosines never trained through a softmax (DL2PA / HPN prototypes; aliases too)
COSINE_LOGIT_HEADS = frozenset({"prototypes", "dl2pa", "hyperspherical"})


def _flat_softmax(features: Tensor | None, head: str | None) -> str | None:
    if head is not None and head.strip().lower() in COSINE_LOGIT_HEADS:
        return (f"the '{head}' head's logits are raw cosines in [-1, 1] (no softmax in its loss), so softmax(z) is "
                "nearly uniform and every pair passes the relation threshold")
    return None


ASSUMPTIONS.setdefault("peaked_softmax", Assumption("logits trained through a softmax (peaked softmax)", _flat_softmax))


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
    assumptions = ("peaked_softmax",)  # p_iᵀp_j must separate classes (see the module docstring)
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
        probs = torch.softmax(logits, dim=1).to(features.dtype)
        # sorted by predicted class: blocks of one class share their (often negligible) overlap p_iᵀp_j
        order = torch.argsort(probs.argmax(dim=1), stable=True)
        self.bank_ = _normalise(features)[order]
        self.bank_prob_ = probs[order]
        counts = torch.bincount(probs.argmax(dim=1)[order], minlength=probs.shape[1]).tolist()
        self.blocks_ = _column_blocks(counts, max(1, self.chunk_elements // 64))
        # elementwise maximum of p_j over each block: p_iᵀp_j <= p_iᵀ(block max) bounds a whole block at once
        self.block_max_prob_ = torch.stack([self.bank_prob_[c0:c1].amax(dim=0) for c0, c1 in self.blocks_])

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
        # r_ij <= p_iᵀp_j (|cos| <= 1): pairs with p_iᵀp_j <= threshold contribute nothing. The margin keeps
        # the pruning exact under float rounding of cosines slightly above 1.
        cutoff = self.threshold * (1.0 - _PRUNE_MARGIN)
        candidates = torch.mm(probs, self.block_max_prob_.to(device=device, dtype=dtype).t()) > cutoff
        rows = max(1, self.chunk_elements // max(c1 - c0 for c0, c1 in self.blocks_))
        out = torch.zeros(n_test, dtype=dtype, device=device)
        for b, (c0, c1) in enumerate(self.blocks_):
            cand = torch.nonzero(candidates[:, b]).squeeze(1)
            dense = cand.numel() > _SPARSE_ROWS * n_test  # then slices beat gathers
            for s0 in range(0, n_test if dense else cand.numel(), rows):
                idx = torch.arange(s0, min(s0 + rows, n_test), device=device) if dense else cand[s0 : s0 + rows]
                sim = torch.mm(probs[s0 : s0 + rows] if dense else probs[idx], bank_prob[c0:c1].t())
                keep = (sim > cutoff).any(dim=1)
                n_keep = int(keep.sum())
                if n_keep == 0:
                    continue
                if n_keep < _SPARSE_ROWS * sim.shape[0] or not dense:
                    sel = torch.nonzero(keep).squeeze(1)
                    idx, sim = idx[sel], sim[sel]
                    q = queries[idx]
                else:
                    q = queries[s0 : s0 + rows]
                rel = torch.mm(q, bank[c0:c1].t()).mul_(sim)
                # p_iᵀp_j >= 0, so clamping the cosine at 0 first (the reference) only changes products
                # that are <= 0, which the threshold (>= 0) drops anyway
                F.threshold(rel, self.threshold, 0.0, inplace=True)
                if self.pow != 1:
                    rel.pow_(self.pow)
                out.index_add_(0, idx, rel.sum(1))
        return out


def _column_blocks(counts: list[int], max_width: int) -> list[tuple[int, int]]:
    """Column ranges of the class-sorted training bank: one per predicted class, split to <= max_width."""
    blocks, start = [], 0
    for count in counts:
        for s in range(start, start + count, max_width):
            blocks.append((s, min(s + max_width, start + count)))
        start += count
    return blocks

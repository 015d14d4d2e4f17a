"""Deep nearest neighbours (KNN).

Sun, Ming, Zhu & Li, "Out-of-Distribution Detection with Deep Nearest Neighbors", ICML 2022:
features are L2-normalised, f̂ = f / max(‖f‖, 1e−12), and the score is the negative distance to the k-th
nearest normalised training feature, s(f) = −‖f̂ − f̂_(k)‖. OpenOOD returns the negative **squared**
distance (same ranking) and normalises with ``x / ‖x‖ + 1e−10`` — the 1e−10 added to every component, not
to the norm, so a zero feature gives NaN; ``max(‖f‖, 1e−12)`` maps it to the zero vector instead.

Search is exact. ``backend="torch"`` computes ‖ŷ‖² − 2f̂ᵀŷ block by block (bounded memory) and keeps a
running top-k; ``backend="faiss"`` uses ``faiss.IndexFlatL2`` (exact, CPU, float32); ``"auto"`` picks faiss
when it is installed and the features are float32 CPU tensors. Both give the same distances up to float32
rounding.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._validation import check_choice
from ._utils import check_int
from .base import Detector, Requires
from .registry import register_detector

__all__ = ["BACKENDS", "DEFAULT_CHUNK_ELEMENTS", "DEFAULT_K", "KNN", "NORM_EPS", "SWEEP_K", "normalise_rows"]

#: k = 50 (OpenOOD v1.5 knn.yml; Sun et al. use 50 for CIFAR-10 and 1000 for ImageNet)
DEFAULT_K = 50
#: OpenOOD v1.5's sweep
SWEEP_K = (50, 100, 200, 500, 1000)
BACKENDS = ("auto", "torch", "faiss")
#: entries of one block of the query × training distance matrix (64 MiB in float32)
DEFAULT_CHUNK_ELEMENTS = 2**24
#: floor of the norm in the normalisation (``torch.nn.functional.normalize``'s eps)
NORM_EPS = 1e-12


def normalise_rows(features: Tensor) -> Tensor:
    """f / max(‖f‖, 1e−12) row-wise (a new tensor)."""
    return features / torch.linalg.vector_norm(features, dim=1, keepdim=True).clamp_min(NORM_EPS)


def _faiss() -> Any:
    try:
        import faiss  # optional dependency, imported on use
    except ImportError:
        return None
    return faiss


def _kth_sq_distance_torch(queries: Tensor, bank: Tensor, bank_sq: Tensor, k: int, budget: int) -> Tensor:
    """Squared distance from each query row to its k-th nearest bank row, exact, in blocks of ≤ budget."""
    n = bank.shape[0]
    # whole bank per block when at least 64 query rows fit in the budget, else split the bank too
    cols = n if 64 * n <= budget else max(k, budget // 64)
    rows = max(1, budget // (cols + k))
    out = []
    for r0 in range(0, queries.shape[0], rows):
        q = queries[r0 : r0 + rows]
        best = q.new_empty(q.shape[0], 0)
        for c0 in range(0, n, cols):
            # ‖y‖² − 2 qᵀy: the squared distance without the per-row constant ‖q‖², added at the end
            part = torch.addmm(bank_sq[c0 : c0 + cols].unsqueeze(0), q, bank[c0 : c0 + cols].t(), alpha=-2.0)
            part = torch.cat([best, part], dim=1) if best.shape[1] else part
            best = part.topk(min(k, part.shape[1]), dim=1, largest=False, sorted=False).values
        out.append(best.amax(dim=1) + (q * q).sum(1))
    return torch.cat(out)


@register_detector("knn")
class KNN(Detector):
    """k-th nearest-neighbour distance in the normalised feature space.

    Formula (Sun et al., ICML 2022): s(f) = −‖f̂ − f̂_(k)‖ with f̂ = f/max(‖f‖, 1e−12) and f̂_(k) the
    k-th nearest normalised training feature (exact search).

    Args:
        k: neighbour rank, 1 <= k <= N_train. Default 50 (OpenOOD v1.5); sweep {50, 100, 200, 500, 1000}.
        backend: ``"auto"`` (faiss when installed and the features are float32 on CPU), ``"torch"`` or
            ``"faiss"``.
        chunk_elements: entries of one block of the distance matrix for the torch backend (memory bound).

    fit: ``features`` (N, D). score: ``features`` (M, D).

    Raises:
        ValueError: ``k`` > number of training features; ``backend="faiss"`` without faiss installed.

    Example:
        >>> import torch
        >>> bank = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
        >>> det = KNN(k=1, backend="torch").fit(features=bank)
        >>> det.score(features=torch.tensor([[2.0, 0.0]]))  # normalised to (1, 0): distance 0
        tensor([-0.])
    """

    requires = Requires(fit=("features",), score=("features",))
    defaults = MappingProxyType({"k": DEFAULT_K, "backend": "auto", "chunk_elements": DEFAULT_CHUNK_ELEMENTS})
    sweep = MappingProxyType({"k": SWEEP_K})

    def __init__(
        self, k: int = DEFAULT_K, backend: str = "auto", chunk_elements: int = DEFAULT_CHUNK_ELEMENTS
    ) -> None:
        self.k = check_int(k, "k", minimum=1)
        self.backend = check_choice(backend, "backend", BACKENDS)
        if backend == "faiss" and _faiss() is None:
            raise ValueError("`backend`='faiss' needs the faiss package (pip install faiss-cpu); use 'torch'")
        self.chunk_elements = check_int(chunk_elements, "chunk_elements", minimum=1)

    def _resolve_backend(self, features: Tensor) -> str:
        if self.backend != "auto":
            return self.backend
        usable = features.device.type == "cpu" and features.dtype == torch.float32
        return "faiss" if usable and _faiss() is not None else "torch"

    def _fit(self, *, features: Tensor) -> None:
        n = features.shape[0]
        if self.k > n:
            raise ValueError(f"`k` must be <= the number of training features ({n}); got k={self.k}")
        bank = normalise_rows(features)
        self.backend_ = self._resolve_backend(features)
        if self.backend_ == "faiss":
            faiss = _faiss()
            self.index_ = faiss.IndexFlatL2(bank.shape[1])
            self.index_.add(np.ascontiguousarray(bank.detach().cpu().numpy(), dtype=np.float32))
            self.bank_ = self.bank_sq_ = None
        else:
            self.index_ = None
            self.bank_ = bank.detach()
            self.bank_sq_ = (self.bank_ * self.bank_).sum(1)

    def _score(self, *, features: Tensor) -> Tensor:
        queries = normalise_rows(features)
        if self.backend_ == "faiss":
            q = np.ascontiguousarray(queries.detach().cpu().numpy(), dtype=np.float32)
            dist, _ = self.index_.search(q, self.k)
            kth_sq = torch.from_numpy(dist[:, -1].copy()).to(device=features.device, dtype=features.dtype)
        else:
            bank = self.bank_.to(device=features.device, dtype=features.dtype)
            bank_sq = self.bank_sq_.to(device=features.device, dtype=features.dtype)
            kth_sq = _kth_sq_distance_torch(queries.detach(), bank, bank_sq, self.k, self.chunk_elements)
        return -kth_sq.clamp_min(0).sqrt()

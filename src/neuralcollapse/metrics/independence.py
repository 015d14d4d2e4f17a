"""Independence deficit: how many principal directions of a layer's activations keep the classifier's
accuracy (docs/methods.md §2.9).

Source: R. Feng, K. Zheng, Y. Huang, D. Zhao, M. Jordan, Z.-J. Zha, "Rank Diminishing in Deep Neural
Networks", NeurIPS 2022 (procedure of Yukun-Huang/Rank-Diminishing-in-Deep-Neural-Networks,
``run_cls_dim.py`` and ``core/pca.py``), as used by the OCCE paper (Katsikas, Passalis & Tefas, ICLR 2025
submission, Fig. 5): CE needs 22/37/64 of the 100 logit dimensions for 80/90/99 % of the accuracy on
CIFAR-100, CE + OCCE (γ = 10) 73/89/98.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .._validation import check_choice, check_labels, check_matrix, check_tensor

__all__ = ["DEFICIT_LAYERS", "DEFICIT_RATIOS", "IndependenceDeficit", "independence_deficit"]

#: accuracy fractions ρ reported by default: the paper's text (80/90/99 %) and caption (80/95/99 %)
DEFICIT_RATIOS = (0.8, 0.9, 0.95, 0.99)
#: ``"logits"``: the K-dim logit layer itself (the paper's "100-dimensional activation layer");
#: ``"features"``: penultimate features, classified through W, b after the projection
DEFICIT_LAYERS = ("logits", "features")


@dataclass(frozen=True)
class IndependenceDeficit:
    """Result of :func:`independence_deficit`.

    Attributes:
        ratio: (m,) float64, r_k = accuracy(Â_k) / full accuracy for k = 1..m (entry k−1).
        accuracy: (m,) float64, accuracy(Â_k) as a fraction in [0, 1].
        full_accuracy: accuracy of the unprojected activations, fraction in (0, 1].
        dims: ρ → k*(ρ) = min{k : r_k ≥ ρ} (None if no k reaches ρ).
        eigenvalues: (m,) float64 covariance eigenvalues in decreasing order.
    """

    ratio: Tensor
    accuracy: Tensor
    full_accuracy: float
    dims: dict[float, int | None]
    eigenvalues: Tensor

    def dim_for(self, rho: float) -> int | None:
        """k*(ρ) = min{k : r_k ≥ ρ} for any ρ (None when never reached)."""
        hit = (self.ratio >= rho).nonzero()
        return int(hit[0, 0]) + 1 if hit.numel() else None


def _classify(acts: Tensor, weight: Tensor | None, bias: Tensor | None) -> Tensor:
    out = acts if weight is None else acts @ weight.T
    return out if bias is None else out + bias


def independence_deficit(
    acts: Tensor,
    labels: Tensor,
    layer: str = "logits",
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    ratios: Sequence[float] = DEFICIT_RATIOS,
    recenter: bool = False,
) -> IndependenceDeficit:
    """Accuracy kept when a layer's activations are projected onto their top-k principal directions, for
    every k (Feng et al., NeurIPS 2022, "independence deficit"; docs/methods.md §2.9).

    Procedure (Feng's code): (1) activations A (N×m) on the test set in eval mode; (2) covariance
    Σ = (A − ā)ᵀ(A − ā)/N in float64, ``eigh``, eigenvectors V by decreasing eigenvalue; (3) for k = 1..m,
    Â_k = A V_k V_kᵀ — the *uncentred* activations projected, no mean added back (``recenter=True`` gives
    ā + (A − ā)V_kV_kᵀ instead); (4) r_k = accuracy(argmax Â_k) / accuracy(argmax A) for the logit layer,
    or with Â_kWᵀ + b and AWᵀ + b for penultimate features; (5) k*(ρ) = min{k : r_k ≥ ρ}. A network whose
    logits need many directions (large k*) has more independent logit dimensions.

    The sweep over k is cumulative: the classifier outputs are updated in place by one rank-one term
    P_{:,k} (Wv_k)ᵀ per k — cost O(N·m·K) and memory O(N·K), never O(N·m²·K) as re-projecting each k.

    Args:
        acts: (N, m) activations — logits (``layer="logits"``, m = K ≥ 2) or penultimate features.
        labels: (N,) true class indices.
        layer: ``"logits"`` (default; the paper's K-dim activation layer) or ``"features"``.
        weight: (K, m) classifier weight, required with ``layer="features"`` (and rejected otherwise).
        bias: (K,) classifier bias, optional with ``layer="features"``.
        ratios: fractions ρ in (0, 1] at which k*(ρ) is reported (default 0.8, 0.9, 0.95, 0.99).
        recenter: add the mean back after projecting (not Feng's procedure).

    Returns:
        :class:`IndependenceDeficit` (curve r_k, accuracies, full accuracy, k* per ρ, eigenvalues).

    Raises:
        ValueError: non-finite or mismatched inputs, K < 2, labels out of range, ρ outside (0, 1], a
            missing/superfluous ``weight``, or a full accuracy of 0 (the ratio is undefined).
        TypeError: non-tensor input, float labels.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> logits = torch.randn(200, 2, generator=g) @ torch.randn(2, 6, generator=g)  # rank 2
        >>> y = logits.argmax(dim=1)
        >>> res = independence_deficit(logits, y)
        >>> res.full_accuracy, res.dims[0.99], res.ratio[1].item()
        (1.0, 2, 1.0)
    """
    check_matrix(acts, "acts")
    check_choice(layer, "layer", DEFICIT_LAYERS)
    n, m = acts.shape
    check_tensor(labels, "labels", ndim=1, integer=True)
    if layer == "logits":
        if weight is not None or bias is not None:
            raise ValueError("`weight`/`bias` are only used with layer='features'; the logits are classified directly")
        num_classes = m
    else:
        if weight is None:
            raise ValueError("`weight` (K×m classifier weight) is required with layer='features'")
        check_matrix(weight, "weight", cols=m)
        num_classes = weight.shape[0]
        if bias is not None:
            check_tensor(bias, "bias", ndim=1, floating=True, finite=True)
            if bias.shape[0] != num_classes:
                raise ValueError(f"`bias` must have {num_classes} entries to match `weight`; got {tuple(bias.shape)}")
    if num_classes < 2:
        raise ValueError(f"the classifier must have at least 2 classes; got K={num_classes}")
    check_labels(labels, "labels", num_classes=num_classes, length=n)
    rhos = tuple(float(r) for r in ratios)
    for r in rhos:
        if not (0.0 < r <= 1.0) or math.isnan(r):
            raise ValueError(f"`ratios` must hold fractions in (0, 1]; got {r}")

    device = torch.device("cpu") if acts.device.type == "mps" else acts.device
    a = acts.detach().to(device=device, dtype=torch.float64)
    y = labels.to(device)
    w = None if weight is None else weight.detach().to(device=device, dtype=torch.float64)
    b = None if bias is None else bias.detach().to(device=device, dtype=torch.float64)

    full_acc = float((_classify(a, w, b).argmax(dim=1) == y).to(torch.float64).mean())
    if full_acc == 0.0:
        raise ValueError("the unprojected activations classify no sample correctly; the ratio r_k is undefined")

    mean = a.mean(dim=0)
    centred = a - mean
    evals, evecs = torch.linalg.eigh(centred.T @ centred / n)
    evals, evecs = evals.flip(0), evecs.flip(1)  # decreasing eigenvalue
    proj = (centred if recenter else a) @ evecs  # (N, m): coordinates on the principal directions
    dirs = evecs.T if w is None else evecs.T @ w.T  # (m, K): each direction's effect on the outputs
    base = mean[None, :] if recenter else torch.zeros(1, m, dtype=a.dtype, device=device)
    current = _classify(base, w, b).expand(n, num_classes).contiguous().clone()  # outputs at k = 0

    # cumulative projection: Â_k's outputs = Â_{k−1}'s + one rank-one term, updated in place — O(N·K) per k.
    # (A version stacking blocks of k into an (N, block, K) tensor was measured 2–3× slower: memory-bound.)
    # ``max(dim=1).indices`` (first maximum, like argmax) is several times faster than ``argmax`` on CPU.
    hits = torch.empty(m, dtype=torch.int64, device=device)
    proj_t = proj.T.contiguous()
    for k in range(m):
        current.addr_(proj_t[k], dirs[k])
        hits[k] = (current.max(dim=1).indices == y).sum()
    acc = hits.to(torch.float64) / n
    ratio = acc / full_acc
    result = IndependenceDeficit(ratio=ratio, accuracy=acc, full_accuracy=full_acc, dims={}, eigenvalues=evals)
    result.dims.update({r: result.dim_for(r) for r in rhos})
    return result

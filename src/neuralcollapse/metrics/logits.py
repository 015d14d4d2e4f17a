"""Distributions of target and non-target logits (docs/methods.md §2.9, "Activation distributions").

Source: Katsikas, Passalis & Tefas, "Learning anti-classes with one-cold cross entropy loss" (ICLR 2025
submission; IEEE TNNLS 2025), Appendix A.3: histograms of z_{i,y_i} and of z_{i,k}, k ≠ y_i; under the
uniform one-cold target the complementary (non-target) logits of a sample become equal, so the mean over
samples of their standard deviation → 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .._validation import check_logits_target, check_tensor

__all__ = ["LogitDistributions", "logit_distributions", "logit_histogram"]

#: bins of :func:`logit_histogram` (matplotlib's ``hist`` default is 10; 50 resolves the peaks)
HISTOGRAM_BINS = 50


@dataclass(frozen=True)
class LogitDistributions:
    """Result of :func:`logit_distributions`.

    Attributes:
        target: (N,) target logits z_{i,y_i}.
        non_target: (N·(K−1),) non-target logits z_{i,k}, k ≠ y_i, row-major (sample i's K−1 values together).
        complementary_std: (N,) per-sample std of the K−1 non-target logits.
        complementary_std_mean: mean over samples of ``complementary_std`` (→ 0 under uniform OCCE).
    """

    target: Tensor
    non_target: Tensor
    complementary_std: Tensor
    complementary_std_mean: float


def logit_distributions(logits: Tensor, target: Tensor, *, correction: int = 0) -> LogitDistributions:
    """Split logits into target and non-target values and summarise the spread of the non-target ones
    (OCCE paper, Appendix A.3; docs/methods.md §2.9)::

        s_i = std_{k ≠ y_i} z_{i,k},   summary = (1/N) Σ_i s_i

    Args:
        logits: (N, K) logits, K ≥ 2 (any float dtype; the std is computed in float64).
        target: (N,) integer class indices in [0, K).
        correction: std degrees-of-freedom correction; 0 (default) = population std, so K = 2 (one
            non-target logit) gives s_i = 0; 1 = unbiased (needs K ≥ 3).

    Returns:
        :class:`LogitDistributions` (tensors in the input's dtype; the std in float64).

    Raises:
        ValueError: non-2-D, non-finite or empty logits, K < 2, mismatched or out-of-range target,
            ``correction`` not in {0, 1}, or correction = 1 with K = 2.
        TypeError: non-tensor input, float target.

    Example:
        >>> z = torch.tensor([[3.0, 1.0, 1.0], [0.0, 2.0, 4.0]])
        >>> d = logit_distributions(z, torch.tensor([0, 1]))
        >>> d.target.tolist(), d.non_target.tolist(), d.complementary_std_mean
        ([3.0, 2.0], [1.0, 1.0, 0.0, 4.0], 1.0)
    """
    check_tensor(logits, "logits", ndim=2, floating=True)
    num_classes = check_logits_target(logits, target)
    if correction not in (0, 1) or isinstance(correction, bool):
        raise ValueError(f"`correction` must be 0 (population std) or 1 (unbiased); got {correction!r}")
    if correction == 1 and num_classes < 3:
        raise ValueError(f"`correction`=1 needs K >= 3 (at least 2 non-target logits); got K={num_classes}")
    n = logits.shape[0]
    idx = target.to(logits.device).long()
    tgt = logits.gather(1, idx[:, None]).squeeze(1)
    mask = torch.ones_like(logits, dtype=torch.bool)
    mask[torch.arange(n, device=logits.device), idx] = False
    non_target = logits[mask].reshape(n, num_classes - 1)
    std = non_target.detach().to(torch.float64).std(dim=1, correction=correction)
    return LogitDistributions(
        target=tgt,
        non_target=non_target.reshape(-1),
        complementary_std=std,
        complementary_std_mean=float(std.mean()),
    )


def logit_histogram(
    values: Tensor, bins: int = HISTOGRAM_BINS, range: tuple[float, float] | None = None
) -> tuple[Tensor, Tensor]:
    """Histogram of a set of values (e.g. the ``target`` or ``non_target`` logits) as data for a plot;
    no plotting library is needed. Same binning as ``numpy.histogram``: ``bins`` equal-width bins over
    ``range`` (default: [min, max]), each half-open except the last, which includes its right edge;
    values outside ``range`` are ignored.

    Args:
        values: tensor of any shape (flattened), finite.
        bins: number of bins ≥ 1.
        range: (low, high) with low < high, or None.

    Returns:
        (edges, counts): float64 (bins + 1,) bin edges and int64 (bins,) counts, on the CPU.

    Raises:
        ValueError: empty or non-finite values, bins < 1, an invalid range.

    Example:
        >>> edges, counts = logit_histogram(torch.tensor([0.0, 0.5, 1.0, 2.0]), bins=2)
        >>> edges.tolist(), counts.tolist()
        ([0.0, 1.0, 2.0], [2, 2])
    """
    check_tensor(values, "values", floating=True, finite=True)
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"`bins` must be a positive int; got {bins!r}")
    flat = values.detach().reshape(-1).to("cpu", torch.float64)
    if range is not None:
        lo, hi = (float(v) for v in range)
        if not lo < hi:
            raise ValueError(f"`range` must be (low, high) with low < high; got {range!r}")
    else:
        lo, hi = float(flat.min()), float(flat.max())
        if lo == hi:  # numpy's convention for a single value: a unit-wide range around it
            lo, hi = lo - 0.5, hi + 0.5
    counts, edges = torch.histogram(flat, bins=bins, range=(lo, hi))
    return edges, counts.to(torch.int64)

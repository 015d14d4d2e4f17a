"""Latent-point-collapse (LPC) metrics of the penultimate representation (docs/methods.md §6.5).

Paper: L. Sbailò, L. M. Ghiringhelli, "Latent Point Collapse on a Low Dimensional Embedding in Deep Neural
Network Classifiers" (arXiv 2310.08224); reference code luigisbailo/lpc (``lpc/metrics.py``), older
versions luigisbailo/latent_point_collapse and luigisbailo/binary_encoding.

- :func:`within_class_variability` — Σ_W^LPC (unweighted mean of unbiased class covariances), NC1^LPC,
  equiangularity, max-angle, equinorm.
- :func:`separation_ratio` — min distance to another class centroid over distance to the own centroid.
- :func:`norm_variation` — coefficients of variation of ‖h_i‖ and of |h_ij|.
- :func:`kl_entropy` — Kozachenko–Leonenko k-NN differential entropy (nats, per dimension).
- :func:`binarity` / :func:`fit_gmm_1d` — per-dimension two-component Gaussian mixture (EM with
  scikit-learn's defaults, implemented in torch).

Every function takes ``labels`` as *the grouping the caller chooses*: the LPC reference groups by the
network's **predictions** (never-predicted classes skipped); pass true labels for the other grouping.
Everything is computed in float64; inputs are never modified.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from scipy.special import digamma
from torch import Tensor

from .._validation import (
    check_choice,
    check_labels,
    check_matrix,
    check_positive,
    check_tensor,
)

__all__ = [
    "BINARITY_MAX_SAMPLES",
    "GMM1D",
    "GMM_MAX_ITER",
    "GMM_REG_COVAR",
    "GMM_TOL",
    "KL_ENTROPY_K",
    "KL_ENTROPY_METRICS",
    "LPC_MAX_SAMPLES",
    "binarity",
    "fit_gmm_1d",
    "kl_entropy",
    "norm_variation",
    "separation_ratio",
    "within_class_variability",
]

#: ≤ 10,000 samples for separation ratio and KL entropy (docs/methods.md §6.5; reference subset size)
LPC_MAX_SAMPLES = 10_000
#: ≤ 10,000 training samples for binarity (docs/methods.md §6.5)
BINARITY_MAX_SAMPLES = 10_000
#: k-th neighbour of the Kozachenko–Leonenko estimator (current reference; the older version used 100)
KL_ENTROPY_K = 20
#: floor inside the logarithm of the k-NN distance (reference ``EPSILON``); duplicates sit on it by design
KL_LOG_FLOOR = 1e-10
#: distance of the k-NN search: Euclidean (current) or Chebyshev / L∞ (older reference version)
KL_ENTROPY_METRICS = ("euclidean", "chebyshev")
#: scikit-learn ``GaussianMixture`` defaults (docs/methods.md §6.5): variance floor, tolerance, iterations
GMM_REG_COVAR = 1e-6
GMM_TOL = 1e-3
GMM_MAX_ITER = 100
#: scikit-learn ``KMeans`` defaults used by the mixture's k-means initialisation
_KMEANS_MAX_ITER = 300
_KMEANS_TOL = 1e-4
#: scikit-learn's StandardScaler treats a scale below 10·eps as zero (unscaled dimension)
_ZERO_SCALE = 10 * torch.finfo(torch.float64).eps
#: elements per float64 temporary in the chunked loops (≈ 128 MiB)
_CHUNK_ELEMENTS = 1 << 24
_NORM_KEYS = ("samples", "class_means")


# ----------------------------------------------------------------------------------------------------------
# shared helpers
# ----------------------------------------------------------------------------------------------------------
def _work_device(t: Tensor) -> torch.device:
    """Where the float64 work runs: the input's device, except backends without float64 (MPS)."""
    return torch.device("cpu") if t.device.type == "mps" else t.device


def _as_float64(features: Tensor) -> Tensor:
    return features.detach().to(device=_work_device(features), dtype=torch.float64)


def _check_features(features: Any, name: str = "features") -> Tensor:
    return check_matrix(features, name)


def _check_grouping(labels: Any, n: int, name: str = "labels") -> Tensor:
    check_tensor(labels, name, ndim=1, integer=True)
    check_labels(labels, name, length=n)
    if bool((labels < 0).any()):
        raise ValueError(f"`{name}` must hold non-negative class indices; got minimum {int(labels.min())}")
    return labels


def _check_max_samples(max_samples: int | None, name: str = "max_samples") -> int | None:
    if max_samples is None:
        return None
    if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1:
        raise ValueError(f"`{name}` must be a positive int or None; got {max_samples!r}")
    return max_samples


def _subsample(n: int, max_samples: int | None, seed: int, device: torch.device) -> Tensor | None:
    """Sorted indices of a seeded random subset of size ``max_samples`` (None = keep everything)."""
    if max_samples is None or n <= max_samples:
        return None
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randperm(n, generator=gen)[:max_samples].sort().values.to(device)


def _standardize(x: Tensor) -> Tensor:
    """Per-column (x − mean)/std with the population std; zero-variance columns are centred but unscaled
    (scikit-learn ``StandardScaler``)."""
    mean = x.mean(dim=0)
    std = x.std(dim=0, correction=0)
    std = torch.where(std < _ZERO_SCALE, torch.ones_like(std), std)
    return (x - mean) / std


def _groups(labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(present class ids, index of each sample's group in [0, C), counts per group)."""
    classes, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    return classes, inverse, counts


def _group_means(x: Tensor, inverse: Tensor, counts: Tensor) -> Tensor:
    sums = torch.zeros(counts.shape[0], x.shape[1], dtype=x.dtype, device=x.device)
    sums.index_add_(0, inverse, x)
    return sums / counts.to(x.dtype)[:, None]


def _cv(values: Tensor) -> float:
    """Population std / mean; 0 when the mean is 0 (all-zero input: no variation, as the reference)."""
    mean = float(values.mean())
    if mean == 0.0:
        return 0.0
    return float(values.std(correction=0)) / mean


# ----------------------------------------------------------------------------------------------------------
# within-class variability
# ----------------------------------------------------------------------------------------------------------
def within_class_variability(features: Tensor, labels: Tensor, *, singletons: str = "raise") -> dict[str, float]:
    """LPC collapse metrics of the penultimate features: Σ_W^LPC, NC1^LPC, equiangularity, max-angle,
    equinorm (Sbailò & Ghiringhelli, arXiv 2310.08224, §4; docs/methods.md §6.5; reference
    ``get_collapse_metrics``).

    With C groups present in ``labels`` (absent class ids are skipped), class means μ_c, the global mean
    μ_G of all samples and centred means μ̃_c = μ_c − μ_G::

        Σ_W = (1/C) Σ_c Cov_c            (unbiased covariance of each group, unweighted over groups)
        Σ_B = (1/C) Σ_c μ̃_c μ̃_cᵀ
        nc1 = tr(Σ_W Σ_B†) / C,  nc1_per_dim = nc1 / d,  sigma_w = mean of all d² entries of Σ_W
        equiangularity = std_{c<c'} cos(μ̃_c, μ̃_c')          (population std)
        max_angle      = mean_{c<c'} |cos(μ̃_c, μ̃_c') + 1/(C−1)|
        equinorm       = std_c ‖μ̃_c‖ / mean_c ‖μ̃_c‖          (population std)

    Σ_B† keeps eigenvalues λ > d·ε_float64·λ_max (``scipy.linalg.pinv``'s default on the d×d Σ_B, as the
    reference) and is applied through the eigenvectors, so no d×d matrix is formed when C < d. A zero-norm
    centred mean has cosine 0 with everything (reference convention). Note the differences from
    :func:`neural_collapse`'s ``nc1`` (docs/methods.md §9): Σ_W there weights classes by their counts with 1/N,
    here it is the unweighted mean of unbiased covariances.

    All values are 0 at perfect collapse (lower = more collapsed) except ``sigma_w`` which → 0 only with the
    LPC penalty (it is not scale invariant).

    Args:
        features: (N, d) penultimate features h (any float dtype; float64 internally).
        labels: (N,) integer grouping — the network's predictions (LPC reference) or the true labels.
        singletons: a group with one sample has no unbiased covariance: ``"raise"`` (default) raises;
            ``"skip"`` drops such groups from every quantity (C counts only the remaining groups).

    Returns:
        dict with float values ``nc1``, ``nc1_per_dim``, ``sigma_w``, ``equiangularity``, ``max_angle``,
        ``equinorm`` and the int ``num_classes`` (C, groups used).

    Raises:
        ValueError: non-finite features, mismatched lengths, negative labels, fewer than 2 groups, a
            one-sample group with ``singletons="raise"``, or coinciding class means (Σ_B = 0: NC1 undefined).
        TypeError: non-tensor input, integer features or float labels.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> means = torch.eye(3, 5) * 10
        >>> y = torch.arange(3).repeat(20)
        >>> h = means[y] + 0.01 * torch.randn(60, 5, generator=g)
        >>> m = within_class_variability(h, y)
        >>> m["nc1"] < 1e-5, round(m["max_angle"], 3)
        (True, 0.0)
    """
    _check_features(features)
    _check_grouping(labels, features.shape[0])
    check_choice(singletons, "singletons", ("raise", "skip"))
    x = _as_float64(features)
    y = labels.to(x.device)
    classes, inverse, counts = _groups(y)
    if bool((counts < 2).any()):
        lonely = classes[counts < 2].tolist()
        if singletons == "raise":
            shown = ", ".join(map(str, lonely[:10])) + (", ..." if len(lonely) > 10 else "")
            raise ValueError(
                f"`labels` has {len(lonely)} group(s) with a single sample (class {shown}); an unbiased "
                "covariance needs >= 2 samples per group — pass singletons='skip' to drop them"
            )
        keep = counts[inverse] >= 2
        x, y = x[keep], y[keep]
        classes, inverse, counts = _groups(y)
    num_classes = int(classes.numel())
    if num_classes < 2:
        raise ValueError(f"`labels` must contain at least 2 groups (with >= 2 samples); got {num_classes}")
    d = x.shape[1]

    means = _group_means(x, inverse, counts)
    centred_means = means - x.mean(dim=0)
    resid = x - means[inverse]
    # per-sample weight of the unweighted mean of unbiased covariances: 1 / (C (n_c − 1))
    weight = 1.0 / ((counts.to(x.dtype) - 1.0) * num_classes)
    w = weight[inverse]

    # eigenpairs of Σ_B = M̃ᵀM̃ / C through the smaller of the C×C Gram and the d×d matrix
    if num_classes < d:
        gram = centred_means @ centred_means.T / num_classes
        lam, u = torch.linalg.eigh(gram)
        lam_max = float(lam.max())
        keep = lam > d * torch.finfo(torch.float64).eps * lam_max
        vecs = centred_means.T @ u[:, keep] / torch.sqrt(num_classes * lam[keep])
    else:
        lam, vecs = torch.linalg.eigh(centred_means.T @ centred_means / num_classes)
        lam_max = float(lam.max())
        keep = lam > d * torch.finfo(torch.float64).eps * lam_max
        vecs = vecs[:, keep]
    if lam_max <= 0.0:
        raise ValueError("`features`: all group means coincide (Σ_B = 0); NC1 is undefined")
    lam = lam[keep]
    # tr(Σ_W Σ_B†) = Σ_j v_jᵀ Σ_W v_j / λ_j, with v_jᵀ Σ_W v_j = Σ_i w_i (r_i · v_j)²
    proj = resid @ vecs
    trace = float(((w[:, None] * proj.square()).sum(dim=0) / lam).sum())
    # mean of all entries of Σ_W = 1ᵀ Σ_W 1 / d² = Σ_i w_i (r_i · 1)² / d²
    sigma_w = float((w * resid.sum(dim=1).square()).sum()) / (d * d)

    norms = centred_means.norm(dim=1)
    safe = torch.where(norms > 0, norms, torch.ones_like(norms))
    unit = centred_means / safe[:, None]
    unit = torch.where((norms > 0)[:, None], unit, torch.zeros_like(unit))
    iu = torch.triu_indices(num_classes, num_classes, offset=1, device=x.device)
    cos = (unit @ unit.T)[iu[0], iu[1]]
    return {
        "nc1": trace / num_classes,
        "nc1_per_dim": trace / num_classes / d,
        "sigma_w": sigma_w,
        "equiangularity": float(cos.std(correction=0)),
        "max_angle": float((cos + 1.0 / (num_classes - 1)).abs().mean()),
        "equinorm": _cv(norms),
        "num_classes": num_classes,
    }


# ----------------------------------------------------------------------------------------------------------
# separation ratio
# ----------------------------------------------------------------------------------------------------------
def separation_ratio(
    features: Tensor,
    labels: Tensor,
    *,
    max_samples: int | None = LPC_MAX_SAMPLES,
    seed: int = 0,
    return_details: bool = False,
) -> float | dict[str, Any]:
    """Mean separation ratio r_i = min_{c'≠c} ‖h_i − μ_{c'}‖ / ‖h_i − μ_c‖ (Sbailò & Ghiringhelli, arXiv
    2310.08224; docs/methods.md §6.5; reference ``get_distance_margins``).

    c is sample i's group in ``labels`` (true labels or predictions — the caller's choice); centroids μ are
    the group means of the (sub)sample; absent class ids are skipped. Samples sitting exactly on their own
    centroid (‖h_i − μ_c‖ = 0, r = ∞) are excluded from the mean and counted. Distances are computed
    exactly (differences, not the Gram expansion), so strongly collapsed features keep their precision.
    Larger = better separated; it grows without bound under latent point collapse.

    Args:
        features: (N, d) features h.
        labels: (N,) integer grouping.
        max_samples: evaluate on a seeded random subset of at most this many samples (reference: ≤ 10,000
            test samples); None = all.
        seed: seed of the subset.
        return_details: also return the per-sample ratios and the counts.

    Returns:
        The mean over samples with finite r (``math.inf`` if every sample sits on its centroid). With
        ``return_details=True`` a dict: ``mean``, ``ratios`` ((n,) float64, inf where excluded),
        ``num_excluded``, ``num_samples``, ``indices`` (the subset's rows, or None).

    Raises:
        ValueError: non-finite features, mismatched lengths, negative labels, fewer than 2 groups, bad
            ``max_samples``.

    Example:
        >>> h = torch.tensor([[0.0], [2.0], [10.0], [12.0]])
        >>> separation_ratio(h, torch.tensor([0, 0, 1, 1]))  # centroids 1, 11: ratios 11, 9, 9, 11
        10.0
    """
    _check_features(features)
    _check_grouping(labels, features.shape[0])
    _check_max_samples(max_samples)
    x = _as_float64(features)
    y = labels.to(x.device)
    idx = _subsample(x.shape[0], max_samples, seed, x.device)
    if idx is not None:
        x, y = x[idx], y[idx]
    classes, inverse, counts = _groups(y)
    num_classes = int(classes.numel())
    if num_classes < 2:
        raise ValueError(f"`labels` must contain at least 2 groups; got {num_classes}")
    means = _group_means(x, inverse, counts)
    own = (x - means[inverse]).norm(dim=1)
    other = torch.empty_like(own)
    rows = max(1, _CHUNK_ELEMENTS // max(1, num_classes * x.shape[1]))
    for start in range(0, x.shape[0], rows):
        sl = slice(start, start + rows)
        dist = torch.cdist(x[sl], means, compute_mode="donot_use_mm_for_euclid_dist")
        dist.scatter_(1, inverse[sl, None], math.inf)
        other[sl] = dist.min(dim=1).values
    excluded = own == 0
    ratios = torch.where(excluded, torch.full_like(own, math.inf), other / torch.where(excluded, 1.0, own))
    num_excluded = int(excluded.sum())
    mean = math.inf if num_excluded == ratios.numel() else float(ratios[~excluded].mean())
    if not return_details:
        return mean
    return {
        "mean": mean,
        "ratios": ratios,
        "num_excluded": num_excluded,
        "num_samples": int(ratios.numel()),
        "indices": idx,
    }


# ----------------------------------------------------------------------------------------------------------
# norm variation
# ----------------------------------------------------------------------------------------------------------
def norm_variation(features: Tensor, *, over: str = "samples", labels: Tensor | None = None) -> dict[str, float]:
    """Coefficients of variation of the feature norms and absolute entries (docs/methods.md §6.5; reference
    ``get_coeff_var``; Sbailò & Ghiringhelli Table 4's "CV" is ``cv_abs``).

    Over the rows v_i of a matrix (the samples h_i, or the uncentred class means μ_c with
    ``over="class_means"``)::

        cv_norm = std_i ‖v_i‖ / mean_i ‖v_i‖,    cv_abs = std_{ij} |v_ij| / mean_{ij} |v_ij|

    with population std (NumPy's ``np.std``, as the reference). A zero mean (all-zero input) gives 0.
    Lower = more uniform norms (binary-like encodings have small ``cv_abs``).

    Args:
        features: (N, d) features.
        over: ``"samples"`` (default) or ``"class_means"`` (then ``labels`` is required; absent ids skipped).
        labels: (N,) integer grouping for ``over="class_means"``.

    Returns:
        dict: ``cv_norm``, ``cv_abs``, ``norm_mean`` (mean_i ‖v_i‖).

    Raises:
        ValueError: non-finite features, unknown ``over``, missing or mismatched ``labels``.

    Example:
        >>> norm_variation(torch.tensor([[3.0, 4.0], [0.0, 10.0]]))["cv_norm"]  # norms 5 and 10
        0.3333333333333333
    """
    _check_features(features)
    check_choice(over, "over", _NORM_KEYS)
    x = _as_float64(features)
    if over == "class_means":
        if labels is None:
            raise ValueError("`labels` is required with over='class_means'")
        _check_grouping(labels, features.shape[0])
        _, inverse, counts = _groups(labels.to(x.device))
        x = _group_means(x, inverse, counts)
    elif labels is not None:
        raise ValueError("`labels` is only used with over='class_means'; got labels with over='samples'")
    norms = x.norm(dim=1)
    return {"cv_norm": _cv(norms), "cv_abs": _cv(x.abs().reshape(-1)), "norm_mean": float(norms.mean())}


# ----------------------------------------------------------------------------------------------------------
# Kozachenko–Leonenko entropy
# ----------------------------------------------------------------------------------------------------------
def _kth_neighbour_distance(x: Tensor, k: int, metric: str) -> Tensor:
    """Distance from each row of ``x`` (float64) to its k-th nearest *other* row, exactly.

    Euclidean: a float64 Gram-matrix pass preselects the k + 8 nearest candidates of each row, whose
    distances are then recomputed as ‖x_i − x_j‖ from differences. The k-th smallest exact distance is
    exact unless more than 8 rows tie with the k-th neighbour within float64 rounding — and then the value
    is the same to that rounding. Exact duplicates get distance 0 (the Gram form would give ~1e−8 instead).
    Chebyshev: exact ``cdist(p=∞)``.
    """
    n = x.shape[0]
    m = min(n - 1, k + 8) if metric == "euclidean" else k
    out = torch.empty(n, dtype=x.dtype, device=x.device)
    # bound both the (rows, n) distance block and the (rows, m, d) candidate differences
    rows = max(1, _CHUNK_ELEMENTS // max(n, m * x.shape[1]))
    sq = (x * x).sum(dim=1)
    for start in range(0, n, rows):
        sl = slice(start, min(n, start + rows))
        xs = x[sl]
        if metric == "euclidean":
            approx = sq[sl, None] + sq[None, :] - 2.0 * (xs @ x.T)
        else:
            approx = torch.cdist(xs, x, p=math.inf)
        own = torch.arange(sl.start, sl.stop, device=x.device)
        approx[torch.arange(xs.shape[0], device=x.device), own] = math.inf  # exclude the sample itself
        cand = approx.topk(m, dim=1, largest=False).indices
        if metric == "euclidean":
            exact = (x[cand] - xs[:, None, :]).norm(dim=2)
            out[sl] = exact.sort(dim=1).values[:, k - 1]
        else:
            out[sl] = approx.gather(1, cand)[:, k - 1]
    return out


def kl_entropy(
    features: Tensor,
    k: int = KL_ENTROPY_K,
    *,
    standardize: bool = True,
    per_dim: bool = True,
    metric: str = "euclidean",
    max_samples: int | None = LPC_MAX_SAMPLES,
    seed: int = 0,
) -> float:
    """Kozachenko–Leonenko k-nearest-neighbour estimate of the differential entropy, in nats (Kozachenko &
    Leonenko, Probl. Inf. Transm. 1987; Kraskov, Stögbauer & Grassberger, PRE 2004, Eq. 20; docs/methods.md §6.5;
    reference ``get_entropy``)::

        H = ψ(N) − ψ(k) + log V_d + (d/N) Σ_i log(ε_i + 1e−10)

    ε_i = distance from h_i to its k-th nearest *other* sample; V_d = volume of the unit ball: π^{d/2} /
    Γ(d/2 + 1) (Euclidean, via lgamma) or 2^d (Chebyshev). ψ is the digamma function. Duplicated samples
    have ε = 0 and sit on the 1e−10 floor by design (they drive H down). Lower = more concentrated
    (collapsed) representation.

    Current reference: k = 20, Euclidean, each dimension standardised (population std; zero-variance
    dimensions centred but unscaled), result ÷ d. Older reference version: ``k=100, metric="chebyshev",
    standardize=False, per_dim=False``.

    Args:
        features: (N, d) features.
        k: neighbour order, 1 ≤ k < n (n = samples used).
        standardize: standardise each dimension first.
        per_dim: divide by d (entropy per dimension).
        metric: ``"euclidean"`` or ``"chebyshev"``.
        max_samples: seeded random subset of at most this many samples (reference: ≤ 10,000); None = all.
        seed: seed of the subset.

    Returns:
        H (or H/d) in nats.

    Raises:
        ValueError: non-finite features, k < 1 or k ≥ n, unknown metric, bad ``max_samples``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> h = torch.randn(2000, 2, generator=g, dtype=torch.float64)
        >>> round(kl_entropy(h, k=5), 1)  # N(0, I_2): H/d = 0.5 log(2πe) ≈ 1.419
        1.4
    """
    _check_features(features)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"`k` must be a positive int; got {k!r}")
    check_choice(metric, "metric", KL_ENTROPY_METRICS)
    _check_max_samples(max_samples)
    x = _as_float64(features)
    idx = _subsample(x.shape[0], max_samples, seed, x.device)
    if idx is not None:
        x = x[idx]
    n, d = x.shape
    if k >= n:
        raise ValueError(f"`k` must be smaller than the number of samples used ({n}); got k={k}")
    if standardize:
        x = _standardize(x)
    eps = _kth_neighbour_distance(x, k, metric)
    if metric == "euclidean":
        log_vd = 0.5 * d * math.log(math.pi) - math.lgamma(0.5 * d + 1.0)
    else:
        log_vd = d * math.log(2.0)
    h = float(digamma(n) - digamma(k)) + log_vd + d * float(torch.log(eps + KL_LOG_FLOOR).mean())
    return h / d if per_dim else h


# ----------------------------------------------------------------------------------------------------------
# binarity: per-dimension two-component Gaussian mixtures
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GMM1D:
    """Two-component 1-D Gaussian mixtures fitted independently to each of m columns.

    Attributes:
        weights: (m, 2) mixing weights π.
        means: (m, 2) component means μ.
        variances: (m, 2) component variances σ² (including the ``reg_covar`` floor).
        score: (m,) mean log-likelihood per sample of each column under its fitted mixture (nats;
            scikit-learn's ``GaussianMixture.score``).
        n_iter: (m,) EM iterations used.
        converged: (m,) whether the lower bound changed by less than ``tol``.
    """

    weights: Tensor
    means: Tensor
    variances: Tensor
    score: Tensor
    n_iter: Tensor
    converged: Tensor


def _kmeans_1d(x: Tensor, gen: torch.Generator) -> Tensor:
    """Labels (m, n) in {0, 1} of a 2-means clustering of each row of x (m, n), as scikit-learn's
    ``KMeans(n_clusters=2, n_init=1)``: greedy k-means++ seeding (2 + ⌊log 2⌋ = 2 local trials), Lloyd
    iterations until the labels stop changing or the squared centre shift ≤ 1e−4 × variance, then a final
    assignment to the converged centres. Ties go to the lower index (argmin)."""
    m, n = x.shape
    rows = torch.arange(m, device=x.device)
    first = torch.randint(n, (m,), generator=gen).to(x.device)
    c0 = x[rows, first]
    d2 = (x - c0[:, None]).square()
    pot = d2.sum(dim=1)
    # candidates ∝ D² (uniform when every point coincides with the first centre)
    probs = torch.where(pot[:, None] > 0, d2, torch.ones_like(d2))
    cand = torch.multinomial(probs.cpu(), 2, replacement=True, generator=gen).to(x.device)
    cand_vals = x.gather(1, cand)  # (m, 2)
    cand_pot = torch.minimum(d2[:, None, :], (x[:, None, :] - cand_vals[:, :, None]).square()).sum(dim=2)
    c1 = cand_vals[rows, cand_pot.argmin(dim=1)]
    centres = torch.stack([c0, c1], dim=1)

    tol = _KMEANS_TOL * x.var(dim=1, correction=0)
    labels = ((x - centres[:, 1:]).abs() < (x - centres[:, :1]).abs()).long()
    active = torch.ones(m, dtype=torch.bool, device=x.device)
    for _ in range(_KMEANS_MAX_ITER):
        one = labels.to(x.dtype)
        n1 = one.sum(dim=1)
        n0 = n - n1
        s1 = (one * x).sum(dim=1)
        s0 = x.sum(dim=1) - s1
        # an empty cluster keeps its centre (it can only be empty when both centres coincide in 1-D)
        new = torch.stack(
            [
                torch.where(n0 > 0, s0 / n0.clamp_min(1), centres[:, 0]),
                torch.where(n1 > 0, s1 / n1.clamp_min(1), centres[:, 1]),
            ],
            dim=1,
        )
        new_labels = ((x - new[:, 1:]).abs() < (x - new[:, :1]).abs()).long()
        shift = (new - centres).square().sum(dim=1)
        same = (new_labels == labels).all(dim=1)
        centres = torch.where(active[:, None], new, centres)
        labels = torch.where(active[:, None], new_labels, labels)
        active &= ~(same | (shift <= tol))
        if not bool(active.any()):
            break
    return labels


def _gmm_log_prob(x: Tensor, w: Tensor, mu: Tensor, var: Tensor) -> Tensor:
    """(m, n, 2) log π_k + log N(x; μ_k, σ_k²)."""
    return (
        torch.log(w)[:, None, :]
        - 0.5 * (math.log(2 * math.pi) + torch.log(var)[:, None, :])
        - 0.5 * (x[:, :, None] - mu[:, None, :]).square() / var[:, None, :]
    )


def _gmm_m_step(x: Tensor, resp: Tensor, reg_covar: float) -> tuple[Tensor, Tensor, Tensor]:
    """scikit-learn's ``_estimate_gaussian_parameters`` (full covariance, 1-D), weights normalised."""
    nk = resp.sum(dim=1) + 10 * torch.finfo(x.dtype).eps  # (m, 2)
    mu = (resp * x[:, :, None]).sum(dim=1) / nk
    var = (resp * (x[:, :, None] - mu[:, None, :]).square()).sum(dim=1) / nk + reg_covar
    return nk / nk.sum(dim=1, keepdim=True), mu, var


def _fit_gmm_rows(x: Tensor, gen: torch.Generator, reg_covar: float, tol: float, max_iter: int) -> tuple[Tensor, ...]:
    m = x.shape[0]
    labels = _kmeans_1d(x, gen)
    resp = torch.nn.functional.one_hot(labels, 2).to(x.dtype)
    w, mu, var = _gmm_m_step(x, resp, reg_covar)
    lower = torch.full((m,), -math.inf, dtype=x.dtype, device=x.device)
    active = torch.ones(m, dtype=torch.bool, device=x.device)
    converged = torch.zeros(m, dtype=torch.bool, device=x.device)
    n_iter = torch.zeros(m, dtype=torch.int64, device=x.device)
    for _ in range(max_iter):
        logp = _gmm_log_prob(x, w, mu, var)
        norm = torch.logsumexp(logp, dim=2)  # (m, n)
        resp = torch.exp(logp - norm[:, :, None])
        new_w, new_mu, new_var = _gmm_m_step(x, resp, reg_covar)
        new_lower = norm.mean(dim=1)
        a = active[:, None]
        w = torch.where(a, new_w, w)
        mu = torch.where(a, new_mu, mu)
        var = torch.where(a, new_var, var)
        n_iter += active.long()
        done = active & ((new_lower - lower).abs() < tol)
        lower = torch.where(active, new_lower, lower)
        converged |= done
        active &= ~done
        if not bool(active.any()):
            break
    score = torch.logsumexp(_gmm_log_prob(x, w, mu, var), dim=2).mean(dim=1)
    return w, mu, var, score, n_iter, converged


def fit_gmm_1d(
    data: Tensor,
    *,
    standardize: bool = True,
    reg_covar: float = GMM_REG_COVAR,
    tol: float = GMM_TOL,
    max_iter: int = GMM_MAX_ITER,
    seed: int = 0,
) -> GMM1D:
    """Fit a two-component Gaussian mixture to each column of ``data`` by EM, reproducing scikit-learn's
    ``GaussianMixture(n_components=2)`` defaults (Dempster, Laird & Rubin 1977; docs/methods.md §6.5).

    Per column (vectorised over columns, float64): optional standardisation (population std, as
    ``StandardScaler``); initial responsibilities from a 2-means clustering with k-means++ seeding (1 init);
    EM until the change of the mean log-likelihood (computed before each M-step) is below ``tol`` or
    ``max_iter`` iterations; ``reg_covar`` added to each variance; component weights nk + 10ε. The score is
    the mean log-likelihood of the column under the final parameters. Random streams differ from
    scikit-learn's, so k-means seeds can differ; on well-separated data both reach the same fit.

    Args:
        data: (n, m) samples × columns, n ≥ 2.
        standardize: standardise each column first (the LPC reference does).
        reg_covar: variance floor (sklearn default 1e−6).
        tol: convergence threshold on the lower bound (sklearn default 1e−3).
        max_iter: EM iterations (sklearn default 100).
        seed: seed of the k-means++ initialisation.

    Returns:
        :class:`GMM1D` with (m, 2) parameters and (m,) scores.

    Raises:
        ValueError: non-finite data, fewer than 2 samples, non-positive ``reg_covar``/``tol``/``max_iter``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.cat([torch.randn(200, 1, generator=g) - 4, torch.randn(200, 1, generator=g) + 4])
        >>> fit = fit_gmm_1d(x)
        >>> sorted(round(v, 1) for v in fit.means[0].tolist())  # standardised: ±4/√17 ≈ ±0.97
        [-1.0, 1.0]
    """
    check_matrix(data, "data")
    if data.shape[0] < 2:
        raise ValueError(f"`data` must have at least 2 samples (rows) for 2 components; got {data.shape[0]}")
    check_positive(reg_covar, "reg_covar")
    check_positive(tol, "tol")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"`max_iter` must be a positive int; got {max_iter!r}")
    x = _as_float64(data)
    if standardize:
        x = _standardize(x)
    x = x.T.contiguous()  # (m, n): one row per column
    gen = torch.Generator().manual_seed(int(seed))
    # memory-bounded: the E-step holds (rows, n, 2) float64
    rows = max(1, _CHUNK_ELEMENTS // (8 * x.shape[1]))
    parts = [_fit_gmm_rows(x[i : i + rows], gen, reg_covar, tol, max_iter) for i in range(0, x.shape[0], rows)]
    w, mu, var, score, n_iter, converged = (torch.cat(p) for p in zip(*parts))
    return GMM1D(weights=w, means=mu, variances=var, score=score, n_iter=n_iter, converged=converged)


def binarity(
    features: Tensor,
    *,
    max_samples: int | None = BINARITY_MAX_SAMPLES,
    seed: int = 0,
    return_fit: bool = False,
) -> dict[str, Any]:
    """Binarity of a representation: how well each dimension is described by two well-separated Gaussian
    peaks (Sbailò & Ghiringhelli, arXiv 2310.08224, Table 4; docs/methods.md §6.5; reference
    ``get_binarity_metrics``).

    Per dimension j (standardised): fit a two-component 1-D mixture (:func:`fit_gmm_1d`, scikit-learn
    defaults) and record

        score_j = mean log-likelihood per sample,  std_j = (σ_1 + σ_2)/2,
        peak_distance_j = |μ_1 − μ_2| / std_j.

    Higher score and peak distance = more binary (LPC features: score ≈ 0.2–1.0, peak distance ≈ 20–45;
    a linear penultimate without penalty: score ≈ −1.4, peak distance ≈ 1–2). Evaluated on a seeded subset
    of ≤ 10,000 samples (the reference subsamples unseeded).

    Args:
        features: (N, d) features (the linear penultimate layer).
        max_samples: seeded random subset size; None = all.
        seed: seed of the subset and of the k-means++ initialisation.
        return_fit: also return the per-dimension :class:`GMM1D` under ``"fit"`` and the per-dimension
            ``scores``, ``stds``, ``peak_distances`` tensors.

    Returns:
        dict: ``score_mean``, ``score_min``, ``std_mean``, ``peak_distance_mean``, ``peak_distance_min``
        (floats); ``score_argmin``, ``peak_distance_argmin`` (the dimensions attaining the minima) and
        ``score_argmean``, ``peak_distance_argmean`` (the dimension closest to the mean — the reference's
        ``arg_score_av``/``arg_peaks_distance_av``) as ints.

    Raises:
        ValueError: non-finite features, fewer than 2 samples, bad ``max_samples``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> signs = torch.randint(0, 2, (500, 4), generator=g) * 2.0 - 1.0
        >>> h = 5 * signs + 0.1 * torch.randn(500, 4, generator=g)
        >>> binarity(h)["peak_distance_min"] > 20
        True
    """
    _check_features(features)
    _check_max_samples(max_samples)
    x = _as_float64(features)
    idx = _subsample(x.shape[0], max_samples, seed, x.device)
    if idx is not None:
        x = x[idx]
    fit = fit_gmm_1d(x, seed=seed)
    sigma = fit.variances.sqrt()
    stds = sigma.mean(dim=1)
    peaks = (fit.means[:, 0] - fit.means[:, 1]).abs() / stds
    scores = fit.score
    out: dict[str, Any] = {
        "score_mean": float(scores.mean()),
        "score_min": float(scores.min()),
        "std_mean": float(stds.mean()),
        "peak_distance_mean": float(peaks.mean()),
        "peak_distance_min": float(peaks.min()),
        "score_argmin": int(scores.argmin()),
        "peak_distance_argmin": int(peaks.argmin()),
        "score_argmean": int((scores - scores.mean()).abs().argmin()),
        "peak_distance_argmean": int((peaks - peaks.mean()).abs().argmin()),
    }
    if return_fit:
        out.update(fit=fit, scores=scores, stds=stds, peak_distances=peaks)
    return out

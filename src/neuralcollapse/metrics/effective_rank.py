"""Effective-rank neural-collapse metrics (docs/methods.md §4.5).

The effective rank of Roy & Vetterli ("The effective rank: a measure of effective dimensionality",
EUSIPCO 2007) is exp of the Shannon entropy of the normalised singular values. The NC metrics built on it
(intra-/inter-class effective rank of the feature covariances, effective rank of the classifier, weight
alignments) follow the normalised-prototype reference pakoromilas/nc_by_design (``util.py``:
``effective_rank``, ``embedding_ETF_metrics``, ``NC``; ETF metrics after arXiv:2305.17326), computed on
normalised features and classifier rows. The reference's ``effective_rank`` adds 1e−7 to every
normalised singular value and loops forever on an all-zero matrix; :func:`erank` is exact by default,
returns 0 for the zero matrix, and reproduces the reference with ``eps=1e-7``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._validation import check_labels, check_matrix, check_positive, check_same_length, check_tensor
from .neural_collapse import _resolve_num_classes, _validate_classifier

__all__ = ["REFERENCE_ERANK_EPS", "effective_rank_metrics", "erank"]

#: the reference's additive bias on the normalised singular values (pakoromilas/nc_by_design, util.py)
REFERENCE_ERANK_EPS = 1e-7


def _erank_of_spectrum(values: Tensor, eps: float | None) -> float:
    """exp(−Σ p log p) for p = σ/Σσ (σ ≥ 0, float64); with ``eps``: p + eps renormalised (the reference's
    ``scipy.stats.entropy`` renormalises its argument). 0·log 0 = 0; a zero spectrum has erank 0."""
    total = values.sum()
    if not total > 0:
        return 0.0
    p = values / total
    if eps is not None:
        p = p + eps
        p = p / p.sum()
    return math.exp(float(torch.special.entr(p).sum()))


def _covariance_spectrum(rows: Tensor, size: int) -> Tensor:
    """Eigenvalues (≥ 0) of the unbiased covariance (ddof 1, ``np.cov`` of the rows as observations) of
    ``rows`` (n × d, float64, n ≥ 2), padded with zeros to ``size`` = d entries (the d × d matrix's).

    The nonzero eigenvalues of X̃ᵀX̃/(n−1) equal those of the smaller Gram X̃X̃ᵀ/(n−1) when n < d.
    """
    centred = rows - rows.mean(dim=0)
    gram = centred @ centred.T if rows.shape[0] < rows.shape[1] else centred.T @ centred
    evals = torch.linalg.eigvalsh(gram / (rows.shape[0] - 1)).clamp_min(0.0)
    out = torch.zeros(size, dtype=evals.dtype, device=evals.device)
    out[: evals.shape[0]] = evals.flip(0)
    return out


def _check_eps(eps: float | None) -> float | None:
    return None if eps is None else check_positive(eps, "eps")


@torch.no_grad()
def erank(matrix: Tensor, eps: float | None = None) -> float:
    r"""Effective rank exp(H(p)), p_i = σ_i/Σ_jσ_j over the singular values of ``matrix``.

    Roy & Vetterli, "The effective rank: a measure of effective dimensionality", EUSIPCO 2007, Def. 1:
    erank(A) = exp(−Σ_i p_i log p_i), 0·log 0 = 0. It lies in [1, rank A] for A ≠ 0 (1 for rank one, r for
    r equal singular values); erank(0) := 0. With ``eps`` every p_i becomes p_i + eps and is renormalised —
    the reference pakoromilas/nc_by_design uses ``eps=1e-7`` (:data:`REFERENCE_ERANK_EPS`); that biases
    rank-deficient matrices upwards (each zero singular value then counts a little).

    Args:
        matrix: (m, n) floating tensor (typically a d × d covariance); computed in float64.
        eps: None (exact; default) or a positive bias added to the normalised singular values.

    Returns:
        The effective rank, a float in {0} ∪ [1, min(m, n)].

    Raises:
        TypeError: ``matrix`` is not a floating tensor.
        ValueError: ``matrix`` is not 2-D, empty, or holds NaN/Inf; ``eps`` is not positive.

    Example:
        >>> import torch
        >>> round(erank(torch.diag(torch.tensor([1.0, 1.0, 1.0, 0.0]))), 12)
        3.0
        >>> erank(torch.zeros(3, 3))
        0.0
    """
    check_matrix(matrix, "matrix")
    eps = _check_eps(eps)
    device = torch.device("cpu") if matrix.device.type == "mps" else matrix.device
    values = torch.linalg.svdvals(matrix.to(device=device, dtype=torch.float64))
    return _erank_of_spectrum(values, eps)


def _normalise_rows(x: Tensor) -> Tensor:
    """Rows scaled to unit L2 norm; zero rows stay zero (as ``F.normalize``)."""
    return torch.nn.functional.normalize(x, p=2.0, dim=1)


@torch.no_grad()
def effective_rank_metrics(
    features: Tensor,
    labels: Tensor,
    weight: Tensor | None = None,
    *,
    normalize: bool = True,
    num_classes: int | None = None,
    eps: float | None = None,
) -> dict[str, float]:
    r"""Effective-rank NC metrics of normalised features and classifier rows (docs/methods.md §4.5).

    With u_i = h_i/‖h_i‖, class means μ_c of the (normalised) features and ŵ_c = w_c/‖w_c‖
    (pakoromilas/nc_by_design, ``util.py``; ETF metrics after arXiv:2305.17326):

    =======================  ===================================================================  =====
    key                      definition                                                           ideal
    =======================  ===================================================================  =====
    ``er_intra``             mean over classes with ≥ 2 samples of erank(unbiased covariance of   0
                             the class's features)
    ``er_intra_excluded``    number of classes (of K) with < 2 samples, left out of ``er_intra``  —
    ``er_inter``             erank(unbiased covariance of the present classes' means, d × d)      K − 1
    ``w_erank``              erank(unbiased covariance of the K rows ŵ_c, d × d)                  K − 1
    ``w_class_alignment``    (1/K)Σ_c ‖ŵ_c − μ_c/‖μ_c‖‖² over present classes                     0
    ``w_inst_alignment``     (1/N)Σ_i ‖ŵ_{y_i} − u_i‖²  (= 2 − 2·mean cosine)                     0
    ``ncc_cosine_accuracy``  fraction of samples with argmax_c cos(u_i, μ_c) = y_i                1
    =======================  ===================================================================  =====

    Keys with ``w`` are absent without ``weight``. erank is :func:`erank` (exact; ``eps=1e-7`` reproduces
    the reference). Raw values are reported: the normalisation behind the paper's "≥ 95 % of NC" is not in
    the reference code. Differences from the reference: classes with < 2 samples are excluded and counted
    (the reference yields NaN); a class without samples is never the NCC's answer (the reference gives it a
    zero prototype); ``ncc_cosine_accuracy`` is a fraction (the reference's ``prototype_acc`` is in percent).

    Args:
        features: (N, d) floating features h (the reference passes unit-norm features).
        labels: (N,) integer class indices in [0, K).
        weight: (K, d) classifier rows or prototypes (normalised here), or None.
        normalize: L2-normalise the features before ``er_intra``, ``er_inter``, the class means and the
            NCC (default True, as the reference's inputs). The alignments always use u_i and ŵ_c.
        num_classes: K; default the rows of ``weight``, else max label + 1.
        eps: None (exact erank; default) or the reference's 1e−7.

    Returns:
        dict of floats (``er_intra_excluded`` an int) with the keys above.

    Raises:
        TypeError: non-tensor or wrongly typed input.
        ValueError: wrong shapes or lengths, NaN/Inf, labels outside [0, K), K < 2, fewer than 2 present
            classes, or no class with 2 samples (``er_intra`` undefined).

    Example:
        >>> import torch
        >>> w = torch.eye(3)
        >>> labels = torch.arange(3).repeat_interleave(4)
        >>> h = w[labels] + 0.01 * torch.randn(12, 3, generator=torch.Generator().manual_seed(0))
        >>> out = effective_rank_metrics(h, labels, w)
        >>> round(out["er_inter"], 3), round(out["w_erank"], 3), out["ncc_cosine_accuracy"]
        (2.0, 2.0, 1.0)
    """
    check_matrix(features, "features")
    check_tensor(labels, "labels", ndim=1, integer=True)
    check_same_length(("features", features), ("labels", labels))
    eps = _check_eps(eps)
    k = _resolve_num_classes(labels, weight, None, num_classes)
    n, d = features.shape
    check_labels(labels, "labels", num_classes=k, length=n)
    _validate_classifier(weight, None, k, d)

    device = torch.device("cpu") if features.device.type == "mps" else features.device
    h = features.to(device=device, dtype=torch.float64)
    y = labels.to(device=device, dtype=torch.int64)
    u = _normalise_rows(h)
    x = u if normalize else h
    counts = torch.bincount(y, minlength=k)
    present = counts > 0
    if int(present.sum()) < 2:
        raise ValueError(f"`labels` must contain at least 2 classes; got {int(present.sum())}")

    order = torch.argsort(y, stable=True)
    groups = torch.split(x[order], counts.tolist())
    intra = [_erank_of_spectrum(_covariance_spectrum(g, d), eps) for g in groups if g.shape[0] >= 2]
    if not intra:
        raise ValueError("`labels` must give at least one class 2 samples (er_intra needs a covariance)")
    means = torch.zeros(k, d, dtype=torch.float64, device=device).index_add_(0, y, x)
    means = means[present] / counts[present, None].to(torch.float64)

    out: dict[str, float] = {
        "er_intra": sum(intra) / len(intra),
        "er_intra_excluded": int((counts < 2).sum()),
        "er_inter": _erank_of_spectrum(_covariance_spectrum(means, d), eps),
    }
    unit_means = _normalise_rows(means)
    if weight is not None:
        w_hat = _normalise_rows(weight.to(device=device, dtype=torch.float64))
        out["w_erank"] = _erank_of_spectrum(_covariance_spectrum(w_hat, d), eps)
        out["w_class_alignment"] = float(((w_hat[present] - unit_means) ** 2).sum(dim=1).mean())
        out["w_inst_alignment"] = float(((w_hat[y] - u) ** 2).sum(dim=1).mean())
    prototypes = torch.zeros(k, d, dtype=torch.float64, device=device)
    prototypes[present] = unit_means
    cosines = _normalise_rows(x) @ prototypes.T
    cosines[:, ~present] = -math.inf
    out["ncc_cosine_accuracy"] = float((cosines.argmax(dim=1) == y).to(torch.float64).mean())
    return out

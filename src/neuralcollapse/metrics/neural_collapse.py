"""Neural-collapse metrics NC1–NC4 and their variants (docs/methods.md §9), functional form.

Sources: Papyan, Han & Donoho, "Prevalence of neural collapse during the terminal phase of deep learning
training", PNAS 2020 (NC1 as tr(Σ_W Σ_B†), equinorm, equiangularity, self-duality, NCC agreement); Zhu et
al., "A geometric analysis of neural collapse with unconstrained features", NeurIPS 2021 (the /K in NC1, NC2
on the uncentred classifier, NC3 on W M̃); the OCCE paper, Appendix A.9 (NC4 = ‖b + Wμ_G‖², squared);
rhubarbwu/neural-collapse (NC2 on the centred class means, the "unweighted" global mean).

Every metric is **0 at perfect collapse and grows away from it** ("lower = more collapsed").

The computation is split, torchmetrics-style, into :func:`_nc_update` (a batch → float64 sufficient
statistics with a fixed shift c: counts n_k, shifted class sums s̃_k = Σ_{y_i=k}(h_i − c), shifted scatter
Q = Σ_i (h_i − c)(h_i − c)ᵀ, NCC counters) and :func:`_nc_compute` (statistics → metrics). The function
:func:`neural_collapse` chains them over chunks of its input; the streaming class
``neuralcollapse.metrics.NeuralCollapse`` (module ``metrics.streaming``) accumulates the same statistics
over batches and processes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from .._validation import check_choice, check_labels, check_matrix, check_same_length, check_tensor

__all__ = ["GLOBAL_MEANS", "NC_KEYS", "neural_collapse"]

#: accepted values of ``global_mean``: the sample mean (Zhu et al. 2021; default) or the mean of the class
#: means (Papyan's notebook, rhubarbwu/neural-collapse). They coincide for balanced classes.
GLOBAL_MEANS = ("weighted", "unweighted")
DEFAULT_GLOBAL_MEAN = "weighted"

#: result keys in output order; keys needing W are absent without ``weight`` (docs/methods.md §9)
NC_KEYS = (
    "nc1",
    "nc2",
    "nc2_means",
    "nc3",
    "nc4",
    "ncc_mismatch",
    "equinorm_means",
    "equinorm_weights",
    "equiangularity_means",
    "equiangularity_weights",
    "self_duality",
)

#: rows per chunk in the functional form: bounds the float64 temporaries at ``_CHUNK × d`` whatever N is
_CHUNK = 8192
_MAX_LISTED = 10


@dataclass
class _NCStats:
    """Float64 sufficient statistics of NC1–NC4 for K classes in R^d (docs/methods.md §9, "Streaming").

    ``shift`` c is fixed before the first sample is added; all sums are of h − c, which keeps Q accurate
    when the common offset of the features dwarfs their spread (collapsed or LPC features).
    """

    shift: Tensor  # (d,) float64
    counts: Tensor  # (K,) int64, n_k
    sums: Tensor  # (K, d) float64, s̃_k = Σ_{y_i = k} (h_i − c)
    scatter: Tensor  # (d, d) float64, Q = Σ_i (h_i − c)(h_i − c)ᵀ
    ncc_mismatches: Tensor  # () float64, samples whose prediction differs from the nearest class mean
    ncc_samples: Tensor  # () float64, samples that entered the NCC count

    @classmethod
    def zeros(cls, num_classes: int, dim: int, *, shift: Tensor) -> _NCStats:
        f64 = {"dtype": torch.float64, "device": shift.device}
        return cls(
            shift=shift.to(torch.float64),
            counts=torch.zeros(num_classes, dtype=torch.int64, device=shift.device),
            sums=torch.zeros(num_classes, dim, **f64),
            scatter=torch.zeros(dim, dim, **f64),
            ncc_mismatches=torch.zeros((), **f64),
            ncc_samples=torch.zeros((), **f64),
        )

    def reshifted(self, shift: Tensor) -> _NCStats:
        """The same statistics expressed with another shift c' (exact; used to merge states).

        With δ = c' − c and S̃ = Σ_k s̃_k: s̃'_k = s̃_k − n_k δ and Q' = Q − S̃δᵀ − δS̃ᵀ + N δδᵀ.
        """
        delta = shift.to(self.sums) - self.shift
        n = self.counts.to(torch.float64)
        total_sum = self.sums.sum(dim=0)
        scatter = (
            self.scatter
            - torch.outer(total_sum, delta)
            - torch.outer(delta, total_sum)
            + n.sum() * torch.outer(delta, delta)
        )
        return _NCStats(
            shift=shift.to(self.sums).clone(),
            counts=self.counts.clone(),
            sums=self.sums - n[:, None] * delta,
            scatter=scatter,
            ncc_mismatches=self.ncc_mismatches.clone(),
            ncc_samples=self.ncc_samples.clone(),
        )


def _compute_device(t: Tensor) -> torch.device:
    """Where the float64 work runs: the input's device, except backends without float64 (MPS)."""
    return torch.device("cpu") if t.device.type == "mps" else t.device


def _nearest_class_mean(centred: Tensor, shifted_means: Tensor) -> Tensor:
    """argmin_k ‖h_i − μ_k‖ for h_i − c (B, d) and μ_k − c (K, d), both float64; rows of ``shifted_means``
    that are not finite mark absent classes and are never chosen.

    ‖h − μ_k‖² = ‖h‖² − 2 h·μ_k + ‖μ_k‖²; the first term does not depend on k. Working relative to the
    shift c keeps the products small when all features share a large offset.
    """
    valid = torch.isfinite(shifted_means).all(dim=1)
    means = torch.where(valid[:, None], shifted_means, torch.zeros_like(shifted_means))
    score = (means * means).sum(dim=1) - 2.0 * (centred @ means.T)
    score = score.masked_fill(~valid, math.inf)
    return score.argmin(dim=1)


def _nc_update(
    stats: _NCStats,
    features: Tensor,
    labels: Tensor,
    *,
    predictions: Tensor | None = None,
    class_means: Tensor | None = None,
) -> _NCStats:
    """``stats`` plus one batch, as new tensors (out of place: safe under ``torch.inference_mode``).

    Args:
        stats: accumulated statistics; their ``shift`` must already be fixed.
        features: (B, d) float64 on ``stats``' device.
        labels: (B,) int64 class indices in [0, K).
        predictions: (B,) predicted class indices (argmax of the logits), or None.
        class_means: (K, d) float64 uncentred class means given in advance (non-finite rows = absent
            classes). The NCC counters are updated only when both ``predictions`` and ``class_means`` are
            given (docs/methods.md §9: the nearest class mean needs the means before the pass).
    """
    centred = features - stats.shift
    out = replace(
        stats,
        counts=stats.counts + torch.bincount(labels, minlength=stats.counts.shape[0]),
        sums=stats.sums.index_add(0, labels, centred),
        # Q + X̃ᵀX̃: one GEMM, never a B×d×d stack of outer products
        scatter=torch.addmm(stats.scatter, centred.T, centred),
    )
    if predictions is not None and class_means is not None:
        out = _add_ncc(out, centred, predictions, class_means)
    return out


def _add_ncc(stats: _NCStats, centred: Tensor, predictions: Tensor, class_means: Tensor) -> _NCStats:
    """``stats`` plus the NCC count of a batch (rows h_i − c of ``centred``): samples whose prediction is
    not their nearest class mean."""
    nearest = _nearest_class_mean(centred, class_means - stats.shift)
    return replace(
        stats,
        ncc_mismatches=stats.ncc_mismatches + (nearest != predictions).sum().to(torch.float64),
        ncc_samples=stats.ncc_samples + centred.shape[0],
    )


def _predict(features: Tensor, logits: Tensor | None, weight: Tensor | None, bias: Tensor | None) -> Tensor | None:
    """The network's prediction: argmax of ``logits``, else of hWᵀ + b (float64), else None."""
    if logits is not None:
        return logits.to(features.device).argmax(dim=1)
    if weight is None:
        return None
    z = features @ weight.T
    return (z if bias is None else z + bias).argmax(dim=1)


def _unit(x: Tensor) -> Tensor:
    """x / ‖x‖_F, with 0 / 0 := 0 (a zero matrix has no direction; it then scores as far from any target)."""
    norm = torch.linalg.matrix_norm(x) if x.ndim == 2 else torch.linalg.vector_norm(x)
    return x / norm if norm > 0 else torch.zeros_like(x)


def _etf_error(gram: Tensor) -> float:
    """‖G/‖G‖_F − E‖_F with E = (I_K − 1 1ᵀ/K)/√(K−1), the unit-Frobenius simplex-ETF Gram (Zhu et al. 2021)."""
    k = gram.shape[0]
    target = torch.eye(k, dtype=gram.dtype, device=gram.device) - 1.0 / k
    target = target / math.sqrt(k - 1)
    return float(torch.linalg.matrix_norm(_unit(gram) - target))


def _equinorm(rows: Tensor) -> float:
    """std/mean (unbiased std) of the row norms (Papyan et al. 2020); all-zero rows count as equinormed."""
    norms = torch.linalg.vector_norm(rows, dim=1)
    mean = norms.mean()
    return float(norms.std(unbiased=True) / mean) if mean > 0 else 0.0


def _equiangularity(rows: Tensor) -> float:
    """Mean over k ≠ k' of |cos(v_k, v_k') + 1/(K−1)| (Papyan et al. 2020); a zero row has cosine 0."""
    k = rows.shape[0]
    norms = torch.linalg.vector_norm(rows, dim=1, keepdim=True)
    unit = torch.where(norms > 0, rows / norms.clamp_min(torch.finfo(rows.dtype).tiny), torch.zeros_like(rows))
    cos = unit @ unit.T
    off_diagonal = ~torch.eye(k, dtype=torch.bool, device=rows.device)
    return float((cos[off_diagonal] + 1.0 / (k - 1)).abs().mean())


def _nc1(sigma_w: Tensor, centred_means: Tensor) -> float:
    """NC1 = tr(Σ_W Σ_B†)/K with Σ_B = M̃ᵀM̃/K (Papyan et al. 2020; Zhu et al. 2021, with /K).

    rank Σ_B ≤ K − 1, so the pseudo-inverse drops the null space explicitly: ``eigh(Σ_B)`` keeping
    λ > rtol·λ_max, rtol = max(d, K)·ε_float64, and tr(Σ_W Σ_B†) = Σ_{kept j} v_jᵀ Σ_W v_j / λ_j.
    Returns +inf when Σ_B = 0 (all class means coincide: no between-class spread to compare with).
    """
    k = centred_means.shape[0]
    sigma_b = centred_means.T @ centred_means / k
    evals, evecs = torch.linalg.eigh(sigma_b)
    lam_max = evals[-1]
    if not lam_max > 0:
        return math.inf
    rtol = max(sigma_b.shape[0], k) * torch.finfo(torch.float64).eps
    keep = evals > rtol * lam_max
    v = evecs[:, keep]
    trace = ((sigma_w @ v) * v).sum(dim=0).div(evals[keep]).sum()
    # Σ_W is PSD: a negative trace is rounding around 0 (collapsed features)
    return max(float(trace), 0.0) / k


def _nc_compute(
    stats: _NCStats,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    *,
    global_mean: str = DEFAULT_GLOBAL_MEAN,
    allow_missing_classes: bool = False,
) -> dict[str, float]:
    """Statistics → the metrics of docs/methods.md §9 (weight/bias already validated: (K, d) and (K,)).

    Raises:
        ValueError: a class has no sample (unless ``allow_missing_classes``), or fewer than 2 classes are
            present.
    """
    counts = stats.counts
    present = counts > 0
    num_present = int(present.sum())
    if not allow_missing_classes and num_present < counts.shape[0]:
        missing = torch.nonzero(~present).flatten().tolist()
        listed = ", ".join(map(str, missing[:_MAX_LISTED])) + (", ..." if len(missing) > _MAX_LISTED else "")
        raise ValueError(
            f"`labels` must contain every class; got no sample of {len(missing)} of K={counts.shape[0]} "
            f"class(es) [{listed}] (pass allow_missing_classes=True to measure the present classes only)"
        )
    if num_present < 2:
        raise ValueError(
            f"`labels` must contain at least 2 classes with samples; got {num_present} "
            "(neural-collapse metrics compare classes)"
        )
    n = counts[present].to(torch.float64)
    sums = stats.sums[present]
    total = n.sum()
    # class means relative to the shift: μ_k − c = s̃_k / n_k
    shifted_means = sums / n[:, None]
    if global_mean == "weighted":
        shifted_global = sums.sum(dim=0) / total
    else:
        shifted_global = shifted_means.mean(dim=0)
    centred_means = shifted_means - shifted_global  # M̃ (rows), independent of the shift

    # Σ_W = (Q − Σ_k s̃_k s̃_kᵀ / n_k) / N; symmetrised against rounding
    sigma_w = (stats.scatter - (sums / n[:, None]).T @ sums) / total
    sigma_w = 0.5 * (sigma_w + sigma_w.T)

    out: dict[str, float] = {"nc1": _nc1(sigma_w, centred_means)}
    out["nc2_means"] = _etf_error(centred_means @ centred_means.T)
    w = None
    if weight is not None:
        w = weight.to(device=sums.device, dtype=torch.float64)[present]
        b = (
            torch.zeros(w.shape[0], dtype=torch.float64, device=w.device)
            if bias is None
            else bias.to(device=sums.device, dtype=torch.float64)[present]
        )
        out["nc2"] = _etf_error(w @ w.T)
        out["nc3"] = _etf_error(w @ centred_means.T)
        mu_g = stats.shift + shifted_global
        out["nc4"] = float(torch.linalg.vector_norm(b + w @ mu_g) ** 2)
    if stats.ncc_samples > 0 and stats.ncc_samples == total:
        out["ncc_mismatch"] = float(stats.ncc_mismatches / stats.ncc_samples)
    out["equinorm_means"] = _equinorm(centred_means)
    if w is not None:
        out["equinorm_weights"] = _equinorm(w)
    out["equiangularity_means"] = _equiangularity(centred_means)
    if w is not None:
        out["equiangularity_weights"] = _equiangularity(w)
        out["self_duality"] = float(torch.linalg.matrix_norm(_unit(w) - _unit(centred_means)) ** 2)
    return {key: out[key] for key in NC_KEYS if key in out}


def _resolve_num_classes(labels: Tensor, weight: Tensor | None, logits: Tensor | None, num_classes: int | None) -> int:
    """K from ``num_classes``, else the rows of ``weight``, else the columns of ``logits``, else max label + 1."""
    if num_classes is not None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int):
            raise TypeError(f"`num_classes` must be an int; got {type(num_classes).__name__}")
        k = num_classes
    elif weight is not None:
        k = int(weight.shape[0])
    elif logits is not None:
        k = int(logits.shape[1])
    else:
        k = int(labels.max()) + 1 if labels.numel() else 0
    if k < 2:
        name = "num_classes" if num_classes is not None else "labels"
        raise ValueError(f"`{name}` must give at least 2 classes (K >= 2); got K={k}")
    return k


def _validate_classifier(
    weight: Tensor | None, bias: Tensor | None, num_classes: int, dim: int
) -> tuple[Tensor | None, Tensor | None]:
    """``weight`` (K, d) and ``bias`` (K,) finite floats; ``bias`` needs ``weight``."""
    if weight is not None:
        check_matrix(weight, "weight")
        if tuple(weight.shape) != (num_classes, dim):
            raise ValueError(f"`weight` must have shape (K, d) = ({num_classes}, {dim}); got {tuple(weight.shape)}")
    if bias is not None:
        if weight is None:
            raise ValueError("`bias` needs `weight` (NC4 = ||b + W mu_G||^2); got bias without weight")
        check_tensor(bias, "bias", ndim=1, floating=True, finite=True)
        if bias.shape[0] != num_classes:
            raise ValueError(f"`bias` must have shape ({num_classes},); got {tuple(bias.shape)}")
    return weight, bias


@torch.no_grad()
def neural_collapse(
    features: Tensor,
    labels: Tensor,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    logits: Tensor | None = None,
    global_mean: str = DEFAULT_GLOBAL_MEAN,
    allow_missing_classes: bool = False,
    num_classes: int | None = None,
) -> dict[str, float]:
    r"""Neural-collapse metrics of features, labels and (optionally) the classifier (docs/methods.md §9).

    With Σ_W = (1/N)Σ_i (h_i − μ_{y_i})(h_i − μ_{y_i})ᵀ, Σ_B = (1/K)Σ_k (μ_k − μ_G)(μ_k − μ_G)ᵀ, centred
    means M̃ = [μ_k − μ_G]_k and the unit-Frobenius simplex-ETF Gram E = (I_K − 1 1ᵀ/K)/√(K−1):

    ==========================  ============================================================  ==============
    key                         definition                                                    source
    ==========================  ============================================================  ==============
    ``nc1``                     tr(Σ_W Σ_B†)/K                                                Papyan 2020;
                                                                                              Zhu 2021;
                                                                                              OCCE A.9
    ``nc2``                     ‖WWᵀ/‖WWᵀ‖_F − E‖_F (W uncentred)                             Zhu 2021
    ``nc2_means``               ‖M̃ᵀM̃/‖M̃ᵀM̃‖_F − E‖_F                                          rhubarbwu
    ``nc3``                     ‖WM̃/‖WM̃‖_F − E‖_F                                             Zhu 2021
    ``nc4``                     ‖b + Wμ_G‖² (squared; Zhu's code reports the norm)            OCCE A.9
    ``ncc_mismatch``            fraction with argmax_k z_ik ≠ argmin_k ‖h_i − μ_k‖            Papyan NC4
    ``equinorm_means``          std/mean (unbiased std) of ‖μ_k − μ_G‖                        Papyan 2020
    ``equinorm_weights``        std/mean (unbiased std) of ‖w_k‖                              Papyan 2020
    ``equiangularity_means``    mean_{k≠k'} |cos(μ̃_k, μ̃_k') + 1/(K−1)|                        Papyan 2020
    ``equiangularity_weights``  mean_{k≠k'} |cos(w_k, w_k') + 1/(K−1)|                        Papyan 2020
    ``self_duality``            ‖Wᵀ/‖W‖_F − M̃/‖M̃‖_F‖_F² (squared)                              Papyan 2020
    ==========================  ============================================================  ==============

    **Every value is ≥ 0 and 0 at perfect collapse: lower = more collapsed.** Papyan's notebook omits the
    /K of ``nc1``. All arithmetic is float64; Σ_B† comes from ``eigh(Σ_B)`` keeping λ > rtol·λ_max with
    rtol = max(d, K)·ε_float64 (rank Σ_B ≤ K − 1). Keys needing W (``nc2``, ``nc3``, ``nc4``, ``*_weights``,
    ``self_duality``) are absent without ``weight``. ``ncc_mismatch`` compares the nearest uncentred class
    mean with the network's prediction: argmax of ``logits`` if given, else of hWᵀ + b, else it is absent.
    For normalised/prototype heads pass the normalised features and the prototypes in class order.
    A measurement, computed without autograd: tensors that require grad (a head's ``weight``, the features
    of a training step) are passed as they are, no ``.detach()`` needed.

    Edge cases (documented results, never NaN): a class with a single sample adds no within-class
    scatter; d = 1 is allowed (Σ_B then has rank 1); ``nc1`` is +inf when all class means coincide
    (Σ_B = 0); a zero W or M̃ normalises to 0 (so ``nc2``/``nc3``/``nc2_means`` read 1, the distance from
    E to 0); equinorm of all-zero norms is 0.

    Args:
        features: (N, d) floating penultimate features h (any float dtype; computed in float64).
        labels: (N,) integer class indices in [0, K).
        weight: (K, d) classifier rows w_k (uncentred), or None.
        bias: (K,) classifier bias b (0 when None; needs ``weight``).
        logits: (N, K) network outputs whose argmax is the prediction for ``ncc_mismatch``, or None.
        global_mean: ``"weighted"`` (μ_G = sample mean, Zhu et al.; default) or ``"unweighted"`` (mean of
            the class means, Papyan's notebook / rhubarbwu). Equal for balanced classes.
        allow_missing_classes: when True, classes without samples are dropped (K = present classes, rows of
            W and b restricted to them; the NCC never picks them); when False (default) they raise.
        num_classes: K; default the rows of ``weight``, else the columns of ``logits``, else max label + 1.

    Returns:
        dict of Python floats with the keys above (in that order), each ≥ 0, lower = more collapsed.

    Raises:
        TypeError: non-tensor input, non-floating ``features``/``weight``/``logits``, non-integer ``labels``.
        ValueError: wrong shapes or mismatched lengths (the message names the argument), NaN/Inf values,
            labels outside [0, K), K < 2, a class without samples (unless ``allow_missing_classes``), unknown
            ``global_mean``.

    Example:
        >>> import torch
        >>> from neuralcollapse.metrics import neural_collapse
        >>> means = torch.tensor([[1.0, 0.0], [-0.5, 0.866], [-0.5, -0.866]])   # a triangle: simplex ETF
        >>> labels = torch.arange(3).repeat(4)
        >>> out = neural_collapse(means[labels], labels, weight=means)
        >>> round(out["nc1"], 6), round(out["nc2"], 3), out["ncc_mismatch"]
        (0.0, 0.0, 0.0)
    """
    check_choice(global_mean, "global_mean", GLOBAL_MEANS)
    check_matrix(features, "features")
    check_tensor(labels, "labels", ndim=1, integer=True)
    if logits is not None:
        check_matrix(logits, "logits")
    check_same_length(("features", features), ("labels", labels), ("logits", logits))
    k = _resolve_num_classes(labels, weight, logits, num_classes)
    n, d = features.shape
    check_labels(labels, "labels", num_classes=k, length=n)
    if logits is not None and logits.shape[1] != k:
        raise ValueError(f"`logits` must have K={k} columns; got shape {tuple(logits.shape)}")
    weight, bias = _validate_classifier(weight, bias, k, d)

    device = _compute_device(features)
    w64 = None if weight is None else weight.to(device=device, dtype=torch.float64)
    b64 = None if bias is None else bias.to(device=device, dtype=torch.float64)
    y = labels.to(device=device, dtype=torch.int64)
    first = features[:_CHUNK].to(device=device, dtype=torch.float64)
    # fixed shift c = the first chunk's mean, as in the streaming form
    stats = _NCStats.zeros(k, d, shift=first.mean(dim=0))
    for start in range(0, n, _CHUNK):
        chunk = first if start == 0 else features[start : start + _CHUNK].to(device=device, dtype=torch.float64)
        stats = _nc_update(stats, chunk, y[start : start + _CHUNK])

    if logits is not None or w64 is not None:
        # second pass: the nearest class mean needs the means of the whole set
        means = stats.sums / stats.counts[:, None].to(torch.float64) + stats.shift
        means = means.masked_fill((stats.counts == 0)[:, None], math.nan)
        for start in range(0, n, _CHUNK):
            chunk = features[start : start + _CHUNK].to(device=device, dtype=torch.float64)
            part = None if logits is None else logits[start : start + _CHUNK]
            pred = _predict(chunk, part, w64, b64)
            stats = _add_ncc(stats, chunk - stats.shift, pred, means)  # type: ignore[arg-type]
    return _nc_compute(stats, w64, b64, global_mean=global_mean, allow_missing_classes=allow_missing_classes)


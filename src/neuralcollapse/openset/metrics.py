"""Open-set recognition metrics: OSCR, closed-set error, open-set AUROC.

Known-ness scores follow the package convention, **higher = more "known"** (e.g. MSP or max logit).

OSCR (Dhamija, Günther & Boult, "Reducing Network Agnostophobia", NeurIPS 2018): a sample is
accepted as known iff its score s >= τ; the correct classification rate CCR(τ) = #{known, correctly
classified, s >= τ}/n_known is plotted against the false positive rate FPR(τ) = #{unknown, s >= τ}/n_unknown
and the area under that curve is the OSCR. Two tie conventions:

- ``"grouped"`` (default; as pytorch-ood): τ runs over +∞ and every distinct score in decreasing order, so
  tied samples enter together; the curve goes from (0, 0) to (1, closed-set accuracy) and is integrated
  with the trapezoidal rule in FPR. OSCR <= accuracy; constant scores give accuracy / 2.
- ``"arpl"``: the procedure of iCGY96/ARPL ``core/evaluation.py::compute_oscr`` (Chen, Peng, Wang & Tian,
  "Adversarial Reciprocal Points Learning for Open Set Recognition", TPAMI 2022; copied by
  sgvaze/osr_closed_set_all_you_need), reproduced step for step: position-based over one ascending
  ``np.argsort`` (NumPy's default, unstable quicksort) of the known-then-unknown scores, so ties are broken
  by the sort, slightly pessimistic, and 0 for constant scores.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .._validation import as_tensor, check_choice, check_has_data, check_tensor
from ..ood.metrics import _as_scores, _trapezoid, roc_auc

__all__ = ["OSCR_TIES", "UNKNOWN_LABEL", "closed_set_error", "openset_auroc", "oscr"]

OSCR_TIES = ("grouped", "arpl")
#: label of unknown-class samples after ``splits.remap_known_labels``
UNKNOWN_LABEL = -1


def _as_native(x: Any, name: str) -> np.ndarray:
    """Validated 1-D finite scores as NumPy, keeping the input's float dtype (ARPL sorts in that dtype)."""
    checked = _as_scores(x, name)  # validation (and float64 copy)
    if isinstance(x, torch.Tensor) and x.is_floating_point():
        t = x.detach().cpu()
        return (t.float() if t.dtype in (torch.float16, torch.bfloat16) else t).numpy()
    if isinstance(x, np.ndarray) and np.issubdtype(x.dtype, np.floating):
        return x
    return checked


def _as_correct(x: Any, n: int) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        check_has_data(x, "known_correct")
        arr = x.detach().cpu().numpy()
    elif isinstance(x, np.ndarray | list | tuple):
        arr = np.asarray(x)
    else:
        raise TypeError(f"`known_correct` must be a torch.Tensor or numpy array; got {type(x).__name__}")
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"`known_correct` must have shape ({n},) to match `known_scores`; got {arr.shape}")
    if arr.dtype != np.bool_:
        if not np.issubdtype(arr.dtype, np.number) or not np.isin(arr, (0, 1)).all():
            raise ValueError("`known_correct` must be boolean (or 0/1): whether each known sample is classified "
                             "correctly")
    return arr.astype(np.float64)


def _oscr_grouped(known: np.ndarray, correct: np.ndarray, unknown: np.ndarray) -> float:
    scores = np.concatenate([known, unknown]).astype(np.float64)
    is_correct = np.concatenate([correct, np.zeros(unknown.size)])
    is_unknown = np.concatenate([np.zeros(known.size), np.ones(unknown.size)])
    order = np.argsort(scores, kind="mergesort")[::-1]
    scores = scores[order]
    ends = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    ccr = np.r_[0.0, np.cumsum(is_correct[order])[ends] / known.size]
    fpr = np.r_[0.0, np.cumsum(is_unknown[order])[ends] / unknown.size]
    return _trapezoid(ccr, fpr)


def _oscr_arpl(known: np.ndarray, correct: np.ndarray, unknown: np.ndarray) -> float:
    predict = np.concatenate((known, unknown), axis=0)
    k_target = np.concatenate((correct, np.zeros(len(unknown))), axis=0)
    u_target = np.concatenate((np.zeros(len(known)), np.ones(len(unknown))), axis=0)
    n = len(predict)
    idx = predict.argsort()  # NumPy's default (quicksort) on purpose: ARPL breaks ties this way
    s_k, s_u = k_target[idx], u_target[idx]
    ccr = np.zeros(n + 2)
    fpr = np.zeros(n + 2)
    # position k in 0..n-2: correct knowns at positions > k, unknowns at positions >= k; n-1 stays (0, 0)
    k_after = s_k.sum() - np.cumsum(s_k)
    u_from = u_target.sum() - np.r_[0.0, np.cumsum(s_u)[:-1]]
    ccr[: n - 1] = k_after[: n - 1] / float(len(known))
    fpr[: n - 1] = u_from[: n - 1] / float(len(unknown))
    ccr[n + 1] = fpr[n + 1] = 1.0
    # sorted(zip(FPR, CCR), reverse=True): descending lexicographic
    order = np.lexsort((ccr, fpr))[::-1]
    f, c = fpr[order], ccr[order]
    terms = (f[:-1] - f[1:]) * ((c[:-1] + c[1:]) / 2.0)
    return float(np.cumsum(terms)[-1])  # sequential accumulation, as ARPL's Python loop


def oscr(known_scores: Any, known_correct: Any, unknown_scores: Any, ties: str = "grouped") -> float:
    """Open-set classification rate: area under CCR versus FPR.

    Formula (Dhamija et al., NeurIPS 2018): OSCR = ∫ CCR d FPR with CCR(τ) = #{known, correct, s >= τ} /
    n_known and FPR(τ) = #{unknown, s >= τ} / n_unknown; tie handling per ``ties`` (module docstring).

    Args:
        known_scores: (n_known,) known-ness scores of known-class test samples (higher = more known).
        known_correct: (n_known,) bool (or 0/1): whether each known sample is classified correctly.
        unknown_scores: (n_unknown,) scores of unknown-class samples.
        ties: ``"grouped"`` (default; pytorch-ood) or ``"arpl"`` (iCGY96/ARPL verbatim).

    Returns:
        OSCR in [0, closed-set accuracy].

    Raises:
        ValueError: empty, non-1-D or non-finite scores, ``known_correct`` of another length or not
            boolean, or an unknown ``ties``.

    Example:
        >>> oscr([0.9, 0.8, 0.7], [True, True, False], [0.1, 0.2])  # perfect separation: accuracy
        0.6666666666666666
        >>> oscr([0.5, 0.5], [True, True], [0.5, 0.5]), oscr([0.5, 0.5], [True, True], [0.5, 0.5], ties="arpl")
        (0.5, 0.0)
    """
    check_choice(ties, "ties", OSCR_TIES)
    known = _as_native(known_scores, "known_scores")
    unknown = _as_native(unknown_scores, "unknown_scores")
    correct = _as_correct(known_correct, known.shape[0])
    if ties == "grouped":
        return _oscr_grouped(known, correct, unknown)
    return _oscr_arpl(known, correct, unknown)


def closed_set_error(logits_or_pred: Any, labels: Any) -> float:
    """Closed-set classification error on the known-class samples (the OSR papers' ER, as a fraction).

    Formula: ER = #{i : ŷ_i != y_i} / n with ŷ_i = argmax_k z_ik (or the given predictions), over the
    samples with y_i != −1 (``UNKNOWN_LABEL``, the mark ``splits.remap_known_labels`` gives unknowns).

    Args:
        logits_or_pred: (N, K) logits/scores, or (N,) integer predictions.
        labels: (N,) integer labels in [0, K), or −1 for unknown-class samples (ignored).

    Returns:
        Error in [0, 1].

    Raises:
        ValueError: mismatched lengths, labels < −1, or no known sample.
        TypeError: non-integer predictions/labels.

    Example:
        >>> import torch
        >>> closed_set_error(torch.tensor([[2.0, 1.0], [0.0, 1.0], [3.0, 0.0]]), torch.tensor([0, 0, -1]))
        0.5
    """
    z = as_tensor(logits_or_pred, "logits_or_pred")
    y = as_tensor(labels, "labels")
    check_tensor(y, "labels", ndim=1, integer=True)
    if z.ndim == 2:
        check_tensor(z, "logits_or_pred", ndim=2, floating=True, finite=True)
        pred = z.argmax(dim=1)
    else:
        check_tensor(z, "logits_or_pred", ndim=1, integer=True)
        pred = z
    if pred.shape[0] != y.shape[0]:
        raise ValueError(
            f"`logits_or_pred` and `labels` must have the same number of samples; got {pred.shape[0]} and "
            f"{y.shape[0]}"
        )
    if bool((y < UNKNOWN_LABEL).any()):
        raise ValueError(f"`labels` must be class indices >= 0 or {UNKNOWN_LABEL} (unknown); got {int(y.min())}")
    known = y != UNKNOWN_LABEL
    if not bool(known.any()):
        raise ValueError(f"`labels` has no known-class sample (all are {UNKNOWN_LABEL})")
    return float((pred.to(y.device)[known] != y[known]).double().mean())


def openset_auroc(known_scores: Any, unknown_scores: Any) -> float:
    """AUROC of separating known from unknown samples, known positive (higher score = more known).

    Same trapezoidal ROC with grouped ties as ``ood.evaluate`` (one implementation).

    Args:
        known_scores: (n_known,) scores of known-class samples.
        unknown_scores: (n_unknown,) scores of unknown-class samples.

    Returns:
        AUROC in [0, 1] (= P(s_known > s_unknown) + ½ P(tie)).

    Raises:
        ValueError: empty, non-1-D or non-finite scores.

    Example:
        >>> openset_auroc([0.9, 0.4], [0.1, 0.4])
        0.875
    """
    return roc_auc(_as_scores(known_scores, "known_scores"), _as_scores(unknown_scores, "unknown_scores"))

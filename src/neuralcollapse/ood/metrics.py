"""OOD detection metrics: AUROC, AUPR-In/Out, FPR@95 (both conventions).

Scores follow the package convention, **higher = more in-distribution**. The curves are built as
scikit-learn's ``roc_curve``/``precision_recall_curve`` build them — one point per distinct score (ties
grouped), sorted by decreasing threshold — and integrated with the trapezoidal rule, which is what OpenOOD
v1.5 (``openood/evaluators/metrics.py``) and pytorch-ood (``OODMetrics``) report. NumPy only; scikit-learn
appears in the tests as the reference.

- ``auroc``: OOD positive with score −s (identical to ID positive with s); ties are diagonal segments.
- ``aupr_in`` (ID positive, s) and ``aupr_out`` (OOD positive, −s): trapezoidal area over recall of the PR
  points (one per distinct threshold, no truncation at full recall, plus recall 0 / precision 1) — **not**
  average precision (a step sum).
- ``fpr95`` (OpenOOD convention, OOD positive): at the first threshold on −s, in decreasing order, where at
  least 95 % of OOD samples are flagged, the fraction of **ID samples flagged as OOD**.
- ``fpr95_id`` (classic ODIN convention, ID positive): at the first threshold on s where at least 95 % of
  ID samples are accepted, the fraction of **OOD samples accepted**.

OpenOOD reads FPR@95 off ``roc_curve(..., drop_intermediate=True)``, which can skip the first qualifying
threshold when it lies on a straight segment of ties; the definition above (and pytorch-ood) does not skip.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .._validation import check_has_data

__all__ = ["TPR_LEVEL", "evaluate"]

#: recall level of the FPR@95 figures
TPR_LEVEL = 0.95


def _as_scores(x: Any, name: str) -> np.ndarray:
    """A finite, non-empty 1-D float64 NumPy copy of a tensor/array/sequence of scores."""
    if isinstance(x, torch.Tensor):
        check_has_data(x, name)
        arr = x.detach().cpu()
        if arr.is_floating_point() and arr.dtype != torch.float64:
            arr = arr.double()
        arr = arr.numpy()
    elif isinstance(x, np.ndarray | list | tuple):
        arr = np.asarray(x)
    else:
        raise TypeError(f"`{name}` must be a torch.Tensor or numpy array; got {type(x).__name__}")
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise TypeError(f"`{name}` must be numeric; got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D; got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"`{name}` is empty; detection metrics need at least one sample of each kind")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"`{name}` contains {int((~np.isfinite(arr)).sum())} NaN or Inf value(s)")
    return arr


def _binary_curve(positive: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative (false positives, true positives) at each distinct threshold, highest first.

    A sample is predicted positive when its score is >= the threshold; tied scores share one point
    (scikit-learn's ``_binary_clf_curve``).
    """
    scores = np.concatenate([positive, negative])
    is_pos = np.concatenate([np.ones(positive.size), np.zeros(negative.size)])
    order = np.argsort(scores, kind="mergesort")[::-1]
    scores, is_pos = scores[order], is_pos[order]
    ends = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    tps = np.cumsum(is_pos)[ends]
    fps = ends + 1 - tps
    return fps, tps


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def _roc(fps: np.ndarray, tps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) with the (0, 0) start point, as ``roc_curve``."""
    return np.r_[0.0, fps / fps[-1]], np.r_[0.0, tps / tps[-1]]


def _aupr(fps: np.ndarray, tps: np.ndarray) -> float:
    """Trapezoidal area under precision over recall, starting at recall 0 / precision 1."""
    precision = np.r_[1.0, tps / (tps + fps)]
    recall = np.r_[0.0, tps / tps[-1]]
    return _trapezoid(precision, recall)


def _fpr_at_tpr(fps: np.ndarray, tps: np.ndarray, level: float = TPR_LEVEL) -> float:
    fpr, tpr = _roc(fps, tps)
    return float(fpr[np.argmax(tpr >= level)])


def roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Area under the ROC curve with ``positive`` scored higher; validated float64 arrays (internal: the one
    ROC implementation shared by :func:`evaluate` and ``openset.openset_auroc``)."""
    fpr, tpr = _roc(*_binary_curve(positive, negative))
    return _trapezoid(tpr, fpr)


def evaluate(id_scores: Any, ood_scores: Any) -> dict[str, float]:
    """AUROC, AUPR-In, AUPR-Out, FPR@95 (OpenOOD) and FPR@95 (ID-positive) of a detector.

    Formulas: trapezoidal areas under scikit-learn-style ROC / precision-recall curves with ties grouped
    per distinct score (OpenOOD v1.5 ``auc_and_fpr_recall``; pytorch-ood ``OODMetrics``); FPR@95 as in
    OpenOOD (OOD positive) and as in Liang et al., ICLR 2018 (ID positive). See the module docstring.

    Args:
        id_scores: (N_id,) scores of in-distribution samples, higher = more ID (tensor, array or list).
        ood_scores: (N_ood,) scores of OOD samples.

    Returns:
        ``{"auroc", "aupr_in", "aupr_out", "fpr95", "fpr95_id"}``, fractions in [0, 1]; ``fpr95`` is the
        fraction of ID samples flagged as OOD when 95 % of OOD samples are flagged, ``fpr95_id`` the
        fraction of OOD samples accepted when 95 % of ID samples are accepted.

    Raises:
        ValueError: a score set that is empty, not 1-D, or contains NaN/Inf.
        TypeError: non-numeric input.

    Example:
        >>> m = evaluate([3.0, 2.0, 1.0], [0.0, 1.5])
        >>> round(m["auroc"], 4), m["fpr95"], m["fpr95_id"]
        (0.8333, 0.3333333333333333, 0.5)
    """
    s_id = _as_scores(id_scores, "id_scores")
    s_ood = _as_scores(ood_scores, "ood_scores")
    out_fps, out_tps = _binary_curve(-s_ood, -s_id)  # OOD positive, score −s
    in_fps, in_tps = _binary_curve(s_id, s_ood)  # ID positive, score s
    fpr, tpr = _roc(out_fps, out_tps)
    return {
        "auroc": _trapezoid(tpr, fpr),
        "aupr_in": _aupr(in_fps, in_tps),
        "aupr_out": _aupr(out_fps, out_tps),
        "fpr95": _fpr_at_tpr(out_fps, out_tps),
        "fpr95_id": _fpr_at_tpr(in_fps, in_tps),
    }

"""Hyperparameter search for a detector on validation data (OpenOOD v1.5's ``hyperparam_search``).

Every point of an explicit grid is fitted on the same cached inputs (features/logits computed once; only
ODIN runs its model) and scored on one ID-validation and one OOD-validation set; the first point with the
best metric wins, as in OpenOOD. Defaults never depend on OOD **test** data: pass validation sets only.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .base import Detector
from .metrics import evaluate
from .registry import create, get

__all__ = ["METRIC_DIRECTIONS", "GridSearchResult", "grid_search"]

#: metric -> True when higher is better
METRIC_DIRECTIONS = {"auroc": True, "aupr_in": True, "aupr_out": True, "fpr95": False, "fpr95_id": False}


@dataclass
class GridSearchResult:
    """Outcome of :func:`grid_search`.

    Attributes:
        best_params: the winning grid point (the first best one in grid order).
        best_value: its metric value.
        metric: the metric searched.
        table: one row per grid point, in grid order: the parameters plus every metric of
            :func:`~neuralcollapse.ood.evaluate`.
        detector: the detector fitted with ``best_params``.
    """

    best_params: dict[str, Any]
    best_value: float
    metric: str
    table: list[dict[str, Any]] = field(default_factory=list)
    detector: Detector | None = None


def grid_search(
    detector_name: str,
    grid: Mapping[str, Sequence[Any]],
    fit_inputs: Mapping[str, Any],
    val_id_inputs: Mapping[str, Any],
    val_ood_inputs: Mapping[str, Any],
    metric: str = "auroc",
) -> GridSearchResult:
    """Pick a detector's hyperparameters on validation data, first best in grid order.

    Procedure (OpenOOD v1.5, ``BasePostprocessor`` sweep): for every point of the Cartesian product of
    ``grid`` (in the order the keys and values are given), fit on ``fit_inputs``, score the ID and OOD
    validation inputs and compute ``metric``; the first maximum (first minimum for FPR metrics) wins.

    Args:
        detector_name: a registered detector name (``ood.names()``) or alias.
        grid: hyperparameter -> non-empty sequence of values, e.g. ``{"k": [50, 100]}``; an empty mapping
            evaluates the defaults only. ``Detector.sweep`` holds OpenOOD's grids.
        fit_inputs: keyword inputs of ``fit`` (e.g. ``{"features": F_train, "labels": y_train}``).
        val_id_inputs: keyword inputs of ``score`` for the ID validation set.
        val_ood_inputs: keyword inputs of ``score`` for the OOD validation set.
        metric: one of ``auroc``, ``aupr_in``, ``aupr_out`` (maximised), ``fpr95``, ``fpr95_id``
            (minimised).

    Returns:
        :class:`GridSearchResult` with the best parameters, the full table and the fitted best detector.

    Raises:
        ValueError: unknown detector or metric, a grid key that is not a hyperparameter of the detector, or
            an empty list of values.

    Example:
        >>> import torch
        >>> from neuralcollapse import ood
        >>> g = torch.Generator().manual_seed(0)
        >>> train = torch.randn(200, 8, generator=g)
        >>> res = ood.grid_search("knn", {"k": [1, 5]}, {"features": train},
        ...                       {"features": train[:50]}, {"features": 3 * torch.randn(50, 8, generator=g)})
        >>> sorted(res.best_params)
        ['k']
    """
    cls = get(detector_name)
    if metric not in METRIC_DIRECTIONS:
        raise ValueError(f"`metric` must be one of {', '.join(map(repr, METRIC_DIRECTIONS))}; got {metric!r}")
    if not isinstance(grid, Mapping):
        raise TypeError(f"`grid` must be a mapping hyperparameter -> values; got {type(grid).__name__}")
    for key, values in grid.items():
        if key not in cls.defaults:
            valid = ", ".join(cls.defaults) or "none"
            raise ValueError(f"`grid` key {key!r} is not a hyperparameter of '{cls.name}' (valid: {valid})")
        if isinstance(values, str | bytes) or not isinstance(values, Sequence) or len(values) == 0:
            raise ValueError(f"`grid[{key!r}]` must be a non-empty sequence of values; got {values!r}")
    higher = METRIC_DIRECTIONS[metric]
    keys = list(grid)
    table: list[dict[str, Any]] = []
    best: tuple[float, dict[str, Any], Detector] | None = None
    for combo in itertools.product(*(grid[k] for k in keys)):
        params = dict(zip(keys, combo))
        detector = create(detector_name, **params).fit(**fit_inputs)
        value = evaluate(detector.score(**val_id_inputs), detector.score(**val_ood_inputs))
        table.append({**params, **value})
        v = value[metric]
        if best is None or (v > best[0] if higher else v < best[0]):
            best = (v, params, detector)
    assert best is not None  # the product of non-empty sequences has at least one point
    return GridSearchResult(best_params=best[1], best_value=best[0], metric=metric, table=table, detector=best[2])

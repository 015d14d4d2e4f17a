"""Metrics are measurements: tensors that require grad (a head's ``weight``, the features of a training step) go in
as they are, with no requires_grad warning, the values of the detached inputs, and no graph back to them."""

from __future__ import annotations

import warnings

import pytest
import torch

from neuralcollapse import metrics


def _problem():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(60, 5, generator=g)
    y = torch.arange(60) % 3
    w = torch.randn(3, 5, generator=g)
    return h, y, w


CASES = {
    "neural_collapse": lambda h, y, w: metrics.neural_collapse(h, y, weight=w),
    "effective_rank_metrics": lambda h, y, w: metrics.effective_rank_metrics(h, y, w),
    "erank": lambda h, y, w: {"erank": metrics.erank(h.T @ h)},
    "separation_ratio": lambda h, y, w: {"r": metrics.separation_ratio(h, y)},
    "norm_variation": lambda h, y, w: metrics.norm_variation(h),
    "within_class_variability": lambda h, y, w: metrics.within_class_variability(h, y),
    "kl_entropy": lambda h, y, w: {"h": metrics.kl_entropy(h, k=3)},
    "linear_cka": lambda h, y, w: {"cka": metrics.linear_cka(h, h @ w.T)},
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_metric_accepts_tensors_that_require_grad(name):
    h, y, w = _problem()
    expected = CASES[name](h, y, w)
    h_grad, w_grad = torch.nn.Parameter(h.clone()), torch.nn.Parameter(w.clone())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = CASES[name](h_grad, y, w_grad)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-12, nan_ok=True), key
    assert h_grad.grad is None and w_grad.grad is None

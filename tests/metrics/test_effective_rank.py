"""erank and effective_rank_metrics: closed forms, the reference's algorithm (eps=1e-7), a NumPy
reference of §4.5, collapsed geometry, edge cases and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neuralcollapse.metrics import REFERENCE_ERANK_EPS, effective_rank_metrics, erank

from .test_neural_collapse import random_problem, simplex_etf_means


def reference_effective_rank(z: np.ndarray, eps: float = 1e-7) -> float:
    """pakoromilas/nc_by_design util.effective_rank, reproduced (with a guard for its endless zero loop)."""
    s = scipy.linalg.svd(z, full_matrices=False, compute_uv=False)
    assert np.linalg.norm(s, 1) > 0
    while np.linalg.norm(s, 1) < eps:
        s = s * 10
    while np.linalg.norm(s, 1) > 1000:
        s = s / 10
    s = s / (np.linalg.norm(s, 1)) + eps
    return float(np.exp(scipy.stats.entropy(s)))


def exact_effective_rank(matrix: np.ndarray) -> float:
    s = np.linalg.svd(matrix, compute_uv=False)
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def normalise(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def reference_metrics(h, y, w, k, erank_fn):
    """§4.5 written directly with np.cov (rows = observations), loops over classes."""
    u = normalise(np.asarray(h, dtype=np.float64))
    intra, excluded = [], 0
    means = {}
    for c in range(k):
        rows = u[y == c]
        if len(rows) >= 1:
            means[c] = rows.mean(axis=0)
        if len(rows) >= 2:
            intra.append(erank_fn(np.cov(rows.T)))
        else:
            excluded += 1
    present = sorted(means)
    mu = np.stack([means[c] for c in present])
    w_hat = normalise(np.asarray(w, dtype=np.float64))
    cos = u @ normalise(mu).T
    return {
        "er_intra": float(np.mean(intra)),
        "er_intra_excluded": excluded,
        "er_inter": erank_fn(np.cov(mu.T)),
        "w_erank": erank_fn(np.cov(w_hat.T)),
        "w_class_alignment": float(np.mean(np.sum((w_hat[present] - normalise(mu)) ** 2, axis=1))),
        "w_inst_alignment": float(np.mean(np.sum((w_hat[y] - u) ** 2, axis=1))),
        "ncc_cosine_accuracy": float(np.mean(np.asarray(present)[cos.argmax(axis=1)] == y)),
    }


# --------------------------------------------------------------------------- erank
@pytest.mark.parametrize(
    ("singular_values", "expected"),
    [
        ([5.0], 1.0),
        ([2.0, 2.0, 2.0], 3.0),
        ([1.0, 1.0, 0.0, 0.0], 2.0),
        ([3.0, 1.0], math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))),
        ([4.0, 2.0, 1.0, 1.0], math.exp(-(0.5 * math.log(0.5) + 0.25 * math.log(0.25) + 2 * 0.125 * math.log(0.125)))),
    ],
)
def test_erank_of_diagonal_matrices(singular_values, expected):
    assert erank(torch.diag(torch.tensor(singular_values))) == pytest.approx(expected, rel=1e-12)


@settings(max_examples=20, deadline=None)
@given(m=st.integers(1, 6), n=st.integers(1, 6), scale=st.floats(1e-6, 1e6), seed=st.integers(0, 1000))
def test_erank_invariant_to_scale_and_orthogonal_maps_and_bounded(m, n, scale, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(m, n, dtype=torch.float64, generator=g)
    u, _ = torch.linalg.qr(torch.randn(m, m, dtype=torch.float64, generator=g))
    v, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64, generator=g))
    base = erank(a)
    assert erank(scale * u @ a @ v.T) == pytest.approx(base, rel=1e-9)
    assert 1.0 - 1e-12 <= base <= min(m, n) + 1e-12
    assert base == pytest.approx(exact_effective_rank(a.numpy()), rel=1e-10)


def test_erank_of_zero_matrix_is_zero():
    assert erank(torch.zeros(4, 4)) == 0.0
    assert erank(torch.zeros(2, 3), eps=REFERENCE_ERANK_EPS) == 0.0


def test_erank_eps_reproduces_reference_algorithm():
    g = torch.Generator().manual_seed(0)
    for rank, d, scale in ((1, 5, 1.0), (3, 8, 1e-9), (8, 8, 1e4), (2, 6, 3e5)):
        x = torch.randn(d, rank, dtype=torch.float64, generator=g)
        psd = scale * x @ x.T
        ours = erank(psd, eps=REFERENCE_ERANK_EPS)
        assert ours == pytest.approx(reference_effective_rank(psd.numpy()), rel=1e-10)
        if rank < d:  # the bias counts each zero singular value a little: reference > exact
            assert ours > erank(psd) + 1e-6


def test_erank_bad_input():
    with pytest.raises(ValueError, match="`matrix` must be 2-D"):
        erank(torch.ones(3))
    with pytest.raises(TypeError, match="`matrix` must be a floating-point tensor"):
        erank(torch.ones(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="`matrix` contains 1 NaN"):
        erank(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="`eps` must be > 0"):
        erank(torch.eye(2), eps=0.0)


# --------------------------------------------------------------------------- effective_rank_metrics
@pytest.mark.parametrize("eps", [None, REFERENCE_ERANK_EPS])
def test_metrics_match_numpy_reference(eps):
    features, labels, weight, _, _ = random_problem(n=200, d=9, k=5, seed=3)
    erank_fn = exact_effective_rank if eps is None else reference_effective_rank
    expected = reference_metrics(features.numpy(), labels.numpy(), weight.numpy(), 5, erank_fn)
    out = effective_rank_metrics(features, labels, weight, eps=eps)
    assert set(out) == set(expected)
    for key, value in expected.items():
        assert out[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_small_classes_are_excluded_and_counted():
    features, labels, weight, _, _ = random_problem(n=60, d=4, k=4, seed=5)
    labels = labels.clone()
    labels[labels == 3] = 2
    labels[0] = 3  # class 3: one sample
    out = effective_rank_metrics(features, labels, torch.cat([weight, torch.randn(1, 4, dtype=torch.float64)]))
    # class 3 has one sample and class 4 none: both excluded from er_intra
    assert out["er_intra_excluded"] == 2
    expected = reference_metrics(features.numpy(), labels.numpy(), weight.numpy(), 4, exact_effective_rank)
    assert out["er_intra"] == pytest.approx(expected["er_intra"], rel=1e-10)
    assert out["er_inter"] == pytest.approx(expected["er_inter"], rel=1e-10)


def test_collapsed_geometry_reaches_ideals():
    k, d = 5, 8
    prototypes = simplex_etf_means(k, d)
    labels = torch.arange(k).repeat(4)
    out = effective_rank_metrics(3.0 * prototypes[labels], labels, prototypes)
    assert out["er_intra"] == 0.0  # zero within-class covariance
    assert out["er_inter"] == pytest.approx(k - 1, rel=1e-10)
    assert out["w_erank"] == pytest.approx(k - 1, rel=1e-10)
    assert out["w_class_alignment"] == pytest.approx(0.0, abs=1e-12)
    assert out["w_inst_alignment"] == pytest.approx(0.0, abs=1e-12)
    assert out["ncc_cosine_accuracy"] == 1.0


def test_inst_alignment_is_two_minus_two_mean_cosine_and_normalize_flag():
    features, labels, weight, _, _ = random_problem(n=80, d=5, k=3, seed=6)
    out = effective_rank_metrics(features, labels, weight)
    cos = torch.nn.functional.cosine_similarity(features, weight[labels], dim=1)
    assert out["w_inst_alignment"] == pytest.approx(2 - 2 * float(cos.mean()), rel=1e-10)
    raw = effective_rank_metrics(features, labels, weight, normalize=False)
    assert raw["w_inst_alignment"] == out["w_inst_alignment"]  # always on unit vectors
    # raw-feature er_inter differs from the normalised one on non-normalised input
    assert abs(raw["er_inter"] - out["er_inter"]) > 1e-6
    expected_raw = erank(torch.cov(torch.stack([features[labels == c].mean(0) for c in range(3)]).T))
    assert raw["er_inter"] == pytest.approx(expected_raw, rel=1e-10)
    assert "w_erank" not in effective_rank_metrics(features, labels)


def test_inputs_are_not_modified():
    features, labels, weight, _, _ = random_problem(n=50, d=4, k=3, seed=7)
    copies = [t.clone() for t in (features, labels, weight)]
    effective_rank_metrics(features, labels, weight)
    for before, after in zip(copies, (features, labels, weight)):
        assert torch.equal(before, after)


def test_bad_input_raises_naming_the_argument():
    features, labels, weight, _, _ = random_problem(n=30, d=4, k=3, seed=8)
    with pytest.raises(ValueError, match="same number of samples"):
        effective_rank_metrics(features, labels[:-1], weight)
    with pytest.raises(ValueError, match=r"`weight` must have shape \(K, d\) = \(3, 4\)"):
        effective_rank_metrics(features, labels, weight[:, :2])
    with pytest.raises(ValueError, match=r"`labels` must hold class indices in \[0, 3\)"):
        effective_rank_metrics(features, labels + 1, weight)
    with pytest.raises(ValueError, match="`labels` must give at least 2 classes"):
        effective_rank_metrics(features, torch.zeros_like(labels))
    with pytest.raises(ValueError, match="`labels` must contain at least 2 classes; got 1"):
        effective_rank_metrics(features, torch.zeros_like(labels), weight)
    with pytest.raises(ValueError, match="at least one class 2 samples"):
        effective_rank_metrics(features[:3], torch.tensor([0, 1, 2]), weight)
    bad = features.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="`features` contains 1 NaN"):
        effective_rank_metrics(bad, labels, weight)
    with pytest.raises(ValueError, match="`eps` must be > 0"):
        effective_rank_metrics(features, labels, weight, eps=-1.0)

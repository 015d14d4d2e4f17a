"""Prototype estimation (docs/methods.md §7.1, DL2PA / HPN) and its statistics."""

import itertools
import math
import time

import numpy as np
import pytest
import torch

from neuralcollapse.heads import optimize_prototypes, prototype_stats, simplex_etf


def _off_diagonal(p: torch.Tensor) -> torch.Tensor:
    g = p.double() @ p.double().T
    return g[~torch.eye(p.shape[0], dtype=torch.bool)]


def _potential(p: torch.Tensor, t: float = 2.0) -> float:
    """DL2PA's Gaussian potential log mean_{i<j} exp(-t ||p_i - p_j||^2), written as a plain loop."""
    p = p.double().numpy()
    values = [math.exp(-t * float(np.sum((p[i] - p[j]) ** 2))) for i, j in itertools.combinations(range(len(p)), 2)]
    return math.log(sum(values) / len(values))


def test_acceptance_k100_d64_max_cosine_and_time():
    start = time.perf_counter()
    protos = optimize_prototypes(100, 64)
    elapsed = time.perf_counter() - start
    assert protos.shape == (100, 64) and protos.dtype == torch.float32
    torch.testing.assert_close(protos.norm(dim=1), torch.ones(100), rtol=0, atol=1e-6)
    assert float(_off_diagonal(protos).max()) <= 0.01
    assert elapsed <= 10.0


def test_acceptance_k10_d3_near_tammes_optimum():
    value = prototype_stats(optimize_prototypes(10, 3))["max_cosine"]
    # Tammes' problem for 10 points: the best max cosine is 0.4045 (angle 66.15 deg); nothing can beat it
    assert 0.4045 - 1e-3 <= value <= 0.4145


@pytest.mark.parametrize(("k", "d"), [(2, 1), (3, 2), (5, 4), (6, 8), (10, 9)])
@pytest.mark.parametrize("method", ["auto", "two_stage"])
def test_k_at_most_d_plus_one_gives_the_simplex(k, d, method):
    protos = optimize_prototypes(k, d, method=method)
    np.testing.assert_allclose(_off_diagonal(protos).numpy(), -1.0 / (k - 1), rtol=0, atol=1e-3)
    if method == "auto":  # the exact ETF
        assert torch.equal(protos, simplex_etf(k, d, seed=0))


def test_deterministic_for_equal_seeds_and_thread_count_restored():
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        a = optimize_prototypes(12, 4, steps=150, seed=5)
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        b = optimize_prototypes(12, 4, steps=150, seed=5)
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(a, b)
    assert not torch.equal(a, optimize_prototypes(12, 4, steps=150, seed=6))
    state = torch.random.get_rng_state()
    optimize_prototypes(12, 4, steps=5, seed=1)
    assert torch.equal(state, torch.random.get_rng_state())


@pytest.mark.parametrize(("k", "d"), [(8, 4), (7, 4), (6, 5)])
def test_cross_polytope_exact_zero(k, d):
    protos = optimize_prototypes(k, d, method="cross_polytope", seed=3, dtype=torch.float64)
    off = _off_diagonal(protos)
    assert abs(float(off.max())) <= 1e-12
    assert float(off.min()) == pytest.approx(-1.0, abs=1e-12)  # antipodal pairs
    gram = protos @ protos.T
    assert int((gram < -0.5).sum()) == 2 * (k // 2)  # exactly floor(K/2) antipodal pairs


def test_dl2pa_verbatim_lowers_the_gaussian_potential():
    k, d = 12, 3
    init = torch.nn.functional.normalize(torch.randn(k, d, generator=torch.Generator().manual_seed(4),
                                                     dtype=torch.float64), dim=1)
    final = optimize_prototypes(k, d, steps=200, seed=4, method="dl2pa", dtype=torch.float64)
    assert _potential(final) < _potential(init) - 0.05
    subset = optimize_prototypes(k, d, steps=200, seed=4, method="dl2pa", subset_size=6, dtype=torch.float64)
    assert _potential(subset) < _potential(init)
    torch.testing.assert_close(subset.norm(dim=1), torch.ones(k, dtype=torch.float64))


def test_hpn_lowers_mean_max_cosine():
    k, d = 12, 3
    init = torch.nn.functional.normalize(torch.randn(k, d, generator=torch.Generator().manual_seed(0),
                                                     dtype=torch.float64), dim=1)
    final = optimize_prototypes(k, d, steps=300, method="hpn")
    assert prototype_stats(final)["mean_max_cosine"] < prototype_stats(init)["mean_max_cosine"] - 0.1
    assert optimize_prototypes(k, d, steps=1, method="two_stage").shape == (k, d)


def test_output_dtype_and_device_arguments():
    protos = optimize_prototypes(6, 2, steps=20, dtype=torch.float64, device="cpu")
    assert protos.dtype == torch.float64 and protos.device.type == "cpu"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_classes": 1, "dim": 3}, ValueError, r"`num_classes` must be >= 2; got 1"),
        ({"num_classes": 4, "dim": 0}, ValueError, r"`dim` must be >= 1; got 0"),
        ({"num_classes": 4, "dim": 2, "steps": 0}, ValueError, r"`steps` must be >= 1; got 0"),
        ({"num_classes": 4, "dim": 2, "lr": 0.0}, ValueError, r"`lr` must be > 0"),
        ({"num_classes": 4, "dim": 2, "method": "random"}, ValueError, r"`method` must be one of 'auto'"),
        ({"num_classes": 10, "dim": 3, "method": "etf"}, ValueError, r"`dim` must be >= num_classes - 1"),
        ({"num_classes": 10, "dim": 4, "method": "cross_polytope"}, ValueError, r"num_classes <= 2\*dim = 8"),
        ({"num_classes": 6, "dim": 2, "subset_size": 3}, ValueError, r"`subset_size` is only used with"),
        ({"num_classes": 6, "dim": 2, "method": "dl2pa", "subset_size": 7}, ValueError,
         r"`subset_size` must be <= num_classes = 6"),
        ({"num_classes": 6, "dim": 2, "method": "dl2pa", "subset_size": 1}, ValueError,
         r"`subset_size` must be >= 2"),
        ({"num_classes": 6.0, "dim": 2}, TypeError, r"`num_classes` must be an integer"),
    ],
)
def test_optimize_prototypes_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        optimize_prototypes(**kwargs)


def test_prototype_stats_against_numpy():
    p = torch.randn(7, 3, generator=torch.Generator().manual_seed(1)) * 3.0
    p_before = p.clone()
    stats = prototype_stats(p)
    u = p.double().numpy() / np.linalg.norm(p.double().numpy(), axis=1, keepdims=True)
    cos = [[float(u[i] @ u[j]) for j in range(7) if j != i] for i in range(7)]
    flat = [c for row in cos for c in row]
    assert stats["max_cosine"] == pytest.approx(max(flat), abs=1e-12)
    assert stats["min_cosine"] == pytest.approx(min(flat), abs=1e-12)
    assert stats["mean_cosine"] == pytest.approx(float(np.mean(flat)), abs=1e-12)
    assert stats["mean_max_cosine"] == pytest.approx(float(np.mean([max(r) for r in cos])), abs=1e-12)
    assert torch.equal(p, p_before)
    etf_stats = prototype_stats(simplex_etf(5, 4))
    assert etf_stats["max_cosine"] == pytest.approx(-0.25, abs=1e-6)
    assert etf_stats["mean_cosine"] == pytest.approx(-0.25, abs=1e-6)


def test_prototype_stats_errors():
    with pytest.raises(ValueError, match=r"`prototypes` must have at least 2 rows"):
        prototype_stats(torch.ones(1, 3))
    with pytest.raises(ValueError, match=r"`prototypes` contains 1 NaN"):
        prototype_stats(torch.tensor([[1.0, 0.0], [float("nan"), 1.0]]))
    with pytest.raises(ValueError, match=r"`prototypes` must be 2-D"):
        prototype_stats(torch.ones(3))

"""LPC metrics (docs/methods.md §6.5) against closed forms, hand cases and straightforward NumPy references
written from the LPC reference's definitions (luigisbailo/lpc ``lpc/metrics.py``)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.spatial import cKDTree
from scipy.special import digamma, gammaln

from neuralcollapse.metrics import (
    binarity,
    fit_gmm_1d,
    kl_entropy,
    norm_variation,
    separation_ratio,
    within_class_variability,
)


def _clustered(rng: np.random.Generator, n_per: int, num_classes: int, dim: int, spread: float = 0.5):
    means = rng.normal(size=(num_classes, dim)) * 3
    y = np.repeat(np.arange(num_classes), n_per)
    h = means[y] + spread * rng.normal(size=(len(y), dim))
    return torch.from_numpy(h), torch.from_numpy(y)


# ----------------------------------------------------------------------------------------------------------
# within-class variability
# ----------------------------------------------------------------------------------------------------------
def _reference_collapse(h: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """The LPC reference's ``get_collapse_metrics`` (grouping = ``y``), written with loops."""
    mu_g = h.mean(axis=0)
    centred, covs = [], []
    for c in np.unique(y):
        sel = h[y == c]
        centred.append(sel.mean(axis=0) - mu_g)
        covs.append(np.cov(sel.T))
    centred = np.stack(centred)
    sigma_w = np.mean(np.stack(covs), axis=0)
    sigma_b = np.mean(np.stack([np.outer(m, m) for m in centred]), axis=0)
    num = len(centred)
    nc1 = np.trace(sigma_w @ scipy.linalg.pinv(sigma_b)) / num
    cos, cmax = [], []
    for i in range(num):
        for j in range(i + 1, num):
            c = centred[i] @ centred[j] / np.linalg.norm(centred[i]) / np.linalg.norm(centred[j])
            cos.append(c)
            cmax.append(abs(c + 1.0 / (num - 1)))
    norms = np.linalg.norm(centred, axis=1)
    return {
        "nc1": nc1,
        "nc1_per_dim": nc1 / h.shape[1],
        "sigma_w": float(np.mean(sigma_w)),
        "equiangularity": float(np.std(cos)),
        "max_angle": float(np.mean(cmax)),
        "equinorm": float(np.std(norms) / np.mean(norms)),
        "num_classes": num,
    }


@pytest.mark.parametrize(("num_classes", "dim"), [(4, 7), (6, 3), (3, 3)])
def test_within_class_matches_reference(rng, num_classes, dim):
    h, y = _clustered(rng, 9, num_classes, dim)
    ref = _reference_collapse(h.numpy(), y.numpy())
    got = within_class_variability(h, y)
    assert got.keys() == ref.keys()
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_within_class_predicted_grouping_skips_absent_ids(rng):
    h, y = _clustered(rng, 6, 3, 5)
    pred = torch.tensor([0, 4, 9])[y]  # a grouping by predictions: ids 1-3, 5-8 never predicted
    got = within_class_variability(h, pred)
    assert got["num_classes"] == 3
    assert got == pytest.approx(within_class_variability(h, y))


def test_within_class_float32_and_bf16_inputs_are_read_in_float64(rng):
    h, y = _clustered(rng, 8, 3, 4)
    ref = within_class_variability(h.float().double(), y)
    assert within_class_variability(h.float(), y) == pytest.approx(ref, rel=1e-12)
    bf = within_class_variability(h.bfloat16(), y)
    assert all(math.isfinite(v) for v in bf.values())


def test_within_class_perfect_simplex_collapse():
    means = torch.eye(4, dtype=torch.float64) * 5  # centred: a regular simplex, equal norms
    y = torch.arange(4).repeat(3)
    got = within_class_variability(means[y], y)
    for key in ("nc1", "sigma_w", "equiangularity", "max_angle", "equinorm"):
        assert got[key] == pytest.approx(0.0, abs=1e-12), key


def test_within_class_invariances(rng):
    h, y = _clustered(rng, 7, 4, 6)
    base = within_class_variability(h, y)
    moved = within_class_variability(3.0 * h + 11.0, y)
    for key in ("nc1", "nc1_per_dim", "equiangularity", "max_angle", "equinorm"):
        assert moved[key] == pytest.approx(base[key], rel=1e-8), key
    assert moved["sigma_w"] == pytest.approx(9.0 * base["sigma_w"], rel=1e-10)


def test_within_class_one_dimensional_hand_case():
    # groups {0, 2} and {10, 12}: unbiased variances 2 → Σ_W = 2; centred means ∓5 → Σ_B = 25
    h = torch.tensor([[0.0], [2.0], [10.0], [12.0]])
    got = within_class_variability(h, torch.tensor([0, 0, 1, 1]))
    assert got["nc1"] == pytest.approx(2.0 / 25.0 / 2.0)
    assert got["nc1_per_dim"] == pytest.approx(0.04)
    assert got["sigma_w"] == pytest.approx(2.0)
    assert got["equiangularity"] == 0.0 and got["max_angle"] == pytest.approx(0.0) and got["equinorm"] == 0.0


def test_within_class_singletons(rng):
    h, y = _clustered(rng, 5, 3, 4)
    h = torch.cat([h, torch.randn(1, 4, dtype=torch.float64)])
    y = torch.cat([y, torch.tensor([7])])
    with pytest.raises(ValueError, match=r"`labels`.*single sample.*class 7"):
        within_class_variability(h, y)
    skipped = within_class_variability(h, y, singletons="skip")
    assert skipped == pytest.approx(within_class_variability(h[:-1], y[:-1]))
    with pytest.raises(ValueError, match="`singletons`"):
        within_class_variability(h, y, singletons="drop")


def test_within_class_bad_input(rng):
    h, y = _clustered(rng, 4, 3, 4)
    with pytest.raises(ValueError, match="`labels` must have length"):
        within_class_variability(h, y[:-1])
    with pytest.raises(ValueError, match="at least 2 groups"):
        within_class_variability(h, torch.zeros_like(y))
    bad = h.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="`features` contains 1 NaN"):
        within_class_variability(bad, y)
    with pytest.raises(TypeError, match="`labels` must be an integer tensor"):
        within_class_variability(h, y.double())
    with pytest.raises(ValueError, match="`labels` must hold non-negative"):
        within_class_variability(h, y - 1)
    with pytest.raises(ValueError, match="`features` must be 2-D"):
        within_class_variability(h[0], y)
    same = torch.tensor([[1.0, 3.0], [-1.0, -3.0], [2.0, 0.5], [-2.0, -0.5]])  # both group means are 0
    with pytest.raises(ValueError, match="group means coincide"):
        within_class_variability(same, torch.tensor([0, 0, 1, 1]))


def test_latent_metrics_do_not_modify_inputs(rng):
    h, y = _clustered(rng, 8, 3, 4)
    h0, y0 = h.clone(), y.clone()
    within_class_variability(h, y)
    separation_ratio(h, y)
    norm_variation(h, over="class_means", labels=y)
    kl_entropy(h, k=3)
    binarity(h)
    assert torch.equal(h, h0) and torch.equal(y, y0)


# ----------------------------------------------------------------------------------------------------------
# separation ratio
# ----------------------------------------------------------------------------------------------------------
def test_separation_ratio_hand_case():
    h = torch.tensor([[0.0], [2.0], [1.0], [10.0], [12.0]])
    y = torch.tensor([0, 0, 0, 1, 1])
    # centroids 1 and 11: sample 1.0 sits on its centroid (excluded); others 11/1, 9/1, 9/1, 11/1
    details = separation_ratio(h, y, return_details=True)
    assert details["mean"] == pytest.approx(10.0)
    assert details["num_excluded"] == 1
    assert math.isinf(details["ratios"][2])
    assert separation_ratio(h, y) == pytest.approx(10.0)


def _reference_separation(h: np.ndarray, y: np.ndarray) -> float:
    cents = {c: h[y == c].mean(axis=0) for c in np.unique(y)}
    ratios = []
    for x, c in zip(h, y):
        own = np.linalg.norm(x - cents[c])
        other = min(np.linalg.norm(x - m) for k, m in cents.items() if k != c)
        if own > 0:
            ratios.append(other / own)
    return float(np.mean(ratios))


def test_separation_ratio_matches_loop_reference(rng):
    h, y = _clustered(rng, 10, 5, 3, spread=1.5)
    pred = torch.tensor([2, 3, 5, 8, 9])[y]
    assert separation_ratio(h, pred) == pytest.approx(_reference_separation(h.numpy(), pred.numpy()), rel=1e-12)


def test_separation_ratio_keeps_precision_under_a_large_offset(rng):
    h, y = _clustered(rng, 10, 3, 4, spread=1e-3)
    base = separation_ratio(h, y)
    assert separation_ratio(h + 1e6, y) == pytest.approx(base, rel=1e-5)
    assert base > 100  # tight clusters are far apart relative to their spread


def test_separation_ratio_all_on_centroids_is_inf():
    h = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    assert separation_ratio(h, torch.tensor([0, 0, 1])) == math.inf


def test_separation_ratio_subsample_is_seeded(rng):
    h, y = _clustered(rng, 20, 3, 2, spread=2.0)
    d1 = separation_ratio(h, y, max_samples=25, seed=3, return_details=True)
    d2 = separation_ratio(h, y, max_samples=25, seed=3, return_details=True)
    assert d1["mean"] == d2["mean"] and d1["num_samples"] == 25
    idx = d1["indices"]
    assert d1["mean"] == pytest.approx(separation_ratio(h[idx], y[idx], max_samples=None))
    assert separation_ratio(h, y, max_samples=25, seed=4) != d1["mean"]


@given(
    scale=st.floats(0.01, 100.0),
    shift=st.floats(-50.0, 50.0),
    seed=st.integers(0, 2**16),
)
def test_separation_ratio_similarity_invariant(scale, shift, seed):
    gen = np.random.default_rng(seed)
    h, y = _clustered(gen, 5, 3, 3, spread=1.0)
    q, _ = np.linalg.qr(gen.normal(size=(3, 3)))
    moved = scale * h @ torch.from_numpy(q) + shift
    assert separation_ratio(moved, y) == pytest.approx(separation_ratio(h, y), rel=1e-7)


def test_separation_ratio_bad_input(rng):
    h, y = _clustered(rng, 4, 2, 2)
    with pytest.raises(ValueError, match="at least 2 groups"):
        separation_ratio(h, torch.zeros_like(y))
    with pytest.raises(ValueError, match="`labels` must have length"):
        separation_ratio(h, y[:3])
    with pytest.raises(ValueError, match="`max_samples`"):
        separation_ratio(h, y, max_samples=0)


# ----------------------------------------------------------------------------------------------------------
# norm variation
# ----------------------------------------------------------------------------------------------------------
def test_norm_variation_closed_form():
    h = torch.tensor([[3.0, 4.0], [0.0, 10.0]])
    got = norm_variation(h)
    abs_vals = np.array([3.0, 4.0, 0.0, 10.0])
    assert got["cv_norm"] == pytest.approx(2.5 / 7.5)  # norms 5, 10: std 2.5, mean 7.5
    assert got["cv_abs"] == pytest.approx(abs_vals.std() / abs_vals.mean())
    assert got["norm_mean"] == pytest.approx(7.5)


def test_norm_variation_class_means():
    h = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 4.0], [0.0, 8.0], [9.0, 9.0]])
    y = torch.tensor([0, 0, 5, 5, 2])
    # uncentred class means (2, 0), (0, 6), (9, 9) for ids 0, 5, 2 — the absent ids are skipped
    norms = np.array([2.0, 6.0, 9.0 * math.sqrt(2)])
    got = norm_variation(h, over="class_means", labels=y)
    assert got["cv_norm"] == pytest.approx(norms.std() / norms.mean())
    assert got["cv_abs"] == pytest.approx(np.array([2, 0, 0, 6, 9, 9.0]).std() / 26 * 6)


def test_norm_variation_zero_input_and_invariance():
    assert norm_variation(torch.zeros(3, 2)) == {"cv_norm": 0.0, "cv_abs": 0.0, "norm_mean": 0.0}
    h = torch.randn(20, 4, dtype=torch.float64)
    a, b = norm_variation(h), norm_variation(-7.0 * h)
    assert a["cv_norm"] == pytest.approx(b["cv_norm"]) and a["cv_abs"] == pytest.approx(b["cv_abs"])


def test_norm_variation_bad_input():
    h = torch.randn(4, 2)
    with pytest.raises(ValueError, match="`labels` is required"):
        norm_variation(h, over="class_means")
    with pytest.raises(ValueError, match="`labels` is only used"):
        norm_variation(h, labels=torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="`over` must be one of"):
        norm_variation(h, over="classes")


# ----------------------------------------------------------------------------------------------------------
# Kozachenko–Leonenko entropy
# ----------------------------------------------------------------------------------------------------------
def test_kl_entropy_gaussian_closed_form():
    # Tolerance: over 20 seeds at N = 4000, d = 2, k = 20 the estimate's error had mean −0.022 nats and sd
    # 0.015 nats (the k-NN estimator's finite-sample bias and spread); 0.07 nats is > 3 sd beyond the bias.
    cov = torch.tensor([[2.0, 0.6], [0.6, 0.5]], dtype=torch.float64)
    x = torch.randn(4000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = x @ torch.linalg.cholesky(cov).T
    true = 0.5 * math.log((2 * math.pi * math.e) ** 2 * float(torch.det(cov)))
    assert kl_entropy(x, standardize=False, per_dim=False) == pytest.approx(true, abs=0.07)


def _reference_kl(x: np.ndarray, k: int, p: float) -> float:
    """Brute-force k-NN distances (self excluded) and the estimator's formula."""
    n, d = x.shape
    diff = x[:, None, :] - x[None, :, :]
    dist = np.abs(diff).max(axis=2) if p == np.inf else np.sqrt((diff**2).sum(axis=2))
    np.fill_diagonal(dist, np.inf)
    eps = np.sort(dist, axis=1)[:, k - 1]
    log_vd = d * np.log(2) if p == np.inf else d / 2 * np.log(np.pi) - gammaln(d / 2 + 1)
    return float(digamma(n) - digamma(k) + log_vd + d * np.mean(np.log(eps + 1e-10)))


@pytest.mark.parametrize("metric", ["euclidean", "chebyshev"])
def test_kl_entropy_matches_brute_force(rng, metric):
    x = rng.normal(size=(150, 5)) * np.array([1.0, 2.0, 0.5, 3.0, 1.0])
    x[10] = x[11]  # a duplicate: ε = 0 for k = 1 sits on the 1e-10 floor
    p = np.inf if metric == "chebyshev" else 2.0
    for k in (1, 7):
        got = kl_entropy(torch.from_numpy(x), k=k, metric=metric, standardize=False, per_dim=False)
        assert got == pytest.approx(_reference_kl(x, k, p), rel=1e-12)
    std = (x - x.mean(axis=0)) / x.std(axis=0)
    got = kl_entropy(torch.from_numpy(x), k=7, metric=metric)
    assert got == pytest.approx(_reference_kl(std, 7, p) / 5, rel=1e-12)


def test_kl_entropy_old_reference_form_matches_ckdtree(rng):
    """Older LPC version: k = 100, Chebyshev via cKDTree(p=∞) with k + 1 neighbours incl. itself, no
    standardisation, log V_d = d log 2, not ÷ d."""
    x = rng.normal(size=(400, 3))
    dist, _ = cKDTree(x).query(x, k=101, p=np.inf)
    ref = digamma(400) - digamma(100) + 3 * np.log(2) + 3 * np.mean(np.log(dist[:, -1] + 1e-10))
    got = kl_entropy(torch.from_numpy(x), k=100, metric="chebyshev", standardize=False, per_dim=False)
    assert got == pytest.approx(ref, rel=1e-12)


def test_kl_entropy_standardisation_and_zero_variance(rng):
    x = torch.from_numpy(rng.normal(size=(200, 3)))
    scaled = x * torch.tensor([10.0, 0.1, 3.0], dtype=torch.float64) + 5
    assert kl_entropy(scaled) == pytest.approx(kl_entropy(x), rel=1e-10)
    with_const = torch.cat([x, torch.full((200, 1), 4.0, dtype=torch.float64)], dim=1)
    # a constant dimension is centred but unscaled (stays 0): the neighbour distances are those of the other
    # three dimensions, so H_4 − ψ(N) + ψ(k) − log V_4 = (4/3)·(H_3 − ψ(N) + ψ(k) − log V_3)
    eps_only = kl_entropy(with_const, per_dim=False) - (2.0 * np.log(np.pi) - gammaln(3.0))
    eps_three = kl_entropy(x, per_dim=False) - (1.5 * np.log(np.pi) - gammaln(2.5))
    # same neighbour distances, one more dimension: (4/N)Σlog ε vs (3/N)Σlog ε
    assert eps_only - (digamma(200) - digamma(20)) == pytest.approx(
        4 / 3 * (eps_three - (digamma(200) - digamma(20))), rel=1e-10
    )


def test_kl_entropy_subsample_and_errors(rng):
    x = torch.from_numpy(rng.normal(size=(60, 2)))
    assert kl_entropy(x, k=3, max_samples=30, seed=1) == kl_entropy(x, k=3, max_samples=30, seed=1)
    with pytest.raises(ValueError, match="`k` must be smaller than the number of samples"):
        kl_entropy(x, k=30, max_samples=30)
    with pytest.raises(ValueError, match="`k` must be a positive int"):
        kl_entropy(x, k=0)
    with pytest.raises(ValueError, match="`metric` must be one of"):
        kl_entropy(x, metric="manhattan")
    bad = x.clone()
    bad[3, 1] = float("inf")
    with pytest.raises(ValueError, match="`features` contains 1 NaN or Inf"):
        kl_entropy(bad)


# ----------------------------------------------------------------------------------------------------------
# binarity
# ----------------------------------------------------------------------------------------------------------
def _sklearn_fit(column: np.ndarray):
    from sklearn.mixture import GaussianMixture
    from sklearn.preprocessing import StandardScaler

    xs = StandardScaler().fit_transform(column.reshape(-1, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gmm = GaussianMixture(n_components=2, random_state=0).fit(xs)
    order = np.argsort(gmm.means_.ravel())
    return gmm.score(xs), gmm.means_.ravel()[order], gmm.covariances_.ravel()[order], gmm.n_iter_


def test_gmm_agrees_with_sklearn_on_separated_data(rng):
    pytest.importorskip("sklearn")
    cols = [
        np.concatenate([rng.normal(-3, 1, 300), rng.normal(3, 0.5, 300)]),
        np.concatenate([rng.normal(-2, 1, 150), rng.normal(4, 1, 450)]),
        np.concatenate([rng.normal(0, 0.2, 400), rng.normal(10, 2, 200)]),
        np.full(600, 2.5),  # constant: both components collapse onto 0 with variance reg_covar
    ]
    data = torch.from_numpy(np.stack(cols, axis=1))
    fit = fit_gmm_1d(data)
    for j, col in enumerate(cols):
        score, means, variances, n_iter = _sklearn_fit(col)
        order = torch.argsort(fit.means[j])
        assert float(fit.score[j]) == pytest.approx(score, rel=1e-9, abs=1e-9)
        np.testing.assert_allclose(fit.means[j][order].numpy(), means, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(fit.variances[j][order].numpy(), variances, rtol=1e-8)
        assert int(fit.n_iter[j]) == n_iter
    assert bool(fit.converged.all())


def test_gmm_score_is_the_mean_log_likelihood(rng):
    col = np.concatenate([rng.normal(-2, 0.7, 200), rng.normal(2, 0.7, 200)])
    fit = fit_gmm_1d(torch.from_numpy(col[:, None]), standardize=False)
    w, mu, var = (t[0].numpy() for t in (fit.weights, fit.means, fit.variances))
    dens = (w / np.sqrt(2 * np.pi * var) * np.exp(-0.5 * (col[:, None] - mu) ** 2 / var)).sum(axis=1)
    assert float(fit.score[0]) == pytest.approx(np.log(dens).mean(), rel=1e-12)
    assert w.sum() == pytest.approx(1.0)


def test_binarity_bimodal_vs_unimodal(rng):
    n = 2000
    signs = rng.integers(0, 2, size=(n, 2)) * 2.0 - 1.0
    bimodal = 5.0 * signs + 0.5 * rng.normal(size=(n, 2))  # N(±5, 0.5²): peak distance 2·5/0.5 = 20
    unimodal = rng.normal(size=(n, 2))
    h = torch.from_numpy(np.concatenate([bimodal, unimodal], axis=1))
    res = binarity(h, return_fit=True)
    peaks, scores = res["peak_distances"], res["scores"]
    assert peaks[:2].numpy() == pytest.approx([20.0, 20.0], rel=0.05)
    assert float(peaks[2:].max()) < 3.0
    assert float(scores[:2].min()) > float(scores[2:].max())
    # standardised N(±5, 0.5²) mixture: a half-unit-variance spike pair; score ≈ −log(√(2πe)·σ) − log 2 with
    # σ = 0.5/√(25.25) — the entropy of the mixture (components barely overlap)
    sigma = 0.5 / math.sqrt(25.25)
    expected = -0.5 * math.log(2 * math.pi * math.e * sigma**2) - math.log(2)
    assert scores[:2].numpy() == pytest.approx([expected, expected], abs=0.05)
    assert res["score_argmin"] in (2, 3) and res["peak_distance_argmin"] in (2, 3)
    assert res["score_min"] == pytest.approx(float(scores.min()))
    assert res["std_mean"] == pytest.approx(float(res["stds"].mean()))
    assert res["peak_distance_mean"] == pytest.approx(float(peaks.mean()))
    assert 0 <= res["score_argmean"] < 4 and 0 <= res["peak_distance_argmean"] < 4


def test_binarity_is_seeded_and_subsamples(rng):
    h = torch.from_numpy(rng.normal(size=(300, 3)))
    a = binarity(h, max_samples=100, seed=5)
    assert a == binarity(h, max_samples=100, seed=5)
    assert a != binarity(h, max_samples=100, seed=6)


def test_binarity_bad_input():
    with pytest.raises(ValueError, match="at least 2 samples"):
        binarity(torch.randn(1, 3))
    with pytest.raises(ValueError, match="`max_samples`"):
        binarity(torch.randn(5, 3), max_samples=-1)
    with pytest.raises(ValueError, match="`features` contains"):
        binarity(torch.tensor([[0.0], [float("nan")]]))
    with pytest.raises(ValueError, match="`reg_covar` must be > 0"):
        fit_gmm_1d(torch.randn(5, 1), reg_covar=0.0)
    with pytest.raises(ValueError, match="`max_iter`"):
        fit_gmm_1d(torch.randn(5, 1), max_iter=0)

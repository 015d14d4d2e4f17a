"""neural_collapse(): hand-built geometries, a NumPy float64 reference, invariances, edge cases, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neuralcollapse import validation
from neuralcollapse.metrics import neural_collapse

W_KEYS = ("nc2", "nc3", "nc4", "equinorm_weights", "equiangularity_weights", "self_duality")
ALL_KEYS = (
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


# --------------------------------------------------------------------------- reference (straight from §9)
def reference_nc(h, y, weight=None, bias=None, logits=None, global_mean="weighted", num_classes=None):
    """Two-pass NumPy float64 implementation of docs/methods.md §9, written from the table (loops, pinv)."""
    h = np.asarray(h, dtype=np.float64)
    y = np.asarray(y)
    n, d = h.shape
    k = num_classes if num_classes is not None else int(y.max()) + 1
    mu = np.stack([h[y == c].mean(axis=0) for c in range(k)])
    mu_g = h.mean(axis=0) if global_mean == "weighted" else mu.mean(axis=0)
    m_tilde = mu - mu_g  # K × d (rows = centred means)
    sigma_w = np.zeros((d, d))
    for i in range(n):
        diff = (h[i] - mu[y[i]])[:, None]
        sigma_w += diff @ diff.T
    sigma_w /= n
    sigma_b = m_tilde.T @ m_tilde / k
    rcond = max(d, k) * np.finfo(np.float64).eps
    out = {"nc1": float(np.trace(sigma_w @ np.linalg.pinv(sigma_b, rcond=rcond, hermitian=True)) / k)}
    etf = (np.eye(k) - np.ones((k, k)) / k) / math.sqrt(k - 1)

    def etf_err(g):
        return float(np.linalg.norm(g / np.linalg.norm(g) - etf))

    def equinorm(rows):
        norms = np.linalg.norm(rows, axis=1)
        return float(norms.std(ddof=1) / norms.mean())

    def equiangularity(rows):
        vals = []
        for a in range(k):
            for b in range(k):
                if a != b:
                    cos = rows[a] @ rows[b] / (np.linalg.norm(rows[a]) * np.linalg.norm(rows[b]))
                    vals.append(abs(cos + 1.0 / (k - 1)))
        return float(np.mean(vals))

    out["nc2_means"] = etf_err(m_tilde @ m_tilde.T)
    out["equinorm_means"] = equinorm(m_tilde)
    out["equiangularity_means"] = equiangularity(m_tilde)
    if weight is not None:
        w = np.asarray(weight, dtype=np.float64)
        b = np.zeros(k) if bias is None else np.asarray(bias, dtype=np.float64)
        out["nc2"] = etf_err(w @ w.T)
        out["nc3"] = etf_err(w @ m_tilde.T)
        out["nc4"] = float(np.sum((b + w @ mu_g) ** 2))
        out["equinorm_weights"] = equinorm(w)
        out["equiangularity_weights"] = equiangularity(w)
        out["self_duality"] = float(np.linalg.norm(w.T / np.linalg.norm(w) - m_tilde.T / np.linalg.norm(m_tilde)) ** 2)
    if logits is not None or weight is not None:
        z = np.asarray(logits, dtype=np.float64) if logits is not None else h @ w.T + b
        mismatches = 0
        for i in range(n):
            nearest = int(np.argmin([np.linalg.norm(h[i] - mu[c]) for c in range(k)]))
            mismatches += int(np.argmax(z[i]) != nearest)
        out["ncc_mismatch"] = mismatches / n
    return out


def simplex_etf_means(k: int, d: int, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    """K × d simplex ETF (rows: equal norms, pairwise cosine −1/(K−1), centred), randomly rotated."""
    g = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(d, k, dtype=torch.float64, generator=g))
    centring = torch.eye(k, dtype=torch.float64) - 1.0 / k
    return scale * math.sqrt(k / (k - 1)) * centring @ basis.T


def random_problem(n=240, d=7, k=4, seed=0, imbalanced=True, offset=0.0):
    g = torch.Generator().manual_seed(seed)
    probs = torch.linspace(1.0, 4.0, k) if imbalanced else torch.ones(k)
    labels = torch.multinomial(probs / probs.sum(), n, replacement=True, generator=g)
    labels[:k] = torch.arange(k)  # every class present
    means = 2.0 * torch.randn(k, d, dtype=torch.float64, generator=g)
    features = means[labels] + torch.randn(n, d, dtype=torch.float64, generator=g) + offset
    weight = torch.randn(k, d, dtype=torch.float64, generator=g)
    bias = torch.randn(k, dtype=torch.float64, generator=g)
    logits = torch.randn(n, k, dtype=torch.float64, generator=g)
    return features, labels, weight, bias, logits


def assert_close_dict(actual: dict, expected: dict, rtol=1e-9, atol=1e-12):
    assert set(actual) == set(expected)
    for key in expected:
        assert actual[key] == pytest.approx(expected[key], rel=rtol, abs=atol), key


# --------------------------------------------------------------------------- hand-built geometries
@pytest.mark.parametrize(("k", "d"), [(2, 2), (4, 4), (5, 9)])
def test_perfect_simplex_etf_is_zero_everywhere(k, d):
    means = simplex_etf_means(k, d, scale=3.0)
    labels = torch.arange(k).repeat(6)
    out = neural_collapse(means[labels], labels, weight=means.clone())
    assert tuple(out) == ALL_KEYS
    for key, value in out.items():
        assert value == pytest.approx(0.0, abs=1e-10), key


def test_self_dual_up_to_scale_with_bias_cancelling_global_mean():
    # shifted ETF: μ_G = t ≠ 0; W = 2·ETF (self-dual up to scale); b = −W t → nc4 = 0
    k, d = 4, 6
    etf = simplex_etf_means(k, d, seed=1)
    t = torch.arange(1.0, d + 1, dtype=torch.float64)
    labels = torch.arange(k).repeat(3)
    w = 2.0 * etf
    out = neural_collapse(etf[labels] + t, labels, weight=w, bias=-(w @ t))
    for key, value in out.items():
        assert value == pytest.approx(0.0, abs=1e-9), key


def test_nc1_hand_computed_one_dimensional():
    # class 0 at {−2, 0} (mean −1), class 1 at {0, 2} (mean 1): Σ_W = 1, Σ_B = 1 → nc1 = 1·1/K = 0.5
    features = torch.tensor([[-2.0], [0.0], [0.0], [2.0]])
    labels = torch.tensor([0, 0, 1, 1])
    out = neural_collapse(features, labels)
    assert out["nc1"] == pytest.approx(0.5, rel=1e-12)
    assert out["nc2_means"] == pytest.approx(0.0, abs=1e-12)  # any two distinct means form a 2-class ETF
    assert out["equinorm_means"] == pytest.approx(0.0, abs=1e-12)


def test_nc1_hand_computed_unweighted_global_mean():
    # imbalanced 1-D: class 0 {0, 0, 0, 4} (mean 1), class 1 {5, 7} (mean 6); N = 6
    # Σ_W = (1+1+1+9+1+1)/6 = 14/6; weighted μ_G = 16/6, unweighted μ_G = 3.5
    features = torch.tensor([[0.0], [0.0], [0.0], [4.0], [5.0], [7.0]])
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    sigma_w = 14.0 / 6.0
    # Σ_B = ((1 − μ_G)² + (6 − μ_G)²)/2; 1-D: tr(Σ_W Σ_B†)/K = Σ_W/Σ_B/2
    for mode, mu_g in (("weighted", 16.0 / 6.0), ("unweighted", 3.5)):
        sigma_b = ((1 - mu_g) ** 2 + (6 - mu_g) ** 2) / 2
        out = neural_collapse(features, labels, global_mean=mode)
        assert out["nc1"] == pytest.approx(sigma_w / sigma_b / 2, rel=1e-12), mode


def test_nc4_hand_computed_bias():
    # μ_G = (3, 1); W = I; b = (1, −2) → b + Wμ_G = (4, −1) → nc4 = 17 (squared norm, OCCE A.9)
    features = torch.tensor([[2.0, 0.0], [4.0, 2.0], [3.0, 1.0], [3.0, 1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    out = neural_collapse(features, labels, weight=torch.eye(2), bias=torch.tensor([1.0, -2.0]))
    assert out["nc4"] == pytest.approx(17.0, rel=1e-12)
    assert neural_collapse(features, labels, weight=torch.eye(2))["nc4"] == pytest.approx(10.0, rel=1e-12)


def test_ncc_mismatch_constructed_cases():
    # means −0.95 and 1.05: the nearest class mean is [0, 0, 1, 1]
    features = torch.tensor([[-1.0], [-0.9], [1.0], [1.1]])
    labels = torch.tensor([0, 0, 1, 1])
    logits = torch.tensor([[2.0, 1.0], [0.0, 1.0], [0.0, 3.0], [0.0, 1.0]])  # predicts [0, 1, 1, 1]
    assert neural_collapse(features, labels, logits=logits)["ncc_mismatch"] == pytest.approx(0.25)
    weight = torch.tensor([[-1.0], [1.0]])
    assert neural_collapse(features, labels, weight=weight)["ncc_mismatch"] == 0.0
    # b = (0, 2.5) flips the two class-0 samples: z(−1) = (1, 1.5), z(−0.9) = (0.9, 1.6)
    out = neural_collapse(features, labels, weight=weight, bias=torch.tensor([0.0, 2.5]))
    assert out["ncc_mismatch"] == pytest.approx(0.5)
    # logits take precedence over hWᵀ + b
    assert neural_collapse(features, labels, weight=weight, logits=logits)["ncc_mismatch"] == 0.25


def test_ncc_uses_uncentred_means_not_labels():
    # a sample of class 0 sits nearer class 1's mean: the NCC answers 1, the network (logits) says 1
    features = torch.tensor([[0.0], [0.2], [4.0], [3.0], [5.0]])
    labels = torch.tensor([0, 0, 0, 1, 1])  # means 1.4 and 4.0
    logits = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    assert neural_collapse(features, labels, logits=logits)["ncc_mismatch"] == 0.0


# --------------------------------------------------------------------------- against the NumPy reference
@pytest.mark.parametrize("global_mean", ["weighted", "unweighted"])
@pytest.mark.parametrize("imbalanced", [True, False])
def test_matches_numpy_reference(global_mean, imbalanced):
    features, labels, weight, bias, logits = random_problem(imbalanced=imbalanced, seed=3)
    expected = reference_nc(features.numpy(), labels.numpy(), weight.numpy(), bias.numpy(), None, global_mean)
    out = neural_collapse(features, labels, weight, bias, global_mean=global_mean)
    assert_close_dict(out, expected)
    expected_logits = reference_nc(
        features.numpy(), labels.numpy(), weight.numpy(), bias.numpy(), logits.numpy(), global_mean
    )
    out = neural_collapse(features, labels, weight, bias, logits=logits, global_mean=global_mean)
    assert_close_dict(out, expected_logits)


def test_matches_reference_when_rank_of_sigma_b_is_below_k_minus_1():
    # d = 2 < K − 1 = 4: Σ_B has full rank d; the pseudo-inverse must still agree with pinv
    features, labels, weight, bias, _ = random_problem(n=150, d=2, k=5, seed=7)
    out = neural_collapse(features, labels, weight, bias)
    assert_close_dict(out, reference_nc(features.numpy(), labels.numpy(), weight.numpy(), bias.numpy()))


def test_weighted_and_unweighted_agree_when_balanced_and_differ_otherwise():
    k, reps = 3, 5
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(k).repeat(reps)
    features = torch.randn(k * reps, 4, dtype=torch.float64, generator=g) + 3 * labels[:, None]
    a = neural_collapse(features, labels, global_mean="weighted")
    b = neural_collapse(features, labels, global_mean="unweighted")
    assert_close_dict(a, b, rtol=1e-12)
    features2, labels2, *_ = random_problem(seed=2, imbalanced=True)
    a = neural_collapse(features2, labels2, global_mean="weighted")
    b = neural_collapse(features2, labels2, global_mean="unweighted")
    assert abs(a["nc1"] - b["nc1"]) > 1e-6


def test_keys_present_and_absent():
    features, labels, weight, _, logits = random_problem()
    assert tuple(neural_collapse(features, labels)) == ("nc1", "nc2_means", "equinorm_means", "equiangularity_means")
    with_logits = neural_collapse(features, labels, logits=logits)
    assert "ncc_mismatch" in with_logits and not set(W_KEYS) & set(with_logits)
    assert tuple(neural_collapse(features, labels, weight)) == ALL_KEYS


def test_float32_and_bfloat16_inputs_are_accepted_and_close():
    features, labels, weight, bias, _ = random_problem(seed=4)
    ref = neural_collapse(features, labels, weight, bias)
    out32 = neural_collapse(features.float(), labels, weight.float(), bias.float())
    assert_close_dict(out32, ref, rtol=1e-5, atol=1e-6)
    out16 = neural_collapse(features.bfloat16(), labels, weight.bfloat16(), bias.bfloat16())
    assert all(math.isfinite(v) for v in out16.values())
    assert out16["nc1"] == pytest.approx(ref["nc1"], rel=0.05)


def test_inputs_are_not_modified():
    features, labels, weight, bias, logits = random_problem()
    copies = [t.clone() for t in (features, labels, weight, bias, logits)]
    neural_collapse(features, labels, weight, bias, logits=logits)
    for before, after in zip(copies, (features, labels, weight, bias, logits)):
        assert torch.equal(before, after)


def test_tensors_that_require_grad_are_measured_without_warning_or_graph():
    """A head's ``weight`` (a Parameter) and training-step features go in as they are: no requires_grad
    warning, the same values as detached inputs, and no gradient flows back through the metric."""
    import warnings

    features, labels, weight, bias, logits = random_problem()
    expected = neural_collapse(features, labels, weight, bias, logits=logits)
    params = [torch.nn.Parameter(t.clone()) for t in (features, weight, bias, logits)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = neural_collapse(params[0], labels, params[1], params[2], logits=params[3])
    assert_close_dict(out, expected, rtol=0, atol=0)
    assert torch.is_grad_enabled()
    assert all(p.grad is None for p in params)


def test_large_common_offset_is_harmless():
    # the functional form shifts by the global mean: a 1e6 offset with unit spread leaves the result
    features, labels, weight, _, _ = random_problem(seed=5)
    base = neural_collapse(features, labels, weight)
    shifted = neural_collapse(features + 1e6, labels, weight)
    for key in ("nc1", "nc2_means", "equinorm_means", "equiangularity_means", "nc2"):
        assert shifted[key] == pytest.approx(base[key], rel=1e-7), key


# --------------------------------------------------------------------------- invariances (hypothesis)
@settings(max_examples=25, deadline=None)
@given(
    k=st.integers(2, 5),
    extra_dim=st.integers(0, 3),
    feature_scale=st.floats(1e-3, 1e3),
    weight_scale=st.floats(1e-3, 1e3),
    seed=st.integers(0, 10_000),
)
def test_scale_and_rotation_invariance(k, extra_dim, feature_scale, weight_scale, seed):
    d = k + extra_dim
    features, labels, weight, _, _ = random_problem(n=12 * k, d=d, k=k, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    rotation, _ = torch.linalg.qr(torch.randn(d, d, dtype=torch.float64, generator=g))
    base = neural_collapse(features, labels, weight)
    moved = neural_collapse(feature_scale * features @ rotation.T, labels, weight_scale * weight @ rotation.T)
    for key in ALL_KEYS:
        if key == "nc4":  # ‖Wμ_G‖² is rotation-invariant and scales with (a·c)²
            assert moved[key] == pytest.approx(base[key] * (feature_scale * weight_scale) ** 2, rel=1e-7)
        elif key == "nc1":
            assert moved[key] == pytest.approx(base[key], rel=1e-6)
        else:
            assert moved[key] == pytest.approx(base[key], rel=1e-7, abs=1e-10), key


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), shift=st.floats(-100.0, 100.0))
def test_translation_invariance_of_feature_only_metrics(seed, shift):
    features, labels, _, _, logits = random_problem(n=60, d=5, k=3, seed=seed)
    base = neural_collapse(features, labels, logits=logits)
    moved = neural_collapse(features + shift, labels, logits=logits)
    assert_close_dict(moved, base, rtol=1e-7, atol=1e-10)


# --------------------------------------------------------------------------- edge cases
def test_class_with_a_single_sample_is_allowed_and_matches_reference():
    features, labels, weight, bias, _ = random_problem(n=40, seed=6)
    labels = labels.clone()
    labels[labels == 3] = 2
    labels[0] = 3  # class 3 has exactly one sample
    assert int((labels == 3).sum()) == 1
    out = neural_collapse(features, labels, weight, bias)
    assert_close_dict(out, reference_nc(features.numpy(), labels.numpy(), weight.numpy(), bias.numpy()))


def test_missing_class_raises_unless_allowed():
    features, labels, weight, bias, logits = random_problem(n=60, k=4, seed=8)
    keep = labels != 2
    f, y, lg = features[keep], labels[keep], logits[keep].clone()
    lg[:, 2] = -1e9  # nobody is predicted as the missing class
    with pytest.raises(ValueError, match=r"`labels` must contain every class.*\[2\]"):
        neural_collapse(f, y, weight, bias)
    out = neural_collapse(f, y, weight, bias, logits=lg, allow_missing_classes=True)
    # equals the 3-class problem on the present classes (labels remapped, W, b, logits restricted)
    present = torch.tensor([0, 1, 3])
    remap = torch.tensor([0, 1, -1, 2])
    expected = reference_nc(
        f.numpy(), remap[y].numpy(), weight[present].numpy(), bias[present].numpy(), lg[:, present].numpy()
    )
    assert_close_dict(out, expected)
    # a sample predicted as the missing class always disagrees with the NCC (which never picks it)
    lg[0, 2] = 1e9
    out2 = neural_collapse(f, y, weight, bias, logits=lg, allow_missing_classes=True)
    was_mismatch = (
        lg[0, present].argmax()
        != torch.cdist(f[:1], torch.stack([f[y == c].mean(0) for c in present.tolist()])).argmin()
    )
    assert out2["ncc_mismatch"] == pytest.approx(expected["ncc_mismatch"] + (0 if was_mismatch else 1 / len(y)))


def test_num_classes_larger_than_labels_counts_missing_classes():
    features, labels, *_ = random_problem(n=50, k=3)
    with pytest.raises(ValueError, match=r"no sample of 2 of K=5"):
        neural_collapse(features, labels, num_classes=5)
    out = neural_collapse(features, labels, num_classes=5, allow_missing_classes=True)
    assert out["nc1"] == pytest.approx(neural_collapse(features, labels)["nc1"], rel=1e-12)


def test_coincident_means_give_inf_nc1_and_no_nan():
    # all class means equal: Σ_B = 0 → nc1 = +inf (documented); zero M̃ normalises to 0 → finite others
    features = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    out = neural_collapse(features, labels, weight=torch.zeros(2, 2))
    assert out["nc1"] == math.inf
    assert not any(math.isnan(v) for v in out.values())
    assert out["nc2_means"] == pytest.approx(1.0)  # ‖0 − E‖_F = 1
    assert out["nc2"] == pytest.approx(1.0)
    assert out["equinorm_means"] == 0.0 and out["equinorm_weights"] == 0.0
    assert out["self_duality"] == 0.0


def test_one_dimensional_features_allowed():
    features, labels, weight, bias, _ = random_problem(n=50, d=1, k=3, seed=9)
    out = neural_collapse(features, labels, weight, bias)
    assert_close_dict(out, reference_nc(features.numpy(), labels.numpy(), weight.numpy(), bias.numpy()))


# --------------------------------------------------------------------------- bad input
def test_bad_input_raises_naming_the_argument():
    features, labels, weight, bias, logits = random_problem(n=30, k=3, d=4)
    with pytest.raises(ValueError, match="same number of samples.*`features` has 30.*`labels` has 29"):
        neural_collapse(features, labels[:-1])
    with pytest.raises(ValueError, match="`logits` has 29"):
        neural_collapse(features, labels, logits=logits[:-1])
    with pytest.raises(ValueError, match="`logits` must have K=3 columns"):
        neural_collapse(features, labels, weight, logits=logits[:, :2])
    with pytest.raises(ValueError, match=r"`weight` must have shape \(K, d\) = \(3, 4\)"):
        neural_collapse(features, labels, weight[:, :3])
    with pytest.raises(ValueError, match=r"`weight` must have shape \(K, d\) = \(4, 4\)"):
        neural_collapse(features, labels, weight, num_classes=4)
    with pytest.raises(ValueError, match="`weight` must be 2-D"):
        neural_collapse(features, labels, weight[0])
    with pytest.raises(ValueError, match=r"`bias` must have shape \(3,\)"):
        neural_collapse(features, labels, weight, bias[:2])
    with pytest.raises(ValueError, match="`bias` needs `weight`"):
        neural_collapse(features, labels, bias=bias)
    bad = features.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="`features` contains 1 NaN"):
        neural_collapse(bad, labels)
    with pytest.raises(ValueError, match=r"`labels` must hold class indices in \[0, 3\)"):
        neural_collapse(features, labels + 1, weight)
    with pytest.raises(ValueError, match="`labels` must give at least 2 classes"):
        neural_collapse(features, torch.zeros_like(labels))
    with pytest.raises(ValueError, match="`num_classes` must give at least 2 classes"):
        neural_collapse(features, torch.zeros_like(labels), num_classes=1)
    with pytest.raises(ValueError, match="at least 2 classes with samples; got 1"):
        neural_collapse(features, torch.zeros_like(labels), num_classes=2, allow_missing_classes=True)
    with pytest.raises(ValueError, match="`global_mean` must be one of 'weighted', 'unweighted'"):
        neural_collapse(features, labels, global_mean="mean")
    with pytest.raises(TypeError, match="`labels` must be an integer tensor"):
        neural_collapse(features, labels.double())
    with pytest.raises(TypeError, match="`features` must be a floating-point tensor"):
        neural_collapse(features.long(), labels)
    with pytest.raises(TypeError, match="`features` must be a torch.Tensor"):
        neural_collapse(features.numpy(), labels)
    with pytest.raises(ValueError, match="`features` must be 2-D"):
        neural_collapse(features[0], labels)
    with pytest.raises(TypeError, match="`num_classes` must be an int"):
        neural_collapse(features, labels, num_classes=3.0)


def test_nan_check_can_be_switched_off_but_shapes_still_checked():
    features, labels, *_ = random_problem(n=30, k=3, d=4)
    with validation(False):
        out = neural_collapse(features, labels)
        assert out["nc1"] > 0
        with pytest.raises(ValueError, match="same number of samples"):
            neural_collapse(features, labels[:-1])

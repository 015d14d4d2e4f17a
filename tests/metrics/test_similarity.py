"""Linear CKA (Kornblith et al. 2019) against the HSIC form written from the paper and its invariances."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from neuralcollapse.metrics import cka_matrix, linear_cka


def _hsic_cka(x: np.ndarray, y: np.ndarray) -> float:
    """CKA = HSIC(K, L)/√(HSIC(K, K) HSIC(L, L)), K = XXᵀ, L = YYᵀ, HSIC = tr(KHLH)/(n−1)² on the raw
    (uncentred) inputs — Kornblith et al., ICML 2019, §3."""
    x = x.reshape(len(x), -1)
    y = y.reshape(len(y), -1)
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = x @ x.T, y @ y.T

    def hsic(a, b):
        return np.trace(a @ h @ b @ h) / (n - 1) ** 2

    return hsic(k, l_) / np.sqrt(hsic(k, k) * hsic(l_, l_))


def test_matches_hsic_form(rng):
    x = rng.normal(size=(30, 5)) + 2.0
    y = np.tanh(x @ rng.normal(size=(5, 8))) + rng.normal(size=(30, 8)) * 0.3
    ref = _hsic_cka(x, y)
    for form in ("auto", "feature", "gram"):
        assert linear_cka(torch.from_numpy(x), torch.from_numpy(y), form=form) == pytest.approx(ref, rel=1e-12)


def test_feature_form_equals_gram_form_wide(rng):
    x = torch.from_numpy(rng.normal(size=(12, 300)))
    y = torch.from_numpy(rng.normal(size=(12, 200)))
    f = linear_cka(x, y, form="feature")
    g = linear_cka(x, y, form="gram")
    assert f == pytest.approx(g, rel=1e-12)
    assert linear_cka(x, y) == pytest.approx(g, rel=1e-12)  # auto picks the Gram form here


def test_invariances(rng):
    x = torch.from_numpy(rng.normal(size=(40, 6)))
    q, _ = torch.linalg.qr(torch.from_numpy(rng.normal(size=(6, 6))))
    assert linear_cka(x, x @ q) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, -3.5 * x + 7.0) == pytest.approx(1.0, abs=1e-12)
    y = torch.from_numpy(rng.normal(size=(40, 3)))
    assert linear_cka(x, y) == pytest.approx(linear_cka(y, x), rel=1e-12)
    assert 0.0 <= linear_cka(x, y) <= 1.0


def test_conv_activations_are_flattened(rng):
    x = torch.from_numpy(rng.normal(size=(10, 2, 3, 3)))
    y = torch.from_numpy(rng.normal(size=(10, 4)))
    assert linear_cka(x, y) == pytest.approx(linear_cka(x.reshape(10, -1), y), rel=1e-12)
    assert linear_cka(x.float(), y.float()) == pytest.approx(_hsic_cka(x.float().numpy(), y.float().numpy()), rel=1e-6)


@given(
    n=st.integers(3, 12),
    p=st.integers(1, 6),
    q=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_property_range_and_orthogonal_invariance(n, p, q, seed):
    gen = np.random.default_rng(seed)
    x = torch.from_numpy(gen.normal(size=(n, p)))
    y = torch.from_numpy(gen.normal(size=(n, q)))
    value = linear_cka(x, y)
    assert -1e-12 <= value <= 1.0 + 1e-12
    rot, _ = torch.linalg.qr(torch.from_numpy(gen.normal(size=(q, q))))
    assert linear_cka(x, y @ rot) == pytest.approx(value, rel=1e-9, abs=1e-12)
    assert value == pytest.approx(_hsic_cka(x.numpy(), y.numpy()), rel=1e-9, abs=1e-12)


def test_cka_matrix(rng):
    base = rng.normal(size=(25, 4))
    layers_a = [torch.from_numpy(base), torch.from_numpy(np.tanh(base @ rng.normal(size=(4, 50))))]
    layers_b = [torch.from_numpy(rng.normal(size=(25, 3))), torch.from_numpy(base[:, :2]), layers_a[0]]
    m = cka_matrix(layers_a, layers_b)
    assert m.shape == (2, 3) and m.dtype == torch.float64
    for i, a in enumerate(layers_a):
        for j, b in enumerate(layers_b):
            assert m[i, j].item() == pytest.approx(_hsic_cka(a.numpy(), b.numpy()), rel=1e-12)
    self_sim = cka_matrix(layers_a)
    assert torch.allclose(self_sim, self_sim.T) and torch.allclose(
        self_sim.diagonal(), torch.ones(2, dtype=torch.float64)
    )
    assert torch.allclose(cka_matrix(layers_a, form="gram"), cka_matrix(layers_a, form="feature"), rtol=1e-12)


def test_inputs_unchanged(rng):
    x = torch.from_numpy(rng.normal(size=(9, 3)))
    y = torch.from_numpy(rng.normal(size=(9, 2)))
    x0, y0 = x.clone(), y.clone()
    linear_cka(x, y)
    cka_matrix([x], [y])
    assert torch.equal(x, x0) and torch.equal(y, y0)


def test_bad_input(rng):
    x = torch.from_numpy(rng.normal(size=(8, 3)))
    with pytest.raises(ValueError, match="`y` must hold the same 8 inputs"):
        linear_cka(x, x[:5])
    with pytest.raises(ValueError, match="`x` must have at least 2 rows"):
        linear_cka(x[:1], x[:1])
    with pytest.raises(ValueError, match="`y` is constant across inputs"):
        linear_cka(x, torch.ones(8, 2))
    nan = x.clone()
    nan[0, 0] = float("nan")
    with pytest.raises(ValueError, match="`x` contains 1 NaN"):
        linear_cka(nan, x)
    with pytest.raises(TypeError, match="`x` must be a floating-point tensor"):
        linear_cka(torch.ones(8, 3, dtype=torch.long), x)
    with pytest.raises(ValueError, match="`x` must have at least 2 dimensions"):
        linear_cka(x[:, 0], x)
    with pytest.raises(ValueError, match="`form` must be one of"):
        linear_cka(x, x, form="kernel")
    with pytest.raises(ValueError, match="`list_x` must be a non-empty sequence"):
        cka_matrix([])
    with pytest.raises(ValueError, match="`list_y` must be a non-empty sequence"):
        cka_matrix([x], x)
    with pytest.raises(ValueError, match=r"`list_x\[1\]` must hold the same 8 inputs"):
        cka_matrix([x, x[:4]])

"""Issue 12, functional API: loss weights validated, bounded gradients at zero feature rows, types checked before
attributes are touched."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neuralcollapse import losses


def _problem(seed=0, n=6, k=4, d=5):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, k, generator=g, dtype=torch.float64)
    y = torch.arange(n) % k
    return z, y, g


# --------------------------------------------------------------------------- weighted_ce_occe weights
@pytest.mark.parametrize(
    ("w_ce", "w_occe", "error", "match"),
    [
        (1.0, -1.0, ValueError, "`w_occe` must be >= 0; got -1.0"),
        (-0.5, 1.0, ValueError, "`w_ce` must be >= 0; got -0.5"),
        (float("nan"), 1.0, ValueError, "`w_ce` must be finite; got nan"),
        (1.0, float("inf"), ValueError, "`w_occe` must be finite; got inf"),
        ("1", 1.0, TypeError, "`w_ce` must be a real number"),
        (1.0, None, TypeError, "`w_occe` must be a real number"),
    ],
)
def test_weighted_ce_occe_validates_its_weights(w_ce, w_occe, error, match):
    z, y, _ = _problem()
    with pytest.raises(error, match=match):
        losses.weighted_ce_occe(z, y, w_ce, w_occe)


def test_weighted_ce_occe_valid_weights_still_equal_the_sum():
    z, y, _ = _problem(1)
    total, ce, _ = losses.weighted_ce_occe(z, y, 0.0, 2.5)
    assert float(total) == pytest.approx(2.5 * float(losses.occe(z, y)), rel=1e-12)
    assert float(ce) == pytest.approx(float(F.cross_entropy(z, y)), rel=1e-12)
    total, *_ = losses.weighted_ce_occe(z, y, np.float64(1.0), 0)  # NumPy and int weights are numbers
    assert float(total) == pytest.approx(float(F.cross_entropy(z, y)), rel=1e-12)


# --------------------------------------------------------------------------- zero feature rows
def _reference_ntce(h, y, w, tau):
    """Straightforward NTCE with F.normalize (zero rows stay zero), for the forward value."""
    u, p = F.normalize(h, dim=1), F.normalize(w, dim=1)
    local = u @ p.T / tau
    return (torch.logsumexp(local.T, dim=1)[y] - local.gather(1, y[:, None]).squeeze(1)).mean()


@pytest.mark.parametrize("loss", ["ntce", "nonl", "normface"])
def test_zero_feature_row_has_a_finite_bounded_gradient(loss):
    # today F.normalize's eps = 1e-12 turns a zero row's gradient into (dL/du)/eps, about 4e11
    g = torch.Generator().manual_seed(3)
    h = torch.randn(8, 5, generator=g, dtype=torch.float64)
    h[2] = 0.0
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    w = torch.randn(4, 5, generator=g, dtype=torch.float64)
    leaf = h.clone().requires_grad_(True)
    value = getattr(losses, loss)(leaf, y, w, temperature=0.2)
    (grad,) = torch.autograd.grad(value, leaf)
    assert torch.isfinite(grad).all()
    # the nonzero rows' gradients are O(1/τ): bounded by ‖dℓ/du‖/‖h‖ ≤ 2·2/τ/‖h_i‖ here; the zero row gets none
    assert float(grad.abs().max()) < 100.0
    assert torch.equal(grad[2], torch.zeros(5, dtype=torch.float64))
    if loss == "ntce":
        assert float(value.detach()) == pytest.approx(float(_reference_ntce(h, y, w, 0.2)), rel=1e-12)
    # the other rows' gradients are unchanged by the guard: gradcheck without the zero row
    keep = torch.tensor([0, 1, 3, 4, 5, 6, 7])
    fn = getattr(losses, loss)
    assert torch.autograd.gradcheck(lambda x: fn(x, y[keep], w, temperature=0.2), (h[keep].clone().requires_grad_(),))


def test_tiny_nonzero_row_normalises_like_f_normalize():
    # the forward equals F.normalize everywhere, also for a row below eps (x/eps, not a unit vector)
    from neuralcollapse.losses._features import unit_rows

    x = torch.tensor([[3.0, 4.0], [0.0, 0.0], [3e-13, 4e-13]], dtype=torch.float64)
    torch.testing.assert_close(unit_rows(x, torch.float64), F.normalize(x, dim=1), rtol=0, atol=0)


# --------------------------------------------------------------------------- types before attributes
@pytest.mark.parametrize("loss", ["arcface", "cosface"])
def test_margin_losses_reject_numpy_features_naming_the_argument(loss):
    y = torch.tensor([0, 1, 2, 3])
    w = torch.randn(5, 5)
    with pytest.raises(TypeError, match="`features` must be a torch.Tensor; got ndarray"):
        getattr(losses, loss)(np.zeros((4, 5), dtype=np.float32), y, w)
    with pytest.raises(TypeError, match="`features` must be a torch.Tensor; got list"):
        getattr(losses, loss)([[0.0] * 5] * 4, y, w)
    assert math.isfinite(getattr(losses, loss)(torch.randn(4, 5), y, w).item())

"""Prototype alignment (HPN/DL2PA) and dot-regression (ETF + DR): loop references, closed forms, class
scaling, gradients, numerics, errors, terms."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

from neuralcollapse.losses import (
    DotRegressionLoss,
    PrototypeAlignmentLoss,
    class_scaling_factors,
    create_term,
    dot_regression,
    prototype_alignment,
)
from neuralcollapse.losses._terms import TERMS
from neuralcollapse.output import HeadOutput

from ._reference import feature_batch

# (features, target, class matrix) of 10 samples unless a test asks for another size.
batch = functools.partial(feature_batch, n=10)


def unit(x):
    return x / x.norm(dim=-1, keepdim=True)


# --------------------------------------------------------------------------------------------------------
# Prototype alignment
# --------------------------------------------------------------------------------------------------------


def alignment_reference(features, target, prototypes):
    f = np.asarray(features, dtype=np.float64)
    p = np.asarray(prototypes, dtype=np.float64)
    out = []
    for i, y in enumerate(np.asarray(target)):
        cos = f[i] @ p[y] / (np.linalg.norm(f[i]) * np.linalg.norm(p[y]))
        out.append((1 - cos) ** 2)
    return np.array(out)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_alignment_matches_loop_and_sums_by_default(seed):
    f, t, p = batch(seed)
    ref = alignment_reference(f.numpy(), t.numpy(), p.numpy())
    assert prototype_alignment(f, t, p).item() == pytest.approx(ref.sum(), rel=1e-12)
    assert prototype_alignment(f, t, p, reduction="mean").item() == pytest.approx(ref.mean(), rel=1e-12)
    np.testing.assert_allclose(prototype_alignment(f, t, p, reduction="none").numpy(), ref, rtol=1e-12)
    assert torch.equal(PrototypeAlignmentLoss()(f, t, p), prototype_alignment(f, t, p))


def test_alignment_closed_forms():
    p = torch.eye(3, dtype=torch.float64)
    t = torch.tensor([0, 1, 2])
    assert prototype_alignment(5 * p, t, p).item() == 0.0  # on the prototype (any length)
    assert prototype_alignment(-p, t, p).item() == 12.0  # opposite: (1 + 1)² each, summed
    assert prototype_alignment(p[[1, 2, 0]], t, p).item() == 3.0  # orthogonal: 1 each


def test_alignment_gradcheck():
    f, t, p = batch(3, n=6, k=3, d=4)
    f.requires_grad_(True)
    p.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: prototype_alignment(a, t, b), (f, p))


# --------------------------------------------------------------------------------------------------------
# Dot-regression
# --------------------------------------------------------------------------------------------------------


def dr_reference(features, target, prototypes, scaling=True, lam=0.0):
    """Yang et al. 2022 (reference ``produce_Ew`` + ``dot_loss``) one sample at a time, NumPy float64."""
    h = np.asarray(features, dtype=np.float64)
    w = np.asarray(prototypes, dtype=np.float64)
    y = np.asarray(target)
    k = len(w)
    e = np.ones(k)
    if scaling:
        present = sorted(set(y.tolist()))
        gamma_b = len(y) / len(present)
        for c in present:
            e[c] = math.sqrt(gamma_b / np.sum(y == c))
    out = []
    for i in range(len(y)):
        target_vec = e[y[i]] * w[y[i]]
        h_len = max(np.linalg.norm(h[i]), 1e-8)
        r = h[i] @ target_vec - np.linalg.norm(target_vec) * h_len
        out.append(0.5 * r**2 / h_len + lam * np.linalg.norm(h[i]))
    return np.array(out)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("scaling", [True, False])
@pytest.mark.parametrize("lam", [0.0, 0.01])
def test_dot_regression_matches_loop(seed, scaling, lam):
    f, t, p = batch(seed)
    ref = dr_reference(f.numpy(), t.numpy(), p.numpy(), scaling, lam)
    got = dot_regression(f, t, p, scaling, feature_norm_weight=lam, reduction="none")
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12)
    assert dot_regression(f, t, p, scaling, feature_norm_weight=lam).item() == pytest.approx(ref.mean(), rel=1e-12)
    assert dot_regression(f, t, p, scaling, feature_norm_weight=lam, reduction="sum").item() == pytest.approx(
        ref.sum(), rel=1e-12
    )
    crit = DotRegressionLoss(scaling, feature_norm_weight=lam)
    assert torch.equal(crit(f, t, p), dot_regression(f, t, p, scaling, feature_norm_weight=lam))


def test_dot_regression_unit_features_closed_form():
    # For unit f and unit prototypes: ½·E_c²·(cos − 1)² per sample (docs/methods.md §7.3).
    f, _, p = batch(4, n=8, k=3)
    t = torch.tensor([0, 0, 0, 0, 0, 1, 1, 2])
    f, p = unit(f), unit(p)
    e = class_scaling_factors(t, 3, dtype=torch.float64)
    cos = (f * p[t]).sum(dim=1)
    expected = 0.5 * e[t] ** 2 * (cos - 1) ** 2
    torch.testing.assert_close(dot_regression(f, t, p, reduction="none"), expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(
        dot_regression(f, t, p, False, reduction="none"), 0.5 * (cos - 1) ** 2, rtol=1e-12, atol=1e-14
    )


def test_class_scaling_factors_hand_example():
    t = torch.tensor([0, 0, 0, 1, 3, 3])  # B = 6, present {0, 1, 3}: γ_b = 2
    e = class_scaling_factors(t, 5)
    expected = [math.sqrt(2 / 3), math.sqrt(2), 1.0, 1.0, 1.0]
    np.testing.assert_allclose(e.numpy(), expected, rtol=1e-6)
    balanced = class_scaling_factors(torch.tensor([0, 1, 2, 0, 1, 2]), 3)
    assert torch.equal(balanced, torch.ones(3))


def test_explicit_class_scaling_for_mixup():
    f, t, p = batch(5)
    shared = class_scaling_factors(t, 4, dtype=torch.float64)
    assert torch.equal(dot_regression(f, t, p, shared), dot_regression(f, t, p, True))
    t_b = t.flip(0)
    # Mixup's second target reuses the first target's factors (reference: cur_M built once per batch).
    ref = dr_reference(f.numpy(), t_b.numpy(), p.numpy(), scaling=False)
    scaled_ref = []
    for i, y in enumerate(t_b.tolist()):
        h_len = float(f[i].norm())
        target_vec = shared[y] * p[y]
        r = float(f[i] @ target_vec) - float(target_vec.norm()) * h_len
        scaled_ref.append(0.5 * r * r / h_len)
    assert dot_regression(f, t_b, p, shared).item() == pytest.approx(np.mean(scaled_ref), rel=1e-12)
    assert dot_regression(f, t_b, p, False).item() == pytest.approx(ref.mean(), rel=1e-12)
    assert torch.equal(DotRegressionLoss()(f, t_b, p, class_scaling=shared), dot_regression(f, t_b, p, shared))


def test_dot_regression_stop_gradient():
    # ∂/∂h_i = (1/N)·(r_i/sg‖h_i‖)·w_i + (λ/N)·h_i/‖h_i‖ — the lengths are constants (reference: no_grad).
    f, t, p = batch(6)
    f.requires_grad_(True)
    lam = 0.05
    dot_regression(f, t, p, False, feature_norm_weight=lam).backward()
    h = f.detach()
    w = p[t]
    h_len = h.norm(dim=1)
    r = (h * w).sum(dim=1) - w.norm(dim=1) * h_len
    expected = (r / h_len)[:, None] * w / len(t) + lam * h / h_len[:, None] / len(t)
    torch.testing.assert_close(f.grad, expected, rtol=1e-12, atol=1e-14)


def test_dot_regression_gradcheck_on_the_sphere():
    # The stop-gradient lengths make numerical and analytical gradients differ off the sphere; with unit
    # inputs (the ETF + DR setting, h = normalise(BN(f(x)))) the lengths are constant and gradcheck applies.
    f, t, p = batch(7, n=6, k=3, d=4)
    f.requires_grad_(True)
    p.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: dot_regression(unit(a), t, unit(b)), (f, p))
    assert torch.autograd.gradcheck(lambda a: dot_regression(unit(a), t, p, feature_norm_weight=0.1), (f,))


def test_zero_feature_row_is_finite():
    f, t, p = batch(8)
    f = f.clone()
    f[0] = 0.0
    f.requires_grad_(True)
    loss = dot_regression(f, t, p)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(f.grad).all()


# --------------------------------------------------------------------------------------------------------
# Numerics, inputs, errors, terms
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", ["align", "dr"])
def test_bf16_autocast_and_large_inputs_finite(fn):
    f, t, p = batch(9, n=32, k=4, d=16, dtype=torch.float32)

    def loss_fn(a, b):
        return prototype_alignment(a, t, b) if fn == "align" else dot_regression(unit(a), t, b)

    ref = loss_fn(f, p)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fb = f.bfloat16().requires_grad_(True)
        loss = loss_fn(fb, p.bfloat16())
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(fb.grad.float()).all()
    assert loss.item() == pytest.approx(ref.item(), rel=0.05)
    big = loss_fn(1e4 * f, 1e4 * p) if fn == "align" else dot_regression(1e4 * f, t, 1e4 * p)
    assert torch.isfinite(big)
    if fn == "align":
        assert big.item() == pytest.approx(ref.item(), rel=1e-4)


def test_inputs_unchanged():
    f, t, p = batch(10)
    f.requires_grad_(True)
    scales = class_scaling_factors(t, 4)
    before = (f.detach().clone(), t.clone(), p.clone(), scales.clone())
    (prototype_alignment(f, t, p) + dot_regression(f, t, p, scales, feature_norm_weight=0.1)).backward()
    assert torch.equal(f.detach(), before[0]) and torch.equal(t, before[1])
    assert torch.equal(p, before[2]) and torch.equal(scales, before[3])


@pytest.mark.parametrize("fn", [prototype_alignment, dot_regression])
def test_bad_inputs(fn):
    f, t, p = batch(11, n=6, k=3, d=4)
    with pytest.raises(ValueError, match=r"`features` must be 2-D"):
        fn(f[0], t, p)
    with pytest.raises(ValueError, match=r"`prototypes` must have shape \(K, 4\)"):
        fn(f, t, p[:, :2])
    with pytest.raises(ValueError, match=r"`target` must hold class indices in \[0, 3\)"):
        fn(f, torch.tensor([0, 1, 2, 5, 0, 0]), p)
    with pytest.raises(ValueError, match=r"`target` must have length 6"):
        fn(f, t[:2], p)
    with pytest.raises(ValueError, match=r"`features` is empty"):
        fn(f[:0], t[:0], p)
    bad = p.clone()
    bad[1, 1] = math.nan
    with pytest.raises(ValueError, match=r"`prototypes` contains 1 NaN"):
        fn(f, t, bad)
    with pytest.raises(ValueError, match=r"`reduction`"):
        fn(f, t, p, reduction="avg")


def test_bad_dot_regression_options():
    f, t, p = batch(12, n=6, k=3, d=4)
    with pytest.raises(ValueError, match=r"`class_scaling` must have one factor per class \(3\)"):
        dot_regression(f, t, p, torch.ones(4))
    with pytest.raises(TypeError, match=r"`class_scaling` must be a bool or a \(K,\) tensor"):
        dot_regression(f, t, p, "yes")
    with pytest.raises(ValueError, match=r"`feature_norm_weight` must be >= 0"):
        dot_regression(f, t, p, feature_norm_weight=-0.1)
    with pytest.raises(ValueError, match=r"`num_classes` must be >= 2"):
        class_scaling_factors(t, 1)
    with pytest.raises(TypeError, match=r"`num_classes` must be an int"):
        class_scaling_factors(t, 3.0)
    with pytest.raises(ValueError, match=r"`target` is empty"):
        class_scaling_factors(t[:0], 3)
    with pytest.raises(TypeError, match=r"`dtype` must be a floating-point dtype"):
        class_scaling_factors(t, 3, dtype=torch.long)
    with pytest.raises(ValueError, match=r"`target` must hold class indices in \[0, 2\)"):
        class_scaling_factors(t * 0 + 2, 2)


def test_terms_and_aliases():
    f, t, p = batch(13)
    out = HeadOutput(logits=torch.zeros(len(t), 4), features=f, prototypes=p, cosines=torch.zeros(len(t), 4))
    for name in ("proto_align", "hpn", "dl2pa"):
        assert TERMS.resolve(name) == "proto_align"
        assert torch.equal(create_term(name)(out, t), prototype_alignment(f, t, p))
    for name in ("dot_regression", "dr", "etf_dr"):
        assert TERMS.resolve(name) == "dot_regression"
    term = create_term("etf_dr", class_scaling=False, feature_norm_weight=0.01)
    assert torch.equal(term(out, t), dot_regression(f, t, p, False, feature_norm_weight=0.01))
    with pytest.raises(ValueError, match="prototypes"):
        term(HeadOutput(logits=out.logits, features=f), t)
    with pytest.raises(ValueError, match="`cosines`"):  # a linear head's W rows: refused, as `train` refuses it
        create_term("proto_align")(HeadOutput(logits=out.logits, features=f, prototypes=p), t)

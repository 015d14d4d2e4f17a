"""ArcFace and CosFace: loop references (both ArcFace branches, easy_margin), gradients, numerics, errors,
settable scale/margin, terms."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from neuralcollapse.losses import ArcFaceLoss, CosFaceLoss, arcface, cosface, create_term
from neuralcollapse.output import HeadOutput
from neuralcollapse.schedules import MarginSchedule

from ._reference import feature_batch

EPS = 1e-7


def cosines(features, weight):
    u = np.asarray(features, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    u = u / np.linalg.norm(u, axis=1, keepdims=True)
    w = w / np.linalg.norm(w, axis=1, keepdims=True)
    return np.clip(u @ w.T, -1 + EPS, 1 - EPS)


def arcface_reference(features, target, weight, s, m, easy_margin=False):
    """Per-sample ArcFace from the angle itself: ψ = cos(θ + m) with θ = arccos(cos) (Deng et al. 2019)."""
    cos = cosines(features, weight)
    out = []
    for i, y in enumerate(np.asarray(target)):
        c = cos[i, y]
        if easy_margin:
            psi = math.cos(math.acos(c) + m) if c > 0 else c
        elif c > math.cos(math.pi - m):
            psi = math.cos(math.acos(c) + m)
        else:  # θ + m ≥ π: cos(θ + m) would no longer decrease in θ (insightface's fix)
            psi = c - m * math.sin(m)
        logits = [s * psi] + [s * cos[i, j] for j in range(cos.shape[1]) if j != y]
        out.append(-s * psi + logsumexp(logits))
    return np.array(out)


def cosface_reference(features, target, weight, s, m):
    cos = cosines(features, weight)
    out = []
    for i, y in enumerate(np.asarray(target)):
        logits = [s * (cos[i, y] - m)] + [s * cos[i, j] for j in range(cos.shape[1]) if j != y]
        out.append(-s * (cos[i, y] - m) + logsumexp(logits))
    return np.array(out)


# (features, target, class matrix) of 12 samples unless a test asks for another size.
batch = functools.partial(feature_batch, n=12)


def with_branches(seed):
    """A batch whose first rows sit opposite their class vector (θ_y ≈ π: the non-monotonic branch) and next
    rows at negative target cosine (easy_margin's no-margin branch)."""
    f, t, w = batch(seed)
    f = f.clone()
    f[0] = -w[t[0]]
    f[1] = -w[t[1]] + 0.05 * f[1]
    f[2] = -0.3 * w[t[2]] / w[t[2]].norm() + 0.2 * f[2] / f[2].norm()
    return f, t, w


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("scale", "margin"), [(64.0, 0.5), (16.0, 0.1), (30.0, 1.2), (1.0, 0.0)])
@pytest.mark.parametrize("easy_margin", [False, True])
def test_arcface_matches_reference(seed, scale, margin, easy_margin):
    f, t, w = with_branches(seed)
    cos_y = cosines(f.numpy(), w.numpy())[np.arange(len(t)), t.numpy()]
    if margin > 0:
        assert (cos_y <= math.cos(math.pi - margin)).any()  # the fix branch is exercised
        assert (cos_y < 0).any()
    ref = arcface_reference(f.numpy(), t.numpy(), w.numpy(), scale, margin, easy_margin)
    got = arcface(f, t, w, scale, margin, easy_margin, reduction="none")
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-9, atol=1e-9)
    assert arcface(f, t, w, scale, margin, easy_margin).item() == pytest.approx(ref.mean(), rel=1e-9)
    assert arcface(f, t, w, scale, margin, easy_margin, reduction="sum").item() == pytest.approx(ref.sum(), rel=1e-9)


def test_arcface_non_monotonic_fix_value():
    # θ_y = π exactly (clamped cosine −1 + 1e−7): ψ = cos θ − m·sin m, not cos(π + m) = −cos m.
    w = torch.eye(2, dtype=torch.float64)
    f = torch.tensor([[-1.0, 0.0]], dtype=torch.float64)
    m, s = 0.5, 2.0
    psi = -1 + EPS - m * math.sin(m)
    expected = -s * psi + math.log(math.exp(s * psi) + math.exp(0.0))
    assert arcface(f, torch.tensor([0]), w, s, m).item() == pytest.approx(expected, rel=1e-12)
    easy = -s * (-1 + EPS) + math.log(math.exp(s * (-1 + EPS)) + 1.0)
    assert arcface(f, torch.tensor([0]), w, s, m, easy_margin=True).item() == pytest.approx(easy, rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("scale", "margin"), [(64.0, 0.35), (30.0, 0.4), (2.0, 1.5)])
def test_cosface_matches_reference(seed, scale, margin):
    f, t, w = with_branches(seed)
    ref = cosface_reference(f.numpy(), t.numpy(), w.numpy(), scale, margin)
    np.testing.assert_allclose(cosface(f, t, w, scale, margin, reduction="none").numpy(), ref, rtol=1e-9, atol=1e-12)
    assert cosface(f, t, w, scale, margin).item() == pytest.approx(ref.mean(), rel=1e-9)


def test_zero_margin_is_scaled_cosine_cross_entropy():
    f, t, w = batch(2)
    u = f / f.norm(dim=1, keepdim=True)
    v = w / w.norm(dim=1, keepdim=True)
    ce = torch.nn.functional.cross_entropy(10.0 * (u @ v.T).clamp(-1 + EPS, 1 - EPS), t)
    assert arcface(f, t, w, 10.0, 0.0).item() == pytest.approx(ce.item(), rel=1e-12)
    assert cosface(f, t, w, 10.0, 0.0).item() == pytest.approx(ce.item(), rel=1e-12)


def test_margin_raises_the_loss():
    f, t, w = batch(3)
    assert arcface(f, t, w, 16.0, 0.3).item() > arcface(f, t, w, 16.0, 0.1).item()
    assert cosface(f, t, w, 16.0, 0.3).item() > cosface(f, t, w, 16.0, 0.1).item()


@pytest.mark.parametrize("easy_margin", [False, True])
def test_gradcheck_arcface(easy_margin):
    f, t, w = with_branches(4)
    f, t, w = f[:6], t[:6], w
    f.requires_grad_(True)
    w.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: arcface(a, t, b, 4.0, 0.5, easy_margin), (f, w))


def test_gradcheck_cosface():
    f, t, w = batch(5, n=6)
    f.requires_grad_(True)
    w.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: cosface(a, t, b, 4.0, 0.35), (f, w))


def test_gradient_finite_at_the_poles():
    # Features exactly on (and opposite to) their class vector: d arccos / d cos is infinite at ±1, the clamp
    # and sin = √max(0, 1 − cos²) keep the gradient finite.
    w = torch.eye(3)
    f = torch.tensor([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0]], requires_grad=True)
    loss = arcface(f, torch.tensor([0, 1]), w)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(f.grad).all()


@pytest.mark.parametrize("fn", ["arcface", "cosface"])
def test_bf16_autocast_and_large_inputs_finite(fn):
    loss_fn = arcface if fn == "arcface" else cosface
    f, t, w = batch(6, n=32, k=8, d=16, dtype=torch.float32)
    ref = loss_fn(f, t, w)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fb = f.bfloat16().requires_grad_(True)
        loss = loss_fn(fb, t, w.bfloat16())
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(fb.grad.float()).all()
    assert loss.item() == pytest.approx(ref.item(), rel=0.05)
    big = loss_fn(1e4 * f, t, 1e4 * w)
    assert big.item() == pytest.approx(ref.item(), rel=1e-4)
    assert torch.isfinite(loss_fn((1e4 * f).half(), t, w.half()))


def test_inputs_unchanged():
    f, t, w = batch(7)
    f.requires_grad_(True)
    before = (f.detach().clone(), t.clone(), w.clone())
    (arcface(f, t, w) + cosface(f, t, w)).backward()
    assert torch.equal(f.detach(), before[0]) and torch.equal(t, before[1]) and torch.equal(w, before[2])


@pytest.mark.parametrize("fn", [arcface, cosface])
def test_bad_inputs(fn):
    f, t, w = batch(8, n=6, k=3, d=4)
    with pytest.raises(ValueError, match=r"`features` must be 2-D"):
        fn(f[0], t, w)
    with pytest.raises(ValueError, match=r"`weight` must have shape \(K, 4\)"):
        fn(f, t, w.T)
    with pytest.raises(ValueError, match=r"`target` must hold class indices in \[0, 3\)"):
        fn(f, torch.tensor([0, 1, 2, 3, 0, 0]), w)
    with pytest.raises(ValueError, match=r"`target` must have length 6"):
        fn(f, t[:4], w)
    with pytest.raises(ValueError, match=r"`features` is empty"):
        fn(f[:0], t[:0], w)
    bad = f.clone()
    bad[0, 0] = math.nan
    with pytest.raises(ValueError, match=r"`features` contains 1 NaN"):
        fn(bad, t, w)
    for scale in (0.0, -1.0):
        with pytest.raises(ValueError, match=r"`scale` must be > 0"):
            fn(f, t, w, scale)
    with pytest.raises(ValueError, match=r"`margin` must be >= 0"):
        fn(f, t, w, 64.0, -0.1)
    with pytest.raises(ValueError, match=r"`reduction`"):
        fn(f, t, w, reduction="batchmean")


@pytest.mark.parametrize("margin", [math.pi / 2, 28.6, 30])
def test_arcface_margin_in_degrees_is_rejected_with_hint(margin):
    f, t, w = batch(9)
    with pytest.raises(ValueError, match=r"`margin` must be an angle in radians.*looks like degrees"):
        arcface(f, t, w, 64.0, margin)
    with pytest.raises(ValueError, match=r"looks like degrees"):
        ArcFaceLoss(margin=margin)


def test_modules_scale_margin_are_settable_and_validated():
    f, t, w = batch(10)
    crit = ArcFaceLoss(scale=16.0, margin=0.1, easy_margin=True)
    assert torch.equal(crit(f, t, w), arcface(f, t, w, 16.0, 0.1, True))
    crit.scale, crit.margin = 20.0, 0.2
    assert torch.equal(crit(f, t, w), arcface(f, t, w, 20.0, 0.2, True))
    with pytest.raises(ValueError, match="degrees"):
        crit.margin = 45.0
    with pytest.raises(ValueError, match=r"`scale`"):
        crit.scale = 0.0
    assert crit.margin == 0.2 and crit.scale == 20.0  # a rejected value leaves the old one
    cos_crit = CosFaceLoss()
    assert (cos_crit.scale, cos_crit.margin) == (64.0, 0.35)
    cos_crit.margin = 2.0  # a cosine offset, no angle bound
    assert torch.equal(cos_crit(f, t, w), cosface(f, t, w, 64.0, 2.0))


def test_margin_schedule_drives_the_terms():
    f, t, w = batch(11)
    cos_w = torch.zeros(len(t), w.shape[0])  # a cosine head's output (the terms only check it is there)
    out = HeadOutput(logits=torch.zeros(len(t), w.shape[0]), features=f, prototypes=w, cosines=cos_w)
    arc = create_term("arcface")
    assert arc.needs == ("features", "prototypes", "cosines")
    ramp = MarginSchedule.from_preset("lpc-arcface")
    values = ramp.apply(arc, 5)
    assert (arc.scale, arc.margin) == (values.scale, values.margin) == (20.0, 0.14)
    assert torch.equal(arc(out, t), arcface(f, t, w, 20.0, 0.14))
    cos = create_term("cosface", scale=30.0)
    assert torch.equal(cos(out, t), cosface(f, t, w, 30.0, 0.35))
    MarginSchedule.from_preset("lpc-cosface").apply(cos, 100)
    assert (cos.scale, cos.margin) == (64.0, 0.35)
    with pytest.raises(ValueError, match="prototypes"):
        arc(HeadOutput(logits=out.logits, features=f), t)
    with pytest.raises(ValueError, match=r"`cosines` \(cosine logits .*not a linear one"):  # a linear head's output
        arc(HeadOutput(logits=out.logits, features=f, prototypes=w), t)

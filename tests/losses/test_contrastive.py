"""SupCon: loop reference, anchors without positives, multi-view input, gradients, numerics, errors, term."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp

from neuralcollapse.losses import SupConLoss, create_term, flatten_views, supcon
from neuralcollapse.output import HeadOutput


def reference(features, target, tau, base_tau=None, normalize=True):
    """Khosla et al. 2020, Eq. 2, one anchor at a time (NumPy float64). Returns (loss, excluded)."""
    z = np.asarray(features, dtype=np.float64)
    if normalize:
        z = z / np.linalg.norm(z, axis=1, keepdims=True)
    y = np.asarray(target)
    n = len(y)
    losses, excluded = [], 0
    for i in range(n):
        others = [a for a in range(n) if a != i]
        positives = [p for p in others if y[p] == y[i]]
        if not positives:
            excluded += 1
            continue
        log_partition = logsumexp([z[i] @ z[a] / tau for a in others])
        ell = -np.mean([z[i] @ z[p] / tau - log_partition for p in positives])
        losses.append(ell * (tau / base_tau if base_tau else 1.0))
    return (float(np.mean(losses)) if losses else 0.0), excluded


def batch(seed, n=10, d=6, k=3, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype), torch.randint(0, k, (n,), generator=g)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("tau", [0.05, 0.1, 1.0])
def test_matches_loop_reference(seed, tau):
    f, t = batch(seed)
    t[0] = 7  # a singleton class: its anchor has no positive
    loss, excluded = supcon(f, t, tau, return_count=True)
    ref, ref_excluded = reference(f.numpy(), t.numpy(), tau)
    assert loss.item() == pytest.approx(ref, rel=1e-12)
    assert int(excluded) == ref_excluded >= 1
    assert excluded.dtype == torch.int64


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 12),
    k=st.integers(1, 6),
    d=st.integers(1, 5),
    tau=st.floats(0.05, 2.0),
    seed=st.integers(0, 9999),
)
def test_matches_loop_reference_property(n, k, d, tau, seed):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(n, d, generator=g, dtype=torch.float64)
    t = torch.randint(0, k, (n,), generator=g)
    loss, excluded = supcon(f, t, tau, return_count=True)
    ref, ref_excluded = reference(f.numpy(), t.numpy(), tau)
    assert loss.item() == pytest.approx(ref, rel=1e-10, abs=1e-12)
    assert int(excluded) == ref_excluded


def test_base_temperature_factor_and_unnormalised_rows():
    f, t = batch(3)
    assert supcon(f, t, 0.07, 0.07).item() == pytest.approx(supcon(f, t, 0.07).item(), rel=1e-14)
    ref, _ = reference(f.numpy(), t.numpy(), 0.07, base_tau=0.1)
    assert supcon(f, t, 0.07, base_temperature=0.1).item() == pytest.approx(ref, rel=1e-12)
    small = 0.3 * f / f.norm(dim=1, keepdim=True)
    ref_raw, _ = reference(small.numpy(), t.numpy(), 0.5, normalize=False)
    assert supcon(small, t, 0.5, normalize=False).item() == pytest.approx(ref_raw, rel=1e-12)


def test_two_view_input_is_flattened_view_major():
    g = torch.Generator().manual_seed(4)
    views = torch.randn(5, 2, 3, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 1, 0, 2, 1])
    flat, flat_t = flatten_views(views, t)
    assert torch.equal(flat, torch.cat([views[:, 0], views[:, 1]]))
    assert flat_t.tolist() == [0, 1, 0, 2, 1, 0, 1, 0, 2, 1]
    ref, ref_excluded = reference(flat.numpy(), flat_t.numpy(), 0.1)
    loss, excluded = supcon(views, t, return_count=True)
    assert loss.item() == pytest.approx(ref, rel=1e-12)
    # With two views every anchor has its other view as a positive.
    assert int(excluded) == ref_excluded == 0
    assert torch.equal(SupConLoss()(views, t), loss)


def test_no_positive_anywhere_is_connected_zero():
    f, _ = batch(5, n=4)
    f.requires_grad_(True)
    loss, excluded = supcon(f, torch.arange(4), return_count=True)
    assert loss.item() == 0.0 and int(excluded) == 4
    loss.backward()
    assert torch.equal(f.grad, torch.zeros_like(f))
    single, excluded = supcon(f[:1], torch.tensor([3]), return_count=True)
    assert single.item() == 0.0 and int(excluded) == 1


def test_perfectly_clustered_batch_value():
    # Two classes on opposite poles, n per class: every positive at cosine 1, negatives at −1.
    n, tau = 3, 0.5
    e = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    f = torch.cat([e.repeat(n, 1), -e.repeat(n, 1)])
    t = torch.tensor([0] * n + [1] * n)
    expected = -(1 / tau - math.log((n - 1) * math.exp(1 / tau) + n * math.exp(-1 / tau)))
    assert supcon(f, t, tau).item() == pytest.approx(expected, rel=1e-12)


def test_gradcheck():
    f, t = batch(6, n=6, d=4, k=2)
    f.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: supcon(a, t, 0.2), (f,))
    assert torch.autograd.gradcheck(lambda a: supcon(a, t, 0.2, 0.07, normalize=False), (f,))


def test_bf16_autocast_and_large_inputs_finite():
    f, t = batch(7, n=32, d=16, k=4, dtype=torch.float32)
    ref = supcon(f, t, 0.05)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fb = f.bfloat16().requires_grad_(True)
        loss = supcon(fb, t, 0.05)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(fb.grad.float()).all()
    assert loss.item() == pytest.approx(ref.item(), rel=0.05)
    big = supcon(1e4 * f, t, 0.05)
    assert big.item() == pytest.approx(ref.item(), rel=1e-5)
    assert torch.isfinite(supcon((1e4 * f).half(), t, 0.05))


def test_inputs_unchanged():
    f, t = batch(8)
    f.requires_grad_(True)
    before = (f.detach().clone(), t.clone())
    supcon(f, t).backward()
    views = f.detach().reshape(5, 2, 6)
    views_before = views.clone()
    supcon(views, t[:5])
    assert torch.equal(f.detach(), before[0]) and torch.equal(t, before[1]) and torch.equal(views, views_before)


def test_bad_inputs():
    f, t = batch(9)
    with pytest.raises(ValueError, match=r"`features` must be 2-D or 3-D"):
        supcon(f[0], t)
    with pytest.raises(ValueError, match=r"`features` must be 2-D or 3-D"):
        supcon(f[None, None], t)
    with pytest.raises(ValueError, match=r"`target` must have length 10"):
        supcon(f, t[:9])
    with pytest.raises(ValueError, match=r"`target` must have length 5"):
        supcon(f.reshape(5, 2, 6), t)
    with pytest.raises(TypeError, match=r"`target` must be an integer tensor"):
        supcon(f, t.float())
    with pytest.raises(TypeError, match=r"`features` must be a floating-point tensor"):
        supcon(t[:, None], t)
    for tau in (0.0, -1.0):
        with pytest.raises(ValueError, match=r"`temperature` must be > 0"):
            supcon(f, t, tau)
    with pytest.raises(ValueError, match=r"`base_temperature` must be > 0"):
        supcon(f, t, 0.1, 0.0)
    with pytest.raises(ValueError, match=r"`features` is empty"):
        supcon(f[:0], t[:0])
    bad = f.clone()
    bad[0, 0] = math.nan
    with pytest.raises(ValueError, match=r"`features` contains 1 NaN"):
        supcon(bad, t)
    with pytest.raises(ValueError, match=r"`features` must be 3-D"):
        flatten_views(f, t)
    with pytest.raises(ValueError, match=r"`temperature`"):
        SupConLoss(temperature=0)


def test_term_reads_features():
    f, t = batch(10)
    out = HeadOutput(logits=torch.zeros(10, 3), features=f)
    term = create_term("supcon", temperature=0.05)  # LPC-SCL setting
    assert torch.equal(term(out, t), supcon(f, t, 0.05))
    assert term.needs == ("features",)

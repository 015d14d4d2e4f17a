"""OCCE (KL form), the official +1e-7 form, soft anti-class targets, RCE and the fused CE + OCCE pass."""

import importlib
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import neuralcollapse as nc
from neuralcollapse.losses import OCCELoss, RCELoss, ce_occe, cross_entropy, occe, rce, weighted_ce_occe
from neuralcollapse.losses._terms import create_term
from neuralcollapse.losses.occe import OFFICIAL_EPS
from neuralcollapse.output import HeadOutput

from ._reference import log_softmax_np, logits_batch

# ---------------------------------------------------------------------------------------------------------
# float64 references written from the paper's equations (loops over samples)
# ---------------------------------------------------------------------------------------------------------


def occe_ref(z, y, q_star=None):
    """Per-sample KL(target ‖ softmax(−z)) (Katsikas et al., Eqs. 3–4), float64 loops."""
    z = np.asarray(z, dtype=np.float64)
    n, k = z.shape
    out = np.zeros(n)
    for i in range(n):
        log_q = log_softmax_np(-z[i])
        for j in range(k):
            t = (0.0 if j == y[i] else 1.0 / (k - 1)) if q_star is None else q_star[i, j]
            if t > 0:
                out[i] += t * (math.log(t) - log_q[j])
    return out


def official_occe(inputs, targets):
    """The official OCCELoss expression (cidl-auth/anticlasses, losses.py), transcribed."""
    n = inputs.shape[1]
    ycomp = (n - 1) * F.softmax(-inputs, dim=1)
    y = torch.ones((targets.size(0), n), dtype=inputs.dtype)
    y.scatter_(1, targets.unsqueeze(1), 0.0)
    loss = -1 / (n - 1) * torch.sum(y * torch.log(ycomp + 0.0000001), dim=1)
    return torch.mean(loss)


def _soft_target(z, y, seed=1):
    g = torch.Generator().manual_seed(seed)
    q = torch.rand(z.shape, generator=g, dtype=z.dtype)
    q[torch.arange(len(y)), y] = 0
    return q / q.sum(1, keepdim=True)


# ---------------------------------------------------------------------------------------------------------
# values
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 3, 10])
def test_uniform_matches_loop_reference(k):
    z, y = logits_batch(7, k)
    np.testing.assert_allclose(occe(z, y, reduction="none").numpy(), occe_ref(z.numpy(), y.numpy()), rtol=1e-12)
    assert occe(z, y).item() == pytest.approx(occe_ref(z.numpy(), y.numpy()).mean(), rel=1e-12)
    assert occe(z, y, reduction="sum").item() == pytest.approx(occe_ref(z.numpy(), y.numpy()).sum(), rel=1e-12)


def test_soft_target_matches_loop_reference():
    z, y = logits_batch(6, 5)
    q = _soft_target(z, y)
    ref = occe_ref(z.numpy(), y.numpy(), q.numpy())
    np.testing.assert_allclose(occe(z, y, anticlass_target=q, reduction="none").numpy(), ref, rtol=1e-12)


def test_soft_uniform_target_equals_uniform_form():
    z, y = logits_batch(5, 4)
    q = (1 - F.one_hot(y, 4).double()) / 3
    torch.testing.assert_close(occe(z, y, anticlass_target=q), occe(z, y), rtol=1e-12, atol=1e-12)


def test_known_values_and_optimum():
    # equal logits: q uniform over K → KL = log((K)/(K−1))
    assert occe(torch.zeros(3, 5), torch.tensor([0, 1, 2])).item() == pytest.approx(math.log(5 / 4), rel=1e-6)
    # target logit very large, others equal: q → uniform one-cold, KL → 0
    z = torch.tensor([[40.0, 1.0, 1.0, 1.0]], dtype=torch.float64)
    assert abs(occe(z, torch.tensor([0])).item()) < 1e-12
    # paper's CE form = KL form + log(K − 1)
    z, y = logits_batch(4, 6)
    ce_form = -(F.log_softmax(-z, 1) * (1 - F.one_hot(y, 6).double()) / 5).sum(1).mean()
    assert occe(z, y).item() == pytest.approx(ce_form.item() - math.log(5), rel=1e-12)


@given(n=st.integers(1, 6), k=st.integers(2, 7), seed=st.integers(0, 10_000), scale=st.sampled_from([0.1, 3.0, 30.0]))
def test_properties_nonnegative_shift_invariant(n, k, seed, scale):
    z, y = logits_batch(n, k, seed, scale=scale)
    per = occe(z, y, reduction="none")
    assert bool((per >= -1e-12).all())
    shift = torch.randn(n, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(occe(z + 5 * shift, y, reduction="none"), per, rtol=1e-9, atol=1e-9)


@given(n=st.integers(1, 8), seed=st.integers(0, 10_000), scale=st.sampled_from([0.5, 5.0, 50.0]))
def test_k2_equals_cross_entropy(n, seed, scale):
    z, y = logits_batch(n, 2, seed, scale=scale)
    torch.testing.assert_close(occe(z, y, reduction="none"), F.cross_entropy(z, y, reduction="none"))
    z1 = z.clone().requires_grad_(True)
    z2 = z.clone().requires_grad_(True)
    occe(z1, y).backward()
    F.cross_entropy(z2, y).backward()
    torch.testing.assert_close(z1.grad, z2.grad)


def test_official_eps_form_is_bit_compatible_and_close_to_exact():
    z, y = logits_batch(16, 10, dtype=torch.float32)
    assert torch.equal(occe(z, y, eps=OFFICIAL_EPS), official_occe(z, y))
    # unit-scale logits: the +1e-7 shifts the value by < 1e-6 (docs/methods.md §2.3)
    z, y = logits_batch(16, 10, scale=1.0)
    assert abs(occe(z, y, eps=1e-7).item() - occe(z, y).item()) < 1e-6
    # at large logits the official form saturates at −log(1e−7)/… while the exact one keeps growing
    big = torch.tensor([[0.0, 60.0, -60.0]])
    assert occe(big, torch.tensor([2]), eps=1e-7).item() < occe(big, torch.tensor([2])).item() - 1.0


def test_official_eps_form_loses_gradient_when_saturated_exact_does_not():
    z = torch.tensor([[0.0, 40.0, 0.0]], requires_grad=True)
    occe(z, torch.tensor([0]), eps=1e-7).backward()
    g_off = z.grad.clone()
    z.grad = None
    occe(z, torch.tensor([0])).backward()
    # exact gradient = ȳ − softmax(−z) = (0, .5, .5) − (~.5, 0, ~.5)
    torch.testing.assert_close(z.grad, torch.tensor([[-0.5, 0.5, 0.0]]), atol=1e-6, rtol=0)
    assert abs(g_off[0, 1].item()) < 1e-6  # the official form's saturated entry has no gradient


def test_rce_relation_and_reference():
    z, y = logits_batch(6, 5)
    torch.testing.assert_close(rce(-z, y), occe(z, y) + math.log(4), rtol=1e-12, atol=1e-12)
    ref = np.array([-sum(log_softmax_np(zi)[j] for j in range(5) if j != yi) / 4 for zi, yi in zip(z.numpy(), y)])
    np.testing.assert_allclose(rce(z, y, reduction="none").numpy(), ref, rtol=1e-12)
    assert RCELoss()(z, y).item() == pytest.approx(ref.mean(), rel=1e-12)


# ---------------------------------------------------------------------------------------------------------
# gradients
# ---------------------------------------------------------------------------------------------------------


def test_gradient_closed_form_uniform_and_soft():
    z, y = logits_batch(6, 5)
    n, k = z.shape
    zz = z.clone().requires_grad_(True)
    occe(zz, y).backward()
    ybar = (1 - F.one_hot(y, k).double()) / (k - 1)
    torch.testing.assert_close(zz.grad, (ybar - F.softmax(-z, 1)) / n, rtol=1e-12, atol=1e-14)
    q = _soft_target(z, y)
    zz.grad = None
    occe(zz, y, anticlass_target=q).backward()
    torch.testing.assert_close(zz.grad, (q - F.softmax(-z, 1)) / n, rtol=1e-12, atol=1e-14)
    # rows of the per-sample gradient sum to 0 and lie in [−1, 1]
    assert torch.allclose(zz.grad.sum(1), torch.zeros(n, dtype=torch.float64), atol=1e-15)


def test_gradcheck_all_forms():
    z, y = logits_batch(4, 5)
    q = _soft_target(z, y)
    w = torch.tensor([0.5, 1.0, 2.0, 1.5, 0.3], dtype=torch.float64)
    y_ign = y.clone()
    y_ign[1] = -100
    zz = z.clone().requires_grad_(True)
    for fn in (
        lambda x: occe(x, y),
        lambda x: occe(x, y, reduction="none"),
        lambda x: occe(x, y, anticlass_target=q),
        lambda x: occe(x, y, eps=1e-7),
        lambda x: occe(x, y_ign, weight=w),
        lambda x: rce(x, y),
        lambda x: ce_occe(x, y)[0] + 0.7 * ce_occe(x, y)[1],
        lambda x: ce_occe(x, y_ign, weight=w, reduction="sum")[1],
        lambda x: ce_occe(x, y, compile=False)[0],
        lambda x: weighted_ce_occe(x, y, 1.0, 0.3)[0],
        lambda x: weighted_ce_occe(x, y_ign, 0.5, 2.0, weight=w, reduction="sum")[0],
    ):
        assert torch.autograd.gradcheck(fn, (zz,))


# ---------------------------------------------------------------------------------------------------------
# F.cross_entropy semantics: weight, ignore_index, (N, K, d1, d2)
# ---------------------------------------------------------------------------------------------------------


def test_weight_ignore_index_and_spatial_semantics():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(3, 4, 2, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (3, 2, 5), generator=g)
    y[0, 1, 2] = -1
    y[2, 0, 0] = -1
    w = torch.tensor([1.0, 0.5, 2.0, 3.0], dtype=torch.float64)
    flat_z = z.movedim(1, -1).reshape(-1, 4)
    flat_y = y.reshape(-1)
    keep = flat_y != -1
    per = torch.from_numpy(occe_ref(flat_z[keep].numpy(), flat_y[keep].numpy()))
    wy = w[flat_y[keep]]
    assert occe(z, y, weight=w, ignore_index=-1).item() == pytest.approx((wy * per).sum().item() / wy.sum().item())
    assert occe(z, y, weight=w, ignore_index=-1, reduction="sum").item() == pytest.approx((wy * per).sum().item())
    none = occe(z, y, ignore_index=-1, reduction="none")
    assert none.shape == (3, 2, 5)
    assert none[0, 1, 2].item() == 0.0
    # same reduction rule as F.cross_entropy on the same per-sample values
    k2 = occe(z[:, :2], y.clamp(max=1), weight=w[:2], ignore_index=-1)
    ce2 = F.cross_entropy(z[:, :2], y.clamp(max=1), weight=w[:2], ignore_index=-1)
    torch.testing.assert_close(k2, ce2)


def test_all_ignored_is_graph_connected_zero():
    z = torch.randn(3, 4, requires_grad=True)
    loss = occe(z, torch.full((3,), -100))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(z.grad, torch.zeros_like(z))


# ---------------------------------------------------------------------------------------------------------
# numerics
# ---------------------------------------------------------------------------------------------------------


def test_bf16_autocast_finite():
    g = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(8, 6)
    x = torch.randn(5, 8, generator=g)
    y = torch.randint(0, 6, (5,), generator=g)
    for fn in (occe, rce, lambda z, t: sum(ce_occe(z, t)), lambda z, t: weighted_ce_occe(z, t, 1.0, 0.5)[0]):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = lin(x)
            assert logits.dtype == torch.bfloat16
            loss = fn(logits, y)
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
        lin.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in lin.parameters())


def test_large_logits_exact_and_finite():
    z, y = logits_batch(6, 5, dtype=torch.float32, scale=1e4)
    zz = z.clone().requires_grad_(True)
    loss = occe(zz, y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(zz.grad).all()
    ref = occe_ref(z.double().numpy(), y.numpy()).mean()
    assert loss.item() == pytest.approx(ref, rel=1e-5)
    ybar = (1 - F.one_hot(y, 5).float()) / 4
    torch.testing.assert_close(zz.grad, (ybar - F.softmax(-z, 1)) / 6, atol=1e-7, rtol=0)
    zf = z.clone().requires_grad_(True)
    ce, oc = ce_occe(zf, y)
    (ce + oc).backward()
    assert torch.isfinite(zf.grad).all()
    assert oc.item() == pytest.approx(ref, rel=1e-5)
    zw = z.clone().requires_grad_(True)
    total, _, oc_w = weighted_ce_occe(zw, y, 1.0, 1.0)
    total.backward()
    assert torch.isfinite(zw.grad).all() and oc_w.item() == pytest.approx(ref, rel=1e-5)
    torch.testing.assert_close(zw.grad, zf.grad, atol=1e-7, rtol=0)


def test_inputs_not_modified():
    z, y = logits_batch(5, 4)
    q = _soft_target(z, y)
    copies = (z.clone(), y.clone(), q.clone())
    occe(z, y, anticlass_target=q)
    occe(z, y, eps=1e-7)
    zz = z.clone().requires_grad_(True)
    sum(ce_occe(zz, y)).backward()
    assert torch.equal(z, copies[0]) and torch.equal(y, copies[1]) and torch.equal(q, copies[2])


# ---------------------------------------------------------------------------------------------------------
# fused CE + OCCE
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("options", [{}, {"weight": True}, {"ignore": True}, {"weight": True, "ignore": True}])
def test_fused_equals_unfused(reduction, options):
    z, y = logits_batch(9, 6, seed=4)
    w = torch.linspace(0.5, 2.0, 6, dtype=torch.float64) if options.get("weight") else None
    if options.get("ignore"):
        y = y.clone()
        y[[0, 5]] = -100
    kw = {"weight": w, "reduction": reduction}
    z1 = z.clone().requires_grad_(True)
    z2 = z.clone().requires_grad_(True)
    ce, oc = ce_occe(z1, y, **kw)
    torch.testing.assert_close(ce, cross_entropy(z, y, **kw), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(oc, occe(z, y, **kw), rtol=1e-12, atol=1e-12)
    (ce + 0.3 * oc).backward()
    (cross_entropy(z2, y, **kw) + 0.3 * occe(z2, y, **kw)).backward()
    torch.testing.assert_close(z1.grad, z2.grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize(("w_ce", "w_occe"), [(1.0, 1.0), (0.5, 0.1), (0.0, 2.0), (0.0, 0.0)])
def test_weighted_fused_equals_unfused(reduction, w_ce, w_occe, monkeypatch):
    occe_module = importlib.import_module("neuralcollapse.losses.occe")  # the attribute is the function
    monkeypatch.setattr(occe_module, "FUSED_BLOCK_BYTES", 3 * 6 * 8)  # 3 rows per block
    z, y = logits_batch(11, 6, seed=5)
    y = y.clone()
    y[4] = -100
    w = torch.linspace(0.5, 2.0, 6, dtype=torch.float64)
    kw = {"weight": w, "reduction": reduction}
    z1 = z.clone().requires_grad_(True)
    z2 = z.clone().requires_grad_(True)
    total, ce, oc = weighted_ce_occe(z1, y, w_ce, w_occe, **kw)
    assert not ce.requires_grad and not oc.requires_grad
    torch.testing.assert_close(ce, cross_entropy(z, y, **kw), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(oc, occe(z, y, **kw), rtol=1e-12, atol=1e-12)
    ref = w_ce * cross_entropy(z2, y, **kw) + w_occe * occe(z2, y, **kw)
    torch.testing.assert_close(total, ref, rtol=1e-12, atol=1e-12)
    g1 = torch.autograd.grad(3.0 * total, z1, retain_graph=True)[0]
    g2 = torch.autograd.grad(3.0 * total, z1)[0]  # the second walk rebuilds the consumed gradient
    (g_ref,) = torch.autograd.grad(3.0 * ref, z2)
    torch.testing.assert_close(g1, g_ref, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(g2, g_ref, rtol=1e-10, atol=1e-14)


def test_weighted_fused_without_gradient():
    z, y = logits_batch(5, 4)
    with torch.no_grad():
        total, ce, oc = weighted_ce_occe(z.clone().requires_grad_(True), y, 1.0, 0.5)
    assert not total.requires_grad
    torch.testing.assert_close(total, cross_entropy(z, y) + 0.5 * occe(z, y), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ce, cross_entropy(z, y), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(oc, occe(z, y), rtol=1e-12, atol=1e-12)
    total, _, _ = weighted_ce_occe(z, y, 1.0, 0.5)  # input without requires_grad
    assert not total.requires_grad


def test_fused_float32_spatial_and_double_backward_pass():
    z, y = logits_batch(4, 7, dtype=torch.float32)
    z = z.reshape(2, 2, 7).movedim(2, 1).contiguous()  # (N=2, K=7, d1=2)
    y = y.reshape(2, 2)
    zz = z.clone().requires_grad_(True)
    ce, oc = ce_occe(zz, y)
    torch.testing.assert_close(ce, F.cross_entropy(z, y))
    torch.testing.assert_close(oc, occe(z, y))
    total = ce + 2 * oc
    g1 = torch.autograd.grad(total, zz, retain_graph=True)[0]
    g2 = torch.autograd.grad(total, zz)[0]  # second walk recomputes the consumed softmaxes
    torch.testing.assert_close(g1, g2)
    z2 = z.clone().requires_grad_(True)
    (F.cross_entropy(z2, y) + 2 * occe(z2, y)).backward()
    torch.testing.assert_close(g1, z2.grad)
    z3 = z.clone().requires_grad_(True)
    total, _, _ = weighted_ce_occe(z3, y, 1.0, 2.0)
    total.backward()
    torch.testing.assert_close(z3.grad, z2.grad)


def test_fused_all_ignored_and_errors():
    z = torch.randn(3, 4, requires_grad=True)
    ce, oc = ce_occe(z, torch.full((3,), -100))
    (ce + oc).backward()
    assert ce.item() == 0.0 and oc.item() == 0.0 and torch.equal(z.grad, torch.zeros_like(z))
    y = torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match="`reduction` must be one of"):
        ce_occe(torch.randn(3, 4), y, reduction="none")
    with pytest.raises(ValueError, match="`reduction` must be one of"):
        weighted_ce_occe(torch.randn(3, 4), y, 1.0, 1.0, reduction="none")
    for bad in (float("nan"), float("inf"), float("-inf")):
        x = torch.randn(3, 4)
        x[1, 2] = bad
        with pytest.raises(ValueError, match="`logits` contains NaN or Inf"):
            ce_occe(x, y)
        with pytest.raises(ValueError, match="`logits` contains NaN or Inf"):
            weighted_ce_occe(x, y, 1.0, 1.0)
    with pytest.raises(ValueError, match="`target` must hold class indices in \\[0, 4\\)"):
        ce_occe(torch.randn(3, 4), torch.tensor([0, 4, 1]))
    with pytest.raises(ValueError, match="`logits` must have at least 2 classes"):
        ce_occe(torch.randn(3, 1), torch.zeros(3, dtype=torch.long))
    with nc.validation(False):  # hot-loop mode: no value checks, still exact on good data
        ce, oc = ce_occe(torch.zeros(2, 3), torch.tensor([0, 1]))
    assert ce.item() == pytest.approx(math.log(3)) and oc.item() == pytest.approx(math.log(1.5))


# ---------------------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("logits", "target", "kwargs", "exc", "match"),
    [
        (torch.randn(3, 1), torch.zeros(3, dtype=torch.long), {}, ValueError, "`logits` must have at least 2 classes"),
        (torch.randn(3, 4), torch.tensor([0, 4, 1]), {}, ValueError, "`target` must hold class indices"),
        (torch.randn(3, 4), torch.tensor([0, -2, 1]), {}, ValueError, "`target` must hold class indices"),
        (torch.randn(3, 4), torch.tensor([0.0, 1.0, 2.0]), {}, TypeError, "`target` must be an integer tensor"),
        (torch.randn(3, 4), torch.tensor([0, 1]), {}, ValueError, "`target` must have shape"),
        (torch.randn(4), torch.tensor([0]), {}, ValueError, "`logits` must have at least 2 dimensions"),
        (torch.randint(0, 3, (3, 4)), torch.tensor([0, 1, 2]), {}, TypeError, "`logits` must be a floating-point"),
        (torch.tensor([[0.0, float("nan")]]), torch.tensor([0]), {}, ValueError, "`logits` contains 1 NaN or Inf"),
        (torch.tensor([[0.0, float("inf")]]), torch.tensor([0]), {}, ValueError, "`logits` contains 1 NaN or Inf"),
        (torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), {}, ValueError, "`logits` is empty"),
        (torch.randn(3, 4), torch.tensor([0, 1, 2]), {"reduction": "avg"}, ValueError, "`reduction` must be one of"),
        (torch.randn(3, 4), torch.tensor([0, 1, 2]), {"eps": -1.0}, ValueError, "`eps` must be > 0"),
        (torch.randn(3, 4), torch.tensor([0, 1, 2]), {"weight": torch.ones(3)}, ValueError, "`weight` must have one"),
        ([[0.0, 1.0]], torch.tensor([0]), {}, TypeError, "`logits` must be a torch.Tensor"),
    ],
)
def test_bad_input_raises(logits, target, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        occe(logits, target, **kwargs)


def test_bad_soft_target_raises():
    z, y = logits_batch(4, 5)
    good = _soft_target(z, y)
    bad_sum = good * 1.01
    bad_true = good.clone()
    bad_true[0, y[0]] = 1e-3
    bad_true[0] /= bad_true[0].sum()
    negative = good.clone()
    negative[0, (y[0] + 1) % 5] -= 0.5
    negative[0, (y[0] + 2) % 5] += 0.5
    nan = good.clone()
    nan[1, 0] = float("nan")
    cases = [
        (bad_sum, ValueError, "`anticlass_target` rows must sum to 1"),
        (bad_true, ValueError, "`anticlass_target` must be one-cold"),
        (negative, ValueError, "`anticlass_target` must be >= 0"),
        (nan, ValueError, "`anticlass_target` contains 1 NaN"),
        (good[:, :4], ValueError, "`anticlass_target` must have the logits' shape"),
        (good.long(), TypeError, "`anticlass_target` must be a floating-point"),
    ]
    for q, exc, match in cases:
        with pytest.raises(exc, match=match):
            occe(z, y, anticlass_target=q)
    with pytest.raises(ValueError, match="`eps` .* supports only the uniform one-cold target"):
        occe(z, y, anticlass_target=good, eps=1e-7)
    # ignored rows are not checked
    y_ign = y.clone()
    y_ign[0] = -100
    bad_row = good.clone()
    bad_row[0] = 0.0
    assert torch.isfinite(occe(z, y_ign, anticlass_target=bad_row))


# ---------------------------------------------------------------------------------------------------------
# modules and terms
# ---------------------------------------------------------------------------------------------------------


def test_module_and_terms():
    z, y = logits_batch(5, 4)
    q = _soft_target(z, y)
    w = torch.tensor([1.0, 2.0, 0.5, 1.0], dtype=torch.float64)
    assert OCCELoss(weight=w)(z, y).item() == pytest.approx(occe(z, y, weight=w).item())
    assert OCCELoss(eps=1e-7)(z, y).item() == pytest.approx(occe(z, y, eps=1e-7).item())
    assert OCCELoss()(z, y, anticlass_target=q).item() == pytest.approx(occe(z, y, anticlass_target=q).item())
    term = create_term("occe")
    out = HeadOutput(logits=z, features=z)
    assert term(out, y).item() == pytest.approx(occe(z, y).item())
    # soft target from the context; unrelated context keys are ignored
    assert term(out, y, anticlass_target=q, epoch=3).item() == pytest.approx(occe(z, y, anticlass_target=q).item())
    # dual head: KL(ȳ ‖ softmax(z̄)) on the anti-class head's raw output
    anti = -2.0 * z.flip(0)
    dual = HeadOutput(logits=z, features=z, anti_logits=anti)
    assert term(dual, y).item() == pytest.approx(occe(-anti, y).item())
    ref = occe_ref((-anti).numpy(), y.numpy()).mean()
    assert term(dual, y).item() == pytest.approx(ref)
    assert create_term("rce")(out, y).item() == pytest.approx(rce(z, y).item())


def test_module_rejects_bad_hyperparameters():
    with pytest.raises(ValueError, match="`eps` must be > 0"):
        OCCELoss(eps=0.0)
    with pytest.raises(ValueError, match="`reduction` must be one of"):
        OCCELoss(reduction="batchmean")
    with pytest.raises(TypeError, match="`weight` must be a floating-point"):
        OCCELoss(weight=torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="`eps` must be > 0"):
        create_term("occe", eps=-1e-7)


def test_doctests_of_loss_modules():
    import doctest

    for name in ("occe", "anticlass", "cross_entropy", "complement", "focal", "objective"):
        module = importlib.import_module(f"neuralcollapse.losses.{name}")
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0, name

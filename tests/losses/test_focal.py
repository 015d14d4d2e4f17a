"""Focal loss, single-label ASL, cyclical focal loss and AdaFocal (with its γ-per-bin state)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neuralcollapse.losses import (
    AdaFocalLoss,
    AdaFocalState,
    ASLLoss,
    CyclicalFocalLoss,
    FocalLoss,
    Objective,
    adafocal,
    asl,
    create_term,
    cyclical_focal,
    cyclical_xi,
    focal,
)
from neuralcollapse.losses.focal import _equal_mass_edges
from neuralcollapse.output import HeadOutput

from ._reference import assert_bf16_autocast_finite, logits_batch, softmax_np


def _focal_ref(z, y, gamma):
    out = []
    for zi, yi in zip(z, y):
        pt = softmax_np(zi)[yi]
        out.append(-((1 - pt) ** gamma) * math.log(pt))
    return np.array(out)


def _cfl_ref(z, y, gamma_pos, gamma_neg, eps, xi=0.0, gamma_hc=0.0):
    """lnsmith54/CFL Cyclical_FocalLoss / ASLSingleLabel (ξ = 0) per sample, transcribed to NumPy loops."""
    n, k = z.shape
    out = np.zeros(n)
    for i in range(n):
        p = softmax_np(z[i])
        for j in range(k):
            if j == y[i]:
                asym, pos = (1 - p[j]) ** gamma_pos, (1 + p[j]) ** gamma_hc
            else:
                asym, pos = p[j] ** gamma_neg, 1.0
            t = (1 - eps) * (j == y[i]) + eps / k
            out[i] -= t * ((1 - xi) * asym + xi * pos) * math.log(p[j])
    return out


# ---------------------------------------------------------------------------------------------------------
# focal
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5.0])
def test_focal_matches_reference(gamma):
    z, y = logits_batch()
    ref = _focal_ref(z.numpy(), y.numpy(), gamma)
    np.testing.assert_allclose(focal(z, y, gamma=gamma, reduction="none").numpy(), ref, rtol=1e-10)
    assert FocalLoss(gamma=gamma)(z, y).item() == pytest.approx(ref.mean(), rel=1e-10)


def test_focal_gamma_zero_is_ce_and_terms():
    z, y = logits_batch()
    torch.testing.assert_close(focal(z, y, gamma=0.0), F.cross_entropy(z, y))
    out = HeadOutput(logits=z, features=z)
    expected = focal(z, y).item()  # γ = 2
    assert create_term("focal")(out, y).item() == pytest.approx(expected)
    assert create_term("fl", gamma=2.0)(out, y).item() == pytest.approx(expected)


# ---------------------------------------------------------------------------------------------------------
# ASL, CFL
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("gp", "gn", "eps"), [(0.0, 4.0, 0.1), (1.0, 2.0, 0.0), (2.0, 0.0, 0.3)])
def test_asl_matches_reference(gp, gn, eps):
    z, y = logits_batch()
    ref = _cfl_ref(z.numpy(), y.numpy(), gp, gn, eps)
    got = asl(z, y, gamma_pos=gp, gamma_neg=gn, eps=eps, reduction="none")
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10)


def test_asl_defaults_and_weights_not_detached():
    z, y = logits_batch()
    out = HeadOutput(logits=z, features=z)
    ref = _cfl_ref(z.numpy(), y.numpy(), 0.0, 4.0, 0.1).mean()
    assert asl(z, y).item() == pytest.approx(ref, rel=1e-10)
    assert ASLLoss()(z, y).item() == pytest.approx(ref, rel=1e-10)
    assert create_term("asl")(out, y).item() == pytest.approx(ref, rel=1e-10)
    # the autograd gradient includes the weights' own derivative: differs from a detached-weight version
    zz = z.clone().requires_grad_(True)
    asl(zz, y).backward()
    logp = F.log_softmax(zz, 1)
    w = torch.exp(4.0 * logp).detach().scatter(1, y[:, None], 1.0)
    t = 0.9 * F.one_hot(y, 5).double() + 0.02
    g_detached = torch.autograd.grad(-(t * w * logp).sum(1).mean(), zz)[0]
    assert (zz.grad - g_detached).abs().max() > 1e-4


@pytest.mark.parametrize(
    ("num_epochs", "factor", "expected"),
    [
        (10, 4.0, [1.0, 1 - 4 / 9, 1 - 8 / 9, (12 / 9 - 1) / 3, (16 / 9 - 1) / 3, (20 / 9 - 1) / 3, (24 / 9 - 1) / 3,
                   (28 / 9 - 1) / 3, (32 / 9 - 1) / 3, 1.0]),
        (5, 2.0, [1.0, 0.5, 0.0, 0.5, 1.0]),
        (5, 1.0, [1.0, 0.75, 0.5, 0.25, 0.0]),
        (1, 4.0, [1.0]),
    ],
)
def test_cyclical_xi_schedule(num_epochs, factor, expected):
    got = [cyclical_xi(e, num_epochs, factor) for e in range(num_epochs)]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    assert all(0.0 <= v <= 1.0 for v in got)


def test_cyclical_xi_bad_input():
    with pytest.raises(ValueError, match="`epoch` must be in \\[0, num_epochs\\)"):
        cyclical_xi(10, 10)
    with pytest.raises(ValueError, match="`epoch` must be in"):
        cyclical_xi(-1, 10)
    with pytest.raises(TypeError, match="`epoch` must be an int"):
        cyclical_xi(1.5, 10)
    with pytest.raises(ValueError, match="`num_epochs` must be >= 1"):
        cyclical_xi(0, 0)
    with pytest.raises(ValueError, match="`factor` must be > 0"):
        cyclical_xi(0, 10, factor=0.0)


@pytest.mark.parametrize("epoch", [0, 1, 2, 5, 9])
def test_cfl_matches_reference(epoch):
    z, y = logits_batch()
    xi = cyclical_xi(epoch, 10, 4.0)
    ref = _cfl_ref(z.numpy(), y.numpy(), 2.0, 2.0, 0.1, xi=xi, gamma_hc=3.0)
    got = cyclical_focal(z, y, epoch=epoch, num_epochs=10, reduction="none")
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10)
    out = HeadOutput(logits=z, features=z)
    assert create_term("cfl")(out, y, epoch=epoch, num_epochs=10).item() == pytest.approx(ref.mean(), rel=1e-10)
    assert CyclicalFocalLoss()(z, y, epoch, 10).item() == pytest.approx(ref.mean(), rel=1e-10)


def test_cfl_at_xi_zero_is_asl_and_term_needs_context():
    z, y = logits_batch()
    got = cyclical_focal(z, y, epoch=2, num_epochs=5, factor=2.0, gamma_pos=1.0, gamma_neg=3.0)  # ξ = 0
    assert got.item() == pytest.approx(asl(z, y, gamma_pos=1.0, gamma_neg=3.0).item(), rel=1e-12)
    out = HeadOutput(logits=z, features=z)
    with pytest.raises(ValueError, match="needs the context keys `epoch`"):
        create_term("cfl")(out, y)
    obj = Objective.parse("cfl+occe")
    assert torch.isfinite(obj(out, y, epoch=3, num_epochs=10).total)


# ---------------------------------------------------------------------------------------------------------
# AdaFocal
# ---------------------------------------------------------------------------------------------------------


def test_equal_mass_edges_match_numpy_interp():
    rng = np.random.default_rng(0)
    for n, bins in [(4, 2), (37, 15), (200, 15), (3, 15), (1, 5)]:
        x = rng.random(n)
        expected = np.interp(np.linspace(0, n, bins + 1), np.arange(n), np.sort(x))
        np.testing.assert_allclose(_equal_mass_edges(torch.from_numpy(x), bins).numpy(), expected, rtol=1e-12)


def test_bin_lookup_matches_reference_rule():
    """3mcloud/adafocal get_gamma_per_sample: first bin whose [lower, upper) holds p (open ends)."""
    st = AdaFocalState(num_bins=4)
    st.edges.copy_(torch.tensor([0.1, 0.3, 0.3, 0.6, 0.95], dtype=torch.float64))
    pts = [0.0, 0.1, 0.2999, 0.3, 0.45, 0.6, 0.7, 0.95, 1.0]
    edges = st.edges.tolist()

    def ref(p):
        for b in range(4):
            lower, upper = edges[b], edges[b + 1]
            if (b == 0 and p < upper) or (b == 3 and p >= lower) or lower <= p < upper:
                return b
        raise AssertionError

    assert st.bin_of(torch.tensor(pts)).tolist() == [ref(p) for p in pts]


def test_adafocal_update_hand_cases():
    st = AdaFocalState(num_bins=2)
    torch.testing.assert_close(st.edges, torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))
    st.update(torch.tensor([0.1, 0.3, 0.7, 0.9]), torch.tensor([1, 0, 1, 1]))
    # edges from the data: [0.1, 0.7, 0.9]; bin 0: C = 0.2, A = 0.5; bin 1: C = 0.8, A = 1.0
    torch.testing.assert_close(st.edges, torch.tensor([0.1, 0.7, 0.9], dtype=torch.float64))
    torch.testing.assert_close(st.gammas, torch.tensor([math.exp(-0.3), math.exp(-0.2)], dtype=torch.float64))

    def one_bin(gamma, gap, **kw):
        s = AdaFocalState(num_bins=1, gamma_init=gamma, **kw)
        # calibration gap C − A = gap: all wrong at confidence gap, or all right at confidence 1 + gap
        conf, right = (gap, False) if gap >= 0 else (1 + gap, True)
        s.update(torch.full((2,), conf), torch.full((2,), right))
        return s.gammas.item()

    assert one_bin(2.0, 0.4) == pytest.approx(2.0 * math.exp(0.4))  # over-confident: γ grows
    assert one_bin(-1.0, 0.4) == pytest.approx(-1.0 * math.exp(-0.4))  # negative γ: toward 0
    assert one_bin(0.3, -0.5) == pytest.approx(-0.2)  # 0.3 e^−0.5 = 0.18 < S_th: switch to inverse focal
    assert one_bin(-0.2, 0.3) == pytest.approx(0.2)  # −0.2 e^−0.3: back to focal
    assert one_bin(15.0, 0.9) == pytest.approx(20.0)  # clipped at γ_max
    assert one_bin(-1.5, -0.9) == pytest.approx(-2.0)  # clipped at γ_min
    assert one_bin(1.0, 0.9, lam=0.5) == pytest.approx(math.exp(0.45))
    # all confidences equal: duplicate edges, the lower bins are empty (gap 0, γ unchanged)
    s = AdaFocalState(num_bins=3)
    s.update(torch.full((4,), 0.5), torch.tensor([1, 1, 1, 1]))
    torch.testing.assert_close(s.gammas, torch.tensor([1.0, 1.0, math.exp(-0.5)], dtype=torch.float64))


def test_adafocal_loss_matches_reference_with_mixed_signs():
    z, y = logits_batch(8, 4)
    st = AdaFocalState(num_bins=3)
    st.gammas.copy_(torch.tensor([-1.5, 0.0, 2.5], dtype=torch.float64))
    p = torch.softmax(z, 1)[torch.arange(8), y].numpy()
    gam = np.array([-1.5, 0.0, 2.5])[np.minimum((p * 3).astype(int), 2)]  # equal-width bins before any update
    ref = np.array([-((1 - np.sign(g) * pt) ** abs(g)) * math.log(pt) for g, pt in zip(gam, p)])
    np.testing.assert_allclose(adafocal(z, y, st, reduction="none").numpy(), ref, rtol=1e-10)
    assert adafocal(z, y, st, reduction="sum").item() == pytest.approx(ref.sum(), rel=1e-10)
    # fresh state: γ = 1 everywhere = focal with γ = 1
    assert adafocal(z, y).item() == pytest.approx(focal(z, y, gamma=1.0).item(), rel=1e-12)
    zz = z.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: adafocal(x, y, st), (zz,))


def test_adafocal_state_dict_terms_and_module():
    term = create_term("adafl")
    term.state.update(torch.tensor([0.2, 0.4, 0.9]), torch.tensor([0, 1, 1]))
    obj = Objective.parse("adafocal+occe")
    obj.load_state_dict({f"terms.adafocal.{k}": v for k, v in term.state_dict().items()})
    torch.testing.assert_close(obj.term("adafocal").state.gammas, term.state.gammas)
    torch.testing.assert_close(obj.term("adafocal").state.edges, term.state.edges)
    z, y = logits_batch()
    out = HeadOutput(logits=z, features=z)
    assert term(out, y).item() == pytest.approx(adafocal(z, y, term.state).item())
    loss = AdaFocalLoss(num_bins=5)
    assert loss.state.num_bins == 5 and "state.gammas" in loss.state_dict()


def test_adafocal_bad_input():
    st = AdaFocalState()
    with pytest.raises(ValueError, match="`confidences` must be probabilities"):
        st.update(torch.tensor([0.5, 1.5]), torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="`correct` must have the shape"):
        st.update(torch.tensor([0.5, 0.5]), torch.tensor([1]))
    with pytest.raises(TypeError, match="`correct` must be a bool or integer"):
        st.update(torch.tensor([0.5]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="`confidences` is empty"):
        st.update(torch.zeros(0), torch.zeros(0, dtype=torch.bool))
    with pytest.raises(ValueError, match="`confidences` contains 1 NaN"):
        st.update(torch.tensor([float("nan")]), torch.tensor([1]))
    with pytest.raises(ValueError, match="`gamma_init` must lie in"):
        AdaFocalState(gamma_init=30.0)
    with pytest.raises(ValueError, match="`num_bins` must be an int >= 1"):
        AdaFocalState(num_bins=0)
    with pytest.raises(ValueError, match="`lam` must be > 0"):
        AdaFocalState(lam=0.0)
    with pytest.raises(TypeError, match="`state` must be an AdaFocalState"):
        adafocal(torch.zeros(2, 3), torch.tensor([0, 1]), state={"gammas": 1})


# ---------------------------------------------------------------------------------------------------------
# shared: gradcheck, numerics, bad input
# ---------------------------------------------------------------------------------------------------------

_ALL = {
    "focal": lambda z, y: focal(z, y),
    "focal_g05": lambda z, y: focal(z, y, gamma=0.5),
    "asl": lambda z, y: asl(z, y),
    "cfl": lambda z, y: cyclical_focal(z, y, epoch=3, num_epochs=10),
    "adafocal": lambda z, y: adafocal(z, y, _mixed_state()),
}


def _mixed_state():
    st = AdaFocalState(num_bins=4)
    st.gammas.copy_(torch.tensor([-2.0, 0.5, 3.0, 0.2], dtype=torch.float64))
    return st


@pytest.mark.parametrize("name", list(_ALL))
def test_gradcheck(name):
    z, y = logits_batch(4, 5)
    zz = z.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: _ALL[name](x, y), (zz,))


@pytest.mark.parametrize("name", list(_ALL))
def test_large_logits_and_bf16_finite(name):
    fn = _ALL[name]
    z, y = logits_batch(8, 5, dtype=torch.float32, scale=1e4)
    z[0] = 0.0
    z[0, y[0]] = 1e4  # p_t rounds to 1 exactly: (1 − p_t)^0.5 would have an infinite derivative
    zz = z.clone().requires_grad_(True)
    loss = fn(zz, y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(zz.grad).all()
    assert_bf16_autocast_finite(fn, n=6, k=5)


@pytest.mark.parametrize("name", list(_ALL))
def test_bad_input_and_ignore_index(name):
    fn = _ALL[name]
    z, y = logits_batch()
    zc = z.clone()
    y_ign = y.clone()
    y_ign[1] = -100
    keep = y_ign != -100
    assert fn(z, y_ign).item() == pytest.approx(fn(z[keep], y[keep]).item(), rel=1e-12)
    assert torch.equal(z, zc)
    with pytest.raises(ValueError, match="`logits` must have at least 2 classes"):
        fn(torch.randn(3, 1), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="`target` must hold class indices"):
        fn(z, y + 5)
    with pytest.raises(TypeError, match="`target` must be an integer"):
        fn(z, y.float())
    with pytest.raises(ValueError, match="`logits` contains 1 NaN"):
        fn(torch.tensor([[float("nan"), 0.0]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="`logits` is empty"):
        fn(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))


def test_bad_hyperparameters():
    z, y = logits_batch()
    with pytest.raises(ValueError, match="`gamma` must be >= 0"):
        focal(z, y, gamma=-1.0)
    with pytest.raises(ValueError, match="`gamma_neg` must be >= 0"):
        asl(z, y, gamma_neg=-4.0)
    with pytest.raises(ValueError, match="`eps` must be in \\[0, 1\\]"):
        asl(z, y, eps=2.0)
    with pytest.raises(ValueError, match="`gamma_hc` must be >= 0"):
        cyclical_focal(z, y, epoch=0, num_epochs=3, gamma_hc=-3.0)
    with pytest.raises(ValueError, match="`gamma` must be >= 0"):
        create_term("focal", gamma=-2.0)

"""Negative learning (CE+NL), COT's complement entropy and complement cross-entropy."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neuralcollapse.losses import (
    ComplementCrossEntropyLoss,
    ComplementEntropyLoss,
    NegativeLearningLoss,
    complement_cross_entropy,
    complement_entropy,
    create_term,
    cross_entropy,
    negative_learning,
)
from neuralcollapse.output import HeadOutput

from ._reference import assert_bf16_autocast_finite, logits_batch, softmax_np


def _nl_all_ref(z, y):
    return np.array([-sum(math.log(1 - softmax_np(zi)[k]) for k in range(len(zi)) if k != yi) for zi, yi in zip(z, y)])


def _complement_entropy_ref(z, y):
    """C_i = −Σ_{j≠y} P_ij log P_ij with P_ij = p_ij / (1 − p_iy) (Chen et al., ICLR 2019, Eq. 2)."""
    out = np.zeros(len(y))
    for i, (zi, yi) in enumerate(zip(z, y)):
        p = softmax_np(zi)
        for j in range(len(zi)):
            if j != yi:
                pij = p[j] / (1 - p[yi])
                out[i] -= pij * math.log(pij)
    return out


def official_cce(inputs, targets):
    """The OCCE repository's CCELoss (cidl-auth/anticlasses, losses.py) with w_comp = 1, transcribed."""
    batch_size, classes = len(targets), inputs.shape[1]
    yhat = F.softmax(inputs, dim=1)
    yg = torch.gather(yhat, 1, torch.unsqueeze(targets, 1))
    px = yhat / ((1 - yg) + 1e-7).view(len(yhat), 1)
    px_log = torch.log(px + 1e-10)
    y_zerohot = torch.ones(batch_size, classes, dtype=inputs.dtype).scatter_(1, targets.view(batch_size, 1), 0)
    loss_comp = torch.sum(px * px_log * y_zerohot) / float(batch_size) / float(classes)
    return F.cross_entropy(inputs, targets) + loss_comp


# ---------------------------------------------------------------------------------------------------------
# negative learning
# ---------------------------------------------------------------------------------------------------------


def test_nl_all_matches_reference():
    z, y = logits_batch()
    ref = _nl_all_ref(z.numpy(), y.numpy())
    np.testing.assert_allclose(negative_learning(z, y, reduction="none").numpy(), ref, rtol=1e-12)
    assert NegativeLearningLoss()(z, y).item() == pytest.approx(ref.mean(), rel=1e-12)
    # official SCLNLLoss: −Σ log(1.0000001 − p) · onecold, mean — equal up to the 1e−7 guard
    p = F.softmax(z, 1)
    onecold = 1 - F.one_hot(y, 5).double()
    official = torch.mean(-torch.sum(torch.log(1.0000001 - p) * onecold, dim=1))
    assert negative_learning(z, y).item() == pytest.approx(official.item(), abs=1e-5)


def test_nl_random_draws_a_complementary_label():
    z, y = logits_batch(8, 5)
    g = torch.Generator().manual_seed(7)
    per = negative_learning(z, y, mode="random", generator=g, reduction="none")
    shift = torch.randint(1, 5, (8,), generator=torch.Generator().manual_seed(7))
    ybar = (y + shift) % 5
    assert bool((ybar != y).all())
    p = torch.softmax(z, 1)
    torch.testing.assert_close(per, -torch.log(1 - p[torch.arange(8), ybar]), rtol=1e-10, atol=1e-12)
    # reproducible with a seeded term; uniform over the K − 1 complementary classes
    t1 = create_term("nl", mode="random", seed=3)
    t2 = create_term("nl", mode="random", seed=3)
    out = HeadOutput(logits=z, features=z)
    assert t1(out, y).item() == t2(out, y).item()
    yy = torch.zeros(40_000, dtype=torch.long)
    draws = (yy + torch.randint(1, 4, (40_000,), generator=torch.Generator().manual_seed(0))) % 4
    counts = torch.bincount(draws, minlength=4)
    assert counts[0] == 0 and bool(((counts[1:] - 40_000 / 3).abs() < 600).all())


def test_nl_term_is_ce_plus_nl_and_exact_at_saturation():
    z, y = logits_batch()
    out = HeadOutput(logits=z, features=z)
    expected = cross_entropy(z, y) + negative_learning(z, y)
    assert create_term("nl")(out, y).item() == pytest.approx(expected.item(), rel=1e-12)
    # a confident wrong class: p_k rounds to 1 in float32, log(1 − p_k) stays exact and finite
    big = torch.tensor([[0.0, 40.0, -5.0]], requires_grad=True)
    loss = negative_learning(big, torch.tensor([0]))
    loss.backward()
    # −log(1 − p_1) = LSE(z) − log(e^0 + e^−5) ≈ 40 − log1p(e^−5); the −log(1 − p_2) ≈ e^−45 term vanishes
    assert loss.item() == pytest.approx(40.0 - math.log1p(math.exp(-5.0)), rel=1e-7)
    assert torch.isfinite(big.grad).all()


# ---------------------------------------------------------------------------------------------------------
# COT, CCE
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 3, 7])
def test_complement_entropy_matches_reference(k):
    z, y = logits_batch(6, k)
    ref = _complement_entropy_ref(z.numpy(), y.numpy())
    np.testing.assert_allclose(complement_entropy(z, y, reduction="none").numpy(), -ref / k, rtol=1e-10, atol=1e-13)
    assert complement_entropy(z, y).item() == pytest.approx(-ref.mean() / k, rel=1e-10, abs=1e-15)
    ce = F.cross_entropy(z, y, reduction="none").numpy()
    np.testing.assert_allclose(complement_cross_entropy(z, y, reduction="none").numpy(), ce - ref / k, rtol=1e-10)


def test_complement_entropy_bounds_and_official_cce():
    z, y = logits_batch(5, 4)
    c = -4 * complement_entropy(z, y, reduction="none")
    assert bool((c >= 0).all()) and bool((c <= math.log(3) + 1e-12).all())
    # equal non-target logits: the complement is uniform, C = log(K − 1)
    z_eq = torch.tensor([[5.0, 1.0, 1.0, 1.0]], dtype=torch.float64)
    assert complement_entropy(z_eq, torch.tensor([0])).item() == pytest.approx(-math.log(3) / 4, rel=1e-12)
    assert complement_cross_entropy(z, y).item() == pytest.approx(official_cce(z, y).item(), abs=1e-6)


def test_complement_gradcheck_and_large_logits():
    z, y = logits_batch(4, 5)
    zz = z.clone().requires_grad_(True)
    w = torch.tensor([1.0, 2.0, 0.5, 1.0, 1.5], dtype=torch.float64)
    for fn in (
        lambda x: negative_learning(x, y),
        lambda x: negative_learning(x, y, mode="random", generator=torch.Generator().manual_seed(0)),
        lambda x: complement_entropy(x, y, weight=w),
        lambda x: complement_cross_entropy(x, y),
    ):
        assert torch.autograd.gradcheck(fn, (zz,))
    z, y = logits_batch(6, 5, dtype=torch.float32, scale=1e4)
    for fn in (negative_learning, complement_entropy, complement_cross_entropy):
        zz = z.clone().requires_grad_(True)
        loss = fn(zz, y)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(zz.grad).all(), fn.__name__


@pytest.mark.parametrize("fn", [negative_learning, complement_entropy, complement_cross_entropy])
def test_bf16_autocast(fn):
    assert_bf16_autocast_finite(fn)


def test_terms_modules_ignore_index_and_inputs_untouched():
    z, y = logits_batch()
    zc = z.clone()
    out = HeadOutput(logits=z, features=z)
    assert create_term("cot")(out, y).item() == pytest.approx(complement_entropy(z, y).item())
    assert create_term("cce")(out, y).item() == pytest.approx(complement_cross_entropy(z, y).item())
    assert ComplementEntropyLoss()(z, y).item() == pytest.approx(complement_entropy(z, y).item())
    assert ComplementCrossEntropyLoss()(z, y).item() == pytest.approx(complement_cross_entropy(z, y).item())
    y_ign = y.clone()
    y_ign[2] = -100
    keep = y_ign != -100
    for fn in (negative_learning, complement_entropy, complement_cross_entropy):
        assert fn(z, y_ign).item() == pytest.approx(fn(z[keep], y[keep]).item(), rel=1e-12)
        assert fn(z, y_ign, reduction="none")[2].item() == 0.0
    assert torch.equal(z, zc)


def test_bad_input():
    z, y = logits_batch()
    with pytest.raises(ValueError, match="`mode` must be one of 'all', 'random'"):
        negative_learning(z, y, mode="some")
    with pytest.raises(ValueError, match="`mode` must be one of"):
        create_term("nl", mode="single")
    for fn in (negative_learning, complement_entropy, complement_cross_entropy):
        with pytest.raises(ValueError, match="`logits` must have at least 2 classes"):
            fn(torch.randn(3, 1), torch.zeros(3, dtype=torch.long))
        with pytest.raises(ValueError, match="`target` must hold class indices"):
            fn(z, y + 5)
        with pytest.raises(TypeError, match="`target` must be an integer"):
            fn(z, y.double())
        with pytest.raises(ValueError, match="`logits` contains 1 NaN"):
            fn(torch.tensor([[float("inf"), 0.0]]), torch.tensor([0]))
        with pytest.raises(ValueError, match="`logits` is empty"):
            fn(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))

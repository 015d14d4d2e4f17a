"""DICE, SCALE, ASH (b, p, s) and ReAct on hand-computed cases; percent conventions and warnings."""

import math
import warnings

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from neuralcollapse import ood
from neuralcollapse.ood import ash_features, scale_features
from neuralcollapse.ood._utils import keep_count

A = torch.tensor([[4.0, 0.0, 1.0, 3.0], [0.0, 2.0, 2.0, 0.0]])
W = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
B = torch.tensor([0.5, 0.0, -0.5])


def lse_rows(x):
    return torch.tensor([float(logsumexp(r)) for r in x.tolist()])


def test_keep_count_rounding():
    # k = D − round(D·p/100), NumPy's round-half-even as OpenOOD
    assert keep_count(512, 85) == 512 - 435
    assert keep_count(10, 65) == 4  # 6.5 rounds to 6
    assert keep_count(10, 75) == 2  # 7.5 rounds to 8
    assert keep_count(4, 50) == 2
    with pytest.raises(ValueError, match="`p`=99 keeps no activation of the 4 features"):
        keep_count(4, 99)


def test_scale_closed_form():
    # p = 50 on D = 4: k = 2; row 0: s1 = 8, top-2 = 4 + 3 = 7; row 1: s1 = 4, top-2 = 4
    expected = A * torch.tensor([[math.exp(8 / 7)], [math.exp(1.0)]])
    torch.testing.assert_close(scale_features(A, 50), expected)
    det = ood.create("scale", p=50).fit(weight=W, bias=B)
    torch.testing.assert_close(det.score(features=A), lse_rows(expected @ W.t() + B))


def test_scale_zero_row_kept():
    torch.testing.assert_close(scale_features(torch.zeros(1, 4), 50), torch.zeros(1, 4))


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        ("p", [[4.0, 0.0, 0.0, 3.0], [0.0, 2.0, 2.0, 0.0]]),
        ("b", [[4.0, 0.0, 0.0, 4.0], [0.0, 2.0, 2.0, 0.0]]),  # s1/k = 8/2, 4/2 at the top-2 positions
        ("s", [[4.0 * math.exp(8 / 7), 0.0, 0.0, 3.0 * math.exp(8 / 7)], [0.0, 2.0 * math.e, 2.0 * math.e, 0.0]]),
    ],
)
def test_ash_closed_form(variant, expected):
    expected = torch.tensor(expected)
    torch.testing.assert_close(ash_features(A, 50, variant), expected)
    det = ood.create("ash", p=50, variant=variant).fit(weight=W, bias=B)
    torch.testing.assert_close(det.score(features=A), lse_rows(expected @ W.t() + B))


def test_ash_default_is_b_at_90():
    det = ood.create("ash")
    assert (det.p, det.variant) == (90.0, "b")
    # D = 10, p = 90: k = 1, the single largest activation carries the whole sum
    a = torch.arange(10.0).unsqueeze(0)
    torch.testing.assert_close(ash_features(a, 90, "b"), torch.tensor([[0.0] * 9 + [45.0]]))


def test_dice_closed_form():
    # m = mean feature = (2, 1, 1.5, 1.5); V = m ⊙ W has entries {2, 1, 1.5, 1.5} and eight zeros
    f = A
    det = ood.create("dice", p=75).fit(features=f, weight=W, bias=B)
    v = (f.mean(0) * W).flatten().double().numpy()
    thr = np.percentile(v, 75)  # linear interpolation over all 12 entries
    assert det.threshold_ == pytest.approx(thr)
    assert thr == pytest.approx(1.125)  # sorted: 0 x8, 1, 1.5, 1.5, 2 -> position 0.75·11 = 8.25
    mask = torch.tensor(v > thr).view(3, 4).float()
    torch.testing.assert_close(det.masked_weight_, W * mask)
    test = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    torch.testing.assert_close(det.score(features=test), lse_rows(test @ (W * mask).t() + B))


def test_dice_percentile_interpolation():
    # contributions 1..4 (m = 1): the 50th percentile interpolates to 2.5, dropping 1 and 2
    w = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    det = ood.create("dice", p=50).fit(features=torch.ones(3, 2), weight=w)
    assert det.threshold_ == 2.5
    torch.testing.assert_close(det.masked_weight_, torch.tensor([[0.0, 0.0], [3.0, 4.0]]))


def test_react_closed_form():
    det = ood.create("react", p=90).fit(features=A, weight=W, bias=B)
    c = float(np.percentile(A.numpy().ravel(), 90))
    assert det.threshold_ == pytest.approx(c)
    assert c == pytest.approx(3.3)  # sorted 0, 0, 0, 1, 2, 2, 3, 4: position 0.9·7 = 6.3 -> 3 + 0.3·(4 − 3)
    test = torch.tensor([[5.0, 0.5, 3.3, 10.0]])
    clipped = torch.tensor([[c, 0.5, 3.3, c]])
    torch.testing.assert_close(det.score(features=test), lse_rows(clipped @ W.t() + B))


@pytest.mark.parametrize("name", ["dice", "scale", "ash", "react"])
def test_percent_validation_and_fraction_warning(name):
    with pytest.warns(UserWarning, match="`p`=0.9 is a percentile in percent"):
        ood.create(name, p=0.9)
    with pytest.raises(ValueError, match=r"`p` must be a percentile in \[0, 100"):
        ood.create(name, p=101)
    with pytest.raises(ValueError, match=r"`p` must be a percentile"):
        ood.create(name, p=-1)
    with pytest.raises(TypeError, match="`p` must be a real number"):
        ood.create(name, p="90")


@pytest.mark.parametrize("name", ["scale", "ash"])
def test_p_keeping_nothing_raises(name):
    with pytest.raises(ValueError, match=r"`p` must be a percentile in \[0, 100\)"):
        ood.create(name, p=100)
    with pytest.raises(ValueError, match="keeps no activation of the 4 features"):
        ood.create(name, p=95).fit(weight=W)


@pytest.mark.parametrize("name", ["dice", "scale", "ash", "react"])
def test_negative_features_warn(name):
    neg = A - 1.0
    det = ood.create(name, p=50)
    with pytest.warns(UserWarning, match=f"'{name}' assumes non-negative \\(post-ReLU\\) features"):
        det.fit(features=neg, weight=W, bias=B)
        det.score(features=neg)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ood.create(name, p=50).fit(features=A, weight=W, bias=B).score(features=A)


def test_ash_variant_validated():
    with pytest.raises(ValueError, match="`variant` must be one of 'b', 'p', 's'"):
        ood.create("ash", variant="x")
    with pytest.raises(ValueError, match="`variant` must be one of"):
        ash_features(A, 50, "B")

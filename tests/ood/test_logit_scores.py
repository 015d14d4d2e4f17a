"""MSP, energy and max-logit: closed forms, temperature, numerics."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from neuralcollapse import ood
from neuralcollapse.ood import energy_score, maxlogit_score, msp_score

Z = torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, -1.0], [1.0, 5.0, 3.0]])


def test_msp_closed_form():
    expected = torch.tensor([1 / 3, math.exp(2) / (math.exp(2) + 1 + math.exp(-1)), math.exp(5) / (math.e + math.exp(5)
                                                                                                     + math.exp(3))])
    torch.testing.assert_close(msp_score(Z), expected)
    torch.testing.assert_close(ood.create("msp").score(logits=Z), expected)


@pytest.mark.parametrize("t", [1.0, 0.5, 10.0])
def test_energy_closed_form_with_temperature(t):
    expected = torch.tensor([t * math.log(sum(math.exp(v / t) for v in row)) for row in Z.tolist()])
    torch.testing.assert_close(energy_score(Z, temperature=t), expected)
    torch.testing.assert_close(ood.create("ebo", temperature=t).score(logits=Z), expected)


def test_energy_large_temperature_limit():
    # T·LSE(z/T) → mean(z) + T log K as T → ∞
    t = 1e6
    torch.testing.assert_close(energy_score(Z.double(), t), Z.double().mean(1) + t * math.log(3))


def test_maxlogit_closed_form():
    torch.testing.assert_close(maxlogit_score(Z), torch.tensor([0.0, 2.0, 5.0]))
    torch.testing.assert_close(ood.create("maxlogit").score(logits=Z), torch.tensor([0.0, 2.0, 5.0]))


@pytest.mark.parametrize("fn", [msp_score, energy_score, maxlogit_score])
def test_large_logits_finite(fn):
    z = torch.tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]])
    s = fn(z)
    assert bool(torch.isfinite(s).all())
    if fn is msp_score:
        torch.testing.assert_close(s, torch.tensor([1.0, 1 / 3]))
    if fn is energy_score:
        torch.testing.assert_close(s, torch.tensor([1e4, -1e4 + math.log(3)]))


@pytest.mark.parametrize("fn", [msp_score, energy_score, maxlogit_score])
def test_bf16_and_autocast_finite(fn):
    z = 50 * torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
    s = fn(z.bfloat16())
    assert s.dtype == torch.float32 and bool(torch.isfinite(s).all())
    torch.testing.assert_close(s, fn(z.bfloat16().float()))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert bool(torch.isfinite(fn(z)).all())


@settings(max_examples=30, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(2, 6)), elements=st.floats(-30, 30)))
def test_score_relations(z):
    z = torch.from_numpy(z)
    msp, energy, maxlogit = msp_score(z), energy_score(z), maxlogit_score(z)
    k = z.shape[1]
    # max z <= LSE(z) <= max z + log K and MSP = exp(max z − LSE(z)) ∈ [1/K, 1]
    assert bool((maxlogit <= energy + 1e-12).all()) and bool((energy <= maxlogit + math.log(k) + 1e-12).all())
    torch.testing.assert_close(msp, torch.exp(maxlogit - energy))
    assert bool((msp >= 1 / k - 1e-12).all()) and bool((msp <= 1 + 1e-12).all())
    # shift invariance of MSP, shift equivariance of energy and max logit
    torch.testing.assert_close(msp_score(z + 7.0), msp)
    torch.testing.assert_close(energy_score(z + 7.0), energy + 7.0)


def test_function_errors_named():
    with pytest.raises(ValueError, match="`temperature` must be > 0"):
        energy_score(Z, temperature=0.0)
    with pytest.raises(ValueError, match="`temperature` must be > 0"):
        ood.create("energy", temperature=-1.0)
    with pytest.raises(ValueError, match="`logits` must be 2-D"):
        msp_score(torch.zeros(3))
    with pytest.raises(ValueError, match="`logits` contains 1 NaN"):
        maxlogit_score(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match="`logits` is empty"):
        energy_score(torch.zeros(0, 3))
    with pytest.raises(TypeError, match="`logits` must be a torch.Tensor or numpy array"):
        msp_score("logits")


def test_inputs_unchanged_and_detach_free():
    z = Z.clone().requires_grad_(True)
    energy_score(z).sum().backward()
    # the gradient of LSE is the softmax: the score stays differentiable for users who want it
    torch.testing.assert_close(z.grad, torch.softmax(Z, 1))
    torch.testing.assert_close(z.detach(), Z)

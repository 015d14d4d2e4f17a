"""LPC penalty: scale convention, reductions, gradients, numerics, errors, term (latent with fallback)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neuralcollapse.losses import LPCPenalty, create_term, lpc_penalty
from neuralcollapse.output import HeadOutput


def test_hand_computed_value():
    h = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    assert lpc_penalty(h).item() == 3.5  # (1 + 4 + 9 + 0)/(N·d = 4)
    assert lpc_penalty(h, reduction="none").tolist() == [2.5, 4.5]  # ‖h_i‖²/d
    assert lpc_penalty(h, reduction="sum").item() == 7.0


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 10), d=st.integers(1, 8), seed=st.integers(0, 9999))
def test_matches_loop_and_reference_mse(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    h = 3 * torch.randn(n, d, generator=g, dtype=torch.float64)
    loop = sum(float(h[i, j]) ** 2 for i in range(n) for j in range(d)) / (n * d)
    assert lpc_penalty(h).item() == pytest.approx(loop, rel=1e-12)
    # The reference's F.mse_loss(h, 0) (code convention).
    assert lpc_penalty(h).item() == pytest.approx(torch.nn.functional.mse_loss(h, torch.zeros_like(h)).item())
    # Paper convention: γ_paper·mean_i‖h_i‖² = γ_code·P(h) with γ_paper = γ_code/d.
    gamma_code = 0.7
    paper = (gamma_code / d) * float((h.norm(dim=1) ** 2).mean())
    assert gamma_code * lpc_penalty(h).item() == pytest.approx(paper, rel=1e-12)


def test_gradcheck_and_gradient():
    h = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lpc_penalty, (h,))
    lpc_penalty(h).backward()
    torch.testing.assert_close(h.grad, 2 * h.detach() / h.numel())


def test_half_precision_and_autocast_finite():
    h = torch.full((4, 8), 300.0)  # h² = 9e4 overflows float16 (max 65504) unless upcast
    out = lpc_penalty(h.half())
    assert out.dtype == torch.float32 and out.item() == 9e4
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hb = (1e4 * torch.randn(16, 8)).bfloat16().requires_grad_(True)
        val = lpc_penalty(hb)
    assert val.dtype == torch.float32 and torch.isfinite(val)
    val.backward()
    assert torch.isfinite(hb.grad.float()).all()
    assert val.item() == pytest.approx(float(hb.detach().float().square().mean()), rel=1e-6)


def test_input_unchanged():
    h = torch.randn(6, 4, requires_grad=True)
    before = h.detach().clone()
    lpc_penalty(h).backward()
    assert torch.equal(h.detach(), before)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"`latent` must be 2-D"):
        lpc_penalty(torch.randn(4))
    with pytest.raises(ValueError, match=r"`latent` must be 2-D"):
        lpc_penalty(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match=r"`latent` is empty"):
        lpc_penalty(torch.randn(0, 4))
    with pytest.raises(ValueError, match=r"`latent` contains 1 NaN"):
        lpc_penalty(torch.tensor([[1.0, math.nan]]))
    with pytest.raises(TypeError, match=r"`latent` must be a floating-point tensor"):
        lpc_penalty(torch.ones(2, 2, dtype=torch.long))
    with pytest.raises(TypeError, match=r"`latent` must be a torch.Tensor"):
        lpc_penalty(np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"`reduction`"):
        lpc_penalty(torch.ones(2, 2), reduction="avg")
    with pytest.raises(ValueError, match=r"`reduction`"):
        LPCPenalty(reduction="avg")


def test_term_reads_latent_then_features():
    latent = torch.randn(6, 4)
    features = torch.randn(6, 32)
    target = torch.zeros(6, dtype=torch.long)
    term = create_term("lpc")
    with_latent = HeadOutput(logits=torch.zeros(6, 3), features=features, latent=latent)
    assert torch.equal(term(with_latent, target), lpc_penalty(latent))
    # LPC-NoPen: no bottleneck, the penalty goes on the backbone output.
    no_latent = HeadOutput(logits=torch.zeros(6, 3), features=features)
    assert torch.equal(term(no_latent, target), lpc_penalty(features))
    assert torch.equal(LPCPenalty()(latent), lpc_penalty(latent))

"""Issue 12, OOD detectors: DICE refuses to prune everything, ViM detects a numerically zero residual space,
ODIN takes HeadOutput models and half-precision inputs."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from neuralcollapse import ood
from neuralcollapse.output import HeadOutput


# --------------------------------------------------------------------------- DICE
def test_dice_refuses_to_prune_every_weight():
    g = torch.Generator().manual_seed(0)
    f, w = torch.rand(20, 4, generator=g), torch.randn(3, 4, generator=g)
    # today p=100 masks every weight: the same score (log K) for every input
    with pytest.raises(ValueError, match=r"`p` must be a percentile in \[0, 100\); got 100"):
        ood.DICE(p=100)
    with pytest.raises(ValueError, match="DICE pruned every weight"):
        ood.DICE(p=50).fit(features=torch.zeros(5, 4), weight=w)  # zero mean feature: every contribution is 0
    det = ood.DICE(p=99.9).fit(features=f, weight=w)
    assert int((det.masked_weight_ != 0).sum()) == 1  # the largest contribution survives
    scores = det.score(features=torch.rand(6, 4, generator=g))
    assert float(scores.max() - scores.min()) > 0


# --------------------------------------------------------------------------- ViM
def _rank_deficient(dtype, rank=6, d=16, n=300, seed=1):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, rank, generator=g, dtype=torch.float64)
    b = torch.randn(rank, d, generator=g, dtype=torch.float64)
    return (a @ b).to(dtype), torch.randn(4, d, generator=g, dtype=torch.float64).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_vim_detects_a_numerically_zero_residual_space(dtype):
    # rank 6 in R^16 with dim = 8: the 8 residual directions hold only rounding noise (today alpha ≈ 3e7)
    f, w = _rank_deficient(dtype)
    with pytest.raises(ValueError, match=r"numerical rank 6 <= dim=8.*alpha is undefined"):
        ood.ViM(dim=8).fit(features=f, weight=w, bias=torch.zeros(4, dtype=dtype))
    # a bias moves the origin off the feature subspace: f − o has rank 7, still <= 8
    with pytest.raises(ValueError, match=r"numerical rank 7 <= dim=8"):
        ood.ViM(dim=8).fit(features=f, weight=w, bias=torch.ones(4, dtype=dtype))
    # dim below the rank: two real residual directions, alpha of the order of the data (max logit / residual)
    det = ood.ViM(dim=4).fit(features=f, weight=w, bias=torch.zeros(4, dtype=dtype))
    assert 1e-2 < det.alpha_ < 1e2
    assert torch.isfinite(det.score(features=f[:5])).all()


def test_vim_full_rank_features_are_unaffected():
    g = torch.Generator().manual_seed(2)
    f = torch.randn(300, 16, generator=g) * torch.logspace(0, -3, 16)  # small but real directions
    det = ood.ViM(dim=8).fit(features=f, weight=torch.randn(4, 16, generator=g), bias=torch.zeros(4))
    assert np.isfinite(det.alpha_) and det.alpha_ > 0


# --------------------------------------------------------------------------- ODIN
class _HeadModel(torch.nn.Module):
    def __init__(self, linear):
        super().__init__()
        self.linear = linear

    def forward(self, x):
        return HeadOutput(logits=self.linear(x), features=x)


def _linear(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return torch.nn.Linear(6, 4).to(dtype)


def test_odin_accepts_a_model_returning_head_output():
    linear = _linear()
    x = torch.randn(9, 6)
    expected = ood.ODIN(temperature=10.0, noise=0.01, batch_size=4).fit(model=linear).score(inputs=x)
    got = ood.ODIN(temperature=10.0, noise=0.01, batch_size=4).fit(model=_HeadModel(linear)).score(inputs=x)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    dict_model = torch.nn.Sequential()
    dict_model.forward = lambda inputs: {"logits": linear(inputs)}
    got = ood.ODIN(temperature=10.0, noise=0.01).fit(model=dict_model).score(inputs=x)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_odin_half_inputs_to_a_float32_model_equal_the_float32_result(dtype):
    # today: "mat1 and mat2 must have the same dtype" — the step is computed in float32 on the upcast inputs
    linear = _linear(1)
    x = torch.randn(8, 6).to(dtype)
    det = ood.ODIN(temperature=1.0, noise=0.01, std=0.5).fit(model=linear)
    expected = det.score(inputs=x.float())
    got = det.score(inputs=x)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_odin_half_model_and_inputs_match_float32_within_tolerance(dtype):
    linear = _linear(2)
    low = copy.deepcopy(linear).to(dtype)
    x = torch.rand(16, 6).to(dtype)  # in [0, 1): the 0.05 step is resolvable in both dtypes
    expected = ood.ODIN(temperature=1.0, noise=0.05).fit(model=_linear(2).to(dtype).float()).score(inputs=x.float())
    got = ood.ODIN(temperature=1.0, noise=0.05).fit(model=low).score(inputs=x)
    assert got.dtype == torch.float32
    tol = 2e-3 if dtype == torch.float16 else 2e-2
    torch.testing.assert_close(got, expected, rtol=0, atol=tol)
    # the step was taken: the perturbed confidence beats the unperturbed one on every input
    plain = ood.ODIN(temperature=1.0, noise=0.0).fit(model=low).score(inputs=x)
    assert bool((got > plain).all())

"""Target / non-target logit distributions (OCCE paper A.3; docs/methods.md §2.9)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuralcollapse.metrics import logit_distributions, logit_histogram


def test_hand_case():
    z = torch.tensor([[3.0, 1.0, 1.0], [0.0, 2.0, 4.0]])
    d = logit_distributions(z, torch.tensor([0, 1]))
    assert d.target.tolist() == [3.0, 2.0]
    assert d.non_target.tolist() == [1.0, 1.0, 0.0, 4.0]
    assert d.complementary_std.tolist() == [0.0, 2.0]
    assert d.complementary_std_mean == 1.0
    unbiased = logit_distributions(z, torch.tensor([0, 1]), correction=1)
    assert unbiased.complementary_std[1].item() == pytest.approx(2.0 * np.sqrt(2.0))


@pytest.mark.parametrize("correction", [0, 1])
def test_matches_loop(rng, correction):
    z = rng.normal(size=(40, 6)) * 3
    y = rng.integers(0, 6, size=40)
    d = logit_distributions(torch.from_numpy(z), torch.from_numpy(y), correction=correction)
    others = [np.delete(z[i], y[i]) for i in range(40)]
    np.testing.assert_allclose(d.target.numpy(), z[np.arange(40), y])
    np.testing.assert_allclose(d.non_target.numpy(), np.concatenate(others))
    stds = np.array([o.std(ddof=correction) for o in others])
    np.testing.assert_allclose(d.complementary_std.numpy(), stds, rtol=1e-12)
    assert d.complementary_std_mean == pytest.approx(stds.mean(), rel=1e-12)


def test_uniform_anticlass_logits_have_zero_spread():
    # uniform OCCE drives every non-target logit of a sample to the same value
    z = torch.full((5, 10), -2.0)
    y = torch.arange(5)
    z[torch.arange(5), y] = 7.0
    assert logit_distributions(z, y).complementary_std_mean == 0.0
    assert logit_distributions(z[:, :2], torch.tensor([0, 1, 0, 1, 0])).complementary_std_mean == 0.0  # K = 2


def test_large_and_low_precision_logits(rng):
    z = torch.from_numpy(rng.normal(size=(16, 5)) * 1e4)
    y = torch.from_numpy(rng.integers(0, 5, size=16))
    assert np.isfinite(logit_distributions(z, y).complementary_std_mean)
    low = logit_distributions(z.bfloat16(), y)
    assert low.target.dtype == torch.bfloat16 and np.isfinite(low.complementary_std_mean)


def test_inputs_unchanged(rng):
    z = torch.from_numpy(rng.normal(size=(6, 4)))
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    z0, y0 = z.clone(), y.clone()
    logit_distributions(z, y)
    assert torch.equal(z, z0) and torch.equal(y, y0)


def test_histogram_matches_numpy(rng):
    v = rng.normal(size=500)
    edges, counts = logit_histogram(torch.from_numpy(v), bins=13)
    ref_counts, ref_edges = np.histogram(v, bins=13)
    np.testing.assert_allclose(edges.numpy(), ref_edges, rtol=1e-12)
    assert counts.tolist() == ref_counts.tolist() and counts.dtype == torch.int64
    edges, counts = logit_histogram(torch.from_numpy(v), bins=4, range=(-1.0, 1.0))
    ref_counts, _ = np.histogram(v, bins=4, range=(-1.0, 1.0))
    assert counts.tolist() == ref_counts.tolist()
    edges, counts = logit_histogram(torch.tensor([0.0, 1.0, 1.0]), bins=2, range=(0.0, 1.0))
    assert counts.tolist() == [1, 2]  # the last bin includes its right edge
    edges, counts = logit_histogram(torch.tensor([3.0, 3.0]), bins=2)
    assert edges.tolist() == [2.5, 3.0, 3.5] and counts.tolist() == [0, 2]


def test_bad_input():
    z = torch.randn(4, 3)
    y = torch.tensor([0, 1, 2, 0])
    with pytest.raises(ValueError, match="at least 2 classes"):
        logit_distributions(z[:, :1], torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="`target` must have shape"):
        logit_distributions(z, y[:3])
    with pytest.raises(ValueError, match=r"`target` must hold class indices in \[0, 3\)"):
        logit_distributions(z, y + 1)
    nan = z.clone()
    nan[2, 2] = float("nan")
    with pytest.raises(ValueError, match="`logits` contains 1 NaN"):
        logit_distributions(nan, y)
    with pytest.raises(ValueError, match="`logits` must be 2-D"):
        logit_distributions(z[None], y)
    with pytest.raises(ValueError, match="`correction` must be 0"):
        logit_distributions(z, y, correction=2)
    with pytest.raises(ValueError, match="needs K >= 3"):
        logit_distributions(z[:, :2], torch.tensor([0, 1, 0, 1]), correction=1)
    with pytest.raises(TypeError, match="`target` must be an integer tensor"):
        logit_distributions(z, y.float())
    with pytest.raises(ValueError, match="`bins` must be a positive int"):
        logit_histogram(z, bins=0)
    with pytest.raises(ValueError, match="`range` must be"):
        logit_histogram(z, range=(1.0, 1.0))
    with pytest.raises(ValueError, match="`values` is empty"):
        logit_histogram(torch.empty(0))

"""Simplex ETF (docs/methods.md §8) and the fixed-ETF head (ETF + DR, Yang et al. NeurIPS 2022)."""

import pytest
import torch

from neuralcollapse.heads import FixedETFHead, simplex_etf


@pytest.mark.parametrize(("k", "d"), [(2, 1), (3, 2), (10, 9), (10, 10), (10, 25), (100, 99)])
@pytest.mark.parametrize("seed", [0, 7])
def test_simplex_etf_geometry(k, d, seed):
    etf = simplex_etf(k, d, seed, dtype=torch.float64)
    assert etf.shape == (k, d) and etf.dtype == torch.float64
    gram = etf @ etf.T
    expected = torch.full((k, k), -1.0 / (k - 1), dtype=torch.float64).fill_diagonal_(1.0)
    torch.testing.assert_close(gram, expected, rtol=0, atol=1e-12)
    # the rows sum to zero (centred) and span a (K-1)-dim subspace
    torch.testing.assert_close(etf.sum(0), torch.zeros(d, dtype=torch.float64), rtol=0, atol=1e-12)
    assert torch.linalg.matrix_rank(etf) == k - 1


def test_simplex_etf_float32_default_seeds_and_determinism():
    etf = simplex_etf(5, 8)
    assert etf.dtype == torch.float32 and etf.device.type == "cpu"
    torch.testing.assert_close(etf.norm(dim=1), torch.ones(5), rtol=0, atol=1e-6)
    assert torch.equal(simplex_etf(5, 8, seed=3), simplex_etf(5, 8, seed=3))
    assert not torch.allclose(simplex_etf(5, 8, seed=3), simplex_etf(5, 8, seed=4))
    state = torch.random.get_rng_state()
    simplex_etf(5, 8, seed=1)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched


def test_simplex_etf_errors():
    with pytest.raises(ValueError, match=r"`dim` must be >= num_classes - 1 = 9 .*optimize_prototypes"):
        simplex_etf(10, 8)
    with pytest.raises(ValueError, match=r"`num_classes` must be >= 2; got 1"):
        simplex_etf(1, 4)
    with pytest.raises(ValueError, match=r"`dim` must be >= 1"):
        simplex_etf(2, 0)
    with pytest.raises(TypeError, match=r"`seed` must be an integer"):
        simplex_etf(3, 2, seed=0.5)


def test_fixed_etf_head_plain_and_buffer():
    head = FixedETFHead(9, 10, seed=2).double()
    assert list(head.parameters()) == []  # nothing to learn
    assert "weight" in head.state_dict() and head.bias is None
    torch.testing.assert_close(head.weight, simplex_etf(10, 9, 2, dtype=torch.float64))
    h = torch.randn(4, 9, dtype=torch.float64)
    out = head(h)
    torch.testing.assert_close(out.logits, h @ head.weight.T, rtol=1e-12, atol=1e-12)
    assert out.features is h and out.prototypes is head.weight
    torch.testing.assert_close(out.cosines, torch.nn.functional.normalize(h, dim=1) @ head.weight.T)


def test_fixed_etf_head_etf_dr_features_and_projection():
    head = FixedETFHead(16, 5, dim=4, batch_norm=True, normalize=True, scale=2.0)
    assert head.projection is not None and head.projection.in_features == 16 and head.weight.shape == (5, 4)
    h = torch.randn(32, 16, generator=torch.Generator().manual_seed(0))
    out = head(h)
    f = torch.nn.functional.normalize(head.bn(head.projection(h)), dim=1)
    torch.testing.assert_close(out.features, f)
    torch.testing.assert_close(out.features.norm(dim=1), torch.ones(32))
    torch.testing.assert_close(out.logits, 2.0 * out.cosines)
    torch.testing.assert_close(out.cosines, f @ head.weight.T)


def test_fixed_etf_head_errors():
    with pytest.raises(ValueError, match=r"`in_features` must be >= num_classes - 1 = 9 .*'prototypes' head"):
        FixedETFHead(8, 10)
    with pytest.raises(ValueError, match=r"`dim` must be >= num_classes - 1 = 9"):
        FixedETFHead(64, 10, dim=5)
    with pytest.raises(ValueError, match=r"`scale` must be > 0"):
        FixedETFHead(9, 10, scale=-1.0)

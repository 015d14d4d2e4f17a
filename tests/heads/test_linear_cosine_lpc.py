"""Linear, cosine (NormFace) and LPC bottleneck heads against direct computations."""

import numpy as np
import pytest
import torch
from torch import nn

from neuralcollapse.heads import CosineHead, LinearHead, LPCBottleneckHead, lpc_latent_dim
from neuralcollapse.heads.lpc import LPC_WIDTHS


def _h(n=5, d=6, seed=0, dtype=torch.float64):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ----------------------------------------------------------------------------------------------- linear
def test_linear_head_is_affine_and_matches_loop():
    head = LinearHead(6, 3).double()
    h = _h()
    out = head(h)
    w, b = head.weight.detach().numpy(), head.bias.detach().numpy()
    expected = np.array([[w[c] @ hi + b[c] for c in range(3)] for hi in h.numpy()])
    np.testing.assert_allclose(out.logits.detach().numpy(), expected, rtol=1e-12, atol=1e-12)
    assert out.features is h and out.prototypes is head.weight
    assert out.anti_logits is None and out.latent is None and out.cosines is None


def test_linear_head_without_bias_and_nn_linear_initialisation():
    head = LinearHead(6, 3, bias=False)
    assert head.bias is None and "bias" not in dict(head.named_parameters())
    bound = 1 / np.sqrt(6)  # Kaiming-uniform with a = sqrt(5) gives U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert float(head.weight.detach().abs().max()) <= bound
    torch.testing.assert_close(head(_h(dtype=torch.float32)).logits, _h(dtype=torch.float32) @ head.weight.T)


# ----------------------------------------------------------------------------------------------- cosine
def test_cosine_head_cosines_temperature_and_unit_vectors():
    head = CosineHead(6, 4).double()
    h = _h()
    out = head(h)
    w = head.weight.detach().numpy()
    expected = np.array([[hi @ w[c] / np.linalg.norm(hi) / np.linalg.norm(w[c]) for c in range(4)]
                         for hi in h.numpy()])
    np.testing.assert_allclose(out.cosines.detach().numpy(), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out.logits.detach().numpy(), expected / 0.2, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.features.norm(dim=1), torch.ones(5, dtype=torch.float64))
    torch.testing.assert_close(out.prototypes.norm(dim=1), torch.ones(4, dtype=torch.float64))
    assert head.bias is None and head.temperature == pytest.approx(0.2)


def test_cosine_head_invariant_to_feature_and_weight_scale():
    head = CosineHead(6, 4).double()
    h = _h()
    reference = head(h).logits.detach()
    torch.testing.assert_close(head(3.7 * h).logits.detach(), reference)
    with torch.no_grad():
        head.weight.mul_(torch.tensor([[0.1], [2.0], [5.0], [1.0]], dtype=torch.float64))
    torch.testing.assert_close(head(h).logits.detach(), reference)


def test_cosine_head_scale_option_and_zero_feature():
    head = CosineHead(6, 4, scale=30.0)
    out = head(torch.zeros(2, 6))
    assert torch.equal(out.cosines, torch.zeros(2, 4)) and torch.equal(out.logits, torch.zeros(2, 4))
    out = head(_h(dtype=torch.float32))
    torch.testing.assert_close(out.logits, 30.0 * out.cosines)
    assert CosineHead(6, 4, temperature=0.05).logit_scale == pytest.approx(20.0)


def test_cosine_head_gradcheck_float64():
    head = CosineHead(4, 3).double()
    h = _h(3, 4).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, w: (nn.functional.normalize(x, dim=1)
                                                  @ nn.functional.normalize(w, dim=1).T) / 0.2,
                                    (h, head.weight.detach().clone().requires_grad_(True)))
    assert torch.autograd.gradcheck(lambda x: head(x).logits, (h,))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"temperature": 0.0}, ValueError, r"`temperature` must be > 0; got 0.0"),
        ({"temperature": -0.1}, ValueError, r"`temperature` must be > 0"),
        ({"temperature": float("nan")}, ValueError, r"`temperature` must be finite"),
        ({"scale": 0}, ValueError, r"`scale` must be > 0"),
        ({"temperature": 0.1, "scale": 10.0}, ValueError, r"give either `temperature`"),
        ({"temperature": "0.1"}, TypeError, r"`temperature` must be a real number"),
    ],
)
def test_cosine_head_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        CosineHead(6, 4, **kwargs)


# ----------------------------------------------------------------------------------------------- LPC
def test_lpc_head_linear_bottleneck_then_classifier():
    head = LPCBottleneckHead(6, 3, latent_dim=2).double()
    h = _h()
    out = head(h)
    a, a0 = head.bottleneck.weight.detach(), head.bottleneck.bias.detach()
    latent = h @ a.T + a0
    torch.testing.assert_close(out.latent.detach(), latent, rtol=1e-12, atol=1e-12)
    assert out.features is out.latent
    torch.testing.assert_close(out.logits.detach(), latent @ head.weight.detach().T, rtol=1e-12, atol=1e-12)
    assert head.bias is None  # the paper zeroes the classifier bias
    # affine, no activation / BN: h(x) + h(y) - h(0) = h(x + y) (a negative part would break this under ReLU)
    zero = torch.zeros(1, 6, dtype=torch.float64)
    torch.testing.assert_close(head(h).latent + head(-h).latent, 2 * head(zero).latent.expand(5, 2))
    assert [type(m) for m in head.children()] == [nn.Linear]
    assert head.weight.shape == (3, 2)


def test_lpc_head_options_and_widths():
    head = LPCBottleneckHead(6, 3, bias=True, latent_bias=False)
    assert head.bias.shape == (3,) and head.bottleneck.bias is None
    assert head.classifier_parameters() == [head.weight, head.bias]
    assert LPCBottleneckHead(6, 3).latent_dim == 64
    assert {(ds, w): lpc_latent_dim(ds, w) for ds in LPC_WIDTHS for w in LPC_WIDTHS[ds]} == {
        ("cifar10", "narrow"): 16, ("cifar10", "intermediate"): 64, ("cifar10", "wide"): 128,
        ("cifar100", "narrow"): 32, ("cifar100", "intermediate"): 128, ("cifar100", "wide"): 256,
    }
    with pytest.raises(ValueError, match=r"`dataset` must be one of 'cifar10', 'cifar100'"):
        lpc_latent_dim("svhn")
    with pytest.raises(ValueError, match=r"`width` must be one of"):
        lpc_latent_dim("cifar10", "huge")
    with pytest.raises(ValueError, match=r"`latent_dim` must be >= 1; got 0"):
        LPCBottleneckHead(6, 3, latent_dim=0)

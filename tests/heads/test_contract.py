"""Contract tests over every registered head: construction through the registry, output shapes, predictions,
weight/bias exposure, state_dict round trip, bad input, inputs unchanged, autocast and large magnitudes."""

import pytest
import torch

from neuralcollapse import heads
from neuralcollapse.output import HeadOutput

D, K, N = 8, 4, 12


def _features(seed: int = 0, n: int = N, d: int = D) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def _build(name: str, **kw) -> torch.nn.Module:
    head = heads.create(name, in_features=D, num_classes=K, **kw)
    if name == "class_mean":
        head.fit(_features(1, n=4 * K), torch.arange(4 * K) % K)
    return head


def test_registry_names_and_aliases():
    assert heads.names() == ["class_mean", "cosine", "dual", "etf", "linear", "lpc", "prototypes"]
    assert isinstance(heads.create("normface", in_features=D, num_classes=K), heads.CosineHead)
    assert isinstance(heads.create("normalized", in_features=D, num_classes=K), heads.CosineHead)
    assert isinstance(heads.create("DL2PA", in_features=D, num_classes=K), heads.HypersphericalPrototypeHead)
    assert isinstance(heads.create("hyperspherical", in_features=D, num_classes=K), heads.HypersphericalPrototypeHead)
    with pytest.raises(ValueError, match="valid names: class_mean, cosine"):
        heads.create("cosin_head", in_features=D, num_classes=K)


@pytest.mark.parametrize("name", heads.names())
def test_output_contract(name):
    head = _build(name).eval()
    h = _features()
    h_before = h.clone()
    out = head(h)
    assert isinstance(out, HeadOutput)
    assert head.in_features == D and head.num_classes == K
    assert out.logits.shape == (N, K)
    assert out.features.shape[0] == N
    weight = head.weight
    assert weight.shape == (K, out.features.shape[1])
    assert head.bias is None or head.bias.shape == (K,)
    if out.prototypes is not None:
        assert out.prototypes.shape == (K, out.features.shape[1])
    if out.cosines is not None:
        assert out.cosines.shape == (N, K)
        assert float(out.cosines.detach().abs().max()) <= 1 + 1e-6
    torch.testing.assert_close(head.predict(h), out.logits.argmax(dim=1), rtol=0, atol=0)
    assert torch.equal(h, h_before)


@pytest.mark.parametrize("name", heads.names())
def test_logits_recomputed_from_exposed_matrices(name):
    """The logits follow from the exposed class matrix and the returned features (one rule per head kind)."""
    head = _build(name).double().eval()
    out = head(_features().double())
    if out.cosines is None:  # linear read-out of the features
        expected = out.features @ head.weight.T + (0 if head.bias is None else head.bias)
        torch.testing.assert_close(out.logits, expected, rtol=1e-12, atol=1e-12)
    else:  # cosine read-out against the unit prototypes in class order
        unit = torch.nn.functional.normalize(out.features, dim=1)
        torch.testing.assert_close(out.cosines, unit @ out.prototypes.T, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", heads.names())
def test_state_dict_round_trip(name):
    kwargs = {"seed": 1} if name in ("etf", "prototypes") else {}
    source = _build(name, **kwargs).eval()
    torch.manual_seed(123)
    target = heads.create(name, in_features=D, num_classes=K).eval()
    target.load_state_dict(source.state_dict())
    h = _features(2)
    torch.testing.assert_close(target(h).logits, source(h).logits, rtol=0, atol=0)


@pytest.mark.parametrize("name", heads.names())
def test_bad_features_raise_naming_h(name):
    head = _build(name)
    with pytest.raises(ValueError, match=r"`h` must have 8 columns"):
        head(torch.randn(3, D + 1))
    with pytest.raises(ValueError, match=r"`h` must be 2-D"):
        head(torch.randn(D))
    bad = _features()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"`h` contains 1 NaN"):
        head(bad)
    with pytest.raises(TypeError, match=r"`h` must be a floating-point tensor"):
        head(torch.ones(3, D, dtype=torch.int64))


@pytest.mark.parametrize("name", heads.names())
def test_num_classes_below_two_raises(name):
    with pytest.raises(ValueError, match=r"`num_classes` must be >= 2; got 1"):
        heads.create(name, in_features=D, num_classes=1)
    with pytest.raises(ValueError, match=r"`in_features` must be >= 1; got 0"):
        heads.create(name, in_features=0, num_classes=K)
    with pytest.raises(TypeError, match=r"`num_classes` must be an integer"):
        heads.create(name, in_features=D, num_classes=4.0)


@pytest.mark.parametrize("name", heads.names())
def test_bf16_autocast_and_large_magnitude_finite(name):
    head = _build(name).eval()
    h = _features()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(h)
    assert torch.isfinite(out.logits.float()).all()
    out = head(h * 1e4)
    assert torch.isfinite(out.logits).all()
    for value in out.extras.values():
        assert torch.isfinite(value).all()


@pytest.mark.parametrize("name", ["linear", "dual", "cosine", "lpc", "prototypes"])
def test_gradients_reach_learnable_parameters(name):
    kwargs = {"dim": 3} if name == "prototypes" else {}  # dim != in_features adds the learnable projection
    head = _build(name, **kwargs)
    h = _features().requires_grad_(True)
    out = head(h)
    loss = out.logits.square().sum() + (0 if out.anti_logits is None else out.anti_logits.square().sum())
    loss.backward()
    params = [p for p in head.parameters() if p.requires_grad]
    assert params
    assert all(p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0 for p in params)
    assert h.grad is not None and torch.isfinite(h.grad).all()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", heads.names())
def test_cuda_outputs_follow_the_input_device(name):
    head = _build(name).cuda().eval()
    out = head(_features().cuda())
    assert out.logits.is_cuda and out.features.is_cuda and head.weight.is_cuda
    if name == "prototypes":
        head.update_representatives(out.features, torch.arange(N, device="cuda") % K)
        assert head.reassign() >= 0 and head.assignment.is_cuda

"""Every registered backbone: builds, shapes, activation switch, input channels, parameter counts."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from neuralcollapse import models

# Small inputs keep the suite fast; every backbone pools adaptively, so 16 px works for the CIFAR nets.
SIZE = 16
EXPECTED_FEATURES = {
    "resnet18": 512,
    "resnet34": 512,
    "resnet50": 2048,
    "resnet32": 64,
    "preactresnet18": 512,
    "mobilenetv2": 1280,
    "densenet121": 1024,
    "wrn28_10": 640,
    "convnet": 128,
    "mlp": 256,
}


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@functools.cache
def built(name: str) -> nn.Module:
    torch.manual_seed(0)
    return models.create(name, image_size=(SIZE, SIZE)).eval()


def test_registry_lists_every_architecture():
    assert set(models.names()) == set(EXPECTED_FEATURES)


@pytest.mark.parametrize("name", sorted(EXPECTED_FEATURES))
def test_forward_shape_and_num_features(name):
    net = built(name)
    x = torch.randn(2, 3, SIZE, SIZE)
    x0 = x.clone()
    with torch.no_grad():
        out = net(x)
    assert net.num_features == EXPECTED_FEATURES[name]
    assert out.shape == (2, net.num_features)
    assert torch.isfinite(out).all()
    assert torch.equal(x, x0), "forward must not modify its input"


@pytest.mark.parametrize("name", sorted(EXPECTED_FEATURES))
def test_silu_leaves_no_relu_and_one_channel_works(name, monkeypatch):
    torch.manual_seed(0)
    net = models.create(name, activation="silu", in_channels=1, image_size=(SIZE, SIZE)).eval()
    relu_types = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU)
    assert not any(isinstance(m, relu_types) for m in net.modules())
    assert any(isinstance(m, nn.SiLU) for m in net.modules())

    def forbidden(*args, **kwargs):
        raise AssertionError("a ReLU was called in a SiLU network")

    monkeypatch.setattr(F, "relu", forbidden)
    monkeypatch.setattr(torch, "relu", forbidden)
    monkeypatch.setattr(torch, "relu_", forbidden)
    with torch.no_grad():
        out = net(torch.randn(2, 1, SIZE, SIZE))
    assert out.shape == (2, EXPECTED_FEATURES[name])


@pytest.mark.parametrize("name", ["resnet18", "preactresnet18", "densenet121", "mobilenetv2", "convnet"])
def test_relu_networks_only_use_relu(name):
    kinds = {type(m) for m in built(name).modules() if isinstance(m, nn.ReLU | nn.SiLU | nn.ReLU6)}
    assert kinds == {nn.ReLU}


def _basic_resnet_params(in_ch: int, blocks: tuple[int, ...], widths: tuple[int, ...], stem: int) -> int:
    """Parameters of a CIFAR basic-block ResNet from its definition (3x3 stem + BN, 1x1 + BN shortcuts)."""
    total = 9 * in_ch * stem + 2 * stem
    prev = stem
    for i, (w, n) in enumerate(zip(widths, blocks)):
        for j in range(n):
            stride = 2 if i > 0 and j == 0 else 1
            total += 9 * prev * w + 2 * w + 9 * w * w + 2 * w
            if stride != 1 or prev != w:
                total += prev * w + 2 * w
            prev = w
    return total


def test_resnet18_parameter_count_matches_definition_and_kuangliu():
    count = n_params(built("resnet18"))
    assert count == _basic_resnet_params(3, (2, 2, 2, 2), (64, 128, 256, 512), 64)
    # kuangliu/pytorch-cifar ResNet18 has 11,173,962 parameters with its 512x10 linear layer.
    assert count + 512 * 10 + 10 == 11_173_962


def test_resnet34_parameter_count():
    assert n_params(built("resnet34")) == _basic_resnet_params(3, (3, 4, 6, 3), (64, 128, 256, 512), 64)


def test_resnet50_parameter_count():
    total, prev = 9 * 3 * 64 + 2 * 64, 64
    for i, (planes, n) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3))):
        for j in range(n):
            out = 4 * planes
            total += prev * planes + 2 * planes + 9 * planes * planes + 2 * planes + planes * out + 2 * out
            if (i > 0 and j == 0) or prev != out:
                total += prev * out + 2 * out
            prev = out
    assert n_params(built("resnet50")) == total  # 23.5M, torchvision's ResNet-50 minus its 7x7 stem and fc


def test_preactresnet18_parameter_count_and_final_bn():
    net = built("preactresnet18")
    total, prev = 9 * 3 * 64, 64  # stem conv without BN
    for i, w in enumerate((64, 128, 256, 512)):
        for j in range(2):
            total += 2 * prev + 9 * prev * w + 2 * w + 9 * w * w  # BN, conv, BN, conv
            if (i > 0 and j == 0) or prev != w:
                total += prev * w  # 1x1 projection, no BN
            prev = w
    total += 2 * 512  # final BN before pooling (post-BN-ReLU features, docs/methods.md §2.7)
    assert n_params(net) == total
    # kuangliu's PreActResNet18 (11,171,146 with a 10-class linear) has no final BN.
    assert total - 2 * 512 + 512 * 10 + 10 == 11_171_146
    plain = models.create("preactresnet18", final_norm=False)
    assert n_params(plain) == total - 2 * 512


def test_preact_features_are_post_relu():
    torch.manual_seed(0)
    net = models.create("preactresnet18").train()
    with torch.no_grad():
        out = net(torch.randn(4, 3, SIZE, SIZE))
    assert (out >= 0).all() and (out > 0).any()


def test_resnet32_matches_hpn_definition():
    net = built("resnet32")
    total, prev = 9 * 3 * 16 + 2 * 16, 16
    for i, w in enumerate((16, 32, 64)):
        for j in range(5):
            total += 9 * prev * w + 2 * w + 9 * w * w + 2 * w
            if (i > 0 and j == 0) or prev != w:
                total += 9 * prev * w + 2 * w  # HPN: 3x3 stride-2 conv + BN projection
            prev = w
    assert n_params(net) == total
    assert sum(isinstance(m, nn.Conv2d) for m in net.modules()) == 1 + 3 * 5 * 2 + 2
    wide = models.create("resnet32", width=2)
    assert wide.num_features == 128
    pad = models.create("resnet32", shortcut="pad")
    # Option-A shortcut has no parameters: 2 fewer (conv + BN) projections.
    assert n_params(pad) == total - (9 * 16 * 32 + 2 * 32) - (9 * 32 * 64 + 2 * 64)
    with torch.no_grad():
        assert pad.eval()(torch.randn(2, 3, SIZE, SIZE)).shape == (2, 64)


def test_hpn_init_statistics():
    torch.manual_seed(0)
    conv = models.create("resnet32").layer3[0].conv2  # 64 -> 64, 3x3
    expected = (2.0 / (9 * 64)) ** 0.5
    assert conv.weight.std().item() == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize(
    ("name", "published"),
    [("wrn28_10", 36_479_194 - 6410), ("densenet121", 7.0e6 - 102_500), ("mobilenetv2", 2_296_922 - 12_810)],
)
def test_published_parameter_counts(name, published):
    # WRN-28-10 36.5M (Zagoruyko & Komodakis), DenseNet-121 7.0M with a 100-class head (weiaicunzai),
    # MobileNetV2 2.30M with a 10-class head (kuangliu); the heads are subtracted.
    assert n_params(built(name)) == pytest.approx(published, rel=0.01)


def test_mlp_input_size_and_lazy():
    net = models.create("mlp", in_channels=1, image_size=(8, 8), hidden=(32, 16))
    assert net.num_features == 16
    assert net.net[1].in_features == 64
    lazy = models.create("mlp", hidden=(8,))
    assert lazy(torch.randn(3, 2, 5, 5)).shape == (3, 8)


def test_convnet_works_for_digits_and_28px():
    net = models.create("convnet", in_channels=1).eval()
    with torch.no_grad():
        assert net(torch.randn(2, 1, 8, 8)).shape == (2, 128)
        assert net(torch.randn(2, 1, 28, 28)).shape == (2, 128)
        assert net(torch.randn(2, 1, 1, 1)).shape == (2, 128)


def test_backward_reaches_the_stem():
    net = models.create("resnet18", activation="silu")
    net(torch.randn(2, 3, 8, 8)).sum().backward()
    assert net.conv1.weight.grad is not None and net.conv1.weight.grad.abs().sum() > 0


def test_default_dtype_double_forward():
    net = models.create("convnet", in_channels=1).double().eval()
    with torch.no_grad():
        out = net(torch.randn(2, 1, 8, 8, dtype=torch.float64))
    assert out.dtype == torch.float64


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("resnet32", {"depth": 30}, "`depth`"),
        ("resnet32", {"width": 0}, "`width`"),
        ("resnet32", {"shortcut": "B"}, "`shortcut`"),
        ("wrn28_10", {"dropout": 1.5}, "`dropout`"),
        ("convnet", {"widths": ()}, "`widths`"),
        ("mlp", {"hidden": (0,)}, "`hidden`"),
        ("mlp", {"in_features": -1}, "`in_features`"),
        ("mlp", {"image_size": (8,)}, "`image_size`"),
    ],
)
def test_bad_architecture_options(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.create(name, **kwargs)


def test_unknown_option_is_rejected_by_name():
    with pytest.raises(TypeError, match="bogus"):
        models.create("resnet18", bogus=1)


@pytest.mark.cuda
def test_cuda_forward_if_available():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    net = models.create("resnet18").cuda().eval()
    with torch.no_grad():
        assert net(torch.randn(2, 3, 32, 32, device="cuda")).device.type == "cuda"

"""Model registry, adapters and the backbone → head Classifier."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest
import torch
from torch import nn

from neuralcollapse import models
from neuralcollapse.models._layers import check_activation, replace_activations
from neuralcollapse.output import HeadOutput


def test_aliases_resolve_to_the_same_architecture():
    for alias in ("preactivationresnet18", "resnet18v2", "PreActResNet18", "preact-resnet18"):
        assert models.MODELS.get(alias) is models.preactresnet18
    assert models.MODELS.get("wideresnet28_10") is models.wrn28_10
    assert isinstance(models.create("resnet18v2"), models.PreActResNet)


def test_unknown_name_lists_valid_names_and_suggests():
    with pytest.raises(ValueError, match=r"unknown model 'resnet81'.*valid names: .*resnet18.*did you mean"):
        models.create("resnet81")


@pytest.mark.parametrize("bad", ["tanh", "ReLU6", ""])
def test_bad_activation_names_the_argument(bad):
    with pytest.raises(ValueError, match="`activation` must be one of 'relu', 'silu'"):
        models.create("convnet", activation=bad)


def test_activation_type_error_and_swish_alias():
    with pytest.raises(TypeError, match="`activation`"):
        models.create("convnet", activation=None)
    assert check_activation("Swish") == "silu"


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_bad_in_channels(bad):
    with pytest.raises(ValueError, match="`in_channels` must be a positive int"):
        models.create("convnet", in_channels=bad)


def test_num_classes_is_accepted_and_none_kwargs_are_dropped():
    net = models.create("resnet32", num_classes=100, width=None)
    assert net.num_features == 64


def test_register_model_adds_an_entry():
    name = "test_only_identity_backbone"

    class Identity(nn.Module):
        num_features = 12

        def forward(self, x):
            return x.flatten(1)

    @models.register_model(name)
    def factory(*, num_classes=None, in_channels=3, activation="relu", image_size=None):
        return Identity()

    try:
        assert name in models.names()
        assert models.create(name)(torch.zeros(2, 3, 2, 2)).shape == (2, 12)
        with pytest.raises(ValueError, match="already registered"):
            models.register_model(name)(factory)
    finally:
        models.MODELS._entries.pop(name, None)


def test_adapters_are_not_imported_with_the_package():
    code = (
        "import sys, neuralcollapse.models as m; m.create('convnet'); "
        "names = ('timm', 'torchvision', 'neuralcollapse.models.adapters'); "
        "print(sorted(k for k in names if k in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_missing_adapter_package_gives_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # makes `import timm` raise ImportError
    with pytest.raises(
        ImportError, match=r"model 'timm:resnet18' needs the optional package 'timm'.*pip install"
    ):
        models.create("timm:resnet18")
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(ImportError, match="optional package 'torchvision'"):
        models.create("torchvision:resnet18")


def test_adapter_requires_a_model_name():
    with pytest.raises(ValueError, match="timm:<model name>"):
        models.create("timm:")


def _fake_timm(recorder: dict) -> types.ModuleType:
    mod = types.ModuleType("timm")

    def create_model(name, *, num_classes, in_chans, pretrained, **kw):
        recorder.update(name=name, num_classes=num_classes, in_chans=in_chans, pretrained=pretrained, **kw)
        net = nn.Sequential(nn.Conv2d(in_chans, 5, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        net.num_features = 5
        return net

    mod.create_model = create_model
    return mod


def test_timm_adapter_contract(monkeypatch):
    seen: dict = {}
    monkeypatch.setitem(sys.modules, "timm", _fake_timm(seen))
    net = models.create("timm:tiny_thing", in_channels=1, activation="silu", drop_rate=0.1)
    assert seen == {
        "name": "tiny_thing",
        "num_classes": 0,
        "in_chans": 1,
        "pretrained": False,
        "drop_rate": 0.1,
    }
    assert net.num_features == 5
    assert net(torch.randn(2, 1, 6, 6)).shape == (2, 5)
    assert not any(isinstance(m, nn.ReLU) for m in net.modules())


def test_torchvision_adapter_strips_classifier_and_replaces_stem(monkeypatch):
    tv = types.ModuleType("torchvision")
    tv_models = types.ModuleType("torchvision.models")
    seen: dict = {}

    def get_model(name, **kw):
        seen.update(name=name, **kw)
        return nn.Sequential(
            nn.Conv2d(3, 4, 3),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4, 7),
            nn.Linear(7, 10),
        )

    tv_models.get_model = get_model
    tv.models = tv_models
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    monkeypatch.setitem(sys.modules, "torchvision.models", tv_models)
    net = models.create("torchvision:toy", in_channels=1)
    assert seen == {"name": "toy", "weights": None}
    assert net.num_features == 7  # the last Linear (7 -> 10) is the classifier
    assert net(torch.randn(2, 1, 5, 5)).shape == (2, 7)


def test_replace_activations_swaps_nested_modules():
    net = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU6(), nn.GELU()), nn.ReLU())
    replace_activations(net, "silu")
    assert [type(m) for m in net.modules() if not isinstance(m, nn.Sequential | nn.Linear)] == [nn.SiLU] * 3


class _Head(nn.Module):
    def __init__(self, d: int, k: int) -> None:
        super().__init__()
        self.fc = nn.Linear(d, k)

    def forward(self, h, scale: float = 1.0):
        return HeadOutput(logits=scale * self.fc(h), features=h)


def test_classifier_keeps_backbone_and_head_apart():
    torch.manual_seed(0)
    backbone = models.create("convnet", in_channels=1).eval()
    head = _Head(backbone.num_features, 10)
    model = models.Classifier(backbone, head)
    x = torch.randn(3, 1, 8, 8)
    out = model(x)
    assert isinstance(out, HeadOutput)
    feats = model.forward_features(x)
    torch.testing.assert_close(out.features, feats)
    torch.testing.assert_close(out.logits, head.fc(feats))
    torch.testing.assert_close(model(x, scale=2.0).logits, 2 * out.logits)
    assert model.num_features == 128
    assert {n.split(".")[0] for n, _ in model.named_parameters()} == {"backbone", "head"}


def test_classifier_rejects_non_modules():
    with pytest.raises(TypeError, match="`backbone`"):
        models.Classifier(lambda x: x, nn.Identity())
    with pytest.raises(TypeError, match="`head`"):
        models.Classifier(nn.Identity(), "linear")

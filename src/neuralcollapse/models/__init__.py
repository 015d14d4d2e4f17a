"""Backbones (registry) and the backbone → head :class:`Classifier`.

``create(name, *, num_classes=None, in_channels=3, activation="relu", **kw)`` builds a backbone returning
pooled features (N, d) with ``num_features`` = d; ``names()`` lists the registered ones:

=================  ===============================================================  =========
name (aliases)     architecture                                                     features
=================  ===============================================================  =========
resnet18/34/50     CIFAR ResNet (3×3 stride-1 stem, no max-pool; kuangliu)          512/512/2048
resnet32           HPN / DL2PA CIFAR ResNet-32 (16/32/64 × ``width``)               64·width
preactresnet18     pre-activation ResNet-18 + final BN-act ("resnet18v2",          512
                   "preactivationresnet18")
mobilenetv2        CIFAR MobileNetV2 (kuangliu)                                      1280
densenet121        CIFAR DenseNet-BC-121, growth 32 (weiaicunzai)                    1024
wrn28_10           WRN-28-10 ("wideresnet28_10")                                     640
convnet            small CPU ConvNet (8×8 digits … 32 px)                            128
mlp                flatten + MLP (``hidden``)                                         hidden[-1]
=================  ===============================================================  =========

``"timm:<name>"`` and ``"torchvision:<name>"`` build third-party backbones when those packages import.
``activation="silu"`` replaces every non-linearity (LPC, docs/methods.md §6.1).
"""

from __future__ import annotations

from . import densenet, mobilenet, preact_resnet, resnet, small, wide_resnet  # noqa: F401 - register models
from ._layers import ACTIVATIONS, make_activation, replace_activations
from .classifier import Classifier
from .densenet import DenseNet, densenet121
from .mobilenet import MobileNetV2, mobilenetv2
from .preact_resnet import PreActResNet, preactresnet18
from .registry import MODELS, create, names, register_model
from .resnet import CifarResNet, ResNet32, resnet18, resnet32, resnet34, resnet50
from .small import MLP, ConvNet, convnet, mlp
from .wide_resnet import WideResNet, wrn28_10

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "MODELS",
    "CifarResNet",
    "Classifier",
    "ConvNet",
    "DenseNet",
    "MobileNetV2",
    "PreActResNet",
    "ResNet32",
    "WideResNet",
    "convnet",
    "create",
    "densenet121",
    "make_activation",
    "mlp",
    "mobilenetv2",
    "names",
    "preactresnet18",
    "register_model",
    "replace_activations",
    "resnet18",
    "resnet32",
    "resnet34",
    "resnet50",
    "wrn28_10",
]

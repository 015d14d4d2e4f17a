"""Optional adapters: backbones from timm (``"timm:<name>"``) and torchvision (``"torchvision:<name>"``).

Neither package is imported when ``neuralcollapse.models`` is imported; the adapter imports it when such a
name is created and raises a clear ``ImportError`` when it is missing. The adapted module follows the backbone
contract: the classifier is removed (``num_features`` = its input width), ``in_channels`` replaces the first
convolution when it differs from 3, and ``activation="silu"`` swaps every activation *module* (a functional
``F.relu`` inside a foreign ``forward`` cannot be reached; timm models also accept ``act_layer``).
Weights are random (``pretrained``/``weights`` may be passed through as keyword arguments).
"""

from __future__ import annotations

import importlib
from typing import Any

from torch import Tensor, nn

from ._layers import replace_activations

__all__ = ["create_adapter"]


def _import(package: str, full_name: str) -> Any:
    try:
        return importlib.import_module(package)
    except Exception as exc:  # ImportError, or a broken install raising something else at import time
        raise ImportError(
            f"model {full_name!r} needs the optional package {package!r}, which could not be imported "
            f"({type(exc).__name__}: {exc}); install it (pip install {package}) or use a built-in backbone "
            f"from neuralcollapse.models.names()"
        ) from exc


def _replace_first_conv(module: nn.Module, in_channels: int) -> None:
    """Swap the first ``nn.Conv2d`` for one reading ``in_channels`` channels (same geometry)."""
    for parent in module.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                if child.in_channels == in_channels:
                    return
                setattr(
                    parent,
                    child_name,
                    nn.Conv2d(
                        in_channels,
                        child.out_channels,
                        child.kernel_size,
                        stride=child.stride,
                        padding=child.padding,
                        dilation=child.dilation,
                        groups=1 if child.groups == child.in_channels else child.groups,
                        bias=child.bias is not None,
                        padding_mode=child.padding_mode,
                    ),
                )
                return
    raise ValueError("`in_channels` cannot be changed: the model has no nn.Conv2d")


def _strip_last_linear(module: nn.Module, full_name: str) -> int:
    """Replace the last ``nn.Linear`` (the classifier) by ``nn.Identity``; return its input width."""
    last: tuple[nn.Module, str, nn.Linear] | None = None
    for parent in module.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Linear):
                last = (parent, child_name, child)
    if last is None:
        raise ValueError(f"model {full_name!r} has no nn.Linear classifier to remove")
    parent, child_name, linear = last
    setattr(parent, child_name, nn.Identity())
    return int(linear.in_features)


class _FeatureAdapter(nn.Module):
    """Wraps a third-party network whose classifier was removed; flattens its output to (N, d)."""

    def __init__(self, net: nn.Module, num_features: int) -> None:
        super().__init__()
        self.net = net
        self.num_features = int(num_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).flatten(1)


def create_adapter(
    full_name: str, *, num_classes: int | None, in_channels: int, activation: str, **kwargs: Any
) -> nn.Module:
    """Build ``"timm:<name>"`` or ``"torchvision:<name>"`` as a backbone (see the module docstring).

    Raises:
        ImportError: the package does not import.
        ValueError: empty model name after the prefix.
    """
    prefix, _, model_name = full_name.partition(":")
    prefix = prefix.lower()
    if not model_name:
        raise ValueError(f"`name` must be '{prefix}:<model name>'; got {full_name!r}")
    kwargs.pop("image_size", None)
    if prefix == "timm":
        timm = _import("timm", full_name)
        kwargs.setdefault("pretrained", False)
        net = timm.create_model(model_name, num_classes=0, in_chans=in_channels, **kwargs)
        num_features = int(net.num_features)
    else:
        _import("torchvision", full_name)
        tv_models = importlib.import_module("torchvision.models")
        kwargs.setdefault("weights", None)
        net = tv_models.get_model(model_name, **kwargs)
        num_features = _strip_last_linear(net, full_name)
        if in_channels != 3:
            _replace_first_conv(net, in_channels)
    if activation != "relu":
        replace_activations(net, activation)
    return _FeatureAdapter(net, num_features)

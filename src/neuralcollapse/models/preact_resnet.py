"""Pre-activation ResNet-18 ("ResNet18v2"), the OCCE paper's main backbone.

K. He, X. Zhang, S. Ren, J. Sun, "Identity Mappings in Deep Residual Networks", ECCV 2016, in the CIFAR form
of kuangliu/pytorch-cifar ``models/preact_resnet.py`` (the style the official OCCE code follows, docs/methods.md
§2.7, §13): 3×3 stride-1 stem without BN/activation, pre-activation blocks (BN → act → conv, twice; the 1×1
projection shortcut without BN is applied to the pre-activated input), four stages 64/128/256/512.

One addition to kuangliu's network: a final BN → activation before global average pooling, so that the 512-d
feature is the **post-BN-ReLU pooled feature** docs/methods.md §2.7 specifies for "ResNet18v2" (the canonical
pre-activation ResNet also ends with this BN-ReLU). ``final_norm=False`` drops it (kuangliu exactly).
"""

from __future__ import annotations

from torch import Tensor, nn

from ._layers import check_activation, check_in_channels, make_activation
from .registry import register_model

__all__ = ["PreActBlock", "PreActResNet", "preactresnet18"]


class PreActBlock(nn.Module):
    """BN → act → 3×3 conv (stride) → BN → act → 3×3 conv, plus the (projected) shortcut."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int, activation: str) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.act1 = make_activation(activation)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = make_activation(activation)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.act1(self.bn1(x))
        # kuangliu: the projection reads the pre-activated input, the identity the raw input.
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(self.act2(self.bn2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    """Pre-activation ResNet backbone with the CIFAR stem; returns pooled post-BN-activation features.

    Args:
        num_blocks: blocks per stage ((2, 2, 2, 2) for ResNet-18).
        in_channels: input channels (1 for FashionMNIST without replication — the official code's MNIST path
            fed 1 channel to a 3-channel stem, docs/methods.md §2.7 defect 3).
        activation: "relu" or "silu".
        final_norm: append BN → activation before pooling (default True; see the module docstring).

    Example:
        >>> import torch
        >>> preactresnet18()(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 512])
    """

    def __init__(
        self,
        num_blocks: tuple[int, ...] = (2, 2, 2, 2),
        *,
        in_channels: int = 3,
        activation: str = "relu",
        final_norm: bool = True,
    ) -> None:
        super().__init__()
        activation = check_activation(activation)
        in_channels = check_in_channels(in_channels)
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        in_planes = 64
        stages = []
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), num_blocks)):
            layers = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(PreActBlock(in_planes, planes, stride, activation))
                in_planes = planes
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.final = (
            nn.Sequential(nn.BatchNorm2d(in_planes), make_activation(activation))
            if final_norm
            else nn.Identity()
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = in_planes

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(x)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.pool(self.final(out)).flatten(1)


@register_model("preactresnet18", aliases=("preactivationresnet18", "resnet18v2", "preact_resnet18"))
def preactresnet18(
    *,
    num_classes: int | None = None,
    in_channels: int = 3,
    activation: str = "relu",
    image_size=None,
    final_norm: bool = True,
) -> PreActResNet:
    """Pre-activation ResNet-18 backbone ("ResNet18v2", 512-d post-BN-ReLU features)."""
    return PreActResNet((2, 2, 2, 2), in_channels=in_channels, activation=activation, final_norm=final_norm)

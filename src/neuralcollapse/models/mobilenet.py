"""MobileNetV2 for CIFAR (the OCCE paper's second backbone, docs/methods.md §2.7).

M. Sandler, A. Howard, M. Zhu, A. Zhmoginov, L.-C. Chen, "MobileNetV2: Inverted Residuals and Linear
Bottlenecks", CVPR 2018, in the CIFAR form of kuangliu/pytorch-cifar ``models/mobilenetv2.py``: 3×3 stride-1
stem with 32 channels, the second stage's stride changed 2 → 1 (32×32 inputs are pooled from 4×4 instead of
1×1), inverted-residual blocks (1×1 expand → 3×3 depthwise → 1×1 linear projection, BN after each) with a
residual connection in every stride-1 block (a 1×1 conv + BN projection where the width changes), a 1×1
conv to 1280 channels + BN + activation, global average pooling: 1280-d features. kuangliu uses ReLU (not
ReLU6); ``activation="silu"`` swaps every non-linearity.
"""

from __future__ import annotations

from torch import Tensor, nn

from ._layers import check_activation, check_in_channels, make_activation
from .registry import register_model

__all__ = ["MobileNetV2", "mobilenetv2"]

#: (expansion, out_planes, num_blocks, stride) — kuangliu's CIFAR configuration.
MOBILENETV2_CIFAR_CFG: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),  # stride 2 -> 1 for CIFAR
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class InvertedResidual(nn.Module):
    """Expand (1×1) → depthwise (3×3, stride) → project (1×1, linear); residual when stride is 1."""

    def __init__(self, in_planes: int, out_planes: int, expansion: int, stride: int, activation: str) -> None:
        super().__init__()
        self.stride = stride
        planes = expansion * in_planes
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = make_activation(activation)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, groups=planes, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = make_activation(activation)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride == 1 and in_planes != out_planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, out_planes, 1, bias=False), nn.BatchNorm2d(out_planes)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return out + self.shortcut(x) if self.stride == 1 else out


class MobileNetV2(nn.Module):
    """CIFAR MobileNetV2 backbone; returns 1280-d pooled features.

    Example:
        >>> import torch
        >>> mobilenetv2()(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 1280])
    """

    def __init__(self, *, in_channels: int = 3, activation: str = "relu") -> None:
        super().__init__()
        activation = check_activation(activation)
        in_channels = check_in_channels(in_channels)
        self.conv1 = nn.Conv2d(in_channels, 32, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.act1 = make_activation(activation)
        layers = []
        in_planes = 32
        for expansion, out_planes, num_blocks, stride in MOBILENETV2_CIFAR_CFG:
            for j in range(num_blocks):
                layers.append(
                    InvertedResidual(in_planes, out_planes, expansion, stride if j == 0 else 1, activation)
                )
                in_planes = out_planes
        self.layers = nn.Sequential(*layers)
        self.conv2 = nn.Conv2d(in_planes, 1280, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(1280)
        self.act2 = make_activation(activation)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = 1280

    def forward(self, x: Tensor) -> Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.layers(out)
        out = self.act2(self.bn2(self.conv2(out)))
        return self.pool(out).flatten(1)


@register_model("mobilenetv2", aliases=("mobilenet_v2",))
def mobilenetv2(
    *, num_classes: int | None = None, in_channels: int = 3, activation: str = "relu", image_size=None
) -> MobileNetV2:
    """CIFAR MobileNetV2 backbone (1280-d features)."""
    return MobileNetV2(in_channels=in_channels, activation=activation)

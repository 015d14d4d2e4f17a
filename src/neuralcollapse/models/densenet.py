"""DenseNet-BC-121 for CIFAR (the OCCE paper's third backbone, docs/methods.md §2.7).

G. Huang, Z. Liu, L. van der Maaten, K. Q. Weinberger, "Densely Connected Convolutional Networks", CVPR 2017,
in the CIFAR form of weiaicunzai/pytorch-cifar100 ``models/densenet.py`` (the code the official OCCE
repository builds on — its factory's ``num_class`` keyword is that file's): growth rate 32, blocks (6, 12, 24,
16), compression 0.5, a 3×3 stride-1 stem with 2·growth channels and no pooling, bottleneck layers BN → act →
1×1 (4·growth) → BN → act → 3×3 (growth), transitions BN → 1×1 conv → 2×2 average pooling (**no activation**
in the transition, as in that code), final BN → act, global average pooling: 1024-d features.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._layers import check_activation, check_in_channels, make_activation
from .registry import register_model

__all__ = ["DenseNet", "densenet121"]

#: DenseNet-121 configuration.
DENSENET121_BLOCKS: tuple[int, ...] = (6, 12, 24, 16)
DENSENET121_GROWTH = 32
DENSENET_REDUCTION = 0.5


class _DenseLayer(nn.Module):
    def __init__(self, in_channels: int, growth_rate: int, activation: str) -> None:
        super().__init__()
        inner = 4 * growth_rate
        self.bottleneck = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            make_activation(activation),
            nn.Conv2d(in_channels, inner, 1, bias=False),
            nn.BatchNorm2d(inner),
            make_activation(activation),
            nn.Conv2d(inner, growth_rate, 3, padding=1, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, self.bottleneck(x)], dim=1)


class _Transition(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.AvgPool2d(2, 2),
        )


class DenseNet(nn.Module):
    """DenseNet-BC backbone with the CIFAR stem; returns pooled post-BN-activation features.

    Args:
        blocks: dense layers per block ((6, 12, 24, 16) for DenseNet-121).
        growth_rate: channels added per dense layer (32).
        reduction: transition compression (0.5).
        in_channels, activation: as every backbone.

    Raises:
        ValueError: non-positive ``growth_rate`` or ``reduction`` outside (0, 1].

    Example:
        >>> import torch
        >>> densenet121()(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 1024])
    """

    def __init__(
        self,
        blocks: tuple[int, ...] = DENSENET121_BLOCKS,
        *,
        growth_rate: int = DENSENET121_GROWTH,
        reduction: float = DENSENET_REDUCTION,
        in_channels: int = 3,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        activation = check_activation(activation)
        in_channels = check_in_channels(in_channels)
        if isinstance(growth_rate, bool) or not isinstance(growth_rate, int) or growth_rate < 1:
            raise ValueError(f"`growth_rate` must be a positive int; got {growth_rate!r}")
        if not 0 < float(reduction) <= 1:
            raise ValueError(f"`reduction` must be in (0, 1]; got {reduction!r}")
        channels = 2 * growth_rate
        self.conv1 = nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)
        features: list[nn.Module] = []
        for i, n in enumerate(blocks):
            for _ in range(n):
                features.append(_DenseLayer(channels, growth_rate, activation))
                channels += growth_rate
            if i < len(blocks) - 1:
                out = int(reduction * channels)
                features.append(_Transition(channels, out))
                channels = out
        features += [nn.BatchNorm2d(channels), make_activation(activation)]
        self.features = nn.Sequential(*features)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = channels

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.features(self.conv1(x))).flatten(1)


@register_model("densenet121", aliases=("densenet_bc121",))
def densenet121(
    *, num_classes: int | None = None, in_channels: int = 3, activation: str = "relu", image_size=None
) -> DenseNet:
    """CIFAR DenseNet-BC-121 backbone (growth 32, 1024-d features)."""
    return DenseNet(DENSENET121_BLOCKS, in_channels=in_channels, activation=activation)

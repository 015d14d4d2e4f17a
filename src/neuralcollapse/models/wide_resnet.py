"""Wide ResNet (WRN-d-k) for CIFAR.

S. Zagoruyko, N. Komodakis, "Wide Residual Networks", BMVC 2016 (reference PyTorch port xternalz/WideResNet-
pytorch): 3×3 stem with 16 channels, three stages 16k/32k/64k of (d−4)/6 pre-activation basic blocks (BN → act
→ 3×3 conv, twice, optional dropout between; a 1×1 projection of the pre-activated input where the width
changes), final BN → act, global average pooling. WRN-28-10: 640-d features, ~36.5M parameters.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ._layers import check_activation, check_in_channels, make_activation
from .registry import register_model

__all__ = ["WideResNet", "wrn28_10"]


class _WideBlock(nn.Module):
    def __init__(self, in_planes: int, out_planes: int, stride: int, dropout: float, activation: str) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.act1 = make_activation(activation)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.act2 = make_activation(activation)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.dropout = dropout
        self.shortcut: nn.Module | None = None
        if in_planes != out_planes or stride != 1:
            self.shortcut = nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        pre = self.act1(self.bn1(x))
        out = self.act2(self.bn2(self.conv1(pre)))
        if self.dropout > 0:
            out = F.dropout(out, p=self.dropout, training=self.training)
        out = self.conv2(out)
        return out + (self.shortcut(pre) if self.shortcut is not None else x)


class WideResNet(nn.Module):
    """WRN-depth-widen backbone; returns 64·widen pooled features.

    Args:
        depth: 6n+4 (28).
        widen: width factor k (10).
        dropout: dropout rate between the two convs of each block (0 by default).
        in_channels, activation: as every backbone.

    Raises:
        ValueError: ``depth`` not of the form 6n+4, ``widen`` < 1, ``dropout`` outside [0, 1).

    Example:
        >>> import torch
        >>> WideResNet(depth=10, widen=1)(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 64])
    """

    def __init__(
        self,
        *,
        depth: int = 28,
        widen: int = 10,
        dropout: float = 0.0,
        in_channels: int = 3,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        activation = check_activation(activation)
        in_channels = check_in_channels(in_channels)
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
            raise ValueError(f"`depth` must be an int of the form 6n+4 (>= 10), e.g. 28; got {depth!r}")
        if isinstance(widen, bool) or not isinstance(widen, int) or widen < 1:
            raise ValueError(f"`widen` must be a positive int; got {widen!r}")
        if not 0 <= float(dropout) < 1:
            raise ValueError(f"`dropout` must be in [0, 1); got {dropout!r}")
        n = (depth - 4) // 6
        widths = (16, 16 * widen, 32 * widen, 64 * widen)
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        stages = []
        in_planes = widths[0]
        for i, planes in enumerate(widths[1:]):
            layers = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(_WideBlock(in_planes, planes, stride, float(dropout), activation))
                in_planes = planes
            stages.append(nn.Sequential(*layers))
        self.block1, self.block2, self.block3 = stages
        self.bn = nn.BatchNorm2d(in_planes)
        self.act = make_activation(activation)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = in_planes
        # Reference initialisation: He-normal (fan-out) convs, BN weight 1 / bias 0.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.pool(self.act(self.bn(out))).flatten(1)


@register_model("wrn28_10", aliases=("wideresnet28_10", "wrn_28_10"))
def wrn28_10(
    *,
    num_classes: int | None = None,
    in_channels: int = 3,
    activation: str = "relu",
    image_size=None,
    dropout: float = 0.0,
) -> WideResNet:
    """WRN-28-10 backbone (640-d features)."""
    return WideResNet(depth=28, widen=10, dropout=dropout, in_channels=in_channels, activation=activation)

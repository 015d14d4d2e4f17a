"""CIFAR-style ResNets: ResNet-18/34/50 (He et al. 2016) and the HPN/DL2PA ResNet-32.

* ``resnet18`` / ``resnet34`` / ``resnet50``: K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual Learning for
  Image Recognition", CVPR 2016, in the CIFAR form of kuangliu/pytorch-cifar: 3×3 stride-1 stem, no max-pool,
  four stages 64/128/256/512 (×4 for the bottleneck), 1×1-conv + BN projection shortcuts, global average
  pooling. Features: 512-d (18/34) or 2048-d (50), post-ReLU. These are the LPC backbones (SiLU variant,
  docs/methods.md §6.1) and the NTCE/NONL backbones (§4.1).
* ``resnet32``: the 6n+2 CIFAR ResNet (n = 5) of P. Mettes et al., "Hyperspherical Prototype Networks",
  NeurIPS 2019 (psmmettes/hpn, ``models/cifar/resnet.py``), used by DL2PA (docs/methods.md §7.4): 3×3 stem with 16
  channels, three stages 16/32/64 (× ``width``) of five basic blocks, a **3×3** stride-2 conv + BN projection
  shortcut (HPN's choice), He-normal fan-out conv init, global average pooling: 64·width features.
  ``shortcut="pad"`` gives the LDAM/ImbalancedLearning "option A" block instead (parameter-free shortcut:
  stride-2 subsampling and zero channel padding), as in the long-tail ResNet-32 of docs/methods.md §7.4 / §8.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from ._layers import check_activation, check_in_channels, make_activation
from .registry import register_model

__all__ = ["CifarResNet", "ResNet32", "resnet18", "resnet32", "resnet34", "resnet50"]

_RESNET_WIDTHS = (64, 128, 256, 512)
_RESNET32_SHORTCUTS = ("conv", "pad")


class BasicBlock(nn.Module):
    """Two 3×3 convs with BN; projection shortcut (1×1 conv + BN) when the shape changes."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int, activation: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = make_activation(activation)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = make_activation(activation)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1×1 → 3×3 (stride) → 1×1 (×4 channels) with BN; projection shortcut when the shape changes."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int, activation: str) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = make_activation(activation)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = make_activation(activation)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.act3 = make_activation(activation)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False), nn.BatchNorm2d(out_planes)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.act3(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet backbone with the CIFAR stem (3×3 conv, stride 1, no max-pool); returns pooled features.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        num_blocks: blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18.
        in_channels: input channels.
        activation: "relu" or "silu" (every non-linearity).

    Example:
        >>> import torch
        >>> net = resnet18()
        >>> net(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 512])
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        num_blocks: tuple[int, ...],
        *,
        in_channels: int = 3,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        activation = check_activation(activation)
        in_channels = check_in_channels(in_channels)
        self.conv1 = nn.Conv2d(in_channels, _RESNET_WIDTHS[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(_RESNET_WIDTHS[0])
        self.act1 = make_activation(activation)
        in_planes = _RESNET_WIDTHS[0]
        stages = []
        for i, (planes, n) in enumerate(zip(_RESNET_WIDTHS, num_blocks)):
            layers = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(block(in_planes, planes, stride, activation))
                in_planes = planes * block.expansion
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = in_planes

    def forward(self, x: Tensor) -> Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.pool(out).flatten(1)


class _PadShortcut(nn.Module):
    """LDAM "option A" shortcut: stride-2 subsampling and symmetric zero padding of the channels."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        extra = planes - in_planes
        self.pad_before, self.pad_after = extra // 2, extra - extra // 2

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_before, self.pad_after))


class _HPNBasicBlock(BasicBlock):
    """HPN's basic block: as :class:`BasicBlock` but its projection is a 3×3 stride-s conv + BN, or the
    parameter-free "pad" shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int, activation: str, shortcut: str) -> None:
        super().__init__(in_planes, planes, stride, activation)
        if stride != 1 or in_planes != planes:
            if shortcut == "conv":
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False),
                    nn.BatchNorm2d(planes),
                )
            else:
                self.shortcut = _PadShortcut(in_planes, planes, stride)


class ResNet32(nn.Module):
    """HPN / DL2PA CIFAR ResNet-(6n+2) backbone (default depth 32); returns 64·width pooled features.

    Source: psmmettes/hpn ``models/cifar/resnet.py`` (Mettes et al., NeurIPS 2019), used by DL2PA (Ebrahimi
    Saadabadi et al., CVPR 2024) — the final ``fc`` (64 → prototype dim) belongs to the head here.

    Args:
        depth: 6n+2 (32 → five blocks per stage).
        width: channel multiplier (HPN's ``multiplier``); features are 64·width.
        shortcut: "conv" (HPN: 3×3 stride-2 conv + BN) or "pad" (LDAM option A, parameter-free).
        in_channels, activation: as every backbone.

    Raises:
        ValueError: ``depth`` not of the form 6n+2, ``width`` < 1, unknown ``shortcut``.

    Example:
        >>> import torch
        >>> ResNet32()(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 64])
    """

    def __init__(
        self,
        *,
        depth: int = 32,
        width: int = 1,
        shortcut: str = "conv",
        in_channels: int = 3,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        activation = check_activation(activation)
        in_channels = check_in_channels(in_channels)
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ValueError(f"`depth` must be an int of the form 6n+2 (>= 8), e.g. 32; got {depth!r}")
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"`width` must be a positive int (channel multiplier); got {width!r}")
        if shortcut not in _RESNET32_SHORTCUTS:
            raise ValueError(f"`shortcut` must be one of {_RESNET32_SHORTCUTS}; got {shortcut!r}")
        n = (depth - 2) // 6
        widths = (16 * width, 32 * width, 64 * width)
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.act1 = make_activation(activation)
        in_planes = widths[0]
        stages = []
        for i, planes in enumerate(widths):
            layers = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(_HPNBasicBlock(in_planes, planes, stride, activation, shortcut))
                in_planes = planes
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = in_planes
        # HPN initialisation: N(0, sqrt(2 / (k·k·out_channels))) for convs, BN weight 1 / bias 0.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.pool(out).flatten(1)


@register_model("resnet18")
def resnet18(
    *, num_classes: int | None = None, in_channels: int = 3, activation: str = "relu", image_size=None
) -> CifarResNet:
    """CIFAR ResNet-18 backbone (512-d features, ~11.17M parameters)."""
    return CifarResNet(BasicBlock, (2, 2, 2, 2), in_channels=in_channels, activation=activation)


@register_model("resnet34")
def resnet34(
    *, num_classes: int | None = None, in_channels: int = 3, activation: str = "relu", image_size=None
) -> CifarResNet:
    """CIFAR ResNet-34 backbone (512-d features)."""
    return CifarResNet(BasicBlock, (3, 4, 6, 3), in_channels=in_channels, activation=activation)


@register_model("resnet50")
def resnet50(
    *, num_classes: int | None = None, in_channels: int = 3, activation: str = "relu", image_size=None
) -> CifarResNet:
    """CIFAR ResNet-50 backbone (bottleneck blocks, 2048-d features)."""
    return CifarResNet(Bottleneck, (3, 4, 6, 3), in_channels=in_channels, activation=activation)


@register_model("resnet32", aliases=("hpn_resnet32",))
def resnet32(
    *,
    num_classes: int | None = None,
    in_channels: int = 3,
    activation: str = "relu",
    image_size=None,
    depth: int = 32,
    width: int = 1,
    shortcut: str = "conv",
) -> ResNet32:
    """HPN / DL2PA CIFAR ResNet-32 backbone (64·width features); see :class:`ResNet32`."""
    return ResNet32(
        depth=depth, width=width, shortcut=shortcut, in_channels=in_channels, activation=activation
    )

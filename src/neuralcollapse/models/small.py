"""Small CPU backbones: a ConvNet for 8×8 digits up to 32 px images, and an MLP for any input.

Both exist for the embedded data set (scikit-learn's digits, the default of ``neuralcollapse train``) and for
fast tests; they follow the same backbone contract as the large networks (pooled features, ``num_features``).
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod

from torch import Tensor, nn

from ._layers import check_activation, check_in_channels, make_activation
from .registry import register_model

__all__ = ["MLP", "ConvNet", "convnet", "mlp"]

#: Default channel widths of the ConvNet's stages.
CONVNET_WIDTHS: tuple[int, ...] = (32, 64, 128)
#: Default hidden widths of the MLP.
MLP_HIDDEN: tuple[int, ...] = (256, 256)


def _check_widths(widths: object, name: str) -> tuple[int, ...]:
    if isinstance(widths, int):
        widths = (widths,)
    if (
        not isinstance(widths, Sequence)
        or not widths
        or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths)
    ):
        raise ValueError(f"`{name}` must be a non-empty sequence of positive ints; got {widths!r}")
    return tuple(int(w) for w in widths)


class ConvNet(nn.Module):
    """Stages of (3×3 conv → BN → act), 2×2 max-pooling between stages, global average pooling.

    Works for any input of at least 1×1 pixels (pooling uses ``ceil_mode``): 8×8 digits give 8 → 4 → 2, 28 px
    images 28 → 14 → 7, 32 px 32 → 16 → 8. Features: ``widths[-1]`` (128).

    Args:
        widths: channels per stage (default (32, 64, 128)).
        in_channels, activation: as every backbone.

    Example:
        >>> import torch
        >>> ConvNet(in_channels=1)(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 128])
    """

    def __init__(
        self, *, widths: Sequence[int] = CONVNET_WIDTHS, in_channels: int = 3, activation: str = "relu"
    ) -> None:
        super().__init__()
        activation = check_activation(activation)
        in_channels = check_in_channels(in_channels)
        widths = _check_widths(widths, "widths")
        layers: list[nn.Module] = []
        prev = in_channels
        for i, w in enumerate(widths):
            if i > 0:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            layers += [
                nn.Conv2d(prev, w, 3, padding=1, bias=False),
                nn.BatchNorm2d(w),
                make_activation(activation),
            ]
            prev = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = prev

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.features(x)).flatten(1)


class MLP(nn.Module):
    """Flatten → (Linear → BN → act) per hidden width; features: the last hidden width.

    Args:
        in_features: flattened input size; ``None`` uses ``nn.LazyLinear`` (materialised by the first forward
            — run one batch before building the optimiser).
        hidden: hidden widths (default (256, 256)).
        batch_norm: BatchNorm1d after each linear layer (default True).
        activation: as every backbone.

    Example:
        >>> import torch
        >>> MLP(in_features=64, hidden=(32,))(torch.zeros(4, 1, 8, 8)).shape
        torch.Size([4, 32])
    """

    def __init__(
        self,
        *,
        in_features: int | None = None,
        hidden: Sequence[int] = MLP_HIDDEN,
        batch_norm: bool = True,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        activation = check_activation(activation)
        hidden = _check_widths(hidden, "hidden")
        if in_features is not None and (
            isinstance(in_features, bool) or not isinstance(in_features, int) or in_features < 1
        ):
            raise ValueError(f"`in_features` must be a positive int or None; got {in_features!r}")
        layers: list[nn.Module] = [nn.Flatten()]
        prev = in_features
        for w in hidden:
            layers.append(nn.Linear(prev, w) if prev is not None else nn.LazyLinear(w))
            if batch_norm:
                layers.append(nn.BatchNorm1d(w))
            layers.append(make_activation(activation))
            prev = w
        self.net = nn.Sequential(*layers)
        self.num_features = hidden[-1]

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


@register_model("convnet", aliases=("small_convnet",))
def convnet(
    *,
    num_classes: int | None = None,
    in_channels: int = 3,
    activation: str = "relu",
    image_size=None,
    widths: Sequence[int] = CONVNET_WIDTHS,
) -> ConvNet:
    """Small ConvNet backbone (CPU-friendly; 128-d features by default)."""
    return ConvNet(widths=widths, in_channels=in_channels, activation=activation)


@register_model("mlp")
def mlp(
    *,
    num_classes: int | None = None,
    in_channels: int = 3,
    activation: str = "relu",
    image_size: Sequence[int] | int | None = None,
    in_features: int | None = None,
    hidden: Sequence[int] = MLP_HIDDEN,
    batch_norm: bool = True,
) -> MLP:
    """MLP backbone; the input size comes from ``in_features`` or ``in_channels × image_size`` (else lazy)."""
    if in_features is None and image_size is not None:
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if len(size) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in size):
            raise ValueError(
                f"`image_size` must be an int or a pair (H, W) of positive ints; got {image_size!r}"
            )
        in_features = check_in_channels(in_channels) * prod(size)
    return MLP(in_features=in_features, hidden=hidden, batch_norm=batch_norm, activation=activation)

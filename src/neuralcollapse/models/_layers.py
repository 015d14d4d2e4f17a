"""Building blocks shared by the backbones: the activation switch and argument checks.

Every backbone takes ``activation`` ("relu" or "silu") and builds each of its non-linearities as a separate
module from :func:`make_activation`, so "silu" leaves no ReLU anywhere (the LPC paper's backbones use SiLU in
every non-linearity, docs/methods.md §6.1). Activations are created out of place: forward hooks that read a
BatchNorm output (rank / independence analyses) would otherwise see it overwritten.
"""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["ACTIVATIONS", "check_activation", "check_in_channels", "make_activation", "replace_activations"]

#: Accepted values of every backbone's ``activation`` argument.
ACTIVATIONS: tuple[str, ...] = ("relu", "silu")

_ACTIVATION_TYPES = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.LeakyReLU, nn.Hardswish, nn.ELU)


def check_activation(activation: Any) -> str:
    """Return the normalised activation name or raise naming ``activation``."""
    if not isinstance(activation, str):
        raise TypeError(f"`activation` must be a str, one of {ACTIVATIONS}; got {type(activation).__name__}")
    name = activation.strip().lower()
    if name == "swish":  # the LPC paper's name for SiLU
        name = "silu"
    if name not in ACTIVATIONS:
        raise ValueError(
            f"`activation` must be one of {', '.join(map(repr, ACTIVATIONS))}; got {activation!r}"
        )
    return name


def check_in_channels(in_channels: Any) -> int:
    """A positive integer number of input channels."""
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"`in_channels` must be a positive int; got {in_channels!r}")
    return int(in_channels)


def make_activation(activation: str) -> nn.Module:
    """A fresh activation module: ``nn.ReLU()`` or ``nn.SiLU()`` (out of place).

    Example:
        >>> make_activation("silu")
        SiLU()
    """
    name = check_activation(activation)
    return nn.ReLU() if name == "relu" else nn.SiLU()


def replace_activations(module: nn.Module, activation: str) -> nn.Module:
    """Swap every activation *module* inside ``module`` for ``activation``; return ``module``.

    Used for third-party models (timm / torchvision adapters) built here; functional calls such as
    ``F.relu`` inside a foreign ``forward`` cannot be reached this way.
    """
    name = check_activation(activation)
    for child_name, child in module.named_children():
        if isinstance(child, _ACTIVATION_TYPES):
            setattr(module, child_name, make_activation(name))
        else:
            replace_activations(child, name)
    return module

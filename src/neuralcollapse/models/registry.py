"""The backbone registry: ``create(name, ...)``, ``names()`` and the ``register_model`` decorator.

Every registered entry is a factory ``f(*, num_classes=None, in_channels=3, activation="relu",
image_size=None, **kw) -> nn.Module`` returning a **backbone**: ``forward(x)`` gives pooled, flattened
features (N, d) and the module has ``num_features`` (= d). The head is separate (``neuralcollapse.heads``);
``num_classes`` is accepted by every factory and only used by architectures that depend on it.

Names with the prefixes ``timm:`` and ``torchvision:`` are handled by lazy adapters
(:mod:`neuralcollapse.models.adapters`); those packages are imported only then.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from .._registry import Registry
from ._layers import check_activation, check_in_channels

__all__ = ["ADAPTER_PREFIXES", "MODELS", "create", "names", "register_model"]

#: The model registry (one table; the CLI and recipes read it).
MODELS: Registry[Callable[..., nn.Module]] = Registry("model")

#: Name prefixes routed to the optional third-party adapters.
ADAPTER_PREFIXES: tuple[str, ...] = ("timm:", "torchvision:")


def register_model(name: str | None = None, *, aliases: tuple[str, ...] = ()) -> Callable:
    """Decorator filing a backbone factory under ``name`` (default: the function's name).

    The factory must accept ``num_classes``, ``in_channels``, ``activation`` and ``image_size`` as
    keywords and return a module with ``num_features``.

    Example:
        >>> @register_model("my_net")  # doctest: +SKIP
        ... def my_net(*, num_classes=None, in_channels=3, activation="relu", image_size=None):
        ...     return MyBackbone(in_channels, activation)
    """
    return MODELS.register(name, aliases=aliases)


def names() -> list[str]:
    """Canonical names of the registered backbones (the adapter prefixes are not listed)."""
    return MODELS.names()


def create(
    name: str,
    *,
    num_classes: int | None = None,
    in_channels: int = 3,
    activation: str = "relu",
    **kwargs: Any,
) -> nn.Module:
    """Build the backbone ``name``.

    Args:
        name: a registered name (``names()``; case-insensitive, ``-``/``_`` alike, aliases accepted) or
            ``"timm:<model>"`` / ``"torchvision:<model>"`` when that package is installed.
        num_classes: accepted by every backbone; ignored unless the architecture depends on it.
        in_channels: input channels (1 for MNIST-like data without replication).
        activation: ``"relu"`` or ``"silu"`` — replaces every non-linearity (LPC uses SiLU, docs/methods.md §6.1).
        **kwargs: architecture options (e.g. ``width`` for ResNet-32, ``hidden`` for the MLP). Options set
            to ``None`` are dropped so the architecture's own default applies.

    Returns:
        An ``nn.Module`` mapping (N, in_channels, H, W) to features (N, ``num_features``).

    Raises:
        ValueError: unknown ``name`` (the message lists the valid names), bad ``activation`` or
            ``in_channels``.
        ImportError: an adapter prefix whose package does not import.

    Example:
        >>> import torch
        >>> net = create("convnet", in_channels=1)
        >>> net(torch.zeros(2, 1, 8, 8)).shape == (2, net.num_features)
        True
    """
    activation = check_activation(activation)
    in_channels = check_in_channels(in_channels)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if isinstance(name, str):
        lowered = name.strip().lower()
        for prefix in ADAPTER_PREFIXES:
            if lowered.startswith(prefix):
                from .adapters import create_adapter

                return create_adapter(
                    name.strip(),
                    num_classes=num_classes,
                    in_channels=in_channels,
                    activation=activation,
                    **kwargs,
                )
    factory = MODELS.get(name)
    return factory(num_classes=num_classes, in_channels=in_channels, activation=activation, **kwargs)

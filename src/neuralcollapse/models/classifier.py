"""``Classifier``: a backbone and a head kept apart (docs/design.md, "A model is backbone → head")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

if TYPE_CHECKING:  # pragma: no cover - the head types live in neuralcollapse.heads
    from ..output import HeadOutput

__all__ = ["Classifier"]


class Classifier(nn.Module):
    """``forward(x) = head(backbone(x))`` returning the head's :class:`~neuralcollapse.output.HeadOutput`.

    The split is explicit so that metrics, OOD detectors and losses can read the backbone features, the head's
    ``weight``/``bias``/prototypes and the logits separately (timm-style ``forward_features`` /
    ``forward_head``).

    Args:
        backbone: a module returning features (N, d) with ``num_features`` = d (``models.create``).
        head: a module mapping features (N, d) to a ``HeadOutput`` (``neuralcollapse.heads``). Extra
            positional and keyword arguments of :meth:`forward` go to the head (e.g. margin-head targets).

    Raises:
        TypeError: ``backbone`` or ``head`` is not an ``nn.Module``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from neuralcollapse.output import HeadOutput
        >>> from neuralcollapse.models import create
        >>> class Linear(nn.Module):
        ...     def __init__(self, d, k):
        ...         super().__init__(); self.fc = nn.Linear(d, k)
        ...     def forward(self, h):
        ...         return HeadOutput(logits=self.fc(h), features=h)
        >>> backbone = create("convnet", in_channels=1)
        >>> model = Classifier(backbone, Linear(backbone.num_features, 10))
        >>> model(torch.zeros(2, 1, 8, 8)).logits.shape
        torch.Size([2, 10])
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        if not isinstance(backbone, nn.Module):
            raise TypeError(f"`backbone` must be an nn.Module; got {type(backbone).__name__}")
        if not isinstance(head, nn.Module):
            raise TypeError(f"`head` must be an nn.Module; got {type(head).__name__}")
        self.backbone = backbone
        self.head = head

    @property
    def num_features(self) -> int | None:
        """Width of the backbone features (``backbone.num_features``)."""
        value = getattr(self.backbone, "num_features", None)
        return int(value) if value is not None else None

    def forward_features(self, x: Tensor) -> Tensor:
        """Backbone features (N, d)."""
        return self.backbone(x)

    def forward_head(self, features: Tensor, *args: Any, **kwargs: Any) -> HeadOutput:
        """The head applied to precomputed backbone features."""
        return self.head(features, *args, **kwargs)

    def forward(self, x: Tensor, *args: Any, **kwargs: Any) -> HeadOutput:
        return self.forward_head(self.forward_features(x), *args, **kwargs)

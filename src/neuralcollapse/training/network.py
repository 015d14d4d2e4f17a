"""Build the pieces a run composes: the network (backbone → head), the objective and the monitor terms.

Data-dependent checks live here (the number of classes and the feature width are known only once the data
and the backbone exist): a fixed simplex ETF needs d ≥ K − 1 (else: use the ``prototypes`` head, which
works for any d), open-set known classes must be fewer than K.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from ..losses import TERMS, Objective, parse_objective
from .config import TrainConfig, head_fields, term_needs

__all__ = ["DataInfo", "build_monitor", "build_network", "build_objective", "feature_dim"]


@dataclass
class DataInfo:
    """What the model needs to know about the data (stored in checkpoints, so evaluation can rebuild it)."""

    dataset: str
    num_classes: int
    in_channels: int
    image_size: list[int]
    mean: list[float]
    std: list[float]
    train_size: int
    class_names: list[str] = field(default_factory=list)
    #: original class indices of the known classes (open-set runs), else empty.
    known_classes: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataInfo:
        return cls(**data)


def _head_name(name: str) -> str:
    from .. import heads
    from .config import _registry_of

    registry = _registry_of(heads)
    return registry.resolve(name) if registry is not None else name


def build_network(config: TrainConfig, info: DataInfo) -> nn.Module:
    """``models.Classifier(backbone, head)`` for ``config`` and the data ``info``.

    Raises:
        ValueError: a fixed ETF head with feature width d < K − 1 (the message suggests the ``prototypes``
            head or a wider backbone); errors of the model/head factories (unknown options) are re-raised
            with the setting that caused them.
    """
    from .. import heads, models

    try:
        backbone = models.create(
            config.model,
            num_classes=info.num_classes,
            in_channels=info.in_channels,
            activation=config.activation,
            image_size=tuple(info.image_size),
            **config.model_kwargs,
        )
    except TypeError as err:
        raise ValueError(f"`model` {config.model!r} with `model_kwargs` {config.model_kwargs}: {err}") from None
    dim = int(backbone.num_features)
    head_kwargs = dict(config.head_kwargs)
    k = info.num_classes
    if _head_name(config.head) == "etf":
        width = int(head_kwargs.get("dim", dim) or dim)
        if width < k - 1:
            if head_kwargs.get("dim"):
                # the head projects the backbone's features to its own size `dim`: that size is too small
                where = (f"the head's size is {width} (head_kwargs dim = {width}; the backbone {config.model!r} "
                         f"gives d = {dim}). Use head_kwargs dim >= {k - 1}, drop it (the ETF then has the "
                         "backbone's width), or")
            else:
                where = f"the backbone {config.model!r} gives d = {width}. Use a wider backbone, or"
            raise ValueError(
                f"a fixed simplex ETF needs feature dimension d >= K - 1 = {k - 1}; {where} --head prototypes "
                "(DL2PA / HPN hyperspherical prototypes work for any d)"
            )
    try:
        head = heads.create(config.head, in_features=dim, num_classes=k, **head_kwargs)
    except TypeError as err:
        raise ValueError(f"`head` {config.head!r} with `head_kwargs` {config.head_kwargs}: {err}") from None
    net = models.Classifier(backbone, head)
    _materialise(net, info)
    return net


def _materialise(net: nn.Module, info: DataInfo) -> None:
    """One tiny forward in eval mode: materialises lazy layers before the optimiser is built."""
    has_lazy = any(isinstance(m, nn.modules.lazy.LazyModuleMixin) for m in net.modules())
    if not has_lazy:
        return
    was_training = net.training
    net.eval()
    with torch.no_grad():
        net(torch.zeros(2, info.in_channels, *info.image_size))
    net.train(was_training)


def feature_dim(net: nn.Module, info: DataInfo) -> int:
    """Width of ``HeadOutput.features`` (what the NC metrics read), found with a two-sample forward."""
    was_training = net.training
    net.eval()
    param = next(net.parameters())
    with torch.no_grad():
        out = net(torch.zeros(2, info.in_channels, *info.image_size, device=param.device, dtype=param.dtype))
    net.train(was_training)
    return int(out.features.shape[1])


def build_objective(config: TrainConfig) -> Objective:
    """The run's :class:`~neuralcollapse.losses.Objective` from ``loss`` and ``loss_kwargs``."""
    return Objective(config.loss, term_kwargs={k: dict(v) for k, v in config.loss_kwargs.items()})


def build_monitor(config: TrainConfig, terms: Sequence[str] | None = None) -> Objective | None:
    """Zero-weight objective of the ``monitor_terms`` that are not in the loss and that the head supports
    (computed without gradient, for logging); None when there are none."""
    in_loss = {n for n, _ in parse_objective(config.loss)}
    provided = head_fields(config.head)
    chosen = []
    for name in config.monitor_terms if terms is None else terms:
        key = TERMS.resolve(name)
        needs = term_needs(key)
        if key not in in_loss and key not in chosen and all(f in provided for f in needs):
            chosen.append(key)
    return Objective([(n, 0.0) for n in chosen]) if chosen else None

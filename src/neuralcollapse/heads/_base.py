"""Head registry, the shared base class and small helpers of the heads package.

A head maps backbone features ``h`` (N, d) to a :class:`~neuralcollapse.output.HeadOutput` (docs/design.md, "The core
contract"). Every head is built as ``Head(in_features, num_classes, **kw)`` and exposes ``in_features``,
``num_classes``, ``weight`` (K, d') and ``bias`` (K or None) where d' is the width of ``HeadOutput.features``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._registry import Registry
from .._validation import check_int, check_matrix
from ..output import HeadOutput

__all__ = ["HEADS", "Head", "create", "names"]

#: Name → head class. ``heads.create(name, in_features=..., num_classes=..., **kw)`` builds one.
HEADS: Registry[type[nn.Module]] = Registry("head")


def create(name: str, *, in_features: int, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build the registered head ``name`` (or an alias of it).

    Args:
        name: a name from :func:`names` or an alias ("normalized", "normface", "dl2pa", "hyperspherical").
        in_features: width d of the backbone features the head receives.
        num_classes: number of classes K (≥ 2).
        **kwargs: the head's own keyword arguments.

    Returns:
        The head module.

    Raises:
        ValueError: unknown name (the message lists the valid names and the closest match), or a bad argument.

    Example:
        >>> from neuralcollapse import heads
        >>> heads.create("cosine", in_features=16, num_classes=4, temperature=0.1).num_classes
        4
    """
    return HEADS.create(name, in_features=in_features, num_classes=num_classes, **kwargs)


def names() -> list[str]:
    """Canonical names of the registered heads (sorted)."""
    return HEADS.names()



@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the block with one intra-op thread, then restore the caller's setting.

    Used by the prototype estimation (a long chain of small matrix products) and the assignment's score matrix:
    one thread is the fastest setting at the sizes used in practice (threads add synchronisation, badly so on a
    loaded machine), and it fixes the BLAS summation order, so results do not depend on the caller's thread
    count (identical prototypes and assignments on every DDP rank with the same build).
    """
    previous = torch.get_num_threads()
    if previous != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if previous != 1:
            torch.set_num_threads(previous)


def reset_linear_(weight: Tensor, bias: Tensor | None) -> None:
    """PyTorch's ``nn.Linear`` initialisation (Kaiming-uniform with a = √5; bias U(±1/√fan_in))."""
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in = weight.shape[1]
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        nn.init.uniform_(bias, -bound, bound)


def _autocast_enabled(device: torch.device) -> bool:
    """Whether autocast is on for ``device``'s type (mixed dtypes are then cast by the autocast)."""
    try:
        return bool(torch.is_autocast_enabled(device.type))
    except (TypeError, RuntimeError):  # an old signature without the device type, or an unknown device type
        return bool(torch.is_autocast_enabled())


def unit_rows(x: Tensor) -> Tensor:
    """Rows scaled to unit L2 norm (out of place; a zero row stays zero)."""
    return F.normalize(x, p=2.0, dim=1, eps=1e-12)


def working_dtype(x: Tensor) -> Tensor:
    """Half/bfloat16 inputs upcast to float32 for softmax-type computations; others unchanged."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class Head(nn.Module):
    """Base class of the classifier heads: stores and validates ``in_features``/``num_classes`` and checks the
    feature batch handed to ``forward``.

    Subclasses implement ``forward(h) -> HeadOutput`` and call :meth:`_check_features` first.

    Args:
        in_features: width d of the backbone features (≥ 1).
        num_classes: number of classes K (≥ 2).

    Raises:
        TypeError: a non-integer argument.
        ValueError: ``in_features`` < 1 or ``num_classes`` < 2.
    """

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.in_features = check_int(in_features, "in_features", minimum=1)
        self.num_classes = check_int(num_classes, "num_classes", minimum=2)

    def _check_features(self, h: Any, like: Tensor | None = None) -> Tensor:
        """``h`` must be a finite floating (N, in_features) tensor; with ``like`` (the weight ``h`` is multiplied
        with) also of its dtype unless autocast is on, as ``nn.Linear`` requires — but with a ``TypeError`` that
        names both dtypes instead of a matmul's RuntimeError. No silent cast: float64 features through a
        float32 head would lose their precision unnoticed; cast the head (``head.double()``) or the features."""
        check_matrix(h, "h", cols=self.in_features)
        if like is not None and h.dtype != like.dtype and not _autocast_enabled(h.device):
            raise TypeError(
                f"`h` has dtype {h.dtype} but the head's weight is {like.dtype}; cast the head "
                f"(head.to({h.dtype})) or the features (h.to({like.dtype})), or run under torch.autocast"
            )
        return h

    def predict(self, h: Tensor) -> Tensor:
        """Predicted class indices (N,): argmax of ``forward(h).logits``."""
        return self.forward(h).predict()

    def forward(self, h: Tensor) -> HeadOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_classes={self.num_classes}"

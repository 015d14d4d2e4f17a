"""Loss-term registry: the named terms an :class:`~neuralcollapse.losses.Objective` is built from.

A term is an ``nn.Module`` whose ``forward(output: HeadOutput, target, **context)`` returns a scalar.
Hyperparameters go to ``__init__`` (defaults = the papers' defaults, defined once in the loss module); the
optional ``context`` carries per-step inputs some terms read (``anticlass_target`` for soft OCCE targets,
``epoch``/``num_epochs`` for cyclical focal loss). A term declares the context keys it reads in
``context_keys``; the objective passes it those and nothing else.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor, nn

from .._registry import Registry
from ..output import HeadOutput
from ._common import LogitLossOptions

__all__ = ["TERMS", "LogitTerm", "LossTerm", "PrototypeTerm", "create_term", "register_term", "term_names"]

TERMS: Registry[type[LossTerm]] = Registry("loss term")


def register_term(name: str, *, aliases: tuple[str, ...] = ()):
    """Class decorator registering a :class:`LossTerm` subclass under ``name``."""
    return TERMS.register(name, aliases=aliases)


def create_term(name: str, **kwargs: Any) -> LossTerm:
    """Build the registered term ``name`` with hyperparameters ``kwargs``."""
    return TERMS.create(name, **kwargs)


def term_names() -> list[str]:
    """Names of all registered loss terms."""
    return TERMS.names()


class LossTerm(nn.Module):
    """Base class of the objective's terms: ``forward(output, target, **context) -> scalar``.

    Subclasses implement :meth:`compute`; ``forward`` filters ``context`` to ``context_keys``.
    ``needs`` names the :class:`HeadOutput` fields the term reads (checked, with a clear error). A term that
    shapes unit class prototypes (NTCE, NONL, NormFace, ArcFace, CosFace, DL2PA alignment, dot-regression)
    also needs ``cosines``: the head's logits must be the cosines against those prototypes, or training would
    shape one geometry and the head predict with another (a linear head's raw W rows are ``prototypes``, but
    its logits are W h + b). This is the one rule; ``neuralcollapse train`` reads the same ``needs``.
    """

    context_keys: ClassVar[tuple[str, ...]] = ()
    needs: ClassVar[tuple[str, ...]] = ("logits",)

    def forward(self, output: HeadOutput, target: Tensor, **context: Any) -> Tensor:
        for field_name in self.needs:
            if getattr(output, field_name, None) is None:
                what = (" (cosine logits against unit class prototypes: a cosine, prototypes, etf or class-mean "
                        "head, not a linear one)" if field_name == "cosines" else "")
                raise ValueError(
                    f"loss term {type(self).__name__} needs the head output's `{field_name}`{what}, which this "
                    f"head does not provide; use a head that returns it"
                )
        kwargs = {k: v for k, v in context.items() if k in self.context_keys and v is not None}
        return self.compute(output, target, **kwargs)

    def compute(self, output: HeadOutput, target: Tensor, **context: Any) -> Tensor:  # pragma: no cover
        raise NotImplementedError


class LogitTerm(LogitLossOptions, LossTerm):
    """A term computing its loss's functional on ``output.logits``, mean over samples, with the class
    ``weight`` and ``ignore_index`` given to ``__init__`` (see :class:`~._common.LogitLossOptions`)."""

    def compute(self, output: HeadOutput, target: Tensor) -> Tensor:
        return self._loss(output.logits, target)


class PrototypeTerm(LossTerm):
    """A term applying its loss module ``self.loss`` to ``(output.features, target, output.prototypes)``."""

    needs = ("features", "prototypes", "cosines")
    loss: nn.Module

    def compute(self, output: HeadOutput, target: Tensor, **context: Any) -> Tensor:
        return self.loss(output.features, target, output.prototypes)

"""``Objective``: a weighted sum of named loss terms (docs/design.md, "The core contract").

Examples of specs: ``"ce+occe"`` (the OCCE paper's Eq. 8 with γ = 1), ``"ce+0.1*occe"`` (γ = 0.1, the OOD
setting), ``"focal+occe"``, ``"ce+1e-2*lpc"``, ``"ntce"``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from ..output import HeadOutput
from ._terms import TERMS, LossTerm, create_term
from .cross_entropy import CrossEntropyTerm
from .occe import OCCETerm, ce_occe, weighted_ce_occe

__all__ = ["Objective", "ObjectiveOutput", "parse_objective"]

_NUMBER = r"[+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_TERM_RE = re.compile(rf"^(?:(?P<w1>{_NUMBER})\s*\*\s*)?(?P<name>[A-Za-z_][\w\-]*)(?:\s*\*\s*(?P<w2>{_NUMBER}))?$")


class ObjectiveOutput(NamedTuple):
    """``total`` (scalar with gradient) and ``parts``: each term's *unweighted* value, detached."""

    total: Tensor
    parts: dict[str, Tensor]


def parse_objective(spec: str) -> list[tuple[str, float]]:
    """Parse ``"ce+0.1*occe"`` into ``[("ce", 1.0), ("occe", 0.1)]`` (canonical term names).

    Grammar: terms joined by ``+``; each term ``name``, ``weight*name`` or ``name*weight``; weights are
    non-negative decimal numbers (``1e-3`` allowed). Unknown names raise ``ValueError`` listing the
    registered terms; a repeated term raises.

    Example:
        >>> parse_objective("ce + 0.1*occe")
        [('ce', 1.0), ('occe', 0.1)]
    """
    if not isinstance(spec, str):
        raise TypeError(f"objective spec must be a str; got {type(spec).__name__}")
    if not spec.strip():
        raise ValueError("objective spec is empty; expected e.g. 'ce+occe' or 'ce+0.1*occe'")
    # Split on '+' that is not part of an exponent: "1e+3" is one number, "ce+occe" two terms.
    pieces = re.split(r"(?<![\d.][eE])\+", spec)
    terms: list[tuple[str, float]] = []
    for raw in pieces:
        piece = raw.strip()
        if piece.startswith("-") or re.search(r"\*\s*-", piece):
            raise ValueError(f"weight of objective term {piece!r} in {spec!r} must be >= 0")
        m = _TERM_RE.match(piece)
        if not m or (m.group("w1") and m.group("w2")):
            raise ValueError(
                f"cannot parse objective term {piece!r} in {spec!r}; expected terms joined by '+', each "
                f"'name', 'weight*name' or 'name*weight' (e.g. '0.1*occe'); "
                f"registered terms: {', '.join(TERMS.names())}"
            )
        weight = float(m.group("w1") or m.group("w2") or 1.0)
        if weight == float("inf"):
            raise ValueError(f"weight of objective term {piece!r} in {spec!r} must be finite")
        terms.append((TERMS.resolve(m.group("name")), weight))
    names = [n for n, _ in terms]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"objective spec {spec!r} repeats term(s) {', '.join(dupes)}; give each term once")
    return terms


class Objective(nn.Module):
    """Weighted sum of registered loss terms; returns the total and the unweighted parts.

    L = Σ_t w_t · L_t(output, target). The OCCE paper's unified objective (Katsikas et al., TNNLS 2025,
    Eq. 8) is ``Objective.parse("ce+occe")``; any base loss composes the same way (``"focal+occe"``).

    When the objective holds both ``"ce"`` and ``"occe"`` with matching options (same class ``weight`` and
    ``ignore_index``, OCCE without ``eps``) and the step has no dual-head ``anti_logits`` and no soft
    ``anticlass_target``, the two are computed by one fused pass
    (:func:`~neuralcollapse.losses.weighted_ce_occe`): same values and gradients, at a fraction of the cost of
    the plain composition. Otherwise every term runs on its own.

    Args:
        terms: a spec string, or a sequence of names or ``(name, weight)`` pairs.
        term_kwargs: per-term hyperparameters, e.g. ``{"focal": {"gamma": 3.0}}``.
        fuse: allow the fused CE + OCCE pass (default True; False = always the plain composition).
        compile: use the ``torch.compile``-generated fused kernels (opt-in; compiles on the first step).

    Example:
        >>> import torch
        >>> from neuralcollapse.output import HeadOutput
        >>> obj = Objective.parse("ce+0.5*occe")
        >>> out = HeadOutput(logits=torch.randn(8, 5), features=torch.randn(8, 3))
        >>> total, parts = obj(out, torch.randint(0, 5, (8,)))
        >>> sorted(parts)
        ['ce', 'occe']
    """

    def __init__(
        self,
        terms: str | Sequence[str | tuple[str, float]],
        term_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        fuse: bool = True,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.fuse = bool(fuse)
        self.compile = bool(compile)
        pairs = self._normalise_terms(terms)
        kwargs = {TERMS.resolve(k): dict(v) for k, v in (term_kwargs or {}).items()}
        unused = sorted(set(kwargs) - {n for n, _ in pairs})
        if unused:
            raise ValueError(f"`term_kwargs` given for term(s) not in the objective: {', '.join(unused)}")
        self.terms = nn.ModuleDict({name: create_term(name, **kwargs.get(name, {})) for name, _ in pairs})
        self._weights: dict[str, float] = dict(pairs)

    @staticmethod
    def _normalise_terms(terms: str | Sequence[str | tuple[str, float]]) -> list[tuple[str, float]]:
        if isinstance(terms, str):
            return parse_objective(terms)
        if not isinstance(terms, Iterable):
            raise TypeError(f"`terms` must be a str or a sequence of (name, weight); got {type(terms).__name__}")
        pairs: list[tuple[str, float]] = []
        for item in terms:
            name, weight = (item, 1.0) if isinstance(item, str) else tuple(item)
            weight = float(weight)
            if not weight >= 0 or weight == float("inf"):
                raise ValueError(f"weight of term {name!r} must be finite and >= 0; got {weight}")
            pairs.append((TERMS.resolve(name), weight))
        if not pairs:
            raise ValueError("`terms` is empty; an objective needs at least one term")
        names = [n for n, _ in pairs]
        if len(set(names)) != len(names):
            raise ValueError(f"`terms` repeats a term: {names}")
        return pairs

    @classmethod
    def parse(
        cls, spec: str, *, fuse: bool = True, compile: bool = False, **term_kwargs: Mapping[str, Any]
    ) -> Objective:
        """Build from a spec string; other keyword arguments are per-term hyperparameters."""
        return cls(spec, term_kwargs=term_kwargs, fuse=fuse, compile=compile)

    @property
    def weights(self) -> dict[str, float]:
        """Current weight of each term (copy)."""
        return dict(self._weights)

    def set_weight(self, name: str, weight: float) -> None:
        """Change a term's weight (e.g. the LPC γ schedule or a margin ramp between epochs)."""
        key = TERMS.resolve(name)
        if key not in self._weights:
            raise ValueError(f"term {name!r} is not in this objective ({', '.join(self._weights)})")
        weight = float(weight)
        if not weight >= 0 or weight == float("inf"):
            raise ValueError(f"`weight` must be finite and >= 0; got {weight}")
        self._weights[key] = weight

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in TERMS and TERMS.resolve(name) in self._weights

    def term(self, name: str) -> LossTerm:
        return self.terms[TERMS.resolve(name)]

    @property
    def spec(self) -> str:
        return "+".join(n if w == 1.0 else f"{w:g}*{n}" for n, w in self._weights.items())

    def _fused(
        self, output: HeadOutput, target: Tensor, context: Mapping[str, Any]
    ) -> tuple[Tensor, dict[str, Tensor]] | None:
        """``(w_ce·CE + w_occe·OCCE, {"ce": CE, "occe": OCCE})`` from the fused pass, or None if it does not apply."""
        if not self.fuse or "ce" not in self.terms or "occe" not in self.terms:
            return None
        ce_term, occe_term = self.terms["ce"], self.terms["occe"]
        if type(ce_term) is not CrossEntropyTerm or type(occe_term) is not OCCETerm:
            return None
        if occe_term.eps is not None or output.anti_logits is not None:
            return None
        if context.get("anticlass_target") is not None or ce_term.ignore_index != occe_term.ignore_index:
            return None
        class_weight, other = ce_term.weight, occe_term.weight
        if (class_weight is None) != (other is None):
            return None
        if class_weight is not None and class_weight is not other and not torch.equal(class_weight, other):
            return None
        w_ce, w_occe = self._weights["ce"], self._weights["occe"]
        options = {"weight": class_weight, "ignore_index": ce_term.ignore_index}
        if self.compile:
            ce, oc = ce_occe(output.logits, target, compile=True, **options)
            total = w_ce * ce + w_occe * oc
        else:
            total, ce, oc = weighted_ce_occe(output.logits, target, w_ce, w_occe, **options)
        return total, {"ce": ce.detach(), "occe": oc.detach()}

    def forward(self, output: HeadOutput, target: Tensor, **context: Any) -> ObjectiveOutput:
        if not isinstance(output, HeadOutput):
            raise TypeError(f"`output` must be a HeadOutput; got {type(output).__name__}")
        fused = self._fused(output, target, context)
        total: Tensor | None = None if fused is None else fused[0]
        fused_parts = {} if fused is None else fused[1]
        parts: dict[str, Tensor] = {}
        for name, term in self.terms.items():
            if name in fused_parts:
                parts[name] = fused_parts[name]
                continue
            value = term(output, target, **context)
            parts[name] = value.detach()
            weight = self._weights[name]
            if weight == 0.0:
                continue
            weighted = value * weight
            total = weighted if total is None else total + weighted
        if total is None:  # every weight is zero: a graph-connected zero
            total = output.logits.sum() * 0.0
        return ObjectiveOutput(total, parts)

    def extra_repr(self) -> str:
        return f"spec={self.spec!r}, fuse={self.fuse}, compile={self.compile}"



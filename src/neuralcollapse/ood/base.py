"""The contract shared by every post-hoc OOD detector: ``fit(**inputs) -> self``, ``score(**inputs) -> Tensor``.

A detector declares which representations it reads (``requires``), its hyperparameter defaults
(``defaults``, the papers' / OpenOOD v1.5's values, written once in the detector's module) and the grid the
OpenOOD parameter search uses (``sweep``). The base class validates every input it is given before the
detector sees it, so each detector only supplies the maths (template method, as pytorch-metric-learning's
losses do): a missing input raises ``ValueError`` naming it, scoring before fitting raises
:class:`NotFittedError`, and the feature count seen in ``fit`` is checked again in ``score``.

Scores are 1-D tensors where **higher = more in-distribution** (OpenOOD's "conf"; pytorch-ood's detectors
return the negation). Detectors never modify their inputs.

A detector may also declare what it **assumes** of the representations (``assumptions``, names of
:data:`ASSUMPTIONS`): ``Detector.applicable(features=..., head=...)`` returns ``(False, reason)`` when the
given features or head violate one, so that reports can flag the detector and leave it out of averages
(e.g. DICE, ASH, SCALE and ReAct shape post-ReLU activations: they assume non-negative features whose
magnitude varies — an LPC head gives signed features, a cosine or prototype head normalised ones).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor

from .._validation import as_tensor, check_labels, check_tensor

__all__ = ["ASSUMPTIONS", "FIT_INPUTS", "SCORE_INPUTS", "Assumption", "Detector", "NotFittedError", "Requires"]

#: every keyword ``Detector.fit`` understands (a detector reads the subset named in ``requires.fit``)
FIT_INPUTS = ("features", "labels", "logits", "weight", "bias", "model")
#: every keyword ``Detector.score`` understands
SCORE_INPUTS = ("features", "logits", "inputs")


class NotFittedError(RuntimeError):
    """Raised when ``score`` is called on a detector that needs fitting before ``fit`` succeeded."""


class Requires(NamedTuple):
    """The inputs a detector reads in ``fit`` and in ``score`` (names from ``FIT_INPUTS``/``SCORE_INPUTS``).

    ``bias`` is never required: detectors that read ``weight`` treat a missing bias as zeros (a linear
    layer built with ``bias=False``).
    """

    fit: tuple[str, ...] = ()
    score: tuple[str, ...] = ()


class Assumption(NamedTuple):
    """Something a detector assumes of the representations it reads.

    Attributes:
        description: what is assumed, as a phrase ("non-negative (post-ReLU) features").
        violated: ``(features, head) -> reason | None``; ``features`` is an (N, D) float tensor or None,
            ``head`` the head's registry name or None. It returns None when the assumption holds **or cannot
            be judged** from what is given, else a short reason naming the evidence.
    """

    description: str
    violated: Callable[[Tensor | None, str | None], str | None]


def _negative_features(features: Tensor | None, head: str | None) -> str | None:
    if features is None:
        return None
    negative = features < 0
    if not bool(negative.any()):
        return None
    fraction = float(negative.double().mean())
    return f"the features have negative entries (a fraction {fraction:.3g} of them; min {float(features.min()):.3g})"


#: relative spread of the row norms below which features count as normalised (float32 round-off is ~1e-7)
NORMALISED_TOLERANCE = 1e-3


def _normalised_features(features: Tensor | None, head: str | None) -> str | None:
    if features is None or features.shape[0] < 2:
        return None
    norms = torch.linalg.vector_norm(features.double(), dim=1)
    mean = float(norms.mean())
    if mean > 0 and float(norms.max() - norms.min()) <= NORMALISED_TOLERANCE * mean:
        return f"every feature vector has norm {mean:.3g} (normalised features)"
    return None


#: Assumption name -> :class:`Assumption`; a detector lists the names it relies on in ``assumptions``.
#: Add an entry to declare a new kind of assumption.
ASSUMPTIONS: dict[str, Assumption] = {
    "nonnegative_features": Assumption("non-negative (post-ReLU) features", _negative_features),
    "unnormalised_features": Assumption("features whose magnitude varies (not normalised)", _normalised_features),
}


def _reject_unexpected(unexpected: Mapping[str, Any], stage: str, valid: tuple[str, ...]) -> None:
    if not unexpected:
        return
    name = next(iter(unexpected))
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f"; did you mean `{close[0]}`?" if close else ""
    raise TypeError(f"{stage}() got an unexpected input `{name}`; valid inputs: {', '.join(valid)}{hint}")


def _float_matrix(x: Any, name: str) -> Tensor:
    """A finite, non-empty, floating 2-D tensor; half precision is upcast to float32 (a new tensor)."""
    t = as_tensor(x, name)
    check_tensor(t, name, ndim=2, floating=True, finite=True)
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    return t


def _at_least_two_classes(t: Tensor, name: str, axis: str) -> None:
    if t.shape[0 if axis == "rows" else 1] < 2:
        raise ValueError(
            f"`{name}` must have at least 2 {axis} (one per class; K >= 2); got shape {tuple(t.shape)}"
        )


class Detector:
    """Base class of the post-hoc OOD detectors.

    Subclasses set the class attributes and implement ``_fit(**inputs)`` (receives exactly the validated
    inputs named in ``requires.fit``, plus ``bias`` when ``weight`` is read) and ``_score(**inputs)``.
    ``__init__`` of a subclass only validates and stores hyperparameters; learned state lives in attributes
    with a trailing underscore, set by ``fit`` (scikit-learn convention).

    Attributes:
        name: registry name.
        requires: ``Requires(fit=..., score=...)``.
        defaults: hyperparameter name -> default value (the source is stated in the detector's docstring).
        sweep: hyperparameter name -> grid of OpenOOD v1.5's parameter search (empty: no search).
        n_features_in_: feature dimension D seen in ``fit`` (from ``features`` or ``weight``), else None.
        n_classes_: number of classes K seen in ``fit`` (from ``logits`` or ``weight``), else None.
        assumptions: names of :data:`ASSUMPTIONS` the detector relies on (checked by :meth:`applicable`).

    Example:
        >>> import torch
        >>> class MeanLogit(Detector):  # a custom detector (register it with ``register_detector``)
        ...     requires = Requires(fit=(), score=("logits",))
        ...     def _score(self, *, logits):
        ...         return logits.mean(dim=1)
        >>> MeanLogit().score(logits=torch.tensor([[1.0, 3.0]]))
        tensor([2.])
    """

    name: ClassVar[str] = "detector"
    requires: ClassVar[Requires] = Requires()
    defaults: ClassVar[Mapping[str, Any]] = MappingProxyType({})
    sweep: ClassVar[Mapping[str, tuple[Any, ...]]] = MappingProxyType({})
    assumptions: ClassVar[tuple[str, ...]] = ()

    is_fitted_: bool = False
    n_features_in_: int | None = None
    n_classes_: int | None = None

    def __init__(self) -> None:
        """Detectors without hyperparameters take no arguments (an unknown one raises ``TypeError``)."""

    # ----------------------------------------------------------------------------------------------- API
    def fit(
        self,
        *,
        features: Tensor | None = None,
        labels: Tensor | None = None,
        logits: Tensor | None = None,
        weight: Tensor | None = None,
        bias: Tensor | None = None,
        model: torch.nn.Module | None = None,
        **unexpected: Any,
    ) -> Detector:
        """Estimate what the detector needs from in-distribution data (the training split unless stated).

        Inputs the detector does not read are ignored, so the same keyword set can be passed to any
        detector.

        Args:
            features: (N, D) penultimate features.
            labels: (N,) integer class indices in [0, K).
            logits: (N, K) logits.
            weight: (K, D) weight of the final linear layer (logits = features @ weight.T + bias).
            bias: (K,) its bias; zeros when omitted.
            model: ``nn.Module`` mapping inputs to logits (ODIN only).

        Returns:
            ``self``.

        Raises:
            ValueError: a required input is missing, has the wrong shape, NaN/Inf, is empty, or has fewer
                than two classes.
            TypeError: an unknown keyword, or an input of the wrong type.
        """
        _reject_unexpected(unexpected, "fit", FIT_INPUTS)
        given = {"features": features, "labels": labels, "logits": logits, "weight": weight, "bias": bias,
                 "model": model}
        self.is_fitted_ = False
        inputs = self._prepare_fit(given)
        self._fit(**inputs)
        self.is_fitted_ = True
        return self

    def score(
        self,
        *,
        features: Tensor | None = None,
        logits: Tensor | None = None,
        inputs: Tensor | None = None,
        **unexpected: Any,
    ) -> Tensor:
        """Score test samples; **higher = more in-distribution**.

        Args:
            features: (M, D) features, same D as in ``fit``.
            logits: (M, K) logits.
            inputs: (M, C, ...) model inputs (ODIN only).

        Returns:
            (M,) floating tensor on the device of the scored input.

        Raises:
            NotFittedError: the detector needs ``fit`` first.
            ValueError: a required input is missing or malformed, or its feature count differs from fit.
        """
        _reject_unexpected(unexpected, "score", SCORE_INPUTS)
        if self.requires.fit and not self.is_fitted_:
            raise NotFittedError(
                f"detector '{self.name}' is not fitted; call fit({', '.join(self.requires.fit)}=...) first"
            )
        prepared = self._prepare_score({"features": features, "logits": logits, "inputs": inputs})
        return self._score(**prepared)

    __call__ = score

    @classmethod
    def applicable(cls, *, features: Tensor | None = None, head: str | None = None) -> tuple[bool, str]:
        """Whether the detector's ``assumptions`` hold for these representations (docs/guide.md §6).

        Call it with the features the detector is fitted on (the ID training features). An assumption that
        cannot be judged from what is given (``features=None``) counts as holding. Subclasses may override it
        for checks that are not in :data:`ASSUMPTIONS`.

        Args:
            features: (N, D) features.
            head: registry name of the model's head (e.g. ``"cosine"``), or None.

        Returns:
            ``(True, "")``, or ``(False, reason)`` where ``reason`` names the detector, the assumption and
            the evidence.

        Raises:
            TypeError: ``features`` not a tensor, or ``head`` not a string.
            ValueError: ``features`` not a finite, floating 2-D tensor.

        Example:
            >>> import torch
            >>> from neuralcollapse import ood
            >>> ok, why = ood.get("react").applicable(features=torch.tensor([[0.5, -1.0], [2.0, 0.0]]))
            >>> ok, why.split(";")[0]
            (False, 'react assumes non-negative (post-ReLU) features')
            >>> ood.get("msp").applicable(features=torch.tensor([[0.5, -1.0]]))
            (True, '')
        """
        if head is not None and not isinstance(head, str):
            raise TypeError(f"`head` must be the head's name (str) or None; got {type(head).__name__}")
        if features is not None:
            features = _float_matrix(features, "features")
        for name in cls.assumptions:
            assumption = ASSUMPTIONS[name]
            reason = assumption.violated(features, head)
            if reason is not None:
                return False, f"{cls.name} assumes {assumption.description}; {reason}"
        return True, ""

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters as a dict (keys of ``defaults``)."""
        return {key: getattr(self, key) for key in self.defaults}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    # ------------------------------------------------------------------------------------ to implement
    def _fit(self, **inputs: Any) -> None:
        """Estimate state from validated inputs (default: nothing to estimate)."""

    def _score(self, **inputs: Any) -> Tensor:  # pragma: no cover - every detector overrides it
        raise NotImplementedError

    # ------------------------------------------------------------------------------------- validation
    def _missing(self, stage: str, need: tuple[str, ...], given: Mapping[str, Any]) -> None:
        for key in need:
            if given.get(key) is None:
                raise ValueError(
                    f"`{key}` is required by detector '{self.name}' in {stage}() "
                    f"(it reads {', '.join(need)}); got None"
                )

    def _prepare_fit(self, given: Mapping[str, Any]) -> dict[str, Any]:
        need = self.requires.fit
        self._missing("fit", need, given)
        out: dict[str, Any] = {}
        if "model" in need:
            if not isinstance(given["model"], torch.nn.Module):
                raise TypeError(f"`model` must be a torch.nn.Module; got {type(given['model']).__name__}")
            out["model"] = given["model"]
        for key in ("features", "logits", "weight"):
            if key in need:
                # detached: fitted state must not keep the caller's autograd graph alive
                out[key] = _float_matrix(given[key], key).detach()
        if "logits" in out:
            _at_least_two_classes(out["logits"], "logits", "columns")
        if "weight" in out:
            w = out["weight"]
            _at_least_two_classes(w, "weight", "rows")
            b = given.get("bias")
            if b is None:
                b = torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
            else:
                b = as_tensor(b, "bias")
                check_tensor(b, "bias", ndim=1, floating=True, finite=True)
                if b.shape[0] != w.shape[0]:
                    raise ValueError(
                        f"`bias` must have one entry per row of `weight` ({w.shape[0]}); got shape "
                        f"{tuple(b.shape)}"
                    )
            out["bias"] = b.detach().to(w.dtype)
            if "features" in out and out["features"].shape[1] != w.shape[1]:
                raise ValueError(
                    f"`weight` must have one column per feature ({out['features'].shape[1]}); got shape "
                    f"{tuple(w.shape)}"
                )
            if "logits" in out and out["logits"].shape[1] != w.shape[0]:
                raise ValueError(
                    f"`logits` must have one column per row of `weight` ({w.shape[0]}); got shape "
                    f"{tuple(out['logits'].shape)}"
                )
        num_classes = (
            out["logits"].shape[1] if "logits" in out else out["weight"].shape[0] if "weight" in out else None
        )
        if "labels" in need:
            labels = as_tensor(given["labels"], "labels")
            check_tensor(labels, "labels", ndim=1, integer=True)
            check_labels(labels, "labels", num_classes=num_classes)
            if num_classes is None and int(labels.min()) < 0:
                raise ValueError(f"`labels` must be class indices >= 0; got minimum {int(labels.min())}")
            out["labels"] = labels
        rows = {k: out[k] for k in ("features", "labels", "logits") if k in out}
        if len({int(t.shape[0]) for t in rows.values()}) > 1:
            desc = ", ".join(f"`{k}` has {int(t.shape[0])}" for k, t in rows.items())
            raise ValueError(f"fit inputs must have the same number of samples; {desc}")
        if "features" in out:
            self.n_features_in_ = int(out["features"].shape[1])
        elif "weight" in out:
            self.n_features_in_ = int(out["weight"].shape[1])
        else:
            self.n_features_in_ = None
        self.n_classes_ = None if num_classes is None else int(num_classes)
        return out

    def _prepare_score(self, given: Mapping[str, Any]) -> dict[str, Any]:
        need = self.requires.score
        self._missing("score", need, given)
        out: dict[str, Any] = {}
        if "features" in need:
            f = _float_matrix(given["features"], "features")
            if self.n_features_in_ is not None and f.shape[1] != self.n_features_in_:
                raise ValueError(
                    f"`features` must have {self.n_features_in_} columns (the feature count seen in fit); "
                    f"got shape {tuple(f.shape)}"
                )
            out["features"] = f
        if "logits" in need:
            z = _float_matrix(given["logits"], "logits")
            _at_least_two_classes(z, "logits", "columns")
            if self.n_classes_ is not None and z.shape[1] != self.n_classes_:
                raise ValueError(
                    f"`logits` must have {self.n_classes_} columns (the class count seen in fit); "
                    f"got shape {tuple(z.shape)}"
                )
            out["logits"] = z
        if "inputs" in need:
            x = as_tensor(given["inputs"], "inputs")
            check_tensor(x, "inputs", min_ndim=2, floating=True, finite=True)
            out["inputs"] = x
        if "features" in out and "logits" in out and out["features"].shape[0] != out["logits"].shape[0]:
            raise ValueError(
                "score inputs must have the same number of samples; "
                f"`features` has {out['features'].shape[0]}, `logits` has {out['logits'].shape[0]}"
            )
        return out

"""Shared input checks. Every public function validates its input through these helpers so that bad input
raises a ``ValueError``/``TypeError`` naming the argument and what was expected — never a silent NaN.

Data-dependent checks (finiteness, label range) synchronise with the device; they can be switched off for
a hot loop with :func:`validation` (``with neuralcollapse.validation(False): ...``) and are skipped
automatically while ``torch.compile`` traces.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "as_tensor",
    "check_choice",
    "check_finite",
    "check_floating_dtype",
    "check_has_data",
    "check_int",
    "check_labels",
    "check_logits_target",
    "check_matrix",
    "check_positive",
    "check_probability",
    "check_same_length",
    "check_tensor",
    "data_checks_enabled",
    "finite_or_none",
    "validation",
]

_ENABLED = True


@contextlib.contextmanager
def validation(enabled: bool = True) -> Iterator[None]:
    """Context manager switching the data-dependent checks (finiteness, label range) on or off.

    Shape and dtype checks always run; they cost nothing.

    Example:
        >>> import neuralcollapse as nc
        >>> with nc.validation(False):
        ...     pass  # hot loop without device synchronisation
    """
    global _ENABLED
    previous = _ENABLED
    _ENABLED = bool(enabled)
    try:
        yield
    finally:
        _ENABLED = previous


def data_checks_enabled() -> bool:
    """True when value checks (which synchronise with the device) should run."""
    if not _ENABLED:
        return False
    compiler = getattr(torch, "compiler", None)
    if compiler is not None and hasattr(compiler, "is_compiling") and compiler.is_compiling():
        return False
    return True


def _shape(x: Any) -> str:
    return str(tuple(x.shape)) if hasattr(x, "shape") else type(x).__name__


def as_tensor(x: Any, name: str, *, dtype: torch.dtype | None = None) -> Tensor:
    """Accept a tensor, a NumPy array or a sequence; return a tensor (no copy for tensors)."""
    if isinstance(x, Tensor):
        return x if dtype is None else x.to(dtype)
    if isinstance(x, np.ndarray | list | tuple) or (np.isscalar(x) and not isinstance(x, str | bytes)):
        arr = np.asarray(x)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"`{name}` must be numeric; got an array of dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
        return t if dtype is None else t.to(dtype)
    raise TypeError(f"`{name}` must be a torch.Tensor or numpy array; got {type(x).__name__}")


def check_tensor(
    x: Any,
    name: str,
    *,
    ndim: int | Sequence[int] | None = None,
    min_ndim: int | None = None,
    floating: bool = False,
    integer: bool = False,
    finite: bool = False,
    nonempty: bool = True,
) -> Tensor:
    """Check type, rank, dtype family, emptiness and finiteness of ``x``; return it unchanged."""
    if not isinstance(x, Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor; got {type(x).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in allowed:
            want = " or ".join(f"{d}-D" for d in allowed)
            raise ValueError(f"`{name}` must be {want}; got shape {_shape(x)}")
    if min_ndim is not None and x.ndim < min_ndim:
        raise ValueError(f"`{name}` must have at least {min_ndim} dimensions; got shape {_shape(x)}")
    if floating and not x.is_floating_point():
        raise TypeError(f"`{name}` must be a floating-point tensor; got dtype {x.dtype}")
    if integer and (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool):
        raise TypeError(f"`{name}` must be an integer tensor (class indices); got dtype {x.dtype}")
    if nonempty and x.numel() == 0:
        raise ValueError(f"`{name}` is empty (shape {_shape(x)}); an empty batch has no defined value")
    if finite:
        check_finite(x, name)
    return x


def check_has_data(x: Any, name: str) -> Any:
    """Raise a ``ValueError`` naming ``name`` if ``x`` is a meta tensor (shape and dtype, no values): the
    value checks and every computation that reads values (``.item()``, ``.numpy()``) would fail with an
    unrelated error. Shape-only checks accept meta tensors; this runs before the ones that read values."""
    if isinstance(x, Tensor) and x.is_meta:
        raise ValueError(
            f"`{name}` is a meta tensor (shape {tuple(x.shape)}, no values); this needs its values: create it on "
            "a real device (e.g. 'cpu' or 'cuda')"
        )
    return x


def check_floating_dtype(dtype: Any, name: str = "dtype") -> torch.dtype:
    """A floating-point ``torch.dtype`` (the dtype argument of a function returning unit vectors or the like);
    an integer, bool or complex dtype would silently truncate or misbehave."""
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"`{name}` must be a torch.dtype; got {type(dtype).__name__}")
    if not dtype.is_floating_point:
        raise TypeError(f"`{name}` must be a floating-point dtype (e.g. torch.float32); got {dtype}")
    return dtype


def check_finite(x: Tensor, name: str) -> Tensor:
    """Raise if ``x`` holds NaN or ±Inf (or is a meta tensor, without values). The extremes propagate NaN and
    expose ±Inf, and two reductions are an order of magnitude cheaper than ``isfinite(x).all()`` on large
    tensors."""
    if data_checks_enabled() and x.is_floating_point() and x.numel():
        check_has_data(x, name)
        extremes = torch.stack([x.amax(), x.amin()])
        if not bool(torch.isfinite(extremes).all()):
            n_bad = int((~torch.isfinite(x)).sum())
            raise ValueError(f"`{name}` contains {n_bad} NaN or Inf value(s)")
    return x


def check_matrix(
    x: Any, name: str, *, rows: int | None = None, cols: int | None = None, finite: bool = True
) -> Tensor:
    """A finite floating 2-D tensor with optional fixed row/column counts."""
    check_tensor(x, name, ndim=2, floating=True, finite=finite)
    if rows is not None and x.shape[0] != rows:
        raise ValueError(f"`{name}` must have {rows} rows; got shape {_shape(x)}")
    if cols is not None and x.shape[1] != cols:
        raise ValueError(f"`{name}` must have {cols} columns; got shape {_shape(x)}")
    return x


def check_labels(
    labels: Any,
    name: str,
    *,
    num_classes: int | None = None,
    length: int | None = None,
    ignore_index: int | None = None,
) -> Tensor:
    """1-D (or any-D) integer class indices in ``[0, num_classes)`` (``ignore_index`` allowed)."""
    check_tensor(labels, name, integer=True, nonempty=False)
    if length is not None and labels.shape[0] != length:
        raise ValueError(f"`{name}` must have length {length}; got shape {_shape(labels)}")
    if num_classes is not None and data_checks_enabled() and labels.numel():
        check_has_data(labels, name)
        valid = labels if ignore_index is None else labels[labels != ignore_index]
        if valid.numel():
            lo, hi = int(valid.min()), int(valid.max())
            if lo < 0 or hi >= num_classes:
                raise ValueError(
                    f"`{name}` must hold class indices in [0, {num_classes}); got values in [{lo}, {hi}]"
                )
    return labels


def check_logits_target(
    logits: Any,
    target: Any,
    *,
    logits_name: str = "logits",
    target_name: str = "target",
    ignore_index: int | None = None,
    min_classes: int = 2,
) -> int:
    """Validate ``F.cross_entropy``-style inputs: logits (N, K) or (N, K, d1, ...), integer target (N,) or
    (N, d1, ...). Returns K."""
    check_tensor(logits, logits_name, min_ndim=2, floating=True, finite=True)
    num_classes = logits.shape[1]
    if num_classes < min_classes:
        raise ValueError(
            f"`{logits_name}` must have at least {min_classes} classes along dim 1; got K={num_classes}"
        )
    check_tensor(target, target_name, integer=True, nonempty=False)
    expected = (logits.shape[0], *logits.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(
            f"`{target_name}` must have shape {expected} to match `{logits_name}` {_shape(logits)}; "
            f"got {_shape(target)}"
        )
    check_labels(target, target_name, num_classes=num_classes, ignore_index=ignore_index)
    return num_classes


def check_int(value: Any, name: str, *, minimum: int | None = None) -> int:
    """An integer (not a bool; NumPy integers accepted) ≥ ``minimum``; returned as ``int``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"`{name}` must be an integer; got {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}; got {value}")
    return int(value)


def check_positive(value: Any, name: str, *, strict: bool = True, allow_inf: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"`{name}` must be a real number; got {type(value).__name__}")
    v = float(value)
    if math.isnan(v) or (math.isinf(v) and not allow_inf):
        raise ValueError(f"`{name}` must be finite; got {value}")
    if (strict and v <= 0) or (not strict and v < 0):
        raise ValueError(f"`{name}` must be {'>' if strict else '>='} 0; got {value}")
    return v


def check_probability(value: Any, name: str, *, low_open: bool = False, high_open: bool = False) -> float:
    """A number in [0, 1] (ends optionally open)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"`{name}` must be a real number; got {type(value).__name__}")
    v = float(value)
    lo_ok = v > 0 if low_open else v >= 0
    hi_ok = v < 1 if high_open else v <= 1
    if not (lo_ok and hi_ok):
        lb = "(" if low_open else "["
        rb = ")" if high_open else "]"
        raise ValueError(f"`{name}` must be in {lb}0, 1{rb}; got {value}")
    return v


def check_choice(value: Any, name: str, choices: Iterable[Any]) -> Any:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def check_same_length(*pairs: tuple[str, Any]) -> int:
    """All named tensors share their first dimension; return it."""
    lengths = {name: int(x.shape[0]) for name, x in pairs if x is not None}
    if len(set(lengths.values())) > 1:
        desc = ", ".join(f"`{n}` has {v}" for n, v in lengths.items())
        raise ValueError(f"inputs must have the same number of samples; {desc}")
    return next(iter(lengths.values())) if lengths else 0


def warn_percentile_fraction(value: float, name: str) -> None:
    """Percentiles are in percent here; warn on a value that looks like a fraction."""
    if 0 < value < 1:
        warnings.warn(
            f"`{name}`={value} is a percentile in percent (0-100); {value} looks like a fraction",
            UserWarning,
            stacklevel=3,
        )


def finite_or_none(x: Any) -> float | None:
    """``float(x)`` when it is a finite number, else None (for JSON summaries that must not hold NaN/inf).

    Example:
        >>> finite_or_none("0.5"), finite_or_none(float("nan")), finite_or_none(None)
        (0.5, None, None)
    """
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


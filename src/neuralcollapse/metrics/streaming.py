"""Streaming neural-collapse metrics: ``NeuralCollapse``, a ``torchmetrics.Metric`` (docs/methods.md §9).

The only module of the core that imports ``torchmetrics`` (an optional dependency, ``pip install
neural-collapse[train]``); ``neuralcollapse.metrics`` exposes the class lazily. The maths is shared with
:func:`neuralcollapse.metrics.neural_collapse` through ``_nc_update``/``_nc_compute``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from .._validation import check_choice, check_finite, check_labels, check_matrix, check_tensor
from .neural_collapse import (
    DEFAULT_GLOBAL_MEAN,
    GLOBAL_MEANS,
    _nc_compute,
    _nc_update,
    _NCStats,
    _predict,
    _validate_classifier,
)

__all__ = ["NeuralCollapse"]

_STATE_DTYPES = {
    "counts": torch.int64,
    **dict.fromkeys(("shift", "sums", "scatter", "ncc_mismatches", "ncc_samples"), torch.float64),
}
_REFERENCES = ("weight", "bias", "class_means")  # stored float64 reference tensors (buffers, may be None)
_SHIFT_READY_KEY = "shift_ready"  # extra state_dict entries saved with the states (persistent(True))
_UPDATE_COUNT_KEY = "update_count"


def _same_tensor(a: Tensor | None, b: Tensor | None) -> bool:
    """Exactly the same values (None only equals None); used to key the ``compute_with_cache`` value."""
    if a is None or b is None:
        return a is b
    return a.shape == b.shape and a.dtype == b.dtype and a.device == b.device and torch.equal(a, b)


def _rank_zero(stacked: Tensor) -> Tensor:
    """DDP reduction of the shift: every rank holds rank 0's (broadcast in the first update); keep one."""
    return stacked[0]


class NeuralCollapse(Metric):
    r"""Neural-collapse metrics accumulated over batches and processes in one pass (docs/methods.md §9).

    Same keys, definitions and conventions as :func:`neuralcollapse.metrics.neural_collapse` (Papyan et al.,
    PNAS 2020; Zhu et al., NeurIPS 2021; OCCE paper A.9; rhubarbwu/neural-collapse): **every value is ≥ 0
    and 0 at perfect collapse — lower = more collapsed** (``higher_is_better = False``).

    State (float64, O(K·d + d²) memory whatever N): counts n_k (int64), shifted class sums
    s̃_k = Σ_{y_i=k}(h_i − c), shifted scatter Q = Σ_i (h_i − c)(h_i − c)ᵀ and two NCC counters, all
    sum-reduced across processes (``dist_reduce_fx="sum"``). The shift c is the first batch's mean,
    broadcast from rank 0 in the first ``update`` and kept until ``reset()``; it prevents cancellation
    when the features' common offset dwarfs their spread. Then μ_k = c + s̃_k/n_k and
    Σ_W = (Q − Σ_k s̃_k s̃_kᵀ/n_k)/N. No B×d×d tensor is ever built (Q += X̃ᵀX̃ per batch).

    The classifier enters at ``compute(weight, bias)`` — pass the live head's parameters there — or at
    construction for a fixed head (a snapshot is stored); ``compute``'s pair, when given, replaces the
    constructor's. ``ncc_mismatch`` needs the class means in advance (``class_means=`` or
    :meth:`set_class_means`, e.g. ``previous.means()``) and a prediction per sample (``logits`` in
    ``update``, else the constructor's ``weight``/``bias``); it is reported only if every sample was counted.

    Under DDP every process must call ``update`` at least once: its first call takes part in broadcasting
    c. ``compute()`` returns the same values on every rank. Calling the metric (``forward``) only
    accumulates and returns None: one mini-batch rarely holds every class and NC metrics of a batch are
    not meaningful. ``compute()`` is not cached by default (``compute_with_cache=False``) because its
    result depends on its arguments; with ``compute_with_cache=True`` the cached value is keyed on the
    classifier's values (and the options), so a call with other (or in-place modified) arguments recomputes.

    Integrity (the torchmetrics contract): the statistics are float64 (counts int64) and the stored reference
    tensors (``weight``, ``bias``, ``class_means``) float64 whatever the module is cast to —
    ``.to(torch.float16)``, ``set_dtype(...)``, a parent's ``.half()``/``.bfloat16()`` move them between
    devices but never change (or round) their dtype. ``persistent(True)`` saves the states, the shift's
    "fixed" flag and the reference tensors in ``state_dict``, so that loading them into a fresh metric and
    updating on gives the uninterrupted stream's values; by default (non-persistent) none of them is in
    ``state_dict`` and a strict load of a parent's checkpoint into a fresh parent works.
    ``torch.jit.script`` is not supported (torchmetrics metrics with Python-side state are not scriptable);
    ``torch.compile`` of the model around it is unaffected.

    Args:
        num_classes: K ≥ 2.
        dim: feature dimension d ≥ 1.
        global_mean: ``"weighted"`` (sample mean, Zhu et al.; default) or ``"unweighted"`` (mean of the
            class means, Papyan's notebook).
        class_means: (K, d) uncentred class means for ``ncc_mismatch``; a row of NaN marks a class the NCC
            must never pick. Default None (no ``ncc_mismatch``).
        weight: (K, d) classifier rows for a fixed head (snapshot), or None.
        bias: (K,) classifier bias (needs ``weight``), or None.
        allow_missing_classes: drop classes without samples at ``compute`` instead of raising.
        **kwargs: ``torchmetrics.Metric`` options (``process_group``, ``sync_on_compute``, ...).

    Raises:
        ValueError / TypeError: invalid sizes, option or tensors, naming the argument; in ``update``: wrong
            feature dimension, labels outside [0, K), NaN/Inf, mismatched lengths.

    Example:
        >>> import torch
        >>> from neuralcollapse.metrics import NeuralCollapse, neural_collapse
        >>> g = torch.Generator().manual_seed(0)
        >>> h, y = torch.randn(300, 8, generator=g), torch.arange(300) % 3
        >>> metric = NeuralCollapse(num_classes=3, dim=8)
        >>> for i in range(0, 300, 128):
        ...     metric.update(h[i : i + 128], y[i : i + 128])
        >>> w = torch.randn(3, 8, generator=g)
        >>> out = metric.compute(weight=w)
        >>> abs(out["nc1"] - neural_collapse(h, y, weight=w)["nc1"]) < 1e-12
        True
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    counts: Tensor
    sums: Tensor
    scatter: Tensor
    ncc_mismatches: Tensor
    ncc_samples: Tensor
    shift: Tensor

    def __init__(
        self,
        num_classes: int,
        dim: int,
        global_mean: str = DEFAULT_GLOBAL_MEAN,
        class_means: Tensor | None = None,
        weight: Tensor | None = None,
        bias: Tensor | None = None,
        allow_missing_classes: bool = False,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("compute_with_cache", False)
        super().__init__(**kwargs)
        for name, value, low in (("num_classes", num_classes, 2), ("dim", dim, 1)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"`{name}` must be an int; got {type(value).__name__}")
            if value < low:
                raise ValueError(f"`{name}` must be >= {low}; got {value}")
        self.num_classes = num_classes
        self.dim = dim
        self.global_mean = check_choice(global_mean, "global_mean", GLOBAL_MEANS)
        self.allow_missing_classes = bool(allow_missing_classes)

        f64 = torch.float64
        self.add_state("counts", torch.zeros(num_classes, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("sums", torch.zeros(num_classes, dim, dtype=f64), dist_reduce_fx="sum")
        self.add_state("scatter", torch.zeros(dim, dim, dtype=f64), dist_reduce_fx="sum")
        self.add_state("ncc_mismatches", torch.zeros((), dtype=f64), dist_reduce_fx="sum")
        self.add_state("ncc_samples", torch.zeros((), dtype=f64), dist_reduce_fx="sum")
        self.add_state("shift", torch.zeros(dim, dtype=f64), dist_reduce_fx=_rank_zero)
        self._shift_ready = False

        weight, bias = _validate_classifier(weight, bias, num_classes, dim)
        # reference tensors: buffers (they follow .to(device)), non-persistent like torchmetrics states
        stored = (weight, bias)
        for name, value in zip(("weight", "bias"), stored, strict=True):
            self.register_buffer(name, None if value is None else value.detach().to(f64).clone(), persistent=False)
        self.register_buffer("class_means", None, persistent=False)
        self._cache_key: tuple[Any, ...] | None = None
        if class_means is not None:
            self.set_class_means(class_means)

    # ------------------------------------------------------------------ state helpers
    def _stats(self) -> _NCStats:
        """The states as ``_NCStats``."""
        return _NCStats(**{name: getattr(self, name) for name in _STATE_DTYPES})

    def _store(self, stats: _NCStats) -> None:
        for name in _STATE_DTYPES:
            setattr(self, name, getattr(stats, name))

    def _init_shift(self, features: Tensor) -> None:
        """Fix c = this batch's mean; under DDP rank 0's value is broadcast to every rank (docs/methods.md §9)."""
        shift = features.mean(dim=0) if features.shape[0] else torch.zeros_like(self.shift)
        if self.distributed_available_fn():
            import torch.distributed as dist

            group = self.process_group
            src = 0 if group is None else dist.get_global_rank(group, 0)
            dist.broadcast(shift, src=src, group=group)
        self.shift = shift
        self._shift_ready = True

    def set_class_means(self, class_means: Tensor) -> NeuralCollapse:
        """Set the (K, d) uncentred class means that ``ncc_mismatch`` compares with; returns ``self``.

        A row of NaN marks a class that the nearest-class-mean classifier must never pick (as returned by
        :meth:`means` for a class without samples). Affects the samples passed to later ``update`` calls.
        """
        check_tensor(class_means, "class_means", ndim=2, floating=True)
        if tuple(class_means.shape) != (self.num_classes, self.dim):
            raise ValueError(
                f"`class_means` must have shape (K, d) = ({self.num_classes}, {self.dim}); "
                f"got {tuple(class_means.shape)}"
            )
        rows_ok = torch.isfinite(class_means).all(dim=1) | torch.isnan(class_means).all(dim=1)
        if not bool(rows_ok.all()):
            raise ValueError("`class_means` rows must be finite, or all NaN to mark an absent class")
        self.class_means = class_means.detach().to(device=self.sums.device, dtype=torch.float64).clone()
        return self

    def means(self) -> Tensor:
        """(K, d) float64 class means μ_k = c + s̃_k/n_k of everything seen (all processes); NaN rows for
        classes without samples. Feed them to :meth:`set_class_means` of the next pass for NCC."""
        with self.sync_context(dist_sync_fn=self.dist_sync_fn, should_sync=self._to_sync, should_unsync=True):
            counts = self.counts.to(torch.float64)[:, None]
            means = self.shift + self.sums / counts.clamp_min(1.0)
            return means.masked_fill(counts == 0, float("nan")).clone()

    # ------------------------------------------------------------------ torchmetrics API
    def update(self, features: Tensor, labels: Tensor, logits: Tensor | None = None) -> None:
        """Accumulate a batch.

        Args:
            features: (B, d) floating features (any float dtype; accumulated in float64). B = 0 is a no-op.
            labels: (B,) integer class indices in [0, K).
            logits: (B, K) network outputs whose argmax is the prediction for ``ncc_mismatch``; optional.
        """
        check_tensor(features, "features", ndim=2, floating=True, nonempty=False)
        if features.shape[1] != self.dim:
            raise ValueError(f"`features` must have d={self.dim} columns; got shape {tuple(features.shape)}")
        check_finite(features, "features")
        check_tensor(labels, "labels", ndim=1, integer=True, nonempty=False)
        check_labels(labels, "labels", num_classes=self.num_classes, length=features.shape[0])
        if logits is not None:
            check_matrix(logits, "logits", rows=features.shape[0], cols=self.num_classes)

        device = self.sums.device
        x = features.detach().to(device=device, dtype=torch.float64)
        if not self._shift_ready and (x.shape[0] or self.distributed_available_fn()):
            # under DDP even an empty first batch takes part in the broadcast (a collective)
            self._init_shift(x)
        if x.shape[0] == 0:
            return
        predictions = None
        if self.class_means is not None:
            lg = None if logits is None else logits.detach().to(device)
            predictions = _predict(x, lg, self.weight, self.bias)
        stats = _nc_update(
            self._stats(),
            x,
            labels.to(device=device, dtype=torch.int64),
            predictions=predictions,
            class_means=self.class_means,
        )
        self._store(stats)

    def compute(self, weight: Tensor | None = None, bias: Tensor | None = None) -> dict[str, float]:
        """The metrics of everything seen (all processes); keys as :func:`neural_collapse`.

        Args:
            weight: (K, d) classifier rows; when given, ``weight``/``bias`` replace the constructor's.
            bias: (K,) classifier bias (needs ``weight``).
        """
        if weight is None:
            if bias is not None:
                raise ValueError("`bias` needs `weight` (NC4 = ||b + W mu_G||^2); got bias without weight")
            weight, bias = self.weight, self.bias
        else:
            _validate_classifier(weight, bias, self.num_classes, self.dim)
        return _nc_compute(
            self._stats(),
            None if weight is None else weight.detach(),
            None if bias is None else bias.detach(),
            global_mean=self.global_mean,
            allow_missing_classes=self.allow_missing_classes,
        )

    def forward(self, *args: Any, **kwargs: Any) -> None:
        """Same as :meth:`update` (returns None): NC metrics of a single mini-batch are not meaningful."""
        self.update(*args, **kwargs)

    def reset(self) -> None:
        """Clear the statistics; the next ``update`` fixes (and broadcasts) a new shift."""
        super().reset()
        self._shift_ready = False

    def merge_state(self, incoming_state: dict[str, Any] | Metric) -> None:
        """Add another ``NeuralCollapse``'s (or a state dict's) statistics, converting them exactly to this
        metric's shift (``_NCStats.reshifted``) so that states accumulated with different shifts add up."""
        if isinstance(incoming_state, NeuralCollapse):
            if (incoming_state.num_classes, incoming_state.dim) != (self.num_classes, self.dim):
                raise ValueError(
                    f"`incoming_state` must have (K, d) = ({self.num_classes}, {self.dim}); "
                    f"got ({incoming_state.num_classes}, {incoming_state.dim})"
                )
            incoming_ready = incoming_state._shift_ready
            state = incoming_state.metric_state
        elif isinstance(incoming_state, dict):
            incoming_ready = True
            state = incoming_state
        else:
            raise TypeError(
                f"`incoming_state` must be a NeuralCollapse or a dict of states; got {type(incoming_state).__name__}"
            )
        missing = [name for name in self._defaults if name not in state]
        if missing:
            raise ValueError(f"`incoming_state` lacks the state(s) {missing}")
        incoming = _NCStats(**{name: state[name].to(self.sums.device) for name in self._defaults})
        if not self._shift_ready and incoming_ready:
            # nothing accumulated here yet (all sums are zero): adopt the incoming shift as is
            self.shift = incoming.shift.clone()
            self._shift_ready = True
        merged = incoming.reshifted(self.shift)
        super().merge_state({name: getattr(merged, name) for name in self._defaults})
        self._computed = None
        if isinstance(incoming_state, NeuralCollapse):
            self._update_count += incoming_state._update_count

    def _apply(self, fn: Callable[[Tensor], Tensor], exclude_state: Any = "") -> Any:
        """Follow ``.to(device)``/``.cuda()``/``.cpu()``, but never change a dtype: a cast (``.to(dtype)``,
        ``set_dtype``, a parent's ``.half()``, e.g. by a precision plugin) must not round the float64
        statistics, the int64 counts or the float64 reference tensors, not even on the way back."""

        def device_only(t: Tensor) -> Tensor:
            # learn what ``fn`` does from an empty tensor of the same dtype; apply it only when it keeps the
            # dtype (a device move, share_memory_, ...), else move the device alone — no value is converted
            probe = fn(torch.empty(0, dtype=t.dtype, device=t.device))
            return fn(t) if probe.dtype == t.dtype else t.to(device=probe.device)

        return super()._apply(device_only, exclude_state)

    # ------------------------------------------------------------------ persistence and caching
    def persistent(self, mode: bool = False) -> None:
        """Whether ``state_dict`` holds the states, the shift's flag and the reference tensors (default
        False, as torchmetrics). Save with ``persistent(True)`` to resume a stream exactly."""
        super().persistent(mode)
        for name in _REFERENCES:
            if mode:
                self._non_persistent_buffers_set.discard(name)
            else:
                self._non_persistent_buffers_set.add(name)

    def state_dict(  # type: ignore[override]
        self, destination: dict[str, Any] | None = None, prefix: str = "", keep_vars: bool = False
    ) -> dict[str, Any]:
        """As ``torchmetrics.Metric.state_dict``; with persistent states also ``shift_ready``, whether the
        shift c is fixed (it is then restored rather than re-fixed by the next ``update``), and
        ``update_count``."""
        destination = super().state_dict(destination=destination, prefix=prefix, keep_vars=keep_vars)
        if self._persistent.get("shift", False):
            destination[prefix + _SHIFT_READY_KEY] = torch.tensor(self._shift_ready)
            destination[prefix + _UPDATE_COUNT_KEY] = torch.tensor(self._update_count)
        return destination

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        """Load the states (as torchmetrics: whenever present), the shift's flag and the reference tensors
        (validated, kept float64 on this metric's device)."""
        ready = state_dict.pop(prefix + _SHIFT_READY_KEY, None)
        update_count = state_dict.pop(prefix + _UPDATE_COUNT_KEY, None)
        shift_loaded = prefix + "shift" in state_dict
        for name in _REFERENCES:
            key = prefix + name
            if key not in state_dict:
                continue
            value = state_dict[key]
            if name == "class_means":
                self.set_class_means(value)
            else:  # weight is loaded before bias, which needs it
                pair = (value, None) if name == "weight" else (self.weight, value)
                _validate_classifier(*pair, self.num_classes, self.dim)
                setattr(self, name, value.detach().to(device=self.sums.device, dtype=torch.float64).clone())
            if name in self._non_persistent_buffers_set:
                del state_dict[key]  # loaded above; the module would report it as unexpected
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        for name, dtype in _STATE_DTYPES.items():  # keep the float64/int64 contract whatever was saved
            value = getattr(self, name)
            setattr(self, name, value.to(device=self.sums.device, dtype=dtype))
        if shift_loaded:
            # an older checkpoint without the flag: the shift is fixed once anything was accumulated
            self._shift_ready = bool(ready) if ready is not None else bool(self.counts.sum() > 0)
        if update_count is not None:
            self._update_count = int(update_count)
        self._computed = None
        self._cache_key = None

    def _wrap_compute(self, compute: Callable[..., Any]) -> Callable[..., Any]:
        """torchmetrics' caching wrapper, keyed on the arguments: with ``compute_with_cache=True`` the cached
        value is returned only for the same classifier values and options (torchmetrics ignores the
        arguments)."""
        cached = super()._wrap_compute(compute)

        @functools.wraps(compute)
        def keyed(weight: Tensor | None = None, bias: Tensor | None = None) -> Any:
            if weight is None and bias is None:
                effective = (self.weight, self.bias)
            else:
                effective = (weight, bias)
            key = tuple(None if t is None else t.detach() for t in effective)
            options = (self.global_mean, self.allow_missing_classes)
            previous = getattr(self, "_cache_key", None)
            if self._computed is not None and not (
                previous is not None
                and previous[0] == options
                and all(_same_tensor(a, b) for a, b in zip(previous[1], key, strict=True))
            ):
                self._computed = None
            value = cached(weight, bias)
            if self.compute_with_cache:
                self._cache_key = (options, tuple(None if t is None else t.clone() for t in key))
            return dict(value) if isinstance(value, dict) else value

        return keyed

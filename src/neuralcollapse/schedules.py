"""Hyperparameter schedules: the LPC penalty weight γ and the margin ramps of ArcFace/CosFace.

Every schedule is a **pure function of training progress with a stated unit**: the 1-indexed epoch (evaluated
before that epoch's training), or — for γ, ``unit="step"`` — the number of optimizer steps already taken. It
keeps no counters, so resuming from a checkpoint at any epoch or step gives exactly the values of an
uninterrupted run (the reference LPC code keeps γ as running state and shifts its phase-2 start on resume).
``state_dict`` therefore holds only the configuration. No Lightning here: the training callbacks call these
objects.

Why a step unit for γ (docs/methods.md §6.2): LPC only keeps its accuracy while the classifier can out-grow the
penalty. Under AdamW the classifier's row norm grows about linearly in *optimizer steps*, so the paper's
"×1.05 per epoch" is really "×1.05 per 391 steps" (CIFAR-10 at batch 128). On a small data set an epoch has
far fewer steps and the per-epoch schedule outruns the classifier; pacing γ in steps keeps the paper's balance.

Sources: L. Sbailò, L. M. Ghiringhelli, "Latent Point Collapse on a Low Dimensional Embedding in Deep Neural
Network Classifiers" (arXiv 2310.08224) and its reference code luigisbailo/lpc (γ schedules; ArcFace/CosFace
ramps of the baselines) — docs/methods.md §5, §6.2.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np

from ._validation import check_choice, check_positive

__all__ = [
    "GAMMA_KINDS",
    "GAMMA_PRESETS",
    "GAMMA_UNITS",
    "MARGIN_PRESETS",
    "PAPER_STEPS_PER_EPOCH",
    "GammaSchedule",
    "MarginSchedule",
    "MarginValues",
    "auto_period",
]

#: Kinds of :class:`GammaSchedule`.
GAMMA_KINDS = ("geometric", "two_phase", "constant", "linear", "cosine")

#: Progress units of :class:`GammaSchedule`: schedule epochs are training epochs, or blocks of ``period``
#: optimizer steps.
GAMMA_UNITS = ("epoch", "step")

#: Optimizer steps in one epoch of the paper's setting (CIFAR-10, 50,000 images, batch 128: ⌈50000/128⌉): the
#: "reference epoch" that a step-paced schedule uses to reproduce the paper's γ-per-step trajectory anywhere.
PAPER_STEPS_PER_EPOCH = 391

#: Named γ schedules (γ in the code convention of ``losses.lpc_penalty``: mean over batch and dims).
GAMMA_PRESETS: dict[str, dict[str, Any]] = {
    # The paper's form, with the values of the reference version implementing it (docs/methods.md §6.2).
    "lpc-paper": {"kind": "geometric", "gamma0": 0.01, "factor": 1.05, "gamma_max": 1e6, "cap": True},
    # The same reference version's SVHN setting.
    "lpc-paper-svhn": {"kind": "geometric", "gamma0": 0.01, "factor": 1.03, "gamma_max": 1e5, "cap": True},
    # The current reference: doubling every 5 epochs up to 1e3, then ×1.25 every 5 epochs up to 1e6.
    "lpc-2025": {
        "kind": "two_phase",
        "gamma0": 1e-4,
        "factor": 2.0,
        "step": 5,
        "gamma_mid": 1e3,
        "factor2": 1.25,
        "step2": 5,
        "gamma_max": 1e6,
    },
    # Its ImageNet setting: phase-1 step of one epoch.
    "lpc-2025-imagenet": {
        "kind": "two_phase",
        "gamma0": 1e-4,
        "factor": 2.0,
        "step": 1,
        "gamma_mid": 1e3,
        "factor2": 1.25,
        "step2": 5,
        "gamma_max": 1e6,
    },
}

# Parameters each kind reads, with the defaults used when one is not given.
_KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "geometric": {k: v for k, v in GAMMA_PRESETS["lpc-paper"].items() if k != "kind"},
    "two_phase": {k: v for k, v in GAMMA_PRESETS["lpc-2025"].items() if k != "kind"},
    "constant": {"gamma0": GAMMA_PRESETS["lpc-paper"]["gamma0"]},
    "linear": {"gamma0": 0.01, "gamma_max": 1e6, "ramp_epochs": None, "start_epoch": 1},
    "cosine": {"gamma0": 0.01, "gamma_max": 1e6, "ramp_epochs": None, "start_epoch": 1},
}


def _check_count(value: Any, name: str, minimum: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"`{name}` must be an int ({what}); got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum} ({what}); got {value}")
    return int(value)


def _check_epoch(epoch: Any, name: str = "epoch") -> int:
    return _check_count(epoch, name, 1, "1-indexed epoch")


def _check_step(step: Any, name: str = "step") -> int:
    return _check_count(step, name, 0, "optimizer steps taken, 0-indexed")


def _check_nonnegative(value: Any, name: str) -> float:
    return check_positive(value, name, strict=False)


class GammaSchedule:
    """The LPC penalty weight γ as a pure function of the 1-indexed epoch (applied before the epoch's training).

    Kinds (docs/methods.md §6.2; Sbailò & Ghiringhelli, luigisbailo/lpc):

    - ``"geometric"`` (the paper's form): γ_e = min(γ0·f^{e−1}, γ_max); the powers are formed by repeated
      multiplication, as the reference does. ``cap=False`` reproduces the reference, which multiplies while
      γ < γ_max and so lands its last step slightly above γ_max (then stays there). Preset ``"lpc-paper"``
      (the default): γ0 = 0.01, f = 1.05, γ_max = 1e6 (``"lpc-paper-svhn"``: f = 1.03, γ_max = 1e5).
    - ``"two_phase"`` (current reference, preset ``"lpc-2025"``): γ starts at γ0 = 1e−4; phase 1: at every
      epoch e with (e − 1) mod ``step`` = 0, γ ← min(``factor``·γ, ``gamma_mid``) (2, 1e3, step 5); E1 = the
      first epoch at which γ = ``gamma_mid``; phase 2: at E1 + 1 and every ``step2`` epochs after,
      γ ← min(``factor2``·γ, γ_max) (1.25, 1e6, step 5); then constant. ``"lpc-2025-imagenet"``: step 1.
    - ``"constant"``: γ0 for every epoch.
    - ``"linear"`` / ``"cosine"``: γ_e = γ0 + (γ_max − γ0)·α(t), t = clamp(e − ``start_epoch``, 0, T)/T with
      T = ``ramp_epochs``; α(t) = t (linear) or (1 − cos πt)/2 (cosine) — the reference's ablation forms with
      t0 = ``start_epoch`` (default 1, so γ_1 = γ0 and γ_{1+T} = γ_max).

    γ is in the code convention of :func:`neuralcollapse.losses.lpc_penalty` (γ_paper = γ_code/d).

    **Progress unit.** With ``unit="epoch"`` (default; the paper verbatim) the "e" above is the training epoch
    and γ changes before each epoch. With ``unit="step"`` it is a *schedule epoch* of ``period`` optimizer steps:
    after s optimizer steps γ = γ_{⌊s/period⌋ + 1}, and γ changes before the step that starts a new block
    (:meth:`at_step`). ``period = PAPER_STEPS_PER_EPOCH`` (391) replays the paper's CIFAR-10 trajectory per
    optimizer step on any data set; :func:`auto_period` fits a schedule into a run that is too short for that.

    Args:
        kind: one of :data:`GAMMA_KINDS`; default "geometric".
        gamma0, factor, gamma_max, cap, step, gamma_mid, factor2, step2, ramp_epochs, start_epoch: the kind's
            parameters (above); one not given takes the kind's default (its preset's value); one the kind does
            not read raises. ``ramp_epochs`` is required for "linear" and "cosine".
        unit: "epoch" (default) or "step" (:data:`GAMMA_UNITS`).
        period: optimizer steps per schedule epoch; required with ``unit="step"``, not allowed otherwise.

    Raises:
        ValueError: unknown kind, unit or preset, a parameter the kind does not use, out-of-range values
            (γ0 ≥ 0, factors > 0, γ0 ≤ gamma_mid ≤ γ_max, steps ≥ 1, period ≥ 1), a missing ``ramp_epochs`` or
            ``period``; on call, an epoch < 1 or a step < 0.
        TypeError: non-numeric parameters; a non-integer epoch or step.

    Example:
        >>> sched = GammaSchedule.from_preset("lpc-paper")
        >>> [round(sched(e), 6) for e in (1, 2, 3)]
        [0.01, 0.0105, 0.011025]
        >>> GammaSchedule.from_preset("lpc-2025")(6)
        0.0004
        >>> restored = GammaSchedule()
        >>> restored.load_state_dict(sched.state_dict())
        >>> restored(300) == sched(300)
        True
        >>> paced = GammaSchedule.from_preset("lpc-paper", unit="step", period=391)
        >>> [round(paced.at_step(s), 6) for s in (0, 390, 391, 782)]
        [0.01, 0.01, 0.0105, 0.011025]
    """

    def __init__(
        self,
        kind: str = "geometric",
        *,
        gamma0: float | None = None,
        factor: float | None = None,
        gamma_max: float | None = None,
        cap: bool | None = None,
        step: int | None = None,
        gamma_mid: float | None = None,
        factor2: float | None = None,
        step2: int | None = None,
        ramp_epochs: int | None = None,
        start_epoch: int | None = None,
        unit: str = "epoch",
        period: int | None = None,
    ) -> None:
        self._set_pacing(unit, period)
        given = {
            "gamma0": gamma0,
            "factor": factor,
            "gamma_max": gamma_max,
            "cap": cap,
            "step": step,
            "gamma_mid": gamma_mid,
            "factor2": factor2,
            "step2": step2,
            "ramp_epochs": ramp_epochs,
            "start_epoch": start_epoch,
        }
        self._configure(kind, {k: v for k, v in given.items() if v is not None})

    def _set_pacing(self, unit: str, period: Any) -> None:
        check_choice(unit, "unit", GAMMA_UNITS)
        if unit == "step":
            if period is None:
                raise ValueError(
                    "`period` (optimizer steps per schedule epoch) is required with unit='step'; "
                    f"{PAPER_STEPS_PER_EPOCH} replays the paper's CIFAR-10 pacing"
                )
            period = _check_epoch(period, "period")
        elif period is not None:
            raise ValueError(f"`period` applies only to unit='step'; got period={period!r} with unit={unit!r}")
        self.unit = unit
        self.period = period

    def _configure(self, kind: str, given: Mapping[str, Any]) -> None:
        check_choice(kind, "kind", GAMMA_KINDS)
        defaults = _KIND_DEFAULTS[kind]
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            raise ValueError(
                f"`{unknown[0]}` is not a parameter of the {kind!r} γ schedule; its parameters are "
                f"{', '.join(defaults)}"
            )
        params = {**defaults, **given}
        self.kind = kind
        self.params = self._validate(kind, params)

    @staticmethod
    def _validate(kind: str, p: dict[str, Any]) -> dict[str, Any]:
        p = dict(p)
        p["gamma0"] = _check_nonnegative(p["gamma0"], "gamma0")
        if "gamma_max" in p:
            p["gamma_max"] = _check_nonnegative(p["gamma_max"], "gamma_max")
        for name in ("factor", "factor2"):
            if name in p:
                p[name] = check_positive(p[name], name)
        for name in ("step", "step2", "start_epoch"):
            if name in p:
                p[name] = _check_epoch(p[name], name)
        if "cap" in p:
            if not isinstance(p["cap"], bool):
                raise TypeError(f"`cap` must be a bool; got {type(p['cap']).__name__}")
        if kind == "two_phase":
            p["gamma_mid"] = check_positive(p["gamma_mid"], "gamma_mid")
            if not p["gamma0"] <= p["gamma_mid"] <= p["gamma_max"]:
                raise ValueError(
                    "`gamma_mid` must lie between `gamma0` and `gamma_max`; got "
                    f"gamma0={p['gamma0']}, gamma_mid={p['gamma_mid']}, gamma_max={p['gamma_max']}"
                )
        if kind in ("linear", "cosine"):
            if p["ramp_epochs"] is None:
                raise ValueError(f"`ramp_epochs` is required for the {kind!r} γ schedule (length T of the ramp)")
            p["ramp_epochs"] = _check_epoch(p["ramp_epochs"], "ramp_epochs")
        return p

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> GammaSchedule:
        """The named schedule of :data:`GAMMA_PRESETS` ("lpc-paper", "lpc-paper-svhn", "lpc-2025",
        "lpc-2025-imagenet"), with optional parameter overrides (e.g. ``cap=False``)."""
        check_choice(name, "name", tuple(GAMMA_PRESETS))
        config = {**GAMMA_PRESETS[name], **overrides}
        return cls(**config)

    def __call__(self, epoch: int) -> float:
        """γ for the 1-indexed schedule epoch ``epoch`` (the training epoch when ``unit="epoch"``)."""
        e = _check_epoch(epoch)
        p = self.params
        if self.kind == "constant":
            return p["gamma0"]
        if self.kind in ("linear", "cosine"):
            t = min(max(e - p["start_epoch"], 0), p["ramp_epochs"]) / p["ramp_epochs"]
            alpha = t if self.kind == "linear" else 0.5 * (1.0 - math.cos(math.pi * t))
            return p["gamma0"] + (p["gamma_max"] - p["gamma0"]) * alpha
        value = p["gamma0"]
        # The sequence becomes constant after finitely many steps for growing schedules; islice stops there.
        for value in itertools.islice(self._iterate(), e):  # noqa: B007 (the last value is the answer)
            pass
        return value

    def _iterate(self) -> Iterator[float]:
        """γ_1, γ_2, ... up to the epoch after which γ no longer changes (then the iterator ends)."""
        p = self.params
        if self.kind == "geometric":
            gamma, factor, gmax = p["gamma0"], p["factor"], p["gamma_max"]
            if p["cap"]:
                gamma = min(gamma, gmax)
            while True:
                yield gamma
                if gamma >= gmax and factor >= 1.0:
                    return
                nxt = gamma * factor
                if p["cap"]:
                    nxt = min(nxt, gmax)
                if nxt == gamma:
                    return
                gamma = nxt
        # two_phase
        gamma, mid, gmax = p["gamma0"], p["gamma_mid"], p["gamma_max"]
        first_plateau = None  # E1
        for e in itertools.count(1):
            if first_plateau is None:
                if (e - 1) % p["step"] == 0:
                    gamma = min(gamma * p["factor"], mid)
                if gamma >= mid:
                    first_plateau = e
            elif (e - first_plateau - 1) % p["step2"] == 0:
                gamma = min(gamma * p["factor2"], gmax)
            yield gamma
            if first_plateau is not None and (gamma >= gmax or p["factor2"] == 1.0):
                return

    def at_step(self, step: int) -> float:
        """γ after ``step`` optimizer steps (0 before the first), for ``unit="step"``: γ_{⌊step/period⌋ + 1}."""
        if self.unit != "step":
            raise ValueError("`at_step` needs unit='step' (this schedule is paced per epoch: call it with the epoch)")
        s = _check_step(step)
        return self(s // self.period + 1)

    def value(self, *, epoch: int, step: int) -> float:
        """γ at the current progress, whichever the unit: the 1-indexed training ``epoch`` for ``unit="epoch"``,
        the optimizer ``step`` count for ``unit="step"`` (the other argument is ignored)."""
        return self.at_step(step) if self.unit == "step" else self(epoch)

    def final_epoch(self) -> int:
        """The first schedule epoch from which γ no longer changes (1 for a constant schedule)."""
        p = self.params
        if self.kind == "constant":
            return 1
        if self.kind in ("linear", "cosine"):
            return p["start_epoch"] + p["ramp_epochs"]
        n = 0
        for n, _ in enumerate(itertools.islice(self._iterate(), _MAX_SCHEDULE_EPOCHS), start=1):  # noqa: B007
            pass
        return n

    def values(self, num_epochs: int) -> list[float]:
        """[γ_1, ..., γ_{num_epochs}] per schedule epoch (for plots and logs)."""
        n = _check_epoch(num_epochs, "num_epochs")
        return [self(e) for e in range(1, n + 1)]

    def with_period(self, period: int) -> GammaSchedule:
        """The same schedule paced in optimizer steps, ``period`` steps per schedule epoch."""
        config = {k: v for k, v in self.state_dict().items() if k not in ("unit", "period")}
        return GammaSchedule(**config, unit="step", period=period)

    def describe(self, steps_per_epoch: int | None = None, epochs: int | None = None) -> str:
        """One line on the pacing, e.g. for ``--print-config``: how γ grows and when it reaches its final value
        (in steps and epochs when the run's ``steps_per_epoch`` is known)."""
        end = self.final_epoch()
        last = self(end)
        if self.unit == "epoch":
            text = f"γ per epoch ({self.kind}), γ_1 = {self(1):g}, final γ = {last:g} from epoch {end}"
            if epochs is not None and end > epochs:
                text += f" — not reached in {epochs} epochs (γ at the last epoch: {self(epochs):g})"
            return text
        reach = (end - 1) * self.period
        text = (f"γ per {self.period} optimizer steps ({self.kind}), γ_1 = {self(1):g}, final γ = {last:g} "
                f"from step {reach}")
        if steps_per_epoch:
            text += f" (epoch {reach // steps_per_epoch + 1})"
            if epochs is not None and reach >= steps_per_epoch * epochs:
                text += (f" — not reached in {epochs} epochs (γ at the end: "
                         f"{self.at_step(steps_per_epoch * epochs - 1):g})")
        return text

    def state_dict(self) -> dict[str, Any]:
        """The configuration (kind, parameters, unit, period). γ is a pure function of the progress, so this is
        all a resume needs."""
        state = {"kind": self.kind, **self.params, "unit": self.unit}
        if self.unit == "step":
            state["period"] = self.period
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the configuration saved by :meth:`state_dict`."""
        if not isinstance(state_dict, Mapping) or "kind" not in state_dict:
            raise ValueError("`state_dict` must be a mapping with a 'kind' entry (from GammaSchedule.state_dict)")
        config = dict(state_dict)
        kind = config.pop("kind")
        self._set_pacing(config.pop("unit", "epoch"), config.pop("period", None))
        self._configure(kind, {k: v for k, v in config.items() if v is not None})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GammaSchedule) and self.state_dict() == other.state_dict()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        if self.unit == "step":
            args += f", unit='step', period={self.period}"
        return f"GammaSchedule({self.kind!r}, {args})"


#: Guard for :meth:`GammaSchedule.final_epoch` on schedules that grow very slowly.
_MAX_SCHEDULE_EPOCHS = 10_000_000


def auto_period(
    schedule: GammaSchedule,
    total_steps: int,
    *,
    reach_fraction: float = 0.75,
    max_period: int = PAPER_STEPS_PER_EPOCH,
) -> int:
    """Optimizer steps per schedule epoch so that ``schedule`` reaches its final γ within a run.

    period = min(``max_period``, ⌊``reach_fraction``·``total_steps``/(E − 1)⌋), at least 1, where E =
    :meth:`GammaSchedule.final_epoch`. The default cap is the paper's own pacing (391 steps per ×1.05 on
    CIFAR-10), so a long run gets the paper's γ-per-step trajectory and a short one the fastest pacing that still
    leaves ``1 − reach_fraction`` of the run at the final γ. A pacing faster than the paper's can outrun the
    classifier's growth; the training callback logs q = ‖w_row‖²·d/γ and warns when it drops below 1.

    Example:
        >>> auto_period(GammaSchedule.from_preset("lpc-paper"), 1_000_000)
        391
        >>> auto_period(GammaSchedule.from_preset("lpc-paper"), 50_000)
        99
    """
    if not isinstance(schedule, GammaSchedule):
        raise TypeError(f"`schedule` must be a GammaSchedule; got {type(schedule).__name__}")
    total = _check_epoch(total_steps, "total_steps")
    fraction = check_positive(reach_fraction, "reach_fraction")
    if fraction > 1.0:
        raise ValueError(f"`reach_fraction` must lie in (0, 1]; got {reach_fraction}")
    cap = _check_epoch(max_period, "max_period")
    increments = schedule.final_epoch() - 1
    if increments <= 0:
        return cap
    return max(1, min(cap, int(fraction * total // increments)))


class MarginValues(NamedTuple):
    """Scale s and margin m of a margin loss for one epoch."""

    scale: float
    margin: float


#: The LPC paper's baseline ramps (docs/methods.md §5; reference ``trainer.py``): s 16 → 64 (+1/epoch); ArcFace
#: m 0.1 → 0.5 rad (+0.01/epoch); CosFace the same scale ramp, margin 0.1 → 0.35 (end point not recoverable
#: from the paper; recorded choice).
MARGIN_PRESETS: dict[str, dict[str, float]] = {
    "lpc-arcface": {
        "scale_start": 16.0,
        "scale_end": 64.0,
        "scale_step": 1.0,
        "margin_start": 0.1,
        "margin_end": 0.5,
        "margin_step": 0.01,
    },
    "lpc-cosface": {
        "scale_start": 16.0,
        "scale_end": 64.0,
        "scale_step": 1.0,
        "margin_start": 0.1,
        "margin_end": 0.35,
        "margin_step": 0.01,
    },
}


class MarginSchedule:
    """Linear ramps of a margin loss's scale and margin, clipped at their end values (LPC baselines).

    s_e = min(s_start + (e − 1)·Δs, s_end), m_e = min(m_start + (e − 1)·Δm, m_end) for the 1-indexed epoch e —
    the reference's expressions (luigisbailo/lpc ``trainer.py``: ``min(16.0 + (epoch - 1) * 1.0, 64.0)``,
    ``min(0.1 + (epoch - 1) * 0.01, 0.5)``). A ramp whose end lies below its start decreases (max instead of
    min). Defaults: preset ``"lpc-arcface"``; ``"lpc-cosface"`` ends the margin at 0.35. Pure function of the
    epoch; :meth:`apply` sets ``scale``/``margin`` on a loss module or objective term.

    Args:
        scale_start, scale_end, scale_step: s ramp (> 0, > 0, ≥ 0); default 16 → 64, +1 per epoch.
        margin_start, margin_end, margin_step: m ramp (≥ 0); default 0.1 → 0.5 (radians for ArcFace),
            +0.01 per epoch.

    Raises:
        ValueError: non-positive scales, negative margins or steps, unknown preset; an epoch < 1 on call.
        TypeError: non-numeric values, non-integer epoch.

    Example:
        >>> ramp = MarginSchedule.from_preset("lpc-arcface")
        >>> ramp(1), ramp(11)
        (MarginValues(scale=16.0, margin=0.1), MarginValues(scale=26.0, margin=0.2))
        >>> ramp(100)
        MarginValues(scale=64.0, margin=0.5)
    """

    def __init__(
        self,
        *,
        scale_start: float = MARGIN_PRESETS["lpc-arcface"]["scale_start"],
        scale_end: float = MARGIN_PRESETS["lpc-arcface"]["scale_end"],
        scale_step: float = MARGIN_PRESETS["lpc-arcface"]["scale_step"],
        margin_start: float = MARGIN_PRESETS["lpc-arcface"]["margin_start"],
        margin_end: float = MARGIN_PRESETS["lpc-arcface"]["margin_end"],
        margin_step: float = MARGIN_PRESETS["lpc-arcface"]["margin_step"],
    ) -> None:
        self._set(scale_start, scale_end, scale_step, margin_start, margin_end, margin_step)

    def _set(
        self,
        scale_start: float,
        scale_end: float,
        scale_step: float,
        margin_start: float,
        margin_end: float,
        margin_step: float,
    ) -> None:
        self.scale_start = check_positive(scale_start, "scale_start")
        self.scale_end = check_positive(scale_end, "scale_end")
        self.scale_step = _check_nonnegative(scale_step, "scale_step")
        self.margin_start = _check_nonnegative(margin_start, "margin_start")
        self.margin_end = _check_nonnegative(margin_end, "margin_end")
        self.margin_step = _check_nonnegative(margin_step, "margin_step")

    @classmethod
    def from_preset(cls, name: str, **overrides: float) -> MarginSchedule:
        """The named ramp of :data:`MARGIN_PRESETS` ("lpc-arcface", "lpc-cosface") with optional overrides."""
        check_choice(name, "name", tuple(MARGIN_PRESETS))
        return cls(**{**MARGIN_PRESETS[name], **overrides})

    @staticmethod
    def _ramp(start: float, end: float, step: float, epoch: int) -> float:
        if end >= start:
            return min(start + (epoch - 1) * step, end)
        return max(start - (epoch - 1) * step, end)

    def __call__(self, epoch: int) -> MarginValues:
        """(scale, margin) for the 1-indexed ``epoch``."""
        e = _check_epoch(epoch)
        return MarginValues(
            scale=self._ramp(self.scale_start, self.scale_end, self.scale_step, e),
            margin=self._ramp(self.margin_start, self.margin_end, self.margin_step, e),
        )

    def apply(self, loss: Any, epoch: int) -> MarginValues:
        """Set ``loss.scale`` and ``loss.margin`` to this epoch's values (e.g. an ``ArcFaceLoss`` or the
        objective's ``"arcface"`` term); return them."""
        if not (hasattr(loss, "scale") and hasattr(loss, "margin")):
            raise TypeError(
                f"`loss` must have `scale` and `margin` attributes (ArcFaceLoss, CosFaceLoss or their objective "
                f"terms); got {type(loss).__name__}"
            )
        values = self(epoch)
        loss.scale, loss.margin = values.scale, values.margin
        return values

    def state_dict(self) -> dict[str, float]:
        """The configuration (the ramps are pure functions of the epoch)."""
        return {name: getattr(self, name) for name in MARGIN_PRESETS["lpc-arcface"]}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the configuration saved by :meth:`state_dict`."""
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"`state_dict` must be a mapping; got {type(state_dict).__name__}")
        unknown = sorted(set(state_dict) - set(MARGIN_PRESETS["lpc-arcface"]))
        if unknown:
            raise ValueError(f"`state_dict` has unknown entries {unknown}; expected {list(self.state_dict())}")
        self._set(**{**self.state_dict(), **state_dict})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MarginSchedule) and self.state_dict() == other.state_dict()

    def __repr__(self) -> str:
        return "MarginSchedule(" + ", ".join(f"{k}={v!r}" for k, v in self.state_dict().items()) + ")"

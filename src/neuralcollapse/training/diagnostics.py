"""Per-epoch diagnostics of the LPC penalty balance (docs/methods.md §6.2).

LPC keeps its accuracy only while the classifier out-grows the penalty. With the penalty γ·mean‖h‖²/d and a
classifier W (K×d), the cross-entropy/penalty balance fixes the logit margin through

    q = ‖w_row‖² · d / γ        (‖w_row‖ = mean row norm of W; = ‖w_row‖²/γ_paper in the paper's convention)

Below q ≈ 1 the margin vanishes, the latent collapses onto a single point and the accuracy falls to chance. Under
AdamW ‖w_row‖ grows about linearly in optimizer steps, so a γ schedule paced faster than the classifier can grow
drives q down. :class:`LPCDiagnostics` logs γ, ‖w_row‖, ‖h‖, q and the median training logit margin every epoch,
extrapolates ‖w_row‖ linearly in steps over the next 10 % of the run (at least 5 epochs), and warns once when the
schedule will drive q below 1 there (``lpc/q_forecast_min``). The threshold on q depends on the data (failure set
in at q ≈ 0.3–1 on digits, at q ≈ 3 on Fashion-MNIST), so it also warns once when the median training margin,
having reached twice :data:`MARGIN_WARN_BELOW`, falls below it.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from .callbacks import GammaScheduleCallback, _head, _record

__all__ = ["FORECAST_HORIZON", "MARGIN_WARN_BELOW", "Q_WARN_BELOW", "LPCDiagnostics", "penalty_balance"]

#: q below which the logit margin is too small to hold the classes apart (measured on digits: failure sets in at
#: q ≈ 0.3–1 in every run).
Q_WARN_BELOW = 1.0

# Points at which the forecast horizon is checked.
_FORECAST_POINTS = 256

#: Median training margin (nats) below which the run warns: the classes are being squeezed together.
MARGIN_WARN_BELOW = 0.5

#: Fraction of the run (at least 5 epochs) over which q is forecast.
FORECAST_HORIZON = 0.1


def penalty_balance(weight: torch.Tensor, gamma: float) -> float:
    """q = (mean row norm of ``weight``)² · d / γ for a classifier ``weight`` (K, d); ``inf`` when γ = 0.

    Example:
        >>> penalty_balance(torch.full((10, 4), 2.0), 16.0)  # rows of norm 4, d = 4
        4.0
    """
    if weight.ndim != 2:
        raise ValueError(f"`weight` must be (K, d); got shape {tuple(weight.shape)}")
    if gamma < 0 or not math.isfinite(gamma):
        raise ValueError(f"`gamma` must be finite and >= 0; got {gamma}")
    return _balance(_mean_row_norm(weight), weight.shape[1], gamma)


def _mean_row_norm(weight: torch.Tensor) -> float:
    return float(weight.detach().double().norm(dim=1).mean())


def _balance(norm: float, dim: int, gamma: float) -> float:
    return math.inf if gamma == 0 else norm * norm * dim / gamma


class LPCDiagnostics(Callback):
    """Log the LPC penalty balance each epoch and warn when the γ schedule outruns the classifier.

    Logged keys: ``lpc/gamma``, ``lpc/w_row_norm`` (mean row norm of the classifier), ``lpc/latent_norm`` (mean
    ‖h‖ over the epoch's training batches), ``lpc/q`` (:func:`penalty_balance`), ``lpc/margin_median`` (median
    over the epoch's training samples of z_y − max_{k≠y} z_k; rank 0's samples under DDP) and
    ``lpc/q_forecast_min`` (the smallest q over the next :data:`FORECAST_HORIZON` of the run, at least 5
    epochs, with ‖w_row‖ extrapolated linearly in optimizer steps from the last epoch's growth).

    Args:
        gamma: the run's :class:`~neuralcollapse.training.callbacks.GammaScheduleCallback` (None: no schedule;
            γ is read from the objective's ``lpc`` term weight).
        term: the penalty's objective term (default ``"lpc"``).

    Example:
        >>> from neuralcollapse.schedules import GammaSchedule
        >>> gamma = GammaScheduleCallback(GammaSchedule.from_preset("lpc-paper"))
        >>> diagnostics = LPCDiagnostics(gamma)
    """

    def __init__(self, gamma: GammaScheduleCallback | None, term: str = "lpc") -> None:
        super().__init__()
        self.gamma = gamma
        self.term = term
        self.warned = False
        self.margin_warned = False
        self._best_margin = -math.inf
        self._previous: tuple[int, float] | None = None
        self._reset()

    def _reset(self) -> None:
        self._latent_sum = 0.0
        self._latent_count = 0
        self._margins: list[torch.Tensor] = []

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._reset()

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not isinstance(outputs, dict) or "output" not in outputs:
            return
        out, target = outputs["output"], outputs.get("target")
        latent = getattr(out, "latent", None)
        if latent is not None:
            norms = latent.detach().float().norm(dim=1)
            self._latent_sum += float(norms.sum())
            self._latent_count += norms.numel()
        logits = getattr(out, "logits", None)
        if logits is not None and target is not None and target.ndim == 1:
            z = logits.detach().float()
            own = z.gather(1, target.view(-1, 1)).squeeze(1)
            others = z.scatter(1, target.view(-1, 1), float("-inf")).amax(dim=1)
            self._margins.append((own - others).cpu())

    def _current_gamma(self, pl_module: Any) -> float:
        if self.gamma is not None and self.gamma.value is not None:
            return float(self.gamma.value)
        objective = getattr(pl_module, "objective", None)
        weights = dict(getattr(objective, "weights", {}) or {})
        return float(weights.get(self.term, 0.0))

    def _gamma_at(self, step: int, steps_per_epoch: float) -> float | None:
        schedule = None if self.gamma is None else self.gamma.schedule
        if not hasattr(schedule, "value"):
            return None
        return float(schedule.value(epoch=int(step // max(steps_per_epoch, 1.0)) + 1, step=step))

    def forecast_min_q(self, trainer: Any, norm: float, dim: int, rate: float) -> tuple[float, int, float]:
        """(smallest forecast q, at which step, γ there) over the forecast horizon, the classifier's mean row norm
        ``norm`` (width ``dim``) growing by ``rate`` per optimizer step."""
        total = int(trainer.estimated_stepping_batches)
        now = int(trainer.global_step)
        epochs = max(int(trainer.max_epochs or 1), 1)
        steps_per_epoch = total / epochs
        # ‖w_row‖ grows faster as γ rises (the CE gradient on W grows as the margin shrinks), so a linear
        # extrapolation is pessimistic far ahead: look only a short horizon ahead.
        total = min(total, now + max(int(FORECAST_HORIZON * total), int(5 * steps_per_epoch), 1))
        best = (math.inf, now, 0.0)
        if total <= now:
            return best
        for i in range(1, _FORECAST_POINTS + 1):
            step = now + (total - 1 - now) * i // _FORECAST_POINTS
            gamma = self._gamma_at(step, steps_per_epoch)
            if gamma is None or gamma <= 0:
                continue
            q = _balance(norm + max(rate, 0.0) * (step - now), dim, gamma)
            if q < best[0]:
                best = (q, step, gamma)
        return best

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        head = _head(pl_module)
        weight = getattr(head, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
            return
        gamma = self._current_gamma(pl_module)
        norm = _mean_row_norm(weight)
        values = {"lpc/gamma": gamma, "lpc/w_row_norm": norm}
        if self._latent_count:
            values["lpc/latent_norm"] = self._latent_sum / self._latent_count
        if self._margins:
            values["lpc/margin_median"] = float(torch.cat(self._margins).median())
        if gamma > 0:
            values["lpc/q"] = _balance(norm, weight.shape[1], gamma)
        step = int(trainer.global_step)
        if self._previous is not None and step > self._previous[0]:
            rate = (norm - self._previous[1]) / (step - self._previous[0])
            q_min, at_step, gamma_there = self.forecast_min_q(trainer, norm, weight.shape[1], rate)
            if math.isfinite(q_min):
                values["lpc/q_forecast_min"] = q_min
            current = values.get("lpc/q", math.inf)
            if not self.warned and min(q_min, current) < Q_WARN_BELOW and trainer.is_global_zero:
                self.warned = True
                where = (f"now (γ = {gamma:g})" if current < Q_WARN_BELOW
                         else f"by step {at_step} (γ = {gamma_there:g}, ‖w_row‖ extrapolated at {rate:.2g}/step)")
                warnings.warn(
                    f"LPC: q = ‖w_row‖²·d/γ falls below {Q_WARN_BELOW:g} {where}: q = {min(q_min, current):.3g}. "
                    "Below ~1 the logit margin vanishes and the latent collapses onto one point (docs/methods.md "
                    "§6.2). Pace γ more slowly (--gamma-pace with more steps, or more epochs with --gamma-pace auto) "
                    "or raise the classifier's learning rate.",
                    UserWarning,
                    stacklevel=2,
                )
        margin = values.get("lpc/margin_median")
        if margin is not None:
            self._best_margin = max(self._best_margin, margin)
        # only a margin that *fell* (after the classes had been held apart) is the penalty's doing; early in
        # training the margin is small anyway
        if (not self.margin_warned and margin is not None and margin < MARGIN_WARN_BELOW
                and self._best_margin >= 2 * MARGIN_WARN_BELOW and gamma > 0 and trainer.is_global_zero):
            # q's threshold depends on the data (≈ 1 on digits, ≈ 3 on Fashion-MNIST); the margin is the direct sign
            self.margin_warned = True
            warnings.warn(
                f"LPC: the median training logit margin fell to {margin:.3g} nats at γ = {gamma:g} (q = "
                f"{values.get('lpc/q', math.inf):.3g}): the penalty is squeezing the classes together (docs/methods.md "
                "§6.2). Pace γ more slowly, cap it lower, or raise the classifier's learning rate.",
                UserWarning,
                stacklevel=2,
            )
        self._previous = (step, norm)
        _record(pl_module, values)

    def state_dict(self) -> dict[str, Any]:
        return {"warned": self.warned, "margin_warned": self.margin_warned, "best_margin": self._best_margin,
                "previous": self._previous}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.warned = bool(state_dict.get("warned", False))
        self.margin_warned = bool(state_dict.get("margin_warned", False))
        self._best_margin = float(state_dict.get("best_margin", -math.inf))
        previous = state_dict.get("previous")
        self._previous = None if previous is None else (int(previous[0]), float(previous[1]))

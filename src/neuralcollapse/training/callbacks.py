"""Training callbacks: per-epoch schedules, DL2PA re-assignment, OCCE soft targets, AdaFocal, and (re-exported)
the geometry monitor and the run recorders.

Every callback works on :class:`~neuralcollapse.training.module.CollapseModule`; the schedule and
re-assignment callbacks also work on any LightningModule that has an ``objective`` (an
:class:`~neuralcollapse.losses.Objective`) or a ``head`` with ``reassign()``. Per-epoch values are pure
functions of the epoch or are kept in the callback's ``state_dict`` (saved in checkpoints), so a resumed run
continues exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from .checkpoint import RunCheckpoint
from .monitor import GeometryMonitor
from .recording import MetricsWriter, OCCETensorBoardTags, PlotWriter, progress_bar

__all__ = [
    "AdaFocalCallback",
    "AnticlassSelfDistillation",
    "GammaScheduleCallback",
    "GeometryMonitor",
    "MarginScheduleCallback",
    "MetricsWriter",
    "OCCETensorBoardTags",
    "PlotWriter",
    "PrototypeReassignment",
    "RunCheckpoint",
    "progress_bar",
]


def _record(pl_module: Any, values: Mapping[str, float]) -> None:
    """Log values at epoch level and add them to the module's epoch record when it keeps one."""
    for key, value in values.items():
        pl_module.log(key, float(value), on_step=False, on_epoch=True, sync_dist=False)
    adder = getattr(pl_module, "add_to_record", None)
    if callable(adder):
        adder(values)


def _objective(pl_module: Any) -> Any:
    objective = getattr(pl_module, "objective", None)
    if objective is None or not hasattr(objective, "set_weight"):
        raise ValueError(
            f"{type(pl_module).__name__} has no `objective` (a neuralcollapse.losses.Objective); the schedule "
            "callbacks set a term of it"
        )
    return objective


def _head(pl_module: Any) -> Any:
    head = getattr(pl_module, "head", None)
    if head is None:
        net = getattr(pl_module, "net", None)
        head = getattr(net, "head", None)
    return head


class GammaScheduleCallback(Callback):
    """Set the weight of one objective term from a :class:`~neuralcollapse.schedules.GammaSchedule` (LPC's
    growing penalty weight, docs/methods.md §6.2). Per-epoch schedules are applied before every epoch,
    step-paced ones (``unit="step"``) before every optimizer step from ``trainer.global_step``. Both are pure
    functions of the progress, so a resumed run — mid-epoch included — gets exactly the uninterrupted values.
    Logs ``gamma/<term>`` (the value at the end of the epoch).

    Args:
        schedule: a ``GammaSchedule`` (or any callable epoch → weight).
        term: the objective term whose weight is γ (default ``"lpc"``).
        auto_period: pace ``schedule`` in optimizer steps with
            :func:`~neuralcollapse.schedules.auto_period` of the run's total steps (resolved at the start of
            training and stored in the checkpoint, so a resume with more ``--epochs`` keeps the same pacing).
        reach_fraction: fraction of the run by which an auto-paced schedule reaches its final γ (default 0.75).

    Example:
        >>> from neuralcollapse.schedules import GammaSchedule
        >>> cb = GammaScheduleCallback(GammaSchedule.from_preset("lpc-paper"), term="lpc")
        >>> paced = GammaScheduleCallback(GammaSchedule.from_preset("lpc-paper"), auto_period=True)
    """

    def __init__(self, schedule: Any, term: str = "lpc", *, auto_period: bool = False,
                 reach_fraction: float = 0.75) -> None:
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"`schedule` must be callable (epoch -> weight); got {type(schedule).__name__}")
        if auto_period and getattr(schedule, "unit", None) != "epoch":
            raise ValueError("`auto_period` needs an epoch-unit GammaSchedule to pace (its period is chosen here)")
        self.schedule = schedule
        self.term = term
        self.auto_period = bool(auto_period)
        self.reach_fraction = float(reach_fraction)
        self._saved_period: int | None = None
        self.value: float | None = None

    @property
    def paced_in_steps(self) -> bool:
        return getattr(self.schedule, "unit", "epoch") == "step"

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if not self.auto_period:
            return
        from ..schedules import auto_period

        period = self._saved_period
        if period is None:
            total = int(trainer.estimated_stepping_batches)
            period = auto_period(self.schedule, max(total, 1), reach_fraction=self.reach_fraction)
        self.schedule = self.schedule.with_period(period)
        self.auto_period = False

    def _apply(self, trainer: Any, pl_module: Any) -> None:
        epoch = trainer.current_epoch + 1
        if self.paced_in_steps:
            value = self.schedule.at_step(int(trainer.global_step))
        else:
            value = self.schedule(epoch)
        if value != self.value:
            _objective(pl_module).set_weight(self.term, float(value))
        self.value = float(value)

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._apply(trainer, pl_module)

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if self.paced_in_steps:
            self._apply(trainer, pl_module)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self.value is not None:
            values = {f"gamma/{self.term}": self.value}
            if self.paced_in_steps:
                values["gamma/period_steps"] = float(self.schedule.period)
            _record(pl_module, values)

    def state_dict(self) -> dict[str, Any]:
        state = getattr(self.schedule, "state_dict", None)
        return {"schedule": state() if callable(state) else None, "term": self.term}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # The schedule is rebuilt from the run config; a mismatch means the config changed under the run. An
        # auto-paced schedule keeps the period it was given when the run started.
        saved = state_dict.get("schedule")
        if saved is not None and self.auto_period and saved.get("unit") == "step":
            def base(state: Mapping[str, Any]) -> dict[str, Any]:
                return {k: v for k, v in state.items() if k not in ("unit", "period")}

            if base(saved) != base(self.schedule.state_dict()):
                raise ValueError(
                    f"the checkpoint's γ schedule {saved} differs from this run's {self.schedule.state_dict()}; "
                    "resume with the same config"
                )
            self._saved_period = int(saved["period"])
            return
        state = getattr(self.schedule, "state_dict", None)
        if saved is not None and callable(state) and state() != saved:
            raise ValueError(
                f"the checkpoint's γ schedule {saved} differs from this run's {state()}; resume with the same config"
            )


class MarginScheduleCallback(Callback):
    """Set ``scale``/``margin`` of an ArcFace/CosFace objective term before every epoch from a
    :class:`~neuralcollapse.schedules.MarginSchedule` (LPC baselines' ramps, docs/methods.md §5). Logs
    ``margin/<term>/scale`` and ``margin/<term>/margin``."""

    def __init__(self, schedule: Any, term: str = "arcface") -> None:
        super().__init__()
        if not hasattr(schedule, "apply"):
            raise TypeError(f"`schedule` must be a MarginSchedule; got {type(schedule).__name__}")
        self.schedule = schedule
        self.term = term
        self.values: Any = None

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.values = self.schedule.apply(_objective(pl_module).term(self.term), trainer.current_epoch + 1)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self.values is not None:
            _record(pl_module, {f"margin/{self.term}/scale": self.values.scale,
                                f"margin/{self.term}/margin": self.values.margin})


class PrototypeReassignment(Callback):
    """DL2PA label-to-prototype re-assignment: ν Hungarian updates per epoch (DL2PA ablation 0.1 … 10; ν = 1
    by default: once per epoch **after validation**, so epoch e trains with the assignment from the end of
    epoch e − 1; docs/methods.md §7.2).

    ν is ``per_epoch`` when given, else the head's ``assignments_per_epoch`` (``--set
    head_kwargs={assignments_per_epoch: 10}``), divided by ``every`` (epochs). A whole ν ≥ 1 spreads the updates
    evenly over the epoch's batches (:func:`~neuralcollapse.heads.reassignment_batches`), the last one after
    validation; ν = 1/n updates after every n-th epoch. Nothing is re-assigned while the head's first
    ("class_means") assignment is still pending (warm-up).

    Logged per epoch (``metrics.json``): ``dl2pa/reassigned`` — classes whose prototype changed, summed over the
    epoch's solves including the head's first one (only in epochs with a solve); ``dl2pa/matching_cosine`` —
    Σ_c cos(q_c, p_π(c)) of the current assignment; ``dl2pa/assignment`` — π as a list (π[c] = prototype of
    class c; metrics.json only). The assignment and the class representatives are buffers of the head, so they
    are saved in checkpoints with the model.

    Args:
        every: divide ν by this many epochs (``TrainConfig.reassign_every``; DL2PA: 1).
        per_epoch: ν (default: the head's ``assignments_per_epoch``, else 1).
        required: raise when the head has no ``reassign()`` (False: skip silently, for generic runs).

    Example:
        >>> cb = PrototypeReassignment(per_epoch=10)  # ten updates per epoch
    """

    def __init__(self, every: int = 1, *, per_epoch: float | None = None, required: bool = True) -> None:
        super().__init__()
        from ..heads.assignment import check_assignments_per_epoch

        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"`every` must be an int >= 1 (epochs); got {every!r}")
        self.every = every
        self.per_epoch = None if per_epoch is None else check_assignments_per_epoch(per_epoch, "per_epoch")
        self.required = required
        self._intra: set[int] = set()
        self._changes: list[int] = []

    def _reassign_head(self, pl_module: Any) -> Any:
        head = _head(pl_module)
        if head is None or not hasattr(head, "reassign"):
            if not self.required:
                return None
            raise ValueError("PrototypeReassignment needs a head with `reassign()` (heads.create('prototypes'))")
        return head

    def _nu(self, head: Any) -> float:
        from ..heads.assignment import check_assignments_per_epoch

        nu = self.per_epoch if self.per_epoch is not None else getattr(head, "assignments_per_epoch", 1.0)
        return check_assignments_per_epoch(float(nu) / self.every, "assignments per epoch / every")

    def _run(self, head: Any) -> None:
        if bool(getattr(head, "assignment_pending", False)):
            return  # warm-up: the first assignment is the head's own (class means after W iterations)
        changes = head.reassign()
        if isinstance(changes, Tensor):
            changes = int(changes.sum()) if changes.dtype == torch.bool else int(changes.numel())
        if not hasattr(head, "pop_solves"):
            self._changes.append(int(changes or 0))

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        from ..heads.assignment import reassignment_batches

        self._intra, self._changes = set(), []
        head = self._reassign_head(pl_module)
        if head is None:
            return
        nu, batches = self._nu(head), trainer.num_training_batches
        if nu > 1 and isinstance(batches, int) and batches > 0:
            self._intra = set(reassignment_batches(nu, batches)[:-1])  # the last one runs after validation

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if batch_idx in self._intra:
            self._run(_head(pl_module))

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        head = self._reassign_head(pl_module)
        if head is None:
            return
        nu = self._nu(head)
        if nu >= 1 or (trainer.current_epoch + 1) % round(1.0 / nu) == 0:
            self._run(head)
        solves = [c for _, c in head.pop_solves()] if hasattr(head, "pop_solves") else self._changes
        values: dict[str, float] = {}
        if solves:
            values["dl2pa/reassigned"] = float(sum(solves))
        if hasattr(head, "matching_cosine"):
            values["dl2pa/matching_cosine"] = float(head.matching_cosine())
        _record(pl_module, values)
        assignment = getattr(head, "assignment", None)
        adder = getattr(pl_module, "add_to_record", None)
        if isinstance(assignment, Tensor) and callable(adder):
            adder({"dl2pa/assignment": [int(i) for i in assignment.tolist()]})


def _anticlass_logits(output: Any) -> Tensor:
    """Logits whose negation's softmax is the anti-class prediction (dual head: −z̄, else z)."""
    anti = getattr(output, "anti_logits", None)
    return output.logits if anti is None else -anti


class AnticlassSelfDistillation(Callback):
    """Soft anti-class targets for OCCE from the network's own previous predictions (OCCE paper, Appendix
    A.1.1): ``mode="instance"`` (Eq. 9, α = 0.1, per-sample memory keyed by dataset index) or ``"class"``
    (Eq. 10, α = 0.5, per-class mean matrix). Before each training step it puts ``anticlass_target`` into the
    module's ``step_context`` (read by the ``occe`` term); after the step it records the detached anti-class
    prediction; at the epoch end (class mode) it forms the next epoch's matrix. Under DDP predictions are
    all-gathered (instance) or sums all-reduced (class). The state is saved in checkpoints.

    Args:
        mode: "instance" or "class".
        alpha: mixing weight (default: the paper's value for the mode).
    """

    def __init__(self, mode: str, alpha: float | None = None) -> None:
        super().__init__()
        from ..losses.anticlass import CLASS_ALPHA, INSTANCE_ALPHA

        if mode not in ("instance", "class"):
            raise ValueError(f"`mode` must be 'instance' or 'class'; got {mode!r}")
        self.mode = mode
        self.alpha = float(alpha if alpha is not None else (INSTANCE_ALPHA if mode == "instance" else CLASS_ALPHA))
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"`alpha` must be in [0, 1]; got {alpha}")
        self.state: Any = None
        self._pending: dict[str, Any] | None = None

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        from ..losses import AnticlassClassMatrix, AnticlassMemory

        info = pl_module.info
        distributed = trainer.world_size > 1
        if self.mode == "instance":
            self.state = AnticlassMemory(info.train_size, info.num_classes, all_gather=distributed)
        else:
            self.state = AnticlassClassMatrix(info.num_classes, all_reduce=distributed)
        if self._pending is not None:
            self.state.load_state_dict(self._pending)
            self._pending = None

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.state.to(pl_module.device)

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        _, y, idx = batch
        if self.mode == "instance":
            q = self.state.targets(idx, y, alpha=self.alpha)
        else:
            q = self.state.targets(y, alpha=self.alpha)
        pl_module.step_context["anticlass_target"] = q

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        pl_module.step_context.pop("anticlass_target", None)
        logits = _anticlass_logits(outputs["output"])
        if self.mode == "instance":
            self.state.update(outputs["index"], logits)
        else:
            self.state.update(logits, outputs["target"])

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self.mode == "class":
            self.state.finalize_epoch()

    def state_dict(self) -> dict[str, Any]:
        if self.state is None:
            return {}
        return {k: v.detach().cpu() for k, v in self.state.state_dict().items()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        if self.state is None:
            self._pending = dict(state_dict)
        else:
            self.state.load_state_dict(state_dict)


class AdaFocalCallback(Callback):
    """AdaFocal's per-epoch γ update on the held-out split (Ghosh et al., NeurIPS 2022; docs/methods.md §3).

    After validation, the held-out loader (``datamodule.holdout_dataloader()``, 10 % of the training split by
    default) is run in eval mode and the ``adafocal`` term's :class:`~neuralcollapse.losses.AdaFocalState`
    is updated from the top-1 confidences and correctness. The state is a buffer of the term, so it is saved
    in checkpoints with the model. Logs ``adafocal/gamma_mean``. Under DDP the held-out predictions of every
    rank are gathered, so every rank applies the same update.
    """

    def __init__(self, term: str = "adafocal") -> None:
        super().__init__()
        self.term = term

    @torch.no_grad()
    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        dm = trainer.datamodule
        loader = dm.holdout_dataloader() if dm is not None and hasattr(dm, "holdout_dataloader") else None
        if loader is None:
            raise ValueError("AdaFocal needs a held-out split (`adafocal_holdout` > 0) for its γ updates")
        state = _objective(pl_module).term(self.term).state
        sync = getattr(pl_module, "sync_batchnorm_stats", None)
        if callable(sync):  # runs before the module's epoch-end hook: evaluate with the ranks' common statistics
            sync()
        was_training = pl_module.training
        pl_module.eval()
        conf, correct = [], []
        for x, y, _ in loader:
            x, y = x.to(pl_module.device), y.to(pl_module.device)
            with trainer.precision_plugin.forward_context():
                p = pl_module(x).logits.float().softmax(dim=1)
            top, pred = p.max(dim=1)
            conf.append(top)
            correct.append(pred == y)
        pl_module.train(was_training)
        c, ok = torch.cat(conf), torch.cat(correct)
        if trainer.world_size > 1:
            c = pl_module.all_gather(c).flatten(0, 1)
            ok = pl_module.all_gather(ok.to(torch.uint8)).flatten(0, 1).bool()  # NCCL gathers no bool tensors
        state.update(c, ok)
        _record(pl_module, {"adafocal/gamma_mean": float(state.gammas.mean())})

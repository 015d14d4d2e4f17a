"""Hyperspherical prototype head with dynamic label-to-prototype assignment (DL2PA; also HPN with a fixed
assignment).

M. S. Ebrahimi Saadabadi, A. Dabouei, S. Rahimi Malakshan, N. M. Nasrabadi, "Hyperspherical Classification with
Dynamic Label-to-Prototype Assignment", CVPR 2024 (reference msed-Ebrahimi/DL2PA_CVPR24); P. Mettes, E. van der
Pol, C. Snoek, "Hyperspherical Prototype Networks", NeurIPS 2019; docs/methods.md §7.2–7.3 and §8.

Training loop contract (done by ``neuralcollapse.training``): after every optimiser step call
``head.update_representatives(output.features, target)`` (it also solves the first, "class_means" assignment once
the warm-up is over); ν times per epoch (``assignments_per_epoch``; once per epoch after validation by default)
call ``head.reassign()``. The loss is the ``prototype`` term (Σ_i(1 − cos(f_i, p_{π(y_i)}))², reading ``cosines``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .._validation import check_choice, check_matrix, check_positive, check_probability
from ..output import HeadOutput
from ._base import HEADS, Head, check_int, unit_rows
from .assignment import (
    DEFAULT_ASSIGNMENTS_PER_EPOCH,
    DEFAULT_INITIAL_ASSIGNMENT,
    DEFAULT_MOMENTUM,
    DEFAULT_WARMUP_ITERATIONS,
    INITIAL_ASSIGNMENTS,
    assign_prototypes,
    check_assignments_per_epoch,
    check_permutation,
    matching_cosine,
    update_class_representatives,
)
from .prototypes import DEFAULT_STEPS, PROTOTYPE_METHODS, optimize_prototypes

__all__ = ["HypersphericalPrototypeHead"]


@HEADS.register("prototypes", aliases=("dl2pa", "hyperspherical"))
class HypersphericalPrototypeHead(Head):
    """Fixed unit prototypes P (K, d) on the sphere with a label-to-prototype assignment π (DL2PA, CVPR 2024).

    Forward: f = ``projection``(h) when present (the backbone's final linear ``in_features → dim``, with bias;
    DL2PA §4.1), optionally ``BatchNorm1d`` (the long-tail variant f = normalise(BN1d(·)), §7.3 of docs/methods.md),
    u = f/‖f‖, cosines s_ic = cos(f_i, p_{π(c)}), logits = ``scale``·s (prediction argmax_c s_ic).

    Assignment (DL2PA §3.3; docs/methods.md §7.2): representatives q_c (unit) follow the normalised features with
    momentum m (:meth:`update_representatives`, every training step; a class's first observation is taken as is,
    so q carries no bias from its placeholder); :meth:`reassign` solves the Hungarian problem
    max_π Σ_c cos(q_c, p_{π(c)}). The **first** assignment decides most of the outcome: once the features have
    been trained towards some assignment for a few dozen iterations, their class means sit on those prototypes
    and later re-assignments rarely move a class (docs/reproductions.md, "DL2PA"). ``initial_assignment``:

    - ``"class_means"`` (default): π is solved against the representatives, i.e. the class means of the network's
      own (barely trained) features, after ``warmup_iterations`` updates (default 1: the first batch). Until then
      π = identity. This is what the reference's first re-assignment does when the features have not yet
      followed its random start (CIFAR-100, lr 0.01, 1 epoch).
    - ``"random"``: a permutation drawn from ``seed`` (the reference's start: Hungarian against a Gaussian random
      queue); ``"identity"``: π = arange (the prototypes are random, so this is a random assignment too; HPN).
    - a sequence of K distinct ints: that assignment (π[c] = prototype of class c), e.g. a deliberately bad one.

    ``assignments_per_epoch`` ν (DL2PA ablation 0.1 … 10; default 1) is read by the training loop's
    :class:`~neuralcollapse.training.callbacks.PrototypeReassignment`: ν whole updates per epoch, evenly spaced, the
    last after validation, or one every 1/ν epochs. With ``reference_compat=True`` the representatives follow the
    reference code's rule (:func:`~neuralcollapse.heads.update_class_representatives`). HPN (NeurIPS 2019) = this
    head with ``method="hpn"`` prototypes, ``initial_assignment="identity"`` and no reassign calls.

    Prototypes, π, q and the warm-up state are buffers (saved in ``state_dict``, so a resumed run is exact, and
    broadcast by DDP).

    Args:
        in_features: width of the backbone features.
        num_classes: number of classes K (≥ 2).
        dim: prototype dimension d (default: the width of ``prototypes`` when given, else ``in_features``).
        prototypes: (K, d) fixed prototypes (rows normalised in float64, stored in the default dtype); default
            ``optimize_prototypes(K, d, steps, seed=seed, method=method)``.
        projection: add the linear ``in_features → dim`` (DL2PA's final linear layer). Default: on unless
            ``batch_norm`` is set and ``dim`` = ``in_features`` (the long-tail variant normalises BN1d of the
            backbone output itself). Without it, post-ReLU backbone features are non-negative: they stay in one
            orthant, every pair of features has a cosine ≥ 0 and prototypes with negative entries are out of reach.
        batch_norm: apply ``BatchNorm1d(dim)`` before normalising (long-tail variant; default False).
        scale: s > 0 multiplying the cosines into logits (default 1: logits are the cosines, as in DL2PA).
        momentum: m of the representatives (default 0.9, DL2PA).
        reference_compat: reference representative rule (default False).
        initial_assignment: "class_means" (default), "random", "identity" or an explicit permutation (above).
        warmup_iterations: representative updates before the "class_means" assignment is solved (≥ 0; default 1;
            0 = at the first update, like 1). Only valid with ``initial_assignment="class_means"``.
        assignments_per_epoch: ν > 0, a whole number or 1/n (default 1).
        seed, steps, method: passed to :func:`~neuralcollapse.heads.optimize_prototypes` when ``prototypes`` is
            not given; ``seed`` also draws the "random" assignment.

    Attributes:
        prototype_bank: (K, d) buffer, fixed unit prototypes in prototype order.
        assignment: (K,) int64 buffer π; class c uses prototype ``prototype_bank[assignment[c]]``.
        representatives: (K, d) buffer q (P[π] until a class is observed).
        observed: (K,) bool buffer, classes with an estimate in q.
        num_updates: int64 buffer, representative updates so far.
        assignment_pending: bool buffer, the "class_means" assignment is not solved yet (warm-up).
        weight: (K, d) property P[π], unit prototypes in class order (pairs with ``HeadOutput.features``).
        bias: None.

    Returns (forward):
        ``HeadOutput(logits=scale·s, features=u, prototypes=P[π], cosines=s)``.

    Raises:
        ValueError: ``prototypes`` not (K, dim) or not finite; ``scale`` ≤ 0; ``momentum`` outside [0, 1];
            ``projection=False`` with ``dim`` ≠ ``in_features``; a bad ``initial_assignment``,
            ``warmup_iterations`` or ``assignments_per_epoch``; bad ``h``; K < 2.

    Example:
        >>> import torch
        >>> head = HypersphericalPrototypeHead(16, 10, dim=3)
        >>> out = head(torch.randn(8, 16))
        >>> out.logits.shape, out.prototypes.shape
        (torch.Size([8, 10]), torch.Size([10, 3]))
        >>> bool(head.assignment_pending)  # the first assignment waits for the class means of one batch
        True
        >>> head.update_representatives(out.features, torch.arange(8))
        >>> bool(head.assignment_pending), head.last_changes >= 0
        (False, True)
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        dim: int | None = None,
        prototypes: Tensor | None = None,
        projection: bool | None = None,
        batch_norm: bool = False,
        scale: float = 1.0,
        momentum: float = DEFAULT_MOMENTUM,
        reference_compat: bool = False,
        initial_assignment: str | Sequence[int] | Tensor = DEFAULT_INITIAL_ASSIGNMENT,
        warmup_iterations: int | None = None,
        assignments_per_epoch: float = DEFAULT_ASSIGNMENTS_PER_EPOCH,
        seed: int = 0,
        steps: int = DEFAULT_STEPS,
        method: str = "auto",
    ) -> None:
        super().__init__(in_features, num_classes)
        if dim is None and isinstance(prototypes, Tensor) and prototypes.ndim == 2:
            dim = int(prototypes.shape[1])  # the given prototypes fix the metric space
        self.dim = self.in_features if dim is None else check_int(dim, "dim", minimum=1)
        if projection is None:
            projection = self.dim != self.in_features or not batch_norm
        elif not projection and self.dim != self.in_features:
            raise ValueError(
                f"`projection` must be True (or None) when `dim` ({self.dim}) differs from `in_features` "
                f"({self.in_features})"
            )
        self.scale = check_positive(scale, "scale")
        self.momentum = check_probability(momentum, "momentum")
        self.reference_compat = bool(reference_compat)
        self.assignments_per_epoch = check_assignments_per_epoch(assignments_per_epoch)
        if isinstance(initial_assignment, str):
            self.initial_assignment: str | list[int] = check_choice(
                initial_assignment, "initial_assignment", INITIAL_ASSIGNMENTS
            )
            start = None
        else:
            start = check_permutation(initial_assignment, self.num_classes)
            self.initial_assignment = start.tolist()
        if warmup_iterations is not None and self.initial_assignment != "class_means":
            raise ValueError(
                "`warmup_iterations` is only used with initial_assignment='class_means' (it delays the class-means "
                f"solution); got initial_assignment={self.initial_assignment!r}"
            )
        self.warmup_iterations = check_int(
            DEFAULT_WARMUP_ITERATIONS if warmup_iterations is None else warmup_iterations,
            "warmup_iterations",
            minimum=0,
        )
        check_choice(method, "method", PROTOTYPE_METHODS)  # also when `prototypes` is given: no hidden typo
        if prototypes is None:
            bank = optimize_prototypes(self.num_classes, self.dim, steps, seed=seed, method=method)
        else:
            check_matrix(prototypes, "prototypes", rows=self.num_classes, cols=self.dim)
            bank = unit_rows(prototypes.detach().cpu().double()).to(torch.get_default_dtype())
            if bool((bank.norm(dim=1) == 0).any()):
                raise ValueError("`prototypes` must not contain zero rows (a prototype needs a direction)")
        if self.initial_assignment == "random":
            start = torch.randperm(self.num_classes, generator=torch.Generator().manual_seed(int(seed)))
        elif start is None:
            start = torch.arange(self.num_classes, dtype=torch.int64)
        self.projection = nn.Linear(self.in_features, self.dim) if projection else None
        self.bn = nn.BatchNorm1d(self.dim) if batch_norm else None
        self.register_buffer("prototype_bank", bank)
        self.register_buffer("assignment", start.to(torch.int64))
        self.register_buffer("representatives", bank[start].clone())
        self.register_buffer("observed", torch.zeros(self.num_classes, dtype=torch.bool))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.int64))
        self.register_buffer("assignment_pending", torch.tensor(self.initial_assignment == "class_means"))
        self.register_parameter("bias", None)
        #: classes whose prototype changed at the last solve (initial or :meth:`reassign`); -1 before any.
        self.last_changes = -1
        #: (kind, changes) of every solve since :meth:`pop_solves` was last called ("initial" / "reassign").
        self._solves: list[tuple[str, int]] = []

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # checkpoints written before the warm-up state existed: their representatives are estimates already
        defaults = {"observed": self.observed.new_ones(()).expand_as(self.observed).clone(),
                    "num_updates": self.num_updates.clone(), "assignment_pending": torch.tensor(False)}
        if prefix + "assignment" in state_dict:
            for name, value in defaults.items():
                state_dict.setdefault(prefix + name, value)
            if self.projection is not None and not any(k.startswith(prefix + "projection.") for k in state_dict):
                # written before the projection became the default at dim == in_features: load it as trained
                warnings.warn(
                    "this prototype-head checkpoint has no projection layer (written before `projection` defaulted "
                    "to on); it is loaded without one, as it was trained",
                    UserWarning,
                    stacklevel=2,
                )
                self.projection = None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def weight(self) -> Tensor:
        """(K, d) unit prototypes in class order, P[π]."""
        return self.prototype_bank[self.assignment]

    @property
    def prototypes(self) -> Tensor:
        """(K, d) unit prototypes in class order (= ``weight``)."""
        return self.weight

    def forward(self, h: Tensor) -> HeadOutput:
        h = self._check_features(h)
        f = self.projection(h) if self.projection is not None else h
        if self.bn is not None:
            f = self.bn(f)
        u = unit_rows(f)
        protos = self.weight
        cosines = u @ protos.T
        logits = cosines * self.scale if self.scale != 1.0 else cosines
        return HeadOutput(logits=logits, features=u, prototypes=protos, cosines=cosines)

    @torch.no_grad()
    def update_representatives(self, features: Tensor, target: Tensor, *, lam: float = 1.0,
                               all_reduce: bool = False) -> None:
        """Momentum update of the class representatives from one batch (call after every training step).

        When the "class_means" assignment is pending and this is update number max(``warmup_iterations``, 1),
        the assignment is solved against the updated representatives (see :meth:`reassign`).

        Args:
            features: (N, dim) the head's ``output.features`` (normalised here; detached).
            target: (N,) labels in [0, K).
            lam: factor on the new contribution (mixup coefficient in the reference; default 1).
            all_reduce: sum per-class sums and counts over the DDP process group first.

        See :func:`~neuralcollapse.heads.update_class_representatives` for the rules and errors.
        """
        new = update_class_representatives(
            self.representatives,
            features,
            target,
            momentum=self.momentum,
            reference_compat=self.reference_compat,
            lam=lam,
            all_reduce=all_reduce,
            observed=self.observed,
        )
        self.representatives.copy_(new)
        present = torch.zeros_like(self.observed)
        present[target.to(present.device).long()] = True
        if all_reduce:  # every rank must agree on which classes hold an estimate
            count = present.to(torch.int32)
            dist.all_reduce(count)
            present = count > 0
        self.observed |= present
        self.num_updates += 1
        if bool(self.assignment_pending) and int(self.num_updates) >= max(self.warmup_iterations, 1):
            self._solve("initial")

    def _solve(self, kind: str) -> int:
        new = assign_prototypes(self.representatives, self.prototype_bank).to(self.assignment.device)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.broadcast(new, src=0)
        changed = int((new != self.assignment).sum())
        self.assignment.copy_(new)
        self.assignment_pending.fill_(False)
        self.last_changes = changed
        self._solves.append((kind, changed))
        return changed

    @torch.no_grad()
    def reassign(self) -> int:
        """Hungarian re-assignment π ← argmax_π Σ_c cos(q_c, p_{π(c)}) (ν times per epoch; also ends a pending
        warm-up).

        Under an initialised process group with more than one rank, rank 0's solution is broadcast.

        Returns:
            Number of classes whose prototype changed.
        """
        return self._solve("reassign")

    def matching_cosine(self) -> float:
        """Total cosine Σ_c cos(q_c, p_{π(c)}) of the current assignment (≤ K)."""
        return matching_cosine(self.representatives, self.prototype_bank, self.assignment)

    def pop_solves(self) -> list[tuple[str, int]]:
        """The (kind, changes) of the solves since the last call, oldest first, and forget them (for logging)."""
        out, self._solves = self._solves, []
        return out

    def extra_repr(self) -> str:
        start = self.initial_assignment if isinstance(self.initial_assignment, str) else "given"
        return (
            f"{super().extra_repr()}, dim={self.dim}, projection={self.projection is not None}, "
            f"batch_norm={self.bn is not None}, scale={self.scale:g}, momentum={self.momentum:g}, "
            f"reference_compat={self.reference_compat}, initial_assignment={start}, "
            f"warmup_iterations={self.warmup_iterations}, assignments_per_epoch={self.assignments_per_epoch:g}"
        )

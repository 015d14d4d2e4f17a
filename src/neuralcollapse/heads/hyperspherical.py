"""Hyperspherical prototype head with dynamic label-to-prototype assignment (DL2PA; also HPN with a fixed
assignment).

M. S. Ebrahimi Saadabadi, A. Dabouei, S. Rahimi Malakshan, N. M. Nasrabadi, "Hyperspherical Classification with
Dynamic Label-to-Prototype Assignment", CVPR 2024 (reference msed-Ebrahimi/DL2PA_CVPR24); P. Mettes, E. van der
Pol, C. Snoek, "Hyperspherical Prototype Networks", NeurIPS 2019; docs/methods.md §7.2–7.3 and §8.

Training loop contract (done by ``neuralcollapse.training``): after every optimiser step call
``head.update_representatives(output.features, target)``; once per epoch (after validation) call
``head.reassign()``. The loss is the ``prototype`` term (Σ_i(1 − cos(f_i, p_{π(y_i)}))², reading ``cosines``).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .._validation import check_choice, check_matrix, check_positive, check_probability
from ..output import HeadOutput
from ._base import HEADS, Head, check_int, unit_rows
from .assignment import DEFAULT_MOMENTUM, assign_prototypes, update_class_representatives
from .prototypes import DEFAULT_STEPS, PROTOTYPE_METHODS, optimize_prototypes

__all__ = ["HypersphericalPrototypeHead"]


@HEADS.register("prototypes", aliases=("dl2pa", "hyperspherical"))
class HypersphericalPrototypeHead(Head):
    """Fixed unit prototypes P (K, d) on the sphere with a label-to-prototype assignment π (DL2PA, CVPR 2024).

    Forward: f = ``projection``(h) when present (the backbone's final linear ``in_features → dim``, with bias;
    DL2PA §4.1), optionally ``BatchNorm1d`` (the long-tail variant f = normalise(BN1d(·)), §7.3 of docs/methods.md),
    u = f/‖f‖, cosines s_ic = cos(f_i, p_{π(c)}), logits = ``scale``·s (prediction argmax_c s_ic).

    Assignment (DL2PA §3.3): representatives q_c (unit) follow the normalised features with momentum m
    (:meth:`update_representatives`, every training step); :meth:`reassign` solves the Hungarian problem
    max_π Σ_c cos(q_c, p_{π(c)}) (once per epoch). Initially π = identity and q_c = p_c, so a reassign before any
    update changes nothing. With ``reference_compat=True`` the representatives follow the reference code's rule
    (:func:`~neuralcollapse.heads.update_class_representatives`). HPN (NeurIPS 2019) = this head with
    ``method="hpn"`` prototypes and no reassign calls.

    Prototypes, π and q are buffers (saved in ``state_dict``, so a resumed run is exact, and broadcast by DDP).

    Args:
        in_features: width of the backbone features.
        num_classes: number of classes K (≥ 2).
        dim: prototype dimension d (default: the width of ``prototypes`` when given, else ``in_features``).
        prototypes: (K, d) fixed prototypes (rows normalised in float64, stored in the default dtype); default
            ``optimize_prototypes(K, d, steps, seed=seed, method=method)``.
        projection: add the linear ``in_features → dim`` (default: only when they differ; ``True`` forces it).
        batch_norm: apply ``BatchNorm1d(dim)`` before normalising (long-tail variant; default False).
        scale: s > 0 multiplying the cosines into logits (default 1: logits are the cosines, as in DL2PA).
        momentum: m of the representatives (default 0.9, DL2PA).
        reference_compat: reference representative rule (default False).
        seed, steps, method: passed to :func:`~neuralcollapse.heads.optimize_prototypes` when ``prototypes`` is
            not given.

    Attributes:
        prototype_bank: (K, d) buffer, fixed unit prototypes in prototype order.
        assignment: (K,) int64 buffer π; class c uses prototype ``prototype_bank[assignment[c]]``.
        representatives: (K, d) buffer q.
        weight: (K, d) property P[π], unit prototypes in class order (pairs with ``HeadOutput.features``).
        bias: None.

    Returns (forward):
        ``HeadOutput(logits=scale·s, features=u, prototypes=P[π], cosines=s)``.

    Raises:
        ValueError: ``prototypes`` not (K, dim) or not finite; ``scale`` ≤ 0; ``momentum`` outside [0, 1];
            ``projection=False`` with ``dim`` ≠ ``in_features``; bad ``h``; K < 2.

    Example:
        >>> import torch
        >>> head = HypersphericalPrototypeHead(16, 10, dim=3)
        >>> out = head(torch.randn(8, 16))
        >>> out.logits.shape, out.prototypes.shape
        (torch.Size([8, 10]), torch.Size([10, 3]))
        >>> head.update_representatives(out.features, torch.arange(8))
        >>> head.reassign() >= 0
        True
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
        seed: int = 0,
        steps: int = DEFAULT_STEPS,
        method: str = "auto",
    ) -> None:
        super().__init__(in_features, num_classes)
        if dim is None and isinstance(prototypes, Tensor) and prototypes.ndim == 2:
            dim = int(prototypes.shape[1])  # the given prototypes fix the metric space
        self.dim = self.in_features if dim is None else check_int(dim, "dim", minimum=1)
        if projection is None:
            projection = self.dim != self.in_features
        elif not projection and self.dim != self.in_features:
            raise ValueError(
                f"`projection` must be True (or None) when `dim` ({self.dim}) differs from `in_features` "
                f"({self.in_features})"
            )
        self.scale = check_positive(scale, "scale")
        self.momentum = check_probability(momentum, "momentum")
        self.reference_compat = bool(reference_compat)
        check_choice(method, "method", PROTOTYPE_METHODS)  # also when `prototypes` is given: no hidden typo
        if prototypes is None:
            bank = optimize_prototypes(self.num_classes, self.dim, steps, seed=seed, method=method)
        else:
            check_matrix(prototypes, "prototypes", rows=self.num_classes, cols=self.dim)
            bank = unit_rows(prototypes.detach().cpu().double()).to(torch.get_default_dtype())
            if bool((bank.norm(dim=1) == 0).any()):
                raise ValueError("`prototypes` must not contain zero rows (a prototype needs a direction)")
        self.projection = nn.Linear(self.in_features, self.dim) if projection else None
        self.bn = nn.BatchNorm1d(self.dim) if batch_norm else None
        self.register_buffer("prototype_bank", bank)
        self.register_buffer("assignment", torch.arange(self.num_classes, dtype=torch.int64))
        self.register_buffer("representatives", bank.clone())
        self.register_parameter("bias", None)

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
        )
        self.representatives.copy_(new)

    @torch.no_grad()
    def reassign(self) -> int:
        """Hungarian re-assignment π ← argmax_π Σ_c cos(q_c, p_{π(c)}) (call once per epoch).

        Under an initialised process group with more than one rank, rank 0's solution is broadcast.

        Returns:
            Number of classes whose prototype changed.
        """
        new = assign_prototypes(self.representatives, self.prototype_bank).to(self.assignment.device)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.broadcast(new, src=0)
        changed = int((new != self.assignment).sum())
        self.assignment.copy_(new)
        return changed

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, dim={self.dim}, projection={self.projection is not None}, "
            f"batch_norm={self.bn is not None}, scale={self.scale:g}, momentum={self.momentum:g}, "
            f"reference_compat={self.reference_compat}"
        )

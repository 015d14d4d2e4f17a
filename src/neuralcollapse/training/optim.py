"""Optimisers and learning-rate schedules of the training system.

The learning rate is a **pure function of training progress** (fractional epoch), set on every optimiser
step: resuming from any checkpoint reproduces the uninterrupted run's rates without scheduler state.
Semantics of the papers' schedules:

- ``multistep`` (OCCE, DL2PA, HPN; ``torch.optim.lr_scheduler.MultiStepLR`` stepped per epoch): during the
  0-indexed epoch e the factor is decay^#{milestones m ≤ e}.
- ``cosine``: factor = f_min + (1 − f_min)·(1 + cos(π·t/E))/2 with t the 0-indexed epoch
  (``CosineAnnealingLR`` stepped per epoch; ``schedule_interval="epoch"``) or the fractional epoch
  (OpenOOD v1.5's per-step cosine; ``"step"``).
- ``constant``.
- Warm-up (NTCE/NONL, SupContrast's ``warmup_learning_rate``): linear per step from ``warmup_start_lr`` to the
  schedule's value at the warm-up end, over ``warmup_epochs``.

Parameter groups: every parameter gets the weight decay (the official OCCE code decays BN and biases too);
groups named in ``constant_lr_groups`` keep the base lr (LPC: the classifier is excluded from the decay,
docs/methods.md §6.3).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from .config import TrainConfig

__all__ = ["build_optimizer", "classifier_parameters", "effective_lr", "lr_factor", "set_learning_rates"]


def effective_lr(config: TrainConfig, world_batch: int) -> float:
    """Base lr after the batch-size rule: ``lr·B/lr_reference_batch`` with ``lr_scaling="linear"``
    (NTCE/NONL CIFAR: 0.2·B/256, docs/methods.md §4.6), else ``lr``."""
    if config.lr_scaling == "linear":
        return config.lr * world_batch / config.lr_reference_batch
    return config.lr


def _schedule_factor(config: TrainConfig, t: float) -> float:
    if config.schedule == "constant":
        return 1.0
    if config.schedule == "multistep":
        return config.lr_decay ** sum(1 for m in config.milestones if m <= t)
    # cosine over [cosine_start, epochs], constant before (the current LPC reference: cosine from epoch 200)
    f_min = config.min_lr_factor
    start = float(config.cosine_start)
    span = config.epochs - start
    frac = min(max(t - start, 0.0), span) / span
    return f_min + (1.0 - f_min) * 0.5 * (1.0 + math.cos(math.pi * frac))


def lr_factor(config: TrainConfig, progress: float, *, base_lr: float | None = None) -> float:
    """Multiplier of the base lr at ``progress`` (fractional 0-indexed epoch: epoch + batch/num_batches).

    Example:
        >>> cfg = TrainConfig(schedule="multistep", milestones=[2, 4], lr_decay=0.1, epochs=6)
        >>> [round(lr_factor(cfg, e), 4) for e in (0, 1.9, 2, 4.5)]
        [1.0, 1.0, 0.1, 0.01]
        >>> late = TrainConfig(schedule="cosine", cosine_start=6, epochs=10)
        >>> [round(lr_factor(late, e), 4) for e in (0, 5, 6, 8, 10)]
        [1.0, 1.0, 1.0, 0.5, 0.0]
    """
    t = progress if config.schedule_interval == "step" else math.floor(progress)
    factor = _schedule_factor(config, t)
    warm = config.warmup_epochs
    if warm > 0 and progress < warm:
        base = config.lr if base_lr is None else base_lr
        start = config.warmup_start_lr / base
        end_t = warm if config.schedule_interval == "step" else math.ceil(warm)
        end = _schedule_factor(config, end_t)
        factor = start + (end - start) * (progress / warm)
    return factor


def classifier_parameters(head: nn.Module) -> list[nn.Parameter]:
    """The trainable parameters of a head's final classifier: ``head.classifier_parameters()`` when the head
    defines it (LPC), else its ``classifier`` sub-module, else the head's own ``weight``/``bias`` parameters.
    Empty for fixed (non-trainable) classifiers."""
    own = getattr(head, "classifier_parameters", None)
    if callable(own):
        return [p for p in own() if isinstance(p, nn.Parameter) and p.requires_grad]
    sub = getattr(head, "classifier", None)
    if isinstance(sub, nn.Module):
        return [p for p in sub.parameters() if p.requires_grad]
    params = []
    for name in ("weight", "bias"):
        value = getattr(head, name, None)
        if isinstance(value, nn.Parameter) and value.requires_grad:
            params.append(value)
    return params


def _param_groups(net: nn.Module, head: nn.Module | None, constant: Sequence[str], lr: float,
                  classifier_lr: float | None = None) -> list[dict]:
    trainable = [p for p in net.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameters")
    if ("classifier" in constant or classifier_lr is not None) and head is not None:
        fixed = {id(p) for p in classifier_parameters(head)}
        scheduled = [p for p in trainable if id(p) not in fixed]
        held = [p for p in trainable if id(p) in fixed]
        groups = [{"params": scheduled, "name": "backbone", "scheduled": True, "base_lr": lr}]
        if held:
            groups.append({"params": held, "name": "classifier", "scheduled": "classifier" not in constant,
                           "base_lr": lr if classifier_lr is None else float(classifier_lr)})
        return groups
    return [{"params": trainable, "name": "all", "scheduled": True, "base_lr": lr}]


def build_optimizer(
    config: TrainConfig, net: nn.Module, *, head: nn.Module | None = None, lr: float | None = None
) -> torch.optim.Optimizer:
    """The run's optimiser: SGD (momentum, optional Nesterov) or AdamW, weight decay on every parameter.

    Args:
        config: the run config (``optimizer``, ``momentum``, ``nesterov``, ``weight_decay``, ``betas``,
            ``constant_lr_groups``, ``classifier_lr``: the classifier's own lr, scaled like the base lr).
        net: the model; its trainable parameters are optimised.
        head: the classifier head (for ``constant_lr_groups=["classifier"]``).
        lr: base lr (default :func:`effective_lr` with the config's batch size).
    """
    lr = config.lr if lr is None else float(lr)
    # the classifier's own lr is scaled like the base lr (config.lr > 0 is validated)
    classifier_lr = None if config.classifier_lr is None else float(config.classifier_lr) * lr / config.lr
    groups = _param_groups(net, head, config.constant_lr_groups, lr, classifier_lr)
    for group in groups:
        group["lr"] = group["base_lr"]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=config.momentum, nesterov=config.nesterov,
                               weight_decay=config.weight_decay)
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(config.betas), weight_decay=config.weight_decay)


def set_learning_rates(optimizers: Iterable[torch.optim.Optimizer], config: TrainConfig, progress: float) -> float:
    """Set every scheduled group's lr for ``progress``; return the scheduled lr (for logging)."""
    value = None
    for opt in optimizers:
        for group in opt.param_groups:
            base = group.get("base_lr", group["lr"])
            if group.get("scheduled", True):
                group["lr"] = base * lr_factor(config, progress, base_lr=base)
                value = group["lr"] if value is None else value
            else:
                group["lr"] = base
    return float(value if value is not None else 0.0)

"""Unconstrained-feature-model (UFM) simulation: neural collapse without a backbone.

In the UFM (Mixon, Parshall & Pi 2020; Zhu et al., NeurIPS 2021, "A Geometric Analysis of Neural Collapse
with Unconstrained Features") the penultimate features are free parameters optimised jointly with the
classifier under weight decay. It isolates what a loss does to the geometry — which is what the compare
runner's CPU-scale reproductions need: at equal iterations, does CE + γ·OCCE reach lower NC1 than CE; do
NTCE/NONL reach collapse in a fraction of CE's iterations? Runs in seconds on a CPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .._validation import check_positive

__all__ = ["UFMResult", "compare_ufm", "iterations_to_reach", "simulate_ufm"]

#: Metrics recorded along the trajectory (keys of ``metrics.neural_collapse``) plus loss and accuracy.
RECORDED = ("loss", "accuracy", "nc1", "nc2", "nc3", "equiangularity_means", "equinorm_means")


@dataclass
class UFMResult:
    """Trajectory of one UFM run: ``iterations`` and, per recorded key, the values at those iterations."""

    objective: str
    head: str
    iterations: list[int]
    history: dict[str, list[float]] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> dict[str, float]:
        return {k: v[-1] for k, v in self.history.items() if v}


def simulate_ufm(
    objective: str = "ce",
    *,
    head: str = "linear",
    num_classes: int = 10,
    dim: int = 32,
    samples_per_class: int = 20,
    iterations: int = 1000,
    lr: float = 0.05,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    feature_decay: float = 5e-4,
    record_every: int = 25,
    seed: int = 0,
    head_kwargs: dict[str, Any] | None = None,
    term_kwargs: dict[str, dict[str, Any]] | None = None,
) -> UFMResult:
    """Optimise free features H (N×d) and a head with ``objective`` by full-batch SGD; record NC metrics.

    Args:
        objective: an :class:`~neuralcollapse.losses.Objective` spec, e.g. ``"ce"``, ``"ce+occe"``, ``"ntce"``.
        head: a registered head name (``"linear"``, ``"cosine"``, ``"etf"``, ...).
        num_classes, dim, samples_per_class: K, d and n (balanced, N = K·n).
        iterations: full-batch SGD steps; ``record_every`` sets the metric cadence.
        lr, momentum, weight_decay: SGD on the head; ``feature_decay``: weight decay on H (the UFM's λ_H).
        seed: seeds the feature and head initialisation.

    Returns:
        :class:`UFMResult` with loss, accuracy and NC metrics (Zhu et al. definitions, ideal 0) over iterations.

    Example:
        >>> r = simulate_ufm("ce+occe", num_classes=4, dim=8, samples_per_class=5, iterations=50, record_every=25)
        >>> r.iterations
        [0, 25, 50]
    """
    from .. import heads as heads_pkg
    from .. import metrics
    from ..losses import Objective

    if num_classes < 2:
        raise ValueError(f"`num_classes` must be >= 2; got {num_classes}")
    for name, value in (("dim", dim), ("samples_per_class", samples_per_class), ("record_every", record_every)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive int; got {value!r}")
    if not isinstance(iterations, int) or iterations < 0:
        raise ValueError(f"`iterations` must be a non-negative int; got {iterations!r}")
    check_positive(lr, "lr")
    check_positive(weight_decay, "weight_decay", strict=False)
    check_positive(feature_decay, "feature_decay", strict=False)

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    n = num_classes * samples_per_class
    labels = torch.arange(num_classes).repeat_interleave(samples_per_class)
    features = nn.Parameter(torch.randn(n, dim, generator=gen) / math.sqrt(dim))
    model_head = heads_pkg.create(head, in_features=dim, num_classes=num_classes, **(head_kwargs or {}))
    loss_fn = Objective(objective, term_kwargs=term_kwargs)
    head_params = [p for p in model_head.parameters() if p.requires_grad]
    groups: list[dict[str, Any]] = [{"params": [features], "weight_decay": feature_decay}]
    if head_params:
        groups.append({"params": head_params, "weight_decay": weight_decay})
    optimiser = torch.optim.SGD(groups, lr=lr, momentum=momentum)

    result = UFMResult(
        objective=loss_fn.spec,
        head=head,
        iterations=[],
        history={k: [] for k in RECORDED},
        config=dict(num_classes=num_classes, dim=dim, samples_per_class=samples_per_class, lr=lr,
                    momentum=momentum, weight_decay=weight_decay, feature_decay=feature_decay, seed=seed),
    )

    def record(step: int, loss: Tensor) -> None:
        with torch.no_grad():
            out = model_head(features)
            weight = out.prototypes if out.prototypes is not None else getattr(model_head, "weight", None)
            bias = getattr(model_head, "bias", None) if out.prototypes is None else None
            nc = metrics.neural_collapse(out.features, labels, weight=weight, bias=bias, logits=out.logits)
        result.iterations.append(step)
        result.history["loss"].append(float(loss))
        result.history["accuracy"].append(float((out.logits.argmax(1) == labels).float().mean()))
        for key in RECORDED[2:]:
            result.history[key].append(float(nc.get(key, float("nan"))))

    for step in range(iterations + 1):
        out = model_head(features)
        loss, _ = loss_fn(out, labels)
        if step % record_every == 0 or step == iterations:
            record(step, loss.detach())
        if step == iterations:
            break
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    return result


def iterations_to_reach(result: UFMResult, metric: str, threshold: float) -> int | None:
    """First recorded iteration at which ``metric`` ≤ ``threshold`` (None if never).

    Example:
        >>> r = UFMResult("ce", "linear", [0, 10, 20], {"nc1": [1.0, 0.2, 0.05]})
        >>> iterations_to_reach(r, "nc1", 0.1)
        20
    """
    if metric not in result.history:
        raise ValueError(f"`metric` must be one of {sorted(result.history)}; got {metric!r}")
    for step, value in zip(result.iterations, result.history[metric]):
        if value <= threshold:
            return step
    return None


#: objective → head used by the UFM comparison (normalised losses need a cosine head)
UFM_HEADS = {"ntce": "cosine", "nonl": "cosine", "normface": "cosine", "arcface": "cosine", "cosface": "cosine"}


def compare_ufm(
    objectives: Sequence[str] = ("ce", "ce+occe", "ntce", "nonl"),
    *,
    seeds: int = 3,
    thresholds: Sequence[float] = (0.1, 0.01),
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """Run :func:`simulate_ufm` for several objectives and seeds; one summary row per objective.

    Each row holds the final NC metrics (mean ± std over seeds) and, per NC1 threshold, the mean number of
    iterations to reach it (None if some seed never does) — the "collapse in a fraction of the iterations"
    comparison of the NTCE/NONL paper, in the unconstrained-feature model.
    """
    rows = []
    for objective in objectives:
        results = [simulate_ufm(objective, head=UFM_HEADS.get(objective, "linear"), seed=s, **kwargs)
                   for s in range(seeds)]
        row: dict[str, Any] = {"objective": objective, "head": results[0].head}
        for key in ("accuracy", "nc1", "nc2", "nc3"):
            values = torch.tensor([r.final[key] for r in results], dtype=torch.float64)
            row[key] = (float(values.mean()), float(values.std()) if seeds > 1 else 0.0)
        for t in thresholds:
            hits = [iterations_to_reach(r, "nc1", t) for r in results]
            row[f"iters_nc1<={t:g}"] = None if any(h is None for h in hits) else sum(hits) / len(hits)
        rows.append(row)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m neuralcollapse.experiments.ufm``: print the UFM comparison as a Markdown table."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m neuralcollapse.experiments.ufm", description=main.__doc__)
    p.add_argument("--objectives", default="ce,ce+occe,ntce,nonl")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--iterations", type=int, default=1000)
    p.add_argument("--record-every", type=int, default=10)
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--dim", type=int, default=32)
    args = p.parse_args(argv)
    thresholds = (0.1, 0.01)
    rows = compare_ufm([o.strip() for o in args.objectives.split(",")], seeds=args.seeds,
                       thresholds=thresholds, iterations=args.iterations, record_every=args.record_every,
                       num_classes=args.num_classes, dim=args.dim)
    headers = ["objective", "head", "accuracy", "NC1", "NC2", "NC3", *[f"iters to NC1 ≤ {t:g}" for t in thresholds]]
    print("| " + " | ".join(headers) + " |\n|" + "---|" * len(headers))
    for r in rows:
        cells = [r["objective"], r["head"]] + [f"{r[k][0]:.4g} ± {r[k][1]:.2g}" for k in ("accuracy", "nc1", "nc2",
                                                                                        "nc3")]
        cells += ["never" if r[f"iters_nc1<={t:g}"] is None else f"{r[f'iters_nc1<={t:g}']:.0f}" for t in thresholds]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

"""Prototype benchmarks (``neuralcollapse bench losses``): estimation time and separation, Hungarian time.

Targets (docs/methods.md §7.1–7.2): ``optimize_prototypes`` K = 100, d = 64 within 10 s with max pairwise cosine
≤ 0.01; K = 10, d = 3 max cosine ≤ 0.4145 (within 0.01 of the Tammes optimum 0.4045); ``assign_prototypes``
for K = 1000 within 0.5 s. The estimation runs on one intra-op thread by design, so its time is a single-thread
figure whatever the process setting.
"""

from __future__ import annotations

import time

import torch

from ..heads import assign_prototypes, optimize_prototypes, prototype_stats
from . import BenchRow, time_call

__all__ = ["run"]

GROUP = "prototypes"
_ESTIMATION_SECONDS = 10.0
_MAX_COSINE_100_64 = 0.01
_MAX_COSINE_10_3 = 0.4145
_HUNGARIAN_SECONDS = 0.5


def _bound_row(name: str, value: float, unit: str, bound: float, note: str = "") -> BenchRow:
    return BenchRow(GROUP, name, value, unit, target=f"<= {bound:g}", passed=value <= bound, note=note)


def run(quick: bool = False) -> list[BenchRow]:
    """Rows: estimation time and max cosine (K = 100, d = 64), max cosine (K = 10, d = 3), Hungarian time
    (K = 1000, d = 512). ``quick`` times each call once instead of taking the median of three."""
    repeat = 1 if quick else 3
    rows: list[BenchRow] = []

    # The first (cold) call is the figure a user meets; warm repeats are reported in the note.
    start = time.perf_counter()
    protos = optimize_prototypes(100, 64)
    cold = time.perf_counter() - start
    note = "auto = two-stage, 2x1000 steps, float64, 1 thread; cold call"
    if not quick:
        warm = time_call(lambda: optimize_prototypes(100, 64), repeat=repeat, warmup=0)
        note += f"; warm median {warm:.3g} s"
    rows.append(_bound_row("optimize_prototypes K=100 d=64 time", cold, "s", _ESTIMATION_SECONDS, note=note))
    rows.append(_bound_row("optimize_prototypes K=100 d=64 max cosine", prototype_stats(protos)["max_cosine"], "",
                           _MAX_COSINE_100_64, note="optimum 0"))

    small = optimize_prototypes(10, 3)
    rows.append(_bound_row("optimize_prototypes K=10 d=3 max cosine", prototype_stats(small)["max_cosine"], "",
                           _MAX_COSINE_10_3, note="Tammes optimum 0.4045"))

    gen = torch.Generator().manual_seed(0)
    means = torch.randn(1000, 512, generator=gen)
    bank = torch.randn(1000, 512, generator=gen)
    seconds = time_call(lambda: assign_prototypes(means, bank), repeat=repeat, warmup=1)
    rows.append(_bound_row("assign_prototypes K=1000 d=512 time", seconds, "s", _HUNGARIAN_SECONDS,
                           note="scipy linear_sum_assignment, float64"))
    return rows

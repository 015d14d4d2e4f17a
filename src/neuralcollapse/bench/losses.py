"""Loss benchmarks: the cost of adding OCCE to cross-entropy (OCCE paper's unified objective, Eq. 8).

Rows (all CPU, ratios against a baseline timed in the same run):

1. loss only, forward + backward, N = 1024, K = 1000: the fused ``Objective("ce+occe")`` against
   ``F.cross_entropy`` alone (target ≤ 2×), and the naive composition ``F.cross_entropy + occe`` beside it;
2. the opt-in ``torch.compile`` fused kernels (``Objective(..., compile=True)``), ratio reported;
3. one full SGD training step of a small ConvNet (batch 128 of 3×32×32, K = 100) with ``"ce+occe"`` against
   ``"ce"`` (target ≤ 1.05×).

Timings run with one intra-op thread (``BENCH_THREADS``; ratios, not absolute speed, are the figures); the two
sides of a comparison are timed call by call, alternately, and each side's median is reported, which keeps
the ratio meaningful when other processes share the machine.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..losses import Objective, occe
from ..output import HeadOutput
from . import BenchRow, ratio_row, time_call

__all__ = ["run"]

GROUP = "losses"
#: loss-only problem size (ImageNet-like K)
LOSS_N, LOSS_K = 1024, 1000
#: training-step problem size (CIFAR-100-like)
STEP_BATCH, STEP_CLASSES = 128, 100
LOSS_RATIO_TARGET = 2.0
STEP_RATIO_TARGET = 1.05
#: intra-op threads while timing (restored afterwards)
BENCH_THREADS = 1


def _paired(fn_a: Callable[[], object], fn_b: Callable[[], object], *, samples: int) -> tuple[float, float]:
    """Median single-call times of two callables timed alternately (a, b, a, b, ...), after a warm-up.

    Alternating single calls exposes both sides to the same load, so the ratio of the medians stays meaningful
    on a busy machine.
    """
    for fn in (fn_a, fn_b):
        fn()
        fn()
    times_a, times_b = [], []
    for _ in range(samples):
        times_a.append(time_call(fn_a, repeat=1, warmup=0))
        times_b.append(time_call(fn_b, repeat=1, warmup=0))
    return statistics.median(times_a), statistics.median(times_b)


def _loss_step(loss_fn: Callable[[Tensor, Tensor], Tensor], z0: Tensor, y: Tensor) -> Callable[[], None]:
    def step() -> None:
        z = z0.detach().requires_grad_(True)
        loss_fn(z, y).backward()

    return step


def _objective_fn(objective: Objective) -> Callable[[Tensor, Tensor], Tensor]:
    def fn(z: Tensor, y: Tensor) -> Tensor:
        return objective(HeadOutput(logits=z, features=z), y).total

    return fn


def _loss_rows(quick: bool) -> list[BenchRow]:
    gen = torch.Generator().manual_seed(0)
    z0 = 3.0 * torch.randn(LOSS_N, LOSS_K, generator=gen)
    y = torch.randint(0, LOSS_K, (LOSS_N,), generator=gen)
    samples = 20 if quick else 80
    size = f"N={LOSS_N}, K={LOSS_K}, cpu, fwd+bwd"

    ce_step = _loss_step(lambda z, t: F.cross_entropy(z, t), z0, y)
    fused_step = _loss_step(_objective_fn(Objective.parse("ce+occe")), z0, y)
    naive_step = _loss_step(lambda z, t: F.cross_entropy(z, t) + occe(z, t), z0, y)

    t_fused, t_ce = _paired(fused_step, ce_step, samples=samples)
    t_naive, t_ce2 = _paired(naive_step, ce_step, samples=samples)
    rows = [
        ratio_row(
            GROUP,
            f"Objective('ce+occe') fused vs F.cross_entropy ({size})",
            t_fused,
            t_ce,
            max_ratio=LOSS_RATIO_TARGET,
            note="fused CE+OCCE pass, input checks on",
        ),
        ratio_row(
            GROUP,
            f"F.cross_entropy + occe naive vs F.cross_entropy ({size})",
            t_naive,
            t_ce2,
            note="unfused composition, reported without target",
        ),
    ]

    name = f"Objective('ce+occe', compile=True) vs F.cross_entropy ({size})"
    try:
        compiled_step = _loss_step(_objective_fn(Objective.parse("ce+occe", compile=True)), z0, y)
        compiled_step()  # compilation happens here, outside the timed region
        t_comp, t_ce3 = _paired(compiled_step, ce_step, samples=samples)
        rows.append(ratio_row(GROUP, name, t_comp, t_ce3, note="torch.compile kernels (opt-in)"))
    except Exception as err:  # any compiler failure only makes the row unavailable
        rows.append(BenchRow(GROUP, name, float("nan"), "s", note=f"unavailable: {type(err).__name__}: {err}"[:160]))
    return rows


class _SmallConvNet(nn.Module):
    """Two conv blocks and a linear classifier: a cheap stand-in for a CIFAR training step."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: Tensor) -> HeadOutput:
        h = self.features(x)
        return HeadOutput(logits=self.fc(h), features=h)


def _train_rows(quick: bool) -> list[BenchRow]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(STEP_BATCH, 3, 32, 32, generator=gen)
    y = torch.randint(0, STEP_CLASSES, (STEP_BATCH,), generator=gen)
    torch.manual_seed(0)
    model = _SmallConvNet(STEP_CLASSES)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)

    def make_step(objective: Objective) -> Callable[[], None]:
        def step() -> None:
            opt.zero_grad(set_to_none=True)
            total = objective(model(x), y).total
            total.backward()
            opt.step()

        return step

    samples = 10 if quick else 40
    t_both, t_ce = _paired(
        make_step(Objective.parse("ce+occe")), make_step(Objective.parse("ce")), samples=samples
    )
    return [
        ratio_row(
            GROUP,
            f"training step ConvNet 'ce+occe' vs 'ce' (batch {STEP_BATCH}x3x32x32, K={STEP_CLASSES}, SGD, cpu)",
            t_both,
            t_ce,
            max_ratio=STEP_RATIO_TARGET,
            note="forward + loss + backward + optimiser step",
        )
    ]


def run(quick: bool = False) -> list[BenchRow]:
    """Run the loss benchmarks; ``quick`` uses fewer timing rounds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(BENCH_THREADS)
    try:
        return _loss_rows(quick) + _train_rows(quick)
    finally:
        torch.set_num_threads(threads)

"""Benchmarks: ``neuralcollapse bench [losses|metrics|ood|train ...] [--quick]``; ``neuralcollapse bench gpu``
(the one-call GPU check, :mod:`neuralcollapse.bench.gpu`) runs only when named.

Speed and memory targets live here, not in timed tests. Every figure that has a target is reported as a
ratio against a baseline measured in the same run (same process, same machine, same data), so the result
does not depend on how fast the machine is. Each group module exposes ``run(quick: bool) -> list[BenchRow]``.
"""

from __future__ import annotations

import importlib
import json
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

__all__ = ["EXPLICIT_GROUPS", "GROUPS", "BenchRow", "format_table", "run_groups", "time_call", "write_results"]

#: group name -> modules contributing rows (each has ``run(quick) -> list[BenchRow]``)
GROUPS: dict[str, tuple[str, ...]] = {
    "losses": ("neuralcollapse.bench.losses", "neuralcollapse.bench.prototypes"),
    "metrics": ("neuralcollapse.bench.metrics",),
    "ood": ("neuralcollapse.bench.ood",),
    "train": ("neuralcollapse.bench.train",),
    "gpu": ("neuralcollapse.bench.gpu",),
}
#: Groups left out of the default "all": run only when named (the GPU check starts processes and the tests).
EXPLICIT_GROUPS: tuple[str, ...] = ("gpu",)


@dataclass
class BenchRow:
    """One benchmark figure.

    ``value`` is in ``unit``; where the figure is a comparison, ``baseline`` is the baseline's value in the
    same unit and ``ratio`` = value / baseline. ``target`` is a human-readable bound (e.g. ``"<= 2.0x"``)
    and ``passed`` whether it was met (None when there is no target).
    """

    group: str
    name: str
    value: float
    unit: str
    baseline: float | None = None
    ratio: float | None = None
    target: str | None = None
    passed: bool | None = None
    note: str = ""


def _sync(device: torch.device | str | None) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_call(
    fn: Callable[[], object],
    *,
    repeat: int = 5,
    warmup: int = 1,
    device: torch.device | str | None = None,
    min_time: float = 0.0,
) -> float:
    """Median wall time in seconds of ``fn()`` over ``repeat`` runs after ``warmup`` runs.

    With ``min_time`` > 0, each run repeats ``fn`` until at least that long has passed and reports the
    per-call time (for sub-millisecond calls).
    """
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeat):
        calls = 0
        start = time.perf_counter()
        while True:
            fn()
            calls += 1
            _sync(device)
            elapsed = time.perf_counter() - start
            if elapsed >= min_time:
                break
        times.append(elapsed / calls)
    return statistics.median(times)


def ratio_row(
    group: str,
    name: str,
    value: float,
    baseline: float,
    *,
    unit: str = "s",
    max_ratio: float | None = None,
    min_ratio: float | None = None,
    note: str = "",
) -> BenchRow:
    """A comparison row with ratio = value / baseline and an optional bound on the ratio."""
    ratio = value / baseline if baseline > 0 else float("inf")
    target = None
    passed = None
    if max_ratio is not None:
        target, passed = f"<= {max_ratio:g}x", ratio <= max_ratio
    elif min_ratio is not None:
        target, passed = f">= {min_ratio:g}x", ratio >= min_ratio
    return BenchRow(group, name, value, unit, baseline, ratio, target, passed, note)


def run_groups(names: Iterable[str] | None = None, *, quick: bool = False) -> list[BenchRow]:
    """Run the named groups (default: all but :data:`EXPLICIT_GROUPS`) and return their rows."""
    selected = list(names) if names else [g for g in GROUPS if g not in EXPLICIT_GROUPS]
    unknown = [n for n in selected if n not in GROUPS]
    if unknown:
        raise ValueError(f"unknown bench group(s) {unknown}; valid: {', '.join(GROUPS)}")
    rows: list[BenchRow] = []
    for group in selected:
        for module_name in GROUPS[group]:
            module = importlib.import_module(module_name)
            rows.extend(module.run(quick=quick))
    return rows


def _fmt(x: float | None) -> str:
    if x is None:
        return ""
    if x == 0 or 1e-3 <= abs(x) < 1e5:
        return f"{x:.4g}"
    return f"{x:.3e}"


def format_table(rows: Sequence[BenchRow]) -> str:
    """A Markdown table of the rows (a ``|`` inside a cell is escaped, so every row keeps its 9 cells)."""
    header = "| group | benchmark | value | unit | baseline | ratio | target | ok | note |"
    lines = [header, "|" + "---|" * 9]
    for r in rows:
        ok = "" if r.passed is None else ("yes" if r.passed else "NO")
        cells = [r.group, r.name, _fmt(r.value), r.unit, _fmt(r.baseline),
                 "" if r.ratio is None else f"{r.ratio:.3g}x", r.target or "", ok, r.note]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def write_results(rows: Sequence[BenchRow], out: str | Path) -> Path:
    """Write ``bench.json`` and ``bench.md`` into the folder ``out``; return the folder."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "torch": torch.__version__,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "threads": torch.get_num_threads(),
    }
    (folder / "bench.json").write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=2))
    (folder / "bench.md").write_text(format_table(rows) + "\n")
    return folder

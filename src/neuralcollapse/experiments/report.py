"""Reports of finished runs: mean ± std tables and plots, as Markdown + PNG and one self-contained HTML page.

A run folder holds what the trainer writes (``config.yaml``, ``metrics.csv`` — one row per epoch) and what
the compare runner's analysis adds (``analysis.json`` — final scalar figures grouped by section, and
``analysis_arrays.npz`` — logit samples, independence-deficit curves, 2-D embeddings). Runs are grouped by
their ``objective`` (the compare runner writes it into ``analysis.json``; otherwise the folder's parent
name) and aggregated over seeds.

Conventions: rates are fractions; a table column shows every mean with the decimals that give its median
mean 3 significant digits (:func:`column_decimals`); OOD detectors whose assumptions the head's features
violate (``ood_inapplicable``, :meth:`neuralcollapse.ood.Detector.applicable`) are marked † and left out of
the OOD mean; columns that depend on the logit scale carry a note and a scale-free companion column.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "Run",
    "aggregate",
    "column_decimals",
    "format_mean_std",
    "format_number",
    "inline_html",
    "load_runs",
    "markdown_table",
    "value_axis",
    "write_report",
]

EVALUATION_FILE = "analysis.json"
ARRAYS_FILE = "analysis_arrays.npz"
EPOCHS_FILE = "metrics.csv"
#: significant digits of a table column's median mean; every cell of the column uses the same decimals
SIGNIFICANT = 3
#: the mark of an OOD detector whose assumptions the head's features violate
INAPPLICABLE_MARK = "†"

_LOGIT_SCALE_NOTE = (
    "Spread: the mean over test samples of the std of the non-target logits (OCCE paper, Appendix A.3). It "
    "scales with the logits, and heads put them on different scales (a cosine or prototype head multiplies "
    "cosines by a fixed scale, a linear head's logits are unbounded), so compare it only between heads of one "
    "kind. Relative spread = spread / mean logit margin (target logit minus the mean non-target logit): "
    "scale-free, comparable across heads."
)
_DEEPFOOL_NOTE = (
    "‖r‖/‖x‖ on a seeded test subset, in the normalised input space (larger = more robust). DeepFool "
    "linearises the logits; where they are far from linear in the input (cosine and prototype heads normalise "
    "the features) its steps overshoot the decision boundary, so the raw ratio is not comparable across heads. "
    "Line-searched: the smallest fraction of DeepFool's perturbation that still flips the prediction "
    "(bisection), i.e. the distance to the boundary along DeepFool's direction; it depends only on the "
    "decision regions, not on the logit scale."
)


@dataclass(frozen=True)
class Section:
    """One report table: its title, the ``analysis.json`` section it reads, its columns and a caption."""

    title: str
    key: str
    #: (key, header, higher_is_better: True / False / None = no direction)
    columns: tuple[tuple[str, str, bool | None], ...]
    caption: str = ""


SECTIONS: tuple[Section, ...] = (
    Section("Accuracy", "summary", (
        ("test_accuracy", "test acc", True),
        ("train_accuracy", "train acc", True),
    ), "Closed-set accuracy (fraction) of the last checkpoint in eval mode, on the test and the training split."),
    Section("Neural collapse (training features, eval mode)", "summary", (
        ("nc1", "NC1", False),
        ("nc2", "NC2", False),
        ("nc3", "NC3", False),
        ("nc4", "NC4", False),
        ("ncc_mismatch", "NCC mismatch", False),
    ), "NC metrics of the un-augmented training split (docs/methods.md §9); NCC mismatch is a fraction."),
    Section("Non-target logits (test set)", "summary", (
        ("complementary_logit_std", "spread", None),
        ("relative_logit_spread", "relative spread", None),
    ), _LOGIT_SCALE_NOTE),
    Section("Latent geometry (test features)", "latent", (
        ("sigma_w", "Σ_W mean", False),
        ("separation_ratio", "separation ratio", True),
        ("cv_norm", "CV of norms", False),
        ("kl_entropy", "KL entropy / d", None),
        ("binarity_score", "binarity score", True),
    ), "LPC paper's latent metrics (docs/methods.md §6.5) of the test features."),
    Section("Robustness (DeepFool)", "latent", (
        ("deepfool_ratio", "DeepFool ‖r‖/‖x‖", True),
        ("deepfool_boundary_ratio", "line-searched ‖r‖/‖x‖", True),
    ), _DEEPFOOL_NOTE),
    Section("Independence deficit (principal directions for a fraction of the full accuracy)", "independence", (
        ("k80", "k(0.80)", None),
        ("k90", "k(0.90)", None),
        ("k95", "k(0.95)", None),
        ("k99", "k(0.99)", None),
    ), "Smallest number of principal directions of the test logits that keeps the given fraction of the full "
       "test accuracy (Feng et al. 2022)."),
    Section("Open-set recognition (MSP)", "osr", (
        ("error", "ER", False),
        ("oscr", "OSCR", True),
        ("auroc", "AUROC", True),
    ), "A second run per objective and seed, trained on the known classes only; fractions. ER: closed-set error "
       "on the known classes; OSCR and AUROC with the known classes positive."),
)


@dataclass
class Run:
    """One finished run: where it is, its group, its per-epoch table and its evaluation."""

    path: Path
    objective: str
    seed: int | None
    epochs: list[dict[str, float]] = field(default_factory=list)
    evaluation: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def inapplicable(self) -> dict[str, str]:
        """OOD detector → why its assumptions do not hold for this run's features (``ood_inapplicable``)."""
        value = self.evaluation.get("ood_inapplicable") or {}
        return dict(value) if isinstance(value, Mapping) else {}


@dataclass
class Table:
    """A rendered table: title, header row, body rows and caption paragraphs (Markdown inline code allowed)."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    captions: list[str] = field(default_factory=list)


def _read_epochs(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    rows: list[dict[str, float]] = []
    with path.open(newline="") as f:
        for raw in csv.DictReader(f):
            row: dict[str, float] = {}
            for key, value in raw.items():
                if key is None or value in (None, ""):
                    continue
                try:
                    row[key] = float(value)
                except ValueError:
                    continue
            rows.append(row)
    return rows


def _normalise(evaluation: dict[str, Any]) -> dict[str, Any]:
    """Older analyses stored the open-set rates in percent; the report shows fractions."""
    osr = evaluation.get("osr")
    if isinstance(osr, dict) and evaluation.get("osr_units") != "fraction":
        evaluation["osr"] = {k: v / 100 if isinstance(v, int | float) else v for k, v in osr.items()}
        evaluation["osr_units"] = "fraction"
    return evaluation


def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    """Load run folders (each with ``analysis.json``); a folder without one is searched recursively.

    Raises:
        FileNotFoundError: when no run is found under the given paths (the message says how to make one).
    """
    paths = list(paths)
    found: list[Path] = []
    for p in map(Path, paths):
        if (p / EVALUATION_FILE).is_file():
            found.append(p)
        elif p.is_dir():
            found.extend(sorted(q.parent for q in p.rglob(EVALUATION_FILE)))
        else:
            raise FileNotFoundError(f"run folder {p} does not exist")
    if not found:
        where = " ".join(map(str, paths))
        raise FileNotFoundError(
            f"no analysed runs (folders with {EVALUATION_FILE}) under {where}; `neuralcollapse report {where}` "
            "analyses the trained runs there (folders with checkpoints/last.ckpt) first, as `neuralcollapse "
            "compare` does (in Python: neuralcollapse.experiments.analysis.analyze_missing)"
        )
    runs = []
    for folder in dict.fromkeys(found):
        evaluation = _normalise(json.loads((folder / EVALUATION_FILE).read_text()))
        arrays: dict[str, np.ndarray] = {}
        if (folder / ARRAYS_FILE).is_file():
            with np.load(folder / ARRAYS_FILE) as data:
                arrays = {k: data[k] for k in data.files}
        runs.append(
            Run(
                path=folder,
                objective=str(evaluation.get("objective", folder.parent.name)),
                seed=evaluation.get("seed"),
                epochs=_read_epochs(folder / EPOCHS_FILE),
                evaluation=evaluation,
                arrays=arrays,
            )
        )
    return runs


def _finite(values: Iterable[Any]) -> list[float]:
    out = []
    for v in values:
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            out.append(float(v))
    return out


def aggregate(runs: Sequence[Run], section: str) -> dict[str, dict[str, tuple[float, float, int]]]:
    """objective → key → (mean, std, n) over the runs' ``evaluation[section]`` (std: sample std, 0 if n = 1)."""
    grouped: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        for key, value in (run.evaluation.get(section) or {}).items():
            grouped[run.objective][key].append(value)
    result: dict[str, dict[str, tuple[float, float, int]]] = {}
    for objective, values in grouped.items():
        result[objective] = {}
        for key, vs in values.items():
            finite = _finite(vs)
            if finite:
                std = statistics.stdev(finite) if len(finite) > 1 else 0.0
                result[objective][key] = (statistics.fmean(finite), std, len(finite))
    return result


# ------------------------------------------------------------------------------------------ formatting
#: magnitudes from which numbers are written in scientific notation
_LARGE = 1e5


def column_decimals(means: Iterable[float], significant: int = SIGNIFICANT) -> int:
    """Decimals that give the column's median non-zero |mean| ``significant`` significant digits (0 … 8).

    Example:
        >>> column_decimals([0.9756, 1.0]), column_decimals([2.29, 13.5]), column_decimals([0.0208, 0.0])
        (3, 2, 4)
    """
    values = [abs(v) for v in _finite(means) if v != 0]
    if not values:
        return significant - 1
    typical = statistics.median(values)
    if typical >= _LARGE:
        return 0
    return int(min(8, max(0, significant - 1 - math.floor(math.log10(typical)))))


def format_number(x: float, decimals: int, significant: int = SIGNIFICANT) -> str:
    """``x`` with ``decimals`` decimals, or in scientific notation with ``significant`` digits when fixed
    decimals would show fewer than 2 of its significant digits (or it is ≥ 1e5).

    Example:
        >>> format_number(1.0, 3), format_number(0.2374, 3), format_number(6.8e-09, 3), format_number(0.0, 2)
        ('1.000', '0.237', '6.80e-09', '0.00')
    """
    if not math.isfinite(x):
        return str(x)
    if x != 0 and (abs(x) >= _LARGE or abs(x) < 10.0 ** (1 - decimals)):
        return f"{x:.{significant - 1}e}"
    return f"{x:.{decimals}f}"


def format_mean_std(mean: float, std: float, n: int, decimals: int | None = None) -> str:
    """``0.912 ± 0.004``: mean and sample std with the same decimals (default: 3 significant digits of the
    mean; a mean in scientific notation gets a std in scientific notation); no ± for one run. Pass the
    column's :func:`column_decimals` to align a table column.

    Example:
        >>> format_mean_std(0.9756, 0.005879, 3), format_mean_std(1.0, 0.0, 3, decimals=3)
        ('0.976 ± 0.006', '1.000 ± 0.000')
    """
    d = column_decimals([mean]) if decimals is None else decimals
    text = format_number(mean, d)
    if n < 2:
        return text
    if "e" in text:  # a mean in scientific notation: the std too
        return f"{text} ± {std:.1e}" if std else f"{text} ± 0"
    return f"{text} ± {std:.{d}f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _arrow(higher: bool | None) -> str:
    return " ↑" if higher else " ↓" if higher is False else ""


def _section_table(runs: Sequence[Run], section: Section, order: Sequence[str]) -> Table | None:
    agg = aggregate(runs, section.key)
    present = [c for c in section.columns if any(c[0] in agg.get(o, {}) for o in order)]
    if not present:
        return None
    headers = ["objective", "seeds", *[c[1] + _arrow(c[2]) for c in present]]
    decimals = {c[0]: column_decimals(agg[o][c[0]][0] for o in order if c[0] in agg.get(o, {})) for c in present}
    rows = []
    for objective in order:
        values = agg.get(objective, {})
        n = max((v[2] for v in values.values()), default=0)
        cells = [format_mean_std(*values[c[0]], decimals[c[0]]) if c[0] in values else "–" for c in present]
        rows.append([objective, str(n), *cells])
    return Table(section.title, headers, rows, [section.caption] if section.caption else [])


def _run_ood_mean(run: Run, include_inapplicable: bool) -> float | None:
    values = {k: v for k, v in (run.evaluation.get("ood") or {}).items() if k != "mean"}
    kept = _finite(v for k, v in values.items() if include_inapplicable or k not in run.inapplicable)
    return statistics.fmean(kept) if kept else None


def _ood_table(runs: Sequence[Run], order: Sequence[str], *, include_inapplicable: bool = False) -> Table | None:
    agg = aggregate(runs, "ood")
    detectors = sorted({k for o in order for k in agg.get(o, {}) if k != "mean"})
    if not detectors:
        return None
    means: dict[str, tuple[float, float, int]] = {}
    for objective in order:
        per_run = _finite(_run_ood_mean(r, include_inapplicable) for r in runs if r.objective == objective)
        if per_run:
            means[objective] = (statistics.fmean(per_run), statistics.stdev(per_run) if len(per_run) > 1 else 0.0,
                                len(per_run))
    flagged: dict[tuple[str, str], str] = {}
    for run in runs:
        for det, why in run.inapplicable.items():
            flagged.setdefault((run.objective, det), why)
    decimals = {d: column_decimals(agg[o][d][0] for o in order if d in agg.get(o, {})) for d in detectors}
    mean_decimals = column_decimals(m[0] for m in means.values())
    headers = ["objective", *detectors, "mean"]
    rows = []
    for objective in order:
        values = agg.get(objective, {})
        cells = []
        for d in detectors:
            cell = format_mean_std(*values[d], decimals[d]) if d in values else "–"
            cells.append(cell + INAPPLICABLE_MARK if (objective, d) in flagged and d in values else cell)
        mean = format_mean_std(*means[objective], mean_decimals) if objective in means else "–"
        rows.append([objective, *cells, mean])
    ood_set = next((r.evaluation.get("ood_set") for r in runs if r.evaluation.get("ood_set")), "the OOD set")
    captions = [f"AUROC, ID test set vs {ood_set} (fractions; higher = better, 0.5 = chance); mean ± sample std "
                "over seeds. The detectors are fitted on the training features only."]
    if flagged:
        captions.append(
            f"{INAPPLICABLE_MARK} The head's features violate an assumption of the detector, so its AUROC says "
            "little about the features; it is shown, but "
            + ("still averaged into the mean (requested)." if include_inapplicable else
               "left out of the mean (the mean is over the other detectors).")
        )
        by_objective: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        for (objective, det), why in sorted(flagged.items()):
            rest = why.partition(" assumes ")[2]
            by_objective[objective][rest or why].append(det)
        for objective in order:
            for rest, dets in by_objective.get(objective, {}).items():
                verb = "assumes" if len(dets) == 1 else "assume"
                captions.append(f"{INAPPLICABLE_MARK} {objective}: {', '.join(dets)} {verb} {rest}.")
    elif not include_inapplicable:
        captions.append("Mean: over all detectors (none is flagged as inapplicable to these features).")
    return Table(f"OOD detection AUROC, ID test vs {ood_set}", headers, rows, captions)


# ----------------------------------------------------------------------------------------------- plots
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<")
_LINESTYLES = ("-", "--", "-.", ":")


def _styles(objectives: Sequence[str]) -> dict[str, dict[str, Any]]:
    """A colour, marker and line style per objective; earlier lines are wider, so that a line drawn over an
    identical one leaves it visible around it."""
    plt = _plt()
    colours = plt.get_cmap("tab10").colors
    n = max(len(objectives), 1)
    return {o: {"color": colours[i % len(colours)], "marker": _MARKERS[i % len(_MARKERS)],
                "linestyle": _LINESTYLES[i % len(_LINESTYLES)], "linewidth": 2.6 - 1.6 * i / max(n - 1, 1),
                "markersize": 6.5 - 3.0 * i / max(n - 1, 1), "alpha": 0.9, "label": o}
            for i, o in enumerate(objectives)}


def value_axis(values: Iterable[float], *, log: bool = True) -> tuple[str, dict[str, float]]:
    """The y-axis scale for a set of values: ``("log", {})`` when ``log`` and all are > 0; ``("symlog",
    {"linthresh": t})`` when ``log`` and some are ≤ 0 (a log axis would drop them; t = the smallest non-zero
    |value| rounded down to a power of ten, at least 1e-6 of the largest); else ``("linear", {})``.

    Example:
        >>> value_axis([2.3, 0.1, 0.01]), value_axis([2.3, -0.8, -0.95]), value_axis([1.0, 2.0], log=False)
        (('log', {}), ('symlog', {'linthresh': 0.1}), ('linear', {}))
    """
    finite = [v for v in _finite(values)]
    if not log or not finite:
        return "linear", {}
    if min(finite) > 0:
        return "log", {}
    magnitudes = [abs(v) for v in finite if v != 0]
    if not magnitudes:
        return "linear", {}
    smallest = max(min(magnitudes), 1e-6 * max(magnitudes))
    return "symlog", {"linthresh": 10.0 ** math.floor(math.log10(smallest))}


def _epoch_series(runs: Sequence[Run], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, int] | None:
    """(epochs, mean, std, number of runs) of ``key`` over the runs that logged it."""
    curves = []
    for run in runs:
        pts = [(r["epoch"], r[key]) for r in run.epochs if "epoch" in r and key in r and math.isfinite(r[key])]
        if pts:
            curves.append(dict(pts))
    if not curves:
        return None
    epochs = sorted(set().union(*curves))
    mat = np.array([[c.get(e, np.nan) for e in epochs] for c in curves], dtype=float)
    with np.errstate(all="ignore"):
        return np.asarray(epochs), np.nanmean(mat, axis=0), np.nanstd(mat, axis=0), len(curves)


def _keys(runs: Sequence[Run]) -> set[str]:
    return {k for r in runs for row in r.epochs for k in row}


#: per-epoch plots: (file stem, title, metrics.csv key, log axis wanted, integer values)
EPOCH_PLOTS: tuple[tuple[str, str, str, bool, bool], ...] = (
    ("test_accuracy", "test accuracy", "test/acc", False, False),
    ("validation_accuracy", "validation accuracy", "val/acc", False, False),
    ("nc1", "NC1 (training features)", "train_nc/nc1", True, False),
    ("nc2", "NC2 (training features)", "train_nc/nc2", True, False),
    ("nc3", "NC3 (training features)", "train_nc/nc3", True, False),
    ("training_loss", "training loss", "train/loss", True, False),
    ("reassigned", "classes re-assigned (DL2PA)", "dl2pa/reassigned", False, True),
)
#: fallbacks when the training-feature NC metrics were not logged
_NC_FALLBACK = {"train_nc/nc1": "test_nc/nc1", "train_nc/nc2": "test_nc/nc2", "train_nc/nc3": "test_nc/nc3"}


def plot_epoch_curves(by_objective: Mapping[str, Sequence[Run]], out: Path) -> list[Path]:
    """Per-epoch curves (mean over seeds; a ±1 std band only with ≥ 2 seeds), one PNG per quantity in
    :data:`EPOCH_PLOTS` that any run logged. Integer epoch ticks; a log axis becomes a symmetric-log one when
    a value is ≤ 0 (NONL's loss is negative), see :func:`value_axis`."""
    from matplotlib.ticker import MaxNLocator

    plt = _plt()
    all_runs = [r for rs in by_objective.values() for r in rs]
    keys = _keys(all_runs)
    styles = _styles(list(by_objective))
    paths = []
    for stem, title, key, log, integer in EPOCH_PLOTS:
        if key not in keys and _NC_FALLBACK.get(key) in keys:
            key, title = _NC_FALLBACK[key], title.replace("training", "test")
        if key not in keys:
            continue
        fig, ax = plt.subplots(figsize=(6.0, 3.8))
        values: list[float] = []
        for objective, runs in by_objective.items():
            series = _epoch_series(runs, key)
            if series is None:
                continue
            x, m, s, n = series
            ax.plot(x, m, **styles[objective])
            if n >= 2:
                ax.fill_between(x, m - s, m + s, alpha=0.15, color=styles[objective]["color"], lw=0)
            values += [*(m - s), *(m + s)] if n >= 2 else list(m)
        scale, kwargs = value_axis(values, log=log)
        ax.set_yscale(scale, **kwargs)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if integer:  # counts: integer ticks, and a range that holds at least 0 and 1 (all-zero counts)
            top = max(_finite(values), default=0.0)
            ax.set_ylim(-0.5, max(1.0, top) + 0.5)
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        note = " — symmetric log axis (values ≤ 0)" if scale == "symlog" else ""
        ax.set_xlabel("epoch")
        ax.set_ylabel(title)
        ax.set_title(f"{title} per epoch ({key}){note}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / f"epochs_{stem}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_logit_histograms(by_objective: Mapping[str, Sequence[Run]], out: Path) -> Path | None:
    """Target vs non-target logit histograms per objective (OCCE paper, Appendix A.3); each panel has its own
    x-scale (heads put their logits on different scales)."""
    plt = _plt()
    items = [(o, rs) for o, rs in by_objective.items() if any("target_logits" in r.arrays for r in rs)]
    if not items:
        return None
    fig, axes = plt.subplots(1, len(items), figsize=(3.2 * len(items), 2.9), squeeze=False)
    for ax, (objective, runs) in zip(axes[0], items):
        tgt = np.concatenate([r.arrays["target_logits"] for r in runs if "target_logits" in r.arrays])
        non = np.concatenate([r.arrays["nontarget_logits"] for r in runs if "nontarget_logits" in r.arrays])
        lo, hi = np.percentile(np.concatenate([tgt, non]), [0.5, 99.5])
        bins = np.linspace(lo, hi if hi > lo else lo + 1, 50)
        ax.hist(non, bins=bins, alpha=0.6, density=True, label="non-target")
        ax.hist(tgt, bins=bins, alpha=0.6, density=True, label="target")
        ax.set_title(objective, fontsize=9)
        ax.set_xlabel("logit")
        ax.set_yticks([])
    axes[0][0].set_ylabel("density")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("test logits: target vs non-target (x-scales differ per head)", fontsize=9)
    fig.tight_layout()
    path = out / "logit_histograms.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_independence(by_objective: Mapping[str, Sequence[Run]], out: Path) -> Path | None:
    """Independence-deficit curves: fraction of full accuracy vs number of principal directions kept."""
    from matplotlib.ticker import MaxNLocator

    plt = _plt()
    styles = _styles(list(by_objective))
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    drawn = False
    for objective, runs in by_objective.items():
        curves = [r.arrays["independence_curve"] for r in runs if "independence_curve" in r.arrays]
        if not curves:
            continue
        length = min(len(c) for c in curves)
        mat = np.stack([c[:length] for c in curves])
        k = np.arange(1, length + 1)
        ax.plot(k, mat.mean(0), **styles[objective])
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.axhline(0.9, color="grey", lw=0.8, ls="--")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("principal directions kept (k)")
    ax.set_ylabel("accuracy / full accuracy")
    ax.set_title("independence deficit, test logits (Feng et al. 2022); dashed: 0.9", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "independence_deficit.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_ood_bars(runs: Sequence[Run], order: Sequence[str], out: Path) -> Path | None:
    """OOD AUROC per detector: one bar group per detector, one bar per objective (mean over seeds; error bars
    only with ≥ 2 seeds); hatched bars: the detector's assumptions do not hold for that head; dashed line:
    chance (0.5). The legend sits below the axes."""
    from matplotlib.patches import Patch

    plt = _plt()
    agg = aggregate(runs, "ood")
    detectors = sorted({k for o in order for k in agg.get(o, {}) if k != "mean"})
    if not detectors:
        return None
    flagged = {(r.objective, d) for r in runs for d in r.inapplicable}
    styles = _styles(list(order))
    width = 0.8 / max(len(order), 1)
    fig, ax = plt.subplots(figsize=(min(11.0, max(7.0, 0.3 * len(detectors) * max(len(order), 1))), 4.0))
    x = np.arange(len(detectors))
    lows = [0.5]
    for i, objective in enumerate(order):
        values = agg.get(objective, {})
        pos = x + i * width - 0.4 + width / 2
        means = np.array([values.get(d, (np.nan, 0, 0))[0] for d in detectors], dtype=float)
        colour = styles[objective]["color"]
        bars = ax.bar(pos, means, width, color=colour, edgecolor="white", linewidth=0.5)
        for bar, d in zip(bars, detectors):
            if (objective, d) in flagged:
                bar.set_hatch("///")
                bar.set_alpha(0.45)
                bar.set_edgecolor("black")
        multi = [j for j, d in enumerate(detectors) if d in values and values[d][2] >= 2]
        if multi:  # ±1 std, clipped to [0, 1] where an AUROC lives
            std = np.array([values[detectors[j]][1] for j in multi])
            yerr = [np.minimum(std, means[multi]), np.minimum(std, 1.0 - means[multi])]
            ax.errorbar(pos[multi], means[multi], yerr=yerr, fmt="none", ecolor="black", elinewidth=0.8,
                        capsize=1.5)
        lows += [float(v) for v in means if math.isfinite(v)]
    ax.axhline(0.5, color="grey", lw=1.0, ls="--", zorder=0)
    ax.set_xticks(x, detectors, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("AUROC")
    ax.set_ylim(max(0.0, min(lows) - 0.05), 1.005)
    ax.set_title("OOD detection per detector (higher is better; dashed: chance 0.5)", fontsize=9)
    # explicit handles: a bar container's legend entry would copy its first bar, which may be hatched
    handles = [Patch(facecolor=styles[o]["color"]) for o in order]
    labels = list(order)
    if flagged:
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="///"))
        labels.append(f"{INAPPLICABLE_MARK} assumptions violated")
    ax.legend(handles, labels, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22),
              ncol=min(len(labels), 6), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = out / "ood_auroc.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_embeddings(by_objective: Mapping[str, Sequence[Run]], out: Path) -> Path | None:
    """2-D PCA embeddings of test features (first seed of each objective), coloured by class, with a class
    legend (a colour bar beyond 20 classes)."""
    from matplotlib.lines import Line2D

    plt = _plt()
    items = [(o, next(r for r in rs if "embedding" in r.arrays)) for o, rs in by_objective.items()
             if any("embedding" in r.arrays for r in rs)]
    if not items:
        return None
    labels_all = np.concatenate([np.asarray(r.arrays.get("embedding_labels", np.zeros(0))) for _, r in items])
    classes = sorted({int(c) for c in labels_all})
    num = max(classes, default=0) + 1
    cmap = plt.get_cmap("tab10" if num <= 10 else "tab20" if num <= 20 else "viridis")
    fig, axes = plt.subplots(1, len(items), figsize=(3.0 * len(items) + 1.2, 3.2), squeeze=False)
    scatter = None
    for ax, (objective, run) in zip(axes[0], items):
        emb = run.arrays["embedding"]
        lab = np.asarray(run.arrays.get("embedding_labels", np.zeros(len(emb))), dtype=int)
        colours = cmap(lab % cmap.N) if num <= 20 else None
        scatter = ax.scatter(emb[:, 0], emb[:, 1], c=colours if colours is not None else lab, s=4, alpha=0.8,
                             cmap=None if colours is not None else cmap)
        ax.set_title(objective, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if num <= 20:
        handles = [Line2D([], [], marker="o", ls="", color=cmap(c % cmap.N), markersize=5) for c in classes]
        fig.legend(handles, [f"class {c}" for c in classes], loc="center right", fontsize=7, title="class",
                   title_fontsize=7, frameon=False)
    elif scatter is not None:
        fig.colorbar(scatter, ax=axes[0].tolist(), label="class")
    fig.suptitle("test features, first two principal components", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1 - 1.0 / (3.0 * len(items) + 1.2), 1))
    path = out / "embeddings.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------- report
_CODE = re.compile(r"`([^`]+)`")


def inline_html(text: str) -> str:
    """Escape ``text`` for HTML and render Markdown inline code (`` `x` ``) as ``<code>x</code>``.

    Example:
        >>> inline_html("Command: `a --b <c>`")
        'Command: <code>a --b &lt;c&gt;</code>'
    """
    return _CODE.sub(lambda m: f"<code>{m.group(1)}</code>", html.escape(text, quote=False))


def _html_cell(text: str) -> str:
    """A table cell; the ``± std`` part of ``mean ± std`` is set smaller (it may wrap under the mean)."""
    mean, sep, rest = text.partition(" ± ")
    if not sep:
        return inline_html(text)
    mark = INAPPLICABLE_MARK if rest.endswith(INAPPLICABLE_MARK) else ""
    std = rest[: len(rest) - len(mark)]
    return f"{inline_html(mean)}{mark} <span class='sd'>± {inline_html(std)}</span>"


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{inline_html(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_html_cell(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


#: plots drawn across the page width in the HTML (the others sit two per row)
_WIDE_PLOTS = ("logit_histograms", "embeddings", "ood_auroc")


def _draw_plots(by_objective: Mapping[str, Sequence[Run]], runs: Sequence[Run], objectives: Sequence[str],
                folder: Path) -> list[Path]:
    paths = [*plot_epoch_curves(by_objective, folder)]
    for maker in (plot_independence, plot_logit_histograms, plot_embeddings):
        p = maker(by_objective, folder)
        if p is not None:
            paths.append(p)
    p = plot_ood_bars(runs, objectives, folder)
    if p is not None:
        paths.append(p)
    return paths


def write_report(run_dirs: Iterable[str | Path], out: str | Path, *, title: str = "neuralcollapse report",
                 order: Sequence[str] | None = None, notes: Sequence[str] = (),
                 ood_mean_includes_inapplicable: bool = False, plots: bool = True) -> Path:
    """Write ``report.md``, PNG plots and a self-contained ``report.html`` (images inlined) into ``out``.

    Args:
        run_dirs: run folders, or folders containing them (searched recursively for ``analysis.json``;
            :func:`~neuralcollapse.experiments.analysis.analyze_missing` makes it for trained runs).
        out: output folder (created).
        title: report heading.
        order: objective order in tables and legends (default: order of first appearance).
        notes: extra Markdown paragraphs placed under the title (e.g. the exact command); inline code in
            backticks is rendered as ``<code>`` in the HTML.
        ood_mean_includes_inapplicable: average every detector into the OOD mean, also those marked †
            (default: the mean leaves them out, and the table says so).
        plots: draw the plots (False: tables only).

    Returns:
        The path of ``report.md``.

    Example:
        >>> write_report(["runs/compare"], "runs/compare/report")  # doctest: +SKIP
    """
    runs = load_runs(run_dirs)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    objectives = list(order) if order else list(dict.fromkeys(r.objective for r in runs))
    objectives = [o for o in objectives if any(r.objective == o for r in runs)]
    by_objective = {o: [r for r in runs if r.objective == o] for o in objectives}

    tables = [t for t in (_section_table(runs, section, objectives) for section in SECTIONS) if t is not None]
    ood = _ood_table(runs, objectives, include_inapplicable=ood_mean_includes_inapplicable)
    if ood is not None:
        tables.insert(min(3, len(tables)), ood)

    drawn = _draw_plots(by_objective, runs, objectives, folder) if plots else []

    summary = f"{len(runs)} runs: " + ", ".join(f"{o} ({len(rs)})" for o, rs in by_objective.items())
    md = [f"# {title}", "", *[f"{n}\n" for n in notes], summary, ""]
    for table in tables:
        md += [f"## {table.title}", "", markdown_table(table.headers, table.rows), ""]
        md += [f"{c}\n" for c in table.captions]
    if drawn:
        md += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in drawn] + [""]
    md_path = folder / "report.md"
    md_path.write_text("\n".join(md))

    style = ("body{font-family:system-ui,sans-serif;max-width:1300px;margin:2em auto;padding:0 1em;color:#222;"
             "line-height:1.4}div.scroll{overflow-x:auto}"
             "table{border-collapse:collapse;margin:0.5em 0 0.4em;font-size:0.88em}"
             "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f3f3f3}"
             "td:first-child,th:first-child{text-align:left;white-space:nowrap}span.sd{color:#666;font-size:0.85em;"
             "white-space:nowrap}img{max-width:100%}"
             "code{background:#f3f3f3;padding:1px 4px;border-radius:3px;font-size:0.92em}"
             "p.caption{font-size:0.85em;color:#555;margin:0.2em 0 0.4em;max-width:62em}"
             "h2{margin-top:1.6em}figure{display:inline-block;vertical-align:top;width:49%;margin:0.5em 0}"
             "figure.wide{display:block;width:100%}")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>"]
    parts += [f"<p>{inline_html(n)}</p>" for n in notes]
    parts.append(f"<p>{inline_html(summary)}</p>")
    for table in tables:
        parts.append(f"<h2>{inline_html(table.title)}</h2>{_html_table(table.headers, table.rows)}")
        parts += [f"<p class='caption'>{inline_html(c)}</p>" for c in table.captions]
    if drawn:
        parts.append("<h2>Plots</h2>")
    for p in drawn:
        data = base64.b64encode(p.read_bytes()).decode()
        wide = " class='wide'" if p.stem in _WIDE_PLOTS else ""
        parts.append(f"<figure{wide}><img alt='{html.escape(p.stem)}' src='data:image/png;base64,{data}'></figure>")
    parts.append("</body></html>")
    (folder / "report.html").write_text("".join(parts))
    return md_path

"""Reports of finished runs: mean ± std tables and plots, as Markdown + PNG and one self-contained HTML page.

A run folder holds what the trainer writes (``config.yaml``, ``metrics.csv`` — one row per epoch) and what
the compare runner's analysis adds (``analysis.json`` — final scalar figures grouped by section, and
``analysis_arrays.npz`` — logit samples, independence-deficit curves, 2-D embeddings). Runs are grouped by
their ``objective`` (the compare runner writes it into ``analysis.json``; otherwise the folder's parent
name) and aggregated over seeds.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Run", "aggregate", "format_mean_std", "load_runs", "markdown_table", "write_report"]

EVALUATION_FILE = "analysis.json"
ARRAYS_FILE = "analysis_arrays.npz"
EPOCHS_FILE = "metrics.csv"

#: Report sections: (title, section key in evaluation.json, columns (key, header, higher_is_better)).
SECTIONS: tuple[tuple[str, str, tuple[tuple[str, str, bool | None], ...]], ...] = (
    ("Accuracy and neural collapse (training set, eval mode)", "summary", (
        ("test_accuracy", "test acc", True),
        ("train_accuracy", "train acc", True),
        ("nc1", "NC1", False),
        ("nc2", "NC2", False),
        ("nc3", "NC3", False),
        ("nc4", "NC4", False),
        ("ncc_mismatch", "NCC mismatch", False),
        ("complementary_logit_std", "non-target logit spread", None),
    )),
    ("Latent geometry (test features)", "latent", (
        ("sigma_w", "Σ_W mean", False),
        ("separation_ratio", "separation ratio", True),
        ("cv_norm", "CV of norms", False),
        ("kl_entropy", "KL entropy / d", None),
        ("binarity_score", "binarity score", True),
        ("deepfool_ratio", "DeepFool ‖r‖/‖x‖", True),
    )),
    ("Independence deficit (dims for a fraction of the full accuracy)", "independence", (
        ("k80", "k(80%)", None),
        ("k90", "k(90%)", None),
        ("k95", "k(95%)", None),
        ("k99", "k(99%)", None),
    )),
    ("Open-set recognition (MSP)", "osr", (
        ("error", "ER %", False),
        ("oscr", "OSCR %", True),
        ("auroc", "AUROC %", True),
    )),
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


def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    """Load run folders (each with ``evaluation.json``); a folder without one is searched recursively.

    Raises:
        FileNotFoundError: when no run is found under the given paths.
    """
    found: list[Path] = []
    for p in map(Path, paths):
        if (p / EVALUATION_FILE).is_file():
            found.append(p)
        elif p.is_dir():
            found.extend(sorted(q.parent for q in p.rglob(EVALUATION_FILE)))
        else:
            raise FileNotFoundError(f"run folder {p} does not exist")
    if not found:
        raise FileNotFoundError(
            f"no finished runs (folders with {EVALUATION_FILE}) under {', '.join(map(str, paths))}"
        )
    runs = []
    for folder in dict.fromkeys(found):
        evaluation = json.loads((folder / EVALUATION_FILE).read_text())
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
        if isinstance(v, int | float) and math.isfinite(v):
            out.append(float(v))
    return out


def aggregate(runs: Sequence[Run], section: str) -> dict[str, dict[str, tuple[float, float, int]]]:
    """objective → key → (mean, std, n) over the runs' ``evaluation[section]`` (std: sample std, 0 if n = 1)."""
    grouped: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        for key, value in run.evaluation.get(section, {}).items():
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


def format_mean_std(mean: float, std: float, n: int) -> str:
    """``0.912 ± 0.004`` with 3 significant digits of the larger magnitude; no ± for one run."""
    def fmt(x: float) -> str:
        if x == 0 or 1e-3 <= abs(x) < 1e4:
            return f"{x:.4g}"
        return f"{x:.2e}"

    return fmt(mean) if n < 2 else f"{fmt(mean)} ± {fmt(std)}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _section_table(runs: Sequence[Run], section: str, columns: Sequence[tuple[str, str, bool | None]],
                   order: Sequence[str]) -> tuple[list[str], list[list[str]]] | None:
    agg = aggregate(runs, section)
    present = [c for c in columns if any(c[0] in agg.get(o, {}) for o in order)]
    if not present:
        return None
    headers = ["objective", "seeds", *[c[1] + (" ↑" if c[2] else " ↓" if c[2] is False else "") for c in present]]
    rows = []
    for objective in order:
        values = agg.get(objective, {})
        n = max((v[2] for v in values.values()), default=0)
        cells = [format_mean_std(*values[c[0]]) if c[0] in values else "–" for c in present]
        rows.append([objective, str(n), *cells])
    return headers, rows


def _ood_table(runs: Sequence[Run], order: Sequence[str]) -> tuple[list[str], list[list[str]]] | None:
    agg = aggregate(runs, "ood")
    detectors = sorted({k for o in order for k in agg.get(o, {}) if k != "mean"})
    if not detectors:
        return None
    headers = ["objective", *detectors, "mean"]
    rows = []
    for objective in order:
        values = agg.get(objective, {})
        cells = [format_mean_std(*values[d]) if d in values else "–" for d in [*detectors, "mean"]]
        rows.append([objective, *cells])
    return headers, rows


# ----------------------------------------------------------------------------------------------- plots
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _epoch_series(runs: Sequence[Run], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    curves = []
    for run in runs:
        pts = [(r["epoch"], r[key]) for r in run.epochs if "epoch" in r and key in r and math.isfinite(r[key])]
        if pts:
            curves.append(dict(pts))
    if not curves:
        return None
    epochs = sorted(set().union(*curves))
    mat = np.array([[c.get(e, np.nan) for e in epochs] for c in curves], dtype=float)
    return np.asarray(epochs), np.nanmean(mat, axis=0), np.nanstd(mat, axis=0)


def _find_key(runs: Sequence[Run], candidates: Sequence[str]) -> str | None:
    keys = {k for r in runs for row in r.epochs for k in row}
    for c in candidates:
        if c in keys:
            return c
    return None


def plot_epoch_curves(by_objective: Mapping[str, Sequence[Run]], out: Path) -> list[Path]:
    """Accuracy and NC metrics per epoch (mean over seeds, ±1 std band); one PNG per quantity."""
    plt = _plt()
    all_runs = [r for rs in by_objective.values() for r in rs]
    wanted = [
        ("test accuracy", ("test/acc", "val/acc"), False),
        ("NC1", ("train_nc/nc1", "test_nc/nc1"), True),
        ("NC2", ("train_nc/nc2", "test_nc/nc2"), True),
        ("NC3", ("train_nc/nc3", "test_nc/nc3"), True),
        ("training loss", ("train/loss",), True),
    ]
    paths = []
    for title, candidates, log in wanted:
        key = _find_key(all_runs, candidates)
        if key is None:
            continue
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        for objective, runs in by_objective.items():
            series = _epoch_series(runs, key)
            if series is None:
                continue
            x, m, s = series
            ax.plot(x, m, marker="o", ms=2.5, label=objective)
            ax.fill_between(x, m - s, m + s, alpha=0.2)
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(title)
        ax.set_title(f"{title} per epoch ({key})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / f"epochs_{title.replace(' ', '_').lower()}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_logit_histograms(by_objective: Mapping[str, Sequence[Run]], out: Path) -> Path | None:
    """Target vs non-target logit histograms per objective (OCCE paper, Appendix A.3)."""
    plt = _plt()
    items = [(o, rs) for o, rs in by_objective.items() if any("target_logits" in r.arrays for r in rs)]
    if not items:
        return None
    fig, axes = plt.subplots(1, len(items), figsize=(3.2 * len(items), 2.8), squeeze=False)
    for ax, (objective, runs) in zip(axes[0], items):
        tgt = np.concatenate([r.arrays["target_logits"] for r in runs if "target_logits" in r.arrays])
        non = np.concatenate([r.arrays["nontarget_logits"] for r in runs if "nontarget_logits" in r.arrays])
        lo, hi = np.percentile(np.concatenate([tgt, non]), [0.5, 99.5])
        bins = np.linspace(lo, hi, 50)
        ax.hist(non, bins=bins, alpha=0.6, density=True, label="non-target")
        ax.hist(tgt, bins=bins, alpha=0.6, density=True, label="target")
        ax.set_title(objective, fontsize=9)
        ax.set_xlabel("logit")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    path = out / "logit_histograms.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_independence(by_objective: Mapping[str, Sequence[Run]], out: Path) -> Path | None:
    """Independence-deficit curves: fraction of full accuracy vs number of principal directions kept."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    drawn = False
    for objective, runs in by_objective.items():
        curves = [r.arrays["independence_curve"] for r in runs if "independence_curve" in r.arrays]
        if not curves:
            continue
        length = min(len(c) for c in curves)
        mat = np.stack([c[:length] for c in curves])
        k = np.arange(1, length + 1)
        ax.plot(k, mat.mean(0), label=objective)
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.axhline(0.9, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("principal directions kept (k)")
    ax.set_ylabel("accuracy / full accuracy")
    ax.set_title("independence deficit (Feng et al. 2022)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "independence_deficit.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_ood_bars(runs: Sequence[Run], order: Sequence[str], out: Path) -> Path | None:
    """OOD AUROC per detector, one bar group per detector, one bar per objective (mean over seeds)."""
    plt = _plt()
    agg = aggregate(runs, "ood")
    detectors = sorted({k for o in order for k in agg.get(o, {}) if k != "mean"})
    if not detectors:
        return None
    width = 0.8 / max(len(order), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(detectors) * max(len(order), 1) * 0.5), 3.6))
    x = np.arange(len(detectors))
    for i, objective in enumerate(order):
        means = [agg.get(objective, {}).get(d, (np.nan, 0, 0))[0] for d in detectors]
        stds = [agg.get(objective, {}).get(d, (0, 0, 0))[1] for d in detectors]
        ax.bar(x + i * width - 0.4 + width / 2, means, width, yerr=stds, label=objective, capsize=1.5)
    ax.set_xticks(x, detectors, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("AUROC")
    lo = np.nanmin([agg.get(o, {}).get(d, (np.nan,))[0] for o in order for d in detectors])
    ax.set_ylim(max(0.0, float(lo) - 0.05), 1.0)
    ax.set_title("OOD detection per detector (higher is better)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = out / "ood_auroc.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_embeddings(by_objective: Mapping[str, Sequence[Run]], out: Path) -> Path | None:
    """2-D PCA embeddings of test features (first seed of each objective), coloured by class."""
    plt = _plt()
    items = [(o, next(r for r in rs if "embedding" in r.arrays)) for o, rs in by_objective.items()
             if any("embedding" in r.arrays for r in rs)]
    if not items:
        return None
    fig, axes = plt.subplots(1, len(items), figsize=(3.0 * len(items), 3.0), squeeze=False)
    for ax, (objective, run) in zip(axes[0], items):
        emb, lab = run.arrays["embedding"], run.arrays.get("embedding_labels")
        ax.scatter(emb[:, 0], emb[:, 1], c=lab, s=4, cmap="tab10", alpha=0.8)
        ax.set_title(objective, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("test features, first two principal components", fontsize=9)
    fig.tight_layout()
    path = out / "embeddings.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------- report
def _html_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(run_dirs: Iterable[str | Path], out: str | Path, *, title: str = "neuralcollapse report",
                 order: Sequence[str] | None = None, notes: Sequence[str] = ()) -> Path:
    """Write ``report.md``, PNG plots and a self-contained ``report.html`` (images inlined) into ``out``.

    Args:
        run_dirs: run folders, or folders containing them (searched recursively).
        out: output folder (created).
        title: report heading.
        order: objective order in tables and legends (default: order of first appearance).
        notes: extra Markdown paragraphs placed under the title (e.g. the exact command).

    Returns:
        The path of ``report.md``.
    """
    runs = load_runs(run_dirs)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    objectives = list(order) if order else list(dict.fromkeys(r.objective for r in runs))
    objectives = [o for o in objectives if any(r.objective == o for r in runs)]
    by_objective = {o: [r for r in runs if r.objective == o] for o in objectives}

    tables: list[tuple[str, list[str], list[list[str]]]] = []
    for section_title, key, columns in SECTIONS:
        t = _section_table(runs, key, columns, objectives)
        if t is not None:
            tables.append((section_title, *t))
    ood = _ood_table(runs, objectives)
    if ood is not None:
        ood_set = next((r.evaluation.get("ood_set") for r in runs if r.evaluation.get("ood_set")), "OOD set")
        tables.insert(1, (f"OOD detection AUROC, ID test vs {ood_set} (higher = better)", *ood))

    plots = [*plot_epoch_curves(by_objective, folder)]
    for maker in (plot_logit_histograms, plot_independence, plot_embeddings):
        p = maker(by_objective, folder)
        if p is not None:
            plots.append(p)
    p = plot_ood_bars(runs, objectives, folder)
    if p is not None:
        plots.append(p)

    md = [f"# {title}", "", *[f"{n}\n" for n in notes],
          f"{len(runs)} runs: " + ", ".join(f"{o} ({len(rs)})" for o, rs in by_objective.items()), ""]
    for section_title, headers, rows in tables:
        md += [f"## {section_title}", "", markdown_table(headers, rows), ""]
    if plots:
        md += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    md_path = folder / "report.md"
    md_path.write_text("\n".join(md))

    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.9em}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}"
             "td:first-child,th:first-child{text-align:left}img{max-width:100%;margin:0.5em 0}")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>"]
    parts += [f"<p>{html.escape(n)}</p>" for n in notes]
    for section_title, headers, rows in tables:
        parts.append(f"<h2>{html.escape(section_title)}</h2>{_html_table(headers, rows)}")
    for p in plots:
        data = base64.b64encode(p.read_bytes()).decode()
        parts.append(f"<img alt='{html.escape(p.stem)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    (folder / "report.html").write_text("".join(parts))
    return md_path

"""What a run leaves behind: per-epoch CSV/JSON metrics, the official OCCE TensorBoard tags, plots, and the
progress bar.

Rows are keyed by the 1-indexed epoch (``epoch``: metrics after that many epochs); on resume the rows of the
epochs being redone are dropped, so the files of a resumed run equal those of an uninterrupted one.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger

__all__ = [
    "OCCE_TAGS",
    "MetricsWriter",
    "OCCETensorBoardTags",
    "PlotWriter",
    "RunTensorBoardLogger",
    "epoch_record",
    "plot_metrics",
    "progress_bar",
    "purge_tensorboard",
    "read_metrics",
]

METRICS_JSON = "metrics.json"
METRICS_CSV = "metrics.csv"

#: The nine TensorBoard tags of the official OCCE code (cidl-auth/anticlasses) → our metric keys; step =
#: 0-indexed epoch, accuracy a fraction, losses sample-weighted epoch means, "Val" = the test split
#: (docs/methods.md §2.7). The OCCE loss is the KL form (0 at the optimum; the official code logs the same form).
OCCE_TAGS: dict[str, str] = {
    "Train/Classifier_LR": "lr",
    "Train/Accuracy": "train/acc",
    "Train/CE Loss": "train/ce",
    "Train/OCCE Loss": "train/occe",
    "Train/Total Loss": "train/loss",
    "Val/Accuracy": "test/acc",
    "Val/CE Loss": "test/ce",
    "Val/OCCE Loss": "test/occe",
    "Val/Total Loss": "test/loss",
}


def _float(value: Any) -> float | None:
    try:
        v = float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError, RuntimeError):
        return None
    return v if math.isfinite(v) else None


def epoch_record(trainer: Any, pl_module: Any) -> dict[str, float]:
    """The metrics of the epoch that just ended: the module's own record when it keeps one
    (:meth:`CollapseModule.epoch_record`, exact per epoch), else the trainer's callback metrics."""
    getter = getattr(pl_module, "epoch_record", None)
    if callable(getter):
        source: Mapping[str, Any] = getter()
    else:
        source = trainer.callback_metrics
    out = {}
    for key, value in source.items():
        if isinstance(value, list):  # e.g. DL2PA's `dl2pa/assignment` (metrics.json; a quoted cell in the CSV)
            out[str(key)] = list(value)
            continue
        v = _float(value)
        if v is not None:
            out[str(key)] = v
    return out


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, float]]:
    """Rows of ``<run_dir>/metrics.json`` (empty when absent)."""
    path = Path(run_dir) / METRICS_JSON
    if not path.is_file():
        return []
    return list(json.loads(path.read_text()))


def _write_rows(folder: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    _atomic_write(folder / METRICS_JSON, json.dumps(list(rows), indent=1))
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in columns})
    _atomic_write(folder / METRICS_CSV, buffer.getvalue())


class MetricsWriter(Callback):
    """Append one row per epoch to ``metrics.json`` and ``metrics.csv`` in ``folder`` (rank 0 only).

    Each row: ``epoch`` (1-indexed), ``step`` (optimizer steps so far) and every metric of the epoch.
    On resume, rows of epochs ≥ the resumed epoch are dropped first.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        super().__init__()
        self.folder = Path(folder)
        self.rows: list[dict[str, float]] = []

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        start = trainer.current_epoch
        self.rows = [r for r in read_metrics(self.folder) if int(r.get("epoch", 0)) <= start]

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        row: dict[str, float] = {"epoch": trainer.current_epoch + 1, "step": trainer.global_step}
        row.update(epoch_record(trainer, pl_module))
        self.rows = [r for r in self.rows if int(r["epoch"]) < row["epoch"]] + [row]
        if trainer.is_global_zero:
            _write_rows(self.folder, self.rows)


class OCCETensorBoardTags(Callback):
    """Log the official OCCE code's nine TensorBoard tags (:data:`OCCE_TAGS`) with step = 0-indexed epoch.

    Uses the trainer's ``TensorBoardLogger`` (its ``SummaryWriter``); tags whose metric is missing (e.g. no
    OCCE value for a head without logits) are skipped. Rank 0 only.
    """

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        writer = _tensorboard_writer(trainer)
        if writer is None:
            return
        record = epoch_record(trainer, pl_module)
        epoch = trainer.current_epoch
        if epoch == 0:
            writer.add_text(
                "Notes/OCCE", "OCCE Loss is the KL form KL(ȳ‖softmax(−z)) (0 at the optimum), as the official code "
                "logs it; 'Val' tags are computed on the test split; step = 0-indexed epoch.", 0,
            )
        for tag, key in OCCE_TAGS.items():
            if key in record:
                writer.add_scalar(tag, record[key], epoch)
        writer.flush()


class RunTensorBoardLogger(TensorBoardLogger):
    """Lightning's ``TensorBoardLogger`` whose tags never repeat a step: a value for a tag already written at
    this step or a later one is skipped. (Lightning adds ``epoch`` to both the evaluation and the training log
    call of an epoch, at the same step; after a resume :func:`purge_tensorboard` has dropped the redone steps.)
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._last_step: dict[str, int] = {}

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        if step is not None:
            metrics = {k: v for k, v in metrics.items() if self._last_step.get(k, -1) < step}
            self._last_step.update(dict.fromkeys(metrics, step))
            if not metrics:
                return
        super().log_metrics(metrics, step)


def _epoch_unit(tag: str) -> bool:
    """Tags whose step is the 0-indexed epoch (the official OCCE tags, the notes); the others' is the step."""
    return tag in OCCE_TAGS or tag.startswith("Notes/")


def purge_tensorboard(folder: str | os.PathLike, *, epoch: int, step: int) -> int:
    """Drop the TensorBoard values a run starting at 0-indexed ``epoch`` / logged step ``step`` writes again.

    Event files under ``folder`` are rewritten (atomically, only when something is dropped) without the values
    of the OCCE tags at steps ≥ ``epoch`` and of Lightning's tags at steps ≥ ``step``, so the steps of every
    tag strictly increase across a resume, as the rows of ``metrics.json`` do (a fresh run: ``epoch = step =
    0`` drops every value a crashed earlier attempt left). Returns the number of values dropped; 0 when
    TensorBoard is not installed.

    Example:
        >>> purge_tensorboard("runs/example/tensorboard", epoch=2, step=8)  # doctest: +SKIP
        0
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    try:
        from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter
    except ImportError:  # pragma: no cover - tensorboard is a dependency of the train extra
        return 0
    dropped = 0
    for path in sorted(folder.rglob("events.out.tfevents.*")):
        kept: list[bytes] = []
        changed = False
        for raw in RawEventFileLoader(str(path)).Load():
            event = event_pb2.Event.FromString(raw)
            if not event.HasField("summary"):
                kept.append(raw)
                continue
            values = [v for v in event.summary.value if event.step < (epoch if _epoch_unit(v.tag) else step)]
            if len(values) == len(event.summary.value):
                kept.append(raw)
                continue
            changed = True
            dropped += len(event.summary.value) - len(values)
            if values:
                del event.summary.value[:]
                event.summary.value.extend(values)
                kept.append(event.SerializeToString())
        if changed:
            tmp = path.with_name(f".{path.name}.tmp")
            with open(tmp, "wb") as handle:
                writer = RecordWriter(handle)
                for raw in kept:
                    writer.write(raw)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
    return dropped


def _tensorboard_writer(trainer: Any) -> Any:
    for logger in getattr(trainer, "loggers", []) or []:
        experiment = getattr(logger, "experiment", None)
        if experiment is not None and hasattr(experiment, "add_scalar"):
            return experiment
    return None


# ---------------------------------------------------------------------------------------------- plots
_ACCURACY_KEYS = ("train/acc", "train_clean/acc", "val/acc", "test/acc")
_NC_KEYS = ("nc1", "nc2", "nc3", "nc4", "ncc_mismatch")


def plot_metrics(rows: Sequence[Mapping[str, float]], folder: str | os.PathLike) -> list[Path]:
    """Write ``accuracy.png`` and ``neural_collapse.png`` (log scale) from per-epoch rows; returns the paths.

    Uses matplotlib's Agg backend (no display needed); nothing is written when there are no rows.
    """
    if not rows:
        return []
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []

    def series(key: str) -> tuple[list[float], list[float]]:
        pts = [(float(r["epoch"]), float(r[key])) for r in rows if key in r]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig, ax = plt.subplots(figsize=(6, 4))
    for key in _ACCURACY_KEYS:
        xs, ys = series(key)
        if xs:
            ax.plot(xs, ys, marker="." if len(xs) < 50 else None, label=key)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = folder / "accuracy.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    nc_keys = [(s, k) for s in ("train_nc", "test_nc", "val_nc") for k in _NC_KEYS]
    present = [(s, k) for s, k in nc_keys if any(f"{s}/{k}" in r for r in rows)]
    if present:
        metrics = sorted({k for _, k in present}, key=_NC_KEYS.index)
        fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.2), squeeze=False)
        for ax, metric in zip(axes[0], metrics):
            for stage in ("train_nc", "test_nc", "val_nc"):
                xs, ys = series(f"{stage}/{metric}")
                positive = [(x, y) for x, y in zip(xs, ys) if y > 0]
                if positive:
                    ax.plot([p[0] for p in positive], [p[1] for p in positive], marker=".",
                            label=stage.replace("_nc", ""))
            ax.set_title(metric)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            if ax.get_lines():
                ax.set_yscale("log")
                ax.legend(fontsize=7)
            else:  # every value is 0 (perfect collapse): nothing to draw on a log scale
                ax.text(0.5, 0.5, "0 at every epoch", ha="center", va="center", transform=ax.transAxes)
        fig.tight_layout()
        path = folder / "neural_collapse.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


class PlotWriter(Callback):
    """Draw the run's plots into ``folder`` at the end of training (rank 0), from ``metrics.json``."""

    def __init__(self, run_dir: str | os.PathLike, folder: str | os.PathLike | None = None) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.folder = Path(folder) if folder is not None else self.run_dir / "plots"

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.is_global_zero:
            plot_metrics(read_metrics(self.run_dir), self.folder)


def progress_bar() -> Callback:
    """The run's progress callback (:func:`neuralcollapse.training.progress.progress_bar`): the rich bar on a
    terminal, one line per epoch when stdout is not one (a log file, ``nohup``, SLURM)."""
    from .progress import progress_bar as choose

    return choose()

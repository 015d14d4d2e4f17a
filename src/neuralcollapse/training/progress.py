"""Progress output of ``neuralcollapse train`` / ``evaluate``: a rich bar on a terminal, plain lines otherwise.

On a terminal (``sys.stdout.isatty()``) training shows Lightning's rich bar with a 1-indexed epoch counter
(``Epoch 3/25``, the same numbering as the metrics files and the final "after epoch 25" table), the whole-run
ETA, and the phase of the per-epoch evaluation (``evaluating NC on the train set…``), which can take longer
than the epoch's training batches. When stdout is not a terminal (a log file, ``nohup``, SLURM) there is no
bar; one line per epoch is printed instead and flushed at once::

    epoch 3/25 · loss 0.4120 · train acc 0.8750 · test acc 0.9011 · NC1 train 0.2104 test 0.3012 · ...
    ... elapsed 0:00:09 · ETA 0:01:06

The ETA is the mean time of the epochs finished in this process (training and evaluation together) times
the epochs left, less the time already spent in the current epoch; before the first epoch ends it is
extrapolated from the fraction of training batches done.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TextIO

from lightning.pytorch.callbacks.progress.progress_bar import ProgressBar

__all__ = [
    "LineProgress",
    "RunClock",
    "epoch_line",
    "format_duration",
    "phase_reporter",
    "progress_bar",
    "stdout_is_terminal",
]

#: Phase shown while the module measures NC on the un-augmented training split (before the test batches).
TRAIN_NC_PHASE = "evaluating NC on the train set…"
EVAL_PHASE = "evaluating on the test set…"


def stdout_is_terminal(stream: TextIO | None = None) -> bool:
    """True when ``stream`` (default ``sys.stdout``) is an interactive terminal."""
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except ValueError:  # a closed stream
        return False


def format_duration(seconds: float | None) -> str:
    """``H:MM:SS`` of a non-negative duration (``"?"`` when unknown).

    Example:
        >>> format_duration(3725.4)
        '1:02:05'
        >>> format_duration(None)
        '?'
    """
    if seconds is None:
        return "?"
    total = max(0, round(float(seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class RunClock:
    """Elapsed time and whole-run ETA of a training run, epoch-granular.

    Args:
        start_epoch: epochs already done when this process started (0, or the resumed epoch).
        max_epochs: the run's total epochs.
        clock: a monotonic clock (injectable for tests).

    Example:
        >>> t = iter([0.0, 10.0, 10.0])
        >>> rc = RunClock(0, 4, clock=lambda: next(t))
        >>> rc.epoch_done(1)   # epoch 1 took 10 s
        >>> rc.eta(1)          # 3 epochs left at 10 s each
        30.0
    """

    def __init__(self, start_epoch: int, max_epochs: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.start_epoch = int(start_epoch)
        self.max_epochs = int(max_epochs)
        self.t0 = clock()
        self.last_done_at: float | None = None
        self.done = 0

    def elapsed(self) -> float:
        return self.clock() - self.t0

    def epoch_done(self, epochs_completed: int) -> None:
        """Record that the run has completed ``epochs_completed`` epochs (1-indexed count)."""
        self.done = int(epochs_completed) - self.start_epoch
        self.last_done_at = self.clock()

    def eta(self, epochs_completed: int, fraction: float = 0.0) -> float | None:
        """Seconds left in the run once ``epochs_completed`` epochs are done and ``fraction`` of the training
        batches of the current one (used only before the first epoch ends); None while unknown."""
        now = self.clock()
        left = self.max_epochs - int(epochs_completed)
        if left <= 0:
            return 0.0
        if self.done > 0 and self.last_done_at is not None:
            per_epoch = (self.last_done_at - self.t0) / self.done
            return max(0.0, per_epoch * left - (now - self.last_done_at))
        if fraction > 0:
            spent = now - self.t0
            return max(0.0, spent / fraction * left - spent)
        return None


def _fmt(value: float) -> str:
    return f"{value:.4f}" if value == 0 or 1e-3 <= abs(value) < 1e4 else f"{value:.3e}"


#: (label, metric keys tried in order) of the per-epoch line.
_LINE_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("loss", ("train/loss",)),
    ("train acc", ("train/acc",)),
    ("val acc", ("val/acc",)),
    ("test acc", ("test/acc",)),
)


def epoch_line(epoch: int, max_epochs: int, metrics: Mapping[str, float], elapsed: float,
               eta: float | None) -> str:
    """The per-epoch log line: epoch i/N, loss, train/val/test accuracy, NC1 (train/test when measured this
    epoch), γ of a scheduled term, elapsed time and whole-run ETA.

    Example:
        >>> epoch_line(2, 5, {"train/loss": 0.5, "train/acc": 0.8, "test/acc": 0.75, "test_nc/nc1": 0.25}, 12, 18)
        'epoch 2/5 · loss 0.5000 · train acc 0.8000 · test acc 0.7500 · NC1 test 0.2500 · elapsed 0:00:12 · ETA 0:00:18'
    """
    parts = [f"epoch {epoch}/{max_epochs}"]
    for label, keys in _LINE_FIELDS:
        key = next((k for k in keys if k in metrics), None)
        if key is not None:
            parts.append(f"{label} {_fmt(float(metrics[key]))}")
    nc1 = [(stage, metrics[f"{stage}_nc/nc1"]) for stage in ("train", "val", "test") if f"{stage}_nc/nc1" in metrics]
    if nc1:
        parts.append("NC1 " + " ".join(f"{stage} {_fmt(float(v))}" for stage, v in nc1))
    for key in sorted(k for k in metrics if k.startswith("gamma/")):
        parts.append(f"γ {_fmt(float(metrics[key]))}")
    parts.append(f"elapsed {format_duration(elapsed)}")
    parts.append(f"ETA {format_duration(eta)}")
    return " · ".join(parts)


def _epoch_metrics(trainer: Any, pl_module: Any) -> dict[str, float]:
    from .recording import epoch_record

    return epoch_record(trainer, pl_module)


def _train_nc_pass(pl_module: Any) -> bool:
    """Whether the module measures NC on the training split in this validation epoch (CollapseModule)."""
    nc_epoch = getattr(pl_module, "nc_epoch", None)
    config = getattr(pl_module, "config", None)
    try:
        return bool(callable(nc_epoch) and nc_epoch() and getattr(config, "nc_on_train", False))
    except Exception:  # a foreign module's nc_epoch: show the generic phase
        return False


class LineProgress(ProgressBar):
    """Progress for logs: one flushed line per epoch (:func:`epoch_line`) on ``stream`` (rank 0 only).

    It is Lightning's progress-bar callback for the run (so Lightning adds no bar of its own).

    Args:
        stream: where to print (default ``sys.stdout`` at print time).
        clock: monotonic clock (tests).
    """

    def __init__(self, stream: TextIO | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.stream = stream
        self.clock = clock
        self._enabled = True
        self.run_clock: RunClock | None = None

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def _print(self, text: str) -> None:
        stream = sys.stdout if self.stream is None else self.stream
        print(text, file=stream, flush=True)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.run_clock = RunClock(trainer.current_epoch, trainer.max_epochs or 0, clock=self.clock)
        if trainer.current_epoch > 0 and self._enabled and trainer.is_global_zero:
            self._print(f"resuming after epoch {trainer.current_epoch}/{trainer.max_epochs}")

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking or not self._enabled or not trainer.is_global_zero:
            return
        if self.run_clock is None:
            self.on_train_start(trainer, pl_module)
        epoch = trainer.current_epoch + 1
        self.run_clock.epoch_done(epoch)
        line = epoch_line(epoch, trainer.max_epochs, _epoch_metrics(trainer, pl_module), self.run_clock.elapsed(),
                          self.run_clock.eta(epoch))
        self._print(line)


def _rich_bar(leave: bool = False) -> Any:
    from lightning.pytorch.callbacks import RichProgressBar

    class RichBar(RichProgressBar):
        """Lightning's rich bar, 1-indexed epochs, the whole-run ETA and the evaluation phase."""

        def __init__(self) -> None:
            super().__init__(leave=leave)
            self.run_clock: RunClock | None = None
            self.phase: str | None = None
            self._shown: str | None = None
            self._batches = 0

        def get_metrics(self, trainer: Any, pl_module: Any) -> dict[str, Any]:
            metrics = super().get_metrics(trainer, pl_module)
            metrics.pop("v_num", None)  # the TensorBoard version string, not a metric
            return metrics

        def _get_train_description(self, current_epoch: int) -> str:
            text = f"Epoch {current_epoch + 1}"
            if self.trainer.max_epochs is not None:
                text += f"/{self.trainer.max_epochs}"
            if self.phase:
                return f"{text} · {self.phase}"
            if self.run_clock is not None:
                total = self.total_train_batches
                finite = isinstance(total, int | float) and 0 < total < float("inf")
                fraction = min(1.0, self._batches / total) if finite else 0.0
                text += f" · run ETA {format_duration(self.run_clock.eta(current_epoch, fraction))}"
            return text

        def _describe(self) -> None:
            if self.progress is None or self.train_progress_bar_id is None:
                return
            text = self._get_train_description(self.trainer.current_epoch)
            if text != self._shown:
                self._shown = text
                self.progress.update(self.train_progress_bar_id, description=text)
                self.refresh()

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            self.run_clock = RunClock(trainer.current_epoch, trainer.max_epochs or 0)
            super().on_train_start(trainer, pl_module)

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            self.phase = None
            self._batches = 0
            super().on_train_epoch_start(trainer, pl_module)

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            self._batches = batch_idx + 1
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
            self._describe()

        def on_validation_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            # Runs before the module's own hook, which makes the NC pass over the training split.
            if not trainer.sanity_checking:
                self.phase = TRAIN_NC_PHASE if _train_nc_pass(pl_module) else EVAL_PHASE
                self._describe()

        def on_validation_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int,
                                      dataloader_idx: int = 0) -> None:
            if not trainer.sanity_checking and self.phase != EVAL_PHASE:
                self.phase = EVAL_PHASE
                self._describe()
            super().on_validation_batch_start(trainer, pl_module, batch, batch_idx, dataloader_idx)

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            if self.run_clock is not None:
                self.run_clock.epoch_done(trainer.current_epoch + 1)
            self.phase = None
            self._describe()
            super().on_train_epoch_end(trainer, pl_module)

    return RichBar()


def progress_bar(stream: TextIO | None = None) -> Any:
    """The run's progress callback: the rich bar when ``stream`` (default stdout) is a terminal and ``rich``
    imports, else :class:`LineProgress` (one line per epoch)."""
    if stdout_is_terminal(stream):
        try:
            import rich  # noqa: F401

            return _rich_bar()
        except ImportError:  # pragma: no cover - rich is a declared dependency of the train extra
            pass
    return LineProgress(stream)


@contextlib.contextmanager
def phase_reporter(command: str, stream: TextIO | None = None,
                   clock: Callable[[], float] = time.monotonic) -> Iterator[Callable[[str], None]]:
    """A ``log(text)`` for the phases of a long command (``evaluate``): on a terminal a rich spinner showing
    the current phase; otherwise one flushed line per phase, ``<command> · <elapsed> · <phase>``.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> with phase_reporter("evaluate", out, clock=lambda: 0.0) as log:
        ...     log("extracting features: train split")
        >>> out.getvalue()
        'evaluate · 0:00:00 · extracting features: train split\\n'
    """
    start = clock()
    if stdout_is_terminal(stream):
        try:
            from rich.console import Console
        except ImportError:  # pragma: no cover
            Console = None
        if Console is not None:
            console = Console(file=stream, stderr=False)
            with console.status(f"{command}: starting…") as status:
                yield lambda text: status.update(f"{command} · {format_duration(clock() - start)} · {text}")
            return

    def log(text: str) -> None:
        print(f"{command} · {format_duration(clock() - start)} · {text}", file=sys.stdout if stream is None else stream,
              flush=True)

    yield log

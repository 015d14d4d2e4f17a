"""``fit(config)``: one training run, from a validated config to a run folder.

The run folder holds ``config.yaml`` (the resolved config), ``metrics.csv``/``metrics.json`` (one row per
epoch), ``tensorboard/`` (Lightning's logs plus the official OCCE tags), ``checkpoints/last.ckpt`` (written
atomically every epoch; ``resume=True`` continues from it) and ``plots/``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import RESUMABLE_CHANGES, TrainConfig, config_diff, save_config, validate_config

__all__ = [
    "RUN_DIR_ENV",
    "RunResult",
    "RunSettingWarning",
    "build_callbacks",
    "build_trainer",
    "check_hardware",
    "fit",
    "resolve_run_dir",
    "resume_config",
]

#: Environment variable carrying the run folder to DDP worker processes launched by Lightning.
RUN_DIR_ENV = "NEURALCOLLAPSE_RUN_DIR"
#: Parent folder of run folders when ``out`` is not given.
DEFAULT_RUNS_DIR = "runs"


@dataclass
class RunResult:
    """Outcome of :func:`fit`: the run folder, its config, the final epoch's metrics and the history."""

    run_dir: Path
    config: TrainConfig
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def checkpoint(self) -> Path | None:
        path = self.run_dir / "checkpoints" / "last.ckpt"
        return path if path.is_file() else None


def _is_worker() -> bool:
    """True in a process started by a launcher as a non-zero rank (Lightning's DDP launcher, torchrun)."""
    return any(int(os.environ.get(k, "0") or 0) > 0 for k in ("LOCAL_RANK", "NODE_RANK", "RANK"))


def _launched_distributed() -> bool:
    return "RANK" in os.environ or "LOCAL_RANK" in os.environ


def resolve_run_dir(config: TrainConfig, *, resume: bool) -> Path:
    """The run folder: ``config.out``, else ``runs/<config.run_name()>``.

    Without ``resume``, a default-named folder that already holds a checkpoint gets a numeric suffix
    (``-2``, ``-3`` …); an explicit ``out`` that holds one raises (pass ``resume`` or another folder). DDP
    workers started by Lightning reuse the folder chosen by rank 0 (environment ``NEURALCOLLAPSE_RUN_DIR``).
    """
    if _is_worker() and os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    explicit = config.out is not None
    base = Path(config.out) if explicit else Path(DEFAULT_RUNS_DIR) / config.run_name()
    if resume:
        return base
    if (base / "checkpoints" / "last.ckpt").exists():
        if explicit or _launched_distributed():
            raise FileExistsError(
                f"run folder {str(base)!r} already holds a checkpoint; pass --resume to continue it, or --out "
                "with a new folder"
            )
        n = 2
        while (base.with_name(f"{base.name}-{n}") / "checkpoints" / "last.ckpt").exists():
            n += 1
        base = base.with_name(f"{base.name}-{n}")
    return base


def checkpoint_run_dir(checkpoint: str | os.PathLike) -> Path:
    """The run folder of a checkpoint file ``<run>/checkpoints/<name>.ckpt``; raises ``ValueError`` for a file
    elsewhere (resuming writes into its run folder)."""
    path = Path(checkpoint)
    if path.parent.name != "checkpoints":
        raise ValueError(
            f"--resume {str(path)!r}: a checkpoint to resume must lie in a run folder's checkpoints/ folder "
            "(<run>/checkpoints/last.ckpt or prev.ckpt); pass the run folder instead"
        )
    return path.parent.parent


def _resume_checkpoint(run_dir: Path, checkpoint: str | os.PathLike | None) -> Path:
    """The checkpoint a resume starts from: ``checkpoint``, else ``<run_dir>/checkpoints/last.ckpt``; a clear
    ``FileNotFoundError`` (naming an older copy when one is there) when it does not exist."""
    from .checkpoint import LAST_CHECKPOINT, backup_names

    if checkpoint is not None:
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f"nothing to resume: checkpoint {str(checkpoint)!r} does not exist")
        return Path(checkpoint)
    ckpt = run_dir / "checkpoints" / LAST_CHECKPOINT
    if not ckpt.is_file():
        older = [ckpt.with_name(n) for n in backup_names(10) if ckpt.with_name(n).is_file()]
        hint = f"; an older checkpoint is there: resume from it with --resume {older[0]}" if older else ""
        raise FileNotFoundError(f"nothing to resume in {str(run_dir)!r}: no checkpoints/last.ckpt{hint}")
    return ckpt


def resume_config(
    run_dir: str | os.PathLike, overrides: dict[str, Any] | None = None, *, checkpoint: str | os.PathLike | None = None
) -> TrainConfig:
    """The saved config of ``run_dir`` (read from ``checkpoint``, default ``checkpoints/last.ckpt``) with
    ``overrides`` of the fields that may change on resume (``epochs``, devices, progress …); other changes raise
    ``ValueError`` naming them."""
    from .checkpoint import load_checkpoint

    run_dir = Path(run_dir)
    ckpt = _resume_checkpoint(run_dir, checkpoint)
    checkpoint = load_checkpoint(ckpt)
    saved = TrainConfig.from_dict(checkpoint["hyper_parameters"]["config"], source=str(ckpt))
    config = saved.replace(**(overrides or {}), out=str(run_dir))
    changed = sorted(k for k in config_diff(saved, config) if k not in RESUMABLE_CHANGES)
    if changed:
        raise ValueError(
            f"cannot change {', '.join(changed)} when resuming {str(run_dir)!r} (only "
            f"{', '.join(RESUMABLE_CHANGES)} may change); start a new run with --out instead"
        )
    done = int(checkpoint.get("epoch", -1)) + 1  # the end-of-epoch checkpoint holds the 0-indexed epoch
    if config.epochs <= done:
        asked = f"--epochs {config.epochs}" if "epochs" in (overrides or {}) else f"its own {config.epochs} epochs"
        raise ValueError(
            f"nothing to train: {str(run_dir)!r} has already finished epoch {done} (of {saved.epochs}), so resuming "
            f"with {asked} runs no epoch; pass --epochs N with N > {done} to train further"
        )
    return config


class RunSettingWarning(UserWarning):
    """A setting that runs but probably not as intended (e.g. more CPU processes than cores)."""


def _cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def check_hardware(config: TrainConfig) -> None:
    """Refuse an accelerator this machine does not have, and warn when ``devices`` asks for more CPU processes
    than there are cores.

    ``accelerator`` "gpu"/"cuda" without a usable CUDA device (or "mps" without MPS) raises ``ValueError``
    with one line saying what is missing and what to pass instead. On the CPU, ``devices`` N starts N DDP
    processes; with N above the number of cores available to this process they share cores and the run is
    slower than with fewer: that is allowed (it exercises DDP on a laptop) but warned about
    (:class:`RunSettingWarning`), and ``config.yaml`` records what ran.
    """
    import torch

    accel = str(config.accelerator).lower()
    if accel in ("gpu", "cuda") and not torch.cuda.is_available():
        build = getattr(torch.version, "cuda", None)
        why = "this PyTorch build has no CUDA support" if build is None else "no CUDA device is visible"
        raise ValueError(
            f"--accelerator {config.accelerator} needs a CUDA GPU, but {why} (torch {torch.__version__}); use "
            "--accelerator cpu, or auto (the GPU when there is one)"
        )
    mps = getattr(torch.backends, "mps", None)
    if accel == "mps" and not (mps is not None and mps.is_available()):
        raise ValueError(f"--accelerator {config.accelerator} needs Apple's MPS, which this machine lacks; use "
                         "--accelerator cpu, or auto")
    on_cpu = accel == "cpu" or (accel == "auto" and not torch.cuda.is_available()
                                and not (mps is not None and mps.is_available()))
    devices = config.devices
    if on_cpu and isinstance(devices, int) and not isinstance(devices, bool):
        cores = _cpu_cores()
        if devices > cores:
            warnings.warn(
                f"--devices {devices} starts {devices} CPU processes (DDP) on {cores} core(s): they share the cores "
                f"and the run is slower than with --devices {cores} or 1",
                RunSettingWarning,
                stacklevel=2,
            )


#: Lightning messages that say nothing about this run (we log epoch-level values only; GPU/TPU banners).
_NOISE = (
    r".*number of training batches .* is smaller than the logging interval.*",
    r".*isinstance\(treespec, LeafSpec\).*",
    r".*It is recommended to use `self\.log\(.*sync_dist=True\)`.*",
    r".*does not have many workers which may be a bottleneck.*",
)


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Silence Lightning's informational banners and warnings that do not apply to these runs."""
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for pattern in _NOISE:
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        logger.setLevel(level)


def _precision(config: TrainConfig) -> str:
    if config.precision != "auto":
        return config.precision
    import torch

    accel = config.accelerator
    if accel in ("auto", "gpu", "cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def build_callbacks(config: TrainConfig, run_dir: Path, extra: Sequence[Any] = ()) -> list[Any]:
    """The run's callbacks in execution order (checkpointing runs last, as Lightning orders it)."""
    from ..losses import parse_objective
    from .callbacks import (
        AdaFocalCallback,
        AnticlassSelfDistillation,
        GammaScheduleCallback,
        MarginScheduleCallback,
        PrototypeReassignment,
    )
    from .checkpoint import RunCheckpoint
    from .config import build_margin_schedule, paced_gamma_schedule
    from .diagnostics import LPCDiagnostics
    from .recording import MetricsWriter, OCCETensorBoardTags, PlotWriter, progress_bar

    terms = [n for n, _ in parse_objective(config.loss)]
    callbacks: list[Any] = []
    if config.gamma_schedule is not None:
        schedule, auto = paced_gamma_schedule(config)
        gamma_callback = GammaScheduleCallback(schedule, config.gamma_schedule_term, auto_period=auto)
        callbacks.append(gamma_callback)
        if config.head == "lpc":
            callbacks.append(LPCDiagnostics(gamma_callback))
    elif config.head == "lpc":
        callbacks.append(LPCDiagnostics(None))
    if config.margin_schedule is not None:
        term = next((t for t in terms if t in ("arcface", "cosface")), None)
        if term is None:
            raise ValueError("`margin_schedule` needs an 'arcface' or 'cosface' term in `loss`")
        callbacks.append(MarginScheduleCallback(build_margin_schedule(config.margin_schedule, term), term))
    if config.soft_targets != "none":
        callbacks.append(AnticlassSelfDistillation(config.soft_targets, config.soft_alpha))
    if "adafocal" in terms:
        callbacks.append(AdaFocalCallback())
    callbacks.extend(extra)
    if config.reassign_every > 0:
        callbacks.append(PrototypeReassignment(config.reassign_every, required=False))
    callbacks.append(MetricsWriter(run_dir))
    if config.tensorboard:
        callbacks.append(OCCETensorBoardTags())
    if config.plots:
        callbacks.append(PlotWriter(run_dir))
    if config.progress:
        callbacks.append(progress_bar())
    if config.checkpoint:
        callbacks.append(RunCheckpoint(run_dir / "checkpoints"))
    return callbacks


def build_trainer(config: TrainConfig, run_dir: Path, callbacks: Sequence[Any], **overrides: Any) -> Any:
    """A ``lightning.Trainer`` for the run (atomic checkpoints, epoch-level logging, no sanity check)."""
    import lightning as L

    from .checkpoint import AtomicCheckpointIO

    logger: Any = False
    if config.tensorboard:
        from .recording import RunTensorBoardLogger

        # Mirrors the official OCCE layout logs/{dataset}/{model}/{model}_ce=..._occe=..._e=..._s=...
        weights = _official_weights(config.loss)
        stem = f"{config.model}_ce={weights[0]:g}_occe={weights[1]:g}_e="
        version = f"{stem}{config.epochs}_s={config.seed}"
        name = f"{config.dataset}/{config.model}"
        # A run resumed with more --epochs keeps writing into the folder it started in.
        started = sorted((run_dir / "tensorboard" / name).glob(f"{stem}*_s={config.seed}"), key=os.path.getmtime)
        if started and not (run_dir / "tensorboard" / name / version).is_dir():
            version = started[-1].name
        logger = RunTensorBoardLogger(save_dir=str(run_dir / "tensorboard"), name=name, version=version,
                                      default_hp_metric=False)
    kwargs: dict[str, Any] = dict(
        max_epochs=config.epochs,
        accelerator=config.accelerator,
        devices=config.devices,
        num_nodes=config.num_nodes,
        strategy=config.strategy,
        precision=_precision(config),
        deterministic=config.deterministic,
        logger=logger,
        callbacks=list(callbacks),
        enable_checkpointing=config.checkpoint,
        enable_progress_bar=config.progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        check_val_every_n_epoch=config.val_every,
        limit_train_batches=config.limit_train_batches,
        limit_val_batches=config.limit_eval_batches,
        log_every_n_steps=50,
        use_distributed_sampler=False,
        default_root_dir=str(run_dir),
        plugins=[AtomicCheckpointIO(config.keep_checkpoints)],
        sync_batchnorm=_sync_batchnorm(config),
        benchmark=False if config.deterministic else None,
    )
    kwargs.update(overrides)
    return L.Trainer(**kwargs)


def _sync_batchnorm(config: TrainConfig) -> bool:
    """SyncBatchNorm under DDP when asked for and the run is on CUDA (PyTorch's SyncBatchNorm has no CPU
    kernel); elsewhere the module averages the ranks' running statistics before evaluating and saving."""
    if not config.sync_batchnorm:
        return False
    import torch

    accel = str(config.accelerator).lower()
    return accel in ("gpu", "cuda") or (accel == "auto" and torch.cuda.is_available())


def _official_weights(loss: str) -> tuple[float, float]:
    from ..losses import parse_objective

    weights = dict(parse_objective(loss))
    return weights.get("ce", 0.0), weights.get("occe", 0.0)


def _resume_target(config: TrainConfig, resume: bool | str | os.PathLike) -> tuple[Path, Path | None]:
    """(run folder, checkpoint to resume from or None) of a :func:`fit` call."""
    if resume is None or resume is False:
        return resolve_run_dir(config, resume=False), None
    if resume is True:
        run_dir = resolve_run_dir(config, resume=True)
        return run_dir, _resume_checkpoint(run_dir, None)
    run_dir = Path(config.out) if config.out is not None else checkpoint_run_dir(resume)
    return run_dir, _resume_checkpoint(run_dir, resume)


def fit(
    config: TrainConfig,
    *,
    resume: bool | str | os.PathLike = False,
    callbacks: Sequence[Any] = (),
    trainer_kwargs: dict[str, Any] | None = None,
) -> RunResult:
    """Train one run and return its :class:`RunResult`.

    Args:
        config: the resolved config (validated here).
        resume: continue ``<run>/checkpoints/last.ckpt`` (model, optimiser, epoch, schedules, prototype
            assignment, soft-target memory, RNG); the run folder is ``config.out`` (or the default name). A
            path resumes from that checkpoint instead, e.g. the backup ``<run>/checkpoints/prev.ckpt``.
        callbacks: extra Lightning callbacks (run before the recorders).
        trainer_kwargs: overrides of the ``lightning.Trainer`` arguments.

    Raises:
        ValueError / TypeError: invalid config (the message names the setting and the valid choices).
        DataUnavailableError: the data set is missing (with the download hint).
        CorruptCheckpointError: ``resume`` with an unreadable checkpoint (it is left as it is; the message names
            the backups).
        FileExistsError: ``out`` already holds a checkpoint and ``resume`` is False.
        RunFolderBusyError: another process trains in the run folder (the message names its PID).
        RunFolderNotWritableError: the run folder cannot be written, before or during training.

    Example:
        >>> result = fit(TrainConfig(epochs=2, progress=False))  # doctest: +SKIP
        >>> result.metrics["test/acc"] > 0.5  # doctest: +SKIP
        True
    """
    from .runfolder import RunFolderLock

    validate_config(config)
    check_hardware(config)
    run_dir, ckpt_path = _resume_target(config, resume)
    # One writer per run folder: a second `train` on it (or a --resume while it trains) is refused.
    lock = None if _is_worker() else RunFolderLock(run_dir).acquire()
    try:
        return _fit_locked(config, run_dir, ckpt_path, callbacks, trainer_kwargs)
    finally:
        if lock is not None:
            lock.release()


def _fit_locked(config: TrainConfig, run_dir: Path, ckpt_path: Path | None, callbacks: Sequence[Any],
                trainer_kwargs: dict[str, Any] | None) -> RunResult:
    """:func:`fit` once the run folder is locked."""
    import lightning as L

    from .checkpoint import load_checkpoint
    from .datamodule import CollapseDataModule
    from .module import CollapseModule
    from .recording import purge_tensorboard, read_metrics
    from .runfolder import quiet_writer_threads, unwritable_during_run

    start = (0, 0)  # (epoch, logged step) the run starts at
    if ckpt_path is not None:
        saved = load_checkpoint(ckpt_path)  # a clear error now rather than deep inside Lightning
        loops = saved.get("loops", {}).get("fit_loop", {}).get("epoch_loop.state_dict", {})
        start = (int(saved["epoch"]) + 1, int(loops.get("_batches_that_stepped", saved.get("global_step", 0))))
    elif not _is_worker() and (run_dir / "checkpoints" / "last.ckpt").exists():  # written while we waited
        raise FileExistsError(
            f"run folder {str(run_dir)!r} already holds a checkpoint; pass --resume to continue it, or --out "
            "with a new folder"
        )
    config = config.replace(out=str(run_dir))
    L.seed_everything(config.seed, workers=True, verbose=False)
    datamodule = CollapseDataModule(config)
    info = datamodule.load()
    module = CollapseModule(config, info)
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        with quiet_lightning():
            trainer = build_trainer(config, run_dir, build_callbacks(config, run_dir, callbacks),
                                    **(trainer_kwargs or {}))
    except MisconfigurationException as err:  # e.g. an unknown strategy or accelerator name: a settings error
        raise ValueError(f"accelerator/devices/strategy/precision settings: {err}") from None
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / "config.yaml")
    if config.tensorboard and trainer.is_global_zero:
        # Events of epochs this run (re)does, e.g. written before a crash after the last checkpoint, are dropped.
        purge_tensorboard(run_dir / "tensorboard", epoch=start[0], step=start[1])
    previous = os.environ.get(RUN_DIR_ENV)
    if not _is_worker():
        os.environ[RUN_DIR_ENV] = str(run_dir)  # DDP workers launched by Lightning inherit the folder
    try:
        with quiet_lightning(), quiet_writer_threads():
            trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None)
    except Exception as err:
        # A folder made read-only mid-run surfaces as some write's PermissionError (or a Lightning error raised
        # while handling it): say that, once.
        folder_error = unwritable_during_run(err, run_dir, checkpoint=run_dir / "checkpoints" / "last.ckpt")
        if folder_error is None:
            raise
        raise folder_error from err
    finally:
        if not _is_worker():
            if previous is None:
                os.environ.pop(RUN_DIR_ENV, None)
            else:
                os.environ[RUN_DIR_ENV] = previous
    history = read_metrics(run_dir)
    return RunResult(run_dir, config, dict(history[-1]) if history else {}, history)

"""``TrainConfig``: every setting of a training run, built from a recipe + overrides, validated, saved as YAML.

Layers, later wins: dataclass defaults (the quick-start run: digits, MLP, CE + OCCE) ← recipe
(``experiments/recipes/*.yaml``, :mod:`neuralcollapse.training.recipes`) ← objective preset
(:data:`neuralcollapse.training.presets.OBJECTIVES`) ← explicit command-line flags. The resolved config is
written to ``<run>/config.yaml`` and stored in every checkpoint, so a run is reproducible from its folder.

This module imports neither Lightning nor torch at import time (``neuralcollapse --help`` stays fast); the
registry checks in :func:`validate_config` import the model/data/head/loss packages when called.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = [
    "ACTIVATIONS",
    "OPTIMIZERS",
    "PRECISIONS",
    "SCHEDULES",
    "SCHEDULE_INTERVALS",
    "SOFT_TARGET_ALPHA",
    "SOFT_TARGET_MODES",
    "TrainConfig",
    "apply_settings",
    "build_gamma_schedule",
    "build_margin_schedule",
    "check_gamma_pace",
    "config_diff",
    "describe_gamma_pacing",
    "load_config",
    "merge_settings",
    "paced_gamma_schedule",
    "save_config",
    "set_term_weight",
    "validate_config",
]

ACTIVATIONS = ("relu", "silu")
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("multistep", "cosine", "constant")
SCHEDULE_INTERVALS = ("epoch", "step")
SOFT_TARGET_MODES = ("none", "instance", "class")
#: OCCE paper, Appendix A.1.1: α = 0.1 (instance self-distillation, Eq. 9), α = 0.5 (class-based, Eq. 10).
SOFT_TARGET_ALPHA = {"instance": 0.1, "class": 0.5}
PRECISIONS = ("auto", "32-true", "64-true", "bf16-mixed", "16-mixed", "bf16-true")
PAD_MODES = ("reflect", "constant", "replicate")
LR_SCALINGS = ("none", "linear")
#: Parameter groups that can be held at the base learning rate (LPC: the classifier is excluded from decay).
LR_GROUPS = ("classifier",)
#: Fields that may change when a run is resumed (they do not change the trajectory).
RESUMABLE_CHANGES = ("epochs", "devices", "num_nodes", "accelerator", "strategy", "progress", "out",
                     "keep_checkpoints")


@dataclass
class TrainConfig:
    """All settings of one training run (flat, so that recipes and flags address fields by name).

    The defaults are the quick-start run of ``neuralcollapse train`` with no arguments: the embedded digits
    data, an MLP, CE + OCCE (γ = 1, the OCCE paper's Eq. 8), 25 epochs, a CPU minute. Paper settings live in
    the recipes. Field groups: data, model and objective, optimisation, augmentation, runtime, monitoring.

    Example:
        >>> cfg = TrainConfig(epochs=2, loss="ce+0.1*occe")
        >>> cfg.to_dict()["loss"]
        'ce+0.1*occe'
        >>> TrainConfig.from_dict({"epochs": 3}).epochs
        3
    """

    # --- data ----------------------------------------------------------------------------------------
    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    #: check known data files (MNIST, Fashion-MNIST, MNIST-5k) against their published digests, cached per file
    #: (neuralcollapse.data.verify); False = ``--no-verify``, for deliberately edited files.
    verify_data: bool = True
    #: fraction of the training split held out as a validation set (0 = none; evaluation uses the test split,
    #: as the OCCE code, whose "Val" tags are test-set values).
    val_fraction: float = 0.0
    #: normalise CIFAR-100 with the CIFAR-10 constants, as the official OCCE code does (docs/methods.md §2.7, defect 2).
    official_normalization: bool = False
    #: open-set recognition: number of known classes (train on those, remapped to 0..k-1), split seed.
    osr_known: int | None = None
    osr_split_seed: int | None = None
    #: long-tail imbalance ratio ρ: n_c = n_max·ρ^{c/(K-1)} (DL2PA / ETF recipes); None = balanced.
    long_tail_ratio: float | None = None
    #: class-balanced batches (NTCE/NONL, docs/methods.md §4.3): classes_per_batch × samples_per_class per rank.
    class_balanced: bool = False
    classes_per_batch: int | None = None
    samples_per_class: int | None = None
    #: training subset for smoke runs (a seeded subset of n samples after the splits); None = all.
    train_subset: int | None = None
    #: keep the in-memory data on the accelerator (batches are gathered there, no per-batch host→device copy):
    #: True, False or "auto" (on CUDA when the data fit in DATA_ON_DEVICE_MAX_BYTES).
    data_on_device: bool | str = "auto"

    # --- model and objective ---------------------------------------------------------------------------
    model: str = "mlp"
    activation: str = "relu"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    head: str = "linear"
    head_kwargs: dict[str, Any] = field(default_factory=dict)
    #: the objective preset this config was expanded from (a label; the preset's fields are already applied).
    objective: str | None = None
    loss: str = "ce+occe"
    #: per-term hyperparameters, e.g. {"focal": {"gamma": 3.0}}.
    loss_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: extra terms computed without gradient for logging (the official OCCE tags log CE and OCCE for any run).
    monitor_terms: list[str] = field(default_factory=lambda: ["ce", "occe"])
    #: soft anti-class targets for OCCE (Appendix A.1.1): none | instance (α 0.1) | class (α 0.5).
    soft_targets: str = "none"
    soft_target_alpha: float | None = None
    #: γ schedule of a term's weight, applied before each epoch (LPC, docs/methods.md §6.2): a preset name
    #: ("lpc-paper", "lpc-2025") or a mapping of GammaSchedule arguments; None = constant weight.
    gamma_schedule: str | dict[str, Any] | None = None
    gamma_schedule_term: str = "lpc"
    #: progress unit of the γ schedule: "epoch" (the paper verbatim: one schedule epoch per training epoch), an
    #: int N (one schedule epoch per N optimizer steps; 391 = the paper's CIFAR-10 epoch at batch 128), or
    #: "auto" (N = min(391, ⌊0.75·total steps/increments⌋): the schedule's final γ within the run).
    gamma_pace: str | int = "epoch"
    #: margin/scale ramp for ArcFace/CosFace (docs/methods.md §5): a preset ("lpc-arcface", "lpc-cosface"), "auto"
    #: (the loss's preset) or a mapping of MarginSchedule arguments.
    margin_schedule: str | bool | dict[str, Any] | None = None
    #: DL2PA label-to-prototype re-assignment cadence in epochs, after validation (0 = fixed assignment).
    reassign_every: int = 1
    #: AdaFocal: fraction of the training split held out for the per-epoch γ update (docs/methods.md §3).
    adafocal_holdout: float = 0.1

    # --- optimisation -----------------------------------------------------------------------------------
    epochs: int = 25
    batch_size: int = 64
    eval_batch_size: int = 256
    optimizer: str = "sgd"
    lr: float = 0.05
    #: "linear": lr ← lr · (total batch) / lr_reference_batch (NTCE/NONL's CIFAR rule 0.2·B/256).
    lr_scaling: str = "none"
    lr_reference_batch: int = 256
    momentum: float = 0.9
    nesterov: bool = False
    #: applied to all parameters (BN and biases included), as the official OCCE code.
    weight_decay: float = 5e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    schedule: str = "cosine"
    milestones: list[int] = field(default_factory=list)
    #: multiplicative lr decay at each milestone (the official OCCE flag ``--gamma``; ours is ``--lr-decay``).
    lr_decay: float = 0.1
    schedule_interval: str = "epoch"
    #: cosine end value as a fraction of the base lr.
    min_lr_factor: float = 0.0
    #: first epoch of the cosine decay (constant lr before; the current LPC reference decays from epoch 200).
    cosine_start: float = 0.0
    warmup_epochs: float = 0.0
    #: absolute lr at the start of the linear warm-up (it ends at the schedule's value at the warm-up end).
    warmup_start_lr: float = 0.0
    #: parameter groups kept at the base lr (LPC: ["classifier"], docs/methods.md §6.3).
    constant_lr_groups: list[str] = field(default_factory=list)
    #: the classifier's own learning rate (None = ``lr``). LPC: under AdamW the classifier's row norm grows about
    #: lr per step, and it must grow like √γ to keep the margin (docs/methods.md §6.2); short runs need a larger one.
    classifier_lr: float | None = None
    grad_clip: float | None = None

    # --- augmentation (batched, on the device) -------------------------------------------------------------
    augment: bool = False
    crop_padding: int = 4
    pad_mode: str = "reflect"
    flip: bool = True
    #: RandomResizedCrop scale range, e.g. [0.2, 1.0] (NTCE/NONL CIFAR); None = pad-and-crop.
    random_resized_crop: list[float] | None = None
    mixup_alpha: float = 0.0

    # --- runtime --------------------------------------------------------------------------------------------
    seed: int = 0
    deterministic: bool = False
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "auto"
    #: channels-last memory format for conv nets on CUDA ("auto" = on CUDA only).
    channels_last: bool | str = "auto"
    #: run folder (None: runs/<name>); resumable from <out>/checkpoints/last.ckpt.
    out: str | None = None
    name: str | None = None
    #: the recipe this config came from (recorded, not re-applied).
    recipe: str | None = None
    checkpoint: bool = True
    #: copies of checkpoints/last.ckpt kept, itself included: 2 = last.ckpt + prev.ckpt (the epoch before).
    keep_checkpoints: int = 2
    #: under DDP on CUDA, SyncBatchNorm (batch statistics over all ranks); on every device the BatchNorm running
    #: statistics are averaged over the ranks before each evaluation and checkpoint either way.
    sync_batchnorm: bool = True
    progress: bool = True
    tensorboard: bool = True
    #: limit batches per epoch (int) or fraction (float) — for smoke tests; 1.0 = all.
    limit_train_batches: int | float = 1.0
    limit_eval_batches: int | float = 1.0

    # --- monitoring -------------------------------------------------------------------------------------------
    #: neural-collapse metrics every k epochs (0 = never): on the test split during validation, and on the
    #: un-augmented training split in eval mode (one extra pass) when nc_on_train.
    nc_every: int = 1
    nc_on_train: bool = True
    val_every: int = 1
    plots: bool = True

    # ------------------------------------------------------------------------------------------------------
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "config") -> TrainConfig:
        """Build from a mapping; unknown keys raise ``ValueError`` naming the closest field."""
        if not isinstance(data, Mapping):
            raise TypeError(f"{source} must be a mapping of settings; got {type(data).__name__}")
        check_keys(data, source=source)
        return cls(**{k: _copy(v) for k, v in data.items()})

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python (YAML-safe) dict of every field."""
        return {f.name: _copy(getattr(self, f.name)) for f in fields(self)}

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (unknown names raise)."""
        return merge_settings(self, changes)

    @property
    def soft_alpha(self) -> float:
        """α of the soft anti-class targets (the paper's default for the mode unless given)."""
        if self.soft_target_alpha is not None:
            return float(self.soft_target_alpha)
        return SOFT_TARGET_ALPHA.get(self.soft_targets, 0.0)

    def run_name(self) -> str:
        """Default run-folder name: ``<recipe[-variant]>[-<head>]-s<seed>``, else
        ``<dataset>-<model>[-<head>]-<objective or loss>-s<seed>``. The head appears when it is not the one the
        objective preset (or recipe) implies — a loss spec implies ``linear`` — e.g. ``digits-mlp-dl2pa-s0``
        but ``digits-mlp-etf-dl2pa-s0`` and ``digits-mlp-prototypes-ce+occe-s0``.

        Example:
            >>> TrainConfig(head="prototypes").run_name()
            'digits-mlp-prototypes-ce+occe-s0'
        """
        if self.name:
            return self.name
        head = "" if str(self.head).lower() == self._implied_head().lower() else f"-{self.head}"
        if self.recipe:
            stem = self.recipe.replace(":", "-") + head
        else:
            stem = f"{self.dataset}-{self.model}{head}-{self.objective or self.loss}"
        safe = "".join(ch if ch.isalnum() or ch in "-_.+" else "_" for ch in stem.replace("*", "x"))
        return f"{safe}-s{self.seed}"

    def _implied_head(self) -> str:
        """The head the objective preset, else the recipe, else a plain loss spec (linear) implies."""
        from .presets import OBJECTIVES

        if self.objective and str(self.objective).lower() in OBJECTIVES:
            return str(OBJECTIVES[str(self.objective).lower()].settings.get("head", "linear"))
        if self.recipe:
            from .recipes import recipe_settings

            try:
                return str(recipe_settings(self.recipe).get("head", "linear"))
            except (ValueError, OSError):  # a recipe that is no longer on disk: keep the name short
                return str(self.head)
        return "linear"


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(v) for v in value]
    return value


def check_keys(data: Mapping[str, Any], *, source: str) -> None:
    """Reject keys that are not ``TrainConfig`` fields, naming the closest match."""
    valid = TrainConfig.field_names()
    for key in data:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown setting {key!r} in {source}{hint} (valid settings: {', '.join(valid)})")


def merge_settings(config: TrainConfig, changes: Mapping[str, Any], *, source: str = "overrides") -> TrainConfig:
    """``config`` with ``changes`` applied (a new object; ``config`` is unchanged).

    Example:
        >>> merge_settings(TrainConfig(), {"epochs": 2}).epochs
        2
    """
    check_keys(changes, source=source)
    data = config.to_dict()
    data.update({k: _copy(v) for k, v in changes.items()})
    return TrainConfig(**data)


def _deep_merge(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    out = {str(k): _copy(v) for k, v in base.items()}
    for key, value in changes.items():
        key = str(key)
        if isinstance(out.get(key), Mapping) and isinstance(value, Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = _copy(value)
    return out


def apply_settings(
    config: TrainConfig, settings: Mapping[str, Any] | Iterable[tuple[str, Any]], *, source: str = "--set"
) -> TrainConfig:
    """``config`` with ``KEY=VALUE`` settings applied in order, as ``--set`` applies them.

    Mapping values **merge** into a mapping the config already holds (recursively: ``loss_kwargs`` per term),
    so ``--set 'head_kwargs={dim: 3}'`` after ``--objective hpn`` keeps the preset's ``method: hpn``. A
    ``null`` value empties a mapping field (``head_kwargs``, ``model_kwargs``, ``loss_kwargs``); to replace a
    mapping, empty it first: ``--set head_kwargs=null --set 'head_kwargs={dim: 3}'``. Other values replace.

    Example:
        >>> cfg = TrainConfig(head="prototypes", head_kwargs={"method": "hpn"})
        >>> apply_settings(cfg, [("head_kwargs", {"dim": 3})]).head_kwargs
        {'method': 'hpn', 'dim': 3}
        >>> apply_settings(cfg, [("head_kwargs", None), ("head_kwargs", {"dim": 3})]).head_kwargs
        {'dim': 3}
    """
    items = list(settings.items() if isinstance(settings, Mapping) else settings)
    check_keys(dict(items), source=source)
    defaults = {f.name: f for f in fields(TrainConfig)}
    data = config.to_dict()
    for key, value in items:
        default = defaults[key].default_factory() if defaults[key].default_factory is not dataclasses.MISSING else (
            defaults[key].default)
        if value is None and isinstance(default, Mapping):
            data[key] = {}
        elif isinstance(data[key], Mapping) and isinstance(value, Mapping):
            data[key] = _deep_merge(data[key], value)
        else:
            data[key] = _copy(value)
    return TrainConfig(**data)


def config_diff(a: TrainConfig, b: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """Fields that differ between two configs: name → (a value, b value)."""
    da, db = a.to_dict(), b.to_dict()
    return {k: (da[k], db[k]) for k in da if da[k] != db[k]}


def save_config(config: TrainConfig, path: str | Path) -> Path:
    """Write the resolved config as YAML (atomically: temp file + rename)."""
    import os

    import yaml

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=None))
    os.replace(tmp, path)
    return path


def load_config(path: str | Path) -> TrainConfig:
    """Read a config YAML written by :func:`save_config` (or hand-written with the same keys)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    return TrainConfig.from_dict(data, source=str(path))


# ---------------------------------------------------------------------------------------------------------
# Loss-spec editing (official flags --w_ce / --w_occe, our --gamma)


def set_term_weight(spec: str, term: str, weight: float) -> str:
    """Return ``spec`` with the weight of ``term`` set to ``weight`` (the term is appended when absent).

    A zero weight keeps the term (its value is still computed and logged, as the official OCCE code logs
    the OCCE loss of CE-only runs).

    Example:
        >>> set_term_weight("ce+occe", "occe", 0.1)
        'ce+0.1*occe'
        >>> set_term_weight("ce", "occe", 0.5)
        'ce+0.5*occe'
    """
    from ..losses.objective import parse_objective

    weight = float(weight)
    if not weight >= 0 or math.isinf(weight):
        raise ValueError(f"weight of {term!r} must be finite and >= 0; got {weight}")
    from ..losses import TERMS

    key = TERMS.resolve(term)
    pairs = parse_objective(spec)
    if key in dict(pairs):
        pairs = [(n, weight if n == key else w) for n, w in pairs]
    else:
        pairs.append((key, weight))
    return "+".join(n if w == 1.0 else f"{w:g}*{n}" for n, w in pairs)


# ---------------------------------------------------------------------------------------------------------
# Validation


def _check_int(value: Any, name: str, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be an integer; got {value!r}")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}; got {value}")


def _check_number(value: Any, name: str, *, low: float | None = None, high: float | None = None,
                  low_open: bool = False, high_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"`{name}` must be a number; got {value!r}")
    v = float(value)
    bad = math.isnan(v) or math.isinf(v)
    if low is not None:
        bad = bad or (v <= low if low_open else v < low)
    if high is not None:
        bad = bad or (v >= high if high_open else v > high)
    if bad:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        lb, rb = ("(" if low_open or low is None else "["), (")" if high_open or high is None else "]")
        raise ValueError(f"`{name}` must be in {lb}{lo}, {hi}{rb}; got {value!r}")


def _check_choice(value: Any, name: str, choices: Iterable[str], hint: str = "") -> None:
    choices = tuple(choices)
    if value not in choices:
        close = difflib.get_close_matches(str(value), [c for c in choices if isinstance(c, str)], n=1)
        extra = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"`{name}` must be one of {', '.join(map(repr, choices))}; got {value!r}{extra}{hint}")


def validate_config(config: TrainConfig, *, registries: bool = True) -> TrainConfig:
    """Check a config; raise ``ValueError``/``TypeError`` naming the setting and listing valid choices.

    Checks value ranges and choices, then (``registries=True``) that the dataset, model, head and loss terms
    are registered, that the head provides what each loss term needs (e.g. NTCE needs prototypes: a linear
    head raises and names the heads that work), and that switches match the loss (soft targets need OCCE,
    a γ schedule needs its term). Data-dependent checks (ETF with d < K−1, known classes < K) run when the
    model is built (:func:`neuralcollapse.training.network.build_network`).

    Returns:
        ``config`` (unchanged), for chaining.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"`config` must be a TrainConfig; got {type(config).__name__}")
    c = config
    _check_choice(c.activation, "activation", ACTIVATIONS)
    _check_choice(c.optimizer, "optimizer", OPTIMIZERS)
    _check_choice(c.schedule, "schedule", SCHEDULES)
    _check_choice(c.schedule_interval, "schedule_interval", SCHEDULE_INTERVALS)
    _check_choice(c.soft_targets, "soft_targets", SOFT_TARGET_MODES)
    _check_choice(c.precision, "precision", PRECISIONS)
    _check_choice(c.pad_mode, "pad_mode", PAD_MODES)
    _check_choice(c.lr_scaling, "lr_scaling", LR_SCALINGS)
    _check_choice(c.data_on_device, "data_on_device", (True, False, "auto"))
    _check_choice(c.channels_last, "channels_last", (True, False, "auto"))
    _check_choice(c.sync_batchnorm, "sync_batchnorm", (True, False))
    for group in c.constant_lr_groups:
        _check_choice(group, "constant_lr_groups", LR_GROUPS)
    for name in ("epochs", "batch_size", "eval_batch_size", "lr_reference_batch", "num_nodes", "val_every",
                 "keep_checkpoints"):
        _check_int(getattr(c, name), name, minimum=1)
    for name in ("nc_every", "reassign_every", "crop_padding"):
        _check_int(getattr(c, name), name, minimum=0)
    _check_int(c.seed, "seed", minimum=0)
    _check_number(c.lr, "lr", low=0.0, low_open=True)
    if c.classifier_lr is not None:
        _check_number(c.classifier_lr, "classifier_lr", low=0.0, low_open=True)
    _check_number(c.momentum, "momentum", low=0.0, high=1.0, high_open=True)
    _check_number(c.weight_decay, "weight_decay", low=0.0)
    _check_number(c.lr_decay, "lr_decay", low=0.0, high=1.0, low_open=True)
    _check_number(c.min_lr_factor, "min_lr_factor", low=0.0, high=1.0)
    _check_number(c.cosine_start, "cosine_start", low=0.0)
    if c.cosine_start >= c.epochs:
        raise ValueError(f"`cosine_start` must be below `epochs` ({c.epochs}); got {c.cosine_start}")
    _check_number(c.warmup_epochs, "warmup_epochs", low=0.0)
    _check_number(c.warmup_start_lr, "warmup_start_lr", low=0.0)
    _check_number(c.val_fraction, "val_fraction", low=0.0, high=1.0, high_open=True)
    _check_number(c.adafocal_holdout, "adafocal_holdout", low=0.0, high=1.0, low_open=True, high_open=True)
    _check_number(c.mixup_alpha, "mixup_alpha", low=0.0)
    if c.warmup_epochs >= c.epochs and c.warmup_epochs > 0:
        raise ValueError(f"`warmup_epochs` must be < `epochs` ({c.epochs}); got {c.warmup_epochs}")
    if not isinstance(c.betas, list | tuple) or len(c.betas) != 2:
        raise ValueError(f"`betas` must be two numbers (AdamW β1, β2); got {c.betas!r}")
    for i, b in enumerate(c.betas):
        _check_number(b, f"betas[{i}]", low=0.0, high=1.0, high_open=True)
    if not isinstance(c.milestones, list | tuple):
        raise TypeError(f"`milestones` must be a list of epochs; got {c.milestones!r}")
    previous = 0
    for m in c.milestones:
        _check_int(m, "milestones", minimum=1)
        if m <= previous:
            raise ValueError(f"`milestones` must be strictly increasing positive epochs; got {list(c.milestones)}")
        previous = m
    if c.schedule == "multistep" and not c.milestones:
        raise ValueError("`schedule` 'multistep' needs `milestones` (e.g. [50, 100]); or use 'cosine'/'constant'")
    if c.grad_clip is not None:
        _check_number(c.grad_clip, "grad_clip", low=0.0, low_open=True)
    if c.long_tail_ratio is not None:
        _check_number(c.long_tail_ratio, "long_tail_ratio", low=0.0, high=1.0, low_open=True)
    if c.osr_known is not None:
        _check_int(c.osr_known, "osr_known", minimum=2)
    if c.osr_split_seed is not None:
        _check_int(c.osr_split_seed, "osr_split_seed", minimum=0)
    if c.train_subset is not None:
        _check_int(c.train_subset, "train_subset", minimum=1)
    if not isinstance(c.verify_data, bool):
        raise TypeError(f"`verify_data` must be a bool; got {c.verify_data!r}")
    if c.soft_target_alpha is not None:
        _check_number(c.soft_target_alpha, "soft_target_alpha", low=0.0, high=1.0, low_open=True)
    if c.class_balanced:
        for name in ("classes_per_batch", "samples_per_class"):
            value = getattr(c, name)
            if value is not None:
                _check_int(value, name, minimum=1)
    if c.soft_targets != "none" and c.mixup_alpha > 0:
        raise ValueError("`soft_targets` and `mixup_alpha` > 0 cannot be combined (a mixed sample has two labels, "
                         "a one-cold target has one)")
    if c.random_resized_crop is not None:
        rrc = c.random_resized_crop
        if not isinstance(rrc, list | tuple) or len(rrc) != 2 or not 0 < rrc[0] <= rrc[1] <= 1:
            raise ValueError(f"`random_resized_crop` must be a scale range [low, high] in (0, 1]; got {rrc!r}")
    for name in ("limit_train_batches", "limit_eval_batches"):
        value = getattr(c, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ValueError(f"`{name}` must be a positive int (batches) or a fraction in (0, 1]; got {value!r}")
        if isinstance(value, float) and value > 1:
            raise ValueError(f"`{name}` as a float is a fraction in (0, 1]; got {value}")
    for name in ("model_kwargs", "head_kwargs", "loss_kwargs"):
        if not isinstance(getattr(c, name), Mapping):
            raise TypeError(f"`{name}` must be a mapping; got {getattr(c, name)!r}")
    if registries:
        _validate_registries(c)
    return config


def _validate_registries(c: TrainConfig) -> None:
    from .. import data, heads, models
    from ..losses import TERMS, parse_objective

    for kind, registry_module, name in (("dataset", data, c.dataset), ("model", models, c.model),
                                        ("head", heads, c.head)):
        names = registry_module.names()
        resolved = _resolve(registry_module, name)
        if resolved is None:
            close = difflib.get_close_matches(str(name).lower(), names, n=1)
            extra = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(names)}{extra}")
    try:
        pairs = parse_objective(c.loss)
    except ValueError as err:
        raise ValueError(f"`loss` {c.loss!r}: {err}") from None
    terms = [n for n, _ in pairs]
    for name in c.monitor_terms:
        TERMS.resolve(name)
    unknown_kwargs = sorted(set(map(TERMS.resolve, c.loss_kwargs)) - set(terms))
    if unknown_kwargs:
        raise ValueError(
            f"`loss_kwargs` names term(s) {', '.join(unknown_kwargs)} that are not in `loss` {c.loss!r}"
        )
    if c.soft_targets != "none" and "occe" not in terms:
        raise ValueError(
            f"`soft_targets` {c.soft_targets!r} feeds the OCCE term, but `loss` {c.loss!r} has no 'occe'; "
            "add it (e.g. --loss ce+occe) or use --soft-targets none"
        )
    if c.gamma_schedule is not None:
        term = TERMS.resolve(c.gamma_schedule_term)
        if term not in terms:
            raise ValueError(
                f"`gamma_schedule` drives the weight of {term!r}, which is not in `loss` {c.loss!r}; "
                f"add it (e.g. 'ce+{term}') or set `gamma_schedule_term`"
            )
        schedule = build_gamma_schedule(c.gamma_schedule)  # raises on a bad preset / arguments
        check_gamma_pace(c.gamma_pace, schedule)
    if c.margin_schedule is not None:
        margin_terms = [t for t in terms if t in ("arcface", "cosface")]
        if not margin_terms:
            raise ValueError(f"`margin_schedule` ramps ArcFace/CosFace, but `loss` {c.loss!r} has neither")
        build_margin_schedule(c.margin_schedule, margin_terms[0])
    if "cot" in terms and c.optimizer != "sgd":
        raise ValueError("`loss` with 'cot' uses a second SGD optimiser (COT, Chen et al. 2019); set `optimizer` 'sgd'")
    check_head_provides(c.head, terms)


def _registry_of(module: Any) -> Any:
    """The :class:`~neuralcollapse._registry.Registry` a package exposes (``MODELS``, ``DATASETS`` …)."""
    from .._registry import Registry

    for value in vars(module).values():
        if isinstance(value, Registry):
            return value
    return None


def _resolve(module: Any, name: str) -> str | None:
    registry = _registry_of(module)
    try:
        if registry is not None:
            return registry.resolve(name)
        key = str(name).strip().lower().replace("-", "_")
        return key if key in module.names() else None
    except (ValueError, TypeError):
        return None


def build_gamma_schedule(spec: str | Mapping[str, Any]) -> Any:
    """A :class:`~neuralcollapse.schedules.GammaSchedule` from a preset name ("lpc-paper", "lpc-2025" …), or a
    mapping of its arguments (optionally with ``preset`` and overrides)."""
    from ..schedules import GAMMA_PRESETS, GammaSchedule

    if isinstance(spec, str):
        _check_choice(spec, "gamma_schedule", GAMMA_PRESETS)
        return GammaSchedule.from_preset(spec)
    if isinstance(spec, Mapping):
        spec = dict(spec)
        preset = spec.pop("preset", None)
        if preset is not None:
            _check_choice(preset, "gamma_schedule.preset", GAMMA_PRESETS)
            return GammaSchedule.from_preset(preset, **spec)
        return GammaSchedule(**spec)
    raise TypeError(f"`gamma_schedule` must be a preset name or a mapping; got {spec!r}")


def check_gamma_pace(pace: Any, schedule: Any = None) -> str | int:
    """Validate ``gamma_pace`` ("epoch", "auto" or a positive int of optimizer steps); with ``schedule``, refuse a
    schedule mapping that already sets its own ``unit``/``period`` alongside a pace other than "epoch"."""
    if isinstance(pace, str) and pace.strip().lower() in ("epoch", "auto"):
        pace = pace.strip().lower()
    elif isinstance(pace, bool) or not isinstance(pace, int) or pace < 1:
        raise ValueError(
            f"`gamma_pace` must be 'epoch', 'auto' or a positive number of optimizer steps per schedule epoch "
            f"(391 = the paper's CIFAR-10 epoch); got {pace!r}"
        )
    if schedule is not None and pace != "epoch" and getattr(schedule, "unit", "epoch") != "epoch":
        raise ValueError(
            "`gamma_schedule` sets its own unit/period; drop them or leave `gamma_pace` at 'epoch' (one place only)"
        )
    return pace


def paced_gamma_schedule(config: TrainConfig) -> tuple[Any, bool]:
    """The run's γ schedule with ``gamma_pace`` applied: ``(schedule, auto)``; with ``auto`` the callback picks
    the period from the run's total optimizer steps when training starts."""
    schedule = build_gamma_schedule(config.gamma_schedule)
    pace = check_gamma_pace(config.gamma_pace, schedule)
    if pace == "auto":
        return schedule, True
    if pace != "epoch":
        return schedule.with_period(pace), False
    return schedule, False


def describe_gamma_pacing(config: TrainConfig, *, train_size: int | None = None) -> str:
    """One line on how the run's γ schedule is paced and whether it reaches its final γ (``--print-config``).

    ``train_size`` defaults to the size of the run's training split (the data are loaded to count it)."""
    if config.gamma_schedule is None:
        return "γ schedule: none (constant term weights)"
    from .datamodule import CollapseDataModule, train_batches_per_epoch

    if train_size is None:
        train_size = CollapseDataModule(config).load().train_size
    world = max(int(config.devices), 1) if str(config.devices).isdigit() else 1
    steps_per_epoch = train_batches_per_epoch(train_size, config.batch_size, world)
    if isinstance(config.limit_train_batches, int) and not isinstance(config.limit_train_batches, bool):
        steps_per_epoch = min(steps_per_epoch, config.limit_train_batches)
    schedule, auto = paced_gamma_schedule(config)
    total = steps_per_epoch * config.epochs
    prefix = "γ pacing"
    if auto:
        from ..schedules import auto_period

        schedule = schedule.with_period(auto_period(schedule, total))
        prefix = "γ pacing (auto)"
    text = schedule.describe(steps_per_epoch=steps_per_epoch, epochs=config.epochs)
    return f"{prefix}: {text}; {steps_per_epoch} optimizer steps per epoch, {total} in the run"


def build_margin_schedule(spec: str | Mapping[str, Any], term: str = "arcface") -> Any:
    """A :class:`~neuralcollapse.schedules.MarginSchedule` from a preset name ("lpc-arcface", "lpc-cosface"),
    ``True``/"auto" (the preset of ``term``), or a mapping of its arguments (optionally with ``preset``)."""
    from ..schedules import MARGIN_PRESETS, MarginSchedule

    if spec is True or spec == "auto":
        spec = f"lpc-{term}"
    if isinstance(spec, str):
        _check_choice(spec, "margin_schedule", MARGIN_PRESETS)
        return MarginSchedule.from_preset(spec)
    if isinstance(spec, Mapping):
        spec = dict(spec)
        preset = spec.pop("preset", None)
        if preset is not None:
            _check_choice(preset, "margin_schedule.preset", MARGIN_PRESETS)
            return MarginSchedule.from_preset(preset, **spec)
        return MarginSchedule(**spec)
    raise TypeError(f"`margin_schedule` must be a preset name or a mapping; got {spec!r}")


def term_needs(term: str) -> tuple[str, ...]:
    """The ``HeadOutput`` fields a loss term needs: its ``LossTerm.needs`` — the library's one rule (a term
    that shapes unit class prototypes also needs ``cosines``, see :class:`~neuralcollapse.losses.LossTerm`), so
    ``Objective`` on a head's output and ``train``'s config check agree."""
    from ..losses import TERMS

    return tuple(getattr(TERMS.get(term), "needs", ("logits",)))


def check_head_provides(head: str, terms: Iterable[str]) -> None:
    """Raise when a loss term needs a head output field (:func:`term_needs`) that ``head`` does not provide.

    Which fields a head provides is found by probing each registered head once on a tiny input (d = 8, K = 4),
    so this never drifts from the heads themselves. The message names the heads that do provide the fields.
    """
    provided = head_fields(head)
    for term in terms:
        needs = term_needs(term)
        missing = [f for f in needs if f not in provided]
        if missing:
            working = [h for h, f in all_head_fields().items() if all(m in f for m in needs)]
            what = ("cosine logits against unit class prototypes" if "cosines" in missing
                    else "the head output field(s) " + ", ".join(missing))
            raise ValueError(
                f"loss term {term!r} needs {what} (HeadOutput.{', HeadOutput.'.join(missing)}), which head "
                f"{head!r} does not provide; heads that work with {term!r}: {', '.join(working) or 'none'}"
            )


_PROBE_CACHE: dict[str, frozenset[str]] = {}
_PROBE_CLASSES, _PROBE_DIM = 4, 8


def head_fields(head: str) -> frozenset[str]:
    """The non-None ``HeadOutput`` fields of the registered head ``head`` (probed once, cached)."""
    from .. import heads

    registry = _registry_of(heads)
    key = registry.resolve(head) if registry is not None else head
    if key not in _PROBE_CACHE:
        import torch

        from ..output import HeadOutput

        module = heads.create(key, in_features=_PROBE_DIM, num_classes=_PROBE_CLASSES)
        module.eval()
        try:
            with torch.no_grad():
                out = module(torch.randn(2 * _PROBE_CLASSES, _PROBE_DIM, generator=torch.Generator().manual_seed(0)))
        except (ValueError, RuntimeError) as err:
            trainable = [n for n in heads.names() if n != key]
            raise ValueError(
                f"head {head!r} cannot be trained by gradient descent in a run (its forward needs a fitting pass "
                f"first: {err}); trainable heads: {', '.join(trainable)}"
            ) from None
        _PROBE_CACHE[key] = frozenset(
            f.name for f in dataclasses.fields(HeadOutput) if f.name != "extras" and getattr(out, f.name) is not None
        )
    return _PROBE_CACHE[key]


def all_head_fields() -> dict[str, frozenset[str]]:
    """Probed output fields of every registered head (heads that fail to build on the probe are skipped)."""
    from .. import heads

    out = {}
    for name in heads.names():
        try:
            out[name] = head_fields(name)
        except (ValueError, TypeError, RuntimeError):
            continue
    return out

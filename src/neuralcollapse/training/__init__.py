"""The training system: a Lightning module, data module and callbacks composing backbones, heads, objectives
and geometry metrics; recipes, checkpoint/resume, DDP; the ``train``/``evaluate``/``recipes`` commands.

Quick start (digits, MLP, CE + OCCE, a CPU minute)::

    from neuralcollapse.training import TrainConfig, fit
    result = fit(TrainConfig())
    print(result.metrics["test/acc"], result.run_dir)

Names are imported on first use, so ``import neuralcollapse.training`` does not import Lightning;
:mod:`~neuralcollapse.training.config`, :mod:`~neuralcollapse.training.presets` and
:mod:`~neuralcollapse.training.recipes` never do.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    # per-epoch schedules (defined in neuralcollapse.schedules; re-exported for the training API)
    "GammaSchedule": "..schedules",
    "MarginSchedule": "..schedules",
    # config, presets, recipes (no Lightning)
    "TrainConfig": "config",
    "validate_config": "config",
    "load_config": "config",
    "save_config": "config",
    "OBJECTIVES": "presets",
    "ObjectivePreset": "presets",
    "expand_objective": "presets",
    "Recipe": "recipes",
    "get_recipe": "recipes",
    "list_recipes": "recipes",
    "recipe_config": "recipes",
    "recipe_names": "recipes",
    # lr schedules and optimisers
    "build_optimizer": "optim",
    "lr_factor": "optim",
    # Lightning pieces
    "CollapseModule": "module",
    "CollapseDataModule": "datamodule",
    "DataInfo": "network",
    "build_network": "network",
    "GeometryMonitor": "monitor",
    "GammaScheduleCallback": "callbacks",
    "MarginScheduleCallback": "callbacks",
    "PrototypeReassignment": "callbacks",
    "AnticlassSelfDistillation": "callbacks",
    "AdaFocalCallback": "callbacks",
    "MetricsWriter": "recording",
    "OCCETensorBoardTags": "recording",
    "PlotWriter": "recording",
    "AtomicCheckpointIO": "checkpoint",
    "CorruptCheckpointError": "checkpoint",
    "RunCheckpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "RunResult": "runner",
    "fit": "runner",
    "evaluate_checkpoint": "evaluation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        target = _EXPORTS[name]
        module = importlib.import_module(target, __name__) if target.startswith(".") else importlib.import_module(
            f"{__name__}.{target}"
        )
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'neuralcollapse.training' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])

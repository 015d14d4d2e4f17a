"""Experiments: recipes for the papers' settings (``recipes/*.yaml``), the compare runner, analyses and
reports, and the unconstrained-feature-model simulation."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["UFMResult", "iterations_to_reach", "simulate_ufm"]


def __getattr__(name: str) -> Any:
    # Imported on first use: ``ufm`` imports torch, and ``experiments.commands`` (the CLI) must not.
    if name in __all__:
        value = getattr(importlib.import_module(".ufm", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'neuralcollapse.experiments' has no attribute {name!r}")

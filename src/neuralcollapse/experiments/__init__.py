"""Experiments: recipes for the papers' settings (``recipes/*.yaml``), the compare runner, analyses and
reports, and the unconstrained-feature-model simulation."""

from .ufm import UFMResult, iterations_to_reach, simulate_ufm

__all__ = ["UFMResult", "iterations_to_reach", "simulate_ufm"]

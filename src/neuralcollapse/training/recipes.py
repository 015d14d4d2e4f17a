"""Recipes: the papers' settings as YAML files shipped in ``neuralcollapse/experiments/recipes/``.

A recipe is a set of :class:`~neuralcollapse.training.config.TrainConfig` fields. To avoid dozens of
near-identical files, one YAML file may hold several recipes that share a ``base`` and a table of
``variants`` (e.g. the OCCE Table 1 baselines: ``ce``, ``ls``, ``focal+occe`` …). Select a variant with
``NAME:VARIANT`` (``occe-cifar100-resnet18:focal``); plain ``NAME`` uses the file's ``default_variant``.

File schema (every key optional except ``recipes`` or ``settings``)::

    description: what the file covers
    base: {settings shared by every recipe of the file}
    variants: {variant name: {settings}, ...}      # shared by every recipe of the file
    default_variant: ce+occe
    recipes:                                         # several recipes in one file ...
      occe-cifar100-resnet18:
        description: ...
        extends: other-recipe                        # optional: start from another recipe's settings
        settings: {...}
        variants: {...}                              # optional, added to / overriding the shared ones
    settings: {...}                                  # ... or a single recipe named after the file

Layers, later wins: ``extends`` target ← file ``base`` ← recipe ``settings`` ← variant. Within a layer an
``objective`` key is expanded first (its preset's fields), then the layer's other keys override it.
Mapping-valued fields (``head_kwargs``, ``loss_kwargs`` …) are replaced, not merged.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from .config import TrainConfig, check_keys, merge_settings
from .presets import expand_objective

__all__ = [
    "RECIPE_DIR",
    "Recipe",
    "get_recipe",
    "list_recipes",
    "recipe_config",
    "recipe_names",
    "recipe_settings",
]

RECIPE_DIR = Path(__file__).resolve().parents[1] / "experiments" / "recipes"
_FILE_KEYS = ("description", "base", "variants", "default_variant", "recipes", "settings", "extends", "name")
_RECIPE_KEYS = ("description", "settings", "variants", "default_variant", "extends")


@dataclass(frozen=True)
class Recipe:
    """One recipe: its name, description, layered settings, variants and the file it came from."""

    name: str
    description: str
    layers: tuple[Mapping[str, Any], ...]
    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    default_variant: str | None = None
    extends: str | None = None
    source: Path | None = None

    def settings(self, variant: str | None = None, *, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
        """The resolved TrainConfig fields of this recipe (with ``variant``, or the default variant)."""
        merged: dict[str, Any] = {}
        if self.extends:
            merged.update(recipe_settings(self.extends, directory=self.source.parent if self.source else None,
                                          _seen=(*_seen, self.name)))
        for layer in self.layers:
            merged.update(_expand_layer(layer))
        chosen = variant if variant is not None else self.default_variant
        if chosen is not None:
            if chosen not in self.variants:
                raise ValueError(
                    f"recipe {self.name!r} has no variant {chosen!r}; variants: {', '.join(self.variants) or 'none'}"
                )
            merged.update(_expand_layer(self.variants[chosen]))
        merged["recipe"] = self.name if chosen is None or chosen == self.default_variant else f"{self.name}:{chosen}"
        return merged


def _expand_layer(layer: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if layer.get("objective") is not None:
        out.update(expand_objective(layer["objective"]))
    out.update({k: v for k, v in layer.items() if k != "objective"})
    if layer.get("objective") is not None:
        out["objective"] = out.get("objective") or layer["objective"]
    return out


def _check_mapping(value: Any, what: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} must be a mapping; got {type(value).__name__}")
    return value


def _parse_file(path: Path) -> list[Recipe]:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"recipe file {path} is not valid YAML: {err}") from None
    doc = _check_mapping(doc, f"recipe file {path}")
    for key in doc:
        if key not in _FILE_KEYS:
            raise ValueError(f"recipe file {path}: unknown key {key!r}; valid keys: {', '.join(_FILE_KEYS)}")
    base = _check_mapping(doc.get("base"), f"{path}: 'base'")
    shared_variants = _check_mapping(doc.get("variants"), f"{path}: 'variants'")
    file_default = doc.get("default_variant")
    entries: dict[str, Mapping[str, Any]]
    if "recipes" in doc:
        entries = dict(_check_mapping(doc["recipes"], f"{path}: 'recipes'"))
    else:
        entries = {
            doc.get("name", path.stem): {
                k: doc[k] for k in ("description", "settings", "extends") if k in doc
            }
        }
    recipes = []
    for name, entry in entries.items():
        entry = _check_mapping(entry, f"{path}: recipe {name!r}")
        for key in entry:
            if key not in _RECIPE_KEYS:
                raise ValueError(f"{path}: recipe {name!r} has unknown key {key!r}; valid: {', '.join(_RECIPE_KEYS)}")
        settings = _check_mapping(entry.get("settings"), f"{path}: {name}.settings")
        variants = {**shared_variants, **_check_mapping(entry.get("variants"), f"{path}: {name}.variants")}
        for layer_name, layer in (("base", base), ("settings", settings), *variants.items()):
            check_keys(_check_mapping(layer, f"{path}: {name}.{layer_name}"), source=f"recipe {name!r} ({path.name})")
        default = entry.get("default_variant", file_default)
        if default is not None and default not in variants:
            raise ValueError(f"{path}: default_variant {default!r} is not one of {', '.join(variants)}")
        description = str(entry.get("description") or doc.get("description") or "").strip()
        recipes.append(
            Recipe(str(name), description, (base, settings), variants, default, entry.get("extends"), path)
        )
    return recipes


@lru_cache(maxsize=4)
def _load_all(directory: str) -> dict[str, Recipe]:
    table: dict[str, Recipe] = {}
    for path in sorted(Path(directory).glob("*.yaml")):
        for recipe in _parse_file(path):
            if recipe.name in table:
                raise ValueError(f"recipe {recipe.name!r} is defined twice ({table[recipe.name].source}, {path})")
            table[recipe.name] = recipe
    return table


def list_recipes(directory: str | Path | None = None) -> list[Recipe]:
    """All recipes, sorted by name."""
    table = _load_all(str(directory or RECIPE_DIR))
    return [table[k] for k in sorted(table)]


def recipe_names(directory: str | Path | None = None) -> list[str]:
    """Names of all recipes (variants not included: see ``Recipe.variants``)."""
    return [r.name for r in list_recipes(directory)]


def _split(name: str) -> tuple[str, str | None]:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"recipe name must be a non-empty str; got {name!r}")
    base, _, variant = name.strip().partition(":")
    return base, (variant or None)


def get_recipe(name: str, directory: str | Path | None = None) -> Recipe:
    """The recipe ``name`` (a ``:variant`` suffix is ignored here).

    Raises:
        ValueError: unknown name; the message lists the recipes and the closest match.
    """
    base, _ = _split(name)
    table = _load_all(str(directory or RECIPE_DIR))
    if base not in table:
        close = difflib.get_close_matches(base, list(table), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown recipe {base!r}{hint}; run `neuralcollapse recipes` (valid: {', '.join(table)})")
    return table[base]


def recipe_settings(name: str, directory: str | Path | None = None, *, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """Resolved TrainConfig fields of ``NAME`` or ``NAME:VARIANT``."""
    base, variant = _split(name)
    if base in _seen:
        raise ValueError(f"recipe {base!r} extends itself (chain: {' -> '.join((*_seen, base))})")
    return get_recipe(base, directory).settings(variant, _seen=_seen)


def recipe_config(name: str, overrides: Mapping[str, Any] | None = None,
                  directory: str | Path | None = None) -> TrainConfig:
    """A :class:`TrainConfig` from the recipe ``NAME[:VARIANT]`` with ``overrides`` applied.

    Example:
        >>> cfg = recipe_config("occe-cifar100-resnet18")
        >>> (cfg.dataset, cfg.model, cfg.loss, cfg.epochs)
        ('cifar100', 'preactresnet18', 'ce+occe', 150)
    """
    config = merge_settings(TrainConfig(), recipe_settings(name, directory), source=f"recipe {name!r}")
    if overrides:
        config = merge_settings(config, overrides)
    return config

"""Objective presets: a name → the head, loss and switches that make one method (CLI ``--objective``).

Each preset is a set of :class:`~neuralcollapse.training.config.TrainConfig` fields. Presets cover the
methods of docs/methods.md: CE and the OCCE family (§2), the normalised-prototype losses (§4), LPC (§6), DL2PA /
HPN / fixed ETF (§7–8), margin and contrastive baselines (§5). A name that is not a preset but parses as a
loss spec (``"focal+0.1*occe"``) means that loss with a linear head.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["OBJECTIVES", "ObjectivePreset", "apply_objective", "expand_objective", "objective_names"]


@dataclass(frozen=True)
class ObjectivePreset:
    """A named objective: ``settings`` are TrainConfig fields applied when the preset is chosen."""

    name: str
    description: str
    settings: Mapping[str, Any] = field(default_factory=dict)


def _preset(name: str, description: str, **settings: Any) -> ObjectivePreset:
    return ObjectivePreset(name, description, dict(settings))


#: The presets (one table; the CLI, recipes and the compare runner read it).
OBJECTIVES: dict[str, ObjectivePreset] = {
    p.name: p
    for p in (
        _preset("ce", "cross-entropy, linear head (baseline)", head="linear", head_kwargs={}, loss="ce",
                loss_kwargs={}),
        _preset("ce+occe", "CE + γ·OCCE on the same logits (Katsikas et al. 2025, Eq. 8; γ = 1)", head="linear",
                head_kwargs={}, loss="ce+occe", loss_kwargs={}),
        _preset("rce", "OCCE alone = reverse cross-entropy up to the sign convention (docs/methods.md §2.1)",
                head="linear", head_kwargs={}, loss="occe", loss_kwargs={}),
        _preset("dual", "decoupled dual head: CE on z, OCCE on the anti-class head z̄ (OCCE paper §3.3)",
                head="dual", head_kwargs={}, loss="ce+occe", loss_kwargs={}),
        _preset("occe-instance", "CE + OCCE with instance self-distilled anti-class targets (α = 0.1, Eq. 9)",
                head="linear", head_kwargs={}, loss="ce+occe", loss_kwargs={}, soft_targets="instance"),
        _preset("occe-class", "CE + OCCE with class-based anti-class targets (α = 0.5, Eq. 10)",
                head="linear", head_kwargs={}, loss="ce+occe", loss_kwargs={}, soft_targets="class"),
        _preset("normface", "NormFace: cosine head, τ = 0.2 (Wang et al. 2017)", head="cosine",
                head_kwargs={"temperature": 0.2}, loss="normface", loss_kwargs={}),
        _preset("ntce", "NTCE: prototype-anchored NT-Xent, cosine head, τ = 0.2 (Koromilas et al. 2026)",
                head="cosine", head_kwargs={"temperature": 0.2}, loss="ntce", loss_kwargs={}),
        _preset("nonl", "NONL: prototype-anchored, no positive in the denominator, τ = 0.2", head="cosine",
                head_kwargs={"temperature": 0.2}, loss="nonl", loss_kwargs={}),
        _preset("arcface", "ArcFace (s 64, m 0.5 rad) on a cosine head", head="cosine", head_kwargs={},
                loss="arcface", loss_kwargs={}),
        _preset("cosface", "CosFace (s 64, m 0.35) on a cosine head", head="cosine", head_kwargs={},
                loss="cosface", loss_kwargs={}),
        _preset("supcon", "CE + single-view batch SupCon on the features, τ = 0.05 (LPC's SCL baseline)",
                head="linear", head_kwargs={}, loss="ce+supcon", loss_kwargs={"supcon": {"temperature": 0.05}}),
        _preset("lpc", "latent point collapse: linear bottleneck, CE + γ·P(h), γ schedule 'lpc-paper' paced in "
                "optimizer steps to reach γ = 1e6 within the run (at most the paper's 391 steps per ×1.05), SiLU, "
                "AdamW, classifier lr constant (Sbailò & Ghiringhelli)", head="lpc", head_kwargs={},
                loss="ce+0.01*lpc", loss_kwargs={}, gamma_schedule="lpc-paper", gamma_pace="auto",
                gamma_schedule_term="lpc",
                activation="silu", optimizer="adamw", lr=1e-3, weight_decay=5e-4,
                constant_lr_groups=["classifier"]),
        _preset("linpen", "LPC ablation: linear bottleneck, CE only (LinPen)", head="lpc", head_kwargs={},
                loss="ce", loss_kwargs={}, gamma_schedule=None, activation="silu", optimizer="adamw", lr=1e-3,
                weight_decay=5e-4, constant_lr_groups=["classifier"]),
        _preset("dl2pa", "DL2PA: fixed hyperspherical prototypes, (1 − cos)² alignment, first assignment against "
                "the class means of the first batch, Hungarian re-assignment once per epoch (Saadabadi et al. 2024)",
                head="prototypes", head_kwargs={}, loss="proto_align", loss_kwargs={}, reassign_every=1),
        _preset("hpn", "HPN: fixed hyperspherical prototypes with a fixed label assignment (Mettes et al. 2019)",
                head="prototypes", head_kwargs={"method": "hpn", "initial_assignment": "identity"},
                loss="proto_align", loss_kwargs={}, reassign_every=0),
        _preset("etf", "fixed simplex-ETF classifier + dot-regression on normalise(BN(h)) (Yang et al. 2022)",
                head="etf", head_kwargs={"batch_norm": True, "normalize": True}, loss="dot_regression",
                loss_kwargs={}),
    )
}


def objective_names() -> list[str]:
    """Names of the presets."""
    return list(OBJECTIVES)


def expand_objective(name: str) -> dict[str, Any]:
    """The TrainConfig fields of the objective ``name`` (a preset, or a loss spec meaning a linear head).

    Raises:
        ValueError: ``name`` is neither a preset nor a parsable loss spec; the message lists the presets and
            the registered loss terms.

    Example:
        >>> expand_objective("focal+0.1*occe")["head"]
        'linear'
        >>> expand_objective("dual")["loss"]
        'ce+occe'
    """
    if not isinstance(name, str):
        raise TypeError(f"`objective` must be a str; got {type(name).__name__}")
    key = name.strip().lower()
    if key in OBJECTIVES:
        settings = dict(OBJECTIVES[key].settings)
        settings["objective"] = key
        return settings
    from ..losses import TERMS, parse_objective

    try:
        parse_objective(name)
    except ValueError:
        raise ValueError(
            f"unknown objective {name!r}: not a preset ({', '.join(OBJECTIVES)}) and not a loss spec "
            f"(terms: {', '.join(TERMS.names())}; e.g. 'focal+0.1*occe')"
        ) from None
    return {"head": "linear", "head_kwargs": {}, "loss": name.strip(), "loss_kwargs": {}, "objective": None}


def apply_objective(config: Any, name: str) -> Any:
    """``config`` with the objective ``name`` applied (:func:`expand_objective` over it).

    A preset's ``head_kwargs`` reset the head's options when it changes the head; when the config (e.g. a recipe)
    already uses the preset's head, the config's ``head_kwargs`` are kept and the preset's own entries merged over
    them — so ``--recipe lpc-digits-mlp --objective lpc`` keeps the recipe's bottleneck width. An objective
    without the term a recipe's γ schedule drives drops the schedule (``--recipe lpc-digits-mlp --objective ce``).

    Example:
        >>> from neuralcollapse.training.config import TrainConfig
        >>> apply_objective(TrainConfig(head="lpc", head_kwargs={"latent_dim": 16}), "lpc").head_kwargs
        {'latent_dim': 16}
        >>> apply_objective(TrainConfig(head="cosine", head_kwargs={"temperature": 0.1}), "lpc").head_kwargs
        {}
    """
    from .config import merge_settings

    settings = expand_objective(name)
    if settings.get("head") == config.head and "head_kwargs" in settings:
        settings["head_kwargs"] = {**config.head_kwargs, **settings["head_kwargs"]}
    if "gamma_schedule" not in settings and config.gamma_schedule is not None and "loss" in settings:
        # a recipe's γ schedule drives one term; an objective without that term has no schedule to follow
        from ..losses import TERMS, parse_objective

        terms = {term for term, _ in parse_objective(settings["loss"])}
        if TERMS.resolve(config.gamma_schedule_term) not in terms:
            settings["gamma_schedule"] = None
    return merge_settings(config, settings, source=f"objective {name!r}")


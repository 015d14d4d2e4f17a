"""The compare runner: several objectives, matched settings and seeds, one report.

``neuralcollapse compare --objectives ce,ce+occe,nonl,ntce,lpc,dl2pa --seeds 3`` trains every objective
with the same data, backbone, epochs and seeds, analyses each run (:mod:`.analysis`), evaluates OOD
detection against the OOD sets of the evaluation protocol (:mod:`neuralcollapse.data.protocols`; default the
data set's, e.g. MNIST-5k + noise for Fashion-MNIST) and open-set recognition on its seeded known/unknown class
split (a second run per objective and seed, trained on the known classes), and writes the report
(:mod:`.report`). Finished runs
are skipped and interrupted ones resumed, so re-running the same command continues where it stopped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.protocols import DEFAULT_PROTOCOLS, PROTOCOLS, resolve_protocol
from .analysis import ANALYSIS_FILE, add_ood, analyze_run
from .report import write_report

__all__ = ["CompareSettings", "compare_command", "run_compare", "seeds_text"]

#: the embedded quick comparison: the six families of the four papers
DEFAULT_OBJECTIVES = ("ce", "ce+occe", "nonl", "ntce", "lpc", "dl2pa")
#: the headline OOD set of each data set's default protocol (data.protocols; compare evaluates all its sets)
DEFAULT_OOD_SET = {d: PROTOCOLS[p].ood_sets[0] for d, p in DEFAULT_PROTOCOLS.items() if PROTOCOLS[p].ood_sets}


@dataclass
class CompareSettings:
    """What to compare and how.

    Attributes:
        objectives: objective presets or loss specs (``neuralcollapse recipes`` / ``--objective`` names).
        seeds: number of seeds (0 … seeds−1), matched across objectives.
        dataset, model, epochs, recipe: shared run settings (None = the trainer's defaults / the recipe's).
        overrides: further TrainConfig fields applied to every run (e.g. ``{"batch_size": 64}``).
        protocol: the evaluation protocol (a name of ``data.PROTOCOLS``; None = the data set's default, "none" =
            no OOD sets and no open set): its OOD sets (optional ones skipped with a warning when unavailable)
            and its open-set split.
        ood_set: one OOD test set replacing the protocol's ("" disables OOD detection).
        detectors: OOD detectors (default: the OCCE paper's ten).
        osr_known: known classes of the open-set run (default: the protocol's, else 60 % of the classes; 0
            disables).
        out: the comparison folder; runs go to ``out/<objective>/seed<k>[-osr]``, the report to ``out/report``.
    """

    objectives: Sequence[str] = DEFAULT_OBJECTIVES
    seeds: int = 3
    dataset: str | None = None
    model: str | None = None
    epochs: int | None = None
    recipe: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    protocol: str | None = None
    ood_set: str | None = None
    detectors: Sequence[str] | None = None
    osr_known: int | None = None
    deepfool_samples: int = 200
    out: str | Path = "runs/compare"


def seeds_text(seeds: int) -> str:
    """``"seed 0"`` for one seed, ``"seeds 0–2"`` for three."""
    return "seed 0" if seeds == 1 else f"seeds 0–{seeds - 1}"


def compare_command(settings: CompareSettings) -> str:
    """The ``neuralcollapse compare`` command line that reproduces ``settings`` (defaults left out, ``--out``
    always shown).

    Example:
        >>> compare_command(CompareSettings(objectives=["ce", "nonl"], seeds=1, epochs=2, out="/tmp/rep"))
        'neuralcollapse compare --objectives ce,nonl --seeds 1 --epochs 2 --out /tmp/rep'
    """
    import shlex

    defaults = CompareSettings()
    parts = ["neuralcollapse", "compare", "--objectives", ",".join(settings.objectives), "--seeds",
             str(settings.seeds)]
    for flag, value in (("--dataset", settings.dataset), ("--model", settings.model), ("--epochs", settings.epochs),
                        ("--recipe", settings.recipe), ("--protocol", settings.protocol),
                        ("--ood-set", settings.ood_set),
                        ("--detectors", ",".join(settings.detectors) if settings.detectors else None),
                        ("--osr-known", settings.osr_known)):
        if value is not None:
            parts += [flag, str(value)]
    if settings.deepfool_samples != defaults.deepfool_samples:
        parts += ["--deepfool-samples", str(settings.deepfool_samples)]
    for key, value in settings.overrides.items():
        parts += ["--set", f"{key}={value if isinstance(value, str) else json.dumps(value)}"]
    parts += ["--out", str(settings.out)]
    return " ".join(shlex.quote(p) for p in parts)


def _sig4(value: Any) -> str:
    """A number with 4 significant digits, trailing zeros kept (``0.8644``, ``1.000``, ``1.824e-05``); '–' if absent.

    Example:
        >>> _sig4(0.18235383812999473), _sig4(1), _sig4(None)
        ('0.1824', '1.000', '–')
    """
    if value is None:
        return "–"
    return format(float(value), "#.4g")


def _folder_name(objective: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in objective.replace("+", "-plus-"))


def _base_config(settings: CompareSettings, objective: str, seed: int) -> Any:
    from ..training.config import TrainConfig, apply_settings, merge_settings, validate_config
    from ..training.presets import apply_objective
    from ..training.recipes import recipe_settings

    config = TrainConfig()
    if settings.recipe:
        config = merge_settings(config, recipe_settings(settings.recipe), source=f"recipe {settings.recipe!r}")
    config = apply_objective(config, objective)
    shared = {k: v for k, v in (("dataset", settings.dataset), ("model", settings.model),
                                ("epochs", settings.epochs)) if v is not None}
    config = merge_settings(config, shared, source="compare settings")
    # --set semantics (as in `train`): mapping values merge into the preset's (head_kwargs, loss_kwargs …)
    config = apply_settings(config, dict(settings.overrides), source="compare --set")
    config = merge_settings(config, {"seed": seed, "progress": False}, source="compare settings")
    return validate_config(config)


def _train(config: Any, run_dir: Path) -> None:
    from ..training.runner import fit

    resume = (run_dir / "checkpoints" / "last.ckpt").is_file()
    fit(config.replace(out=str(run_dir)), resume=resume)


def run_compare(settings: CompareSettings, *, log: Callable[[str], None] = print) -> Path:
    """Run (or continue) the comparison and write its report; returns the path of ``report.md``.

    Example:
        >>> run_compare(CompareSettings(objectives=["ce", "ce+occe"], seeds=1, epochs=2))  # doctest: +SKIP
    """
    from ..training.evaluation import evaluate_checkpoint

    if not settings.objectives:
        raise ValueError("`objectives` is empty; give at least one objective, e.g. 'ce,ce+occe'")
    if not isinstance(settings.seeds, int) or settings.seeds < 1:
        raise ValueError(f"`seeds` must be a positive int; got {settings.seeds!r}")
    out = Path(settings.out)
    configs = {(o, s): _base_config(settings, o, s) for o in settings.objectives for s in range(settings.seeds)}
    first = next(iter(configs.values()))
    from .. import data as ncdata

    full = ncdata.create(first.dataset, root=first.data_dir, verify=first.verify_data)
    num_classes = full.num_classes
    protocol = resolve_protocol(settings.protocol, first.dataset, num_classes=num_classes,
                                class_names=full.class_names)
    if settings.ood_set is not None:  # one explicit set replaces the protocol's ("" = none)
        ood_sets, ood_protocol = ([settings.ood_set] if settings.ood_set else []), None
    else:  # the protocol's sets, evaluated through it (its optional sets are skipped when unavailable)
        ood_sets = list(protocol.ood_sets)
        ood_protocol = protocol.name if protocol.name in PROTOCOLS else None
    known = settings.osr_known if settings.osr_known is not None else (protocol.osr_known or 0)
    del full
    total = len(configs)
    for i, ((objective, seed), config) in enumerate(configs.items(), start=1):
        run_dir = out / _folder_name(objective) / f"seed{seed}"
        tag = f"[{i}/{total}] {objective} seed {seed}"
        if (run_dir / ANALYSIS_FILE).is_file():
            log(f"{tag}: done, skipped")
            continue
        start = time.perf_counter()
        log(f"{tag}: training {config.epochs} epochs ({config.model}, {config.head} head, loss {config.loss})")
        _train(config, run_dir)
        # analysis.json is written once, at the end: it marks the run (and its open-set run) as done
        analysis = analyze_run(run_dir, deepfool_samples=settings.deepfool_samples, seed=seed, write=False)
        if ood_sets:
            add_ood(analysis, run_dir, [] if ood_protocol else ood_sets, protocol=ood_protocol,
                    detectors=settings.detectors)
        if known and known < num_classes:
            osr_dir = out / _folder_name(objective) / f"seed{seed}-osr"
            log(f"{tag}: open-set run on {known} known classes")
            _train(config.replace(osr_known=known, osr_split_seed=seed), osr_dir)
            osr = evaluate_checkpoint(osr_dir, osr=True, detectors=["msp"])["open_set"]
            analysis["osr"] = {"error": osr["msp"]["error"], "oscr": osr["msp"]["oscr"],
                               "auroc": osr["msp"]["auroc"]}
            analysis["osr_units"] = "fraction"  # older analyses stored percent
            analysis["osr_known_classes"] = osr["known_classes"]
            analysis["osr_known_names"] = osr.get("known_names")
            analysis["osr_unknown_names"] = osr.get("unknown_names")
        (run_dir / ANALYSIS_FILE).write_text(json.dumps(analysis, indent=1))
        summary = analysis["summary"]
        log(f"{tag}: test accuracy {_sig4(summary.get('test_accuracy'))}, NC1 {_sig4(summary.get('nc1'))}, "
            f"{time.perf_counter() - start:.0f} s")
    run_dirs = [out / _folder_name(o) / f"seed{s}" for o, s in configs]
    osr_text = "none"
    if known and known < num_classes:
        osr_text = (f"{known} known / {num_classes - known} unknown classes, seeded (seed s trains on split s"
                    + (f"; seed 0 knows {', '.join(protocol.osr_split(0).known_names)}"
                       if protocol.osr_known == known and protocol.class_names else "") + ")")
    unavailable: dict[str, str] = {}
    for run_dir in run_dirs:
        if (run_dir / ANALYSIS_FILE).is_file():
            unavailable.update(json.loads((run_dir / ANALYSIS_FILE).read_text()).get("ood_unavailable") or {})
    ood_set = ", ".join(ood_sets) + (f" (protocol {protocol.name})" if ood_protocol else "")
    if unavailable:
        ood_set += "; not available, skipped: " + "; ".join(
            f"{name} ({why.splitlines()[0]})" for name, why in unavailable.items())
    notes = [f"Command: `{compare_command(settings)}`",
             f"Data set {first.dataset}, model {first.model}, {first.epochs} epochs, {seeds_text(settings.seeds)}"
             + ("; means ± sample std over seeds" if settings.seeds > 1 else "")
             + f". OOD set: {ood_set or 'none'}; open-set split: {osr_text}."]
    path = write_report(run_dirs, out / "report", title=f"Objectives compared on {first.dataset}",
                        order=list(settings.objectives), notes=notes)
    log(f"report: {path} and {path.with_suffix('.html')}")
    return path

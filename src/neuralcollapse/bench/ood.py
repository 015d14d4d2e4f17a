"""OOD detector benchmark: ``neuralcollapse bench ood``.

Synthetic CIFAR-100/ResNet-18-sized caches: 50,000 × 512 training features (Gaussian class clusters
through a ReLU, K = 100), 10,000 ID and 10,000 OOD test features (near-OOD: clusters centred between two
ID classes), logits of a fixed linear layer. Every detector except ODIN is fitted and scored on CPU with its
defaults, each once (the full-size calls take seconds); the target is a total of at most 60 s. Also
reported: KNN (k = 50) with the torch and the faiss backends in the same run (ratio and the largest score
difference), and ODIN on a tiny CNN (it needs a model).
"""

from __future__ import annotations

import os
import time

import torch

from ..ood import create, evaluate, names
from ..ood.knn import _faiss
from . import BenchRow, ratio_row

__all__ = ["TOTAL_TARGET_S", "run"]

GROUP = "ood"
#: full-size target for fit + score of all detectors but ODIN
TOTAL_TARGET_S = 60.0
FULL = {"n_train": 50_000, "n_test": 10_000, "dim": 512, "classes": 100}
QUICK = {"n_train": 5_000, "n_test": 1_000, "dim": 512, "classes": 20}  # ViM default dim 256 < D


def synthetic_cache(n_train: int, n_test: int, dim: int, classes: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Post-ReLU Gaussian class clusters, a linear head, ID/OOD test features (float32, CPU)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g)
    noise = 1.5

    def draw(c: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(c.shape[0], (n,), generator=g)
        return torch.relu(c[y] + noise * torch.randn(n, dim, generator=g)), y

    # near-OOD: centred between two ID classes (rescaled to the ID centres' norm), same noise
    pairs = torch.randint(classes, (2, classes), generator=g)
    ood_centres = (centres[pairs[0]] + centres[pairs[1]]) / 2**0.5
    train, y_train = draw(centres, n_train)
    test_id, _ = draw(centres, n_test)
    test_ood, _ = draw(ood_centres, n_test)
    weight = 0.1 * centres
    bias = torch.zeros(classes)
    return {
        "train": train, "train_labels": y_train, "train_logits": train @ weight.t() + bias,
        "test": torch.cat([test_id, test_ood]), "test_logits": torch.cat([test_id, test_ood]) @ weight.t() + bias,
        "weight": weight, "bias": bias,
    }


def _timed(fn):
    """Run once; return the result, the wall time and the process CPU time (all threads) in seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def _detector_row(
    name: str, data: dict[str, torch.Tensor], n_test: int, **hparams: object
) -> tuple[BenchRow, float, torch.Tensor]:
    det = create(name, **hparams)
    _, t_fit, c_fit = _timed(lambda: det.fit(features=data["train"], labels=data["train_labels"],
                                             logits=data["train_logits"], weight=data["weight"], bias=data["bias"]))
    scores, t_score, c_score = _timed(lambda: det.score(features=data["test"], logits=data["test_logits"]))
    auroc = evaluate(scores[:n_test], scores[n_test:])["auroc"]
    label = name + ("" if not hparams else " " + ",".join(f"{k}={v}" for k, v in hparams.items()))
    row = BenchRow(GROUP, f"{label} fit+score", t_fit + t_score, "s",
                   note=f"fit {t_fit:.2f} s, score {t_score:.2f} s ({2 * n_test} samples); "
                   f"CPU {c_fit + c_score:.1f} s; AUROC {auroc:.3f}")
    return row, t_fit + t_score, c_fit + c_score, scores


def _odin_row(quick: bool) -> BenchRow:
    g = torch.Generator().manual_seed(1)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(4),
        torch.nn.Flatten(), torch.nn.Linear(256, 10),
    )
    n = 256 if quick else 2_000
    x = torch.randn(n, 3, 32, 32, generator=g)
    det = create("odin", std=(63.0 / 255, 62.1 / 255, 66.7 / 255)).fit(model=model)
    _, t, _ = _timed(lambda: det.score(inputs=x))
    return BenchRow(GROUP, f"odin tiny CNN, {n} inputs 3x32x32", t, "s",
                    note=f"{1000 * t / n:.2f} ms per input (forward + input gradient + forward)")


def run(quick: bool = False) -> list[BenchRow]:
    """Time every detector's fit + score on a synthetic cache (sizes in ``FULL`` / ``QUICK``)."""
    sizes = QUICK if quick else FULL
    data = synthetic_cache(**sizes)
    n_test = sizes["n_test"]
    rows: list[BenchRow] = []
    total = total_cpu = 0.0
    knn_scores: dict[str, tuple[float, torch.Tensor]] = {}
    for name in names():
        if name == "odin":
            continue
        row, seconds, cpu, scores = _detector_row(name, data, n_test)
        rows.append(row)
        total += seconds
        total_cpu += cpu
        if name == "knn":
            backend = "faiss" if _faiss() is not None else "torch"
            knn_scores[backend] = (seconds, scores)
    size = f"{sizes['n_train']}x{sizes['dim']} train, {2 * n_test} test, K={sizes['classes']}"
    rows.append(BenchRow(
        GROUP, "all detectors but ODIN, fit+score", total, "s",
        target=None if quick else f"<= {TOTAL_TARGET_S:g} s", passed=None if quick else total <= TOTAL_TARGET_S,
        note=f"{size}, CPU, {torch.get_num_threads()} threads, defaults (knn backend auto); "
        f"1-min load average at the end {os.getloadavg()[0]:.1f} (other processes slow the timings)",
    ))
    rows.append(BenchRow(
        GROUP, "all detectors but ODIN, process CPU time", total_cpu, "cpu-s",
        note="all threads together: independent of other load, except threads spinning while they wait",
    ))
    if "torch" not in knn_scores:
        row, seconds, _, scores = _detector_row("knn", data, n_test, backend="torch")
        rows.append(row)
        knn_scores["torch"] = (seconds, scores)
    if "faiss" in knn_scores:
        (t_faiss, s_faiss), (t_torch, s_torch) = knn_scores["faiss"], knn_scores["torch"]
        diff = float((s_faiss - s_torch).abs().max())
        rows.append(ratio_row(GROUP, "knn k=50 fit+score: faiss vs torch", t_faiss, t_torch,
                              note=f"max |score difference| {diff:.2e}"))
    rows.append(_odin_row(quick))
    return rows

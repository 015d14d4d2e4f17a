"""DeepFool minimal adversarial perturbation and a gradient-norm Lipschitz proxy (docs/methods.md §6.5).

Source: S.-M. Moosavi-Dezfooli, A. Fawzi, P. Frossard, "DeepFool: a simple and accurate method to fool deep
neural networks", CVPR 2016, Algorithm 2 (multi-class); reference LTS4/DeepFool (``Python/deepfool.py``) as
adapted by luigisbailo/lpc (``lpc/deepfool.py``) for the LPC paper (Sbailò & Ghiringhelli, arXiv
2310.08224): final epoch, seeded subset of 1000 test images, eval mode, top-10 candidate classes, ≤ 50
iterations, overshoot 0.02, robustness = ‖(1 + overshoot)·r_tot‖₂ / ‖x‖₂ in the normalised input space.

This implementation is batched (samples stop individually) and leaves the model exactly as it found it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .._validation import check_int, check_labels, check_positive, check_tensor
from ..output import logits_of
from ._model import eval_frozen, model_device

__all__ = [
    "DEEPFOOL_CANDIDATES",
    "DEEPFOOL_MAX_ITER",
    "DEEPFOOL_OVERSHOOT",
    "DEEPFOOL_STEP_EPS",
    "DeepFoolResult",
    "deepfool",
    "deepfool_summary",
    "margin_gradient_norm",
]

#: candidate classes: the top-10 of the clean logits (LTS4 default, kept by the LPC code also for K = 100)
DEEPFOOL_CANDIDATES = 10
#: overshoot applied to the accumulated perturbation (LTS4 default)
DEEPFOOL_OVERSHOOT = 0.02
#: iteration cap (LTS4 default)
DEEPFOOL_MAX_ITER = 50
#: step padding of the reference implementation ("added 1e-4 for numerical stability")
DEEPFOOL_STEP_EPS = 1e-4
DEFAULT_BATCH_SIZE = 128


@dataclass(frozen=True)
class DeepFoolResult:
    """Result of :func:`deepfool` (all tensors on the inputs' device).

    Attributes:
        ratio: (N,) ‖(1 + overshoot)·r_tot‖₂ / ‖x‖₂ (inf for an all-zero input).
        perturbation_norm: (N,) ‖(1 + overshoot)·r_tot‖₂.
        flipped: (N,) bool, whether the prediction changed within ``max_iter`` iterations.
        iterations: (N,) int64, DeepFool steps taken.
        clean_pred: (N,) int64, predicted class of the clean input (DeepFool's label).
        adv_pred: (N,) int64, predicted class of the final perturbed input.
        perturbed: (N, ...) the final perturbed inputs x + (1 + overshoot)·r_tot, or None.
    """

    ratio: Tensor
    perturbation_norm: Tensor
    flipped: Tensor
    iterations: Tensor
    clean_pred: Tensor
    adv_pred: Tensor
    perturbed: Tensor | None = None



def _deepfool_batch(
    model: Callable[[Tensor], Any], x0: Tensor, num_candidates: int, overshoot: float, max_iter: int
) -> tuple[Tensor, ...]:
    """DeepFool on one batch; the model is already in eval mode with frozen parameters."""
    b = x0.shape[0]
    with torch.no_grad():
        z0 = logits_of(model(x0))
    if z0.ndim != 2 or z0.shape[0] != b:
        raise ValueError(f"the model must return (B, K) logits; got shape {tuple(z0.shape)} for B={b}")
    if z0.shape[1] < 2:
        raise ValueError(f"DeepFool needs at least 2 classes; the model returns K={z0.shape[1]}")
    cand = z0.topk(min(num_candidates, z0.shape[1]), dim=1).indices  # (B, kc); column 0 = label
    label = cand[:, 0]
    scale = 1.0 + overshoot
    r_tot = torch.zeros_like(x0)
    x = x0.clone()
    iterations = torch.zeros(b, dtype=torch.int64, device=x0.device)
    flipped = torch.zeros(b, dtype=torch.bool, device=x0.device)
    stuck = torch.zeros(b, dtype=torch.bool, device=x0.device)
    adv_pred = label.clone()
    active = torch.arange(b, device=x0.device)
    while active.numel():
        xa = x[active].detach().requires_grad_(True)
        with torch.enable_grad():
            z = logits_of(model(xa))
            pred = z.detach().argmax(dim=1)
            adv_pred[active] = pred
            # stop per sample when the argmax over ALL classes differs from the clean label
            done = pred != label[active]
            flipped[active[done]] = True
            go = ~done & (iterations[active] < max_iter)
            if not bool(go.any()):
                break
            ca = cand[active]
            f_all = z.gather(1, ca)
            diffs = f_all[:, 1:] - f_all[:, :1]  # f_k = z_k − z_label, (A, kc − 1)
            grads = []
            for k in range(diffs.shape[1]):
                (g,) = torch.autograd.grad(diffs[:, k].sum(), xa, retain_graph=k + 1 < diffs.shape[1])
                grads.append(g.reshape(g.shape[0], -1))
        w = torch.stack(grads, dim=1)  # (A, kc − 1, n): w_k = ∇ₓ(z_k − z_label)
        f = diffs.detach()
        w_norm = w.norm(dim=2)
        pert = torch.where(w_norm > 0, f.abs() / w_norm.clamp_min(torch.finfo(w.dtype).tiny), math.inf)
        best = pert.argmin(dim=1)
        rows = torch.arange(best.shape[0], device=x0.device)
        p_best, w_best, n_best = pert[rows, best], w[rows, best], w_norm[rows, best]
        # a sample whose candidate gradients all vanish cannot be moved: it stops, not flipped
        movable = torch.isfinite(p_best) & go
        stuck[active[go & ~movable]] = True
        step = ((p_best + DEEPFOOL_STEP_EPS) / n_best.clamp_min(torch.finfo(w.dtype).tiny))[:, None] * w_best
        upd = active[movable]
        r_tot[upd] += step[movable].reshape(-1, *x0.shape[1:]).to(r_tot.dtype)
        x[upd] = x0[upd] + scale * r_tot[upd]
        iterations[upd] += 1
        active = upd
    perturbation = scale * r_tot
    return perturbation, x, flipped, iterations, label, adv_pred


def deepfool(
    model: nn.Module | Callable[[Tensor], Any],
    inputs: Tensor,
    *,
    num_candidates: int = DEEPFOOL_CANDIDATES,
    overshoot: float = DEEPFOOL_OVERSHOOT,
    max_iter: int = DEEPFOOL_MAX_ITER,
    batch_size: int = DEFAULT_BATCH_SIZE,
    return_perturbed: bool = False,
) -> DeepFoolResult:
    """DeepFool's minimal L2 perturbation per input (Moosavi-Dezfooli et al., CVPR 2016, Algorithm 2;
    docs/methods.md §6.5), batched.

    For each input, with label ŷ = the clean prediction and candidates I = the ``num_candidates`` largest
    clean logits (ŷ first): repeat until argmax over **all** classes ≠ ŷ or ``max_iter`` steps —
    w_k = ∇ₓ(z_k − z_ŷ), f_k = z_k − z_ŷ for k ∈ I∖{ŷ}; l = argmin_k |f_k|/‖w_k‖;
    r_tot += (|f_l|/‖w_l‖ + 1e−4)·w_l/‖w_l‖; x ← x₀ + (1 + overshoot)·r_tot. The score is
    ‖(1 + overshoot)·r_tot‖₂ / ‖x₀‖₂ in the space the model reads (normalised inputs). For an affine
    classifier one step reaches the nearest decision boundary: |f_l|/‖w_l‖ is the exact minimal distance.

    The model is evaluated in eval mode with its parameters' ``requires_grad`` switched off; both are
    restored per submodule/parameter afterwards (also on error). Batches are moved to the model's device.
    Larger ratio = more robust.

    Args:
        model: maps (B, ...) inputs to (B, K) logits (tensor, ``HeadOutput`` or mapping with ``"logits"``).
            Samples must not interact (eval-mode batch norm is fine).
        inputs: (N, ...) float inputs (e.g. the LPC setting: a seeded subset of 1000 test images).
        num_candidates: candidate classes ≥ 2 (top-k of the clean logits; capped at K). Default 10.
        overshoot: ≥ 0, default 0.02.
        max_iter: iteration cap ≥ 1, default 50.
        batch_size: inputs per batch.
        return_perturbed: also return the perturbed inputs.

    Returns:
        :class:`DeepFoolResult`.

    Raises:
        ValueError: empty/non-finite inputs, bad hyperparameters, a model returning K < 2 classes or
            non-(B, K) logits.
        TypeError: non-tensor or integer inputs; an unreadable model output.

    Example:
        >>> lin = nn.Linear(2, 2)
        >>> with torch.no_grad():
        ...     _ = lin.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
        ...     _ = lin.bias.zero_()
        >>> res = deepfool(lin, torch.tensor([[1.0, 0.0]]))  # boundary x₁ = 0 at distance 1
        >>> round(res.perturbation_norm.item(), 4), res.flipped.item(), res.iterations.item()
        (1.0201, True, 1)
    """
    check_tensor(inputs, "inputs", min_ndim=2, floating=True, finite=True)
    check_int(num_candidates, "num_candidates", minimum=2)
    check_int(max_iter, "max_iter", minimum=1)
    check_int(batch_size, "batch_size", minimum=1)
    check_positive(overshoot, "overshoot", strict=False)
    device = model_device(model) or inputs.device
    parts: list[tuple[Tensor, ...]] = []
    with eval_frozen(model):
        for s in range(0, inputs.shape[0], batch_size):
            x0 = inputs[s : s + batch_size].detach().to(device)
            parts.append(_deepfool_batch(model, x0, num_candidates, overshoot, max_iter))
    pert, xadv, flipped, iterations, label, adv_pred = (torch.cat(p).to(inputs.device) for p in zip(*parts))
    pert_norm = pert.reshape(pert.shape[0], -1).norm(dim=1)
    x_norm = inputs.detach().reshape(inputs.shape[0], -1).to(pert_norm.dtype).norm(dim=1)
    ratio = torch.where(x_norm > 0, pert_norm / x_norm.clamp_min(torch.finfo(x_norm.dtype).tiny), math.inf)
    return DeepFoolResult(
        ratio=ratio,
        perturbation_norm=pert_norm,
        flipped=flipped,
        iterations=iterations,
        clean_pred=label,
        adv_pred=adv_pred,
        perturbed=xadv if return_perturbed else None,
    )


def deepfool_summary(result: DeepFoolResult, labels: Tensor | None = None) -> dict[str, float]:
    """Aggregate a :class:`DeepFoolResult` as the LPC paper reports it (docs/methods.md §6.5).

    Args:
        result: output of :func:`deepfool`.
        labels: (N,) true labels; when given, also the mean over correctly classified inputs
            (clean prediction = label).

    Returns:
        dict: ``mean_ratio`` (all inputs, flipped or not), ``mean_ratio_flipped`` (flipped inputs only; nan
        when none flipped), ``num_not_flipped``, ``num_samples``; with labels also ``mean_ratio_correct``
        (nan when none is correct) and ``num_correct``.

    Raises:
        ValueError: labels of the wrong length.

    Example:
        >>> r = DeepFoolResult(ratio=torch.tensor([0.1, 0.3]), perturbation_norm=torch.tensor([1.0, 3.0]),
        ...     flipped=torch.tensor([True, False]), iterations=torch.tensor([2, 50]),
        ...     clean_pred=torch.tensor([0, 1]), adv_pred=torch.tensor([1, 1]))
        >>> s = deepfool_summary(r, labels=torch.tensor([0, 0]))
        >>> round(s["mean_ratio"], 6), s["num_not_flipped"], round(s["mean_ratio_correct"], 6)
        (0.2, 1, 0.1)
    """
    ratio = result.ratio.to(torch.float64)
    flipped = result.flipped

    def _mean(mask: Tensor) -> float:
        return float(ratio[mask].mean()) if bool(mask.any()) else math.nan

    out = {
        "mean_ratio": float(ratio.mean()),
        "mean_ratio_flipped": _mean(flipped),
        "num_not_flipped": int((~flipped).sum()),
        "num_samples": int(ratio.numel()),
    }
    if labels is not None:
        check_labels(labels, "labels", length=ratio.numel())
        correct = result.clean_pred == labels.to(result.clean_pred.device)
        out["mean_ratio_correct"] = _mean(correct)
        out["num_correct"] = int(correct.sum())
    return out


def margin_gradient_norm(
    model: nn.Module | Callable[[Tensor], Any],
    inputs: Tensor,
    labels: Tensor | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> dict[str, Any]:
    """Local Lipschitz proxy ‖∇ₓ(z_y − max_{k≠y} z_k)‖₂ per input (LPC reference,
    ``estimate_lipschitz_gradient_norm_stream``; docs/methods.md §6.5).

    The gradient of the logit margin bounds how fast the decision can change around x: a margin m
    needs a perturbation of at least about m / ‖∇m‖. Model state is restored as in :func:`deepfool`.

    Args:
        model: maps inputs to (B, K) logits, K ≥ 2.
        inputs: (N, ...) float inputs.
        labels: (N,) classes y; None = the model's predictions.
        batch_size: inputs per batch.

    Returns:
        dict: ``norms`` ((N,) tensor), ``max`` and ``mean`` (floats).

    Raises:
        ValueError: empty/non-finite inputs, mismatched or out-of-range labels, K < 2.

    Example:
        >>> lin = nn.Linear(3, 2, bias=False)
        >>> with torch.no_grad():
        ...     _ = lin.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
        >>> round(margin_gradient_norm(lin, torch.randn(4, 3))["max"], 6)  # ‖w_0 − w_1‖ = √2
        1.414214
    """
    check_tensor(inputs, "inputs", min_ndim=2, floating=True, finite=True)
    check_int(batch_size, "batch_size", minimum=1)
    if labels is not None:
        check_labels(labels, "labels", length=inputs.shape[0])
    device = model_device(model) or inputs.device
    norms = []
    with eval_frozen(model):
        for s in range(0, inputs.shape[0], batch_size):
            x = inputs[s : s + batch_size].detach().to(device).requires_grad_(True)
            with torch.enable_grad():
                z = logits_of(model(x))
                if z.ndim != 2 or z.shape[1] < 2:
                    raise ValueError(f"the model must return (B, K) logits with K >= 2; got {tuple(z.shape)}")
                y = z.detach().argmax(dim=1) if labels is None else labels[s : s + batch_size].to(z.device)
                if int(y.max()) >= z.shape[1] or int(y.min()) < 0:
                    raise ValueError(f"`labels` must hold class indices in [0, {z.shape[1]})")
                target = z.gather(1, y[:, None]).squeeze(1)
                others = z.scatter(1, y[:, None], -math.inf).max(dim=1).values
                (g,) = torch.autograd.grad((target - others).sum(), x)
            norms.append(g.reshape(g.shape[0], -1).norm(dim=1))
    out = torch.cat(norms).to(inputs.device)
    return {"norms": out, "max": float(out.max()), "mean": float(out.mean())}

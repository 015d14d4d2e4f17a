"""One-cold cross-entropy (OCCE), reverse cross-entropy (RCE) and the fused CE + OCCE pass.

Paper: D. Katsikas, N. Passalis, A. Tefas, "Inducing Neural Collapse via Anticlasses and One-Cold
Cross-Entropy Loss", IEEE TNNLS 2025 (doi 10.1109/TNNLS.2025.3580892); equation numbers follow the ICLR 2025
submission "Learning anti-classes with one-cold cross entropy loss". Official code: cidl-auth/anticlasses.

The anti-class of class k is "every class but k"; a sample of class c belongs to every anti-class except its
own. With anti-class activations z̄ = −z (single head) the anti-class distribution is q = softmax(−z), and OCCE
is the divergence between the one-cold target ȳ (ȳ_c = 0, ȳ_j = 1/(K−1)) and q. The library reports the
**KL form** (0 at the optimum); the paper's cross-entropy form is larger by the constant H(ȳ) = log(K−1).
RCE (Pang et al., NeurIPS 2018) is the same loss with the sign of the logits flipped: OCCE(z) = RCE(−z) − log(K−1).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from .._validation import (
    check_choice,
    check_finite,
    check_labels,
    check_positive,
    check_tensor,
    data_checks_enabled,
    validation,
)
from ..output import HeadOutput
from ._common import (
    DEFAULT_IGNORE_INDEX,
    LogitLossModule,
    flatten_class_dim,
    logit_loss,
    prepare_logits_target,
    reduce_loss,
)
from ._terms import LogitTerm, register_term

__all__ = ["OCCELoss", "RCELoss", "ce_occe", "occe", "rce", "weighted_ce_occe"]

#: The official code's additive constant inside the log, log((K−1)·q_j + 1e−7) (cidl-auth/anticlasses).
OFFICIAL_EPS = 1e-7
#: Tolerance on the row sums of a soft anti-class target (docs/methods.md §2.3).
ANTICLASS_SUM_TOL = 1e-4
#: Largest true-class mass tolerated in a soft anti-class target (docs/methods.md §2.3).
ANTICLASS_TRUE_CLASS_TOL = 1e-6
#: Reductions the fused CE + OCCE pass supports (it returns scalars).
FUSED_REDUCTIONS = ("mean", "sum")


# --------------------------------------------------------------------------------------------------------
# OCCE, RCE
# --------------------------------------------------------------------------------------------------------


def _check_anticlass_target(q: Any, logits: Tensor, target: Tensor, valid: Tensor, safe_t: Tensor) -> Tensor:
    """Validate a soft anti-class target and flatten it like the logits: (M, K)."""
    check_tensor(q, "anticlass_target", floating=True, finite=True)
    if tuple(q.shape) != tuple(logits.shape):
        raise ValueError(
            f"`anticlass_target` must have the logits' shape {tuple(logits.shape)}; got {tuple(q.shape)}"
        )
    q_flat, _, _ = flatten_class_dim(q, target)
    if data_checks_enabled():
        if bool((q_flat < 0).any()):
            raise ValueError(f"`anticlass_target` must be >= 0; got a minimum of {float(q_flat.min()):.3g}")
        rows = q_flat[valid]
        if rows.numel():
            sums = rows.sum(dim=1)
            worst = float((sums - 1).abs().max())
            if worst > ANTICLASS_SUM_TOL:
                raise ValueError(
                    f"`anticlass_target` rows must sum to 1 (tolerance {ANTICLASS_SUM_TOL:g}); "
                    f"got a row sum off by {worst:.3g}"
                )
            true_mass = rows.gather(1, safe_t[valid].unsqueeze(1))
            if float(true_mass.max()) > ANTICLASS_TRUE_CLASS_TOL:
                raise ValueError(
                    "`anticlass_target` must be one-cold: 0 at each sample's true class (tolerance "
                    f"{ANTICLASS_TRUE_CLASS_TOL:g}); got a true-class entry of {float(true_mass.max()):.3g}"
                )
    return q_flat


def occe(
    logits: Tensor,
    target: Tensor,
    *,
    anticlass_target: Tensor | None = None,
    weight: Tensor | None = None,
    ignore_index: int = DEFAULT_IGNORE_INDEX,
    reduction: str = "mean",
    eps: float | None = None,
) -> Tensor:
    """One-cold cross-entropy, KL form: OCCE = KL(ȳ ‖ softmax(−z)).

    Katsikas, Passalis, Tefas, TNNLS 2025, Eqs. 1, 3, 4 (uniform one-cold target ȳ_c = 0, ȳ_j = 1/(K−1))::

        OCCE_i = −log(K−1) − (1/(K−1)) Σ_{j≠c} log softmax(−z_i)_j          (≥ 0, = 0 iff q uniform off c)

    With a soft target q* (Appendix A.1.1, Eqs. 9–10; built by
    :func:`~neuralcollapse.losses.instance_anticlass_target` / ``class_anticlass_target``)::

        OCCE_i = Σ_j q*_j (log q*_j − log softmax(−z_i)_j)                  (xlogy, 0·log 0 = 0)

    Gradient (Eq. 5): ∂OCCE_i/∂z = ȳ − softmax(−z) (q* − softmax(−z) for a soft target), divided by N for
    ``reduction="mean"``. Computed with ``log_softmax(−z)``: exact at any logit scale. For K = 2 it equals
    the cross-entropy exactly. The paper's CE form is this value + log(K−1) (same gradient).

    Args:
        logits: (N, K) or (N, K, d1, ...) class logits z (for the dual head pass −z̄, the negated anti-class
            activations); floating, finite; K ≥ 2. Half precision is computed in float32.
        target: (N,) or (N, d1, ...) integer class indices in [0, K) (or ``ignore_index``).
        anticlass_target: optional soft anti-class target q*, same shape as ``logits``; ≥ 0, rows summing to 1
            (tolerance 1e−4), zero at the true class (tolerance 1e−6). None = uniform one-cold target.
        weight: optional (K,) class weights, applied per sample as w_{y_i} exactly like ``F.cross_entropy``.
        ignore_index: target value that contributes neither loss nor gradient (default −100).
        reduction: ``"mean"`` (sum over classes, mean over samples — the official code's), ``"sum"`` or
            ``"none"``.
        eps: None (default) = exact. ``1e-7`` reproduces the official code bit for bit,
            −(1/(K−1)) Σ_{j≠c} log((K−1)·softmax(−z)_j + eps), which caps each term at −log(eps) and loses the
            gradient of saturated entries at large |z|; uniform target only.

    Returns:
        Scalar (or the batch shape for ``reduction="none"``), float32 for half inputs.

    Raises:
        ValueError: K = 1 (the official code divides by zero), wrong shapes, labels out of range, NaN/Inf,
            empty batch, an invalid soft target, ``eps`` with a soft target, bad ``reduction``.
        TypeError: non-floating logits / soft target, non-integer target.

    Example:
        >>> import torch
        >>> y = torch.tensor([0])
        >>> round(float(occe(torch.zeros(1, 3), y)), 4)  # q = 1/3 everywhere: log(3/2)
        0.4055
        >>> abs(float(occe(torch.tensor([[30.0, 0.0, 0.0]]), y))) < 1e-6  # q → (0, 1/2, 1/2): optimum
        True
    """
    z, t, valid, batch_shape = prepare_logits_target(
        logits, target, weight=weight, ignore_index=ignore_index, reduction=reduction
    )
    num_classes = z.shape[1]
    if eps is not None:
        eps = check_positive(eps, "eps")
        if anticlass_target is not None:
            raise ValueError(
                "`eps` (the official +1e-7 form) supports only the uniform one-cold target; "
                "pass eps=None with `anticlass_target`"
            )
        # The official expression, operation for operation (cidl-auth/anticlasses, losses.py, OCCELoss).
        ycomp = (num_classes - 1) * F.softmax(-z, dim=1)
        onecold = torch.ones_like(z).scatter(1, t.unsqueeze(1), 0.0)
        per_sample = -1 / (num_classes - 1) * torch.sum(onecold * torch.log(ycomp + eps), dim=1)
    else:
        log_q = F.log_softmax(-z, dim=1)
        if anticlass_target is None:
            off_target = log_q.sum(dim=1) - log_q.gather(1, t.unsqueeze(1)).squeeze(1)
            per_sample = -math.log(num_classes - 1) - off_target / (num_classes - 1)
        else:
            q_star = _check_anticlass_target(anticlass_target, logits, target, valid, t).to(z.dtype)
            per_sample = (torch.xlogy(q_star, q_star) - q_star * log_q).sum(dim=1)
    return reduce_loss(per_sample, reduction, target=t, valid=valid, weight=weight, batch_shape=batch_shape)


def rce(
    logits: Tensor,
    target: Tensor,
    *,
    weight: Tensor | None = None,
    ignore_index: int = DEFAULT_IGNORE_INDEX,
    reduction: str = "mean",
) -> Tensor:
    """Reverse cross-entropy: RCE(z, c) = −(1/(K−1)) Σ_{j≠c} log softmax(z)_j.

    T. Pang, C. Du, Y. Dong, J. Zhu, "Towards Robust Detection of Adversarial Examples", NeurIPS 2018, Eq. 3
    (the cross-entropy with the reverse label vector). A network trained with RCE predicts with **negated**
    logits (argmin z, or argmax of −z). RCE(z) = OCCE(−z) + log(K−1) (docs/methods.md §2.1), so the "RCE" baseline
    of the OCCE paper (Tables 1, 3, 5) is equivalently the objective ``"occe"`` alone with the usual argmax.

    Args:
        logits: (N, K) or (N, K, d1, ...) floating, finite; K ≥ 2.
        target: integer class indices.
        weight, ignore_index, reduction: as :func:`occe`.

    Returns:
        Scalar (or the batch shape for ``reduction="none"``), ≥ log(K−1).

    Raises:
        ValueError / TypeError: as :func:`occe`.

    Example:
        >>> import torch
        >>> z, y = torch.tensor([[0.0, 1.0, 2.0]]), torch.tensor([0])
        >>> bool(torch.isclose(rce(-z, y), occe(z, y) + torch.log(torch.tensor(2.0))))
        True
    """

    def rows(z: Tensor, t: Tensor) -> Tensor:
        log_p = F.log_softmax(z, dim=1)
        off_target = log_p.sum(dim=1) - log_p.gather(1, t.unsqueeze(1)).squeeze(1)
        return -off_target / (z.shape[1] - 1)

    return logit_loss(rows, logits, target, weight=weight, ignore_index=ignore_index, reduction=reduction)


# --------------------------------------------------------------------------------------------------------
# fused CE + OCCE
# --------------------------------------------------------------------------------------------------------


def _row_statistics(z: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-row max, min, sum and true-class logit (M,) each; raises on NaN/Inf logits.

    amax/amin propagate NaN, so testing the (M,) extremes replaces an (M, K) ``isfinite`` sweep.
    """
    z_max, z_min = z.amax(dim=1), z.amin(dim=1)
    if data_checks_enabled() and not bool(torch.isfinite(z_max + z_min).all()):
        raise ValueError("`logits` contains NaN or Inf value(s)")
    return z_max, z_min, z.sum(dim=1), z.gather(1, target.unsqueeze(1)).squeeze(1)


def _row_values(stats: tuple[Tensor, ...], p_max: Tensor, q_max: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Per-row CE and OCCE from the row statistics and the largest entries of p = softmax(z), q = softmax(−z).

    LSE(z) = max z − log max p and LSE(−z) = −min z − log max q exactly (max p = 1/Σ exp(z − max z) is never
    small). CE_i = LSE(z_i) − z_ic; since Σ_{j≠c} log q_j = −(S_i − z_ic) − (K−1)·LSE(−z_i) with S_i = Σ_j z_ij,
    OCCE_i = LSE(−z_i) + (S_i − z_ic)/(K−1) − log(K−1).
    """
    z_max, z_min, z_sum, z_true = stats
    ce_rows = z_max - torch.log(p_max) - z_true
    occe_rows = (-z_min - torch.log(q_max)) + (z_sum - z_true) / (num_classes - 1) - math.log(num_classes - 1)
    return ce_rows, occe_rows


class _FusedCEOCCE(torch.autograd.Function):
    """(Σ_i r_i·CE_i, Σ_i r_i·OCCE_i) with the analytic gradient, each output differentiable on its own.

    Forward: p = softmax(z), q = softmax(−z) (two vectorised kernels) give both values (:func:`_row_values`)
    and, kept for the backward, the gradient ∂/∂z_i = r_i·[g_ce·(p_i − e_c) + g_occe·(ȳ_i − q_i)] (Eq. 5), formed
    in place in p (recomputed if the graph is walked a second time).
    """

    @staticmethod
    def forward(ctx: Any, z: Tensor, target: Tensor, row_weight: Tensor) -> tuple[Tensor, Tensor]:
        stats = _row_statistics(z, target)
        p = torch.softmax(z, dim=1)
        q = torch.softmax(z.neg(), dim=1)
        ce_rows, occe_rows = _row_values(stats, p.amax(dim=1), q.amax(dim=1), z.shape[1])
        ctx.save_for_backward(z, target, row_weight)
        ctx.softmaxes = (p, q)
        return (ce_rows * row_weight).sum(), (occe_rows * row_weight).sum()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_ce: Tensor, grad_occe: Tensor) -> tuple[Tensor, None, None]:
        z, target, row_weight = ctx.saved_tensors
        num_classes = z.shape[1]
        if ctx.softmaxes is not None:
            p, q = ctx.softmaxes
            ctx.softmaxes = None  # consumed in place below; a second backward recomputes them
        else:
            p, q = torch.softmax(z, dim=1), torch.softmax(z.neg(), dim=1)
        a = (row_weight * grad_ce).unsqueeze(1)
        b = (row_weight * grad_occe).unsqueeze(1)
        c = b / (num_classes - 1)
        grad = p.mul_(a).add_(c).addcmul_(q, b, value=-1.0)
        grad.scatter_add_(1, target.unsqueeze(1), -(a + c))
        return grad, None, None


#: Bytes of one (rows × K) block of the weighted fused pass: its temporaries stay in the CPU cache.
FUSED_BLOCK_BYTES = 1 << 19


def _weighted_gradient(
    z: Tensor, target: Tensor, a: Tensor, b: Tensor, *, need_grad: bool = True
) -> tuple[Tensor | None, Tensor, Tensor]:
    """G = a·(p − e_y) + b·(ȳ − q) for (M, 1) row factors a, b, built block by block; also max p, max q (M,).

    Working on row blocks keeps p, q and −z of a block in cache, so z is read once and G written once. With
    ``need_grad=False`` (no gradient requested) only the maxima are computed and G is None.
    """
    m, num_classes = z.shape
    # Blocks pay off on CPU caches; an accelerator gets the whole batch in one block.
    rows = max(1, FUSED_BLOCK_BYTES // (num_classes * z.element_size())) if z.device.type == "cpu" else m
    grad = torch.empty_like(z) if need_grad else None
    p_max, q_max = z.new_empty(m), z.new_empty(m)
    c = b / (num_classes - 1)
    d = -(a + c)
    for start in range(0, m, rows):
        block = slice(start, start + rows)
        z_block = z[block]
        p = torch.softmax(z_block, dim=1)
        q = torch.softmax(z_block.neg(), dim=1)
        torch.amax(p, dim=1, out=p_max[block])
        torch.amax(q, dim=1, out=q_max[block])
        if grad is None:
            continue
        g = torch.addcmul(c[block], p, a[block], out=grad[block])
        g.addcmul_(q, b[block], value=-1.0).scatter_add_(1, target[block].unsqueeze(1), d[block])
    return grad, p_max, q_max


class _WeightedCEOCCE(torch.autograd.Function):
    """w_ce·Σ r·CE + w_occe·Σ r·OCCE for fixed weights (the objective's case), plus both parts (no gradient).

    With the weights known in the forward, the whole gradient G is formed there (:func:`_weighted_gradient`),
    block by block; the backward only scales it by the incoming gradient.
    """

    @staticmethod
    def forward(
        ctx: Any, z: Tensor, target: Tensor, row_weight: Tensor, w_ce: float, w_occe: float
    ) -> tuple[Tensor, Tensor, Tensor]:
        stats = _row_statistics(z, target)
        a = (w_ce * row_weight).unsqueeze(1)
        b = (w_occe * row_weight).unsqueeze(1)
        grad, p_max, q_max = _weighted_gradient(z, target, a, b, need_grad=ctx.needs_input_grad[0])
        ce_rows, occe_rows = _row_values(stats, p_max, q_max, z.shape[1])
        ce, oc = (ce_rows * row_weight).sum(), (occe_rows * row_weight).sum()
        ctx.save_for_backward(z, target, a, b)
        ctx.gradient = grad
        ctx.mark_non_differentiable(ce, oc)
        return w_ce * ce + w_occe * oc, ce, oc

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_total: Tensor, _grad_ce: Tensor, _grad_occe: Tensor) -> tuple[Tensor | None, ...]:
        grad: Tensor | None = ctx.gradient
        ctx.gradient = None  # scaled in place below; a second backward rebuilds it
        if grad is None:
            z, target, a, b = ctx.saved_tensors
            grad = cast(Tensor, _weighted_gradient(z, target, a, b)[0])
        return grad.mul_(grad_total), None, None, None, None


def _fused_values(z: Tensor, target: Tensor, row_weight: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Pure-tensor forward of the compiled path: (Σ r·CE, Σ r·OCCE, LSE(z), LSE(−z))."""
    num_classes = z.shape[1]
    lse_pos = torch.logsumexp(z, dim=1)
    lse_neg = torch.logsumexp(-z, dim=1)
    z_true = z.gather(1, target.unsqueeze(1)).squeeze(1)
    ce_rows = lse_pos - z_true
    occe_rows = lse_neg + (z.sum(dim=1) - z_true) / (num_classes - 1) - math.log(num_classes - 1)
    return (ce_rows * row_weight).sum(), (occe_rows * row_weight).sum(), lse_pos, lse_neg


def _fused_grad(
    z: Tensor,
    target: Tensor,
    row_weight: Tensor,
    lse_pos: Tensor,
    lse_neg: Tensor,
    grad_ce: Tensor,
    grad_occe: Tensor,
) -> Tensor:
    """Pure-tensor backward of the compiled path: r·[g_ce·(p − e_c) + g_occe·(ȳ − q)]."""
    num_classes = z.shape[1]
    a = (row_weight * grad_ce).unsqueeze(1)
    b = (row_weight * grad_occe).unsqueeze(1)
    c = b / (num_classes - 1)
    grad = torch.exp(z - lse_pos.unsqueeze(1)) * a - torch.exp(-z - lse_neg.unsqueeze(1)) * b + c
    return grad - F.one_hot(target, num_classes).to(z.dtype) * (a + c)


_COMPILED: dict[str, Callable[..., Any]] = {}


def _compiled(name: str) -> Callable[..., Any]:
    """``torch.compile`` of the pure forward/backward, built on first use (compilation takes seconds)."""
    if name not in _COMPILED:
        fn = {"values": _fused_values, "grad": _fused_grad}[name]
        _COMPILED[name] = torch.compile(fn, dynamic=None)
    return _COMPILED[name]


class _CompiledCEOCCE(torch.autograd.Function):
    """Same contract as :class:`_FusedCEOCCE`, with both passes generated by ``torch.compile``."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, target: Tensor, row_weight: Tensor) -> tuple[Tensor, Tensor]:
        ce, oc, lse_pos, lse_neg = _compiled("values")(z, target, row_weight)
        if data_checks_enabled() and not bool(torch.isfinite(lse_pos + lse_neg).all()):
            raise ValueError("`logits` contains NaN or Inf value(s)")
        ctx.save_for_backward(z, target, row_weight, lse_pos, lse_neg)
        return ce, oc

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_ce: Tensor, grad_occe: Tensor) -> tuple[Tensor, None, None]:
        z, target, row_weight, lse_pos, lse_neg = ctx.saved_tensors
        return _compiled("grad")(z, target, row_weight, lse_pos, lse_neg, grad_ce, grad_occe), None, None


def _prepare_fused(
    logits: Tensor, target: Tensor, weight: Tensor | None, ignore_index: int, reduction: str
) -> tuple[Tensor, Tensor, Tensor]:
    """Validated, flattened (M, K) logits, safe targets and the per-row reduction weights r (M,)."""
    check_choice(reduction, "reduction", FUSED_REDUCTIONS)
    # Shape/dtype/label checks via the shared helper; the (M, K) finiteness sweep is replaced by the O(M)
    # test of the row extremes inside the fused forward.
    with validation(False):
        z, t, valid, _ = prepare_logits_target(
            logits, target, weight=weight, ignore_index=ignore_index, reduction=reduction
        )
    if data_checks_enabled():
        check_labels(target, "target", num_classes=z.shape[1], ignore_index=ignore_index)
        if weight is not None:
            check_finite(weight, "weight")
    row_weight = valid.to(z.dtype)
    if weight is not None:
        row_weight = row_weight * weight.to(z.dtype)[t]
    if reduction == "mean":
        row_weight = row_weight / row_weight.sum().clamp_min(torch.finfo(z.dtype).tiny)
    return z, t, row_weight


def ce_occe(
    logits: Tensor,
    target: Tensor,
    *,
    weight: Tensor | None = None,
    ignore_index: int = DEFAULT_IGNORE_INDEX,
    reduction: str = "mean",
    compile: bool = False,
) -> tuple[Tensor, Tensor]:
    """Cross-entropy and uniform OCCE of the same logits in one fused pass: returns ``(ce, occe)``.

    The two terms of the OCCE paper's unified objective L = CE + γ·OCCE (Katsikas et al., TNNLS 2025, Eq. 8);
    values and gradients equal ``cross_entropy(...)`` and ``occe(...)`` with the same options (to rounding).
    The forward computes softmax(z) and softmax(−z) once and derives both values from them; the backward is the
    closed form r_i·[g_ce·(p − e_y) + g_occe·(ȳ − softmax(−z))] (Eq. 5), with no further exponentials.
    :class:`~neuralcollapse.losses.Objective` uses a variant of it automatically for ``"ce+γ*occe"``.

    Only first derivatives are available (``once_differentiable``). The check for NaN/Inf logits is done on
    the per-row extremes, so it costs O(N) instead of an (N, K) sweep.

    Args:
        logits: (N, K) or (N, K, d1, ...) floating, finite; K ≥ 2.
        target: integer class indices (or ``ignore_index``).
        weight: optional (K,) class weights (w_{y_i} per sample, ``F.cross_entropy``'s rule, for both terms).
        ignore_index: target value that contributes neither loss nor gradient (default −100).
        reduction: ``"mean"`` (default) or ``"sum"``.
        compile: use ``torch.compile``-generated kernels (opt-in; compiles on first call, needs a working
            compiler tool chain; errors propagate).

    Returns:
        ``(ce, occe)``: two scalars (float32 for half inputs) that can be weighted and summed.

    Raises:
        ValueError / TypeError: as :func:`occe`; ``reduction="none"``.

    Example:
        >>> import torch
        >>> z, y = torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
        >>> ce, oc = ce_occe(z, y)
        >>> bool(torch.isclose(oc, occe(z, y), atol=1e-6))
        True
    """
    z, t, row_weight = _prepare_fused(logits, target, weight, ignore_index, reduction)
    fn = _CompiledCEOCCE if compile else _FusedCEOCCE
    ce, oc = fn.apply(z, t, row_weight)
    return ce, oc


def weighted_ce_occe(
    logits: Tensor,
    target: Tensor,
    w_ce: float,
    w_occe: float,
    *,
    weight: Tensor | None = None,
    ignore_index: int = DEFAULT_IGNORE_INDEX,
    reduction: str = "mean",
) -> tuple[Tensor, Tensor, Tensor]:
    """``w_ce·CE + w_occe·OCCE`` in one fused pass, plus the two unweighted values (detached).

    The objective's fast path: with the weights known up front the gradient is formed during the forward, in
    cache-sized row blocks (z read once, one (N, K) buffer written), and the backward only scales it. Values and
    gradients equal ``w_ce * cross_entropy(...) + w_occe * occe(...)`` to rounding. First derivatives only.

    Args:
        logits, target, weight, ignore_index, reduction: as :func:`ce_occe`.
        w_ce, w_occe: the two finite, non-negative weights (γ = ``w_occe`` in the OCCE paper's Eq. 8); checked
            as :class:`~neuralcollapse.losses.Objective` checks its term weights.

    Returns:
        ``(total, ce, occe)``: ``total`` carries the gradient; ``ce`` and ``occe`` are detached values.

    Raises:
        ValueError / TypeError: as :func:`ce_occe`; a negative, NaN or infinite ``w_ce``/``w_occe`` (ValueError)
            or a non-number (TypeError), naming the argument.

    Example:
        >>> import torch
        >>> z, y = torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
        >>> total, ce, oc = weighted_ce_occe(z, y, 1.0, 0.1)
        >>> bool(torch.isclose(total, ce + 0.1 * oc))
        True
    """
    w_ce = check_positive(w_ce, "w_ce", strict=False)
    w_occe = check_positive(w_occe, "w_occe", strict=False)
    z, t, row_weight = _prepare_fused(logits, target, weight, ignore_index, reduction)
    total, ce, oc = _WeightedCEOCCE.apply(z, t, row_weight, w_ce, w_occe)
    return total, ce, oc


# --------------------------------------------------------------------------------------------------------
# modules and objective terms
# --------------------------------------------------------------------------------------------------------


class _OCCEOptions:
    """``eps`` of OCCE (None = exact), shared by :class:`OCCELoss` and the ``"occe"`` term."""

    loss_fn = staticmethod(occe)
    hyperparameters = ("eps",)

    def __init__(self, eps: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.eps = None if eps is None else check_positive(eps, "eps")


class OCCELoss(_OCCEOptions, LogitLossModule):
    """Module form of :func:`occe`: ``OCCELoss(eps=None, weight=None, ignore_index=-100,
    reduction="mean")(logits, target, anticlass_target=None)``.

    Example:
        >>> import torch
        >>> round(float(OCCELoss()(torch.zeros(1, 3), torch.tensor([0]))), 4)
        0.4055
    """

    def forward(self, logits: Tensor, target: Tensor, anticlass_target: Tensor | None = None) -> Tensor:
        return self._loss(logits, target, anticlass_target=anticlass_target)


class RCELoss(LogitLossModule):
    """Module form of :func:`rce` (predict with argmin of the logits).

    Example:
        >>> import torch
        >>> round(float(RCELoss()(torch.zeros(1, 3), torch.tensor([0]))), 4)  # log 3
        1.0986
    """

    loss_fn = staticmethod(rce)


@register_term("occe")
class OCCETerm(_OCCEOptions, LogitTerm):
    """Objective term ``"occe"``: :func:`occe` (KL form), weight γ in the objective (Eq. 8).

    Reads the optional context key ``anticlass_target`` (soft targets, Appendix A.1.1). For a dual head
    (``output.anti_logits`` set, §3.3) it computes ``occe(-anti_logits, target)`` = KL(ȳ ‖ softmax(z̄)) on the
    independent anti-class head; otherwise ``occe(logits, target)``.
    """

    context_keys = ("anticlass_target",)

    def compute(self, output: HeadOutput, target: Tensor, anticlass_target: Tensor | None = None) -> Tensor:
        logits = output.logits if output.anti_logits is None else -output.anti_logits
        return self._loss(logits, target, anticlass_target=anticlass_target)


@register_term("rce")
class RCETerm(LogitTerm):
    """Objective term ``"rce"``: :func:`rce` of ``output.logits`` (the model then predicts argmin z)."""

    loss_fn = staticmethod(rce)

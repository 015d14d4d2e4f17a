"""Numerical rank of the input–output Jacobian of a network and of its intermediate layers
(docs/methods.md §2.9).

Source: R. Feng et al., "Rank Diminishing in Deep Neural Networks", NeurIPS 2022 (``rank_jacobian.py`` of
Yukun-Huang/Rank-Diminishing-in-Deep-Neural-Networks), as used by the OCCE paper (Katsikas, Passalis &
Tefas, Appendix A.5): per sample and layer, J_l = ∂f_l(x)/∂x ∈ R^{d_l×n}, rank = #{σ > 1.19e−7} (the float32
epsilon, absolute), averaged over a few test images (Feng: 10).
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validation import check_choice, check_positive, check_tensor
from ..output import logits_of
from ..robustness._model import model_device

__all__ = [
    "JACOBIAN_ABS_TOL",
    "JACOBIAN_TOL_MODES",
    "JacobianRank",
    "jacobian_rank",
    "numerical_rank",
]

#: absolute singular-value threshold of the OCCE paper (A.5): the float32 machine epsilon
JACOBIAN_ABS_TOL = 1.19e-7
#: ``"absolute"``: σ > tol; ``"relative"``: eigenvalues of JᵀJ (= σ²) above tol·λ_max (Feng's code)
JACOBIAN_TOL_MODES = ("absolute", "relative")
#: name of the model's own output (its logits) in the result
OUTPUT_NAME = "output"
_FLOAT32_EPS = float(torch.finfo(torch.float32).eps)


def numerical_rank(matrix: Tensor, *, tol: float | None = None, tol_mode: str = "absolute") -> int:
    """Numerical rank of a matrix from its singular values computed in float64.

    - ``"absolute"`` (OCCE paper, A.5): #{σ_i > tol}, tol default 1.19e−7. Singular values of J itself are
      used: the eigenvalues of JᵀJ would square the threshold into rounding noise.
    - ``"relative"`` (Feng et al.'s code: ``torch.matrix_rank(JᵀJ)``): #{σ_i² > tol·σ_max²}, i.e. the
      eigenvalues of the n×n JᵀJ against ``matrix_rank``'s default relative tolerance, tol default
      n·ε_float32 (Feng's model runs in float32). n = number of columns.

    Args:
        matrix: (r, n) real matrix (any float dtype; float64 internally).
        tol: threshold as above; None = the mode's default.
        tol_mode: ``"absolute"`` or ``"relative"``.

    Returns:
        The rank, an int in [0, min(r, n)].

    Raises:
        ValueError: a non-2-D, empty or non-finite matrix; a negative tol; unknown ``tol_mode``.

    Example:
        >>> a = torch.diag(torch.tensor([1.0, 1e-4, 1e-9], dtype=torch.float64))
        >>> numerical_rank(a), numerical_rank(a, tol_mode="relative")
        (2, 1)
    """
    check_tensor(matrix, "matrix", ndim=2, floating=True, finite=True)
    check_choice(tol_mode, "tol_mode", JACOBIAN_TOL_MODES)
    if tol is not None:
        check_positive(tol, "tol", strict=False)
    sv = torch.linalg.svdvals(matrix.detach().to(torch.float64))
    if tol_mode == "absolute":
        return int((sv > (JACOBIAN_ABS_TOL if tol is None else tol)).sum())
    rtol = matrix.shape[1] * _FLOAT32_EPS if tol is None else tol
    eig = sv.square()
    return int((eig > rtol * eig.max()).sum()) if float(eig.max()) > 0 else 0


@dataclass(frozen=True)
class JacobianRank:
    """Result of :func:`jacobian_rank`.

    Attributes:
        mean: layer name → rank averaged over the inputs (``"output"`` = the model's logits).
        ranks: layer name → rank per input.
        shapes: layer name → (d_l, n), the Jacobian's shape (outputs × input variables).
    """

    mean: dict[str, float]
    ranks: dict[str, list[int]]
    shapes: dict[str, tuple[int, int]]


def _patch_geometry(input_patch: Any, spatial: tuple[int, int]) -> tuple[int, int, int]:
    h, w = spatial
    if isinstance(input_patch, int) and not isinstance(input_patch, bool):
        size, top, left = input_patch, (h - input_patch) // 2, (w - input_patch) // 2
    elif (
        isinstance(input_patch, tuple | list)
        and len(input_patch) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) for v in input_patch)
    ):
        size, top, left = input_patch
    else:
        raise ValueError(f"`input_patch` must be an int (patch size) or (size, top, left); got {input_patch!r}")
    if size < 1 or top < 0 or left < 0 or top + size > h or left + size > w:
        raise ValueError(f"`input_patch` {input_patch!r} does not fit in the {h}×{w} input")
    return size, top, left


def _hook_output(output: Any, name: str) -> Tensor:
    if isinstance(output, tuple | list) and output and isinstance(output[0], Tensor):
        return output[0]
    return logits_of(output, f"the output of layer {name!r}")


def _basis(start: int, stop: int, size: int, like: Tensor) -> Tensor:
    """Rows start..stop−1 of the size×size identity, without building the identity."""
    rows = torch.zeros(stop - start, size, dtype=like.dtype, device=like.device)
    idx = torch.arange(stop - start, device=like.device)
    rows[idx, idx + start] = 1.0
    return rows


def _jacobians(fn: Callable[[Tensor], tuple[Tensor, ...]], z: Tensor, chunk: int) -> list[Tensor]:
    """Jacobians (d_l, n) of each flat output of ``fn`` w.r.t. ``z`` (n = z.numel()), built in chunks of
    ``chunk`` basis vectors: forward mode (jvp) when there are fewer inputs than outputs, else reverse mode
    (vjp). Memory is bounded by ``chunk`` copies of the forward pass."""
    n = z.numel()
    outs, vjp_fn = torch.func.vjp(fn, z)
    sizes = [o.numel() for o in outs]
    total = sum(sizes)
    if n <= total:
        cols: list[list[Tensor]] = [[] for _ in sizes]
        for s in range(0, n, chunk):
            basis = _basis(s, min(n, s + chunk), n, z).reshape(-1, *z.shape)
            _, tangents = torch.func.vmap(lambda v: torch.func.jvp(fn, (z,), (v,)))(basis)
            for lst, t in zip(cols, tangents):
                lst.append(t)
        return [torch.cat(lst).T for lst in cols]
    rows: list[Tensor] = []
    for s in range(0, total, chunk):
        basis = _basis(s, min(total, s + chunk), total, z)
        cotangents = tuple(torch.split(basis, sizes, dim=1))
        (grads,) = torch.func.vmap(vjp_fn)(cotangents)
        rows.append(grads.reshape(basis.shape[0], n))
    return list(torch.split(torch.cat(rows), sizes, dim=0))


def jacobian_rank(
    model: nn.Module | Callable[[Tensor], Any],
    inputs: Tensor,
    *,
    layers: Sequence[str] | None = None,
    include_output: bool = True,
    tol: float | None = None,
    tol_mode: str = "absolute",
    input_patch: int | tuple[int, int, int] | None = None,
    chunk_size: int = 64,
) -> JacobianRank:
    """Numerical rank of J_l = ∂f_l(x)/∂x per input and layer, averaged over the inputs (Feng et al.,
    NeurIPS 2022; OCCE paper A.5; docs/methods.md §2.9).

    The model is deep-copied to float64 and put in eval mode (the original is untouched); the Jacobian is
    computed exactly by automatic differentiation in float64 and its singular values by ``svdvals`` in
    float64; the rank is #{σ > 1.19e−7} (absolute, the paper's rule) or, with ``tol_mode="relative"``,
    ``matrix_rank``'s default on JᵀJ as in Feng's code (see :func:`numerical_rank`).

    ``input_patch`` reproduces Feng's setting: only a size×size patch of each input is a variable; it is
    zero-padded back to the full size (everything outside the patch is 0, as Feng's ``zero_padding``), so
    n = C·size² instead of C·H·W — the rank is then at most C·size².

    Args:
        model: an ``nn.Module`` (copied to float64, eval mode) or a callable that accepts float64 inputs.
            Its output is the logits tensor, a ``HeadOutput`` or a mapping with ``"logits"``.
        inputs: (B, ...) inputs in the model's input space (moved to the model's device); each row's
            Jacobian is computed separately.
        layers: names of submodules (``model.named_modules()``) whose outputs are captured by forward hooks
            (e.g. the stem, each residual block, the pooled feature); a tuple output counts by its first
            element. Requires an ``nn.Module``.
        include_output: also report the model's own output under ``"output"``.
        tol: rank threshold; None = 1.19e−7 (absolute) or n·ε_float32 (relative).
        tol_mode: ``"absolute"`` (default, OCCE paper) or ``"relative"`` (Feng's code).
        input_patch: None, a patch size (centred patch), or (size, top, left); needs (B, C, H, W) inputs.
        chunk_size: basis vectors per vectorised pass (memory ≈ chunk_size forward passes).

    Returns:
        :class:`JacobianRank` with the mean rank, per-input ranks and Jacobian shapes per layer.

    Raises:
        ValueError: empty or non-finite inputs, unknown layer names, nothing to report, a patch that does not
            fit, bad ``tol``/``tol_mode``/``chunk_size``.
        TypeError: ``layers`` with a model that is not an ``nn.Module``; an unreadable model output.

    Example:
        >>> lin = nn.Linear(6, 4, bias=False)
        >>> with torch.no_grad():
        ...     _ = lin.weight.copy_(torch.arange(24.0).reshape(4, 6))  # rows in arithmetic progression: rank 2
        >>> jacobian_rank(lin, torch.randn(3, 6)).mean["output"]
        2.0
    """
    check_tensor(inputs, "inputs", min_ndim=2, floating=True, finite=True)
    check_choice(tol_mode, "tol_mode", JACOBIAN_TOL_MODES)
    if tol is not None:
        check_positive(tol, "tol", strict=False)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"`chunk_size` must be a positive int; got {chunk_size!r}")
    layer_names = list(layers or [])
    if not layer_names and not include_output:
        raise ValueError("nothing to report: give `layers` or keep include_output=True")
    if layer_names and not isinstance(model, nn.Module):
        raise TypeError(f"`layers` needs an nn.Module to hook; got {type(model).__name__}")
    patch = None
    if input_patch is not None:
        if inputs.ndim != 4:
            raise ValueError(f"`input_patch` needs (B, C, H, W) inputs; got shape {tuple(inputs.shape)}")
        patch = _patch_geometry(input_patch, (inputs.shape[2], inputs.shape[3]))

    net: Callable[[Tensor], Any]
    hooks = []
    captured: dict[str, Tensor] = {}
    device = model_device(model) or inputs.device
    if device.type == "mps":  # no float64 on MPS: the float64 copy runs on the CPU
        device = torch.device("cpu")
    if isinstance(model, nn.Module):
        net = copy.deepcopy(model).to(device=device, dtype=torch.float64).eval()
        net.requires_grad_(False)
        modules = dict(net.named_modules())
        for name in layer_names:
            if name not in modules or name == "":
                close = difflib.get_close_matches(name, [k for k in modules if k], n=3)
                hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
                raise ValueError(f"`layers`: no submodule named {name!r}{hint}")

            def hook(_mod: nn.Module, _inp: Any, out: Any, name: str = name) -> None:
                captured[name] = _hook_output(out, name)

            hooks.append(modules[name].register_forward_hook(hook))
    else:
        net = model
    x64 = inputs.detach().to(device=device, dtype=torch.float64)

    names = layer_names + ([OUTPUT_NAME] if include_output else [])
    ranks: dict[str, list[int]] = {k: [] for k in names}
    shapes: dict[str, tuple[int, int]] = {}
    try:
        for i in range(x64.shape[0]):
            sample = x64[i : i + 1]
            if patch is None:
                z, embed = sample, None
            else:
                size, top, left = patch
                h, w = sample.shape[2], sample.shape[3]
                z = sample[:, :, top : top + size, left : left + size]
                pad = (left, w - left - size, top, h - top - size)
                embed = pad

            def fn(v: Tensor, embed: tuple[int, int, int, int] | None = embed) -> tuple[Tensor, ...]:
                captured.clear()
                full = v if embed is None else F.pad(v, embed)
                out = net(full)
                res = [captured[k].reshape(-1) for k in layer_names]
                if include_output:
                    res.append(logits_of(out).reshape(-1))
                return tuple(res)

            for name, jac in zip(names, _jacobians(fn, z, chunk_size)):
                ranks[name].append(numerical_rank(jac, tol=tol, tol_mode=tol_mode))
                shapes[name] = (int(jac.shape[0]), int(jac.shape[1]))
    finally:
        for h in hooks:
            h.remove()
    mean = {k: sum(v) / len(v) for k, v in ranks.items()}
    return JacobianRank(mean=mean, ranks=ranks, shapes=shapes)

"""Model plumbing shared by the robustness tools and the Jacobian rank: read logits from whatever a model
returns, and evaluate a model in eval mode with frozen parameters without leaving a trace on it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["eval_frozen", "model_device", "output_logits"]


def output_logits(output: Any, name: str = "model output") -> Tensor:
    """The logits in a model's output: a tensor itself, a ``HeadOutput`` (or anything with a tensor
    ``.logits``), or a mapping with a ``"logits"`` key (the LPC reference's ``"x_output"`` too)."""
    if isinstance(output, Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(output, Mapping):
        for key in ("logits", "x_output"):
            if isinstance(output.get(key), Tensor):
                return output[key]
    raise TypeError(
        f"{name} must be a logits tensor, a HeadOutput or a mapping with a 'logits' entry; "
        f"got {type(output).__name__} (wrap the model so that it returns the logits)"
    )


def model_device(model: Callable[..., Any]) -> torch.device | None:
    """Device of the model's first parameter or buffer (None for a parameter-free callable)."""
    if isinstance(model, nn.Module):
        for t in model.parameters():
            return t.device
        for t in model.buffers():
            return t.device
    return None


@contextlib.contextmanager
def eval_frozen(model: Callable[..., Any]) -> Iterator[None]:
    """Put every submodule in eval mode and switch ``requires_grad`` off on every parameter for the block;
    restore each submodule's own ``training`` flag and each parameter's own ``requires_grad`` afterwards,
    also when the block raises. A plain callable passes through untouched."""
    if not isinstance(model, nn.Module):
        yield
        return
    modes = [(m, m.training) for m in model.modules()]
    grads = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _ in grads:
            p.requires_grad_(False)
        yield
    finally:
        for m, mode in modes:
            m.training = mode
        for p, flag in grads:
            p.requires_grad_(flag)

"""Model plumbing shared by the robustness tools and the Jacobian rank: the device of a model, and evaluation
in eval mode with frozen parameters that leaves no trace on the model. Reading the logits from whatever a model
returns is :func:`neuralcollapse.output.logits_of`."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

__all__ = ["eval_frozen", "model_device"]


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

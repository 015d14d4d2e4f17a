"""ODIN: temperature scaling and input pre-processing.

Liang, Li & Srikant, "Enhancing the Reliability of Out-of-distribution Image Detection in Neural Networks",
ICLR 2018, Eq. (1)-(2), as in OpenOOD v1.5's ``odin_postprocessor``:

    ŷ = argmax z(x);   g = sign ∇ₓ CE(z(x)/T, ŷ)  (a zero gradient counts as +1);
    x̃ = x − ε · g / σ  (σ the per-channel input std: the step is taken in un-normalised pixel units);
    s(x) = max_k softmax(z(x̃)/T)_k.

The model runs in eval mode (its previous mode is restored afterwards); gradients are taken with respect to
the inputs only, so parameters' ``.grad`` are left untouched. Inputs are processed in batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import Tensor

from .._validation import check_positive
from ._utils import check_int
from .base import Detector, Requires
from .registry import register_detector

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_NOISE",
    "DEFAULT_TEMPERATURE",
    "ODIN",
    "OPENOOD_CIFAR_STD",
    "SWEEP_NOISE",
    "SWEEP_TEMPERATURE",
]

#: T = 1000 (Liang et al. 2018; OpenOOD v1.5 odin.yml)
DEFAULT_TEMPERATURE = 1000.0
#: ε = 0.0014 (OpenOOD v1.5 odin.yml)
DEFAULT_NOISE = 0.0014
SWEEP_TEMPERATURE = (1.0, 10.0, 100.0, 1000.0)
SWEEP_NOISE = (0.0014, 0.0028)
#: the per-channel std OpenOOD hard-codes (from the original ODIN code, CIFAR normalisation)
OPENOOD_CIFAR_STD = (63.0 / 255.0, 62.1 / 255.0, 66.7 / 255.0)
DEFAULT_BATCH_SIZE = 128


def _upcast(t: Tensor) -> Tensor:
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _check_std(std: float | Sequence[float] | None) -> tuple[float, ...] | float | None:
    if std is None:
        return None
    if isinstance(std, int | float) and not isinstance(std, bool):
        return check_positive(std, "std")
    if isinstance(std, Tensor):
        std = std.detach().cpu().reshape(-1).tolist()
    if isinstance(std, str) or not isinstance(std, Sequence) or len(std) == 0:
        raise TypeError(f"`std` must be None, a positive number or a sequence of them; got {std!r}")
    return tuple(check_positive(s, "std") for s in std)


@register_detector("odin")
class ODIN(Detector):
    """ODIN detector: maximum temperature-scaled softmax after a small adversarial-style input step.

    Formula (Liang et al., ICLR 2018, Eq. 2): x̃ = x − ε·sign(−∇ₓ log S_ŷ(x; T)), s = max_k S_k(x̃; T); the
    sign of ∇ₓ CE equals sign(−∇ₓ log S_ŷ), 0 → +1, and the step is divided by the per-channel std.

    Args:
        temperature: T > 0; default 1000; sweep {1, 10, 100, 1000}.
        noise: ε >= 0; default 0.0014; sweep {0.0014, 0.0028}.
        std: per-channel standard deviation of the input normalisation (dimension 1 of ``inputs``, any
            channel count), a single number for all channels, or None (= 1). OpenOOD uses
            ``OPENOOD_CIFAR_STD``.
        batch_size: inputs per forward/backward pass.

    fit: ``model`` (an ``nn.Module`` mapping inputs to (B, K) logits). score: ``inputs`` (M, C, ...).

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(4, 3)
        >>> det = ODIN(temperature=1000.0).fit(model=model)
        >>> det.score(inputs=torch.randn(5, 4)).shape
        torch.Size([5])
    """

    requires = Requires(fit=("model",), score=("inputs",))
    defaults = MappingProxyType(
        {"temperature": DEFAULT_TEMPERATURE, "noise": DEFAULT_NOISE, "std": None, "batch_size": DEFAULT_BATCH_SIZE}
    )
    sweep = MappingProxyType({"temperature": SWEEP_TEMPERATURE, "noise": SWEEP_NOISE})

    def __init__(
        self,
        temperature: float = DEFAULT_TEMPERATURE,
        noise: float = DEFAULT_NOISE,
        std: float | Sequence[float] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self.temperature = check_positive(temperature, "temperature")
        self.noise = check_positive(noise, "noise", strict=False)
        self.std = _check_std(std)
        self.batch_size = check_int(batch_size, "batch_size", minimum=1)

    def _fit(self, *, model: torch.nn.Module) -> None:
        self.model_ = model

    def _std_tensor(self, inputs: Tensor) -> Tensor | None:
        if self.std is None:
            return None
        if isinstance(self.std, float):
            return torch.tensor(self.std, dtype=inputs.dtype, device=inputs.device)
        channels = inputs.shape[1]
        if len(self.std) != channels:
            raise ValueError(
                f"`std` has {len(self.std)} entries but `inputs` has {channels} channels (dimension 1); "
                f"inputs shape {tuple(inputs.shape)}"
            )
        shape = (1, channels) + (1,) * (inputs.ndim - 2)
        return torch.tensor(self.std, dtype=inputs.dtype, device=inputs.device).view(shape)

    def _perturbed_confidence(self, model: torch.nn.Module, x: Tensor, std: Tensor | None) -> Tensor:
        leaf = x.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model(leaf)
            if logits.ndim != 2 or logits.shape[1] < 2:
                raise ValueError(
                    f"`model` must return (batch, K >= 2) logits; got shape {tuple(logits.shape)}"
                )
            target = logits.detach().argmax(dim=1)
            # a sum, not OpenOOD's mean: the sign is the same and 1/B cannot underflow a small gradient
            loss = F.cross_entropy(_upcast(logits) / self.temperature, target, reduction="sum")
            (grad,) = torch.autograd.grad(loss, leaf)
        step = torch.where(grad >= 0, 1.0, -1.0).to(x.dtype)
        if std is not None:
            step = step / std
        with torch.no_grad():
            perturbed = model(x.detach() - self.noise * step)
            return torch.softmax(_upcast(perturbed) / self.temperature, dim=1).amax(dim=1)

    def _score(self, *, inputs: Tensor) -> Tensor:
        model = self.model_
        std = self._std_tensor(inputs)
        # restore every submodule's own mode (a frozen, eval-mode backbone inside a training model stays so)
        modes = [(module, module.training) for module in model.modules()]
        model.eval()
        try:
            parts = [
                self._perturbed_confidence(model, inputs[s : s + self.batch_size], std)
                for s in range(0, inputs.shape[0], self.batch_size)
            ]
        finally:
            for module, mode in modes:
                module.training = mode
        return torch.cat(parts)

"""ODIN: temperature scaling and input pre-processing.

Liang, Li & Srikant, "Enhancing the Reliability of Out-of-distribution Image Detection in Neural Networks",
ICLR 2018, Eq. (1)-(2), as in OpenOOD v1.5's ``odin_postprocessor``:

    ŷ = argmax z(x);   g = sign ∇ₓ CE(z(x)/T, ŷ)  (a zero gradient counts as +1);
    x̃ = x − ε · g / σ  (σ the per-channel input std: the step is taken in un-normalised pixel units);
    s(x) = max_k softmax(z(x̃)/T)_k.

The model runs in eval mode (its previous mode is restored afterwards); gradients are taken with respect to
the inputs only, so parameters' ``.grad`` are left untouched. Inputs are processed in batches. The model may
return the logits, a :class:`~neuralcollapse.output.HeadOutput` or a mapping with ``"logits"``
(:func:`~neuralcollapse.output.logits_of`).

Precision: half/bfloat16 inputs are upcast to float32 and x̃ is formed there (an ε = 0.0014 step is below
fp16's resolution for |x| ≳ 2); the model sees the inputs in its own floating dtype (that of its first
floating parameter or buffer; float32 for a parameter-free model), so a float32 model scores fp16 inputs
exactly as their float32 values. With a low-precision model the loss is scaled by T before the backward (the
sign of the gradient is unchanged; small gradients do not underflow to 0, which would count as +1).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import Tensor

from .._validation import check_positive
from ..output import logits_of
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


_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _upcast(t: Tensor) -> Tensor:
    return t.float() if t.dtype in _LOW_PRECISION else t


def _model_dtype(model: torch.nn.Module, default: torch.dtype) -> torch.dtype:
    """The dtype the model computes in: that of its first floating parameter or buffer, else ``default``."""
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return default


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

    fit: ``model`` (an ``nn.Module`` mapping inputs to (B, K) logits, a ``HeadOutput`` or a mapping with
    ``"logits"``). score: ``inputs`` (M, C, ...), any floating dtype (fp16/bf16 are processed in float32;
    module docstring); the scores are float32 or wider.

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

    def _logits(self, model: torch.nn.Module, x: Tensor) -> Tensor:
        logits = logits_of(model(x), "`model` output")
        if logits.ndim != 2 or logits.shape[1] < 2:
            raise ValueError(f"`model` must return (batch, K >= 2) logits; got shape {tuple(logits.shape)}")
        return logits

    def _perturbed_confidence(
        self, model: torch.nn.Module, x: Tensor, std: Tensor | None, model_dtype: torch.dtype
    ) -> Tensor:
        """``x`` in the working dtype (float32 for half inputs); the model sees it in ``model_dtype``."""
        leaf = x.detach().to(model_dtype).requires_grad_(True)
        with torch.enable_grad():
            logits = self._logits(model, leaf)
            target = logits.detach().argmax(dim=1)
            # a sum, not OpenOOD's mean: the sign is the same and 1/B cannot underflow a small gradient; in a
            # low-precision model the loss is also scaled by T (sign unchanged) for the same reason
            loss = F.cross_entropy(_upcast(logits) / self.temperature, target, reduction="sum")
            if logits.dtype in _LOW_PRECISION:
                loss = loss * self.temperature
            (grad,) = torch.autograd.grad(loss, leaf)
        step = torch.where(grad >= 0, 1.0, -1.0).to(x.dtype)
        if std is not None:
            step = step / std
        with torch.no_grad():
            perturbed = self._logits(model, (x.detach() - self.noise * step).to(model_dtype))
            return torch.softmax(_upcast(perturbed) / self.temperature, dim=1).amax(dim=1)

    def _score(self, *, inputs: Tensor) -> Tensor:
        model = self.model_
        work = _upcast(inputs)  # x̃ is formed in float32 for half inputs (module docstring)
        model_dtype = _model_dtype(model, work.dtype)
        std = self._std_tensor(work)
        # restore every submodule's own mode (a frozen, eval-mode backbone inside a training model stays so)
        modes = [(module, module.training) for module in model.modules()]
        model.eval()
        try:
            parts = [
                self._perturbed_confidence(model, work[s : s + self.batch_size], std, model_dtype)
                for s in range(0, work.shape[0], self.batch_size)
            ]
        finally:
            for module, mode in modes:
                module.training = mode
        return torch.cat(parts)

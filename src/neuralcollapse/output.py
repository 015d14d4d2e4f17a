"""The core data contract: what a head returns and what every loss term reads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from torch import Tensor

__all__ = ["HeadOutput", "logits_of"]


@dataclass
class HeadOutput:
    """What a classifier head returns (docs/design.md, "The core contract").

    Attributes:
        logits: (N, K) scores that ``argmax`` predicts from. For cosine heads these are the scaled cosines.
        features: (N, d) what geometry metrics read — for normalised heads the unit-norm feature.
        anti_logits: (N, K) raw anti-class activations z̄ of the dual head (OCCE paper §3.3), else None.
        latent: (N, d) the LPC bottleneck's linear penultimate activations h, else None.
        prototypes: (K, d) the class vectors the logits were computed against, in class order (rows of W for
            a linear head, unit prototypes for cosine/fixed heads); loss terms such as NTCE/NONL/ArcFace read
            them. None when the head has no such matrix.
        cosines: (N, K) raw cosine similarities for normalised/prototype heads (unscaled), else None.
        extras: free-form additional tensors (e.g. each dual head's prediction).

    Example:
        >>> import torch
        >>> out = HeadOutput(logits=torch.zeros(2, 3), features=torch.zeros(2, 4))
        >>> out.logits.shape
        torch.Size([2, 3])
    """

    logits: Tensor
    features: Tensor
    anti_logits: Tensor | None = None
    latent: Tensor | None = None
    prototypes: Tensor | None = None
    cosines: Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return int(self.logits.shape[1])

    def predict(self) -> Tensor:
        """Predicted class indices: argmax of ``logits``."""
        return self.logits.argmax(dim=1)

    def detach(self) -> HeadOutput:
        """A copy with every tensor detached (for logging / metric updates)."""
        kwargs = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Tensor):
                kwargs[f.name] = v.detach()
            elif f.name == "extras":
                kwargs[f.name] = {k: (t.detach() if isinstance(t, Tensor) else t) for k, t in v.items()}
        return replace(self, **kwargs)


def logits_of(output: Any, name: str = "model output") -> Tensor:
    """The logits in whatever a model returns, for tools that accept any classifier (robustness, Jacobian rank).

    Accepted: a tensor (the logits themselves), a :class:`HeadOutput` (or anything with a tensor ``.logits``),
    or a mapping with a ``"logits"`` key (or ``"x_output"``, the LPC reference's name).

    Args:
        output: the model's return value.
        name: how the error message calls ``output`` (default ``"model output"``).

    Returns:
        The logits tensor, as is (no copy).

    Raises:
        TypeError: no logits tensor can be found in ``output``.

    Example:
        >>> import torch
        >>> z = torch.zeros(2, 3)
        >>> logits_of({"logits": z}) is z and logits_of(HeadOutput(logits=z, features=z)) is z
        True
    """
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

"""Batched tensor augmentation on the batch's own device (CPU or CUDA), without per-sample Python loops.

Training pipelines of the papers (docs/methods.md §2.7, §4.6, §7.3-7.4):

* OCCE / HPN / DL2PA: ``RandomCrop(32, padding=4)`` (OCCE: ``padding_mode="reflect"``) + horizontal flip
  → ``BatchAugment(crop_padding=4, pad_mode="reflect", flip=True)``;
* NTCE / NONL: ``RandomResizedCrop(32, scale=(0.2, 1))`` + flip → ``BatchAugment(crop_padding=0,
  random_resized_crop=(0.2, 1.0))``;
* DL2PA / ETF long-tail: crop + flip + input mixup with α = 1 → ``mixup_alpha=1.0``.

Test time: identity + normalisation (:func:`normalize`, :meth:`BatchAugment.test_transform`); centre-cropping
a 32-px image to 32 px is the identity.

Randomness comes from a CPU ``torch.Generator`` (seeded by ``seed``): the per-sample draws (offsets, flips,
crop boxes, mixup partners) are made on the CPU and moved to the batch's device, so the same seed gives the
same augmentation on CPU and CUDA. Under DDP give each rank its own seed (e.g. ``seed + rank``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .._validation import check_positive, check_tensor

__all__ = ["BatchAugment", "mixup", "normalize", "to_float"]

#: ``torchvision.transforms.RandomResizedCrop``'s default aspect-ratio range.
RRC_RATIO: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
#: Crop-box draws per sample before falling back to the central crop (as torchvision).
RRC_ATTEMPTS = 10
PAD_MODES: tuple[str, ...] = ("reflect", "constant", "replicate")


def to_float(x: Tensor) -> Tensor:
    """uint8 images in [0, 255] → float32 in [0, 1]; floating input is returned unchanged (idempotent).

    Raises:
        TypeError: ``x`` is not a tensor, or has a non-uint8 integer / bool dtype.

    Example:
        >>> to_float(torch.tensor([0, 255], dtype=torch.uint8))
        tensor([0., 1.])
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"`x` must be a torch.Tensor; got {type(x).__name__}")
    if x.is_floating_point():
        return x
    if x.dtype != torch.uint8:
        raise TypeError(f"`x` must be uint8 images (0..255) or floating point; got dtype {x.dtype}")
    return x.to(torch.float32).div_(255.0)


def normalize(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """Per-channel ``(to_float(x) − mean) / std`` for (N, C, H, W) or (C, H, W) images (out of place).

    ``mean``/``std`` are in the [0, 1] scale of :func:`to_float` (torchvision's ``Normalize`` convention).

    Raises:
        ValueError: ``mean``/``std`` length differs from the channel count, or a std is not positive.

    Example:
        >>> x = torch.full((1, 1, 2, 2), 255, dtype=torch.uint8)
        >>> normalize(x, (0.5,), (0.25,)).flatten().tolist()
        [2.0, 2.0, 2.0, 2.0]
    """
    x = to_float(x)
    check_tensor(x, "x", ndim=(3, 4), nonempty=False)
    channels = x.shape[-3]
    mean_t = torch.as_tensor(tuple(mean), dtype=x.dtype, device=x.device)
    std_t = torch.as_tensor(tuple(std), dtype=x.dtype, device=x.device)
    if mean_t.ndim != 1 or std_t.ndim != 1 or mean_t.numel() != channels or std_t.numel() != channels:
        raise ValueError(
            f"`mean` and `std` must have one value per channel ({channels}); "
            f"got {len(mean_t)} and {len(std_t)}"
        )
    if bool((std_t <= 0).any()):
        raise ValueError(f"`std` must be positive; got {tuple(std)}")
    return (x - mean_t[:, None, None]) / std_t[:, None, None]


def _beta(generator: torch.Generator, alpha: float) -> float:
    """λ ~ Beta(α, α) driven by the torch generator (NumPy's Beta sampler, seeded from it)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def mixup(
    x: Tensor, y: Tensor, alpha: float, *, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor, float]:
    """Input mixup (H. Zhang, M. Cisse, Y. N. Dauphin, D. Lopez-Paz, "mixup: Beyond Empirical Risk
    Minimization", ICLR 2018): one λ ~ Beta(α, α) per batch and a random partner permutation π,

        x̃ = λ·x + (1 − λ)·x[π],   y_a = y,   y_b = y[π];   loss = λ·L(y_a) + (1 − λ)·L(y_b).

    Args:
        x: (N, ...) batch (uint8 is converted with :func:`to_float`).
        y: (N,) labels.
        alpha: Beta parameter (> 0; DL2PA / ETF long-tail: 1.0).
        generator: CPU generator for λ and π (default: the global RNG).

    Returns:
        ``(x_mixed, y_a, y_b, lam)``.

    Raises:
        ValueError: ``alpha`` ≤ 0 or ``x``/``y`` lengths differ.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> xm, ya, yb, lam = mixup(torch.rand(4, 3, 2, 2), torch.arange(4), 1.0, generator=g)
        >>> 0.0 <= lam <= 1.0
        True
    """
    alpha = check_positive(alpha, "alpha")
    x = to_float(x)
    check_tensor(y, "y", ndim=1, integer=True)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"`x` and `y` must have the same length; got {x.shape[0]} and {y.shape[0]}")
    if generator is None:
        generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))
    lam = _beta(generator, alpha)
    perm = torch.randperm(x.shape[0], generator=generator).to(x.device)
    mixed = lam * x + (1.0 - lam) * x[perm]
    return mixed, y, y[perm.to(y.device)], lam


class BatchAugment:
    """Random pad-and-crop, random-resized-crop, horizontal flip, mixup and normalisation of a whole batch.

    Steps (each optional, in this order): to float in [0, 1] → pad by ``crop_padding`` and crop back to
    (H, W) at a uniform per-sample offset in [0, 2·padding]² (torchvision ``RandomCrop(size, padding)``) →
    random-resized crop (area fraction ~ U(scale), log aspect ratio ~ U(log 3/4, log 4/3), up to 10 draws per
    sample then the central crop, as torchvision; the box is resampled to (H, W) bilinearly with per-sample
    affine grids — continuous box coordinates, no antialiasing) → horizontal flip with probability 1/2 →
    normalisation with ``mean``/``std`` when given.

    Args:
        crop_padding: pixels of padding for the random crop (0 disables; OCCE/HPN: 4).
        pad_mode: "reflect" (OCCE official code), "constant" (zeros, torchvision's default) or "replicate".
        flip: random horizontal flip.
        random_resized_crop: ``(min, max)`` area fraction, e.g. (0.2, 1.0) for NTCE/NONL; None disables.
        mixup_alpha: α of input mixup, applied by ``__call__(x, y)`` (0 disables; DL2PA long-tail: 1.0).
        mean, std: per-channel normalisation constants in the [0, 1] scale (``DatasetSplits.mean``/``std``);
            None leaves the output in [0, 1].
        seed: seed of the CPU generator; ignored when ``generator`` is given; None draws one from the global
            RNG.
        generator: a CPU ``torch.Generator`` to draw from.

    Raises:
        ValueError: negative ``crop_padding``, unknown ``pad_mode``, a bad ``random_resized_crop`` range,
            negative ``mixup_alpha``, ``mean``/``std`` given alone.

    Example:
        >>> aug = BatchAugment(crop_padding=4, pad_mode="reflect", flip=True, seed=0)
        >>> x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
        >>> aug(x).shape
        torch.Size([8, 3, 32, 32])
        >>> xm, ya, yb, lam = BatchAugment(mixup_alpha=1.0, seed=0)(x, torch.arange(8))
    """

    def __init__(
        self,
        crop_padding: int = 4,
        pad_mode: str = "reflect",
        flip: bool = True,
        random_resized_crop: Sequence[float] | None = None,
        mixup_alpha: float = 0.0,
        *,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        if isinstance(crop_padding, bool) or not isinstance(crop_padding, int) or crop_padding < 0:
            raise ValueError(f"`crop_padding` must be a non-negative int; got {crop_padding!r}")
        if pad_mode not in PAD_MODES:
            raise ValueError(f"`pad_mode` must be one of {', '.join(map(repr, PAD_MODES))}; got {pad_mode!r}")
        if random_resized_crop is not None:
            scale = tuple(float(s) for s in random_resized_crop)
            if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
                raise ValueError(
                    f"`random_resized_crop` must be an area range (min, max) with 0 < min <= max <= 1; "
                    f"got {random_resized_crop!r}"
                )
            random_resized_crop = scale
        mixup_alpha = check_positive(mixup_alpha, "mixup_alpha", strict=False)
        if (mean is None) != (std is None):
            raise ValueError("`mean` and `std` must be given together (or both None)")
        if generator is not None and generator.device.type != "cpu":
            raise ValueError(f"`generator` must be a CPU torch.Generator; got one on {generator.device}")
        self.crop_padding = crop_padding
        self.pad_mode = pad_mode
        self.flip = bool(flip)
        self.random_resized_crop: tuple[float, float] | None = random_resized_crop
        self.mixup_alpha = mixup_alpha
        self.mean = None if mean is None else tuple(float(m) for m in mean)
        self.std = None if std is None else tuple(float(s) for s in std)
        if generator is None:
            generator = torch.Generator()
            generator.manual_seed(int(seed) if seed is not None else int(torch.randint(0, 2**62, (1,))))
        self.generator = generator

    def __repr__(self) -> str:
        return (
            f"BatchAugment(crop_padding={self.crop_padding}, pad_mode={self.pad_mode!r}, flip={self.flip}, "
            f"random_resized_crop={self.random_resized_crop}, mixup_alpha={self.mixup_alpha}, "
            f"mean={self.mean}, std={self.std})"
        )

    # ---------------------------------------------------------------- steps
    def _check_padding(self, h: int, w: int) -> None:
        p = self.crop_padding
        if self.pad_mode == "reflect" and (p >= h or p >= w):
            raise ValueError(
                f"`crop_padding`={p} needs images larger than {p} px for reflect padding; got {h}x{w}"
            )

    def _crop_flip(self, x: Tensor, offsets: Tensor | None, mask: Tensor | None) -> Tensor:
        """Pad-and-crop and/or flip in one ``gather`` over flat pixel indices (no per-sample loop)."""
        n, c, h, w = x.shape
        dev = x.device
        if offsets is not None:
            p = self.crop_padding
            self._check_padding(h, w)
            src = F.pad(x, (p, p, p, p), mode=self.pad_mode)
            offsets = offsets.to(dev)
            top, left = offsets[:, 0, None], offsets[:, 1, None]
        else:
            src = x.contiguous()
            top = left = torch.zeros(n, 1, dtype=torch.int64, device=dev)
        cols = torch.arange(w, device=dev).expand(n, w)
        if mask is not None:  # the flipped crop reads the window's columns right to left
            cols = torch.where(mask.to(dev)[:, None], w - 1 - cols, cols)
        rows = top + torch.arange(h, device=dev)  # (N, H)
        cols = left + cols  # (N, W)
        flat = (rows[:, :, None] * src.shape[3] + cols[:, None, :]).reshape(n, 1, h * w).expand(n, c, h * w)
        return src.reshape(n, c, -1).gather(2, flat).reshape(n, c, h, w)

    def _draw_offsets(self, n: int) -> Tensor | None:
        if self.crop_padding == 0:
            return None
        return torch.randint(0, 2 * self.crop_padding + 1, (n, 2), generator=self.generator)

    def _draw_flips(self, n: int) -> Tensor | None:
        return torch.rand(n, generator=self.generator) < 0.5 if self.flip else None

    def pad_crop(self, x: Tensor, offsets: Tensor | None = None) -> Tensor:
        """Pad by ``crop_padding`` and crop each sample back to (H, W) at its own offset.

        ``offsets`` (N, 2) gives (row, col) offsets in [0, 2·padding] explicitly (drawn when None).
        """
        if self.crop_padding == 0:
            return x
        if offsets is None:
            offsets = self._draw_offsets(x.shape[0])
        return self._crop_flip(x, offsets, None)

    def _rrc_boxes(self, n: int, h: int, w: int) -> Tensor:
        """(N, 4) crop boxes (top, left, height, width) in pixels, torchvision's sampling rule."""
        lo, hi = self.random_resized_crop  # type: ignore[misc]
        area = h * w
        g = self.generator
        target = area * (lo + (hi - lo) * torch.rand(n, RRC_ATTEMPTS, generator=g, dtype=torch.float64))
        log_r = math.log(RRC_RATIO[0]) + (math.log(RRC_RATIO[1]) - math.log(RRC_RATIO[0])) * torch.rand(
            n, RRC_ATTEMPTS, generator=g, dtype=torch.float64
        )
        ratio = torch.exp(log_r)
        bw = torch.sqrt(target * ratio)
        bh = torch.sqrt(target / ratio)
        valid = (bw <= w) & (bh <= h) & (bw > 0) & (bh > 0)
        first = torch.argmax(valid.to(torch.int8), dim=1)  # first valid attempt (0 if none)
        has = valid.any(dim=1)
        pick = torch.arange(n)
        bw, bh = bw[pick, first], bh[pick, first]
        # Fallback (torchvision): the central crop with the ratio clamped into RRC_RATIO.
        in_ratio = w / h
        if in_ratio < RRC_RATIO[0]:
            fw, fh = float(w), w / RRC_RATIO[0]
        elif in_ratio > RRC_RATIO[1]:
            fw, fh = h * RRC_RATIO[1], float(h)
        else:
            fw, fh = float(w), float(h)
        bw = torch.where(has, bw, torch.full_like(bw, fw))
        bh = torch.where(has, bh, torch.full_like(bh, fh))
        u = torch.rand(n, 2, generator=g, dtype=torch.float64)
        top = torch.where(has, u[:, 0] * (h - bh), (h - bh) / 2)
        left = torch.where(has, u[:, 1] * (w - bw), (w - bw) / 2)
        return torch.stack([top, left, bh, bw], dim=1)

    def resized_crop(self, x: Tensor, boxes: Tensor | None = None, flip: Tensor | None = None) -> Tensor:
        """Resample each sample's box (top, left, height, width in pixels) to the full (H, W), bilinearly.

        Boxes are drawn with torchvision's rule when ``boxes`` is None. ``flip`` (N,) mirrors the marked
        outputs horizontally (folded into the sampling grid: the same as flipping afterwards).
        """
        if self.random_resized_crop is None and boxes is None:
            return x
        n, _, h, w = x.shape
        if boxes is None:
            boxes = self._rrc_boxes(n, h, w)
        boxes = boxes.to(device=x.device, dtype=x.dtype)
        top, left, bh, bw = boxes.unbind(1)
        # align_corners=False: normalised coordinate u ∈ [−1, 1] spans pixel edges, u = 2·(px / W) − 1.
        theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
        theta[:, 0, 0] = bw / w
        if flip is not None:
            theta[:, 0, 0] = torch.where(flip.to(x.device), -theta[:, 0, 0], theta[:, 0, 0])
        theta[:, 0, 2] = (2 * left + bw) / w - 1
        theta[:, 1, 1] = bh / h
        theta[:, 1, 2] = (2 * top + bh) / h - 1
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def random_flip(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Flip each sample horizontally where ``mask`` (N,) is True (drawn with p = 1/2 when None)."""
        if mask is None:
            if not self.flip:
                return x
            mask = self._draw_flips(x.shape[0])
        return self._crop_flip(x, None, mask)

    def _normalize(self, x: Tensor) -> Tensor:
        if self.mean is None or self.std is None:
            return x
        return normalize(x, self.mean, self.std)

    def _geometric(self, x: Tensor) -> Tensor:
        """Crop → resized crop → flip with the parameters drawn in that order, fused where possible."""
        check_tensor(x, "x", ndim=4)
        x = to_float(x)
        n, _, h, w = x.shape
        if self.crop_padding:
            self._check_padding(h, w)
        offsets = self._draw_offsets(n)
        boxes = self._rrc_boxes(n, h, w) if self.random_resized_crop is not None else None
        flips = self._draw_flips(n)
        if boxes is not None:
            if offsets is not None:
                x = self._crop_flip(x, offsets, None)
            return self.resized_crop(x, boxes, flip=flips)
        if offsets is None and flips is None:
            return x
        return self._crop_flip(x, offsets, flips)

    # ---------------------------------------------------------------- entry points
    def augment(self, x: Tensor) -> Tensor:
        """Crop / flip / normalise a batch (N, C, H, W) (uint8 or float; returns float)."""
        return self._normalize(self._geometric(x))

    def test_transform(self, x: Tensor) -> Tensor:
        """Test-time transform: to float and normalise (no randomness)."""
        check_tensor(x, "x", ndim=4)
        return self._normalize(to_float(x))

    def __call__(self, x: Tensor, y: Tensor | None = None):
        """``aug(x)`` → augmented batch; ``aug(x, y)`` → ``(x_aug, y_a, y_b, lam)`` (mixup after the crop/flip
        and before normalisation; with ``mixup_alpha == 0``: ``(x_aug, y, y, 1.0)``)."""
        if y is None:
            return self.augment(x)
        x = self._geometric(x)
        if self.mixup_alpha > 0:
            x, y_a, y_b, lam = mixup(x, y, self.mixup_alpha, generator=self.generator)
        else:
            y_a, y_b, lam = y, y, 1.0
        return self._normalize(x), y_a, y_b, lam

"""Common image corruptions of CIFAR-10-C / ImageNet-C as pure tensor operations (docs/methods.md §4.6).

Source: D. Hendrycks, T. Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations", ICLR 2019; severity constants from hendrycks/robustness (``ImageNet-C/create_c/
make_cifar_c.py`` → preset ``"cifar"``, ``ImageNet-C/imagenet_c/imagenet_c/corruptions.py`` → preset
``"imagenet"``). The NTCE/NONL paper (P. Koromilas, T. Giannakopoulos, M. A. Nicolaou, Y. Panagakis,
"Neural Collapse by Design: Learning Class Prototypes on the Hypersphere", ICML 2026) reports better
ImageNet-C robustness; :func:`corruption_accuracy` gives the per-corruption, per-severity accuracy table and
the mean corruption accuracy.

Implemented (inputs (N, C, H, W) in [0, 1], outputs clipped to [0, 1]): gaussian_noise, shot_noise,
impulse_noise, speckle_noise, gaussian_blur, defocus_blur, contrast, brightness, saturate, pixelate, fog.
The published data sets are stored as uint8; these float versions skip that quantisation.

Not implemented: ``jpeg_compression`` (needs a JPEG codec, not a tensor op); ``frost`` (needs the frost
image assets); ``motion_blur``, ``snow``, ``spatter`` (ImageMagick/OpenCV operations without an exact tensor
equivalent); ``glass_blur`` (sequential per-pixel swaps); ``zoom_blur``, ``elastic_transform`` (SciPy
interpolation whose exact boundary handling we do not reproduce).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._registry import Registry
from .._validation import check_labels, check_tensor, data_checks_enabled
from ..output import logits_of
from ._model import eval_frozen, model_device

__all__ = [
    "CORRUPTIONS",
    "CORRUPTION_PRESETS",
    "Corruption",
    "CorruptionAccuracy",
    "corrupt",
    "corruption_accuracy",
]

#: severity tables: ``"cifar"`` (CIFAR-10-C, 32×32 images) and ``"imagenet"`` (ImageNet-C, 224×224)
CORRUPTION_PRESETS = ("cifar", "imagenet")
DEFAULT_PRESET = "cifar"
SEVERITIES = (1, 2, 3, 4, 5)
DEFAULT_BATCH_SIZE = 256

CORRUPTIONS: Registry[Corruption] = Registry("corruption")


@dataclass(frozen=True)
class Corruption:
    """A corruption: a function ``fn(x, constant, generator) -> Tensor`` and its constant per severity.

    Attributes:
        name: registry name.
        fn: the operation on a float (N, C, H, W) batch in [0, 1]; returns the unclipped result (clipped by
            :func:`corrupt`).
        constants: preset → the 5 severity constants of Hendrycks & Dietterich.
        random: whether it draws random numbers (seeded through ``generator``).
        channels: required channel count (3 for colour-space corruptions), or None for any.
    """

    name: str
    fn: Callable[[Tensor, Any, torch.Generator | None], Tensor]
    constants: dict[str, tuple[Any, ...]]
    random: bool = False
    channels: int | None = None


def _register(
    name: str, cifar: Sequence[Any], imagenet: Sequence[Any], *, random: bool = False, channels: int | None = None
) -> Callable[[Callable[..., Tensor]], Callable[..., Tensor]]:
    def decorator(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
        consts = {"cifar": tuple(cifar), "imagenet": tuple(imagenet)}
        CORRUPTIONS.add(name, Corruption(name, fn, consts, random=random, channels=channels))
        return fn

    return decorator


# ----------------------------------------------------------------------------------------------------------
# random draws: on the generator's device (CPU by default), moved to the data
# ----------------------------------------------------------------------------------------------------------
def _gen_device(generator: torch.Generator | None, like: Tensor) -> torch.device:
    return generator.device if generator is not None else like.device


def _randn(like: Tensor, generator: torch.Generator | None) -> Tensor:
    out = torch.randn(like.shape, generator=generator, dtype=like.dtype, device=_gen_device(generator, like))
    return out.to(like.device)


def _rand(shape: Sequence[int], like: Tensor, generator: torch.Generator | None) -> Tensor:
    out = torch.rand(tuple(shape), generator=generator, dtype=like.dtype, device=_gen_device(generator, like))
    return out.to(like.device)


# ----------------------------------------------------------------------------------------------------------
# noise
# ----------------------------------------------------------------------------------------------------------
@_register("gaussian_noise", (0.04, 0.06, 0.08, 0.09, 0.10), (0.08, 0.12, 0.18, 0.26, 0.38), random=True)
def _gaussian_noise(x: Tensor, c: float, generator: torch.Generator | None) -> Tensor:
    """x + N(0, c²) per element."""
    return x + c * _randn(x, generator)


@_register("shot_noise", (500, 250, 100, 75, 50), (60, 25, 12, 5, 3), random=True)
def _shot_noise(x: Tensor, c: float, generator: torch.Generator | None) -> Tensor:
    """Poisson(c·x)/c per element (photon counting with c photons at full intensity)."""
    rate = (x * c).to(_gen_device(generator, x))
    return torch.poisson(rate, generator=generator).to(x.device) / c


@_register("impulse_noise", (0.01, 0.02, 0.03, 0.05, 0.07), (0.03, 0.06, 0.09, 0.17, 0.27), random=True)
def _impulse_noise(x: Tensor, c: float, generator: torch.Generator | None) -> Tensor:
    """Salt-and-pepper (scikit-image ``random_noise(mode="s&p", amount=c)``): each element independently
    becomes 1 or 0 (equally likely) with probability c."""
    flipped = _rand(x.shape, x, generator) < c
    salted = _rand(x.shape, x, generator) < 0.5
    out = torch.where(flipped & salted, torch.ones_like(x), x)
    return torch.where(flipped & ~salted, torch.zeros_like(x), out)


@_register("speckle_noise", (0.06, 0.1, 0.12, 0.16, 0.2), (0.15, 0.2, 0.35, 0.45, 0.6), random=True)
def _speckle_noise(x: Tensor, c: float, generator: torch.Generator | None) -> Tensor:
    """x + x·N(0, c²) per element (multiplicative noise)."""
    return x + x * c * _randn(x, generator)


# ----------------------------------------------------------------------------------------------------------
# blur
# ----------------------------------------------------------------------------------------------------------
def _depthwise(x: Tensor, kernel: Tensor, mode: str) -> Tensor:
    """Correlate every channel with a square odd-sized kernel, padding by ``mode`` (``"replicate"`` =
    SciPy's "nearest"; ``"reflect"`` = OpenCV's BORDER_REFLECT_101)."""
    r = kernel.shape[-1] // 2
    if mode == "reflect" and r >= min(x.shape[-2:]):
        raise ValueError(f"`x`: images of size {tuple(x.shape[-2:])} are too small for a {2 * r + 1}-tap kernel")
    c = x.shape[1]
    k = kernel.to(device=x.device, dtype=x.dtype).expand(c, 1, *kernel.shape[-2:])
    return F.conv2d(F.pad(x, (r, r, r, r), mode=mode), k, groups=c)


def _gaussian_kernel_1d(sigma: float, radius: int, dtype: torch.dtype) -> Tensor:
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * (t / sigma) ** 2)
    return (w / w.sum()).to(dtype)


@_register("gaussian_blur", (0.4, 0.6, 0.7, 0.8, 1.0), (1, 2, 3, 4, 6))
def _gaussian_blur(x: Tensor, sigma: float, generator: torch.Generator | None) -> Tensor:
    """scikit-image ``gaussian(sigma)`` per channel: SciPy's separable Gaussian, radius int(4σ + 0.5),
    edges replicated (mode "nearest")."""
    k = _gaussian_kernel_1d(sigma, int(4.0 * sigma + 0.5), torch.float64)
    return _depthwise(x, torch.outer(k, k), "replicate")


def _disk_kernel(radius: float, alias_blur: float) -> Tensor:
    """Hendrycks' ``disk``: the aliased disk X² + Y² ≤ r² on a grid of half-width max(8, r), normalised,
    then OpenCV ``GaussianBlur`` (3×3, or 5×5 for r > 8; σ = alias_blur; BORDER_REFLECT_101); exactly-zero
    outer rings are trimmed (they do not change the filtering)."""
    half = 8 if radius <= 8 else int(radius)
    ksize = 3 if radius <= 8 else 5
    t = torch.arange(-half, half + 1, dtype=torch.float64)
    disk = ((t[:, None] ** 2 + t[None, :] ** 2) <= radius**2).to(torch.float64)
    disk = disk / disk.sum()
    g = _gaussian_kernel_1d(alias_blur, ksize // 2, torch.float64)
    kernel = _depthwise(disk[None, None], torch.outer(g, g), "reflect")[0, 0]
    while kernel.shape[0] > 1 and bool((kernel[0] == 0).all() & (kernel[:, 0] == 0).all()):
        kernel = kernel[1:-1, 1:-1]
    return kernel


@_register(
    "defocus_blur",
    ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
    ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
)
def _defocus_blur(x: Tensor, c: tuple[float, float], generator: torch.Generator | None) -> Tensor:
    """Filtering with an anti-aliased disk of radius c[0] (OpenCV ``filter2D``, BORDER_REFLECT_101)."""
    return _depthwise(x, _disk_kernel(*c), "reflect")


# ----------------------------------------------------------------------------------------------------------
# photometric
# ----------------------------------------------------------------------------------------------------------
@_register("contrast", (0.75, 0.5, 0.4, 0.3, 0.15), (0.4, 0.3, 0.2, 0.1, 0.05))
def _contrast(x: Tensor, c: float, generator: torch.Generator | None) -> Tensor:
    """(x − m)·c + m with m the per-image, per-channel spatial mean."""
    m = x.mean(dim=(2, 3), keepdim=True)
    return (x - m) * c + m


@_register("brightness", (0.05, 0.1, 0.15, 0.2, 0.3), (0.1, 0.2, 0.3, 0.4, 0.5))
def _brightness(x: Tensor, c: float, generator: torch.Generator | None) -> Tensor:
    """HSV value V ← clip(V + c, 0, 1) with hue and saturation kept (scikit-image ``rgb2hsv``/``hsv2rgb``),
    in closed form: RGB scales with V, so x ← x·V'/V; a black pixel (V = 0) becomes grey V'. A single
    channel is its own value: clip(x + c)."""
    if x.shape[1] == 1:
        return (x + c).clamp(0.0, 1.0)
    v = x.amax(dim=1, keepdim=True)
    v_new = (v + c).clamp(0.0, 1.0)
    scaled = x * (v_new / torch.where(v > 0, v, torch.ones_like(v)))
    return torch.where(v > 0, scaled, v_new.expand_as(x))


@_register(
    "saturate",
    ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),
    ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)),
    channels=3,
)
def _saturate(x: Tensor, c: tuple[float, float], generator: torch.Generator | None) -> Tensor:
    """HSV saturation S ← clip(S·c[0] + c[1], 0, 1) with hue and value kept, in closed form: each channel
    is V − V·S·f(H), so x ← V − (V − x)·S'/S; a grey pixel (S = 0, hue 0 = red by scikit-image's convention)
    becomes (V, V(1 − S'), V(1 − S'))."""
    v = x.amax(dim=1, keepdim=True)
    mn = x.amin(dim=1, keepdim=True)
    s = torch.where(v > 0, (v - mn) / torch.where(v > 0, v, torch.ones_like(v)), torch.zeros_like(v))
    s_new = (s * c[0] + c[1]).clamp(0.0, 1.0)
    coloured = v - (v - x) * (s_new / torch.where(s > 0, s, torch.ones_like(s)))
    red = torch.cat([v, v * (1 - s_new), v * (1 - s_new)], dim=1)
    return torch.where(s > 0, coloured, red)


# ----------------------------------------------------------------------------------------------------------
# pixelate: Pillow's BOX resampling down and up
# ----------------------------------------------------------------------------------------------------------
def _pil_box_matrix(in_size: int, out_size: int) -> Tensor:
    """(out, in) resampling matrix of Pillow's ``resize(..., Image.BOX)`` along one axis
    (``precompute_coeffs`` in libImaging/Resample.c): output pixel j averages the input pixels whose
    centres fall in its footprint, with 0/1 box weights normalised to sum 1."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    mat = torch.zeros(out_size, in_size, dtype=torch.float64)
    for j in range(out_size):
        center = (j + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size)
        for i in range(xmin, xmax):
            t = (i - center + 0.5) / filterscale
            if -0.5 < t <= 0.5:
                mat[j, i] = 1.0
        total = mat[j].sum()
        if total > 0:
            mat[j] /= total
    return mat


@_register("pixelate", (0.95, 0.9, 0.85, 0.75, 0.65), (0.6, 0.5, 0.4, 0.3, 0.25))
def _pixelate(x: Tensor, c: float, generator: torch.Generator | None) -> Tensor:
    """Box-downsample to (⌊H·c⌋, ⌊W·c⌋) and box-upsample back (Pillow ``BOX`` both ways)."""
    h, w = x.shape[-2:]
    hs, ws = max(1, int(h * c)), max(1, int(w * c))
    rows = _pil_box_matrix(hs, h) @ _pil_box_matrix(h, hs)  # (H, H): down then up
    cols = _pil_box_matrix(ws, w) @ _pil_box_matrix(w, ws)
    return rows.to(x) @ x @ cols.T.to(x)


# ----------------------------------------------------------------------------------------------------------
# fog: diamond-square plasma fractal
# ----------------------------------------------------------------------------------------------------------
def _plasma_fractal(
    n: int, mapsize: int, wibbledecay: float, like: Tensor, generator: torch.Generator | None
) -> Tensor:
    """(n, mapsize, mapsize) height maps in [0, 1] by Hendrycks' diamond-square ``plasma_fractal``."""
    maps = torch.zeros(n, mapsize, mapsize, dtype=torch.float64, device=_gen_device(generator, like))
    step, wibble = mapsize, 100.0

    def wibbled(arr: Tensor) -> Tensor:
        noise = torch.rand(arr.shape, generator=generator, dtype=arr.dtype, device=arr.device) * 2 - 1
        return arr / 4 + wibble * (wibble * noise)

    while step >= 2:
        half = step // 2
        corner = maps[:, 0::step, 0::step]
        square = corner + corner.roll(-1, dims=1)
        square = square + square.roll(-1, dims=2)
        maps[:, half::step, half::step] = wibbled(square)
        dr = maps[:, half::step, half::step]
        ul = maps[:, 0::step, 0::step]
        lt = dr + dr.roll(1, dims=1) + ul + ul.roll(-1, dims=2)
        maps[:, 0::step, half::step] = wibbled(lt)
        tt = dr + dr.roll(1, dims=2) + ul + ul.roll(-1, dims=1)
        maps[:, half::step, 0::step] = wibbled(tt)
        step //= 2
        wibble /= wibbledecay
    flat = maps.reshape(n, -1)
    flat = flat - flat.min(dim=1, keepdim=True).values
    flat = flat / flat.max(dim=1, keepdim=True).values
    return flat.reshape(n, mapsize, mapsize).to(device=like.device, dtype=like.dtype)


@_register(
    "fog",
    ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
    ((1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)),
    random=True,
)
def _fog(x: Tensor, c: tuple[float, float], generator: torch.Generator | None) -> Tensor:
    """x ← (x + c[0]·P)·M/(M + c[0]) with P a plasma fractal (roughness decay c[1]) on the smallest
    power-of-two square covering the image (32 for CIFAR, 256 for ImageNet, as the reference), cropped, and
    M the image's maximum."""
    n, _, h, w = x.shape
    mapsize = 1 << max(1, math.ceil(math.log2(max(h, w))))
    plasma = _plasma_fractal(n, mapsize, c[1], x, generator)[:, None, :h, :w]
    top = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x + c[0] * plasma) * top / (top + c[0])


# ----------------------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------------------
def _check_images(x: Any, name: str = "x") -> Tensor:
    check_tensor(x, name, ndim=4, floating=True, finite=True)
    if data_checks_enabled():
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"`{name}` must hold images in [0, 1] (before normalisation); got values in [{lo:.4g}, {hi:.4g}]"
            )
    return x


def _check_severity(severity: Any) -> int:
    if isinstance(severity, bool) or not isinstance(severity, int) or severity not in SEVERITIES:
        raise ValueError(f"`severity` must be an int in 1..5; got {severity!r}")
    return severity


def corrupt(
    x: Tensor,
    name: str,
    severity: int,
    generator: torch.Generator | None = None,
    *,
    preset: str = DEFAULT_PRESET,
) -> Tensor:
    """Apply a named common corruption at a severity (Hendrycks & Dietterich, ICLR 2019).

    Args:
        x: (N, C, H, W) float images in [0, 1] (before any mean/std normalisation). Not modified.
        name: a registered corruption (``CORRUPTIONS.names()``): gaussian_noise, shot_noise, impulse_noise,
            speckle_noise, gaussian_blur, defocus_blur, contrast, brightness, saturate (C = 3 only),
            pixelate, fog.
        severity: 1 (mild) … 5 (severe).
        generator: torch.Generator for the random corruptions (noise, fog); results are reproducible for a
            fixed generator state. None = the global RNG. Draws are made on the generator's device.
        preset: ``"cifar"`` (CIFAR-10-C constants, default) or ``"imagenet"`` (ImageNet-C constants).

    Returns:
        Corrupted images, same shape, dtype and device, clipped to [0, 1].

    Raises:
        ValueError: unknown name (the message lists the valid ones), severity outside 1..5, unknown preset,
            images not 4-D, not in [0, 1] or non-finite, a channel count the corruption does not support, or
            images too small for a blur kernel.
        TypeError: non-tensor or integer images.

    Example:
        >>> x = torch.full((1, 3, 8, 8), 0.5)
        >>> y = corrupt(x, "contrast", 3)  # a flat image is unchanged by a contrast change
        >>> bool(torch.equal(x, y))
        True
    """
    corruption = CORRUPTIONS.get(name)
    _check_severity(severity)
    if preset not in CORRUPTION_PRESETS:
        raise ValueError(f"`preset` must be one of {', '.join(map(repr, CORRUPTION_PRESETS))}; got {preset!r}")
    _check_images(x)
    if corruption.channels is not None and x.shape[1] != corruption.channels:
        raise ValueError(
            f"`x`: {corruption.name} needs {corruption.channels} channels (RGB); got {x.shape[1]} channels"
        )
    work = x.detach() if x.dtype in (torch.float32, torch.float64) else x.detach().float()
    out = corruption.fn(work, corruption.constants[preset][severity - 1], generator)
    return out.clamp(0.0, 1.0).to(x.dtype)


@dataclass(frozen=True)
class CorruptionAccuracy:
    """Result of :func:`corruption_accuracy` (accuracies are fractions in [0, 1]).

    Attributes:
        table: name → severity → accuracy.
        clean: accuracy on the uncorrupted inputs.
        mean: mean over every (name, severity) cell — the mean corruption accuracy.
    """

    table: dict[str, dict[int, float]]
    clean: float
    mean: float

    def per_corruption(self) -> dict[str, float]:
        """name → accuracy averaged over its severities."""
        return {k: sum(v.values()) / len(v) for k, v in self.table.items()}


def _normalizer(normalize: Any) -> Callable[[Tensor], Tensor]:
    if normalize is None:
        return lambda t: t
    if callable(normalize):
        return normalize
    if isinstance(normalize, tuple | list) and len(normalize) == 2:
        mean = torch.as_tensor(normalize[0], dtype=torch.float64).reshape(1, -1, 1, 1)
        std = torch.as_tensor(normalize[1], dtype=torch.float64).reshape(1, -1, 1, 1)
        if bool((std <= 0).any()):
            raise ValueError(f"`normalize` std must be positive; got {normalize[1]!r}")
        return lambda t: (t - mean.to(t)) / std.to(t)
    raise TypeError(f"`normalize` must be None, a callable or a (mean, std) pair; got {type(normalize).__name__}")


def corruption_accuracy(
    model: nn.Module | Callable[[Tensor], Any],
    inputs: Tensor,
    labels: Tensor,
    names: Iterable[str] | None = None,
    severities: Iterable[int] = SEVERITIES,
    *,
    normalize: Any = None,
    preset: str = DEFAULT_PRESET,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
) -> CorruptionAccuracy:
    """Accuracy under each corruption and severity, and the mean corruption accuracy (Hendrycks &
    Dietterich, ICLR 2019; the robustness comparison of the NTCE/NONL paper, docs/methods.md §4.6).

    Each (name, severity) uses its own generator seeded from (``seed``, name, severity), so a cell does not
    depend on which other cells are evaluated; with a fixed ``batch_size`` the table is reproducible. The
    model runs in eval mode under ``no_grad``; its mode and ``requires_grad`` flags are restored.

    Args:
        model: maps normalised (B, C, H, W) inputs to (B, K) logits (tensor, ``HeadOutput`` or mapping).
        inputs: (N, C, H, W) images in [0, 1].
        labels: (N,) true classes.
        names: corruptions to evaluate; None = every registered one (``saturate`` only for C = 3).
        severities: subset of 1..5.
        normalize: applied after corrupting: None, a callable, or (mean, std) per channel.
        preset: ``"cifar"`` or ``"imagenet"`` constants.
        batch_size: images per batch.
        seed: base seed of the random corruptions.

    Returns:
        :class:`CorruptionAccuracy` (table, clean accuracy, mean).

    Raises:
        ValueError: bad images/labels/names/severities/preset/batch size.

    Example:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
        >>> x, y = torch.rand(8, 3, 2, 2), torch.randint(0, 2, (8,))
        >>> res = corruption_accuracy(model, x, y, names=["contrast"], severities=[1, 5])
        >>> sorted(res.table["contrast"])
        [1, 5]
    """
    _check_images(inputs, "inputs")
    check_tensor(labels, "labels", ndim=1, integer=True)
    check_labels(labels, "labels", length=inputs.shape[0])
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int; got {batch_size!r}")
    if preset not in CORRUPTION_PRESETS:
        raise ValueError(f"`preset` must be one of {', '.join(map(repr, CORRUPTION_PRESETS))}; got {preset!r}")
    if names is None:
        chosen = [n for n in CORRUPTIONS.names() if CORRUPTIONS.get(n).channels in (None, inputs.shape[1])]
    else:
        chosen = [CORRUPTIONS.resolve(n) for n in names]
        if not chosen:
            raise ValueError("`names` must name at least one corruption")
    sevs = [_check_severity(s) for s in severities]
    if not sevs:
        raise ValueError("`severities` must hold at least one severity in 1..5")
    norm = _normalizer(normalize)
    device = model_device(model) or inputs.device

    def accuracy(transform: Callable[[Tensor, int], Tensor]) -> float:
        correct = 0
        for start in range(0, inputs.shape[0], batch_size):
            xb = transform(inputs[start : start + batch_size], start)
            logits = logits_of(model(norm(xb.to(device))))
            yb = labels[start : start + batch_size].to(logits.device)
            correct += int((logits.argmax(dim=1) == yb).sum())
        return correct / inputs.shape[0]

    table: dict[str, dict[int, float]] = {}
    with eval_frozen(model), torch.no_grad():
        clean = accuracy(lambda xb, _s: xb)
        for name in chosen:
            table[name] = {}
            for sev in sevs:
                gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + zlib.crc32(name.encode()) * 7 + sev)
                table[name][sev] = accuracy(
                    lambda xb, _s, name=name, sev=sev, gen=gen: corrupt(xb, name, sev, gen, preset=preset)
                )
    cells = [a for row in table.values() for a in row.values()]
    return CorruptionAccuracy(table=table, clean=clean, mean=sum(cells) / len(cells))

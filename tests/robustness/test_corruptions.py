"""Common corruptions (Hendrycks & Dietterich 2019) against independent references: Pillow's BOX resize,
SciPy's Gaussian filter, ``colorsys`` HSV round trips, and loop implementations of the disk blur."""

from __future__ import annotations

import colorsys
import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from neuralcollapse.robustness import CORRUPTIONS, corrupt, corruption_accuracy
from neuralcollapse.robustness.corruptions import _plasma_fractal

ALL = CORRUPTIONS.names()
RANDOM = [n for n in ALL if CORRUPTIONS.get(n).random]


@pytest.fixture
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 16, 16, generator=g, dtype=torch.float64)
    # smooth a little so that blurs and pixelation have structure to act on
    return nn.functional.avg_pool2d(nn.functional.pad(x, (1, 1, 1, 1), mode="reflect"), 3, 1)


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_registry_lists_the_implemented_families():
    assert set(ALL) == {
        "gaussian_noise",
        "shot_noise",
        "impulse_noise",
        "speckle_noise",
        "gaussian_blur",
        "defocus_blur",
        "contrast",
        "brightness",
        "saturate",
        "pixelate",
        "fog",
    }


@pytest.mark.parametrize("preset", ["cifar", "imagenet"])
@pytest.mark.parametrize("name", ALL)
def test_shape_range_dtype_and_input_unchanged(images, name, preset):
    x = images.float()
    x0 = x.clone()
    for severity in range(1, 6):
        y = corrupt(x, name, severity, _seeded(), preset=preset)
        assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
        assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert torch.equal(x, x0)


@pytest.mark.parametrize("preset", ["cifar", "imagenet"])
@pytest.mark.parametrize("name", ALL)
def test_severity_is_monotone_in_distance(images, name, preset):
    if name == "saturate" and preset == "cifar":
        pytest.skip("CIFAR-10-C's saturate constants are not ordered: (0.3, 0), (0.1, 0), (1.5, 0), ...")
    dist = [float((corrupt(images, name, s, _seeded(1), preset=preset) - images).norm()) for s in range(1, 6)]
    assert all(a <= b + 1e-12 for a, b in itertools.pairwise(dist)), dist
    assert dist[0] > 0


@pytest.mark.parametrize("name", ALL)
def test_deterministic_with_a_seeded_generator(images, name):
    a = corrupt(images, name, 3, _seeded(7))
    b = corrupt(images, name, 3, _seeded(7))
    assert torch.equal(a, b)
    if name in RANDOM:
        assert not torch.equal(a, corrupt(images, name, 3, _seeded(8)))


def test_noise_statistics():
    x = torch.full((1, 3, 64, 64), 0.5, dtype=torch.float64)
    n = x.numel()
    # Gaussian noise c = 0.08 (CIFAR severity 3) does not reach the clip at 0.5 ± 6σ: std of the change = c
    d = corrupt(x, "gaussian_noise", 3, _seeded()) - x
    assert float(d.std()) == pytest.approx(0.08, rel=0.05) and abs(float(d.mean())) < 0.005
    # speckle: x + x·c·N → std x·c = 0.5·0.12
    d = corrupt(x, "speckle_noise", 3, _seeded()) - x
    assert float(d.std()) == pytest.approx(0.06, rel=0.05)
    # shot noise c = 100: Poisson(50)/100 has mean 0.5 and variance 0.5/100
    y = corrupt(x, "shot_noise", 3, _seeded())
    assert float(y.mean()) == pytest.approx(0.5, abs=0.005) and float(y.var()) == pytest.approx(0.005, rel=0.06)
    # impulse c = 0.07 (severity 5): a fraction c of the elements is set to 0 or 1, half each
    y = corrupt(x, "impulse_noise", 5, _seeded())
    changed = (y != x).sum().item() / n
    assert changed == pytest.approx(0.07, abs=4 * math.sqrt(0.07 * 0.93 / n))
    assert (y == 1).sum().item() == pytest.approx((y == 0).sum().item(), rel=0.15)


def test_gaussian_blur_matches_scipy(images):
    from scipy.ndimage import gaussian_filter

    for severity, sigma in enumerate((0.4, 0.6, 0.7, 0.8, 1.0), start=1):
        y = corrupt(images, "gaussian_blur", severity)
        ref = np.stack(
            [[gaussian_filter(c, sigma, mode="nearest", truncate=4.0) for c in img] for img in images.numpy()]
        )
        np.testing.assert_allclose(y.numpy(), np.clip(ref, 0, 1), atol=1e-12)


def _disk_reference(radius: float, alias_blur: float) -> np.ndarray:
    """Hendrycks' ``disk`` with OpenCV's GaussianBlur written out: 1-D Gaussian taps exp(−t²/2σ²),
    BORDER_REFLECT_101 (NumPy's "reflect" padding)."""
    half, ksize = (8, 3) if radius <= 8 else (int(radius), 5)
    t = np.arange(-half, half + 1)
    disk = ((t[:, None] ** 2 + t[None, :] ** 2) <= radius**2).astype(np.float64)
    disk /= disk.sum()
    r = ksize // 2
    g = np.exp(-0.5 * (np.arange(-r, r + 1) / alias_blur) ** 2)
    g /= g.sum()
    padded = np.pad(disk, r, mode="reflect")
    out = np.zeros_like(disk)
    for i in range(disk.shape[0]):
        for j in range(disk.shape[1]):
            out[i, j] = (padded[i : i + ksize, j : j + ksize] * np.outer(g, g)).sum()
    return out


def _filter2d_reflect101(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    r = kernel.shape[0] // 2
    padded = np.pad(img, r, mode="reflect")
    out = np.zeros_like(img)
    for i in range(img.shape[0]):
        for j in range(img.shape[1]):
            out[i, j] = (padded[i : i + 2 * r + 1, j : j + 2 * r + 1] * kernel).sum()
    return out


@pytest.mark.parametrize(("preset", "severity"), [("cifar", 1), ("cifar", 5), ("imagenet", 1)])
def test_defocus_blur_matches_loop_reference(preset, severity):
    x = torch.rand(1, 2, 24, 24, generator=_seeded(3), dtype=torch.float64)
    radius, alias = CORRUPTIONS.get("defocus_blur").constants[preset][severity - 1]
    kernel = _disk_reference(radius, alias)
    ref = np.stack([_filter2d_reflect101(c, kernel) for c in x[0].numpy()])
    y = corrupt(x, "defocus_blur", severity, preset=preset)
    np.testing.assert_allclose(y[0].numpy(), np.clip(ref, 0, 1), atol=1e-12)


def test_pixelate_matches_pillow():
    pil = pytest.importorskip("PIL.Image")
    x = torch.rand(1, 2, 20, 28, generator=_seeded(4), dtype=torch.float64)
    for preset in ("cifar", "imagenet"):
        for severity in (1, 3, 5):
            c = CORRUPTIONS.get("pixelate").constants[preset][severity - 1]
            y = corrupt(x, "pixelate", severity, preset=preset)
            for ch in range(2):
                im = pil.fromarray(x[0, ch].numpy().astype(np.float32), mode="F")
                small = im.resize((int(28 * c), int(20 * c)), pil.BOX)
                ref = np.asarray(small.resize((28, 20), pil.BOX))
                np.testing.assert_allclose(y[0, ch].numpy(), ref, atol=1e-6)  # Pillow works in float32


def _hsv_reference(x: torch.Tensor, change) -> np.ndarray:
    out = np.zeros(tuple(x.shape))
    for i in range(x.shape[1]):
        for j in range(x.shape[2]):
            h, s, v = colorsys.rgb_to_hsv(*x[:, i, j].tolist())
            h, s, v = change(h, s, v)
            out[:, i, j] = colorsys.hsv_to_rgb(h, s, v)
    return out


@pytest.mark.parametrize("preset", ["cifar", "imagenet"])
def test_brightness_and_saturate_match_hsv_round_trip(preset):
    x = torch.rand(1, 3, 6, 6, generator=_seeded(5), dtype=torch.float64)
    x[0, :, 0, 0] = 0.0  # black: V = 0
    x[0, :, 0, 1] = 0.4  # grey: S = 0, hue 0
    x[0, :, 0, 2] = 1.0  # white
    for severity in range(1, 6):
        c = CORRUPTIONS.get("brightness").constants[preset][severity - 1]
        ref = _hsv_reference(x[0], lambda h, s, v, c=c: (h, s, min(max(v + c, 0.0), 1.0)))
        np.testing.assert_allclose(corrupt(x, "brightness", severity, preset=preset)[0].numpy(), ref, atol=1e-12)
        a, b = CORRUPTIONS.get("saturate").constants[preset][severity - 1]
        ref = _hsv_reference(x[0], lambda h, s, v, a=a, b=b: (h, min(max(s * a + b, 0.0), 1.0), v))
        np.testing.assert_allclose(corrupt(x, "saturate", severity, preset=preset)[0].numpy(), ref, atol=1e-12)


def test_contrast_closed_form_and_grey_brightness(images):
    y = corrupt(images, "contrast", 2)  # c = 0.5 around the per-image, per-channel mean
    m = images.mean(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(y, ((images - m) * 0.5 + m).clamp(0, 1))
    grey = images[:, :1]
    torch.testing.assert_close(corrupt(grey, "brightness", 4), (grey + 0.2).clamp(0, 1))


def test_fog_plasma_and_formula():
    maps = _plasma_fractal(2, 16, 2.0, torch.zeros(1, dtype=torch.float64), _seeded())
    assert maps.shape == (2, 16, 16)
    assert torch.allclose(maps.amin(dim=(1, 2)), torch.zeros(2, dtype=torch.float64))
    assert torch.allclose(maps.amax(dim=(1, 2)), torch.ones(2, dtype=torch.float64))
    x = torch.full((2, 3, 12, 12), 0.6, dtype=torch.float64)
    y = corrupt(x, "fog", 1, _seeded())  # c = (0.2, 3): (x + 0.2 P)·0.6/0.8 on a 16×16 map cropped to 12×12
    plasma = _plasma_fractal(2, 16, 3.0, x, _seeded())[:, None, :12, :12]
    torch.testing.assert_close(y, ((x + 0.2 * plasma) * 0.6 / 0.8).clamp(0, 1))
    assert torch.equal(corrupt(torch.zeros(1, 3, 8, 8), "fog", 5, _seeded()), torch.zeros(1, 3, 8, 8))


def test_bad_input(images):
    with pytest.raises(ValueError, match="unknown corruption 'gaussian'.*valid names: brightness"):
        corrupt(images, "gaussian", 1)
    with pytest.raises(ValueError, match="unknown corruption 'jpeg_compression'"):
        corrupt(images, "jpeg_compression", 1)
    for severity in (0, 6, 2.0, True):
        with pytest.raises(ValueError, match=r"`severity` must be an int in 1\.\.5"):
            corrupt(images, "contrast", severity)
    with pytest.raises(ValueError, match="`preset` must be one of"):
        corrupt(images, "contrast", 1, preset="tiny")
    with pytest.raises(ValueError, match=r"`x` must hold images in \[0, 1\]"):
        corrupt(images * 2 - 0.5, "contrast", 1)
    with pytest.raises(ValueError, match="`x` must be 4-D"):
        corrupt(images[0], "contrast", 1)
    with pytest.raises(ValueError, match="saturate needs 3 channels"):
        corrupt(images[:, :1], "saturate", 1)
    with pytest.raises(ValueError, match="too small"):
        corrupt(torch.rand(1, 1, 8, 8), "defocus_blur", 5, preset="imagenet")
    with pytest.raises(TypeError, match="`x` must be a floating-point tensor"):
        corrupt(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), "contrast", 1)
    nan = images.clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="`x` contains 1 NaN"):
        corrupt(nan, "contrast", 1)


# ----------------------------------------------------------------------------------------------------------
# corruption accuracy
# ----------------------------------------------------------------------------------------------------------
class _MeanBrightness(nn.Module):
    """Class 1 when the mean input is above a threshold: contrast changes keep the mean, brightness not."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(50.0))
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([-self.scale * (m - 0.5), self.scale * (m - 0.5)], dim=1)


def test_corruption_accuracy_table(images):
    model = _MeanBrightness()
    labels = (images.mean(dim=(1, 2, 3)) > 0.5).long()
    res = corruption_accuracy(model, images, labels, names=["contrast", "gaussian_noise"], severities=[1, 5])
    assert res.clean == 1.0
    assert set(res.table) == {"contrast", "gaussian_noise"} and set(res.table["contrast"]) == {1, 5}
    assert res.table["contrast"][1] == 1.0  # contrast keeps each channel's mean: the prediction is unchanged
    cells = [v for row in res.table.values() for v in row.values()]
    assert res.mean == pytest.approx(sum(cells) / 4)
    assert res.per_corruption()["contrast"] == pytest.approx(sum(res.table["contrast"].values()) / 2)
    # every cell is reproducible and does not depend on the other cells evaluated
    alone = corruption_accuracy(model, images, labels, names=["gaussian_noise"], severities=[5])
    assert alone.table["gaussian_noise"][5] == res.table["gaussian_noise"][5]


def test_corruption_accuracy_brightness_flips_dark_images():
    dark = torch.full((4, 3, 8, 8), 0.45, dtype=torch.float64)
    res = corruption_accuracy(_MeanBrightness(), dark, torch.zeros(4, dtype=torch.long), names=["brightness"])
    assert res.clean == 1.0
    assert res.table["brightness"] == {1: 1.0, 2: 0.0, 3: 0.0, 4: 0.0, 5: 0.0}  # 0.45 + 0.05 is not > 0.5


def test_corruption_accuracy_normalises_after_corrupting(images):
    model = _MeanBrightness()
    labels = torch.zeros(3, dtype=torch.long)
    corruption_accuracy(model, images, labels, names=["contrast"], severities=[1], normalize=([0.5] * 3, [0.25] * 3))
    expected = (corrupt(images, "contrast", 1) - 0.5) / 0.25
    torch.testing.assert_close(model.seen[-1], expected)
    corruption_accuracy(model, images, labels, names=["contrast"], severities=[1], normalize=lambda t: t * 2)
    torch.testing.assert_close(model.seen[-1], corrupt(images, "contrast", 1) * 2)


def test_corruption_accuracy_restores_model_state(images):
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4), nn.Dropout(0.5), nn.Linear(4, 2))
    model.train()
    model[3].weight.requires_grad_(False)
    res = corruption_accuracy(model, images.float(), torch.zeros(3, dtype=torch.long), names=["pixelate"])
    assert model.training and model[2].training
    assert model[1].weight.requires_grad and not model[3].weight.requires_grad
    assert model[1].weight.grad is None
    # eval mode inside: dropout is off, so repeated evaluations agree
    again = corruption_accuracy(model, images.float(), torch.zeros(3, dtype=torch.long), names=["pixelate"])
    assert res == again
    grey = nn.Sequential(nn.Flatten(), nn.Linear(16 * 16, 2))
    names = corruption_accuracy(grey, images[:, :1].float(), torch.zeros(3, dtype=torch.long), severities=[1])
    assert "saturate" not in names.table and "contrast" in names.table  # RGB-only corruption left out


def test_corruption_accuracy_bad_input(images):
    model = _MeanBrightness()
    y = torch.zeros(3, dtype=torch.long)
    with pytest.raises(ValueError, match="`labels` must have length 3"):
        corruption_accuracy(model, images, y[:2])
    with pytest.raises(ValueError, match="unknown corruption"):
        corruption_accuracy(model, images, y, names=["frost"])
    with pytest.raises(ValueError, match="`names` must name at least one"):
        corruption_accuracy(model, images, y, names=[])
    with pytest.raises(ValueError, match="`severities` must hold at least one"):
        corruption_accuracy(model, images, y, severities=[])
    with pytest.raises(ValueError, match="`severity` must be an int"):
        corruption_accuracy(model, images, y, severities=[0])
    with pytest.raises(ValueError, match="`batch_size`"):
        corruption_accuracy(model, images, y, batch_size=0)
    with pytest.raises(TypeError, match="`normalize` must be None"):
        corruption_accuracy(model, images, y, normalize=0.5)
    with pytest.raises(ValueError, match="`normalize` std must be positive"):
        corruption_accuracy(model, images, y, normalize=([0.5] * 3, [0.0] * 3))
    with pytest.raises(ValueError, match=r"`inputs` must hold images in \[0, 1\]"):
        corruption_accuracy(model, images + 1, y)

"""Batched augmentation: crop/flip/resized-crop/mixup against per-sample references."""

from __future__ import annotations

import math
import random

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from neuralcollapse.data import BatchAugment, mixup, normalize, to_float


def _images(n=6, c=3, h=8, w=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, h, w), generator=g, dtype=torch.uint8)


def _loop_crop(x: torch.Tensor, offsets: torch.Tensor, p: int, mode: str) -> torch.Tensor:
    out = []
    for i in range(len(x)):
        padded = F.pad(x[i : i + 1], (p, p, p, p), mode=mode)[0]
        r, c = offsets[i].tolist()
        out.append(padded[:, r : r + x.shape[2], c : c + x.shape[3]])
    return torch.stack(out)


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(1, 5),
    c=st.integers(1, 3),
    h=st.integers(5, 9),
    w=st.integers(5, 9),
    p=st.integers(1, 4),
    mode=st.sampled_from(["reflect", "constant", "replicate"]),
    seed=st.integers(0, 100),
)
def test_pad_crop_is_a_shifted_window_of_the_padded_image(n, c, h, w, p, mode, seed):
    x = to_float(_images(n, c, h, w, seed))
    aug = BatchAugment(crop_padding=p, pad_mode=mode, flip=False, seed=seed)
    offsets = torch.randint(0, 2 * p + 1, (n, 2), generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(aug.pad_crop(x, offsets), _loop_crop(x, offsets, p, mode), rtol=0, atol=0)


def test_random_crop_offsets_cover_the_torchvision_range():
    x = to_float(_images(400, 1, 8, 8))
    aug = BatchAugment(crop_padding=2, pad_mode="constant", flip=False, seed=0)
    out = aug.augment(x)
    # Recover each sample's offset by matching against all 25 windows.
    windows = torch.stack(
        [_loop_crop(x, torch.tensor([[r, c]] * 400), 2, "constant") for r in range(5) for c in range(5)]
    )
    match = (windows == out[None]).flatten(2).all(dim=2)  # (25, N)
    assert bool(match.any(dim=0).all())
    hits = match.float().argmax(dim=0)
    assert set(hits.tolist()) == set(range(25))  # uniform over [0, 2p]²: every offset occurs


@pytest.mark.parametrize("rrc", [None, (0.3, 1.0)])
def test_fused_pipeline_equals_the_steps_one_by_one(rrc):
    x = _images(12, 3, 10, 10)
    cfg = dict(crop_padding=3, pad_mode="reflect", flip=True, random_resized_crop=rrc)
    fused = BatchAugment(**cfg, seed=11).augment(x)
    steps = BatchAugment(**cfg, seed=11)  # same stream: offsets, then boxes, then flips
    offsets = steps._draw_offsets(12)
    boxes = steps._rrc_boxes(12, 10, 10) if rrc else None
    mask = steps._draw_flips(12)
    ref = _loop_crop(to_float(x), offsets, 3, "reflect")
    if boxes is not None:
        ref = steps.resized_crop(ref, boxes)
    ref = torch.stack([img.flip(-1) if m else img for img, m in zip(ref, mask.tolist())])
    torch.testing.assert_close(fused, ref, atol=1e-6, rtol=0)
    assert 0 < int(mask.sum()) < 12


def test_constant_padding_fills_zeros():
    x = torch.ones(1, 1, 4, 4)
    aug = BatchAugment(crop_padding=2, pad_mode="constant", flip=False)
    out = aug.pad_crop(x, torch.tensor([[0, 0]]))
    assert out[0, 0, :2].sum() == 0 and out[0, 0, :, :2].sum() == 0 and out[0, 0, 2:, 2:].eq(1).all()


def test_flip_exactness_and_rate():
    x = to_float(_images(8))
    aug = BatchAugment(crop_padding=0, flip=True, seed=1)
    mask = torch.tensor([True, False] * 4)
    out = aug.random_flip(x, mask)
    assert torch.equal(out[mask], x[mask].flip(-1)) and torch.equal(out[~mask], x[~mask])
    big = to_float(_images(2000, 1, 3, 4))
    res = aug.augment(big)
    flipped = (res == big.flip(-1)).flatten(1).all(1)
    same = (res == big).flatten(1).all(1)
    assert bool((flipped | same).all())
    assert 0.45 < flipped.float().mean().item() < 0.55


def test_identity_configuration_and_normalisation():
    x = _images()
    x0 = x.clone()
    plain = BatchAugment(crop_padding=0, flip=False, seed=0)
    torch.testing.assert_close(plain(x), to_float(x))
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    norm = BatchAugment(crop_padding=0, flip=False, mean=mean, std=std, seed=0)
    expected = (to_float(x) - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    torch.testing.assert_close(norm(x), expected)
    torch.testing.assert_close(norm.test_transform(x), expected)
    torch.testing.assert_close(normalize(x, mean, std), expected)
    assert torch.equal(x, x0)


def test_determinism_with_seed_and_generator():
    x = _images(16, 3, 10, 10)
    cfg = dict(crop_padding=3, pad_mode="reflect", flip=True, random_resized_crop=(0.3, 1.0))
    a, b = BatchAugment(**cfg, seed=7), BatchAugment(**cfg, seed=7)
    torch.testing.assert_close(a(x), b(x))
    torch.testing.assert_close(a(x), b(x))  # streams stay in step
    assert not torch.equal(BatchAugment(**cfg, seed=8)(x), BatchAugment(**cfg, seed=7)(x))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    torch.testing.assert_close(BatchAugment(**cfg, generator=g1)(x), BatchAugment(**cfg, generator=g2)(x))


def test_resized_crop_identity_box_is_exact():
    x = to_float(_images(3, 2, 7, 9))
    aug = BatchAugment(crop_padding=0, flip=False)
    boxes = torch.tensor([[0.0, 0.0, 7.0, 9.0]] * 3, dtype=torch.float64)
    torch.testing.assert_close(aug.resized_crop(x, boxes), x, atol=1e-6, rtol=0)


def test_resized_crop_matches_interpolate_of_the_box():
    x = to_float(_images(2, 3, 12, 12))
    aug = BatchAugment(crop_padding=0, flip=False)
    top, left, h, w = 2, 3, 6, 6
    boxes = torch.tensor([[top, left, h, w]] * 2, dtype=torch.float64)
    out = aug.resized_crop(x, boxes)
    ref = F.interpolate(
        x[:, :, top : top + h, left : left + w], size=(12, 12), mode="bilinear", align_corners=False
    )
    # Border rows/cols differ only by the interpolate's edge clamping (grid_sample sees the next pixel).
    torch.testing.assert_close(out[:, :, 1:-1, 1:-1], ref[:, :, 1:-1, 1:-1], atol=1e-5, rtol=0)


def test_random_resized_crop_boxes_follow_torchvision_rule():
    aug = BatchAugment(crop_padding=0, flip=False, random_resized_crop=(0.2, 1.0), seed=0)
    boxes = aug._rrc_boxes(2000, 32, 32)
    top, left, h, w = boxes.unbind(1)
    assert bool((top >= 0).all() and (left >= 0).all())
    assert bool((top + h <= 32 + 1e-9).all() and (left + w <= 32 + 1e-9).all())
    area = h * w / (32 * 32)
    fallback = (h == 32) & (w == 32)
    assert bool(((area >= 0.2 - 1e-9) & (area <= 1 + 1e-9)).all())
    ratio = (w / h)[~fallback]
    assert bool(((ratio >= 3 / 4 - 1e-9) & (ratio <= 4 / 3 + 1e-9)).all())
    # torchvision's per-sample rule (10 attempts, else the centre crop) as a loop: same area distribution.
    rnd = random.Random(0)
    ref = []
    for _ in range(4000):
        for _ in range(10):
            a = 32 * 32 * rnd.uniform(0.2, 1.0)
            r = math.exp(rnd.uniform(math.log(3 / 4), math.log(4 / 3)))
            bw, bh = math.sqrt(a * r), math.sqrt(a / r)
            if bw <= 32 and bh <= 32:
                ref.append(bw * bh / 1024)
                break
        else:
            ref.append(1.0)
    assert area.mean().item() == pytest.approx(sum(ref) / len(ref), abs=0.015)
    out = aug.augment(_images(4, 3, 32, 32))
    assert out.shape == (4, 3, 32, 32) and out.dtype == torch.float32


def test_mixup_is_a_convex_combination():
    x = to_float(_images(10, 1, 4, 4))
    y = torch.arange(10)
    g = torch.Generator().manual_seed(0)
    xm, ya, yb, lam = mixup(x, y, 1.0, generator=g)
    assert 0 <= lam <= 1 and torch.equal(ya, y)
    torch.testing.assert_close(xm, lam * x + (1 - lam) * x[yb])  # labels = indices, so y_b is the permutation
    assert sorted(yb.tolist()) == list(range(10))
    lams = [mixup(x, y, 1.0, generator=g)[3] for _ in range(400)]
    assert sum(lams) / len(lams) == pytest.approx(0.5, abs=0.05)  # Beta(1, 1) mean
    small = [mixup(x, y, 0.1, generator=g)[3] for _ in range(200)]
    assert sum(min(v, 1 - v) < 0.1 for v in small) > 100  # Beta(0.1, 0.1) piles up near 0 and 1


def test_batch_augment_call_with_labels():
    x, y = _images(8), torch.arange(8)
    aug = BatchAugment(crop_padding=2, mixup_alpha=1.0, seed=0, mean=(0.5,) * 3, std=(0.5,) * 3)
    xm, ya, yb, lam = aug(x, y)
    assert xm.shape == (8, 3, 8, 8) and torch.equal(ya, y) and 0 <= lam <= 1
    ref = BatchAugment(crop_padding=2, mixup_alpha=1.0, seed=0)
    xr, _, ybr, lamr = ref(x, y)
    assert lam == lamr and torch.equal(yb, ybr)
    torch.testing.assert_close(xm, (xr - 0.5) / 0.5)
    no_mix = BatchAugment(crop_padding=0, flip=False)
    xo, ya, yb, lam = no_mix(x, y)
    assert lam == 1.0 and torch.equal(ya, y) and torch.equal(yb, y) and torch.equal(xo, to_float(x))


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"crop_padding": -1}, ValueError, "`crop_padding`"),
        ({"pad_mode": "circular"}, ValueError, "`pad_mode` must be one of"),
        ({"random_resized_crop": (0.5, 0.2)}, ValueError, "`random_resized_crop`"),
        ({"random_resized_crop": (0.0, 1.0)}, ValueError, "`random_resized_crop`"),
        ({"mixup_alpha": -1.0}, ValueError, "`mixup_alpha` must be >= 0"),
        ({"mean": (0.5,)}, ValueError, "`mean` and `std` must be given together"),
    ],
)
def test_bad_configuration(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        BatchAugment(**kwargs)


def test_bad_inputs():
    with pytest.raises(ValueError, match="`x` must be 4-D"):
        BatchAugment()(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="needs images larger than 4 px"):
        BatchAugment(crop_padding=4)(torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="`alpha` must be > 0"):
        mixup(torch.zeros(2, 1, 2, 2), torch.arange(2), 0.0)
    with pytest.raises(ValueError, match="same length"):
        mixup(torch.zeros(2, 1, 2, 2), torch.arange(3), 1.0)
    with pytest.raises(ValueError, match="one value per channel"):
        normalize(torch.zeros(1, 3, 2, 2), (0.5,), (0.5,))
    with pytest.raises(ValueError, match="`std` must be positive"):
        normalize(torch.zeros(1, 1, 2, 2), (0.5,), (0.0,))


@pytest.mark.cuda
def test_cuda_matches_cpu_for_the_same_seed():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    x = _images(16, 3, 32, 32)
    cfg = dict(crop_padding=4, random_resized_crop=(0.2, 1.0), mixup_alpha=1.0)
    cpu = BatchAugment(**cfg, seed=0)(x, torch.arange(16))
    gpu = BatchAugment(**cfg, seed=0)(x.cuda(), torch.arange(16).cuda())
    assert gpu[0].device.type == "cuda"
    torch.testing.assert_close(gpu[0].cpu(), cpu[0], atol=1e-5, rtol=0)
    assert torch.equal(gpu[2].cpu(), cpu[2]) and gpu[3] == cpu[3]

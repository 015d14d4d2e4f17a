"""Stratified, long-tail, open-set splits and OOD pairs."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

import neuralcollapse.data as ncd
from neuralcollapse.data import long_tail_counts, long_tail_indices, match_images, stratified_split


@pytest.fixture(scope="module")
def digits():
    return ncd.create("digits")


# ---------------------------------------------------------------------------------------------- long tail
def test_long_tail_counts_published_cifar_lt_sizes():
    # CIFAR-10-LT / CIFAR-100-LT with imbalance factor 100 (LDAM-DRW): 12,406 and 10,847 training images.
    cifar10 = long_tail_counts(5000, 10, 0.01)
    assert cifar10 == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50] and sum(cifar10) == 12406
    assert sum(long_tail_counts(500, 100, 0.01)) == 10847
    assert sum(long_tail_counts(5000, 10, 0.02)) == 13996  # imbalance factor 50
    assert long_tail_counts(500, 100, 0.005)[-1] == 2


@given(
    n_max=st.integers(1, 5000),
    k=st.integers(2, 120),
    rho=st.floats(0.001, 1.0, allow_nan=False),
)
def test_long_tail_counts_formula(n_max, k, rho):
    counts = long_tail_counts(n_max, k, rho)
    assert counts == [math.floor(n_max * rho ** (c / (k - 1))) for c in range(k)]
    assert counts[0] == n_max and all(a >= b for a, b in itertools.pairwise(counts))


def _ldam_reference(targets: np.ndarray, rho: float, seed: int) -> np.ndarray:
    """LDAM-DRW IMBALANCECIFAR10: np.random.seed, per-class np.random.shuffle, first n_c kept."""
    np.random.seed(seed)  # noqa: NPY002 - the reference uses the global RNG
    cls_num = int(targets.max()) + 1
    img_max = len(targets) / cls_num
    nums = [int(img_max * (rho ** (c / (cls_num - 1.0)))) for c in range(cls_num)]
    picked = []
    for c, n in zip(np.unique(targets), nums):
        idx = np.where(targets == c)[0]
        np.random.shuffle(idx)  # noqa: NPY002
        picked.append(idx[:n])
    return np.concatenate(picked)


@pytest.mark.parametrize(("rho", "seed"), [(0.01, 0), (0.1, 3)])
def test_long_tail_indices_reproduce_ldam_subsets(rho, seed):
    rng = np.random.default_rng(1)
    targets = rng.permutation(np.repeat(np.arange(10), 300))
    state = np.random.get_state()  # noqa: NPY002 - restored below
    try:
        ref = _ldam_reference(targets, rho, seed)
    finally:
        np.random.set_state(state)  # noqa: NPY002
    got = long_tail_indices(torch.from_numpy(targets), rho, seed=seed)
    assert np.array_equal(got.numpy(), ref)
    assert np.bincount(targets[got.numpy()]).tolist() == long_tail_counts(300, 10, rho)


def test_long_tail_with_short_classes_and_explicit_n_max():
    y = torch.tensor([0] * 10 + [1] * 2 + [2] * 10)
    idx = long_tail_indices(y, 0.5, n_max=8, num_classes=4)
    # n_c = 8·0.5^{c/3} → 8, 6, 5, 4; class 1 keeps the 2 it has, class 3 has none.
    assert torch.bincount(y[idx], minlength=4).tolist() == [8, 2, 5, 0]


@pytest.mark.parametrize(
    ("ratio", "exc", "match"),
    [
        (100, ValueError, "imbalance factor of 100 is imbalance_ratio=0.01"),
        (0.0, ValueError, r"`imbalance_ratio` must be n_min/n_max in \(0, 1\]"),
        (-0.5, ValueError, "`imbalance_ratio`"),
        (float("nan"), ValueError, "`imbalance_ratio`"),
        ("0.1", TypeError, "`imbalance_ratio` must be a number"),
    ],
)
def test_bad_imbalance_ratio(ratio, exc, match):
    with pytest.raises(exc, match=match):
        long_tail_indices(torch.tensor([0, 1, 1]), ratio)


def test_long_tail_bad_arguments():
    with pytest.raises(ValueError, match="`num_classes` must be an int >= 2"):
        long_tail_counts(10, 1, 0.5)
    with pytest.raises(ValueError, match="`n_max`"):
        long_tail_counts(0, 3, 0.5)
    with pytest.raises(TypeError, match="`labels` must be an integer tensor"):
        long_tail_indices(torch.tensor([0.0, 1.0]), 0.5)
    with pytest.raises(ValueError, match="`labels` must hold non-negative"):
        long_tail_indices(torch.tensor([-1, 1]), 0.5)
    with pytest.raises(ValueError, match=r"\[0, num_classes=2\)"):
        long_tail_indices(torch.tensor([0, 2]), 0.5, num_classes=2)


# ---------------------------------------------------------------------------------------------- stratified
@given(counts=st.lists(st.integers(1, 40), min_size=1, max_size=6), fraction=st.floats(0.05, 0.95))
def test_stratified_split_properties(counts, fraction):
    y = torch.from_numpy(np.random.default_rng(0).permutation(np.repeat(np.arange(len(counts)), counts)))
    keep, held = stratified_split(y, fraction, seed=7)
    assert torch.equal(torch.sort(torch.cat([keep, held])).values, torch.arange(len(y)))
    held_counts = torch.bincount(y[held], minlength=len(counts)).tolist()
    for n, h in zip(counts, held_counts):
        expected = 0 if n < 2 else min(max(round(fraction * n), 1), n - 1)
        assert h == expected
    keep2, held2 = stratified_split(y, fraction, seed=7)
    assert torch.equal(held, held2) and torch.equal(keep, keep2)


def test_stratified_split_input_checks():
    with pytest.raises(ValueError, match="`fraction`"):
        stratified_split(torch.tensor([0, 1]), 0.0)
    with pytest.raises(ValueError, match="`labels` must be 1-D"):
        stratified_split(torch.zeros(2, 2, dtype=torch.long), 0.5)


# ---------------------------------------------------------------------------------------------- open set
def test_open_set_split_random_and_explicit(digits):
    osr = ncd.open_set_split(digits, num_known=4, seed=0)
    assert len(osr.known_classes) == 4 and sorted(osr.known_classes + osr.unknown_classes) == list(range(10))
    assert osr.closed.num_classes == 4 and set(osr.closed.train_y.tolist()) == {0, 1, 2, 3}
    assert set(osr.unknown_y.tolist()) == set(osr.unknown_classes)
    assert len(osr.unknown_y) + len(osr.closed.test_y) == len(digits.test_y)
    # Label i of the closed set is known_classes[i].
    i = int(osr.closed.train_y[0])
    assert osr.closed.class_names[i] == digits.class_names[osr.known_classes[i]]
    again = ncd.open_set_split(digits, num_known=4, seed=0)
    assert again.known_classes == osr.known_classes
    seeds = {tuple(ncd.open_set_split(digits, num_known=4, seed=s).known_classes) for s in range(5)}
    assert len(seeds) > 1
    openset_splits = pytest.importorskip("neuralcollapse.openset.splits")
    assert osr.known_classes == list(openset_splits.random_class_split(10, 4, seed=0)[0])
    from neuralcollapse.data.splits import _random_class_split

    assert _random_class_split(10, 4, 0) == osr.known_classes  # the fallback draws the same classes
    explicit = ncd.open_set_split(digits, [9, 0])
    assert explicit.known_classes == [9, 0] and explicit.closed.class_names == ["9", "0"]
    assert "known=2" in repr(explicit)


def test_open_set_split_errors(digits):
    with pytest.raises(ValueError, match="exactly one of `known`"):
        ncd.open_set_split(digits)
    with pytest.raises(ValueError, match="exactly one of `known`"):
        ncd.open_set_split(digits, [1], num_known=1)
    with pytest.raises(ValueError, match=r"`num_known` must be an int in \[1, 9\]"):
        ncd.open_set_split(digits, num_known=10)
    with pytest.raises(TypeError, match="`splits`"):
        ncd.open_set_split("digits", num_known=2)


# ---------------------------------------------------------------------------------------------- OOD
def test_digits_ood_is_pixel_scrambled_digits(digits):
    pair = ncd.ood_pair("digits", "digits-ood")
    assert pair.ood_x.shape == pair.id_x.shape and pair.ood_x.dtype == torch.uint8
    assert torch.equal(pair.id_x, digits.test_x)
    a = torch.sort(pair.ood_x.reshape(len(pair.ood_x), -1), dim=1).values
    b = torch.sort(digits.test_x.reshape(len(digits.test_x), -1), dim=1).values
    assert torch.equal(a, b)  # same intensities per image …
    assert not torch.equal(pair.ood_x, digits.test_x)  # … at other positions
    assert "digits-ood" in repr(pair)


def test_synthetic_ood_sets(digits):
    gauss = ncd.ood_pair(digits, "gaussian", seed=1)
    assert gauss.ood_x.shape == digits.test_x.shape and gauss.ood_name == "gaussian"
    unclipped = (gauss.ood_x > 0) & (gauss.ood_x < 255)
    assert (gauss.ood_x.float() / 255)[unclipped].mean().item() > digits.mean[0] - 0.05
    uni = ncd.ood_pair(digits, "uniform", num_samples=2000, seed=0)
    assert uni.ood_x.shape == (2000, 1, 8, 8)
    assert abs(uni.ood_x.float().mean().item() - 127.5) < 3
    assert torch.equal(
        ncd.ood_pair(digits, "uniform", seed=0).ood_x, ncd.ood_pair(digits, "uniform", seed=0).ood_x
    )
    with pytest.raises(ValueError, match="`num_samples`"):
        ncd.ood_pair(digits, "uniform", num_samples=0)
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        ncd.ood_pair(digits, "nope")


def test_ood_pair_with_a_real_dataset_is_resized_and_subsampled(tmp_path, rng, digits):
    from tests.data.test_readers import _write_mnist

    _write_mnist(tmp_path / "MNIST" / "raw", rng, n_test=12)
    with pytest.warns(UserWarning, match="are the train and test files swapped"):  # 6 train < 12 test images
        pair = ncd.ood_pair(digits, "mnist", root=tmp_path, num_samples=5, verify=False)  # synthetic files
    assert pair.ood_x.shape == (5, 1, 8, 8) and pair.ood_name == "mnist"
    with pytest.warns(UserWarning, match="swapped"):
        rgb = ncd.ood_pair(ncd.create("digits", to_rgb=True), "mnist", root=tmp_path, verify=False)
    assert rgb.ood_x.shape == (12, 3, 8, 8) and torch.equal(rgb.ood_x[:, 0], rgb.ood_x[:, 2])


def test_match_images_conversions(rng):
    rgb = torch.from_numpy(rng.integers(0, 256, (3, 3, 6, 6), dtype=np.uint8))
    assert match_images(rgb, 3, (6, 6)) is rgb
    grey = match_images(rgb, 1, (6, 6))
    pil = np.stack([np.asarray(Image.fromarray(img.permute(1, 2, 0).numpy()).convert("L")) for img in rgb])
    assert grey.shape == (3, 1, 6, 6) and (grey[:, 0].int() - torch.from_numpy(pil).int()).abs().max() <= 1
    back = match_images(grey, 3, (6, 6))
    assert torch.equal(back[:, 0], grey[:, 0]) and torch.equal(back[:, 1], grey[:, 0])
    const = torch.full((2, 1, 9, 9), 77, dtype=torch.uint8)
    assert torch.equal(match_images(const, 1, (4, 5)), torch.full((2, 1, 4, 5), 77, dtype=torch.uint8))
    with pytest.raises(ValueError, match="cannot convert 2-channel"):
        match_images(torch.zeros(1, 2, 4, 4, dtype=torch.uint8), 3, (4, 4))

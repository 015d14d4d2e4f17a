"""DatasetSplits, the registry and the embedded digits data set."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import neuralcollapse.data as ncd
from neuralcollapse.data import DatasetSplits


@pytest.fixture(scope="module")
def digits() -> DatasetSplits:
    return ncd.create("digits")


def test_digits_sizes_and_dtypes(digits):
    assert len(digits.train_y) + len(digits.test_y) == 1797
    assert (len(digits.train_y), len(digits.test_y)) == (1347, 450)
    assert digits.train_x.dtype == torch.uint8 and digits.train_y.dtype == torch.int64
    assert digits.train_x.shape[1:] == (1, 8, 8) and digits.image_size == (8, 8)
    assert digits.num_classes == 10 and digits.in_channels == 1
    assert digits.class_names == [str(i) for i in range(10)]


def test_digits_pixels_are_the_sklearn_values_scaled(digits):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    scaled = np.rint(bunch.images * 255 / 16).astype(np.uint8)
    # Every stored image is exactly one of the scikit-learn images (the split is a permutation subset).
    allx = torch.cat([digits.train_x, digits.test_x]).reshape(-1, 64).numpy()
    ally = torch.cat([digits.train_y, digits.test_y]).numpy()
    ref = {(img.tobytes(), int(lab)) for img, lab in zip(scaled.reshape(-1, 64), bunch.target)}
    got = {(img.tobytes(), int(lab)) for img, lab in zip(allx, ally)}
    assert got == ref
    assert set(np.unique(allx)) <= {round(v * 255 / 16) for v in range(17)} | {128}
    # to_float is within 1/510 of v/16.
    assert np.abs(scaled / 255.0 - bunch.images / 16.0).max() <= 1 / 510 + 1e-12


def test_digits_split_is_stratified_and_deterministic(digits):
    again = ncd.create("digits")
    assert torch.equal(again.train_x, digits.train_x) and torch.equal(again.test_y, digits.test_y)
    full = torch.bincount(torch.cat([digits.train_y, digits.test_y]), minlength=10)
    test = torch.bincount(digits.test_y, minlength=10)
    assert torch.all((test - 0.25 * full).abs() <= 0.5)
    other = ncd.create("digits", seed=1)
    assert not torch.equal(other.test_x, digits.test_x)


def test_digits_mean_std_are_training_statistics(digits):
    x = digits.train_x.double() / 255
    assert digits.mean[0] == pytest.approx(x.mean().item(), abs=1e-12)
    assert digits.std[0] == pytest.approx(x.std(unbiased=False).item(), abs=1e-12)
    z = digits.normalize(digits.train_x)
    assert z.dtype == torch.float32
    assert z.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert z.std(unbiased=False).item() == pytest.approx(1, abs=1e-5)


def test_to_float_and_normalize(digits):
    x = digits.test_x[:5]
    x0 = x.clone()
    f = digits.to_float(x)
    torch.testing.assert_close(f, x.double().div(255).float())
    assert digits.to_float(f) is f  # idempotent
    torch.testing.assert_close(digits.normalize(f), digits.normalize(x))
    torch.testing.assert_close(digits.normalize(x), (x.float() / 255 - digits.mean[0]) / digits.std[0])
    assert torch.equal(x, x0)
    with pytest.raises(TypeError, match="`x` must be uint8"):
        digits.to_float(x.to(torch.int32))


def test_to_rgb_replicates(digits):
    rgb = ncd.create("digits", to_rgb=True)
    assert rgb.in_channels == 3 and rgb.mean == digits.mean * 3
    assert torch.equal(rgb.train_x[:, 0], digits.train_x[:, 0]) and torch.equal(
        rgb.train_x[:, 2], digits.train_x[:, 0]
    )


def test_subset_classes_remaps_in_the_given_order(digits):
    sub = digits.subset_classes([7, 2])
    assert sub.num_classes == 2 and sub.class_names == ["7", "2"]
    assert torch.equal(sub.train_x, digits.train_x[(digits.train_y == 7) | (digits.train_y == 2)])
    expected = digits.train_y[(digits.train_y == 7) | (digits.train_y == 2)]
    assert torch.equal(sub.train_y, (expected == 2).long())
    assert len(sub.test_y) == int(((digits.test_y == 7) | (digits.test_y == 2)).sum())


@pytest.mark.parametrize(("known", "match"), [([], "at least one"), ([1, 1], "repeat"), ([10], r"\[0, 10\)")])
def test_subset_classes_errors(digits, known, match):
    with pytest.raises(ValueError, match=match):
        digits.subset_classes(known)


def test_validation_split(digits):
    split = digits.validation_split(0.2, seed=3)
    assert len(split.train_y) + len(split.val_y) == len(digits.train_y)
    assert torch.equal(split.test_x, digits.test_x)
    counts = torch.bincount(digits.train_y, minlength=10)
    val_counts = torch.bincount(split.val_y, minlength=10)
    assert torch.equal(val_counts, torch.round(0.2 * counts.double()).long())
    # Train and val rows together are the original rows.
    rows = {tuple(r) for r in torch.cat([split.train_x, split.val_x]).reshape(-1, 64).tolist()}
    assert rows == {tuple(r) for r in digits.train_x.reshape(-1, 64).tolist()}
    assert torch.equal(digits.validation_split(0.2, seed=3).val_y, split.val_y)
    assert split.split("val")[0] is split.val_x
    with pytest.raises(ValueError, match="already has a validation split"):
        split.validation_split(0.1)
    with pytest.raises(ValueError, match=r"`fraction` must be in \(0, 1\)"):
        digits.validation_split(1.0)
    with pytest.raises(ValueError, match="`which`"):
        digits.split("val")


def test_long_tail_and_class_counts(digits):
    lt = digits.long_tail(0.1, seed=0)
    counts = lt.class_counts().tolist()
    n_max = int(digits.class_counts().max())
    assert counts[0] == min(n_max, int(digits.class_counts()[0]))
    assert counts[-1] == int(n_max * 0.1)
    assert torch.equal(lt.test_x, digits.test_x)


def test_dataset_splits_validates_its_fields():
    x = torch.zeros(4, 1, 2, 2, dtype=torch.uint8)
    y = torch.tensor([0, 1, 0, 1])
    ok = dict(
        name="t",
        train_x=x,
        train_y=y,
        test_x=x,
        test_y=y,
        num_classes=2,
        in_channels=1,
        image_size=(2, 2),
        mean=(0.5,),
        std=(0.5,),
    )
    DatasetSplits(**ok)
    with pytest.raises(ValueError, match="`train_x` and `train_y` must have the same length"):
        DatasetSplits(**{**ok, "train_y": y[:3]})
    with pytest.raises(ValueError, match=r"`test_y` must hold class indices in \[0, 2\)"):
        DatasetSplits(**{**ok, "test_y": y + 1})
    with pytest.raises(ValueError, match="`mean` and `std` must have 1 values"):
        DatasetSplits(**{**ok, "mean": (0.5, 0.5)})
    with pytest.raises(ValueError, match="`std` must be positive"):
        DatasetSplits(**{**ok, "std": (0.0,)})
    with pytest.raises(ValueError, match=r"`train_x` must have shape \(N, 3"):
        DatasetSplits(**{**ok, "in_channels": 3, "mean": (0.5,) * 3, "std": (0.5,) * 3})
    with pytest.raises(TypeError, match="`train_x` must be uint8 images or floating point"):
        DatasetSplits(**{**ok, "train_x": x.long()})
    with pytest.raises(ValueError, match="`class_names`"):
        DatasetSplits(**{**ok, "class_names": ["a"]})
    with pytest.raises(ValueError, match="`val_x` and `val_y` must be given together"):
        DatasetSplits(**{**ok, "val_x": x})
    assert "train=4" in repr(DatasetSplits(**ok))


def test_registry_errors_and_names():
    assert {
        "digits",
        "mnist",
        "fashionmnist",
        "cifar10",
        "cifar100",
        "svhn",
        "tinyimagenet",
        "imagefolder",
    } <= set(ncd.names())
    with pytest.raises(
        ValueError, match=r"unknown dataset 'cifar1000'.*valid names: .*cifar10.*did you mean"
    ):
        ncd.create("cifar1000")
    with pytest.raises(TypeError, match="`download` must be a bool"):
        ncd.create("digits", download="yes")
    with pytest.raises(TypeError, match="official_normalization"):
        ncd.create("digits", official_normalization=True)


def test_resolve_root(monkeypatch, tmp_path):
    monkeypatch.delenv(ncd.DATA_DIR_ENV, raising=False)
    assert str(ncd.resolve_root(None)) == "data"
    monkeypatch.setenv(ncd.DATA_DIR_ENV, str(tmp_path))
    assert ncd.resolve_root(None) == tmp_path
    assert ncd.resolve_root("~/x").is_absolute()
    with pytest.raises(TypeError, match="`root`"):
        ncd.resolve_root(3)

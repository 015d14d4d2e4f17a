"""OSR class splits: seeded permutations, presets, label remapping, saved lists."""

import json

import numpy as np
import pytest
import torch

from neuralcollapse.openset import splits
from neuralcollapse.openset.splits import (
    OSRSplit,
    load_splits,
    osr_split,
    osr_splits,
    random_class_split,
    remap_known_labels,
    save_splits,
)


def test_random_split_is_the_seeded_permutation():
    known, unknown = random_class_split(10, 4, seed=3)
    perm = np.random.default_rng(3).permutation(10)
    assert known == sorted(perm[:4].tolist()) and unknown == sorted(perm[4:].tolist())
    assert all(isinstance(c, int) for c in known + unknown)
    assert random_class_split(10, 4, seed=3) == (known, unknown)  # deterministic
    assert random_class_split(10, 4, seed=4) != (known, unknown)


@pytest.mark.parametrize(("dataset", "n", "k"), [("fashionmnist", 10, 4), ("CIFAR-100", 100, 20),
                                                 ("tinyimagenet", 200, 40)])
def test_presets(dataset, n, k):
    all_splits = osr_splits(dataset)
    assert [s.seed for s in all_splits] == [0, 1, 2, 3, 4]
    assert len({s.known for s in all_splits}) == 5  # five different splits
    for s in all_splits:
        assert s.num_classes == n and len(s.known) == k and len(s.unknown) == n - k
        assert sorted(s.known + s.unknown) == list(range(n))
    assert osr_split(dataset, 2) == all_splits[2]


def test_remap_known_labels():
    labels = torch.tensor([3, 7, 1, 3, 0])
    out = remap_known_labels(labels, known=[3, 1])
    assert torch.equal(out, torch.tensor([0, -1, 1, 0, -1]))
    assert torch.equal(labels, torch.tensor([3, 7, 1, 3, 0]))  # input unchanged
    np.testing.assert_array_equal(remap_known_labels(np.array([1, 3]), [3, 1]), [1, 0])
    np.testing.assert_array_equal(remap_known_labels([5, 5], [0]), [-1, -1])
    assert remap_known_labels(torch.tensor([], dtype=torch.long), [0]).shape == (0,)


def test_save_load_roundtrip(tmp_path):
    items = [*osr_splits("cifar100"), OSRSplit("custom", None, 3, (2,), (0, 1))]
    path = save_splits(tmp_path / "sub" / "splits.json", items)
    assert load_splits(path) == items
    data = json.loads(path.read_text())
    assert data["format"] == splits.SPLITS_FORMAT and data["splits"][0]["known"] == list(items[0].known)


def test_errors_named(tmp_path):
    with pytest.raises(ValueError, match=r"`num_known` must be < `num_classes` \(10\)"):
        random_class_split(10, 10, 0)
    with pytest.raises(ValueError, match="`num_known` must be >= 1"):
        random_class_split(10, 0, 0)
    with pytest.raises(ValueError, match="`seed` must be >= 0"):
        random_class_split(10, 2, -1)
    with pytest.raises(TypeError, match="`num_classes` must be an int"):
        random_class_split(10.0, 2, 0)
    with pytest.raises(ValueError, match="`dataset` must be one of fashionmnist, cifar100, tinyimagenet"):
        osr_split("mnist", 0)
    with pytest.raises(ValueError, match="`known` must not repeat a class"):
        remap_known_labels(torch.tensor([0]), [1, 1])
    with pytest.raises(ValueError, match="`known` must list at least one class"):
        remap_known_labels(torch.tensor([0]), [])
    with pytest.raises(ValueError, match="`labels` must be class indices >= 0"):
        remap_known_labels(torch.tensor([-1]), [0])
    with pytest.raises(TypeError, match="`labels` must be an integer tensor"):
        remap_known_labels(torch.tensor([0.0]), [0])
    with pytest.raises(ValueError, match="together must be exactly the classes 0..3"):
        OSRSplit("x", 0, 4, (0, 1), (2,))
    with pytest.raises(ValueError, match="disjoint"):
        OSRSplit("x", 0, 3, (0, 1), (1, 2))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "other", "splits": []}))
    with pytest.raises(ValueError, match="is not a splits file"):
        load_splits(bad)
    with pytest.raises(TypeError, match="`splits` must hold OSRSplit objects"):
        save_splits(tmp_path / "x.json", [([0], [1])])

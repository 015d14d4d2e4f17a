"""Class-balanced batch sampler (docs/methods.md §4.3) and the in-memory TensorBatchLoader."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DistributedSampler

from neuralcollapse.data import ClassBalancedBatchSampler, TensorBatchLoader


def _labels(counts: list[int], seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.permutation(np.repeat(np.arange(len(counts)), counts)))


def _check_epoch(y: torch.Tensor, c: int, m: int, w: int, seed: int = 0, epoch: int = 0) -> np.ndarray:
    samplers = [ClassBalancedBatchSampler(y, c, m, world_size=w, rank=r, seed=seed) for r in range(w)]
    for s in samplers:
        s.set_epoch(epoch)
    per_rank = [list(s) for s in samplers]
    steps = len(samplers[0])
    assert all(len(b) == steps for b in per_rank)
    k = len(torch.unique(y))
    for t in range(steps):
        world = []
        for r in range(w):
            batch = per_rank[r][t]
            assert len(batch) == c * m
            classes = y[batch].tolist()
            # C distinct classes, m samples each, per rank batch.
            assert (
                sorted(np.bincount(classes).tolist(), reverse=True)[:c] == [m] * c and len(set(classes)) == c
            )
            world += batch
        if c * w >= k:
            assert set(y[world].tolist()) == set(range(k)), "every global batch holds every class"
    used = np.concatenate([np.asarray(b) for batches in per_rank for b in batches])
    assert set(used.tolist()) == set(range(len(y))), "every sample is used at least once per epoch"
    return used


@pytest.mark.parametrize(
    ("counts", "c", "m", "w"),
    [
        ([50, 20, 7, 3], 4, 2, 1),
        ([50, 20, 7, 3], 2, 3, 2),
        ([50, 20, 7, 3], 2, 4, 3),
        ([9, 9, 9, 9, 9], 2, 2, 1),  # C·world < K: classes rotate
        ([1, 1, 30], 3, 5, 1),
        ([12, 12, 12, 12], 4, 3, 1),
    ],
)
def test_sampler_properties(counts, c, m, w):
    y = _labels(counts)
    _check_epoch(y, c, m, w)
    _check_epoch(y, c, m, w, epoch=3)


@settings(max_examples=25, deadline=None)
@given(
    counts=st.lists(st.integers(1, 25), min_size=2, max_size=7),
    m=st.integers(1, 4),
    w=st.integers(1, 3),
    data=st.data(),
)
def test_sampler_properties_random(counts, m, w, data):
    c = data.draw(st.integers(1, len(counts)))
    _check_epoch(_labels(counts), c, m, w, seed=data.draw(st.integers(0, 5)))


def test_balanced_divisible_epoch_uses_each_sample_exactly_once_and_ranks_are_disjoint():
    y = _labels([12, 12, 12, 12])
    used = _check_epoch(y, 2, 3, 2)
    assert sorted(used.tolist()) == list(range(48))
    s = [ClassBalancedBatchSampler(y, 2, 3, world_size=2, rank=r) for r in range(2)]
    r0 = {i for b in s[0] for i in b}
    r1 = {i for b in s[1] for i in b}
    assert not r0 & r1 and len(r0 | r1) == 48
    # Same number of steps as a plain sampler: N / (C·m·world).
    assert len(s[0]) == math.ceil(48 / (2 * 3 * 2))


def test_minority_classes_are_oversampled():
    y = _labels([60, 6])
    used = _check_epoch(y, 2, 3, 1)
    uses = np.bincount(used, minlength=len(y))
    assert uses[(y == 1).numpy()].mean() > 3 * uses[(y == 0).numpy()].mean()
    assert uses[(y == 0).numpy()].min() >= 1


def test_sampler_is_deterministic_per_seed_and_epoch():
    y = _labels([30, 20, 10])
    a = ClassBalancedBatchSampler(y, 3, 2, seed=5)
    b = ClassBalancedBatchSampler(y, 3, 2, seed=5)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    a.set_epoch(0)
    assert list(a) == first
    assert np.array_equal(a.plan(epoch=1), b.plan(epoch=1))
    assert list(ClassBalancedBatchSampler(y, 3, 2, seed=6)) != first
    # (seed, epoch) pairs do not alias as seed + epoch would.
    assert not np.array_equal(ClassBalancedBatchSampler(y, 3, 2, seed=1).plan(0), a.plan(1))
    assert a.batch_size == 6 and ClassBalancedBatchSampler(y, 3, 2, world_size=2).global_batch_size == 12


def test_sampler_input_checks():
    y = torch.tensor([0, 0, 1, 1, 2])
    with pytest.raises(
        ValueError, match=r"`classes_per_batch` must be <= the number of classes present \(3\)"
    ):
        ClassBalancedBatchSampler(y, 4, 1)
    with pytest.raises(ValueError, match="`classes_per_batch` must be >= 1"):
        ClassBalancedBatchSampler(y, 0, 1)
    with pytest.raises(ValueError, match="`samples_per_class` must be >= 1"):
        ClassBalancedBatchSampler(y, 2, 0)
    with pytest.raises(ValueError, match=r"`rank` must be in \[0, world_size=2\)"):
        ClassBalancedBatchSampler(y, 2, 1, world_size=2, rank=2)
    with pytest.raises(TypeError, match="`labels` must be an integer tensor"):
        ClassBalancedBatchSampler(y.float(), 2, 1)
    with pytest.raises(ValueError, match="`labels` is empty"):
        ClassBalancedBatchSampler(torch.zeros(0, dtype=torch.long), 1, 1)


# ---------------------------------------------------------------------------------------------- loader
def test_loader_in_order_with_partial_last_batch():
    x = torch.arange(20.0).reshape(10, 2)
    y = torch.arange(10) % 3
    loader = TensorBatchLoader(x, y, batch_size=4)
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    assert [b[2].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    for xb, yb, idx in batches:
        assert torch.equal(xb, x[idx]) and torch.equal(yb, y[idx])
    dropped = TensorBatchLoader(x, y, batch_size=4, drop_last=True)
    assert len(dropped) == 2 and [len(b[2]) for b in dropped] == [4, 4]
    pairs = list(TensorBatchLoader(x, y, batch_size=10, indices=False))
    assert len(pairs) == 1 and len(pairs[0]) == 2


def test_loader_shuffle_is_a_permutation_per_epoch():
    x = torch.arange(50)
    loader = TensorBatchLoader(x[:, None], x, batch_size=7, shuffle=True, seed=3)
    e0 = torch.cat([idx for _, _, idx in loader])
    assert sorted(e0.tolist()) == list(range(50)) and not torch.equal(e0, torch.arange(50))
    assert torch.equal(e0, torch.cat([idx for _, _, idx in loader]))
    loader.set_epoch(1)
    e1 = torch.cat([idx for _, _, idx in loader])
    assert sorted(e1.tolist()) == list(range(50)) and not torch.equal(e0, e1)


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("n", [10, 11, 12])
def test_loader_sharding_matches_distributed_sampler(n, drop_last):
    x = torch.arange(n)
    shards = []
    for rank in range(3):
        loader = TensorBatchLoader(x, x, batch_size=100, rank=rank, world_size=3, drop_last=False)
        loader.drop_last = drop_last  # shard truncation without dropping the (single) batch
        ours = loader.rank_indices().tolist()
        ref = list(
            DistributedSampler(list(range(n)), num_replicas=3, rank=rank, shuffle=False, drop_last=drop_last)
        )
        assert ours == ref
        shards.append(set(ours))
    if n % 3 == 0:
        assert set.union(*shards) == set(range(n)) and sum(map(len, shards)) == n


def test_loader_shuffled_shards_are_disjoint_and_cover():
    x = torch.arange(30)
    shards = [TensorBatchLoader(x, x, 4, shuffle=True, seed=1, rank=r, world_size=3) for r in range(3)]
    seen = [torch.cat([b[2] for b in s]).tolist() for s in shards]
    assert sorted(i for s in seen for i in s) == list(range(30))
    assert len(shards[0]) == math.ceil(10 / 4)


def test_loader_with_class_balanced_sampler():
    y = _labels([8, 8, 8])
    x = torch.randn(len(y), 3)
    sampler = ClassBalancedBatchSampler(y, 3, 2, seed=0)
    loader = TensorBatchLoader(x, y, batch_sampler=sampler)
    assert len(loader) == len(sampler)
    for (xb, yb, idx), ref in zip(loader, sampler):
        assert idx.tolist() == ref and torch.equal(xb, x[idx]) and sorted(set(yb.tolist())) == [0, 1, 2]
    loader.set_epoch(4)
    assert sampler.epoch == 4


def test_loader_input_checks():
    x = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="`x` and `y` must have the same length"):
        TensorBatchLoader(x, torch.zeros(3), 2)
    with pytest.raises(ValueError, match="`batch_size` must be >= 1"):
        TensorBatchLoader(x, torch.zeros(4), 0)
    with pytest.raises(ValueError, match="`world_size` must be >= 1"):
        TensorBatchLoader(x, torch.zeros(4), 2, world_size=0)
    with pytest.raises(TypeError, match="`batch_sampler` must be iterable"):
        TensorBatchLoader(x, torch.zeros(4), 2, batch_sampler=3)
    with pytest.raises(TypeError, match="`x` must be a torch.Tensor"):
        TensorBatchLoader(np.zeros(4), torch.zeros(4), 2)


@pytest.mark.cuda
def test_loader_gathers_on_the_tensor_device():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    x = torch.arange(10, device="cuda")
    xb, yb, idx = next(iter(TensorBatchLoader(x, x, 4, shuffle=True)))
    assert xb.device.type == idx.device.type == "cuda" and torch.equal(xb, yb)

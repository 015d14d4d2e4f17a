"""Hungarian label-to-prototype assignment and momentum class representatives (DL2PA; docs/methods.md §7.2)."""

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neuralcollapse.heads import (
    assign_prototypes,
    check_assignments_per_epoch,
    matching_cosine,
    reassignment_batches,
    update_class_representatives,
)


def _unit(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute_force(means, protos):
    """Best total cosine over all injective class -> prototype maps (all permutations)."""
    score = _unit(means) @ _unit(protos).T
    k, kp = score.shape
    totals = {perm: sum(score[c, perm[c]] for c in range(k)) for perm in itertools.permutations(range(kp), k)}
    best = max(totals.values())
    winners = [perm for perm, total in totals.items() if total >= best - 1e-9]
    return score, best, winners


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), k=st.integers(1, 6), extra=st.integers(0, 1), d=st.integers(1, 5))
def test_hungarian_matches_brute_force(seed, k, extra, d):
    rng = np.random.default_rng(seed)
    means = torch.tensor(rng.normal(size=(k, d)) * rng.uniform(0.1, 10.0, size=(k, 1)))
    protos = torch.tensor(rng.normal(size=(k + extra, d)))
    perm = assign_prototypes(means, protos)
    assert perm.dtype == torch.int64 and perm.shape == (k,)
    assert len(set(perm.tolist())) == k  # injective
    score, best, winners = _brute_force(means, protos)
    total = sum(score[c, int(perm[c])] for c in range(k))
    assert total == pytest.approx(best, abs=1e-12)
    if len(winners) == 1:
        assert tuple(perm.tolist()) == winners[0]


def test_assignment_constructed_case_and_scale_invariance():
    protos = torch.eye(3)
    means = torch.tensor([[0.1, 0.0, 2.0], [5.0, 0.2, 0.0], [0.0, 0.3, 0.1]])
    before = means.clone()
    assert assign_prototypes(means, protos).tolist() == [2, 0, 1]
    assert assign_prototypes(means * torch.tensor([[10.0], [0.01], [3.0]]), protos).tolist() == [2, 0, 1]
    assert torch.equal(means, before)
    # a greedy row-by-row choice would give class 0 prototype 0 (cos 0.9); the optimum trades it away
    protos = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    means = torch.tensor([[0.9, 0.436], [1.0, 0.0]])
    assert assign_prototypes(means, protos).tolist() == [1, 0]


def test_assignment_errors():
    with pytest.raises(ValueError, match=r"`prototypes` must have 3 columns to match `class_means`"):
        assign_prototypes(torch.randn(4, 3), torch.randn(4, 2))
    with pytest.raises(ValueError, match=r"`prototypes` must have at least as many rows as `class_means` \(4\)"):
        assign_prototypes(torch.randn(4, 3), torch.randn(3, 3))
    with pytest.raises(ValueError, match=r"`class_means` contains 1 NaN"):
        assign_prototypes(torch.tensor([[float("nan"), 1.0], [0.0, 1.0]]), torch.eye(2))
    with pytest.raises(ValueError, match=r"`class_means` must be 2-D"):
        assign_prototypes(torch.randn(3), torch.eye(3))
    with pytest.raises(TypeError, match=r"`prototypes` must be a floating-point tensor"):
        assign_prototypes(torch.randn(2, 2), torch.eye(2, dtype=torch.int64))


# ------------------------------------------------------------------------------------ momentum update
Q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=torch.float64)
FEATURES = torch.tensor([[3.0, 4.0], [0.0, -2.0], [1.0, 1.0], [-5.0, 0.0]], dtype=torch.float64)
TARGET = torch.tensor([0, 2, 0, 2])


def test_momentum_update_default_rule_by_hand():
    q_before, f_before, t_before = Q.clone(), FEATURES.clone(), TARGET.clone()
    new = update_class_representatives(Q, FEATURES, TARGET)
    s = 1 / np.sqrt(2)
    mean0 = (np.array([0.6, 0.8]) + np.array([s, s])) / 2  # mean of the *normalised* features of class 0
    mean2 = (np.array([0.0, -1.0]) + np.array([-1.0, 0.0])) / 2
    expected = np.array([
        0.9 * np.array([1.0, 0.0]) + 0.1 * mean0,
        [0.0, 1.0],  # class 1 absent: unchanged
        0.9 * np.array([0.6, 0.8]) + 0.1 * mean2,
    ])
    expected[[0, 2]] /= np.linalg.norm(expected[[0, 2]], axis=1, keepdims=True)
    np.testing.assert_allclose(new.numpy(), expected, rtol=0, atol=1e-12)
    assert torch.equal(Q, q_before) and torch.equal(FEATURES, f_before) and torch.equal(TARGET, t_before)
    # lam scales the new contribution; momentum 0 -> the normalised batch mean, momentum 1 -> unchanged
    lam = update_class_representatives(Q, FEATURES, TARGET, lam=0.5)
    row0 = 0.9 * np.array([1.0, 0.0]) + 0.05 * mean0
    np.testing.assert_allclose(lam[0].numpy(), row0 / np.linalg.norm(row0), atol=1e-12)
    zero = update_class_representatives(Q, FEATURES, TARGET, momentum=0.0)
    np.testing.assert_allclose(zero[0].numpy(), mean0 / np.linalg.norm(mean0), atol=1e-12)
    torch.testing.assert_close(update_class_representatives(Q, FEATURES, TARGET, momentum=1.0), Q)


def test_momentum_update_reference_rule_by_hand():
    q = Q.clone()
    q[1] *= 3.0  # a non-unit absent row: the reference re-normalises every row
    new = update_class_representatives(q, FEATURES, TARGET, reference_compat=True)
    s = 1 / np.sqrt(2)
    # queue[y] += 0.9 queue[y] + 0.1 x with last-write-wins: sample 2 for class 0, sample 3 for class 2
    row0 = 1.9 * np.array([1.0, 0.0]) + 0.1 * np.array([s, s])
    row2 = 1.9 * np.array([0.6, 0.8]) + 0.1 * np.array([-1.0, 0.0])
    expected = np.stack([row0 / np.linalg.norm(row0), [0.0, 1.0], row2 / np.linalg.norm(row2)])
    np.testing.assert_allclose(new.numpy(), expected, rtol=0, atol=1e-12)
    # the effective new-sample weight is 0.1 / 1.9, far below the paper's 0.1
    paper = update_class_representatives(Q, FEATURES, TARGET)
    assert float(new[0, 1]) < float(paper[0, 1])


def test_momentum_update_errors():
    with pytest.raises(ValueError, match=r"`all_reduce` is not available with `reference_compat=True`"):
        update_class_representatives(Q, FEATURES, TARGET, reference_compat=True, all_reduce=True)
    with pytest.raises(ValueError, match=r"`all_reduce=True` needs an initialised torch.distributed"):
        update_class_representatives(Q, FEATURES, TARGET, all_reduce=True)
    with pytest.raises(ValueError, match=r"`momentum` must be in \[0, 1\]; got 1.5"):
        update_class_representatives(Q, FEATURES, TARGET, momentum=1.5)
    with pytest.raises(ValueError, match=r"`target` must hold class indices in \[0, 3\)"):
        update_class_representatives(Q, FEATURES, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"`features` must have 2 columns"):
        update_class_representatives(Q, torch.ones(4, 3, dtype=torch.float64), TARGET)
    with pytest.raises(ValueError, match=r"`features` has 4, `target` has 3"):
        update_class_representatives(Q, FEATURES, TARGET[:3])
    bad = FEATURES.clone()
    bad[0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"`features` contains 1 NaN or Inf"):
        update_class_representatives(Q, bad, TARGET)


def test_first_observation_replaces_the_placeholder_row():
    observed = torch.tensor([True, False, False])
    before = observed.clone()
    new = update_class_representatives(Q, FEATURES, TARGET, observed=observed)
    s = 1 / np.sqrt(2)
    mean0 = (np.array([0.6, 0.8]) + np.array([s, s])) / 2
    row0 = 0.9 * np.array([1.0, 0.0]) + 0.1 * mean0  # observed: momentum as usual
    mean2 = (np.array([0.0, -1.0]) + np.array([-1.0, 0.0])) / 2  # unobserved: the normalised batch mean as is
    expected = np.stack([row0 / np.linalg.norm(row0), [0.0, 1.0], mean2 / np.linalg.norm(mean2)])
    np.testing.assert_allclose(new.numpy(), expected, rtol=0, atol=1e-12)
    assert torch.equal(observed, before)
    compat = update_class_representatives(Q, FEATURES, TARGET, reference_compat=True, observed=observed)
    np.testing.assert_allclose(compat[2].numpy(), [-1.0, 0.0], atol=1e-12)  # the last sample of class 2
    np.testing.assert_allclose(compat[1].numpy(), [0.0, 1.0], atol=1e-12)  # absent: unchanged
    everything = update_class_representatives(Q, FEATURES, TARGET, observed=torch.ones(3, dtype=torch.bool))
    torch.testing.assert_close(everything, update_class_representatives(Q, FEATURES, TARGET), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"`observed` must be a bool tensor of shape \(3,\); got torch.int64"):
        update_class_representatives(Q, FEATURES, TARGET, observed=torch.ones(3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"`observed` must be a bool tensor of shape \(3,\); got list"):
        update_class_representatives(Q, FEATURES, TARGET, observed=[True, True, True])


def test_matching_cosine_by_hand():
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    p = torch.tensor([[0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    assert matching_cosine(q, p, torch.tensor([1, 0, 2])) == pytest.approx(1.0 + 1.0 - 0.6, abs=1e-12)
    assert matching_cosine(q, p, torch.tensor([2, 1, 0])) == pytest.approx(-1.0 + 0.0 + 0.8, abs=1e-12)


def test_assignments_per_epoch_and_batch_schedule():
    assert [check_assignments_per_epoch(v) for v in (0.1, 0.25, 1, 3, 10.0)] == [0.1, 0.25, 1.0, 3.0, 10.0]
    for bad in (0, -1, float("nan"), float("inf"), True, "2"):
        with pytest.raises(ValueError, match=r"`assignments_per_epoch` must be a number > 0"):
            check_assignments_per_epoch(bad)
    for bad in (1.5, 0.3, 0.15):
        with pytest.raises(ValueError, match=r"must be a whole number \(updates per epoch\) or 1/n"):
            check_assignments_per_epoch(bad)
    # j·N/ν rounded half up, minus one (0-indexed batches); the last is always the epoch's last batch
    assert reassignment_batches(1, 10) == [9]
    assert reassignment_batches(4, 10) == [2, 4, 7, 9]  # 2.5, 5, 7.5, 10
    assert reassignment_batches(10, 79) == [7, 15, 23, 31, 39, 46, 54, 62, 70, 78]
    assert reassignment_batches(8, 3) == [0, 1, 2]  # more updates than batches: one per batch
    assert reassignment_batches(0.5, 10) == []  # ν < 1: epoch cadence, not batches
    with pytest.raises(ValueError, match=r"`batches_per_epoch` must be >= 1"):
        reassignment_batches(2, 0)

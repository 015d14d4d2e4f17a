"""OSCR (grouped and ARPL ties), closed-set error and open-set AUROC."""

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from neuralcollapse import openset
from neuralcollapse.openset import closed_set_error, openset_auroc, oscr


def arpl_loop(known, correct, unknown):
    """iCGY96/ARPL compute_oscr's procedure as a plain loop (known-ness scores already reduced)."""
    predict = np.concatenate((known, unknown), axis=0)
    k_target = np.concatenate((np.asarray(correct, dtype=float), np.zeros(len(unknown))), axis=0)
    u_target = np.concatenate((np.zeros(len(known)), np.ones(len(unknown))), axis=0)
    n = len(predict)
    ccr, fpr = [0.0] * (n + 2), [0.0] * (n + 2)
    idx = predict.argsort()
    s_k, s_u = k_target[idx], u_target[idx]
    for k in range(n - 1):
        ccr[k] = float(s_k[k + 1 :].sum()) / float(len(known))
        fpr[k] = float(s_u[k:].sum()) / float(len(unknown))
    ccr[n], fpr[n], ccr[n + 1], fpr[n + 1] = 0.0, 0.0, 1.0, 1.0
    roc = sorted(zip(fpr, ccr), reverse=True)
    total = 0.0
    for j in range(n + 1):
        total = total + (roc[j][0] - roc[j + 1][0]) * ((roc[j][1] + roc[j + 1][1]) / 2.0)
    return total


def grouped_loop(known, correct, unknown):
    """The grouped curve by brute force: one point per threshold in {+∞} ∪ distinct scores."""
    known, correct, unknown = np.asarray(known, float), np.asarray(correct, bool), np.asarray(unknown, float)
    points = [(0.0, 0.0)]
    for tau in sorted(set(known) | set(unknown), reverse=True):
        points.append(((unknown >= tau).mean(), ((known >= tau) & correct).mean()))
    return sum((f1 - f0) * (c0 + c1) / 2 for (f0, c0), (f1, c1) in itertools.pairwise(points))


def test_hand_case_with_ties():
    known, correct, unknown = [0.9, 0.5, 0.5], [True, True, False], [0.5, 0.1]
    # grouped: (0,0) -> (0, 1/3) at 0.9 -> (1/2, 2/3) at 0.5 -> (1, 2/3) at 0.1
    assert oscr(known, correct, unknown) == pytest.approx(0.5 * (1 / 3 + 2 / 3) / 2 + 0.5 * 2 / 3)
    # ARPL: position based, ties broken by NumPy's (unstable, possibly SIMD) quicksort: compare with the
    # loop over the same argsort, and with the value of a stable order of the tied block
    arpl = oscr(known, correct, unknown, ties="arpl")
    assert arpl == arpl_loop(known, correct, unknown)
    # stable ascending order 0.1(u), 0.5(k ok), 0.5(k wrong), 0.5(u), 0.9(k ok): points (1, 2/3),
    # (1/2, 1/3) x3, (0, 0) x2, (1, 1) -> 1/4 + 1/12
    # (the ranks of that order as distinct scores make the loop deterministic)
    assert arpl_loop(np.array([4.0, 1.0, 2.0]), correct, np.array([3.0, 0.0])) == pytest.approx(1 / 3)
    assert oscr([4.0, 1.0, 2.0], correct, [3.0, 0.0], ties="arpl") == pytest.approx(1 / 3)


@pytest.mark.parametrize(("n_known", "n_unknown"), [(1, 1), (4, 7), (30, 3)])
def test_constant_scores(n_known, n_unknown):
    rng = np.random.default_rng(n_known)
    correct = rng.random(n_known) < 0.6
    acc = correct.mean()
    known, unknown = np.full(n_known, 0.3), np.full(n_unknown, 0.3)
    assert oscr(known, correct, unknown) == pytest.approx(acc / 2)
    assert oscr(known, correct, unknown, ties="arpl") == 0.0


def test_perfect_separation():
    known, correct, unknown = [5.0, 4.0, 3.0, 2.5], [1, 0, 1, 1], [1.0, 2.0]
    assert oscr(known, correct, unknown) == pytest.approx(0.75)  # = accuracy
    # ARPL is one sample pessimistic: at the highest unknown's position it counts that unknown as accepted
    # but not the known just above it; points (1, 3/4), (1/2, 3/4), (0, 1/2), ... -> 3/8 + 5/16
    assert oscr(known, correct, unknown, ties="arpl") == pytest.approx(11 / 16)


@pytest.mark.parametrize("seed", range(5))
def test_arpl_matches_reference_loop(seed):
    rng = np.random.default_rng(seed)
    known = np.round(rng.normal(1.0, 1.0, 40), 1).astype(np.float32)  # ties, float32 as ARPL's logits
    unknown = np.round(rng.normal(0.0, 1.0, 25), 1).astype(np.float32)
    correct = rng.random(40) < 0.7
    assert oscr(torch.from_numpy(known), torch.from_numpy(correct), torch.from_numpy(unknown), ties="arpl") == \
        arpl_loop(known, correct, unknown)
    assert oscr(known, correct, unknown) == pytest.approx(grouped_loop(known, correct, unknown), abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 5), st.booleans()), min_size=1, max_size=20),
    st.lists(st.integers(0, 5), min_size=1, max_size=20),
)
def test_oscr_bounded_by_accuracy(known_pairs, unknown):
    known = np.array([s for s, _ in known_pairs], dtype=float)
    correct = np.array([c for _, c in known_pairs])
    unknown = np.array(unknown, dtype=float)
    acc = correct.mean()
    grouped = oscr(known, correct, unknown)
    arpl = oscr(known, correct, unknown, ties="arpl")
    assert 0.0 <= grouped <= acc + 1e-12
    assert 0.0 <= arpl <= acc + 1e-12
    assert grouped == pytest.approx(grouped_loop(known, correct, unknown), abs=1e-12)
    assert arpl == pytest.approx(arpl_loop(known, correct, unknown), abs=1e-12)


def test_oscr_errors_named():
    with pytest.raises(ValueError, match="`ties` must be one of 'grouped', 'arpl'"):
        oscr([1.0], [True], [0.0], ties="mean")
    with pytest.raises(ValueError, match=r"`known_correct` must have shape \(2,\)"):
        oscr([1.0, 2.0], [True], [0.0])
    with pytest.raises(ValueError, match="`known_correct` must be boolean"):
        oscr([1.0], [0.5], [0.0])
    with pytest.raises(ValueError, match="`unknown_scores` is empty"):
        oscr([1.0], [True], [])
    with pytest.raises(ValueError, match="`known_scores` contains 1 NaN"):
        oscr([float("nan")], [True], [0.0])
    with pytest.raises(ValueError, match="`known_scores` must be 1-D"):
        oscr([[1.0]], [True], [0.0])


def test_closed_set_error():
    logits = torch.tensor([[2.0, 1.0], [0.0, 1.0], [3.0, 0.0], [0.0, 5.0]])
    labels = torch.tensor([0, 0, -1, 1])
    assert closed_set_error(logits, labels) == pytest.approx(1 / 3)  # unknown (−1) ignored
    assert closed_set_error(logits.argmax(1), labels) == pytest.approx(1 / 3)
    assert closed_set_error(np.array([1, 1]), np.array([1, 0])) == 0.5
    with pytest.raises(ValueError, match="same number of samples"):
        closed_set_error(logits, labels[:3])
    with pytest.raises(ValueError, match="has no known-class sample"):
        closed_set_error(logits[:1], torch.tensor([-1]))
    with pytest.raises(ValueError, match=r"`labels` must be class indices >= 0 or -1"):
        closed_set_error(logits[:1], torch.tensor([-2]))
    with pytest.raises(TypeError, match="`labels` must be an integer tensor"):
        closed_set_error(logits, labels.float())
    with pytest.raises(TypeError, match="`logits_or_pred` must be an integer tensor"):
        closed_set_error(torch.tensor([0.5, 1.0]), torch.tensor([0, 1]))


@pytest.mark.parametrize("seed", range(3))
def test_openset_auroc_against_sklearn(seed):
    rng = np.random.default_rng(seed)
    known, unknown = np.round(rng.normal(1, 1, 50), 1), np.round(rng.normal(0, 1, 30), 1)
    ref = roc_auc_score(np.r_[np.ones(50), np.zeros(30)], np.r_[known, unknown])
    assert openset_auroc(torch.tensor(known), unknown) == pytest.approx(ref, abs=1e-12)
    with pytest.raises(ValueError, match="`unknown_scores` is empty"):
        openset_auroc(known, [])


def test_one_roc_implementation():
    # the same code path as ood.evaluate (known = ID)
    from neuralcollapse import ood

    k, u = [0.2, 0.9, 0.4], [0.4, 0.1]
    assert openset_auroc(k, u) == ood.evaluate(k, u)["auroc"]
    assert openset.metrics.roc_auc is ood.metrics.roc_auc
